//! The Snyk client of token-service: the OAuth2 token and revoke endpoints, and `/rest/orgs` to
//! learn which orgs a new install may see. Each call is one attempt; the caller decides retries,
//! because only it knows whether a retry could spend a refresh token twice.

use std::{fmt, sync::Arc, time::Duration};

use reqwest::{StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use snyk_rest::{OrgAttributes, RestClient, RestError};
use url::Url;

use crate::{
    grant::{Org, OrgId},
    metrics::Metrics,
};

/// A successful token answer. `Debug` redacts the tokens.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_in: u64,
    pub refresh_expires_in: Option<u64>,
    pub token_type: String,
    pub scope: String,
    pub bot_id: String,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
    refresh_expires_in: Option<u64>,
    token_type: String,
    scope: String,
    bot_id: String,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// How one call to Snyk failed. The distinction that matters is whether Snyk may have acted on the
/// request: `NotSent` never reached it, `Lost` may have been applied without us seeing the answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnykError {
    /// An OAuth error answer (`invalid_grant`, `invalid_client`, …): definite, do not retry.
    #[error("Snyk rejected the request: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// 429 or 5xx: Snyk did not act; retry later.
    #[error("Snyk answered {status}; retry later")]
    Transient {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The connection could not be made: the request never left.
    #[error("Snyk is unreachable: {0}")]
    NotSent(String),
    /// Sent, but no complete answer came back (timeout, reset, unreadable body).
    #[error("Snyk's answer was lost: {0}")]
    Lost(String),
    /// A definite answer we do not understand (e.g. an unexpected status on the REST API).
    #[error("unexpected answer from Snyk: {0}")]
    Unexpected(String),
}

/// After a refresh request failed: could Snyk have redeemed its refresh token?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// Snyk did not act on it: the token is still good and may be sent again (after
    /// `retry_after`, if Snyk asked for a pause).
    NotRedeemed { retry_after: Option<Duration> },
    /// Snyk may have rotated the pair with the answer lost on the way: a timeout, a reset, a
    /// 500/502/504 (a gateway or a crash after the rotation), a 503 without `Retry-After`.
    Maybe,
}

impl SnykError {
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, SnykError::Rejected { error, .. } if error == "invalid_grant")
    }

    /// How this failure of a refresh request bears on its refresh token (docs/design.md, "One
    /// refresh"). 429, and 503 with `Retry-After`, are Snyk declining to serve the request;
    /// an OAuth error answer is a definite refusal; a connect error never reached Snyk; a 3xx
    /// (`Unexpected`, never followed) is a definite answer from a host that did not redeem it.
    pub fn redemption(&self) -> Redemption {
        match self {
            SnykError::NotSent(_) | SnykError::Rejected { .. } | SnykError::Unexpected(_) => {
                Redemption::NotRedeemed { retry_after: None }
            }
            SnykError::Transient {
                status: 429,
                retry_after,
            } => Redemption::NotRedeemed {
                retry_after: *retry_after,
            },
            SnykError::Transient {
                status: 503,
                retry_after: Some(after),
            } => Redemption::NotRedeemed {
                retry_after: Some(*after),
            },
            SnykError::Transient { .. } | SnykError::Lost(_) => Redemption::Maybe,
        }
    }
}

/// Typed client for the endpoints token-service calls.
#[derive(Clone)]
pub struct SnykClient {
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    /// Each token request's deadline, enforced by [`answer_within`].
    timeout: Duration,
    api: Url,
    client_id: String,
    client_secret: SecretString,
    rest: RestClient,
}

