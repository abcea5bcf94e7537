//! Disconnect: `GET /installs/{install_id}/disconnect` says what it does and asks to confirm,
//! `POST /installs/{install_id}/disconnect` does it, `GET /disconnected` says it is done.
//!
//! The post deletes the install through token-service's `DeleteInstall`, which revokes the
//! install's refresh token at Snyk (revoking the whole grant at once) before it forgets the grant;
//! the app itself stays listed in Snyk's UI until the user removes it there. Only a same-origin
//! post (`security::is_same_origin_post`) for an install this browser's session holds gets that
//! far; the install is then dropped from the session (the session ends when it was its only one).

use actix_web::{HttpRequest, HttpResponse, http::header, web};

use super::AppState;
use crate::{error::PageError, templates};

/// `GET /installs/{install_id}/disconnect`: the confirmation page; the same 404 as the install's
/// page for a browser that may not see the install.
#[tracing::instrument(skip_all)]
pub async fn confirm(
    req: HttpRequest,
    app: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let install_id = super::session_install(&req, &app).ok_or(PageError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(templates::confirm_disconnect(&install_id.to_string())))
}

/// `POST /installs/{install_id}/disconnect`: deletes the install, then 303 to `/disconnected`.
#[tracing::instrument(skip_all, fields(install_id = tracing::field::Empty))]
pub async fn disconnect(
    req: HttpRequest,
    app: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let (install_id, mut session) = super::posted_install_change(&req, &app, "disconnect")?;
    // Idempotent at token-service: a second post (a double click, a retry after a lost answer)
    // succeeds too. Until it succeeds the session keeps the install, so the user can retry.
    app.tokens.delete_install(&install_id).await?;
    tracing::info!("install disconnected");

    session.remove(&install_id);
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::LOCATION, "/disconnected"));
    if session.is_empty() {
        // Its only install: the session is over (as after Log out).
        for cookie in app.cookies.removals() {
            res.cookie(cookie);
        }
    } else {
        res.cookie(app.cookies.session_cookie(&session));
    }
    Ok(res.finish())
}

/// `GET /disconnected`.
pub async fn done() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(templates::disconnected())
}
