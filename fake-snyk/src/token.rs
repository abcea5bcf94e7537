//! The API host's `/oauth2/token` (code exchange and refresh rotation) and `/oauth2/revoke`.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::{AppState, SharedState};
use crate::authorize::Params;
use crate::error::OAuthError;
use crate::server::DropConnection;
use crate::store::{GrantError, Issued};

/// The success body: exactly the fields Snyk sends.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_in: u64,
    refresh_token: &'a str,
    refresh_expires_in: u64,
    token_type: &'static str,
    scope: &'a str,
    bot_id: uuid::Uuid,
}

/// Whether the request body is declared as `application/x-www-form-urlencoded`.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Reads the form, refusing other content types and repeated parameters.
fn read_form(headers: &HeaderMap, body: &Bytes) -> Result<Params, OAuthError> {
    if !is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Ok(Params::parse(body))
}

fn single<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, OAuthError> {
    params.single(name).map_err(|n| {
        OAuthError::invalid_request(format!("parameter {n} is included more than once"))
    })
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, OAuthError> {
    single(params, name)?
        .ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is missing")))
}

/// Client authentication by `client_id` and `client_secret` in the body (how Snyk wants it),
/// against the client's active secrets (one, or two during a rotation). Every caller runs it
/// before it looks at a code or a refresh token, so a refused client spends neither.
fn authenticate_client<'a>(state: &AppState, params: &'a Params) -> Result<&'a str, OAuthError> {
    let id = single(params, "client_id")?;
    let secret = single(params, "client_secret")?;
    let mut inner = state.lock();
    let refused = match (id, secret) {
        (Some(id), Some(secret))
            if id == state.config.client_id && inner.secrets.accepts(secret) =>
        {
            return Ok(id);
        }
        (Some(_), Some(_)) => OAuthError::invalid_client("client authentication failed"),
        _ => OAuthError::invalid_client("client_id and client_secret are required in the body"),
    };
    inner.stats.client_authentication_failures += 1;
    Err(refused)
}

/// What a token request produced.
enum Granted {
    Tokens(Issued),
    /// The rotation was applied but the answer must be lost.
    Lost,
}

/// `POST /oauth2/token`.
pub(crate) async fn token(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = read_form(&headers, &body);
    let grant_type = form
        .as_ref()
        .ok()
        .and_then(|f| f.single("grant_type").ok().flatten())
        .unwrap_or("missing")
        .to_owned();
    let latency = {
        let mut inner = state.lock();
        inner.stats.count_token_call(&grant_type);
        inner.faults.token_latency()
    };
    // The wait comes before any state change: a client that gives up (closing the connection)
    // makes hyper drop this future here, so its refresh token stays unredeemed.
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(fault) = state.lock().faults.take_token_error() {
        return OAuthError::injected(fault).into_response();
    }
    if let Some(location) = state.lock().faults.take_token_redirect() {
        return crate::faults::redirect_response(&location);
    }

    let outcome = form.and_then(|form| grant(&state, &form));
    match outcome {
        Ok(Granted::Tokens(issued)) => {
            let delay = state.lock().faults.token_answer_delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            token_response(&issued)
        }
        Ok(Granted::Lost) => {
            let mut response = StatusCode::OK.into_response();
            response.extensions_mut().insert(DropConnection);
            response
        }
        Err(error) => error.into_response(),
    }
}

fn grant(state: &AppState, form: &Params) -> Result<Granted, OAuthError> {
    let grant_type = single(form, "grant_type")?;
    let client_id = authenticate_client(state, form)?;
    match grant_type {
        None => Err(OAuthError::invalid_request(
            "parameter grant_type is missing",
        )),
        Some("authorization_code") => {
            let code = required(form, "code")?;
            let redirect_uri = required(form, "redirect_uri")?;
            let verifier = required(form, "code_verifier")?;
            let mut inner = state.lock();
            let issued = inner
                .store
                .exchange_code(client_id, code, redirect_uri, verifier, Instant::now())
                .map_err(grant_error)?;
            inner.stats.codes_exchanged += 1;
            Ok(Granted::Tokens(issued))
        }
        Some("refresh_token") => {
            let refresh_token = required(form, "refresh_token")?;
            let scope = single(form, "scope")?;
            let mut inner = state.lock();
            match inner
                .store
                .refresh(client_id, refresh_token, scope, Instant::now())
            {
                Ok(issued) => {
                    inner.stats.successful_refreshes += 1;
                    if inner.faults.take_lost_refresh() {
                        inner.stats.lost_responses += 1;
                        Ok(Granted::Lost)
                    } else {
                        Ok(Granted::Tokens(issued))
                    }
                }
                Err(error) => {
                    if error == GrantError::ReusedRefreshToken {
                        inner.stats.spent_refresh_token_reuses += 1;
                    }
                    Err(grant_error(error))
                }
            }
        }
        Some(other) => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {other:?} is not supported"
        ))),
    }
}

fn grant_error(error: GrantError) -> OAuthError {
    match error {
        GrantError::InvalidScope(_) => OAuthError::invalid_scope(error.to_string()),
        GrantError::InvalidGrant(_) | GrantError::ReusedRefreshToken => {
            OAuthError::invalid_grant(error.to_string())
        }
    }
}

fn token_response(issued: &Issued) -> Response {
    let body = TokenResponse {
        access_token: &issued.access_token,
        expires_in: issued.expires_in,
        refresh_token: &issued.refresh_token,
        refresh_expires_in: issued.refresh_expires_in,
        token_type: "bearer",
        scope: &issued.scope,
        bot_id: issued.bot_id,
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `POST /oauth2/revoke`: 200 with an empty body for any token once the client is authenticated.
pub(crate) async fn revoke(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke_inner(&state, &headers, &body) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

fn revoke_inner(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(), OAuthError> {
    let form = read_form(headers, body)?;
    let client_id = authenticate_client(state, &form)?;
    let token = required(&form, "token")?;
    let mut inner = state.lock();
    inner.stats.revocations += 1;
    let revoked = inner.store.revoke(client_id, token, Instant::now());
    tracing::debug!(revoked, "revocation request");
    Ok(())
}
