//! The HTTP API: `GET /v1/orgs/{org_id}/projects`, `/healthz`, `/readyz`. Thin: validates,
//! authenticates, then hands over to `listing`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use snykapps_proto::auth::ClientKeys;

use crate::{
    error::ApiError,
    listing::{Filters, Project, RetryPolicy, list_projects},
    tokens::TokenSource,
};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub rest: snyk_rest::RestClient,
    pub tokens: TokenSource,
    pub policy: RetryPolicy,
    pub client_keys: Arc<ClientKeys>,
    /// Set at shutdown: readiness turns false while in-flight requests finish.
    pub draining: service_runtime::http::Draining,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectsQuery {
    origin: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    names_start_with: Option<String>,
}

#[derive(Debug, Serialize)]
struct ProjectsResponse {
    org_id: String,
    count: usize,
    projects: Vec<Project>,
}

fn authenticate<'a>(state: &'a AppState, req: &HttpRequest) -> Result<&'a str, ApiError> {
    let header = req.headers().get("authorization").map(|v| v.as_bytes());
    state
        .client_keys
        .authenticate(header)
        .map_err(|r| ApiError::Unauthorized(r.to_string()))
}

/// A filter value: 1-64 characters of `[A-Za-z0-9._-]` (Snyk's origins and types look like that).
fn token_filter(name: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(v)
            if (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Ok(Some(v))
        }
        Some(_) => Err(ApiError::BadRequest(format!(
            "{name} must be 1-64 characters of [A-Za-z0-9._-]"
        ))),
    }
}

#[get("/v1/orgs/{org_id}/projects")]
async fn projects(
    state: web::Data<AppState>,
    req: HttpRequest,
    org_id: web::Path<String>,
    query: Result<web::Query<ProjectsQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req)?;
    let org = uuid::Uuid::try_parse(&org_id)
        .ok()
        .filter(|_| org_id.len() == 36)
        .ok_or_else(|| ApiError::BadRequest("org_id must be a UUID".into()))?
        .hyphenated()
        .to_string();
    let query = query
        .map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?
        .into_inner();
    let names_start_with = match query.names_start_with {
        Some(n) if n.is_empty() || n.len() > 256 || n.chars().any(char::is_control) => {
            return Err(ApiError::BadRequest(
                "names_start_with must be 1-256 printable characters".into(),
            ));
        }
        other => other,
    };
    let filters = Filters {
        origin: token_filter("origin", query.origin)?,
        kind: token_filter("type", query.kind)?,
        names_start_with,
    };
    tracing::info!(caller, org_id = %org, "listing projects");
    let projects = list_projects(&state.rest, &state.tokens, state.policy, &org, &filters).await?;
    Ok(HttpResponse::Ok().json(ProjectsResponse {
        org_id: org,
        count: projects.len(),
        projects,
    }))
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.is_draining() {
        return Err(ApiError::Unavailable {
            message: "shutting down".into(),
            retry_after_secs: 1,
        });
    }
    if state.tokens.ready().await {
        Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
    } else {
        Err(ApiError::Unavailable {
            message: "token-service is not reachable".into(),
            retry_after_secs: 2,
        })
    }
}

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(service_runtime::http::metrics))
        .service(projects)
        .service(healthz)
        .service(readyz)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::NoRoute)
        }));
}
