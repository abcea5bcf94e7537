//! Logging set-up: `RUST_LOG` filter, JSON lines when `LOG_FORMAT=json`, human-readable otherwise.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry.with(fmt::layer().json().with_current_span(true)).try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
}
