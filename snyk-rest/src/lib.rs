//! Typed client of the Snyk REST API: one GET of one JSON:API page at a time, with the parsing
//! rules Snyk's documents allow (`links.next` as a string or `{href}`, relative with or without
//! `/rest`) and errors classified by what a caller should do next.
//!
//! Paging, tokens and retries are the caller's: only it knows whether to ask token-service for a
//! forced refresh on a 401, and how much of its budget is left for a 429.
//!
//! Reading order (one file): [`RestError`] (what failed and whether a retry may help) → the
//! JSON:API shapes [`Page`], [`Resource`], [`OrgAttributes`], [`ProjectAttributes`] →
//! [`http_client`] (the client every call to Snyk goes through: timeouts, no redirects, extra CA
//! roots), [`read_body`] (every read of an answer's body, within [`MAX_BODY_BYTES`]) and
//! [`describe`] (a transport error in one line with its causes, without the URL) →
//! [`RestClient`] (`url`, `get_page`, `resolve_next`) → [`retry_after`] and [`backoff`]
//! (jittered, honouring `Retry-After`) → the tests. What Snyk's REST API does is in `docs/snyk-api.md`.

use std::{fmt, time::Duration};

use reqwest::{StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, de::DeserializeOwned};
use url::Url;

/// The JSON:API media type Snyk serves and expects.
pub const JSON_API: &str = "application/vnd.api+json";

/// How one REST call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RestError {
    /// 401: the access token is missing, expired or revoked.
    #[error("Snyk rejected the access token (401): {0}")]
    Unauthorized(String),
    /// 403/404: the org or resource does not exist for this token.
    #[error("Snyk has no such resource for this token ({status}): {detail}")]
    NotFound { status: u16, detail: String },
    /// Other 4xx: the request itself is wrong.
    #[error("Snyk refused the request ({status}): {detail}")]
    BadRequest { status: u16, detail: String },
    /// 429 or 5xx: retry later (after `retry_after` when Snyk says).
    #[error("Snyk answered {status}; retry later")]
    Retryable {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer (connect error, timeout, reset).
    #[error("Snyk is unreachable: {0}")]
    Transport(String),
    /// A 2xx answer we cannot read, a redirect (never followed), or a next link we will not
    /// follow.
    #[error("unexpected answer from Snyk: {0}")]
    Unexpected(String),
    /// An answer whose body is over `limit` bytes ([`read_body`]): not read, and not worth
    /// asking again, since the same request gets the same answer.
    #[error("Snyk's answer is over {limit} bytes, more than this client reads")]
    TooLarge { limit: usize },
}

impl RestError {
    /// The HTTP status as a metric label, or "error" when there was no answer to read.
    pub fn status_label(&self) -> String {
        match self {
            RestError::Unauthorized(_) => "401".into(),
            RestError::NotFound { status, .. }
            | RestError::BadRequest { status, .. }
            | RestError::Retryable { status, .. } => status.to_string(),
            RestError::Transport(_) | RestError::Unexpected(_) | RestError::TooLarge { .. } => {
                "error".into()
            }
        }
    }

    /// Worth another attempt after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RestError::Retryable { .. } | RestError::Transport(_))
    }
}

/// One page of a JSON:API collection.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<Resource<T>>,
    /// The absolute URL of the next page, when there is one.
    pub next: Option<Url>,
}

/// A JSON:API resource object.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Resource<T> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub attributes: T,
}

/// The attributes of an org that we use.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct OrgAttributes {
    pub name: String,
    #[serde(default)]
    pub slug: Option<String>,
}

/// The attributes of a project that we use (rest.json `ProjectAttributes`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ProjectAttributes {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub origin: String,
    pub status: String,
    #[serde(default)]
    pub target_file: Option<String>,
    #[serde(default)]
    pub target_reference: Option<String>,
    pub created: String,
}

