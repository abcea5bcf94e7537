//! projects-service's counters (OpenTelemetry: OTLP, and `/metrics` as `snykapps_*_total`): its
//! calls to Snyk, by status as token-service counts its own, and the caps a listing ran into.

use std::sync::OnceLock;

use opentelemetry::{KeyValue, global, metrics::Counter};

/// The `endpoint` label of the one Snyk endpoint this service calls.
const ENDPOINT: &str = "rest/projects";

struct Counters {
    snyk_calls: Counter<u64>,
    body_capped: Counter<u64>,
    listings_capped: Counter<u64>,
}

/// Made on first use from the global meter, which `telemetry::init` sets up before the service is
/// built (a no-op meter in tests that do not).
fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let meter = global::meter("projects-service");
        Counters {
            snyk_calls: meter
                .u64_counter("snykapps.snyk.calls")
                .with_description("Calls to Snyk, by endpoint and HTTP status (or error)")
                .build(),
            body_capped: meter
                .u64_counter("snykapps.snyk.body_capped")
                .with_description(
                    "Answers from Snyk whose body was over the byte cap, not read (an error for the call), by endpoint",
                )
                .build(),
            listings_capped: meter
                .u64_counter("snykapps.listings.capped")
                .with_description(
                    "Listings stopped at PROJECTS_SERVICE_MAX_PROJECTS (answered 422 too_many_projects)",
                )
                .build(),
        }
    })
}

fn endpoint() -> [KeyValue; 1] {
    [KeyValue::new("endpoint", ENDPOINT)]
}

/// Exports the cap counters at 0 from start-up, so that a rate over them reads 0 rather than "no
/// data" before the first cap (as token-service's outcome counters).
pub fn init() {
    let c = counters();
    c.body_capped.add(0, &endpoint());
    c.listings_capped.add(0, &[]);
}

/// One REST call to Snyk: `status` the HTTP status, or "error" when there was no answer to read.
pub fn snyk_call(status: String) {
    let [endpoint] = endpoint();
    counters()
        .snyk_calls
        .add(1, &[endpoint, KeyValue::new("status", status)]);
}

/// An answer from Snyk whose body was over `snyk_rest::MAX_BODY_BYTES`, left unread.
pub fn snyk_body_capped() {
    counters().body_capped.add(1, &endpoint());
}

/// A listing stopped at `PROJECTS_SERVICE_MAX_PROJECTS`.
pub fn listing_capped() {
    counters().listings_capped.add(1, &[]);
}
