//! The OAuth2 redirect pair: `GET /auth` starts a sign-in (state + PKCE, 302 to Snyk) and
//! `GET /callback` finishes it (verify the state, hand the code to token-service).
//! `POST /installs/{id}/reconnect` starts a sign-in too, for an install this browser's session
//! holds: the id goes into the server-side state record (never into a URL), and the callback
//! hands it to `CompleteInstall` as `reauthorize_install_id`, so the install keeps its id. The
//! callback checks again that the session still holds it (the browser may have signed out since).
//!
//! Status choices: Deny on Snyk's page is the user's decision, not an error, so its page is a
//! 200; every other outcome that does not install is a 400 (bad, expired, reused or foreign state,
//! Snyk errors, a code Snyk refused), a 429 (too many `/auth` from one client) or a 503 (Redis or
//! token-service down).
//!
//! The callback checks the browser binding before it consumes the state (`state` module): a
//! callback opened in the wrong browser is refused and leaves the sign-in usable by the right one.
//! Snyk's `error` / `error_description` are shown only for a state this browser started; for any
//! other the page is generic, since anyone can put text in a link to our `/callback`.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use secrecy::{ExposeSecret as _, SecretString};
use snykapps_ids::InstallId;
use url::Url;

use super::AppState;
use crate::{
    config::Settings,
    error::PageError,
    pkce,
    state::{Binding, OAuthState, Purpose, StateError, unix_now},
    templates,
    token_client::TokenError,
};

/// Longest `code`, `state`, `error` or `error_description` we accept (real ones are far shorter).
pub const MAX_PARAM: usize = 2048;
/// Longest callback query we look into at all.
const MAX_QUERY: usize = 16 * 1024;

/// How this app presents itself to Snyk's consent page.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    app_url: Url,
    authorize_endpoint: Url,
    client_id: String,
    redirect_uri: String,
    scopes: Option<String>,
}

impl OAuthClient {
    pub fn new(settings: &Settings) -> Self {
        OAuthClient {
            app_url: settings.snyk_app_url.clone(),
            authorize_endpoint: settings.authorize_endpoint(),
            client_id: settings.client_id.clone(),
            redirect_uri: settings.redirect_uri.to_string(),
            scopes: settings.scopes.clone(),
        }
    }

    pub fn app_url(&self) -> &Url {
        &self.app_url
    }

    /// Snyk's consent page for `state` and `challenge`; every value URL-encoded.
    pub fn authorize_url(&self, state: &OAuthState, challenge: &str) -> Url {
        let mut url = self.authorize_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("state", state.as_str())
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(scopes) = &self.scopes {
                q.append_pair("scope", scopes);
            }
        }
        url
    }
}

fn state_store_error(e: StateError) -> PageError {
    match e {
        StateError::Unavailable(e) => PageError::Unavailable {
            what: "sign-in service",
            detail: e.to_string(),
        },
        StateError::Corrupt => PageError::Internal("a pending sign-in record is unreadable".into()),
    }
}

/// `GET /auth`: remembers a new sign-in bound to this browser, then sends it to Snyk.
#[tracing::instrument(skip_all)]
pub async fn start(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    begin_sign_in(&req, &app, Purpose::Install).await
}

/// `POST /installs/{install_id}/reconnect` (the Reconnect button): for an install this browser's
/// session holds, a sign-in whose state records the install, then Snyk's consent page. A post
/// from another site is a 403 `CrossSite`, an install the session does not hold a 403
/// `NotYourInstall`; neither creates a state.
#[tracing::instrument(skip_all, fields(install_id = tracing::field::Empty))]
pub async fn reconnect(
    req: HttpRequest,
    app: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (install_id, _) = super::posted_install_change(&req, &app, "reconnect")?;
    begin_sign_in(&req, &app, Purpose::Reconnect(install_id)).await
}

/// Remembers a sign-in for `purpose` bound to this browser, then sends it to Snyk. Limited per
/// client address like every sign-in.
async fn begin_sign_in(
    req: &HttpRequest,
    app: &AppState,
    purpose: Purpose,
) -> Result<HttpResponse, PageError> {
    if let Err(wait) = app.limiter.check(req) {
        tracing::warn!("refused a sign-in: rate limit of its client address");
        return Err(PageError::TooManyRequests {
            retry_after_secs: service_runtime::retry_after_seconds(wait),
        });
    }
    // One binding per browser, reused, so sign-ins started in two tabs both finish.
    let binding = app.cookies.binding(req).unwrap_or_else(Binding::generate);
    let verifier = pkce::new_verifier();
    let state = app
        .states
        .begin(&binding, &verifier, purpose)
        .await
        .map_err(state_store_error)?;
    let location = app.oauth.authorize_url(&state, &pkce::challenge(&verifier));
    tracing::info!(?purpose, "sign-in started; sending the browser to Snyk");
    // 302 for `GET /auth`; for the Reconnect post a 303 (the browser must GET Snyk's page, which
    // every browser does for a 302 too, but 303 says so).
    let mut res = match purpose {
        Purpose::Install => HttpResponse::Found(),
        Purpose::Reconnect(_) => HttpResponse::SeeOther(),
    };
    Ok(res
        .insert_header((header::LOCATION, location.as_str()))
        .cookie(app.cookies.binding_cookie(&binding))
        .finish())
}

