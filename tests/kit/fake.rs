//! The fake Snyk's side of a test: the configuration every stack starts from, PKCE pairs for its
//! consent shortcut, and sleeps timed to its 2-second access tokens.

use base64::Engine as _;
use rand::Rng as _;
use sha2::{Digest, Sha256};

use crate::{CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};

/// The fake's configuration every test starts from (2-second access tokens: a margin of 1 s).
pub fn fake_config() -> fake_snyk::Config {
    let mut c = fake_snyk::Config::new(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    c.access_token_ttl = std::time::Duration::from_secs(2);
    c
}

/// [`fake_config`] with access tokens that live an hour: no refresh falls due by itself, so none
/// happens unless a test asks for one (the browser-flow tests start from this).
pub fn hour_long_tokens() -> fake_snyk::Config {
    let mut c = fake_config();
    c.access_token_ttl = std::time::Duration::from_secs(3600);
    c
}

/// A fresh PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let bytes: [u8; 48] = rand::rng().random();
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Sleeps until a 2-second token is below its validity floor (a quarter of its lifetime,
/// 0.5 s): callers then wait for the refresh instead of getting the stored token.
pub async fn until_refresh_due() {
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
}

/// Sleeps until a 2-second token is inside its 1-second refresh margin but above its 0.5 s
/// floor: callers get the stored token at once and the refresh runs in the background.
pub async fn until_inside_margin() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}
