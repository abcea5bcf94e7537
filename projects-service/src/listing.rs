//! Every project of one org: pages fetched in order (Snyk cursors are sequential), each after a
//! permit of the install's Snyk request budget (shared by every replica; a 429 pauses it for all
//! of them), a forced refresh of exactly the rejected token on a 401 (once per page), and
//! bounded retries of 5xx that resume at the page that failed; all within the listing's
//! deadline. The one listing path for both routes: only the token's [`Target`] differs (the
//! org's serving install, or one install).

use std::{num::NonZeroUsize, time::Duration};

use serde::Serialize;
use snyk_rest::{ProjectAttributes, RestClient, RestError};
use snykapps_ids::OrgId;
use tokio::time::Instant;

use crate::{
    metrics,
    tokens::{AccessToken, Target, TokenError, TokenSource},
};

/// Snyk's page size maximum.
const PAGE_LIMIT: u32 = 100;
/// A guard against a server whose cursors never end (with empty pages, which the cap on
/// projects does not stop).
const MAX_PAGES: usize = 10_000;
/// A token with less validity than this left after the wait for a permit is asked for again
/// rather than sent to be refused.
const FRESH_ENOUGH: Duration = Duration::from_secs(1);

/// One project as this service returns it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub origin: String,
    pub status: String,
    pub target_file: Option<String>,
    pub target_reference: Option<String>,
    pub created: String,
}

/// Filters passed through to Snyk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub origin: Option<String>,
    pub kind: Option<String>,
    pub names_start_with: Option<String>,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Snyk's 404: the org does not exist or the token's install does not cover it (Snyk tells
    /// the two apart to nobody).
    #[error("Snyk does not know this org or the install may not see it")]
    OrgNotVisible,
    #[error("Snyk rejected the access token again right after a refresh: {0}")]
    StillUnauthorized(String),
    #[error("Snyk is unavailable: {error}")]
    Unavailable {
        error: RestError,
        retry_after: Option<Duration>,
    },
    #[error("Snyk refused the request: {0}")]
    Upstream(RestError),
    /// The listing did not finish within `PROJECTS_SERVICE_DEADLINE_SECONDS`.
    #[error("the listing did not finish within PROJECTS_SERVICE_DEADLINE_SECONDS ({} s)", .0.as_secs())]
    DeadlinePassed(Duration),
    /// A page whose body was over `snyk_rest::MAX_BODY_BYTES`.
    #[error(transparent)]
    AnswerTooLarge(RestError),
    /// The org has more than `limit` projects (`PROJECTS_SERVICE_MAX_PROJECTS`).
    #[error(
        "the org has more than {limit} projects, more than one listing returns (PROJECTS_SERVICE_MAX_PROJECTS); narrow it with the origin, type or names_start_with filters"
    )]
    TooManyProjects { limit: NonZeroUsize },
}

/// Retry policy for 429/5xx/unreachable, how long a whole listing may take and how many projects
/// it may return.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub retries: u32,
    pub base: Duration,
    pub max_backoff: Duration,
    /// `PROJECTS_SERVICE_DEADLINE_SECONDS`.
    pub deadline: Duration,
    /// `PROJECTS_SERVICE_MAX_PROJECTS`.
    pub max_projects: NonZeroUsize,
}

/// Lists the projects of `org` with `filters`, with the tokens of `via`
/// (asked again by the same target after a 401), within `policy.deadline`, at most
/// `policy.max_projects` of them.
#[tracing::instrument(skip_all, fields(org_id = %org, via = ?via, pages = tracing::field::Empty))]
pub async fn list_projects(
    rest: &RestClient,
    tokens: &TokenSource,
    policy: RetryPolicy,
    org: &OrgId,
    via: Target,
    filters: &Filters,
) -> Result<Vec<Project>, ListError> {
    let deadline = Instant::now() + policy.deadline;
    tokio::time::timeout_at(
        deadline,
        list_until(rest, tokens, policy, org, via, filters, deadline),
    )
    .await
    .unwrap_or(Err(ListError::DeadlinePassed(policy.deadline)))
}

