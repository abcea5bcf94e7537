//! `GET /installs/{install_id}`: the install's orgs and each org's projects.
//!
//! Only the browser that completed the install may see it (its sealed session cookie lists the
//! id); for any other browser the page is the same 404 as for an id that does not exist, so ids
//! cannot be probed. When projects-service is down, each org's section says its list is
//! unavailable and the page is still a 200 (the install itself is fine); when token-service is
//! down the whole page is a 503.

use actix_web::{HttpRequest, HttpResponse, web};
use futures::future::join_all;
use snykapps_ids::OrgId;
use snykapps_proto::token_v1 as pb;
use time::{OffsetDateTime, macros::format_description};

use super::AppState;
use crate::{
    error::PageError,
    projects_client::ProjectsError,
    templates::{self, InstallState, InstallView, OrgView},
};

fn format_time(ts: Option<&snykapps_proto::Timestamp>) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(ts?.seconds).ok()?;
    at.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .ok()
}

#[tracing::instrument(skip_all, fields(install_id = tracing::field::Empty))]
pub async fn show(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let install_id = super::session_install(&req, &app).ok_or(PageError::NotFound)?;
    tracing::Span::current().record("install_id", tracing::field::display(&install_id));
    let install = app.tokens.get_install(&install_id).await?;

    let state = match pb::InstallStatus::try_from(install.status) {
        Ok(pb::InstallStatus::NeedsReauth) => InstallState::NeedsReauth {
            reason: install.needs_reauth_reason.clone(),
        },
        _ => InstallState::Active,
    };
    let orgs = if state == InstallState::Active {
        // Every org at once: each listing is independent, and the slowest one sets the pace. By
        // this install, never by org: another install of the same org must not answer for it.
        let listings = join_all(install.orgs.iter().map(|o| async {
            let org = OrgId::parse(&o.id).map_err(|_| {
                ProjectsError::Failed("token-service returned a malformed org id".into())
            })?;
            app.projects.list(&install_id, &org).await
        }))
        .await;
        install
            .orgs
            .iter()
            .zip(listings)
            .map(|(o, listing)| {
                match &listing {
                    Err(e @ ProjectsError::Failed(_)) => {
                        tracing::error!(org_id = %o.id, error = %e, "listing failed")
                    }
                    Err(e @ ProjectsError::Unavailable(_)) => {
                        tracing::warn!(org_id = %o.id, error = %e, "listing unavailable")
                    }
                    _ => {}
                }
                OrgView {
                    id: o.id.clone(),
                    name: o.name.clone(),
                    projects: Some(listing),
                }
            })
            .collect()
    } else {
        // projects-service would only answer 409 for each org: do not ask.
        install
            .orgs
            .iter()
            .map(|o| OrgView {
                id: o.id.clone(),
                name: o.name.clone(),
                projects: None,
            })
            .collect()
    };
    let view = InstallView {
        install_id: install.install_id.clone(),
        state,
        created_at: format_time(install.created_at.as_ref()),
        scope: install.scope.clone(),
        orgs,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(templates::install(&view)))
}