#[derive(Deserialize)]
struct Document<T> {
    data: Vec<Resource<T>>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<Link>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Link {
    Href(String),
    Object { href: String },
}

#[derive(Deserialize)]
struct ErrorDocument {
    errors: Vec<ErrorObject>,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

/// The HTTP client every call to Snyk goes through (the REST API here, OAuth2 in token-service):
/// `timeout` per request (connecting within at most 3 s of it), no redirect ever followed, and
/// `extra_roots` (`SNYK_CA_CERT`: a TLS-inspecting proxy's CA, a test's throwaway CA) trusted
/// *in addition to* the platform's roots, never instead of them.
pub fn http_client(
    timeout: Duration,
    user_agent: &str,
    extra_roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        // Following a redirect would carry the bearer token (or a form with the client secret or
        // a refresh token) wherever `Location` points (reqwest drops `Authorization` only across
        // hosts, not to another port or path): never.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent);
    if !extra_roots.is_empty() {
        // reqwest 0.13: `tls_certs_merge` adds to the platform verifier's roots
        // (`tls_certs_only` would replace them; `add_root_certificate` is deprecated).
        builder = builder.tls_certs_merge(extra_roots.iter().cloned());
    }
    builder.build()
}

/// The most bytes of one Snyk answer's body that [`read_body`] keeps, for every call to Snyk
/// (REST pages, error documents, OAuth answers). One page of the fake's 100 projects is 104 KiB
/// with 255-character names (177 KiB with 1,000-character ones); Snyk's pages carry more
/// attributes, a few times that. 4 MiB leaves that page room forty times over, and still bounds
/// what one answer can make a replica hold. A constant rather than a setting: no legitimate
/// answer comes near it, so an operator has nothing to tune, and the error names the limit.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The body of `response`, at most `limit` bytes: refused at once when `Content-Length` says it is
/// longer, else read chunk by chunk and abandoned as soon as the total would pass `limit`
/// (dropping the response closes the connection, so the rest is never received). It never holds
/// more than `limit` bytes plus the one chunk that passed them. Every read of a Snyk answer's body
/// goes through here, with [`MAX_BODY_BYTES`].
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, RestError> {
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(RestError::TooLarge { limit });
    }
    // At most `limit` (checked just above).
    let mut body = Vec::with_capacity(announced.map_or(0, |length| length as usize));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RestError::Transport(describe(e)))?
    {
        // `body` never holds more than `limit`, so this cannot underflow.
        if chunk.len() > limit - body.len() {
            return Err(RestError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error with its causes, one line, without the URL: "error sending request:
/// client error (Connect): invalid peer certificate: UnknownIssuer" rather than only the first
/// part, so that a TLS failure says so.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their inner error's text; say each part once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A Snyk REST client bound to one API base URL and one pinned `version`.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    api: Url,
    version: String,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("api", &self.api.as_str())
            .field("version", &self.version)
            .finish()
    }
}

impl RestClient {
    /// `api` is the API host (`https://api.snyk.io`), `version` the pinned REST version date,
    /// `extra_roots` what [`http_client`] trusts besides the platform's roots.
    pub fn new(
        api: Url,
        version: impl Into<String>,
        timeout: Duration,
        extra_roots: &[reqwest::Certificate],
    ) -> Result<Self, reqwest::Error> {
        let http = http_client(
            timeout,
            concat!("snykapps/", env!("CARGO_PKG_VERSION")),
            extra_roots,
        )?;
        Ok(RestClient {
            http,
            api,
            version: version.into(),
        })
    }

    /// `{api}/rest{path}?version=…&limit=…` plus `query`.
    pub fn url(&self, path: &str, limit: u32, query: &[(&str, &str)]) -> Url {
        let mut url = self.join_path(&format!("/rest{path}"));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("version", &self.version)
                .append_pair("limit", &limit.to_string());
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    fn join_path(&self, path: &str) -> Url {
        let mut url = self.api.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url.set_query(None);
        url
    }

    /// Fetches one page. `headers` are extra headers (e.g. `traceparent`).
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        url: &Url,
        token: &SecretString,
        headers: &[(&str, String)],
    ) -> Result<Page<T>, RestError> {
        let mut req = self
            .http
            .get(url.clone())
            .header(header::ACCEPT, JSON_API)
            .header(
                header::AUTHORIZATION,
                format!("bearer {}", token.expose_secret()),
            );
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let response = req
            .send()
            .await
            .map_err(|e| RestError::Transport(describe(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error_from(response).await);
        }
        let body = read_body(response, MAX_BODY_BYTES).await?;
        let doc: Document<T> = serde_json::from_slice(&body)
            .map_err(|e| RestError::Unexpected(format!("unreadable page: {e}")))?;
        let next = match doc.links.and_then(|l| l.next) {
            Some(Link::Href(h) | Link::Object { href: h }) => Some(self.resolve_next(&h)?),
            None => None,
        };
        Ok(Page {
            data: doc.data,
            next,
        })
    }

    /// Resolves a `links.next`: relative with or without the `/rest` prefix, or absolute on the
    /// API's own origin. Anything else is refused: following it would send the token elsewhere.
    pub fn resolve_next(&self, next: &str) -> Result<Url, RestError> {
        if next.starts_with("http://") || next.starts_with("https://") {
            let url = Url::parse(next)
                .map_err(|e| RestError::Unexpected(format!("bad links.next: {e}")))?;
            if url.origin() != self.api.origin() {
                return Err(RestError::Unexpected(
                    "links.next points to another host".into(),
                ));
            }
            return Ok(url);
        }
        if !next.starts_with('/') {
            return Err(RestError::Unexpected(
                "links.next is neither absolute nor rooted".into(),
            ));
        }
        let (path, query) = next.split_once('?').unwrap_or((next, ""));
        let path = if path == "/rest" || path.starts_with("/rest/") {
            path.to_owned()
        } else {
            format!("/rest{path}")
        };
        let mut url = self.join_path(&path);
        url.set_query((!query.is_empty()).then_some(query));
        Ok(url)
    }
}

async fn error_from(response: reqwest::Response) -> RestError {
    let status = response.status();
    if status.is_redirection() {
        return RestError::Unexpected(format!(
            "Snyk answered {status}, a redirect, which is never followed (check SNYK_API_URL)"
        ));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return RestError::Retryable {
            status: status.as_u16(),
            retry_after: retry_after(&response),
        };
    }
    let body = match read_body(response, MAX_BODY_BYTES).await {
        Ok(body) => Some(body),
        Err(e @ RestError::TooLarge { .. }) => return e,
        // A body cut short: the status alone still says what happened.
        Err(_) => None,
    };
    let detail = body
        .and_then(|b| serde_json::from_slice::<ErrorDocument>(&b).ok())
        .and_then(|d| d.errors.into_iter().next())
        .and_then(|e| e.detail.or(e.title))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    match status {
        StatusCode::UNAUTHORIZED => RestError::Unauthorized(detail),
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => RestError::NotFound {
            status: status.as_u16(),
            detail,
        },
        s => RestError::BadRequest {
            status: s.as_u16(),
            detail,
        },
    }
}

/// `Retry-After` of an answer, in whole seconds (the form Snyk sends; a date is ignored).
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Exponential backoff for attempt `n` (1-based) from `base`, capped at `cap`, at least the
/// server's `Retry-After`.
pub fn backoff(base: Duration, n: u32, cap: Duration, retry_after: Option<Duration>) -> Duration {
    let step = base
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(cap);
    step.max(retry_after.unwrap_or_default())
}
