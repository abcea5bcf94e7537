//! The Snyk client of token-service: the OAuth2 token and revoke endpoints, and `/rest/orgs` to
//! learn which orgs a new install may see. Each call is one attempt; the caller decides retries,
//! because only it knows whether a retry could spend a refresh token twice. The one exception:
//! a call refused with `invalid_client` is made once more with the app's other client secret
//! ([`crate::client_secret`]); Snyk authenticates the client before it looks at the code or
//! the refresh token, so that refused call spent nothing (docs/design.md, "Rotating the client
//! secret").

use std::{fmt, sync::Arc, time::Duration};

use reqwest::{StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use snyk_rest::{OrgAttributes, RestClient, RestError};
use url::Url;

use crate::{
    client_secret::{self, ClientSecrets, SecretChoice, Slot},
    grant::{Org, OrgId, TokenPair},
    metrics::{Metrics, SnykEndpoint},
};

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
    error: OAuthError,
    #[serde(default)]
    error_description: Option<String>,
}

/// The `error` code of an OAuth error answer (RFC 6749 §5.2; `unsupported_token_type` from the
/// revoke endpoint, RFC 7009 §2.2.1). Callers decide on these variants, never on strings; a code
/// Snyk may add is kept, as it was sent, in `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum OAuthError {
    /// A parameter is missing, repeated or malformed (for a code: also a bad PKCE verifier).
    InvalidRequest,
    /// Snyk did not authenticate the client (`client_id` and secret).
    InvalidClient,
    /// The code or refresh token is invalid, expired, revoked or already used.
    InvalidGrant,
    /// The client authenticated but may not use this grant type.
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    UnsupportedTokenType,
    /// Any other code, as Snyk sent it.
    Other(String),
}

impl OAuthError {
    const KNOWN: [OAuthError; 7] = [
        OAuthError::InvalidRequest,
        OAuthError::InvalidClient,
        OAuthError::InvalidGrant,
        OAuthError::UnauthorizedClient,
        OAuthError::UnsupportedGrantType,
        OAuthError::InvalidScope,
        OAuthError::UnsupportedTokenType,
    ];

    /// The code as it is on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::UnsupportedTokenType => "unsupported_token_type",
            OAuthError::Other(code) => code,
        }
    }
}

