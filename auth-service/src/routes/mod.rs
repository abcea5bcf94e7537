//! The routes, one module per page group, and what every handler shares.
//!
//! Every route and its answers are described once, in `docs/api.md` ("auth-service").
//!
//! `/metrics` is not here: it has its own listener (`AUTH_SERVICE_METRICS_ADDR`, see `startup`).

use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, guard, web};
use snykapps_ids::InstallId;
use url::Url;

use crate::{
    error::PageError,
    projects_client::ProjectsClient,
    rate_limit::AuthRateLimiter,
    security,
    session::{Cookies, Session},
    state::StateStore,
    token_client::TokenClient,
};

pub mod disconnect;
pub mod health;
pub mod home;
pub mod installs;
pub mod logout;
pub mod oauth;

/// What the handlers share (one per server, behind `web::Data`).
#[derive(Debug)]
pub struct AppState {
    pub oauth: oauth::OAuthClient,
    pub states: StateStore,
    pub tokens: TokenClient,
    pub projects: ProjectsClient,
    pub cookies: Cookies,
    /// The per-client limit of `/auth`.
    pub limiter: AuthRateLimiter,
    /// The browser-facing origin (of `SNYK_REDIRECT_URI`): the `Origin` our own forms post with.
    pub public_origin: String,
    /// Set at shutdown: readiness turns false while in-flight requests finish.
    pub draining: service_runtime::http::Draining,
}

impl AppState {
    /// The Snyk origin the CSP lets forms reach (via our `/auth` redirect).
    pub fn snyk_app_url(&self) -> &Url {
        self.oauth.app_url()
    }
}

/// The path's `{install_id}` when this browser's session holds it: the only way a browser may
/// see or change an install. `None` for a malformed id too (no session can hold one).
pub(crate) fn session_install(req: &HttpRequest, app: &AppState) -> Option<InstallId> {
    session_install_in(req, &app.cookies.session(req))
}

fn session_install_in(req: &HttpRequest, session: &Session) -> Option<InstallId> {
    req.match_info()
        .get("install_id")
        .and_then(|raw| InstallId::parse(raw).ok())
        .filter(|id| session.contains(id))
}

/// The checks of a post that changes an install (`action`: "reconnect", "disconnect"): a post
/// from another site is a 403 `CrossSite`, an install this browser's session does not hold a 403
/// `NotYourInstall`, each logged. Otherwise the install (recorded on the current span as
/// `install_id`) and the session that holds it.
pub(crate) fn posted_install_change(
    req: &HttpRequest,
    app: &AppState,
    action: &str,
) -> Result<(InstallId, Session), PageError> {
    if !security::is_same_origin_post(req, &app.public_origin) {
        tracing::warn!("refused a {action} posted from another site");
        return Err(PageError::CrossSite);
    }
    let session = app.cookies.session(req);
    let install_id = session_install_in(req, &session).ok_or_else(|| {
        tracing::warn!("refused a {action} of an install this browser's session does not hold");
        PageError::NotYourInstall
    })?;
    tracing::Span::current().record("install_id", tracing::field::display(&install_id));
    Ok((install_id, session))
}

async fn get_or_post_only() -> Result<HttpResponse, PageError> {
    Err(PageError::MethodNotAllowed {
        allow: "GET, HEAD, POST",
    })
}

async fn method_not_allowed() -> Result<HttpResponse, PageError> {
    Err(PageError::MethodNotAllowed { allow: "GET, HEAD" })
}

async fn post_only() -> Result<HttpResponse, PageError> {
    Err(PageError::MethodNotAllowed { allow: "POST" })
}

async fn not_found() -> Result<HttpResponse, PageError> {
    Err(PageError::NotFound)
}

/// A GET (and HEAD) resource whose other methods get a 405 page rather than an empty answer.
fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(handler),
        )
        .default_service(web::to(method_not_allowed))
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/", home::landing))
        .service(get("/static/style.css", home::stylesheet))
        .service(get("/static/favicon.svg", home::favicon))
        .service(get("/auth", oauth::start))
        .service(get("/callback", oauth::callback))
        .service(get("/installs/{install_id}", installs::show))
        .service(
            web::resource("/installs/{install_id}/reconnect")
                .route(web::post().to(oauth::reconnect))
                .default_service(web::to(post_only)),
        )
        .service(
            // `get`'s resource, with the POST that confirms (and its 405 naming POST too).
            get("/installs/{install_id}/disconnect", disconnect::confirm)
                .route(web::post().to(disconnect::disconnect))
                .default_service(web::to(get_or_post_only)),
        )
        .service(get("/disconnected", disconnect::done))
        .service(
            web::resource("/logout")
                .route(web::post().to(logout::logout))
                .default_service(web::to(post_only)),
        )
        .service(get("/healthz", health::healthz))
        .service(get("/readyz", health::readyz))
        .default_service(web::to(not_found));
}
