//! The projects-service client (HTTP): one org's projects, all pages, as one install sees them
//! (`GET /v1/installs/{install_id}/orgs/{org_id}/projects` with our key and the current span's
//! `traceparent`). Always by install: the install page checks access by install, so it must list
//! with that install's token, never with whichever install serves the org.

use std::{fmt, time::Duration};

use anyhow::Context as _;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use service_runtime::internal::InternalCa;
use snykapps_ids::{InstallId, OrgId};
use snykapps_projects_api::{ErrorBody, ErrorCode};
use url::Url;

/// One project, with the fields the install page shows.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub origin: String,
    pub status: String,
}

/// An org's projects.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Listing {
    pub count: usize,
    pub projects: Vec<Project>,
}

/// Why an org's projects could not be listed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProjectsError {
    /// 409 `needs_reauth`: the install lost its Snyk access.
    #[error("the install needs re-authorization")]
    NeedsReauth,
    /// 404: the org is no longer visible to the install (`unknown_org`), or the install itself
    /// is gone (`unknown_install`: deleted between reading it and listing; nothing is visible).
    #[error("the org is not visible to the install")]
    UnknownOrg,
    /// Down, unreachable, or Snyk unavailable behind it.
    #[error("projects-service is unavailable: {0}")]
    Unavailable(String),
    /// Not listed within the time limit of one org's listing (`PROJECTS_SERVICE_TIMEOUT_MS`).
    #[error("the listing did not finish within {} ms", .0.as_millis())]
    NotInTime(Duration),
    /// 422 `too_many_projects`: the org has more projects than projects-service lists at once.
    #[error("the org has more projects than projects-service lists at once")]
    TooManyProjects,
    /// 429 `rate_limited`: the install's Snyk request budget had no room for the listing in time.
    #[error("the install's Snyk request budget is used up for now ({0})")]
    RateLimited(String),
    /// Anything else (our key refused, a malformed answer): logged, shown as a failure.
    #[error("projects-service failed: {0}")]
    Failed(String),
}

/// A cheap-to-clone handle on projects-service.
#[derive(Clone)]
pub struct ProjectsClient {
    http: reqwest::Client,
    base: Url,
    api_key: SecretString,
    /// The time limit of one org's listing, all pages.
    timeout: Duration,
}

impl fmt::Debug for ProjectsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectsClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ProjectsClient {
    /// A client of projects-service at `base`; over https it trusts only `ca`
    /// (`PROJECTS_SERVICE_CA_CERT`) when given, else the public roots. Each listing has `timeout`
    /// (`PROJECTS_SERVICE_TIMEOUT_MS`), from the request to the last byte of its answer.
    pub fn new(
        base: Url,
        ca: Option<&InternalCa>,
        api_key: SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        // No reqwest timeout: `list` keeps its own, so that running out of time is told apart
        // from a projects-service that cannot be reached.
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none());
        let http = InternalCa::trust(ca, builder)
            .build()
            .context("cannot set up the projects-service client (PROJECTS_SERVICE_CA_CERT)")?;
        Ok(ProjectsClient {
            http,
            base,
            api_key,
            timeout,
        })
    }

    fn url(&self, install_id: &InstallId, org_id: &OrgId) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            // Typed ids are UUIDs; `extend` would percent-encode anything else anyway.
            segments.pop_if_empty().extend([
                "v1",
                "installs",
                &install_id.to_string(),
                "orgs",
                &org_id.to_string(),
                "projects",
            ]);
        }
        url
    }

    /// `org_id`'s projects through `install_id`'s own token, within the time limit.
    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        install_id: &InstallId,
        org_id: &OrgId,
    ) -> Result<Listing, ProjectsError> {
        tokio::time::timeout(self.timeout, self.fetch(install_id, org_id))
            .await
            .unwrap_or(Err(ProjectsError::NotInTime(self.timeout)))
    }

    async fn fetch(
        &self,
        install_id: &InstallId,
        org_id: &OrgId,
    ) -> Result<Listing, ProjectsError> {
        let mut req = self
            .http
            .get(self.url(install_id, org_id))
            .bearer_auth(self.api_key.expose_secret());
        for (key, value) in service_runtime::telemetry::current_context_headers() {
            req = req.header(key, value);
        }
        let res = req
            .send()
            .await
            // Without the URL: it holds nothing secret, but messages stay short and stable.
            .map_err(|e| ProjectsError::Unavailable(e.without_url().to_string()))?;
        let status = res.status();
        if status.is_success() {
            return res.json::<Listing>().await.map_err(|e| {
                ProjectsError::Failed(format!("unreadable listing: {}", e.without_url()))
            });
        }
        let code = res.json::<ErrorBody>().await.map(|b| b.code).ok();
        let code_text = code.as_ref().map_or("", ErrorCode::as_str);
        Err(match (status, &code) {
            (StatusCode::CONFLICT, _) => ProjectsError::NeedsReauth,
            (StatusCode::NOT_FOUND, Some(ErrorCode::UnknownOrg | ErrorCode::UnknownInstall)) => {
                ProjectsError::UnknownOrg
            }
            (
                StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::BAD_GATEWAY
                | StatusCode::GATEWAY_TIMEOUT,
                _,
            ) => ProjectsError::Unavailable(format!("{status} {code_text}")),
            (_, Some(ErrorCode::TooManyProjects)) => ProjectsError::TooManyProjects,
            (StatusCode::TOO_MANY_REQUESTS, Some(ErrorCode::RateLimited)) => {
                ProjectsError::RateLimited(format!("{status} {code_text}"))
            }
            _ => ProjectsError::Failed(format!("{status} {code_text}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_install_and_the_org() {
        let c = ProjectsClient::new(
            Url::parse("http://127.0.0.1:8081/").expect("url"),
            None,
            "k".to_owned().into(),
            Duration::from_secs(1),
        )
        .expect("client");
        // Ids are typed (a path segment can only be a UUID); the base's trailing slash is not
        // doubled.
        let install = InstallId::parse("123e4567-e89b-12d3-a456-426614174000").expect("id");
        let org = OrgId::parse("00000000-0000-4000-8000-000000000001").expect("id");
        assert_eq!(
            c.url(&install, &org).as_str(),
            "http://127.0.0.1:8081/v1/installs/123e4567-e89b-12d3-a456-426614174000/orgs/00000000-0000-4000-8000-000000000001/projects"
        );
    }

    #[test]
    fn listings_parse_from_the_wire_format() {
        let body = r#"{"org_id":"o","count":1,"projects":[{"id":"p","name":"a/b:package.json","type":"npm",
            "origin":"github","status":"active","target_file":"package.json","target_reference":"main",
            "created":"2023-01-01T00:00:00Z"}]}"#;
        let listing: Listing = serde_json::from_str(body).expect("parses");
        assert_eq!(listing.count, 1);
        assert_eq!(listing.projects[0].kind, "npm");
    }
}
