//! `loadgen install`: a real install against the fake Snyk, as a browser and auth-service would do
//! it: PKCE, the consent page, Approve, the code from the redirect, then `CompleteInstall`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use sha2::{Digest as _, Sha256};
use snykapps_proto::token_v1 as pb;
use tokio::task::JoinSet;

use crate::args::LocalUrl;
use crate::client::{Bearer, Client, connect};
use crate::consent::{code_from_redirect, parse_consent_page};

/// A PKCE pair (RFC 7636, S256).
#[derive(Clone)]
pub struct Pkce {
    /// The secret the token request proves knowledge of.
    pub verifier: String,
    /// `base64url(sha256(verifier))`, sent with the authorization request.
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"[redacted]")
            .field("challenge", &self.challenge)
            .finish()
    }
}

impl Pkce {
    /// A fresh verifier of 32 random bytes (43 base64url characters).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self::from_verifier(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The pair for a given verifier.
    pub fn from_verifier(verifier: String) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

/// What to install with.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The fake Snyk (app and API host).
    pub fake: LocalUrl,
    /// token-service.
    pub token_service: LocalUrl,
    /// The internal-caller key for token-service.
    pub bearer: Bearer,
    /// The registered redirect URI; never contacted, only compared by the fake.
    pub redirect_uri: String,
    /// The registered client id.
    pub client_id: String,
}

/// The new install.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Its id.
    pub install_id: String,
    /// Its orgs, `(id, name)`, in token-service's order.
    pub orgs: Vec<(String, String)>,
}

/// How long one request of an install (a page, a form post, `CompleteInstall`) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client for 127.0.0.1 only: no proxy, no redirects followed, bounded.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    http_client_with_timeout(CALL_TIMEOUT)
}

/// The same, with requests bounded by `timeout` (a listing that waits for its budget takes
/// minutes).
pub fn http_client_with_timeout(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    client_builder(timeout)
        .build()
        .context("cannot build the HTTP client")
}

/// What every loadgen HTTP client is: 127.0.0.1 only, no proxy, no redirect followed.
pub(crate) fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
}

/// Runs the whole flow once.
pub async fn install(plan: &Plan) -> anyhow::Result<Installed> {
    Installer::connect(plan.clone()).await?.install().await
}

/// The clients of many installs: one HTTP client (its pool of connections to the fake) and one
/// HTTP/2 connection to token-service, shared by every install and every worker.
#[derive(Debug, Clone)]
pub struct Installer {
    plan: Arc<Plan>,
    http: reqwest::Client,
    client: Client,
}

impl Installer {
    /// Builds the HTTP client and connects to token-service.
    pub async fn connect(plan: Plan) -> anyhow::Result<Self> {
        let client = connect(&plan.token_service, &plan.bearer).await?;
        Ok(Self {
            plan: Arc::new(plan),
            http: http_client()?,
            client,
        })
    }

    /// One whole install: consent page, Approve, `CompleteInstall`.
    pub async fn install(&self) -> anyhow::Result<Installed> {
        let plan = &*self.plan;
        let pkce = Pkce::generate();
        let code = authorize(
            &self.http,
            &plan.fake,
            &plan.client_id,
            &plan.redirect_uri,
            &pkce,
        )
        .await?;
        let mut client = self.client.clone();
        let completing = client.complete_install(pb::CompleteInstallRequest {
            code,
            code_verifier: pkce.verifier.clone(),
            redirect_uri: plan.redirect_uri.clone(),
            ..Default::default()
        });
        let install = tokio::time::timeout(CALL_TIMEOUT, completing)
            .await
            .context("CompleteInstall timed out")?
            .map_err(|s| {
                anyhow::anyhow!("CompleteInstall failed: {:?}: {}", s.code(), s.message())
            })?
            .into_inner();
        Ok(Installed {
            install_id: install.install_id,
            orgs: install.orgs.into_iter().map(|o| (o.id, o.name)).collect(),
        })
    }
}

/// How a batch of installs went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batch {
    /// Installs completed.
    pub installed: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl Batch {
    /// Installs per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.installed as f64 / secs
        } else {
            0.0
        }
    }
}

