//! Pending sign-ins: the OAuth `state` of every `/auth` this service started, kept in Redis for
//! ten minutes and consumed exactly once by `/callback`.
//!
//! Each record is `auth:state:<state>` → JSON `{verifier, binding_hash, created_at}` (plus
//! `reconnect`: the install id, for a Reconnect of an existing install), written with
//! `SET … EX 600`. `/callback` first reads it without deleting ([`StateStore::peek`]) and checks
//! the browser binding; only the browser that started the sign-in then consumes it
//! ([`StateStore::consume`]: a Lua compare-and-delete on the record it read), so a callback
//! replayed from another browser neither succeeds nor spends the state of the right one, and a
//! state is still single use when two callbacks race (across replicas too: one `DEL` wins).
//! `binding_hash` is SHA-256 of a random value that only the browser that started the sign-in
//! holds, in an HttpOnly cookie: a state replayed from another browser (login CSRF, a leaked
//! callback URL) does not match. Redis never sees the binding itself nor the authorization code;
//! it does see the PKCE verifier, which is worthless without the code and lives at most ten
//! minutes. This is auth-service's own Redis (`AUTH_REDIS_URL`), not the grants'.
//!
//! A Reconnect carries the install it re-authorizes only here, server-side: the id is written
//! by `POST /installs/{id}/reconnect` after it checked that the browser's session owns the
//! install, and `/callback` takes it from the record, never from its query, so no link can
//! point a sign-in at someone else's install.

use std::{
    fmt,
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use rand::Rng as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use service_runtime::redis::RedisTarget;
use sha2::{Digest, Sha256};
use snykapps_ids::InstallId;
use subtle::ConstantTimeEq as _;

/// How long a started sign-in may take (the issue's ten minutes; Snyk's codes live as long).
pub const STATE_TTL: Duration = Duration::from_secs(600);

/// Prefix of every key this module writes.
pub const KEY_PREFIX: &str = "auth:state:";

/// Length of a state or binding value: 32 random bytes in base64url without padding.
const TOKEN_LEN: usize = 43;

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn is_token(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The OAuth `state` parameter: 256 random bits. Only values of the shape this service issues
/// can be parsed, so garbage never reaches Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthState(String);

impl OAuthState {
    pub fn generate() -> Self {
        OAuthState(random_token())
    }

    /// `Some` for a value this service could have issued (43 characters of base64url).
    pub fn parse(s: &str) -> Option<Self> {
        is_token(s).then(|| OAuthState(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Redis key of this state's record.
    pub fn redis_key(&self) -> String {
        format!("{KEY_PREFIX}{}", self.0)
    }
}

impl fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OAuthState([redacted])")
    }
}

/// The browser binding: a random value kept in an HttpOnly cookie. Only its hash is stored.
#[derive(Clone)]
pub struct Binding(SecretString);

impl Binding {
    pub fn generate() -> Self {
        Binding(random_token().into())
    }

    /// The binding a cookie carries, if it has the shape of one we issued.
    pub fn parse(s: &str) -> Option<Self> {
        is_token(s).then(|| Binding(s.to_owned().into()))
    }

    /// The cookie value.
    pub fn value(&self) -> &str {
        self.0.expose_secret()
    }

    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.expose_secret().as_bytes()).into()
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Binding([redacted])")
    }
}

/// The stored form of a pending sign-in.
#[derive(Serialize, Deserialize)]
struct Record {
    verifier: String,
    /// base64url(SHA-256(binding)).
    binding_hash: String,
    /// Unix seconds.
    created_at: u64,
    /// The install a Reconnect re-authorizes; absent for a new install (and in records written
    /// before Reconnect existed, which therefore still read as new installs).
    /// Kept as text and read with [`InstallId::parse`] (the hyphenated form only), like every id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reconnect: Option<String>,
}

/// What a sign-in is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Install the app anew (Install on the landing page): a new install id.
    Install,
    /// Re-authorize this existing install (Reconnect on its page): the id stays.
    Reconnect(InstallId),
}

/// A pending sign-in, as `/callback` gets it back.
pub struct Pending {
    verifier: SecretString,
    binding_hash: [u8; 32],
    created_at: u64,
    purpose: Purpose,
    /// The record exactly as read: [`StateStore::consume`] deletes the key only while it holds it.
    raw: SecretString,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("created_at", &self.created_at)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// Was this sign-in started by the browser that holds `binding`? (constant-time)
    pub fn is_bound_to(&self, binding: Option<&Binding>) -> bool {
        binding.is_some_and(|b| bool::from(b.hash().ct_eq(&self.binding_hash)))
    }

