//! The OAuth state: authorization codes, grants, and the access and refresh tokens issued from them.
//!
//! Pure bookkeeping with the clock passed in; the HTTP layers decide what to answer. A grant is
//! what one completed authorization produced (one install): it owns one bot id, one current
//! refresh token and any number of access tokens, and dies as a whole when revoked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::MAX_TTL;
use crate::pkce;

type GrantId = u64;

/// Token and code lifetimes, copied from the config (the refresh lifetime can be changed later,
/// see [`Store::set_refresh_ttl`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetimes {
    pub(crate) access: Duration,
    pub(crate) refresh: Duration,
    pub(crate) code: Duration,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    orgs: Orgs,
    expires_at: Instant,
    /// `None` while unused; `Some(grant)` once a redemption was attempted (a code is burnt by its
    /// first redemption attempt, successful or not; `grant` is what a success produced).
    redeemed: Option<Option<GrantId>>,
}

struct Grant {
    client_id: String,
    bot_id: Uuid,
    scope: String,
    orgs: Orgs,
    revoked: bool,
    current_refresh: String,
}

struct RefreshToken {
    grant: GrantId,
    expires_at: Instant,
    /// Already redeemed: presenting it again is a replay and kills the grant.
    spent: bool,
}

struct AccessToken {
    grant: GrantId,
    expires_at: Instant,
}

/// A freshly issued token pair and what the token response says about it.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires_in: u64,
    pub(crate) refresh_expires_in: u64,
    pub(crate) scope: String,
    pub(crate) bot_id: Uuid,
}

/// Why a grant request was refused; every one is `invalid_grant` or `invalid_scope` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GrantError {
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// A spent refresh token came back: the grant has been revoked.
    #[error("refresh token has already been used; the grant is revoked")]
    ReusedRefreshToken,
    #[error("scope {0:?} was not granted")]
    InvalidScope(String),
}

/// Which orgs a grant covers. The consent page grants every seeded org; a user who installs the
/// app in chosen orgs only (Snyk's org picker) is played by [`crate::FakeSnyk::approve_for_orgs`].
/// Snyk answers 404 for an org outside the install, as for an org that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Orgs {
    #[default]
    All,
    Only(Vec<Uuid>),
}

impl Orgs {
    pub(crate) fn covers(&self, org: Uuid) -> bool {
        match self {
            Self::All => true,
            Self::Only(orgs) => orgs.contains(&org),
        }
    }
}

/// Who an access token speaks for.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) bot_id: Uuid,
    pub(crate) scope: String,
    pub(crate) orgs: Orgs,
}

impl Principal {
    pub(crate) fn has_scope(&self, wanted: &str) -> bool {
        self.scope.split_whitespace().any(|s| s == wanted)
    }

    /// Whether the install behind the token covers `org`.
    pub(crate) fn sees(&self, org: Uuid) -> bool {
        self.orgs.covers(org)
    }
}

/// Expired access tokens are dropped every this many issues, so that long benchmarks do not grow
/// the map without bound. Refresh tokens are kept: a spent one must still be recognised.
const PRUNE_EVERY: u64 = 1024;

pub(crate) struct Store {
    lifetimes: Lifetimes,
    codes: HashMap<String, Code>,
    grants: HashMap<GrantId, Grant>,
    refresh_tokens: HashMap<String, RefreshToken>,
    access_tokens: HashMap<String, AccessToken>,
    next_grant: GrantId,
    issued_pairs: u64,
}

impl Store {
    pub(crate) fn new(lifetimes: Lifetimes) -> Self {
        Self {
            lifetimes,
            codes: HashMap::new(),
            grants: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            next_grant: 1,
            issued_pairs: 0,
        }
    }