impl fmt::Debug for SnykClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnykClient")
            .field("api", &self.api.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl SnykClient {
    pub fn new(
        api: Url,
        client_id: String,
        client_secret: SecretString,
        rest_version: String,
        timeout: Duration,
        extra_roots: &[reqwest::Certificate],
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        // Never follows a redirect, which would re-send the form (client secret, code or refresh
        // token) to wherever `Location` points; `error_answer` reports it.
        let http = snyk_rest::http_client(
            timeout,
            concat!("snykapps-token-service/", env!("CARGO_PKG_VERSION")),
            extra_roots,
        )?;
        let rest = RestClient::new(api.clone(), rest_version, timeout, extra_roots)?;
        Ok(SnykClient {
            metrics,
            http,
            timeout,
            api,
            client_id,
            client_secret,
            rest,
        })
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.api.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// `grant_type=authorization_code`.
    #[tracing::instrument(skip_all)]
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenPair, SnykError> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ])
        .await
    }

    /// `grant_type=refresh_token`: spends `refresh_token` if Snyk accepts it.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenPair, SnykError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ])
        .await
    }

    async fn token(&self, params: &[(&str, &str)]) -> Result<TokenPair, SnykError> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("client_id", &self.client_id));
        form.push(("client_secret", self.client_secret.expose_secret()));
        let request = self
            .http
            .post(self.endpoint("/oauth2/token"))
            .header(header::ACCEPT, "application/json")
            .headers(trace_headers())
            .form(&form)
            // This request's deadline is `answer_within`'s, not reqwest's: reqwest checks its own
            // timer before the answer, so after a freeze it would discard an answer that arrived.
            .timeout(NOT_REQWESTS_DEADLINE);
        answer_within(self.timeout, self.token_answer(request))
            .await
            .unwrap_or_else(|| {
                self.metrics.snyk_call("oauth2/token", "error".into());
                Err(SnykError::Lost(format!(
                    "no answer from Snyk's token endpoint within {} ms",
                    self.timeout.as_millis()
                )))
            })
    }

    async fn token_answer(&self, request: reqwest::RequestBuilder) -> Result<TokenPair, SnykError> {
        let response = request
            .send()
            .await
            .inspect_err(|_| self.metrics.snyk_call("oauth2/token", "error".into()))
            .map_err(classify)?;
        let status = response.status();
        self.metrics
            .snyk_call("oauth2/token", status.as_u16().to_string());
        if status.is_success() {
            let body: TokenBody = response.json().await.map_err(|e| {
                SnykError::Lost(format!("unreadable token answer: {}", e.without_url()))
            })?;
            let refresh_token = body
                .refresh_token
                .ok_or_else(|| SnykError::Lost("token answer without refresh_token".into()))?;
            return Ok(TokenPair {
                access_token: body.access_token.into(),
                refresh_token: refresh_token.into(),
                expires_in: body.expires_in,
                refresh_expires_in: body.refresh_expires_in,
                token_type: body.token_type,
                scope: body.scope,
                bot_id: body.bot_id,
            });
        }
        Err(error_answer(response).await)
    }

    /// Revokes `token` (and with it the grant). Snyk answers 200 whether it was valid or not.
    #[tracing::instrument(skip_all)]
    pub async fn revoke(&self, token: &SecretString) -> Result<(), SnykError> {
        let response = self
            .http
            .post(self.endpoint("/oauth2/revoke"))
            .headers(trace_headers())
            .form(&[
                ("token", token.expose_secret()),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose_secret()),
            ])
            .send()
            .await
            .inspect_err(|_| self.metrics.snyk_call("oauth2/revoke", "error".into()))
            .map_err(classify)?;
        self.metrics
            .snyk_call("oauth2/revoke", response.status().as_u16().to_string());
        if response.status().is_success() {
            return Ok(());
        }
        Err(error_answer(response).await)
    }

    /// Every org the access token may see (`GET /rest/orgs`, all pages).
    #[tracing::instrument(skip_all)]
    pub async fn list_orgs(&self, access_token: &SecretString) -> Result<Vec<Org>, SnykError> {
        let mut url = self.rest.url("/orgs", 100, &[]);
        let mut orgs = Vec::new();
        // A bound on pages guards against a server that links a page to itself forever.
        for _ in 0..1000 {
            let page = self
                .rest
                .get_page::<OrgAttributes>(
                    &url,
                    access_token,
                    &service_runtime::telemetry::current_context_headers(),
                )
                .await
                .inspect(|_| self.metrics.snyk_call("rest/orgs", "200".into()))
                .inspect_err(|e| self.metrics.snyk_call("rest/orgs", e.status_label()))
                .map_err(from_rest)?;
            for o in page.data {
                let id = OrgId::parse(&o.id).map_err(|_| {
                    SnykError::Unexpected(format!("org id {:?} is not a UUID", o.id))
                })?;
                orgs.push(Org {
                    id,
                    name: o.attributes.name,
                });
            }
            match page.next {
                Some(next) => url = next,
                None => return Ok(orgs),
            }
        }
        Err(SnykError::Unexpected(
            "/rest/orgs paginates beyond 1000 pages".into(),
        ))
    }
}