/// `count` installs by `concurrency` workers; `each` sees every install as it completes (in
/// completion order). The first failure stops the batch and is returned, after `each` saw the
/// installs completed before it.
pub async fn install_many(
    plan: Plan,
    count: usize,
    concurrency: usize,
    mut each: impl FnMut(&Installed) -> anyhow::Result<()>,
) -> anyhow::Result<Batch> {
    let start = Instant::now();
    let installer = Installer::connect(plan).await?;
    let claimed = Arc::new(AtomicUsize::new(0));
    let (done, mut completed) = tokio::sync::mpsc::channel(1024);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let installer = installer.clone();
        let claimed = Arc::clone(&claimed);
        let done = done.clone();
        workers.spawn(async move {
            while claimed.fetch_add(1, Ordering::Relaxed) < count {
                let installed = installer.install().await;
                let failed = installed.is_err();
                if done.send(installed).await.is_err() || failed {
                    break;
                }
            }
        });
    }
    drop(done);
    let mut installed = 0;
    let mut failure = None;
    while let Some(result) = completed.recv().await {
        match result {
            Ok(install) => {
                installed += 1;
                each(&install)?;
            }
            Err(e) => {
                // Let the others finish no more installs than they already started.
                claimed.store(count, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
        }
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("an install worker panicked")?;
    }
    if let Some(e) = failure {
        return Err(e.context(format!("{installed} of {count} installs completed before")));
    }
    Ok(Batch {
        installed,
        elapsed: start.elapsed(),
    })
}

/// The browser's part: the consent page, Approve, and the code from the redirect (after checking
/// that the redirect carries our `state`).
pub async fn authorize(
    http: &reqwest::Client,
    fake: &LocalUrl,
    client_id: &str,
    redirect_uri: &str,
    pkce: &Pkce,
) -> anyhow::Result<String> {
    let state = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());

    let mut authorize = fake.url().join("/oauth2/authorize")?;
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", &state)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    let location = approve_at(http, &LocalUrl::from_url(authorize)?).await?;
    Ok(code_from_redirect(&location, &state)?)
}

/// The consent page at `consent` (an authorization request, however it was made), Approve, and
/// where the decision's redirect sends the browser back to (not visited).
pub async fn approve_at(http: &reqwest::Client, consent: &LocalUrl) -> anyhow::Result<String> {
    let page = http
        .get(consent.url().clone())
        .send()
        .await
        .context("cannot reach the consent page")?;
    let status = page.status();
    if status != StatusCode::OK {
        let location = page
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = page.text().await.unwrap_or_default();
        anyhow::bail!(
            "the consent page answered {status} {location} {}",
            body.chars().take(300).collect::<String>()
        );
    }
    let html = page.text().await.context("cannot read the consent page")?;
    let form = parse_consent_page(&html)?;
    // The form posts wherever it says; that must still be 127.0.0.1.
    let action = LocalUrl::from_url(
        consent
            .url()
            .join(&form.action)
            .context("the form action is not a URL")?,
    )?;

    let decision = http
        .post(action.url().clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(&form.fields))
        .send()
        .await
        .context("cannot post the consent decision")?;
    if decision.status() != StatusCode::FOUND && decision.status() != StatusCode::SEE_OTHER {
        let status = decision.status();
        let body = decision.text().await.unwrap_or_default();
        anyhow::bail!(
            "the consent decision answered {status}, not a redirect: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    decision
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
        .context("the redirect has no Location")
}

/// `application/x-www-form-urlencoded` of `pairs`, in order.
fn form_body(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(
            pkce.challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let fresh = Pkce::generate();
        assert_eq!(fresh.verifier.len(), 43);
        assert_ne!(fresh.verifier, Pkce::generate().verifier);
        assert!(!format!("{fresh:?}").contains(&fresh.verifier));
    }

    #[test]
    fn form_bodies_are_encoded_in_order() {
        let body = form_body(&[
            (
                "redirect_uri".into(),
                "http://localhost:8080/cb?a=1&b=2".into(),
            ),
            ("decision".into(), "approve".into()),
        ]);
        assert_eq!(
            body,
            "redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb%3Fa%3D1%26b%3D2&decision=approve"
        );
    }
}
