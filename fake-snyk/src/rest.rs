//! The API host's REST endpoints under `/rest`: bearer authentication, `version` negotiation,
//! JSON:API bodies and pagination for `/self`, `/orgs` and `/orgs/{org_id}/projects`.

use std::time::Instant;

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::{AppState, SharedState};
use crate::catalog::{Org, ProjectSummary};
use crate::error::RestError;
use crate::pagination::{Cursor, PageRequest, encode_cursor, paginate};
use crate::store::Principal;
use crate::version::{self, Served, VersionError};

const JSON_API: &str = "application/vnd.api+json";

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/self", get(get_self))
        .route("/orgs", get(list_orgs))
        .route("/orgs/{org_id}/projects", get(list_projects))
        .fallback(unknown)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    SelfPrincipal,
    Orgs,
    Projects,
    Unknown,
}

impl Endpoint {
    /// The key in `Stats::rest_calls_by_path`.
    fn stats_key(self) -> Option<&'static str> {
        match self {
            Self::SelfPrincipal => Some("self"),
            Self::Orgs => Some("orgs"),
            Self::Projects => Some("projects"),
            Self::Unknown => None,
        }
    }

    fn releases(self) -> &'static [&'static str] {
        match self {
            Self::SelfPrincipal => version::SELF_RELEASES,
            Self::Orgs => version::ORGS_RELEASES,
            Self::Projects => version::PROJECTS_RELEASES,
            Self::Unknown => &[],
        }
    }

    /// The OAuth scope the endpoint needs (rest.json: "Required permissions").
    fn scope(self) -> Option<&'static str> {
        match self {
            Self::Orgs => Some("org.read"),
            Self::Projects => Some("org.project.read"),
            Self::SelfPrincipal | Self::Unknown => None,
        }
    }
}

/// Query parameters as sent.
#[derive(Debug)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The one value of a scalar parameter; sending it twice is a 400.
    fn single(&self, name: &'static str) -> Result<Option<&str>, RestError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(RestError::bad_parameter(
                name,
                format!("parameter {name} is given more than once"),
            )),
            (value, _) => Ok(value),
        }
    }

    /// A list parameter (`style: form, explode: false`): comma-separated, also accepted repeated.
    fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Parameters to carry into `links`, in the order sent.
    fn carried(&self, names: &[&str]) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

/// What a handler gets once the common checks passed.
struct Ctx<'a> {
    state: &'a AppState,
    principal: Principal,
    query: Query,
    version: String,
}

/// Response headers that depend on how far the request got.
#[derive(Default)]
struct Negotiated {
    requested: Option<String>,
    served: Option<Served>,
}

async fn get_self(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    handle(&state, Endpoint::SelfPrincipal, query, &headers, self_body)
}

async fn list_orgs(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    handle(&state, Endpoint::Orgs, query, &headers, orgs_body)
}

async fn list_projects(
    State(state): State<SharedState>,
    Path(org_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // A malformed id has no latency; `projects_body` answers it.
    let latency = Uuid::try_parse(&org_id).map_or_else(
        |_| Default::default(),
        |id| state.lock().faults.org_latency(id),
    );
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    handle(&state, Endpoint::Projects, query, &headers, |ctx| {
        projects_body(ctx, &org_id)
    })
}

async fn unknown(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    handle(&state, Endpoint::Unknown, query, &headers, |_| {
        Err(RestError::not_found("no such REST endpoint"))
    })
}

/// Counts the request among those being answered while it runs (`Stats::rest_in_flight_max`).
pub(crate) async fn count_in_flight(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    struct InFlight<'a>(&'a AppState);
    impl Drop for InFlight<'_> {
        // Also when the client hangs up and the request is dropped mid-way.
        fn drop(&mut self) {
            self.0.lock().rest_in_flight -= 1;
        }
    }
    let _in_flight = {
        let mut inner = state.lock();
        inner.rest_in_flight += 1;
        inner.stats.rest_in_flight_max = inner.stats.rest_in_flight_max.max(inner.rest_in_flight);
        InFlight(&state)
    };
    next.run(request).await
}

