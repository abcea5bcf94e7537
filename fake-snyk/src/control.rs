//! The `/_fake/*` control endpoints, so that benchmarks and the demo can drive a fake running as
//! a separate process the way in-process tests drive [`crate::FakeSnyk`].

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::SharedState;
use crate::catalog::{AddOrgsError, MAX_ORGS};
use crate::config::{OrgSeed, ttl_from_seconds};
use crate::error::ControlError;
use crate::faults::Fault;
use crate::secrets::{ClientSecretError, SecretChange};
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

/// A control endpoint's JSON body as `T`, or the 400 that says `expected` and what is wrong.
fn json_object<T: DeserializeOwned>(
    body: Result<Json<Value>, JsonRejection>,
    expected: &str,
) -> Result<T, ControlError> {
    let Json(body) = body
        .map_err(|rejection| ControlError::new(format!("{expected}: {}", rejection.body_text())))?;
    // Only an object: serde would also read a struct from a sequence such as `[60]`.
    if !body.is_object() {
        return Err(ControlError::new(format!("{expected}: not a JSON object")));
    }
    serde_json::from_value(body).map_err(|error| ControlError::new(format!("{expected}: {error}")))
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
    let body: RefreshTokenTtl = json_object(
        body,
        r#"the body must be {"seconds": N} with N a whole number of seconds"#,
    )?;
    let ttl = ttl_from_seconds(body.seconds)
        .map_err(|reason| ControlError::new(format!("seconds {reason}")))?;
    tracing::info!(
        seconds = body.seconds,
        "refresh-token lifetime changed over HTTP"
    );
    state.lock().store.set_refresh_ttl(ttl);
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /_fake/client-secrets`: Snyk's
/// `POST /rest/orgs/{org_id}/apps/creations/{app_id}/secrets` body, as it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRequest {
    data: SecretRequestData,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRequestData {
    #[serde(rename = "type")]
    kind: AppType,
    attributes: SecretChange,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AppType {
    App,
}

/// `POST /_fake/client-secrets`: the client's secrets change as Snyk's secrets endpoint changes
/// them (`mode` `create`, `replace` or `delete`, with `secret` for `delete`); see
/// [`crate::FakeSnyk::change_client_secret`]. 200 with the app and, for `create` and `replace`,
/// the new `client_secret` (shown once, as Snyk shows it); 409 when the change is refused (a
/// third secret, deleting the last one), 404 for a secret that is not active, 400 for any other
/// body. Nothing changes on an error.
pub(crate) async fn change_client_secret(
    State(state): State<SharedState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ControlError> {
    const EXPECTED: &str = r#"the body must be {"data":{"type":"app","attributes":{"mode":"create"|"replace"|"delete","secret":…}}}"#;
    let Json(body) = body
        .map_err(|rejection| ControlError::new(format!("{EXPECTED}: {}", rejection.body_text())))?;
    let request: SecretRequest = serde_json::from_value(body)
        .map_err(|error| ControlError::new(format!("{EXPECTED}: {error}")))?;
    let AppType::App = request.data.kind;
    let change = request.data.attributes;
    let secret = state.change_client_secret(&change).map_err(|e| match e {
        ClientSecretError::Unknown => ControlError::not_found(e.to_string()),
        ClientSecretError::TooMany | ClientSecretError::Last => {
            ControlError::conflict(e.to_string())
        }
    })?;
    tracing::info!(mode = change.mode(), "client secrets changed over HTTP");
    let mut attributes = serde_json::json!({ "client_id": state.config.client_id });
    if let Some(secret) = secret {
        attributes["client_secret"] = Value::String(secret);
    }
    Ok(Json(serde_json::json!({
        "jsonapi": {"version": "1.0"},
        "data": {"type": "app", "id": state.config.client_id, "attributes": attributes},
    })))
}

/// The body of `POST /_fake/orgs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddOrgs {
    /// The org's name; with `count`, the names' common start.
    name: String,
    /// Projects in each org.
    projects: usize,
    /// How many orgs: named `{name} 1` to `{name} {count}`. Absent: one org named `name`.
    #[serde(default)]
    count: Option<usize>,
}

impl AddOrgs {
    /// The orgs asked for, or why the body cannot be served.
    fn seeds(&self) -> Result<Vec<OrgSeed>, String> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err("name must not be empty".into());
        }
        Ok(match self.count {
            None => vec![OrgSeed::new(name, self.projects)],
            Some(count) if (1..=MAX_ORGS).contains(&count) => (1..=count)
                .map(|i| OrgSeed::new(&format!("{name} {i}"), self.projects))
                .collect(),
            Some(count) => return Err(format!("count must be 1 to {MAX_ORGS}, not {count}")),
        })
    }
}

/// `POST /_fake/orgs` with `{"name": "Bench Org", "projects": 500, "count": 40}`: orgs added
/// after those served (`FAKE_SNYK_ORGS`), each with `projects` generated projects, seen by every
/// install made afterwards and by every install that covers all orgs. 200 with the orgs added
/// (`{"orgs": [{"id", "name", "slug", "projects"}]}`); a name served already (or past
/// [`MAX_ORGS`] in all) is a 409, any other body a 400, and nothing is added then.
pub(crate) async fn add_orgs(
    State(state): State<SharedState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ControlError> {
    const EXPECTED: &str =
        r#"the body must be {"name": "…", "projects": N} with an optional "count": N"#;
    let request: AddOrgs = json_object(body, EXPECTED)?;
    let seeds = request
        .seeds()
        .map_err(|reason| ControlError::new(format!("{EXPECTED}: {reason}")))?;
    state.add_orgs(&seeds).map_err(|e| match e {
        AddOrgsError::Duplicate { .. } | AddOrgsError::TooMany { .. } => {
            ControlError::conflict(e.to_string())
        }
    })?;
    tracing::info!(
        orgs = seeds.len(),
        projects = request.projects,
        "orgs added over HTTP"
    );
    let orgs: Vec<Value> = seeds
        .iter()
        .map(|seed| {
            serde_json::json!({
                "id": seed.id,
                "name": seed.name,
                "slug": seed.slug,
                "projects": seed.projects,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "orgs": orgs })))
}
