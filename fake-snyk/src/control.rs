//! The `/_fake/*` control endpoints, so that benchmarks and the demo can drive a fake running as
//! a separate process the way in-process tests drive [`crate::FakeSnyk`].

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::app::SharedState;
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
