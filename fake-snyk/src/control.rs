//! The `/_fake/*` control endpoints, so that benchmarks and the demo can drive a fake running as
//! a separate process the way in-process tests drive [`crate::FakeSnyk`].

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::app::SharedState;
use crate::config::ttl_from_seconds;
use crate::error::ControlError;
use crate::faults::Fault;
use crate::stats::Stats;

/// `GET /_fake/stats`.
pub(crate) async fn stats(State(state): State<SharedState>) -> Json<Stats> {
    Json(state.lock().stats.clone())
}

/// `POST /_fake/faults` with a JSON [`Fault`].
pub(crate) async fn inject(
    State(state): State<SharedState>,
    Json(fault): Json<Fault>,
) -> StatusCode {
    tracing::info!(?fault, "fault injected over HTTP");
    state.inject(fault);
    StatusCode::NO_CONTENT
}

/// `DELETE /_fake/faults`.
pub(crate) async fn clear(State(state): State<SharedState>) -> StatusCode {
    state.lock().faults.clear();
    StatusCode::NO_CONTENT
}

/// `POST /_fake/expire-access-tokens`.
pub(crate) async fn expire_access_tokens(State(state): State<SharedState>) -> StatusCode {
    state.lock().store.expire_access_tokens(Instant::now());
    StatusCode::NO_CONTENT
}

/// The body of `POST /_fake/refresh-token-ttl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshTokenTtl {
    /// The new lifetime in whole seconds, at least 1.
    seconds: u64,
}

/// `POST /_fake/refresh-token-ttl` with `{"seconds": N}`: refresh tokens issued from now on live N
/// seconds (see [`crate::FakeSnyk::set_refresh_token_ttl`]). Any other body is a 400 with a JSON
/// error, and changes nothing.
pub(crate) async fn set_refresh_token_ttl(
    State(state): State<SharedState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<StatusCode, ControlError> {
    const EXPECTED: &str = r#"the body must be {"seconds": N} with N a whole number of seconds"#;
    let Json(body) = body
        .map_err(|rejection| ControlError::new(format!("{EXPECTED}: {}", rejection.body_text())))?;
    // Only an object: serde would also read a struct from a sequence such as `[60]`.
    if !body.is_object() {
        return Err(ControlError::new(format!("{EXPECTED}: not a JSON object")));
    }
    let body: RefreshTokenTtl = serde_json::from_value(body)
        .map_err(|error| ControlError::new(format!("{EXPECTED}: {error}")))?;
    let ttl = ttl_from_seconds(body.seconds)
        .map_err(|reason| ControlError::new(format!("seconds {reason}")))?;
    tracing::info!(
        seconds = body.seconds,
        "refresh-token lifetime changed over HTTP"
    );
    state.lock().store.set_refresh_ttl(ttl);
    Ok(StatusCode::NO_CONTENT)
}