    /// Has it outlived [`STATE_TTL`]? Redis expires the key; this guards against a record that
    /// lost its TTL (a `PERSIST`, a restore from a dump).
    pub fn is_expired(&self, now: u64) -> bool {
        now.saturating_sub(self.created_at) > STATE_TTL.as_secs()
    }

    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }

    /// A new install, or a Reconnect of which install.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn encode(verifier: &SecretString, binding: &Binding, created_at: u64, purpose: Purpose) -> String {
    let record = Record {
        verifier: verifier.expose_secret().to_owned(),
        binding_hash: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(binding.hash()),
        created_at,
        reconnect: match purpose {
            Purpose::Install => None,
            Purpose::Reconnect(id) => Some(id.to_string()),
        },
    };
    // Serializing three plain fields cannot fail; an empty string would only make the state unusable.
    serde_json::to_string(&record).unwrap_or_default()
}

fn decode(raw: &str) -> Result<Pending, StateError> {
    let record: Record = serde_json::from_str(raw).map_err(|_| StateError::Corrupt)?;
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&record.binding_hash)
        .map_err(|_| StateError::Corrupt)?;
    let binding_hash: [u8; 32] = hash.try_into().map_err(|_| StateError::Corrupt)?;
    let purpose = match record.reconnect.as_deref() {
        None => Purpose::Install,
        Some(id) => Purpose::Reconnect(InstallId::parse(id).map_err(|_| StateError::Corrupt)?),
    };
    Ok(Pending {
        verifier: record.verifier.into(),
        binding_hash,
        created_at: record.created_at,
        purpose,
        raw: raw.to_owned().into(),
    })
}

/// Deletes a state only if it still holds the record the caller read.
///
/// KEYS[1] = `auth:state:<state>`; ARGV[1] = the record as read.
/// Answers 1 when this call consumed the state, 0 when it was gone or held something else (another
/// callback consumed it first, or it expired).
static CONSUME: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// A record that is not ours (or was damaged): the sign-in cannot go on.
    #[error("a pending sign-in record is unreadable")]
    Corrupt,
}

/// Pending sign-ins in Redis. Cheap to clone (one multiplexed, self-reconnecting connection).
#[derive(Clone)]
pub struct StateStore {
    conn: ConnectionManager,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateStore")
    }
}

impl StateStore {
    /// Connects and checks Redis answers, so a wrong `AUTH_REDIS_URL` stops the start-up.
    pub async fn connect(
        target: &RedisTarget,
        timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let client = target.client(redis::ProtocolVersion::RESP2)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        let store = StateStore { conn };
        store.ping().await?;
        Ok(store)
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Records a new sign-in for `purpose`, bound to `binding`; returns its state. For a
    /// [`Purpose::Reconnect`] the caller has checked that the browser's session owns the install.
    pub async fn begin(
        &self,
        binding: &Binding,
        verifier: &SecretString,
        purpose: Purpose,
    ) -> Result<OAuthState, StateError> {
        let mut c = self.conn.clone();
        let record = encode(verifier, binding, unix_now(), purpose);
        let state = OAuthState::generate();
        // No NX: two equal 256-bit random values will not be drawn.
        let () = redis::cmd("SET")
            .arg(state.redis_key())
            .arg(record)
            .arg("EX")
            .arg(STATE_TTL.as_secs())
            .query_async(&mut c)
            .await?;
        Ok(state)
    }

    /// Reads `state` without consuming it: `None` for a state that expired, was consumed or was
    /// never issued. Check [`Pending::is_bound_to`] before [`StateStore::consume`].
    pub async fn peek(&self, state: &OAuthState) -> Result<Option<Pending>, StateError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = redis::cmd("GET")
            .arg(state.redis_key())
            .query_async(&mut c)
            .await?;
        raw.map(|r| decode(&r)).transpose()
    }