    /// Records an approved authorization request and returns its code.
    pub(crate) fn issue_code(
        &mut self,
        client_id: &str,
        redirect_uri: &str,
        challenge: &str,
        scope: &str,
        orgs: Orgs,
        now: Instant,
    ) -> String {
        let code = pkce::random_token("snyk_ac_");
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.to_owned(),
                scope: scope.to_owned(),
                orgs,
                expires_at: now + self.lifetimes.code,
                redeemed: None,
            },
        );
        code
    }

    /// The `authorization_code` grant (client already authenticated).
    pub(crate) fn exchange_code(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        now: Instant,
    ) -> Result<Issued, GrantError> {
        let record = self
            .codes
            .get_mut(code)
            .ok_or(GrantError::InvalidGrant("unknown authorization code"))?;
        if record.client_id != client_id {
            return Err(GrantError::InvalidGrant(
                "authorization code was issued to another client",
            ));
        }
        match record.redeemed {
            Some(Some(grant)) => {
                // RFC 6749 §4.1.2: a code used twice SHOULD revoke what it produced.
                if let Some(grant) = self.grants.get_mut(&grant) {
                    grant.revoked = true;
                }
                return Err(GrantError::InvalidGrant(
                    "authorization code has already been used; the grant issued from it is revoked",
                ));
            }
            Some(None) => {
                return Err(GrantError::InvalidGrant(
                    "authorization code has already been used",
                ));
            }
            None => record.redeemed = Some(None),
        }
        if now >= record.expires_at {
            return Err(GrantError::InvalidGrant("authorization code has expired"));
        }
        if record.redirect_uri != redirect_uri {
            return Err(GrantError::InvalidGrant(
                "redirect_uri does not match the one of the authorization request",
            ));
        }
        if !pkce::is_valid_verifier(verifier) {
            return Err(GrantError::InvalidGrant(
                "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]",
            ));
        }
        if pkce::challenge_of(verifier) != record.challenge {
            return Err(GrantError::InvalidGrant(
                "code_verifier does not match the code_challenge",
            ));
        }

        let scope = record.scope.clone();
        let orgs = record.orgs.clone();
        let id = self.next_grant;
        self.next_grant += 1;
        record.redeemed = Some(Some(id));
        self.grants.insert(
            id,
            Grant {
                client_id: client_id.to_owned(),
                bot_id: Uuid::new_v4(),
                scope,
                orgs,
                revoked: false,
                current_refresh: String::new(),
            },
        );
        Ok(self.issue_pair(id, now))
    }

    /// The `refresh_token` grant (client already authenticated). Success rotates the pair.
    pub(crate) fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        scope: Option<&str>,
        now: Instant,
    ) -> Result<Issued, GrantError> {
        let token = self
            .refresh_tokens
            .get(refresh_token)
            .ok_or(GrantError::InvalidGrant("unknown refresh token"))?;
        let grant_id = token.grant;
        let (spent, expires_at) = (token.spent, token.expires_at);
        let grant = self
            .grants
            .get_mut(&grant_id)
            .ok_or(GrantError::InvalidGrant("unknown refresh token"))?;
        if grant.client_id != client_id {
            return Err(GrantError::InvalidGrant(
                "refresh token was issued to another client",
            ));
        }
        if spent {
            // Snyk's rule: a refresh token is single use. A replay means two parties hold the
            // grant, so it dies as a whole (current access and refresh tokens included).
            grant.revoked = true;
            return Err(GrantError::ReusedRefreshToken);
        }
        if grant.revoked {
            return Err(GrantError::InvalidGrant("refresh token has been revoked"));
        }
        if now >= expires_at {
            return Err(GrantError::InvalidGrant("refresh token has expired"));
        }
        if let Some(extra) = scope.and_then(|requested| {
            requested
                .split_whitespace()
                .find(|s| !grant.scope.split_whitespace().any(|g| g == *s))
        }) {
            return Err(GrantError::InvalidScope(extra.to_owned()));
        }
        if let Some(token) = self.refresh_tokens.get_mut(refresh_token) {
            token.spent = true;
        }
        Ok(self.issue_pair(grant_id, now))
    }

    /// RFC 7009 revocation: a live access token or the current refresh token of `client_id`
    /// revokes its whole grant. Returns whether a grant was revoked.
    pub(crate) fn revoke(&mut self, client_id: &str, token: &str, now: Instant) -> bool {
        let grant_id = if let Some(rt) = self.refresh_tokens.get(token) {
            (!rt.spent).then_some(rt.grant)
        } else if let Some(at) = self.access_tokens.get(token) {
            (now < at.expires_at).then_some(at.grant)
        } else {
            None
        };
        match grant_id.and_then(|id| self.grants.get_mut(&id)) {
            Some(grant) if grant.client_id == client_id && !grant.revoked => {
                grant.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// The principal behind a bearer token, if the token is live.
    pub(crate) fn authenticate(&self, access_token: &str, now: Instant) -> Option<Principal> {
        let token = self.access_tokens.get(access_token)?;
        if now >= token.expires_at {
            return None;
        }
        let grant = self.grants.get(&token.grant)?;
        (!grant.revoked).then(|| Principal {
            bot_id: grant.bot_id,
            scope: grant.scope.clone(),
            orgs: grant.orgs.clone(),
        })
    }

    /// Every access token still live expires now; refresh tokens are untouched.
    pub(crate) fn expire_access_tokens(&mut self, now: Instant) {
        for token in self.access_tokens.values_mut() {
            token.expires_at = token.expires_at.min(now);
        }
    }

    /// Refresh tokens issued from now on (code exchanges and refreshes) live `ttl`, capped at
    /// [`MAX_TTL`]; tokens already issued keep their expiry.
    pub(crate) fn set_refresh_ttl(&mut self, ttl: Duration) {
        self.lifetimes.refresh = ttl.min(MAX_TTL);
    }

    /// Grants whose current refresh token could be redeemed now.
    pub(crate) fn live_refresh_tokens(&self, now: Instant) -> usize {
        self.grants
            .values()
            .filter(|g| !g.revoked)
            .filter(|g| {
                self.refresh_tokens
                    .get(&g.current_refresh)
                    .is_some_and(|t| !t.spent && now < t.expires_at)
            })
            .count()
    }

    fn issue_pair(&mut self, grant_id: GrantId, now: Instant) -> Issued {
        self.issued_pairs += 1;
        if self.issued_pairs.is_multiple_of(PRUNE_EVERY) {
            self.access_tokens.retain(|_, t| now < t.expires_at);
        }
        let access_token = pkce::random_token("snyk_at_");
        let refresh_token = pkce::random_token("snyk_rt_");
        self.access_tokens.insert(
            access_token.clone(),
            AccessToken {
                grant: grant_id,
                expires_at: now + self.lifetimes.access,
            },
        );
        self.refresh_tokens.insert(
            refresh_token.clone(),
            RefreshToken {
                grant: grant_id,
                expires_at: now + self.lifetimes.refresh,
                spent: false,
            },
        );
        let (scope, bot_id) = match self.grants.get_mut(&grant_id) {
            Some(grant) => {
                grant.current_refresh = refresh_token.clone();
                (grant.scope.clone(), grant.bot_id)
            }
            // Unreachable: callers create or look up the grant first. An empty scope would make
            // every REST call of this token fail loudly rather than silently succeed.
            None => (String::new(), Uuid::nil()),
        };
        Issued {
            access_token,
            refresh_token,
            expires_in: self.lifetimes.access.as_secs(),
            refresh_expires_in: self.lifetimes.refresh.as_secs(),
            scope,
            bot_id,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const URI: &str = "http://app.test/cb";

    fn store() -> Store {
        Store::new(Lifetimes {
            access: Duration::from_secs(60),
            refresh: Duration::from_secs(600),
            code: Duration::from_secs(10),
        })
    }

    fn grant(store: &mut Store, now: Instant) -> Issued {
        let code = store.issue_code(
            "c",
            URI,
            &pkce::challenge_of(VERIFIER),
            "org.read",
            Orgs::All,
            now,
        );
        store.exchange_code("c", &code, URI, VERIFIER, now).unwrap()
    }

    #[test]
    fn access_tokens_expire_on_time() {
        let mut s = store();
        let t0 = Instant::now();
        let issued = grant(&mut s, t0);
        assert!(
            s.authenticate(&issued.access_token, t0 + Duration::from_secs(59))
                .is_some()
        );
        assert!(
            s.authenticate(&issued.access_token, t0 + Duration::from_secs(60))
                .is_none()
        );
    }

    #[test]
    fn refresh_tokens_expire_and_are_then_not_live() {
        let mut s = store();
        let t0 = Instant::now();
        let issued = grant(&mut s, t0);
        let later = t0 + Duration::from_secs(600);
        assert_eq!(s.live_refresh_tokens(t0), 1);
        assert_eq!(s.live_refresh_tokens(later), 0);
        assert_eq!(
            s.refresh("c", &issued.refresh_token, None, later)
                .unwrap_err(),
            GrantError::InvalidGrant("refresh token has expired")
        );
    }

    #[test]
    fn a_new_refresh_ttl_applies_to_tokens_issued_afterwards_only() {
        let mut s = store();
        let t0 = Instant::now();
        let before = grant(&mut s, t0);
        assert_eq!(before.refresh_expires_in, 600);

        s.set_refresh_ttl(Duration::from_secs(5));
        let after = grant(&mut s, t0);
        assert_eq!(after.refresh_expires_in, 5);
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(
            s.refresh("c", &after.refresh_token, None, t5).unwrap_err(),
            GrantError::InvalidGrant("refresh token has expired")
        );
        // Issued under the old lifetime: still good, and its rotation gets the new one.
        let rotated = s.refresh("c", &before.refresh_token, None, t5).unwrap();
        assert_eq!(rotated.refresh_expires_in, 5);
        assert_eq!(s.live_refresh_tokens(t5 + Duration::from_secs(4)), 1);
        assert_eq!(s.live_refresh_tokens(t5 + Duration::from_secs(5)), 0);

        s.set_refresh_ttl(Duration::MAX);
        assert_eq!(grant(&mut s, t0).refresh_expires_in, MAX_TTL.as_secs());
    }

    #[test]
    fn a_code_is_burnt_by_a_failed_attempt() {
        let mut s = store();
        let t0 = Instant::now();
        let code = s.issue_code(
            "c",
            URI,
            &pkce::challenge_of(VERIFIER),
            "org.read",
            Orgs::All,
            t0,
        );
        let wrong = "x".repeat(43);
        assert!(s.exchange_code("c", &code, URI, &wrong, t0).is_err());
        assert!(s.exchange_code("c", &code, URI, VERIFIER, t0).is_err());
        assert_eq!(s.live_refresh_tokens(t0), 0);
    }

    #[test]
    fn another_client_cannot_use_a_code_or_token() {
        let mut s = store();
        let t0 = Instant::now();
        let code = s.issue_code(
            "c",
            URI,
            &pkce::challenge_of(VERIFIER),
            "org.read",
            Orgs::All,
            t0,
        );
        assert!(s.exchange_code("other", &code, URI, VERIFIER, t0).is_err());
        // Not burnt by a foreign client.
        let issued = s.exchange_code("c", &code, URI, VERIFIER, t0).unwrap();
        assert!(s.refresh("other", &issued.refresh_token, None, t0).is_err());
        assert!(!s.revoke("other", &issued.refresh_token, t0));
        assert!(s.refresh("c", &issued.refresh_token, None, t0).is_ok());
    }

    #[test]
    fn refresh_rejects_scopes_beyond_the_grant() {
        let mut s = store();
        let t0 = Instant::now();
        let issued = grant(&mut s, t0);
        assert_eq!(
            s.refresh("c", &issued.refresh_token, Some("org.read org.admin"), t0)
                .unwrap_err(),
            GrantError::InvalidScope("org.admin".to_owned())
        );
        assert!(
            s.refresh("c", &issued.refresh_token, Some("org.read"), t0)
                .is_ok()
        );
    }
}
