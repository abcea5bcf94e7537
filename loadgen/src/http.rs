//! HTTP load: `loadgen http` (timed GETs of one URL, e.g. projects-service's listing) and
//! `loadgen page` (a whole project listing paged straight from the fake Snyk, the baseline that
//! projects-service is compared with); and the fake's control endpoints.

use anyhow::Context as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use url::Url;

use crate::args::{Budget, LocalUrl};
use crate::drive::{Failure, Operation, RunReport, drive};
use crate::install::http_client;

/// A bearer `authorization` header value; not shown by `Debug`.
#[derive(Clone)]
pub struct BearerHeader(HeaderValue);

impl BearerHeader {
    /// `Bearer <token>`, marked sensitive.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let token = token.trim();
        if token.is_empty() {
            anyhow::bail!("the bearer token must not be empty");
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("the bearer token must be printable ASCII"))?;
        value.set_sensitive(true);
        Ok(Self(value))
    }

    /// The header value (marked sensitive).
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::fmt::Debug for BearerHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerHeader([redacted])")
    }
}

/// What `loadgen http` runs.
#[derive(Debug, Clone)]
pub struct GetPlan {
    /// The URL every request GETs.
    pub url: LocalUrl,
    /// Its `authorization`.
    pub bearer: BearerHeader,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Bounds.
    pub budget: Budget,
    /// When set, the JSON answer's `count` must equal it (e.g. 1000 projects).
    pub expect_count: Option<u64>,
}

#[derive(Debug)]
struct TimedGet {
    http: reqwest::Client,
    url: Url,
    bearer: BearerHeader,
    expect_count: Option<u64>,
}

impl Operation for TimedGet {
    async fn call(&mut self, _ticket: u64) -> Result<u64, Failure> {
        let response = self
            .http
            .get(self.url.clone())
            .header(AUTHORIZATION, self.bearer.header().clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| Failure::new("http_transport", e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::new("http_transport", e.to_string()))?;
        if !status.is_success() {
            return Err(Failure::new(
                format!("http_{}", status.as_u16()),
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            ));
        }
        let Some(want) = self.expect_count else {
            return Ok(0);
        };
        let count = serde_json::from_slice::<Counted>(&body)
            .ok()
            .and_then(|c| c.count);
        match count {
            Some(n) if n == want => Ok(n),
            other => Err(Failure::new(
                "count_mismatch",
                format!("expected count {want}, got {other:?}"),
            )),
        }
    }
}

/// Runs `loadgen http`.
pub async fn run_get(plan: GetPlan) -> anyhow::Result<RunReport> {
    let http = http_client()?;
    let workers = plan
        .concurrency
        .min(usize::try_from(plan.budget.requests).unwrap_or(usize::MAX));
    let ops = (0..workers)
        .map(|_| TimedGet {
            http: http.clone(),
            url: plan.url.url().clone(),
            bearer: plan.bearer.clone(),
            expect_count: plan.expect_count,
        })
        .collect();
    let (_, tally) = drive(ops, plan.budget).await?;
    Ok(tally.report("http", vec![plan.url.to_string()], workers, 0, plan.budget))
}

/// What `loadgen page` runs: each request is a whole listing, every page followed.
#[derive(Debug, Clone)]
pub struct PagePlan {
    /// The fake Snyk's base URL (`http://127.0.0.1:PORT`).
    pub fake: LocalUrl,
    /// The org whose projects are listed.
    pub org_id: String,
    /// A Snyk access token (from `GetAccessToken`).
    pub bearer: BearerHeader,
    /// `version=`.
    pub version: String,
    /// `limit=` (page size).
    pub limit: u32,
    /// Concurrent listings.
    pub concurrency: usize,
    /// Bounds (in listings).
    pub budget: Budget,
    /// When set, every listing must hold exactly this many projects.
    pub expect_count: Option<u64>,
}

/// The part of projects-service's answer we check; the projects are skipped, not built.
#[derive(Debug, Deserialize)]
pub(crate) struct Counted {
    pub(crate) count: Option<u64>,
}

/// The parts of a JSON:API page we need: the items are counted and skipped (building them as
/// `Value`s would cost this client more CPU than the service it is compared with), `links` kept.
#[derive(Debug, Deserialize)]
struct PageDoc {
    data: Vec<IgnoredAny>,
    #[serde(default)]
    links: Value,
}

#[derive(Debug)]
struct Listing {
    http: reqwest::Client,
    first: Url,
    fake: LocalUrl,
    bearer: BearerHeader,
    expect_count: Option<u64>,
}

impl Operation for Listing {
    async fn call(&mut self, _ticket: u64) -> Result<u64, Failure> {
        let mut next = Some(self.first.clone());
        let mut total = 0u64;
        let mut pages = 0u32;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(Failure::new("too_many_pages", "more than 10,000 pages"));
            }
            let response = self
                .http
                .get(url)
                .header(AUTHORIZATION, self.bearer.header().clone())
                .header(ACCEPT, "application/vnd.api+json")
                .send()
                .await
                .map_err(|e| Failure::new("http_transport", e.to_string()))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| Failure::new("http_transport", e.to_string()))?;
            if !status.is_success() {
                return Err(Failure::new(
                    format!("http_{}", status.as_u16()),
                    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                ));
            }
            let doc: PageDoc = serde_json::from_slice(&body)
                .map_err(|e| Failure::new("bad_json", e.to_string()))?;
            total += doc.data.len() as u64;
            next = next_link(&doc.links, &self.fake)?;
        }
        match self.expect_count {
            Some(want) if want != total => Err(Failure::new(
                "count_mismatch",
                format!("expected {want} projects, listed {total}"),
            )),
            _ => Ok(total),
        }
    }
}