    /// Consumes `state`, which [`StateStore::peek`] returned as `pending`: `true` for exactly one
    /// caller, `false` for every other (a racing callback won, or the state expired since).
    pub async fn consume(&self, state: &OAuthState, pending: &Pending) -> Result<bool, StateError> {
        let mut c = self.conn.clone();
        let deleted: i64 = CONSUME
            .key(state.redis_key())
            .arg(pending.raw.expose_secret())
            .invoke_async(&mut c)
            .await?;
        Ok(deleted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bind_to_their_browser() {
        let binding = Binding::generate();
        let verifier = SecretString::from("v".repeat(64));
        let raw = encode(&verifier, &binding, 1_700_000_000, Purpose::Install);
        let pending = decode(&raw).expect("decodes");
        assert_eq!(pending.verifier().expose_secret(), verifier.expose_secret());
        assert!(pending.is_bound_to(Some(&binding)));
        assert!(
            !pending.is_bound_to(Some(&Binding::generate())),
            "another browser"
        );
        assert!(!pending.is_bound_to(None), "no cookie at all");
        assert!(
            !raw.contains(binding.value()),
            "only the binding's hash is stored: {raw}"
        );
    }

    #[test]
    fn the_stored_form_is_stable_json() {
        let binding = Binding::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("shape");
        let raw = encode(
            &SecretString::from("verifier"),
            &binding,
            7,
            Purpose::Install,
        );
        let json: serde_json::Value = serde_json::from_str(&raw).expect("json");
        assert_eq!(json["verifier"], "verifier");
        assert_eq!(json["created_at"], 7);
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(binding.value()));
        assert_eq!(json["binding_hash"], expected.as_str());
        assert!(
            json.get("reconnect").is_none(),
            "a new install's record has no reconnect field: {raw}"
        );
    }

    #[test]
    fn a_reconnect_keeps_its_install_in_the_record() {
        let id = InstallId::parse("3f1a0b9e-8f5c-4f4e-9a51-6f1f6f0f1a2b").expect("id");
        let raw = encode(
            &SecretString::from("v"),
            &Binding::generate(),
            7,
            Purpose::Reconnect(id),
        );
        let json: serde_json::Value = serde_json::from_str(&raw).expect("json");
        assert_eq!(json["reconnect"], "3f1a0b9e-8f5c-4f4e-9a51-6f1f6f0f1a2b");
        assert_eq!(
            decode(&raw).expect("decodes").purpose(),
            Purpose::Reconnect(id)
        );
        let new = encode(
            &SecretString::from("v"),
            &Binding::generate(),
            7,
            Purpose::Install,
        );
        assert_eq!(decode(&new).expect("decodes").purpose(), Purpose::Install);
    }

    #[test]
    fn records_written_before_reconnect_read_as_new_installs() {
        let old = r#"{"verifier":"v","binding_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","created_at":1}"#;
        assert_eq!(decode(old).expect("decodes").purpose(), Purpose::Install);
    }

    #[test]
    fn damaged_records_are_refused() {
        for raw in [
            "",
            "{}",
            "not json",
            r#"{"verifier":"v","binding_hash":"c2hvcnQ","created_at":1}"#,
            r#"{"verifier":"v","binding_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","created_at":1,"reconnect":"not-an-id"}"#,
            r#"{"verifier":"v","binding_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","created_at":1,"reconnect":"3f1a0b9e8f5c4f4e9a516f1f6f0f1a2b"}"#,
        ] {
            assert!(matches!(decode(raw), Err(StateError::Corrupt)), "{raw}");
        }
    }

    #[test]
    fn expiry_follows_the_ttl() {
        let raw = encode(
            &SecretString::from("v"),
            &Binding::generate(),
            1_000,
            Purpose::Install,
        );
        let pending = decode(&raw).expect("decodes");
        assert!(!pending.is_expired(1_000 + 600));
        assert!(pending.is_expired(1_000 + 601));
    }

    #[test]
    fn only_issued_shapes_parse() {
        let s = OAuthState::generate();
        assert_eq!(s.as_str().len(), 43);
        assert_eq!(OAuthState::parse(s.as_str()), Some(s.clone()));
        assert_eq!(s.redis_key(), format!("auth:state:{}", s.as_str()));
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*",
        ] {
            assert!(OAuthState::parse(bad).is_none(), "{bad}");
            assert!(Binding::parse(bad).is_none(), "{bad}");
        }
        assert_ne!(OAuthState::generate(), OAuthState::generate());
    }

    #[test]
    fn debug_shows_no_secret() {
        let b = Binding::generate();
        let s = OAuthState::generate();
        let p = decode(&encode(
            &SecretString::from("the-verifier"),
            &b,
            1,
            Purpose::Install,
        ))
        .expect("decodes");
        let dbg = format!("{b:?} {s:?} {p:?}");
        assert!(
            !dbg.contains(b.value()) && !dbg.contains(s.as_str()) && !dbg.contains("the-verifier"),
            "{dbg}"
        );
    }
}
