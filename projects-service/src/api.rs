//! The HTTP API: `GET /v1/orgs/{org_id}/projects`, `GET
//! /v1/installs/{install_id}/orgs/{org_id}/projects`, `/healthz`, `/readyz`. Thin: validates,
//! authenticates, then hands over to `listing`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, get, web};
use caller_auth::ClientKeys;
use serde::{Deserialize, Serialize};
use snykapps_ids::{BadId, InstallId, OrgId};

use crate::{
    error::ApiError,
    listing::{Filters, Project, RetryPolicy, list_projects},
    tokens::{Target, TokenSource},
};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub rest: snyk_rest::RestClient,
    pub tokens: TokenSource,
    pub policy: RetryPolicy,
    pub client_keys: Arc<ClientKeys>,
    /// Callers that may use the org route (`PROJECTS_SERVICE_ORG_ROUTE_CALLERS`).
    pub org_route_callers: Arc<[String]>,
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
    /// Only on the install route: whose token listed the projects.
    #[serde(skip_serializing_if = "Option::is_none")]
    install_id: Option<InstallId>,
    org_id: OrgId,
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

/// A path id, parsed into its type (a hyphenated UUID, any case; one spelling from then on).
fn id_param<T>(raw: &str, parse: fn(&str) -> Result<T, BadId>) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn filters(
    query: Result<web::Query<ProjectsQuery>, actix_web::Error>,
) -> Result<Filters, ApiError> {
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
    Ok(Filters {
        origin: token_filter("origin", query.origin)?,
        kind: token_filter("type", query.kind)?,
        names_start_with,
    })
}

/// The one listing path of both routes; only `via` (whose token) differs.
async fn list(
    state: &AppState,
    caller: &str,
    org: OrgId,
    via: Target,
    filters: &Filters,
) -> Result<HttpResponse, ApiError> {
    tracing::info!(caller, org_id = %org, ?via, "listing projects");
    let listed =
        list_projects(&state.rest, &state.tokens, state.policy, &org, via, filters).await?;
    Ok(HttpResponse::Ok().json(ProjectsResponse {
        install_id: match via {
            Target::Install(id) => Some(id),
            Target::Org(_) => None,
        },
        org_id: org,
        count: listed.len(),
        projects: listed,
    }))
}

/// The org's projects through whoever serves the org (its newest ACTIVE install). Only for the
/// callers of `PROJECTS_SERVICE_ORG_ROUTE_CALLERS`: it answers for any org, whoever installed it.
#[get("/v1/orgs/{org_id}/projects")]
async fn projects(
    state: web::Data<AppState>,
    req: HttpRequest,
    org_id: web::Path<String>,
    query: Result<web::Query<ProjectsQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req)?;
    if !state.org_route_callers.iter().any(|c| c == caller) {
        return Err(ApiError::Forbidden(format!(
            "caller {caller} may list projects by install only (PROJECTS_SERVICE_ORG_ROUTE_CALLERS)"
        )));
    }
    let org = id_param(&org_id, OrgId::parse)?;
    let filters = filters(query)?;
    list(&state, caller, org, Target::Org(org), &filters).await
}

/// The org's projects as one install sees them: that install's token and no other's, so a
/// caller acting for an install never sees an org through someone else's grant.
///
/// Whether the install covers the org is left to Snyk: the token is the install's own, so Snyk
/// can only show what the install covers, and it answers 404 for any other org (-> 404
/// `unknown_org`, as on the org route). Asking token-service first (`GetInstall`'s orgs) would
/// add nothing to that boundary, would check a list frozen at install time against Snyk's
/// current one, and would need a right this service's caller key is not granted (per-caller
/// RPCs, `TOKEN_SERVICE_CALLER_RPCS`: `GetAccessToken` and `ForceRefresh` only).
#[get("/v1/installs/{install_id}/orgs/{org_id}/projects")]
async fn install_projects(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: Result<web::Query<ProjectsQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req)?;
    let (install_id, org_id) = path.into_inner();
    let install = id_param(&install_id, InstallId::parse)?;
    let org = id_param(&org_id, OrgId::parse)?;
    let filters = filters(query)?;
    list(&state, caller, org, Target::Install(install), &filters).await
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

/// Registers the routes (`/metrics` is added by `startup`: here, or on a port of its own).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(projects)
        .service(install_projects)
        .service(healthz)
        .service(readyz)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::NoRoute)
        }));
}
