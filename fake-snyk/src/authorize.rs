//! The app host's `/oauth2/authorize`: request validation, the consent page and the decision that
//! redirects back to the client with a code or an error.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::{AppState, SharedState};
use crate::config::Config;
use crate::error::{authorize_error_page, html_escape, html_page};
use crate::pkce;
use crate::store::Orgs;

/// Why an authorization request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// `client_id` absent (or sent twice): answered with an error page, never a redirect.
    #[error("client_id is missing or sent more than once")]
    MissingClientId,
    /// `client_id` is not the registered client: error page.
    #[error("unknown client_id {0:?}")]
    UnknownClient(String),
    /// `redirect_uri` absent (or sent twice): error page.
    #[error("redirect_uri is missing or sent more than once")]
    MissingRedirectUri,
    /// `redirect_uri` is not registered exactly: error page.
    #[error("redirect_uri {0:?} is not registered for this client")]
    UnregisteredRedirectUri(String),
    /// A parameter is included more than once (RFC 6749 §3.1): redirect with `invalid_request`.
    #[error("parameter {0} is included more than once")]
    DuplicateParameter(String),
    /// A required parameter is absent or empty: redirect with `invalid_request`.
    #[error("{0} is missing")]
    MissingParameter(&'static str),
    /// `response_type` is not `code`: redirect with `unsupported_response_type`.
    #[error("response_type must be \"code\"")]
    UnsupportedResponseType,
    /// `code_challenge` is not 43 characters of base64url: redirect with `invalid_request`.
    #[error("code_challenge must be 43 characters of base64url (PKCE S256)")]
    InvalidCodeChallenge,
    /// `code_challenge_method` is not `S256`: redirect with `invalid_request`.
    #[error("code_challenge_method must be S256")]
    UnsupportedChallengeMethod,
    /// A requested scope is not available to the client: redirect with `invalid_scope`.
    #[error("scope {0:?} is not available to this client")]
    InvalidScope(String),
}

impl AuthorizeError {
    /// The OAuth `error` code a redirect carries.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope(_) => "invalid_scope",
            _ => "invalid_request",
        }
    }

    /// Whether the error goes back to the client by redirect (false: shown to the user only,
    /// because the redirect URI cannot be trusted).
    pub fn redirects(&self) -> bool {
        !matches!(
            self,
            Self::MissingClientId
                | Self::UnknownClient(_)
                | Self::MissingRedirectUri
                | Self::UnregisteredRedirectUri(_)
        )
    }
}

/// Query or form parameters, kept as sent so that duplicates can be refused.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(raw)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The single non-empty value of `name`; `Err` if it was sent more than once. RFC 6749 §3.1:
    /// a parameter sent without a value is treated as omitted.
    pub(crate) fn single(&self, name: &str) -> Result<Option<&str>, String> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(name.to_owned()),
            (Some(v), None) if !v.is_empty() => Ok(Some(v.as_str())),
            _ => Ok(None),
        }
    }

    pub(crate) fn insert(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }
}

/// A request that passed validation.
#[derive(Debug)]
struct ValidRequest {
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    requested_scope: Option<String>,
    granted_scope: String,
}

/// What a failed validation answers.
#[derive(Debug)]
struct Refusal {
    error: AuthorizeError,
    /// Where to send the browser, when that is allowed.
    redirect_uri: Option<String>,
    state: Option<String>,
}

fn validate(config: &Config, params: &Params) -> Result<ValidRequest, Refusal> {
    let page_only = |error| Refusal {
        error,
        redirect_uri: None,
        state: None,
    };
    let client_id = params
        .single("client_id")
        .ok()
        .flatten()
        .ok_or_else(|| page_only(AuthorizeError::MissingClientId))?;
    if client_id != config.client_id {
        return Err(page_only(AuthorizeError::UnknownClient(
            client_id.to_owned(),
        )));
    }
    let redirect_uri = params
        .single("redirect_uri")
        .ok()
        .flatten()
        .ok_or_else(|| page_only(AuthorizeError::MissingRedirectUri))?;
    if !config.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(page_only(AuthorizeError::UnregisteredRedirectUri(
            redirect_uri.to_owned(),
        )));
    }

    // From here on the redirect URI is trusted and errors go back to the client.
    let state = params.single("state").ok().flatten().map(str::to_owned);
    let refuse = |error| Refusal {
        error,
        redirect_uri: Some(redirect_uri.to_owned()),
        state: state.clone(),
    };
    let get = |name: &'static str| {
        params
            .single(name)
            .map_err(|n| refuse(AuthorizeError::DuplicateParameter(n)))
    };
    let required = |name: &'static str| {
        get(name)?.ok_or_else(|| refuse(AuthorizeError::MissingParameter(name)))
    };

    if required("response_type")? != "code" {
        return Err(refuse(AuthorizeError::UnsupportedResponseType));
    }
    let valid_state = required("state")?;
    let code_challenge = required("code_challenge")?;
    if !pkce::is_valid_challenge(code_challenge) {
        return Err(refuse(AuthorizeError::InvalidCodeChallenge));
    }
    if required("code_challenge_method")? != "S256" {
        return Err(refuse(AuthorizeError::UnsupportedChallengeMethod));
    }
    let requested_scope = get("scope")?;
    let granted_scope = match requested_scope {
        None => config
            .scope
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        Some(requested) => {
            let mut granted: Vec<&str> = Vec::new();
            for s in requested.split_whitespace() {
                if !config.scope.split_whitespace().any(|allowed| allowed == s) {
                    return Err(refuse(AuthorizeError::InvalidScope(s.to_owned())));
                }
                if !granted.contains(&s) {
                    granted.push(s);
                }
            }
            if granted.is_empty() {
                return Err(refuse(AuthorizeError::MissingParameter("scope")));
            }
            granted.join(" ")
        }
    };

    Ok(ValidRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: valid_state.to_owned(),
        code_challenge: code_challenge.to_owned(),
        requested_scope: requested_scope.map(str::to_owned),
        granted_scope,
    })
}