fn from_rest(e: RestError) -> SnykError {
    match e {
        RestError::Retryable {
            status,
            retry_after,
        } => SnykError::Transient {
            status,
            retry_after,
        },
        RestError::Transport(m) => SnykError::Lost(m),
        e => SnykError::Unexpected(e.to_string()),
    }
}

/// `traceparent`/`tracestate` of the current span, for the next hop.
fn trace_headers() -> reqwest::header::HeaderMap {
    service_runtime::telemetry::current_context_headers()
        .into_iter()
        .filter_map(|(k, v)| Some((reqwest::header::HeaderName::from_static(k), v.parse().ok()?)))
        .collect()
}

/// A deadline noticed later than this after it fell due means this process was not running in
/// between (frozen, e.g. `docker pause` or SIGSTOP, or starved of CPU).
const LATE: Duration = Duration::from_millis(500);
/// How long an answer that may already have arrived is still read after such a late deadline.
const LATE_GRACE: Duration = Duration::from_secs(1);
/// reqwest's per-request timeout on token requests: out of the way of [`answer_within`].
const NOT_REQWESTS_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// `answer` within `timeout`, counting against an answer only time this process was running:
/// when the deadline is noticed more than [`LATE`] after it fell due, Snyk's answer may be
/// waiting unread in the socket, and reading it decides between a rotated pair that lands and
/// one that is lost (and an install in doubt). So `answer` then gets [`LATE_GRACE`] more.
/// `None` when no answer came (docs/design.md, "A sender that was frozen").
async fn answer_within<F: std::future::Future>(timeout: Duration, answer: F) -> Option<F::Output> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answer = std::pin::pin!(answer);
    if let Ok(out) = tokio::time::timeout_at(deadline, &mut answer).await {
        return Some(out);
    }
    if tokio::time::Instant::now().saturating_duration_since(deadline) > LATE {
        return tokio::time::timeout(LATE_GRACE, answer).await.ok();
    }
    None
}

fn classify(e: reqwest::Error) -> SnykError {
    // A TLS failure (an untrusted certificate: see SNYK_CA_CERT) is a connect error: not sent.
    if e.is_connect() {
        SnykError::NotSent(snyk_rest::describe(e))
    } else {
        SnykError::Lost(snyk_rest::describe(e))
    }
}

async fn error_answer(response: reqwest::Response) -> SnykError {
    let status = response.status();
    if status.is_redirection() {
        // Definite and not retried: the host answered without redeeming anything, and the form
        // goes nowhere else. The target is left out of the message: it is not ours to log.
        return SnykError::Unexpected(format!(
            "Snyk answered {status}, a redirect, which is never followed (check SNYK_API_URL)"
        ));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return SnykError::Transient {
            status: status.as_u16(),
            retry_after,
        };
    }
    match response.json::<OAuthErrorBody>().await {
        Ok(body) => SnykError::Rejected {
            status: status.as_u16(),
            error: body.error,
            description: body.error_description,
        },
        Err(_) => SnykError::Unexpected(format!("status {status} without an OAuth error body")),
    }
}
