//! `GET /installs/{install_id}`: the install's orgs and each org's projects.
//!
//! Only the browser that completed the install may see it (its sealed session cookie lists the
//! id); for any other browser the page is the same 404 as for an id that does not exist, so ids
//! cannot be probed. The orgs are listed [`ORG_LISTINGS_IN_FLIGHT`] at a time, in page order,
//! each within `PROJECTS_SERVICE_TIMEOUT_MS`. An org that could not be listed (projects-service
//! down, not listed in time, more projects than it lists at once) says so in its own section and
//! the page is still a 200 (the install itself is fine); when token-service is down the whole
//! page is a 503.

use actix_web::{HttpRequest, HttpResponse, web};
use futures::{StreamExt as _, stream};
use snykapps_ids::OrgId;
use snykapps_proto::token_v1 as pb;
use time::{OffsetDateTime, macros::format_description};

use super::AppState;
use crate::{
    error::PageError,
    projects_client::ProjectsError,
    templates::{self, InstallState, InstallView, OrgView},
};

/// The most org listings one page view runs at once. A constant, not a setting: it bounds what
/// one page view asks of projects-service and of Snyk, where every org of an install draws on
/// the same install's request budget, so more at once would spend that budget in bursts rather
/// than list a large install faster; four list a typical install (one to four orgs) all at once.
/// A page of n orgs takes at most ⌈n/4⌉ times the per-org limit.
const ORG_LISTINGS_IN_FLIGHT: usize = 4;

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
        // By this install, never by org: another install of the same org must not answer for it.
        // `buffered` keeps the page's order whichever listing ends first.
        let listings: Vec<_> = stream::iter(install.orgs.iter().map(|o| async {
            let org = OrgId::parse(&o.id).map_err(|_| {
                ProjectsError::Failed("token-service returned a malformed org id".into())
            })?;
            app.projects.list(&install_id, &org).await
        }))
        .buffered(ORG_LISTINGS_IN_FLIGHT)
        .collect()
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
                    Err(
                        e @ (ProjectsError::Unavailable(_)
                        | ProjectsError::NotInTime(_)
                        | ProjectsError::TooManyProjects
                        | ProjectsError::RateLimited(_)),
                    ) => {
                        tracing::warn!(org_id = %o.id, error = %e, "org not listed")
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