/// The callback's parameters, validated.
#[derive(Default)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "[redacted]"))
            .field("state", &self.state.as_ref().map(|_| "[redacted]"))
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// RFC 6749 appendix A: `code`, `state` and `error` are VSCHAR (printable ASCII, space included).
fn is_vschar(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Validates the query before anything else looks at it: known parameters at most once, each
/// at most [`MAX_PARAM`] bytes of printable text. Unknown parameters are ignored; empty ones
/// count as absent (RFC 6749 §3.1).
fn parse_callback(query: &str) -> Result<CallbackParams, PageError> {
    if query.len() > MAX_QUERY {
        return Err(PageError::BadRequest("the address is too long".into()));
    }
    let mut params = CallbackParams::default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match name.as_ref() {
            "code" => &mut params.code,
            "state" => &mut params.state,
            "error" => &mut params.error,
            "error_description" => &mut params.error_description,
            _ => continue,
        };
        if slot.is_some() {
            return Err(PageError::BadRequest(format!(
                "the {name} parameter is given more than once"
            )));
        }
        if value.len() > MAX_PARAM {
            return Err(PageError::BadRequest(format!(
                "the {name} parameter is too long"
            )));
        }
        // Percent-decoding replaces bytes that are not UTF-8 with U+FFFD.
        let printable = if name == "error_description" {
            !value
                .chars()
                .any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER)
        } else {
            is_vschar(&value)
        };
        if !printable {
            return Err(PageError::BadRequest(format!(
                "the {name} parameter contains characters that are not allowed"
            )));
        }
        if !value.is_empty() {
            *slot = Some(value.into_owned());
        }
    }
    Ok(params)
}

/// `GET /callback`: Snyk sends the browser back here with `code` + `state`, or with `error`.
#[tracing::instrument(skip_all, fields(install_id = tracing::field::Empty))]
pub async fn callback(
    req: HttpRequest,
    app: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let params = parse_callback(req.query_string())?;
    let binding = app.cookies.binding(&req);

    if let Some(error) = params.error {
        // Snyk's words only for a sign-in this browser started; its state is spent then.
        let state = params.state.as_deref().and_then(OAuthState::parse);
        let pending = match &state {
            Some(state) => app.states.peek(state).await.map_err(state_store_error)?,
            None => None,
        };
        let (Some(state), Some(pending)) = (state, pending) else {
            tracing::warn!("Snyk error for an unknown state; not showing its text");
            return Err(PageError::UnverifiedSignInError);
        };
        if !pending.is_bound_to(binding.as_ref()) || pending.is_expired(unix_now()) {
            tracing::warn!("Snyk error for a state another browser started; not showing its text");
            return Err(PageError::UnverifiedSignInError);
        }
        if !app
            .states
            .consume(&state, &pending)
            .await
            .map_err(state_store_error)?
        {
            // A racing callback of the same browser spent it first: that one shows the outcome.
            return Err(PageError::StateExpired);
        }
        if error == "access_denied" {
            tracing::info!("the user denied the authorization at Snyk");
            return Ok(HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(templates::cancelled()));
        }
        tracing::warn!(error = %error, "Snyk refused the authorization");
        return Err(PageError::Snyk {
            code: error,
            description: params.error_description,
        });
    }

    let state = params
        .state
        .ok_or_else(|| PageError::BadRequest("the state parameter is missing".into()))?;
    let code: SecretString = params
        .code
        .ok_or_else(|| PageError::BadRequest("the code parameter is missing".into()))?
        .into();
    // A value of a shape we never issue cannot be pending.
    let state = OAuthState::parse(&state).ok_or(PageError::StateExpired)?;
    let pending = app
        .states
        .peek(&state)
        .await
        .map_err(state_store_error)?
        .ok_or(PageError::StateExpired)?;
    if pending.is_expired(unix_now()) {
        return Err(PageError::StateExpired);
    }
    // Before consuming: a callback from the wrong browser must not spend the right one's state.
    if !pending.is_bound_to(binding.as_ref()) {
        tracing::warn!("refused a callback whose state another browser started");
        return Err(PageError::WrongBrowser);
    }
    // Single use: of concurrent callbacks with this state, exactly one gets past here.
    if !app
        .states
        .consume(&state, &pending)
        .await
        .map_err(state_store_error)?
    {
        return Err(PageError::StateExpired);
    }

    let purpose = pending.purpose();
    let mut session = app.cookies.session(&req);
    // A Reconnect was allowed because the session held the install when it started; the session
    // may have ended since (signed out, expired, another user on this browser with the binding
    // still set). The state is spent either way: this sign-in is over.
    if let Purpose::Reconnect(id) = purpose
        && !session.contains(&id)
    {
        tracing::warn!(install_id = %id, "refused a reconnect: the session no longer holds the install");
        return Err(PageError::NotYourInstall);
    }

    let install = app
        .tokens
        .complete_install(
            code.expose_secret(),
            pending.verifier(),
            &app.oauth.redirect_uri,
            purpose,
        )
        .await
        .map_err(|e| match (purpose, e) {
            // Disconnected (here or by an operator) while this browser was at Snyk.
            (Purpose::Reconnect(_), TokenError::NotFound) => PageError::InstallGone,
            (_, e) => e.into(),
        })?;
    let install_id = answered_install(purpose, &install.install_id)?;
    tracing::Span::current().record("install_id", tracing::field::display(&install_id));
    match purpose {
        Purpose::Reconnect(_) => tracing::info!(orgs = install.orgs.len(), "install reconnected"),
        Purpose::Install => tracing::info!(orgs = install.orgs.len(), "install completed"),
    }
    session.add(install_id);
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/installs/{install_id}")))
        .cookie(app.cookies.session_cookie(&session))
        .finish())
}

