//! `POST /logout`: the browser forgets its session (and any pending sign-in binding), then lands
//! on the start page. A post, not a link, so that neither a prefetch nor an `<img>` elsewhere
//! signs anyone out; and only from our own pages (`security::is_same_origin_post`).

use actix_web::{HttpRequest, HttpResponse, http::header, web};

use super::AppState;
use crate::{error::PageError, security};

/// `POST /logout`: 303 to `/` with both cookies removed; 403 for a post from another site.
#[tracing::instrument(skip_all)]
pub async fn logout(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    if !security::is_same_origin_post(&req, &app.public_origin) {
        tracing::warn!("refused a logout posted from another site");
        return Err(PageError::CrossSite);
    }
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::LOCATION, "/"));
    for cookie in app.cookies.removals() {
        res.cookie(cookie);
    }
    tracing::info!("signed out");
    Ok(res.finish())
}