fn issue_code(state: &AppState, request: &ValidRequest, orgs: Orgs) -> String {
    state.lock().store.issue_code(
        &request.client_id,
        &request.redirect_uri,
        &request.code_challenge,
        &request.granted_scope,
        orgs,
        Instant::now(),
    )
}

/// The test shortcut behind [`crate::FakeSnyk::approve`] (`orgs`: every org) and
/// [`crate::FakeSnyk::approve_for_orgs`]: the same validation as the page plus Approve, with
/// `response_type=code`, `code_challenge_method=S256` and some `state` filled in.
pub(crate) fn approve(
    state: &AppState,
    client_id: &str,
    redirect_uri: &str,
    code_challenge: &str,
    scope: Option<&str>,
    orgs: Orgs,
) -> Result<String, AuthorizeError> {
    let mut params = Params::default();
    params.insert("response_type", "code");
    params.insert("client_id", client_id);
    params.insert("redirect_uri", redirect_uri);
    params.insert("state", "approved-by-test");
    params.insert("code_challenge", code_challenge);
    params.insert("code_challenge_method", "S256");
    if let Some(scope) = scope {
        params.insert("scope", scope);
    }
    let request = validate(&state.config, &params).map_err(|r| r.error)?;
    Ok(issue_code(state, &request, orgs))
}

fn refusal_response(refusal: Refusal) -> Response {
    let description = refusal.error.to_string();
    match refusal.redirect_uri {
        Some(uri) => {
            let mut pairs = vec![
                ("error", refusal.error.error_code()),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = refusal.state.as_deref() {
                pairs.push(("state", state));
            }
            redirect(&uri, &pairs)
        }
        None => authorize_error_page(refusal.error.error_code(), &description),
    }
}

/// 302 to a registered redirect URI with `pairs` appended to its query.
fn redirect(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(uri) else {
        // Registered URIs are checked at start-up; this cannot happen short of a bug.
        return html_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "<p>registered redirect URI does not parse</p>",
        );
    };
    url.query_pairs_mut().extend_pairs(pairs);
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => html_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "<p>redirect URI is not a valid header value</p>",
        ),
    }
}

/// `GET /oauth2/authorize`: the consent page, or the refusal.
pub(crate) async fn page(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let request = match validate(&state.config, &params) {
        Ok(request) => request,
        Err(refusal) => return refusal_response(refusal),
    };

    let mut hidden = String::new();
    let mut field = |name: &str, value: &str| {
        hidden.push_str(&format!(
            "  <input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            html_escape(name),
            html_escape(value)
        ));
    };
    field("response_type", "code");
    field("client_id", &request.client_id);
    field("redirect_uri", &request.redirect_uri);
    field("state", &request.state);
    field("code_challenge", &request.code_challenge);
    field("code_challenge_method", "S256");
    if let Some(scope) = &request.requested_scope {
        field("scope", scope);
    }
    let scopes: String = request
        .granted_scope
        .split_whitespace()
        .map(|s| format!("  <li>{}</li>\n", html_escape(s)))
        .collect();
    let orgs: String = state
        .catalog()
        .orgs()
        .iter()
        .map(|o| format!("  <li>{}</li>\n", html_escape(&o.name)))
        .collect();
    let body = format!(
        "<h1>Authorize app</h1>\n\
         <p>The app <strong id=\"client_id\">{client}</strong> asks for access with these scopes:</p>\n\
         <ul id=\"scopes\">\n{scopes}</ul>\n\
         <p>It will be able to see these organizations:</p>\n<ul id=\"orgs\">\n{orgs}</ul>\n\
         <p>It will send you back to <code id=\"redirect_uri\">{redirect}</code>.</p>\n\
         <form method=\"post\" action=\"/oauth2/authorize/decision\">\n{hidden}\
         \x20 <button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\n\
         \x20 <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Deny</button>\n\
         </form>",
        client = html_escape(&request.client_id),
        redirect = html_escape(&request.redirect_uri),
    );
    html_page(StatusCode::OK, "Authorize app", &body)
}

/// `POST /oauth2/authorize/decision`: re-validates the request carried by the form, then
/// redirects with a code (Approve) or `access_denied` (Deny).
pub(crate) async fn decision(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !crate::token::is_form(&headers) {
        return authorize_error_page(
            "invalid_request",
            "the decision must be posted as application/x-www-form-urlencoded",
        );
    }
    let params = Params::parse(&body);
    let request = match validate(&state.config, &params) {
        Ok(request) => request,
        Err(refusal) => return refusal_response(refusal),
    };
    match params.single("decision") {
        Ok(Some("approve")) => {
            let code = issue_code(&state, &request, Orgs::All);
            redirect(
                &request.redirect_uri,
                &[("code", &code), ("state", &request.state)],
            )
        }
        Ok(Some("deny")) => redirect(
            &request.redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "the user denied the authorization request",
                ),
                ("state", &request.state),
            ],
        ),
        _ => redirect(
            &request.redirect_uri,
            &[
                ("error", "invalid_request"),
                ("error_description", "decision must be approve or deny"),
                ("state", &request.state),
            ],
        ),
    }
}