/// The install `CompleteInstall` answered with, as `/callback` may use it: a well-formed id (it
/// goes into a Location header and a cookie) and, for a reconnect, the very install reconnected:
/// a token-service that ignored `reauthorize_install_id` must not make one install show as
/// another. Either failure is a 500 page.
fn answered_install(purpose: Purpose, answered: &str) -> Result<InstallId, PageError> {
    let install_id = InstallId::parse(answered)
        .map_err(|_| PageError::Internal("token-service returned a malformed install id".into()))?;
    match purpose {
        Purpose::Reconnect(id) if id != install_id => Err(PageError::Internal(format!(
            "token-service answered a reconnect of {id} with install {install_id}"
        ))),
        _ => Ok(install_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_answered_with_another_install_is_a_500_page() {
        use actix_web::ResponseError as _;
        let a = InstallId::new_random();
        let b = InstallId::new_random();
        assert_eq!(
            answered_install(Purpose::Install, &b.to_string()).ok(),
            Some(b)
        );
        assert_eq!(
            answered_install(Purpose::Reconnect(a), &a.to_string()).ok(),
            Some(a)
        );
        for (purpose, answered) in [
            (Purpose::Reconnect(a), b.to_string()),
            (Purpose::Install, "not-an-id".to_owned()),
            (Purpose::Reconnect(a), format!("{a}\r\nSet-Cookie: x=y")),
        ] {
            let err = answered_install(purpose, &answered).expect_err(&answered);
            assert_eq!(err.status_code(), 500, "{answered}: {err:?}");
        }
    }

    fn client(scopes: Option<&str>) -> OAuthClient {
        OAuthClient {
            app_url: Url::parse("https://app.snyk.io").expect("url"),
            authorize_endpoint: Url::parse("https://app.snyk.io/oauth2/authorize").expect("url"),
            client_id: "client id&x".into(),
            redirect_uri: "http://localhost:8080/callback".into(),
            scopes: scopes.map(str::to_owned),
        }
    }

    #[test]
    fn authorize_url_carries_every_parameter_encoded() {
        let state = OAuthState::generate();
        let url = client(Some("org.read org.project.read")).authorize_url(&state, "challenge");
        assert_eq!(url.path(), "/oauth2/authorize");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("client id&x"));
        assert_eq!(get("redirect_uri"), Some("http://localhost:8080/callback"));
        assert_eq!(get("state"), Some(state.as_str()));
        assert_eq!(get("code_challenge"), Some("challenge"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("scope"), Some("org.read org.project.read"));
        assert!(url.as_str().contains("client_id=client+id%26x"), "{url}");
        assert!(
            client(None)
                .authorize_url(&state, "c")
                .query_pairs()
                .all(|(k, _)| k != "scope")
        );
    }

    #[test]
    fn callback_parameters_are_validated() {
        let ok =
            parse_callback("code=abc&state=def&extra=ignored&error_description=").expect("valid");
        assert_eq!(ok.code.as_deref(), Some("abc"));
        assert_eq!(ok.state.as_deref(), Some("def"));
        assert_eq!(ok.error_description, None, "empty counts as absent");

        let long = format!("state={}", "a".repeat(MAX_PARAM + 1));
        let huge = format!("x={}", "a".repeat(MAX_QUERY));
        for bad in [
            "code=a&code=b",
            long.as_str(),
            huge.as_str(),
            "state=%FF%FE",
            "code=a%00b",
            "error=x%0Ay",
            "error_description=%C3%28",
            "state=caf%C3%A9",
        ] {
            let err = parse_callback(bad).expect_err(bad);
            assert!(matches!(err, PageError::BadRequest(_)), "{bad}: {err:?}");
        }
        let described = parse_callback("error=invalid_scope&error_description=caf%C3%A9+%3Cb%3E")
            .expect("valid");
        assert_eq!(described.error_description.as_deref(), Some("café <b>"));
    }

    #[test]
    fn debug_hides_code_and_state() {
        let p = parse_callback("code=the-code&state=the-state").expect("valid");
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("the-code") && !dbg.contains("the-state"),
            "{dbg}"
        );
    }
}