/// The pipeline every REST request goes through: injected fault, bearer token, rate limit,
/// version, scope, then the endpoint's own work; then headers and counters.
fn handle(
    state: &AppState,
    endpoint: Endpoint,
    query: Option<String>,
    headers: &HeaderMap,
    body: impl FnOnce(&Ctx<'_>) -> Result<Value, RestError>,
) -> Response {
    let redirect = state.lock().faults.take_rest_redirect();
    if let Some(location) = redirect {
        state
            .lock()
            .stats
            .count_rest_call(307, endpoint.stats_key());
        return crate::faults::redirect_response(&location);
    }
    let request_id = Uuid::new_v4();
    let mut negotiated = Negotiated::default();
    let result = process(state, endpoint, query, headers, &mut negotiated, body);

    let (status, document, retry_after) = match result {
        Ok(document) => (axum::http::StatusCode::OK, document, None),
        Err(error) => (error.status, error.document(request_id), error.retry_after),
    };
    let mut response = (status, document.to_string()).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    insert(out, "snyk-request-id", &request_id.to_string());
    if let Some(requested) = &negotiated.requested {
        insert(out, "snyk-version-requested", requested);
    }
    if let Some(served) = negotiated.served {
        insert(out, "snyk-version-served", served.label);
        insert(
            out,
            "snyk-version-lifecycle-stage",
            served.stability.stage(),
        );
    }
    if let Some(secs) = retry_after {
        out.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }

    let mut inner = state.lock();
    inner
        .stats
        .count_rest_call(status.as_u16(), endpoint.stats_key());
    if status.is_success() && inner.faults.rest_call_succeeded() {
        inner.store.expire_access_tokens(Instant::now());
    }
    response
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn process(
    state: &AppState,
    endpoint: Endpoint,
    query: Option<String>,
    headers: &HeaderMap,
    negotiated: &mut Negotiated,
    body: impl FnOnce(&Ctx<'_>) -> Result<Value, RestError>,
) -> Result<Value, RestError> {
    if let Some(fault) = state.lock().faults.take_rest_error() {
        return Err(RestError::injected(fault));
    }
    if endpoint == Endpoint::Unknown {
        return Err(RestError::not_found("no such REST endpoint"));
    }
    let token = bearer_token(headers).ok_or_else(|| {
        RestError::unauthorized("an Authorization header with a bearer token is required")
    })?;
    let principal = {
        let now = Instant::now();
        let mut inner = state.lock();
        let principal = inner.store.authenticate(token, now).ok_or_else(|| {
            RestError::unauthorized("the access token is invalid, expired or revoked")
        })?;
        inner.admit_rest_request(token, now)?;
        principal
    };

    let query = Query::parse(query.as_deref());
    let raw_version = query.single("version")?;
    let today = OffsetDateTime::now_utc().date();
    let requested = version::parse(raw_version, today).map_err(version_error)?;
    // Parsing succeeded, so the value is present.
    let raw_version = raw_version.unwrap_or_default().to_owned();
    negotiated.requested = Some(raw_version.clone());
    let served =
        version::resolve(endpoint.releases(), &requested, &raw_version).map_err(version_error)?;
    negotiated.served = Some(served);

    if let Some(scope) = endpoint.scope()
        && !principal.has_scope(scope)
    {
        return Err(RestError::forbidden(format!(
            "the token was not granted the {scope} scope"
        )));
    }
    body(&Ctx {
        state,
        principal,
        query,
        version: raw_version,
    })
}

/// `Authorization: bearer <token>`, the scheme matched case-insensitively (RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn version_error(error: VersionError) -> RestError {
    match error {
        // Snyk answers 404 when no release of the endpoint matches the requested version.
        VersionError::NotReleased(_) => RestError::version_not_found(error.to_string()),
        VersionError::Missing | VersionError::Malformed(_) | VersionError::Future(_) => {
            RestError::bad_parameter("version", error.to_string())
        }
    }
}

/// A relative link without the `/rest` prefix, as Snyk sends them.
fn link(path: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    format!("{path}?{}", query.finish())
}

/// `links` for a page: `self` repeats the request, `next`/`prev` only when there is more.
fn page_links(
    path: &str,
    ctx: &Ctx<'_>,
    filters: &[&str],
    request: PageRequest,
    page: &crate::pagination::Page,
) -> Value {
    let mut base = vec![
        ("version".to_owned(), ctx.version.clone()),
        ("limit".to_owned(), request.limit.to_string()),
    ];
    base.extend(ctx.query.carried(filters));
    let with = |name: &str, cursor: Option<String>| {
        let mut params = base.clone();
        if let Some(cursor) = cursor {
            params.push((name.to_owned(), cursor));
        }
        link(path, &params)
    };
    let self_link = match request.cursor {
        Cursor::First => with("", None),
        Cursor::After(i) => with("starting_after", Some(encode_cursor(i))),
        Cursor::Before(i) => with("ending_before", Some(encode_cursor(i))),
    };
    let mut links = json!({ "self": self_link });
    if page.has_next
        && let Some(&last) = page.indices.last()
    {
        links["next"] = json!(with("starting_after", Some(encode_cursor(last))));
    }
    if page.has_prev {
        // An empty page past the end still leads back to the items before it.
        let first = page
            .indices
            .first()
            .copied()
            .unwrap_or(match request.cursor {
                Cursor::After(i) => i.saturating_add(1),
                Cursor::Before(i) => i,
                Cursor::First => 0,
            });
        links["prev"] = json!(with("ending_before", Some(encode_cursor(first))));
    }
    links
}

fn page_request(query: &Query) -> Result<PageRequest, RestError> {
    PageRequest::parse(
        query.single("limit")?,
        query.single("starting_after")?,
        query.single("ending_before")?,
    )
}

/// `GET /rest/self`: the app instance the token belongs to.
fn self_body(ctx: &Ctx<'_>) -> Result<Value, RestError> {
    let mut attributes = json!({"name": "Fake Snyk App"});
    if let Some(org) = ctx
        .state
        .catalog()
        .orgs()
        .iter()
        .find(|o| ctx.principal.sees(o.id))
    {
        attributes["default_org_context"] = json!(org.id);
    }
    Ok(json!({
        "jsonapi": {"version": "1.0"},
        "data": {
            "type": "app_instance",
            "id": ctx.principal.bot_id,
            "attributes": attributes,
        },
        "links": {"self": link("/self", &[("version".to_owned(), ctx.version.clone())])},
    }))
}

fn parse_bool(query: &Query, name: &'static str) -> Result<Option<bool>, RestError> {
    match query.single(name)? {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(RestError::bad_parameter(
            name,
            format!("{name} {other:?} must be true or false"),
        )),
    }
}

fn parse_uuid(name: &'static str, raw: &str) -> Result<Uuid, RestError> {
    // rest.json says `format: uuid`: the hyphenated form only.
    Uuid::try_parse(raw)
        .ok()
        .filter(|_| raw.len() == 36)
        .ok_or_else(|| RestError::bad_parameter(name, format!("{name} {raw:?} is not a UUID")))
}

/// `GET /rest/orgs`: the seeded orgs the install covers, with the `slug`, `name`, `is_personal`
/// and `group_id` filters of rest.json.
fn orgs_body(ctx: &Ctx<'_>) -> Result<Value, RestError> {
    let query = &ctx.query;
    let request = page_request(query)?;
    let slug = query.single("slug")?;
    let name = query.single("name")?.map(str::to_lowercase);
    let is_personal = parse_bool(query, "is_personal")?;
    let group_id = query
        .single("group_id")?
        .map(|raw| parse_uuid("group_id", raw))
        .transpose()?;

    let catalog = ctx.state.catalog();
    let orgs = catalog.orgs();
    let matches = |i: usize| {
        let org = &orgs[i];
        ctx.principal.sees(org.id)
            && slug.is_none_or(|s| org.slug == s)
            && name
                .as_deref()
                .is_none_or(|n| org.name.to_lowercase().contains(n))
            && is_personal.is_none_or(|p| !p)
            && group_id.is_none_or(|g| org.group_id == g)
    };
    let page = paginate(orgs.len(), request, matches);
    let data: Vec<Value> = page.indices.iter().map(|&i| orgs[i].resource()).collect();
    let links = page_links(
        "/orgs",
        ctx,
        &["slug", "name", "is_personal", "group_id"],
        request,
        &page,
    );
    Ok(json!({"jsonapi": {"version": "1.0"}, "data": data, "links": links}))
}

/// Project filters that are cheap to apply to generated projects.
struct ProjectFilter {
    origins: Vec<String>,
    types: Vec<String>,
    names_start_with: Vec<String>,
    names: Vec<String>,
    ids: Vec<Uuid>,
    target_reference: Option<String>,
    target_file: Option<String>,
}

const PROJECT_FILTERS: &[&str] = &[
    "origins",
    "types",
    "names_start_with",
    "names",
    "ids",
    "target_reference",
    "target_file",
];

impl ProjectFilter {
    fn parse(query: &Query) -> Result<Self, RestError> {
        let ids = query
            .list("ids")
            .iter()
            .map(|raw| parse_uuid("ids", raw))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            origins: query.list("origins"),
            types: query.list("types"),
            names_start_with: query.list("names_start_with"),
            names: query.list("names"),
            ids,
            target_reference: query.single("target_reference")?.map(str::to_owned),
            target_file: query.single("target_file")?.map(str::to_owned),
        })
    }

    fn is_empty(&self) -> bool {
        self.origins.is_empty()
            && self.types.is_empty()
            && self.names_start_with.is_empty()
            && self.names.is_empty()
            && self.ids.is_empty()
            && self.target_reference.is_none()
            && self.target_file.is_none()
    }

    fn matches(&self, p: &ProjectSummary) -> bool {
        let any_or_empty = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|v| f(v))
        };
        any_or_empty(&self.origins, &|o| p.origin == o)
            && any_or_empty(&self.types, &|t| p.kind == t)
            && any_or_empty(&self.names_start_with, &|n| p.name.starts_with(n))
            && any_or_empty(&self.names, &|n| p.name == n)
            && (self.ids.is_empty() || self.ids.contains(&p.id))
            && self
                .target_reference
                .as_deref()
                .is_none_or(|r| p.target_reference == r)
            && self
                .target_file
                .as_deref()
                .is_none_or(|f| p.target_file == f)
    }
}