async fn list_until(
    rest: &RestClient,
    tokens: &TokenSource,
    policy: RetryPolicy,
    org: &OrgId,
    via: Target,
    filters: &Filters,
    deadline: Instant,
) -> Result<Vec<Project>, ListError> {
    let mut query = Vec::new();
    if let Some(o) = &filters.origin {
        query.push(("origins", o.as_str()));
    }
    if let Some(t) = &filters.kind {
        query.push(("types", t.as_str()));
    }
    if let Some(n) = &filters.names_start_with {
        query.push(("names_start_with", n.as_str()));
    }
    let mut url = rest.url(&format!("/orgs/{org}/projects"), PAGE_LIMIT, &query);
    let mut token: AccessToken = tokens.get(via).await?;
    let mut projects = Vec::new();
    let mut retries_used = 0;
    let mut refreshed_for_this_page = false;
    // A 429's Retry-After, reported with the next permit so every replica pauses.
    let mut rate_limited = None;
    let mut pages = 0;

    while pages < MAX_PAGES {
        tokens
            .permit(token.install, deadline, rate_limited.take())
            .await?;
        if token.expires_within(FRESH_ENOUGH) {
            let fresh = tokens.get(via).await?;
            let other_install = fresh.install != token.install;
            token = fresh;
            if other_install {
                // Another install serves the org now: its own budget gives the permit.
                continue;
            }
        }
        let headers = service_runtime::telemetry::current_context_headers();
        let result = rest
            .get_page::<ProjectAttributes>(&url, &token.secret, &headers)
            .await;
        metrics::snyk_call(
            result
                .as_ref()
                .map_or_else(RestError::status_label, |_| "200".into()),
        );
        match result {
            Ok(page) => {
                pages += 1;
                refreshed_for_this_page = false;
                // Checked before the page is kept and before the next one is asked for.
                if projects.len() + page.data.len() > policy.max_projects.get() {
                    metrics::listing_capped();
                    return Err(ListError::TooManyProjects {
                        limit: policy.max_projects,
                    });
                }
                projects.extend(page.data.into_iter().map(|r| Project {
                    id: r.id,
                    name: r.attributes.name,
                    kind: r.attributes.kind,
                    origin: r.attributes.origin,
                    status: r.attributes.status,
                    target_file: r.attributes.target_file,
                    target_reference: r.attributes.target_reference,
                    created: r.attributes.created,
                }));
                match page.next {
                    Some(next) => url = next,
                    None => {
                        tracing::Span::current().record("pages", pages);
                        return Ok(projects);
                    }
                }
            }
            Err(RestError::Unauthorized(detail)) => {
                if refreshed_for_this_page {
                    return Err(ListError::StillUnauthorized(detail));
                }
                tracing::info!(
                    "Snyk rejected the access token; asking token-service for a refresh"
                );
                token = tokens.force_refresh(via, &token).await?;
                refreshed_for_this_page = true;
            }
            Err(RestError::NotFound { .. }) => return Err(ListError::OrgNotVisible),
            Err(RestError::Retryable {
                status: 429,
                retry_after,
            }) => {
                // No pause of our own and no retry counted: the next permit comes after the
                // install's pause, for every replica, or the listing ends at its deadline with
                // `rate_limited`.
                tracing::warn!(
                    retry_after_s = retry_after.map(|d| d.as_secs()),
                    "Snyk answered 429; pausing the install's requests"
                );
                rate_limited = Some(retry_after);
            }
            Err(error @ RestError::TooLarge { .. }) => {
                metrics::snyk_body_capped();
                return Err(ListError::AnswerTooLarge(error));
            }
            Err(error) if error.is_retryable() => {
                let retry_after = match &error {
                    RestError::Retryable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                retries_used += 1;
                let wait =
                    snyk_rest::backoff(policy.base, retries_used, policy.max_backoff, retry_after);
                if retries_used > policy.retries || wait > policy.max_backoff {
                    return Err(ListError::Unavailable { error, retry_after });
                }
                tracing::warn!(error = %error, wait_ms = wait.as_millis() as u64, "retrying the same page");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(ListError::Upstream(error)),
        }
    }
    Err(ListError::Upstream(RestError::Unexpected(format!(
        "more than {MAX_PAGES} pages"
    ))))
}