/// The absolute URL of `links.next` in a page's `links` (a string or `{href}`; relative with or
/// without `/rest`, as Snyk writes it), checked to stay on 127.0.0.1.
pub fn next_link(links: &Value, fake: &LocalUrl) -> Result<Option<Url>, Failure> {
    let next = match links.get("next") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => other
            .get("href")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::new("bad_json", "links.next is neither a string nor {href}"))?,
    };
    let url = if next.starts_with("http://") || next.starts_with("https://") {
        Url::parse(next).map_err(|e| Failure::new("bad_link", e.to_string()))?
    } else if next.starts_with("/rest/") {
        fake.url()
            .join(next)
            .map_err(|e| Failure::new("bad_link", e.to_string()))?
    } else if next.starts_with('/') {
        fake.url()
            .join(&format!("/rest{next}"))
            .map_err(|e| Failure::new("bad_link", e.to_string()))?
    } else {
        return Err(Failure::new("bad_link", format!("{next:?} is not rooted")));
    };
    let url = LocalUrl::from_url(url).map_err(|e| Failure::new("bad_link", e.to_string()))?;
    Ok(Some(url.url().clone()))
}

/// Runs `loadgen page`.
pub async fn run_pages(plan: PagePlan) -> anyhow::Result<RunReport> {
    let http = http_client()?;
    let mut first = plan
        .fake
        .url()
        .join(&format!("/rest/orgs/{}/projects", plan.org_id))
        .context("bad org id")?;
    first
        .query_pairs_mut()
        .append_pair("version", &plan.version)
        .append_pair("limit", &plan.limit.to_string());
    let workers = plan
        .concurrency
        .min(usize::try_from(plan.budget.requests).unwrap_or(usize::MAX));
    let ops = (0..workers)
        .map(|_| Listing {
            http: http.clone(),
            first: first.clone(),
            fake: plan.fake.clone(),
            bearer: plan.bearer.clone(),
            expect_count: plan.expect_count,
        })
        .collect();
    let (_, tally) = drive(ops, plan.budget).await?;
    Ok(tally.report("page", vec![first.to_string()], workers, 0, plan.budget))
}

/// `GET /_fake/stats`, as the fake wrote it.
pub async fn fake_stats(fake: &LocalUrl) -> anyhow::Result<Value> {
    let response = http_client()?
        .get(fake.url().join("/_fake/stats")?)
        .send()
        .await
        .context("cannot reach the fake")?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("GET /_fake/stats answered {status}");
    }
    response.json().await.context("/_fake/stats is not JSON")
}

/// `POST /_fake/faults` with a JSON fault, e.g. `{"token_latency":100}`.
pub async fn fake_fault(fake: &LocalUrl, fault: &Value) -> anyhow::Result<()> {
    fake_post(fake, "/_fake/faults", fault).await.map(drop)
}

/// `POST /_fake/orgs` with `{"name", "projects", "count"}`: orgs added at run time; their
/// answer (the orgs added).
pub async fn fake_orgs(fake: &LocalUrl, orgs: &Value) -> anyhow::Result<String> {
    fake_post(fake, "/_fake/orgs", orgs).await
}

/// A JSON `POST` to one of the fake's control endpoints; the answer's body, or an error naming
/// the endpoint and its answer.
async fn fake_post(fake: &LocalUrl, path: &str, body: &Value) -> anyhow::Result<String> {
    let response = http_client()?
        .post(fake.url().join(path)?)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .context("cannot reach the fake")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("POST {path} answered {status}: {body}");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn next_links_resolve_like_snyk_writes_them() {
        let fake = LocalUrl::parse("http://127.0.0.1:8090").unwrap();
        let at = |doc: Value| next_link(&doc["links"], &fake).map(|u| u.map(|u| u.to_string()));
        assert_eq!(
            at(json!({"links": {"next": "/orgs/o/projects?version=v&starting_after=c"}})).unwrap(),
            Some("http://127.0.0.1:8090/rest/orgs/o/projects?version=v&starting_after=c".into())
        );
        assert_eq!(
            at(json!({"links": {"next": {"href": "/rest/orgs/o/projects?x=1"}}})).unwrap(),
            Some("http://127.0.0.1:8090/rest/orgs/o/projects?x=1".into())
        );
        assert_eq!(at(json!({"links": {"self": "/x"}})).unwrap(), None);
        assert_eq!(at(json!({"links": {"next": null}})).unwrap(), None);
        assert_eq!(
            at(json!({"links": {"next": "https://api.snyk.io/rest/x"}}))
                .unwrap_err()
                .kind,
            "bad_link"
        );
        assert_eq!(
            at(json!({"links": {"next": "relative"}})).unwrap_err().kind,
            "bad_link"
        );
    }

    #[test]
    fn bearer_headers_are_sensitive() {
        let b = BearerHeader::new("snyk_at_x").unwrap();
        assert!(b.0.is_sensitive());
        assert!(!format!("{b:?}").contains("snyk_at_x"));
        assert!(BearerHeader::new("").is_err());
    }
}