/// `GET /rest/orgs/{org_id}/projects`.
fn projects_body(ctx: &Ctx<'_>, org_id: &str) -> Result<Value, RestError> {
    let id = parse_uuid("org_id", org_id)?;
    // Snyk answers an org outside the install exactly like one that does not exist: 404.
    let catalog = ctx.state.catalog();
    let org: &Org = catalog
        .org(id)
        .filter(|o| ctx.principal.sees(o.id))
        .ok_or_else(|| RestError::not_found(format!("org {id} not found")))?;
    let query = &ctx.query;
    let request = page_request(query)?;
    let filter = ProjectFilter::parse(query)?;
    let count_only = match query.single("meta_count")? {
        None => false,
        Some("only") => true,
        Some(other) => {
            return Err(RestError::bad_parameter(
                "meta_count",
                format!("meta_count {other:?} must be \"only\""),
            ));
        }
    };
    let matches = |i: usize| filter.is_empty() || filter.matches(&org.project_summary(i));
    let path = format!("/orgs/{id}/projects");

    if count_only {
        let count = (0..org.projects).filter(|&i| matches(i)).count();
        let mut params = vec![
            ("version".to_owned(), ctx.version.clone()),
            ("meta_count".to_owned(), "only".to_owned()),
        ];
        params.extend(query.carried(PROJECT_FILTERS));
        return Ok(json!({
            "jsonapi": {"version": "1.0"},
            "links": {"self": link(&path, &params)},
            "meta": {"count": count},
        }));
    }

    let page = paginate(org.projects, request, matches);
    let data: Vec<Value> = page.indices.iter().map(|&i| org.project(i)).collect();
    let links = page_links(&path, ctx, PROJECT_FILTERS, request, &page);
    Ok(json!({"jsonapi": {"version": "1.0"}, "data": data, "links": links}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("bearer abc", Some("abc")),
            ("Bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("token abc", None),
            ("bearer ", None),
            ("abc", None),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_token(&headers), expected, "{value}");
        }
    }

    #[test]
    fn links_are_relative_and_encoded() {
        assert_eq!(
            link(
                "/orgs/x/projects",
                &[
                    ("version".to_owned(), "2024-05-31~beta".to_owned()),
                    ("names_start_with".to_owned(), "a b".to_owned()),
                ]
            ),
            "/orgs/x/projects?version=2024-05-31%7Ebeta&names_start_with=a+b"
        );
    }
}