impl From<String> for OAuthError {
    fn from(code: String) -> Self {
        OAuthError::KNOWN
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or(OAuthError::Other(code))
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one call to Snyk failed. The distinction that matters is whether Snyk may have acted on the
/// request: `NotSent` never reached it, `Lost` may have been applied without us seeing the answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnykError {
    /// An OAuth error answer (`invalid_grant`, `invalid_client`, …): definite, do not retry.
    #[error("Snyk rejected the request: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        status: u16,
        error: OAuthError,
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
    /// Every configured client secret was refused (`invalid_client`): the app's configuration,
    /// not the install's grant, which Snyk never looked at.
    #[error(
        "Snyk refused the client credentials ({answer}) with every secret of {var} ({count} configured); check SNYK_CLIENT_ID and {var}: was the secret deleted or replaced at Snyk?",
        var = client_secret::VAR
    )]
    ClientRefused { answer: String, count: usize },
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
        matches!(
            self,
            SnykError::Rejected {
                error: OAuthError::InvalidGrant,
                ..
            }
        )
    }

    /// The client authenticated but may not use this grant type (RFC 6749 §5.2
    /// `unauthorized_client`): an answer given only after client authentication.
    pub fn is_unauthorized_client(&self) -> bool {
        matches!(
            self,
            SnykError::Rejected {
                error: OAuthError::UnauthorizedClient,
                ..
            }
        )
    }

    /// Snyk did not accept the client secret sent (RFC 6749 §5.2 `invalid_client`).
    pub fn is_invalid_client(&self) -> bool {
        matches!(
            self,
            SnykError::Rejected {
                error: OAuthError::InvalidClient,
                ..
            }
        )
    }

    /// How this failure of a refresh request bears on its refresh token (docs/design.md, "One
    /// refresh"). 429, and 503 with `Retry-After`, are Snyk declining to serve the request;
    /// an OAuth error answer is a definite refusal; a connect error never reached Snyk; a 3xx
    /// (`Unexpected`, never followed) is a definite answer from a host that did not redeem it.
    pub fn redemption(&self) -> Redemption {
        match self {
            SnykError::NotSent(_)
            | SnykError::Rejected { .. }
            | SnykError::Unexpected(_)
            | SnykError::ClientRefused { .. } => Redemption::NotRedeemed { retry_after: None },
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
    /// Shared by every clone: which secret goes first is one process-wide choice.
    secrets: Arc<SecretChoice>,
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
        client_secrets: ClientSecrets,
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
            secrets: Arc::new(SecretChoice::new(client_secrets)),
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
        // One deadline for the call, the try with the other secret included, so the lease budget
        // `config` checks (one timeout per attempt) holds whatever the number of secrets.
        let call = self.with_client_secret(|secret| {
            let mut form: Vec<(&str, &str)> = params.to_vec();
            form.push(("client_id", &self.client_id));
            form.push(("client_secret", secret.expose()));
            let request = self
                .http
                .post(self.endpoint("/oauth2/token"))
                .header(header::ACCEPT, "application/json")
                .headers(trace_headers())
                .form(&form)
                // This request's deadline is `answer_within`'s, not reqwest's: reqwest checks its
                // own timer before the answer, so after a freeze it would discard an answer that
                // arrived.
                .timeout(NOT_REQWESTS_DEADLINE);
            self.token_answer(request)
        });
        answer_within(self.timeout, call).await.unwrap_or_else(|| {
            self.metrics.snyk_call(SnykEndpoint::Token, "error".into());
            Err(SnykError::Lost(format!(
                "no answer from Snyk's token endpoint within {} ms",
                self.timeout.as_millis()
            )))
        })
    }

    /// `call` with the preferred client secret and, when Snyk answers `invalid_client`, once
    /// more with the other one (if configured). Only `invalid_client` does this: Snyk checks
    /// the client before the grant, so that answer proves the code or refresh token was not
    /// looked at; any other answer is returned as it is. The secret that worked goes first
    /// from then on; one refused is counted each time and logged once.
    async fn with_client_secret<'s, T, F, Fut>(&'s self, call: F) -> Result<T, SnykError>
    where
        F: Fn(Slot<'s>) -> Fut,
        Fut: std::future::Future<Output = Result<T, SnykError>>,
    {
        let mut refused = None;
        for (tried, slot) in self.secrets.order().enumerate() {
            match call(slot).await {
                Err(e) if e.is_invalid_client() => {
                    self.metrics.client_secret_rejected(slot.position);
                    if self.secrets.refused(slot.position) {
                        tracing::warn!(
                            secret = slot.label(),
                            configured = self.secrets.len(),
                            "Snyk no longer accepts client secret {} of {} (invalid_client): deleted or replaced at Snyk?",
                            slot.label(),
                            client_secret::VAR,
                        );
                    }
                    refused = Some(e);
                }
                // A definite answer from Snyk; it proves this secret works only when it comes
                // from past client authentication (a success, or a verdict on the grant itself):
                // only then is it sent first from now on.
                result @ (Ok(_) | Err(SnykError::Rejected { .. })) => {
                    let authenticated = match &result {
                        Ok(_) => true,
                        Err(e) => e.is_invalid_grant() || e.is_unauthorized_client(),
                    };
                    if tried > 0 && authenticated {
                        self.secrets.accepted(slot.position);
                        tracing::info!(
                            secret = slot.label(),
                            "client secret {} of {} accepted; it is sent first from now on",
                            slot.label(),
                            client_secret::VAR
                        );
                    }
                    return result;
                }
                other => return other,
            }
        }
        let answer = match refused {
            Some(e) => e.to_string(),
            None => "no client secret configured".into(),
        };
        Err(SnykError::ClientRefused {
            answer,
            count: self.secrets.len(),
        })
    }

    async fn token_answer(&self, request: reqwest::RequestBuilder) -> Result<TokenPair, SnykError> {
        let response = request
            .send()
            .await
            .inspect_err(|_| self.metrics.snyk_call(SnykEndpoint::Token, "error".into()))
            .map_err(classify)?;
        let status = response.status();
        self.metrics
            .snyk_call(SnykEndpoint::Token, status.as_u16().to_string());
        if status.is_success() {
            // Lost, not refused: Snyk answered 200, so it may have rotated the pair it carries.
            let unreadable =
                |e: &dyn fmt::Display| SnykError::Lost(format!("unreadable token answer: {e}"));
            let body = self
                .read_body(SnykEndpoint::Token, response)
                .await
                .map_err(|e| unreadable(&e))?;
            let body: TokenBody = serde_json::from_slice(&body).map_err(|e| unreadable(&e))?;
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
        Err(self.error_answer(SnykEndpoint::Token, response).await)
    }

    /// Revokes `token` (and with it the grant). Snyk answers 200 whether it was valid or not.
    #[tracing::instrument(skip_all)]
    pub async fn revoke(&self, token: &SecretString) -> Result<(), SnykError> {
        self.with_client_secret(|secret| async move {
            let response = self
                .http
                .post(self.endpoint("/oauth2/revoke"))
                .headers(trace_headers())
                .form(&[
                    ("token", token.expose_secret()),
                    ("client_id", &self.client_id),
                    ("client_secret", secret.expose()),
                ])
                .send()
                .await
                .inspect_err(|_| self.metrics.snyk_call(SnykEndpoint::Revoke, "error".into()))
                .map_err(classify)?;
            self.metrics
                .snyk_call(SnykEndpoint::Revoke, response.status().as_u16().to_string());
            if response.status().is_success() {
                return Ok(());
            }
            Err(self.error_answer(SnykEndpoint::Revoke, response).await)
        })
        .await
    }

    /// Every org the access token may see (`GET /rest/orgs`, all pages), each page requested
    /// once `permit` (the install's request budget) lets it go.
    #[tracing::instrument(skip_all)]
    pub async fn list_orgs<E, P>(
        &self,
        access_token: &SecretString,
        mut permit: impl FnMut() -> P,
    ) -> Result<Vec<Org>, E>
    where
        E: From<SnykError>,
        P: Future<Output = Result<(), E>>,
    {
        let mut url = self.rest.url("/orgs", 100, &[]);
        let mut orgs = Vec::new();
        // A bound on pages guards against a server that links a page to itself forever.
        for _ in 0..1000 {
            permit().await?;
            let page = self
                .rest
                .get_page::<OrgAttributes>(
                    &url,
                    access_token,
                    &service_runtime::telemetry::current_context_headers(),
                )
                .await
                .inspect(|_| self.metrics.snyk_call(SnykEndpoint::Orgs, "200".into()))
                .inspect_err(|e| {
                    self.metrics.snyk_call(SnykEndpoint::Orgs, e.status_label());
                    self.count_capped(SnykEndpoint::Orgs, e);
                })
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
        Err(SnykError::Unexpected("/rest/orgs paginates beyond 1000 pages".into()).into())
    }

    /// The body of an answer from `endpoint`, within `snyk_rest::MAX_BODY_BYTES` as every
    /// body read of a Snyk answer.
    async fn read_body(
        &self,
        endpoint: SnykEndpoint,
        response: reqwest::Response,
    ) -> Result<Vec<u8>, RestError> {
        snyk_rest::read_body(response, snyk_rest::MAX_BODY_BYTES)
            .await
            .inspect_err(|e| self.count_capped(endpoint, e))
    }

    fn count_capped(&self, endpoint: SnykEndpoint, e: &RestError) {
        if let RestError::TooLarge { .. } = e {
            self.metrics.snyk_body_capped(endpoint);
        }
    }

    /// What a non-2xx answer from `endpoint` means.
    async fn error_answer(&self, endpoint: SnykEndpoint, response: reqwest::Response) -> SnykError {
        let status = response.status();
        if status.is_redirection() {
            // Definite and not retried: the host answered without redeeming anything, and the
            // form goes nowhere else. The target is left out of the message: it is not ours to
            // log.
            return SnykError::Unexpected(format!(
                "Snyk answered {status}, a redirect, which is never followed (check SNYK_API_URL)"
            ));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return SnykError::Transient {
                status: status.as_u16(),
                retry_after: snyk_rest::retry_after(&response),
            };
        }
        // A definite refusal either way: unreadable or over the cap, it redeemed nothing.
        let body = match self.read_body(endpoint, response).await {
            Ok(body) => body,
            Err(e) => return SnykError::Unexpected(format!("status {status}: {e}")),
        };
        match serde_json::from_slice::<OAuthErrorBody>(&body) {
            Ok(body) => SnykError::Rejected {
                status: status.as_u16(),
                error: body.error,
                description: body.error_description,
            },
            Err(_) => SnykError::Unexpected(format!("status {status} without an OAuth error body")),
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use fake_snyk::{Config, FakeSnyk, SecretChange};
    use sha2::Digest as _;

    use super::*;

    const ID: &str = "client-id";
    const A: &str = "secret-a";
    const REDIRECT: &str = "http://localhost:8080/callback";
    const VERIFIER: &str = "verifier-verifier-verifier-verifier-verifier-0123";

    /// Every code Snyk's answers may carry parses to its variant and prints as it was sent;
    /// an unknown one is kept whole in `Other`.
    #[test]
    fn oauth_error_codes_parse_to_their_variant_and_back() {
        let cases = [
            ("invalid_request", OAuthError::InvalidRequest),
            ("invalid_client", OAuthError::InvalidClient),
            ("invalid_grant", OAuthError::InvalidGrant),
            ("unauthorized_client", OAuthError::UnauthorizedClient),
            ("unsupported_grant_type", OAuthError::UnsupportedGrantType),
            ("invalid_scope", OAuthError::InvalidScope),
            ("unsupported_token_type", OAuthError::UnsupportedTokenType),
            ("slow_down", OAuthError::Other("slow_down".into())),
            ("Invalid_Grant", OAuthError::Other("Invalid_Grant".into())),
            ("", OAuthError::Other(String::new())),
        ];
        for (code, variant) in cases {
            let body: OAuthErrorBody =
                serde_json::from_str(&format!(r#"{{"error":"{code}"}}"#)).unwrap();
            assert_eq!(body.error, variant, "{code}");
            assert_eq!(body.error.to_string(), code);
            assert_eq!(body.error_description, None);
        }
    }

    async fn fake() -> FakeSnyk {
        FakeSnyk::start(Config::new(ID, A, REDIRECT)).await.unwrap()
    }

    fn client(fake: &FakeSnyk, secrets: &str) -> (SnykClient, Arc<Metrics>) {
        client_of(&fake.url(), secrets)
    }

    fn client_of(api: &str, secrets: &str) -> (SnykClient, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let client = SnykClient::new(
            Url::parse(api).unwrap(),
            ID.into(),
            ClientSecrets::parse(secrets).unwrap(),
            "2024-05-31".into(),
            Duration::from_secs(5),
            &[],
            Arc::clone(&metrics),
        )
        .unwrap();
        (client, metrics)
    }

    async fn install(fake: &FakeSnyk, snyk: &SnykClient) -> TokenPair {
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
        let code = fake.approve(ID, REDIRECT, &challenge, None).unwrap();
        snyk.exchange_code(&code, VERIFIER, REDIRECT).await.unwrap()
    }

    fn calls(fake: &FakeSnyk, grant_type: &str) -> u64 {
        fake.stats()
            .token_calls
            .get(grant_type)
            .copied()
            .unwrap_or(0)
    }

    /// The fake moved from A to B while this client still lists A first: each endpoint is
    /// refused once, tried again with B, and from then on B goes first.
    #[tokio::test]
    async fn invalid_client_is_tried_once_more_with_the_other_secret_which_then_goes_first() {
        let fake = fake().await;
        let b = fake
            .change_client_secret(SecretChange::Create)
            .unwrap()
            .unwrap();
        fake.change_client_secret(SecretChange::Delete { secret: A.into() })
            .unwrap();
        let (snyk, metrics) = client(&fake, &format!("{A},{b}"));

        let pair = install(&fake, &snyk).await;
        assert_eq!(metrics.snapshot().client_secret_rejected, [1, 0]);
        assert_eq!(calls(&fake, "authorization_code"), 2);
        let pair = snyk.refresh(&pair.refresh_token).await.unwrap();
        let pair = snyk.refresh(&pair.refresh_token).await.unwrap();
        snyk.revoke(&pair.refresh_token).await.unwrap();

        let stats = fake.stats();
        assert_eq!(stats.client_authentication_failures, 1, "{stats:?}");
        assert_eq!(
            (stats.successful_refreshes, stats.spent_refresh_token_reuses),
            (2, 0),
            "{stats:?}"
        );
        assert_eq!(stats.revocations, 1);
        assert_eq!(metrics.snapshot().client_secret_rejected, [1, 0]);
    }

    /// Only `invalid_client` is tried again: `invalid_grant` is the grant's answer, given after
    /// the client was accepted, and sending the token again could be a replay.
    #[tokio::test]
    async fn invalid_grant_is_never_sent_again_with_the_other_secret() {
        let fake = fake().await;
        let b = fake
            .change_client_secret(SecretChange::Create)
            .unwrap()
            .unwrap();
        let (snyk, metrics) = client(&fake, &format!("{b},{A}"));
        let pair = install(&fake, &snyk).await;
        snyk.refresh(&pair.refresh_token).await.unwrap();

        let spent = snyk.refresh(&pair.refresh_token).await.unwrap_err();
        assert!(spent.is_invalid_grant(), "{spent:?}");
        assert_eq!(calls(&fake, "refresh_token"), 2);
        let stats = fake.stats();
        assert_eq!(stats.spent_refresh_token_reuses, 1, "{stats:?}");
        assert_eq!(stats.client_authentication_failures, 0, "{stats:?}");
        assert_eq!(metrics.snapshot().client_secret_rejected, [0, 0]);
    }

    /// No configured secret is accepted: a definite error naming SNYK_CLIENT_SECRET that says
    /// the grant was not looked at (not redeemed), after one call per secret.
    #[tokio::test]
    async fn every_secret_refused_is_an_error_naming_the_variable() {
        let fake = fake().await;
        let (good, _) = client(&fake, A);
        let pair = install(&fake, &good).await;
        fake.change_client_secret(SecretChange::Replace).unwrap();

        for (secrets, count, rejected) in
            [("secret-x", 1, [1, 0]), ("secret-x,secret-a", 2, [1, 1])]
        {
            let (snyk, metrics) = client(&fake, secrets);
            let before = calls(&fake, "refresh_token");
            let err = snyk.refresh(&pair.refresh_token).await.unwrap_err();
            assert!(
                matches!(err, SnykError::ClientRefused { count: c, .. } if c == count),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("SNYK_CLIENT_SECRET") && msg.contains("invalid_client"),
                "{msg}"
            );
            assert!(
                !msg.contains("secret-x") && !msg.contains("secret-a"),
                "{msg}"
            );
            assert_eq!(
                err.redemption(),
                Redemption::NotRedeemed { retry_after: None }
            );
            assert_eq!(calls(&fake, "refresh_token") - before, count as u64);
            assert_eq!(metrics.snapshot().client_secret_rejected, rejected);
            let revoke = snyk.revoke(&pair.refresh_token).await.unwrap_err();
            assert!(
                matches!(revoke, SnykError::ClientRefused { .. }),
                "{revoke:?}"
            );
        }
        assert_eq!(
            fake.live_refresh_tokens(),
            1,
            "nothing spent, nothing revoked"
        );
        assert_eq!(fake.stats().spent_refresh_token_reuses, 0);
    }

    /// Every body read of a Snyk answer stops at `snyk_rest::MAX_BODY_BYTES` and is counted by
    /// endpoint: a 200 from the token endpoint over it is a lost answer (Snyk may have rotated
    /// the pair it carries), an error answer or a page of orgs over it a definite, unretried
    /// error.
    #[tokio::test]
    async fn answers_over_the_body_cap_are_errors_and_counted() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
        let server = MockServer::start().await;
        let (snyk, metrics) = client_of(&server.uri(), A);
        let over = |status: u16| {
            ResponseTemplate::new(status).set_body_raw(
                vec![b' '; snyk_rest::MAX_BODY_BYTES + 1],
                "application/json",
            )
        };
        let token = SecretString::from("refresh-token".to_owned());
        let mount = async |path: &str, status: u16| {
            server.reset().await;
            Mock::given(matchers::path(path))
                .respond_with(over(status))
                .mount(&server)
                .await;
        };

        mount("/oauth2/token", 200).await;
        let lost = snyk.refresh(&token).await.unwrap_err();
        assert!(matches!(lost, SnykError::Lost(_)), "{lost:?}");
        assert_eq!(lost.redemption(), Redemption::Maybe);
        mount("/oauth2/token", 400).await;
        let refused = snyk.refresh(&token).await.unwrap_err();
        assert_eq!(
            refused.redemption(),
            Redemption::NotRedeemed { retry_after: None }
        );
        mount("/oauth2/revoke", 400).await;
        let revoke = snyk.revoke(&token).await.unwrap_err();
        mount("/rest/orgs", 200).await;
        let orgs = snyk
            .list_orgs(&token, || async { Ok::<_, SnykError>(()) })
            .await
            .unwrap_err();
        for err in [&refused, &revoke, &orgs] {
            assert!(matches!(err, SnykError::Unexpected(_)), "{err:?}");
        }
        for err in [lost, refused, revoke, orgs] {
            assert!(err.to_string().contains("4194304 bytes"), "{err}");
        }
        assert_eq!(metrics.snapshot().snyk_body_capped, [2, 1, 1]);
    }
}
