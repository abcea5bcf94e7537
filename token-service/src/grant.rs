//! The domain: install and org ids, the stored grant, its status and the rules for when it needs a
//! refresh. Nothing here talks to Redis or Snyk.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use snykapps_ids::{BadId, InstallId, OrgId};

/// Milliseconds since the Unix epoch: the one clock unit stored in records.
pub type UnixMillis = i64;

pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn secs_to_millis(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
}

fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// An org the install may access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
}

/// Why an install needs its user to authorize again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReauthReason {
    /// Snyk answered `invalid_grant` to a refresh: the grant was revoked or expired.
    RefreshTokenRejected,
    /// A refresh was sent but its answer was lost; retrying with the same token was rejected, so
    /// the first attempt was most likely redeemed and its new pair never reached us.
    RefreshInDoubt,
}

impl ReauthReason {
    pub const ALL: [ReauthReason; 2] = [
        ReauthReason::RefreshTokenRejected,
        ReauthReason::RefreshInDoubt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReauthReason::RefreshTokenRejected => "refresh_token_rejected",
            ReauthReason::RefreshInDoubt => "refresh_in_doubt",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum Status {
    Active,
    NeedsReauth(ReauthReason),
}

/// An install's grant as token-service holds it. Tokens are secrets: `Debug` redacts them.
///
/// Its serde form is what `store::record` seals, and nothing else serialises a grant (the tokens
/// are in it in plain): every field but the install id, in this order. A field renamed, retyped
/// or reordered here changes what is stored; `store::record`'s tests pin the stored form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    /// Not stored: the record's key names the install, and `store::record` sets this from it
    /// right after reading (the default is a placeholder nobody sees).
    #[serde(skip, default = "InstallId::new_random")]
    pub install_id: InstallId,
    #[serde(with = "plain_secret")]
    pub access_token: SecretString,
    #[serde(with = "plain_secret")]
    pub refresh_token: SecretString,
    pub token_type: String,
    pub access_expires_at: UnixMillis,
    /// `expires_in` of the last token answer, to cap the refresh margin at half a lifetime.
    pub access_lifetime_secs: u64,
    pub refresh_expires_at: Option<UnixMillis>,
    /// `refresh_expires_in` of the last token answer, to cap the keep-alive margin at half of it.
    /// Absent from records stored before it existed.
    #[serde(default)]
    pub refresh_lifetime_secs: Option<u64>,
    pub scope: String,
    pub bot_id: String,
    pub orgs: Vec<Org>,
    pub created_at: UnixMillis,
    pub status: Status,
    /// Set by a lease holder when it starts a refresh, cleared when the refresh settles. On its
    /// own it only says that a holder began; whether a request went out is the "sending" mark
    /// (see docs/design.md, "One refresh").
    pub refresh_started_at: Option<UnixMillis>,
}

/// A token in a grant's serde form: the plain string, for `store::record` to seal.
mod plain_secret {
    use secrecy::{ExposeSecret as _, SecretString};
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(token: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(token.expose_secret())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::from)
    }
}

/// A successful answer of Snyk's token endpoint (`snyk`), which a grant is made of. `Debug`
/// redacts the tokens.
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

/// The server's own refresh policy, which every hand-out decision reads (docs/design.md, "When a
/// caller waits").
#[derive(Debug, Clone, Copy)]
pub struct HandoutRules {
    /// Refresh ahead when less validity than this is left (capped at half the token's lifetime).
    pub margin: Duration,
    /// Below this much validity a caller waits for the refresh (capped at a quarter of it).
    pub floor: Duration,
    /// A caller's demand refreshes a token at most once per this interval, measured from when
    /// the stored token was minted; the server's own policy is not held to it.
    pub min_refresh_interval: Duration,
}

/// What a caller's request gets, by [`Handout::handling`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// The stored token: it satisfies the need.
    Stored,
    /// The stored token at once (inside the margin, above the floor); a refresh in the
    /// background.
    AheadOfRefresh,
    /// The stored token, though the caller's own `min_validity` finds it short: a caller may not
    /// have a token refreshed this soon after it was minted (a refused spin).
    SpinRefused,
    /// A refresh first: at once, or, when the caller demands it sooner than the interval allows
    /// (a ForceRefresh of a token minted moments ago: a refused spin too), not before `not_before`.
    Refresh { not_before: Option<UnixMillis> },
}

/// What a caller needs from the grant it asks for.
#[derive(Debug, Clone)]
pub enum Need {
    /// An access token valid for at least this long (and beyond the refresh margin).
    Validity(Duration),
    /// Anything but this access token, which Snyk just rejected.
    Replace(SecretString),
    /// A refresh token that lives longer than this keep-alive margin (capped at half of its
    /// lifetime): what the keep-alive sweeper asks for.
    KeepAlive(Duration),
}

impl Grant {
    /// A new install's grant, straight from the code exchange.
    pub fn from_pair(
        install_id: InstallId,
        orgs: Vec<Org>,
        pair: TokenPair,
        now: UnixMillis,
    ) -> Grant {
        Grant {
            install_id,
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: pair.token_type,
            access_expires_at: now + secs_to_millis(pair.expires_in),
            access_lifetime_secs: pair.expires_in,
            refresh_expires_at: pair.refresh_expires_in.map(|s| now + secs_to_millis(s)),
            refresh_lifetime_secs: pair.refresh_expires_in,
            scope: pair.scope,
            bot_id: pair.bot_id,
            orgs,
            created_at: now,
            status: Status::Active,
            refresh_started_at: None,
        }
    }

    /// This grant after a successful refresh: the new pair, no mark, active; same install, orgs
    /// and creation time.
    pub fn with_new_pair(&self, pair: TokenPair, now: UnixMillis) -> Grant {
        Grant {
            created_at: self.created_at,
            ..Grant::from_pair(self.install_id, self.orgs.clone(), pair, now)
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// The margin under which a token is refreshed ahead of expiry: `margin`, but never more than
    /// half the token's lifetime, so short-lived tokens are not refreshed on every call.
    pub fn effective_margin(&self, margin: Duration) -> Duration {
        self.access().effective_margin(margin)
    }

    /// Does the stored access token satisfy `need` at `now`?
    pub fn satisfies(&self, need: &Need, margin: Duration, now: UnixMillis) -> bool {
        match need {
            Need::Validity(min) => self.access().lasts(*min, margin, now),
            Need::Replace(rejected) => !self.has_access_token(rejected),
            Need::KeepAlive(margin) => !self.keepalive_due(*margin, now),
        }
    }

    /// The floor under which a caller waits for a refresh instead of taking the stored token:
    /// `floor`, but never more than a quarter of the token's lifetime.
    pub fn effective_floor(&self, floor: Duration) -> Duration {
        self.access().effective_floor(floor)
    }

    /// May a caller that needs `min` more validity take the stored token now and let the refresh
    /// run in the background? Yes while more than `max(min, floor)` is left (refresh ahead of
    /// need).
    pub fn servable_ahead(&self, min: Duration, floor: Duration, now: UnixMillis) -> bool {
        self.access().servable_ahead(min, floor, now)
    }

    /// The keep-alive margin for this grant: `margin`, but never more than half the refresh
    /// token's lifetime.
    pub fn effective_keepalive_margin(&self, margin: Duration) -> Duration {
        match self.refresh_lifetime_secs {
            Some(life) => margin.min(Duration::from_secs(life) / 2),
            None => margin,
        }
    }

    /// Is the refresh token close enough to its expiry that the keep-alive must refresh it?
    /// Never for a grant whose refresh token has no known expiry.
    pub fn keepalive_due(&self, margin: Duration, now: UnixMillis) -> bool {
        self.refresh_expires_at.is_some_and(|at| {
            at.saturating_sub(now) as i128
                <= self.effective_keepalive_margin(margin).as_millis() as i128
        })
    }

    /// Constant-time comparison of the stored access token with `candidate`.
    pub fn has_access_token(&self, candidate: &SecretString) -> bool {
        same_secret(&self.access_token, candidate)
    }

    /// The timing of the access token, which the hand-out rules read.
    fn access(&self) -> AccessTiming {
        AccessTiming {
            expires_at: self.access_expires_at,
            lifetime_secs: self.access_lifetime_secs,
        }
    }
}

/// Constant-time comparison of two tokens.
fn same_secret(a: &SecretString, b: &SecretString) -> bool {
    let (a, b) = (a.expose_secret().as_bytes(), b.expose_secret().as_bytes());
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// When an access token expires and how long it lived: the facts every hand-out rule reads, so
/// a [`Grant`] and a [`Handout`] answer them the same way.
#[derive(Debug, Clone, Copy)]
struct AccessTiming {
    expires_at: UnixMillis,
    lifetime_secs: u64,
}

impl AccessTiming {
    fn effective_margin(self, margin: Duration) -> Duration {
        margin.min(Duration::from_secs(self.lifetime_secs) / 2)
    }

    fn effective_floor(self, floor: Duration) -> Duration {
        floor.min(Duration::from_secs(self.lifetime_secs) / 4)
    }

    fn left_beyond(self, required: Duration, now: UnixMillis) -> bool {
        let left = self.expires_at.saturating_sub(now);
        left > 0 && left as u128 > required.as_millis()
    }

    /// When the token was minted: its lifetime before its expiry (the same instant on every
    /// replica, since both are in the grant).
    fn minted_at(self) -> UnixMillis {
        self.expires_at
            .saturating_sub(secs_to_millis(self.lifetime_secs))
    }

    /// From when a caller's demand may have this token refreshed: once it is `interval` old, or
    /// once it is inside the refresh margin (where the server refreshes it anyway), whichever
    /// comes first.
    fn refreshable_on_demand_from(self, margin: Duration, interval: Duration) -> UnixMillis {
        let by_interval = self.minted_at().saturating_add(millis_of(interval));
        let by_margin = self
            .expires_at
            .saturating_sub(millis_of(self.effective_margin(margin)));
        by_interval.min(by_margin)
    }

    /// Valid for `min` more, and beyond the refresh margin.
    fn lasts(self, min: Duration, margin: Duration, now: UnixMillis) -> bool {
        self.left_beyond(min.max(self.effective_margin(margin)), now)
    }

    fn servable_ahead(self, min: Duration, floor: Duration, now: UnixMillis) -> bool {
        self.left_beyond(min.max(self.effective_floor(floor)), now)
    }
}

/// What a caller is handed: an install's status and current access token, with the timing that
/// decides whether it may be handed out. Never the refresh token: this is what the grant cache
/// (`cache`) keeps, so a cached install holds no refresh token in memory. `Debug` redacts the
/// token.
#[derive(Debug)]
pub struct Handout {
    pub install_id: InstallId,
    pub status: Status,
    pub access_token: SecretString,
    pub token_type: String,
    pub access_expires_at: UnixMillis,
    pub access_lifetime_secs: u64,
}

impl From<&Grant> for Handout {
    fn from(g: &Grant) -> Handout {
        Handout {
            install_id: g.install_id,
            status: g.status,
            access_token: g.access_token.clone(),
            token_type: g.token_type.clone(),
            access_expires_at: g.access_expires_at,
            access_lifetime_secs: g.access_lifetime_secs,
        }
    }
}

impl Handout {
    fn access(&self) -> AccessTiming {
        AccessTiming {
            expires_at: self.access_expires_at,
            lifetime_secs: self.access_lifetime_secs,
        }
    }

    /// As [`Grant::satisfies`] for a caller's needs; a keep-alive need is never answered from a
    /// hand-out (it is about the refresh token, which a hand-out does not have).
    fn satisfies(&self, need: &Need, margin: Duration, now: UnixMillis) -> bool {
        match need {
            Need::Validity(min) => self.access().lasts(*min, margin, now),
            Need::Replace(rejected) => !same_secret(&self.access_token, rejected),
            Need::KeepAlive(_) => false,
        }
    }

    /// As [`Grant::servable_ahead`].
    fn servable_ahead(&self, min: Duration, floor: Duration, now: UnixMillis) -> bool {
        self.access().servable_ahead(min, floor, now)
    }

    /// What a caller that needs `need` gets at `now`: the stored token when it satisfies the
    /// need; inside the margin above the floor, the stored token with a refresh in the
    /// background; otherwise a refresh, unless only the caller demands it and the token was
    /// minted less than `min_refresh_interval` ago (docs/design.md, "No spinning refreshes"):
    /// then a `min_validity` the token falls short of gets the stored token (still beyond the
    /// margin, so valid), and a ForceRefresh of this very token waits for the interval.
    pub fn handling(&self, need: &Need, rules: &HandoutRules, now: UnixMillis) -> Handling {
        if self.satisfies(need, rules.margin, now) {
            return Handling::Stored;
        }
        if let Need::Validity(min) = need
            && self.servable_ahead(*min, rules.floor, now)
        {
            return Handling::AheadOfRefresh;
        }
        let from = self
            .access()
            .refreshable_on_demand_from(rules.margin, rules.min_refresh_interval);
        match need {
            Need::Validity(_) if now < from => Handling::SpinRefused,
            Need::Replace(_) if now < from => Handling::Refresh {
                not_before: Some(from),
            },
            _ => Handling::Refresh { not_before: None },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub fn sample(install_id: InstallId, lifetime: u64, expires_at: UnixMillis) -> Grant {
        Grant {
            install_id,
            access_token: "snyk_at_sample".to_owned().into(),
            refresh_token: "snyk_rt_sample".to_owned().into(),
            token_type: "bearer".into(),
            access_expires_at: expires_at,
            access_lifetime_secs: lifetime,
            refresh_expires_at: None,
            refresh_lifetime_secs: None,
            scope: "org.read".into(),
            bot_id: "bot".into(),
            orgs: vec![],
            created_at: 0,
            status: Status::Active,
            refresh_started_at: None,
        }
    }

    #[test]
    fn margin_is_capped_at_half_the_lifetime() {
        let g = sample(InstallId::new_random(), 4, 0);
        assert_eq!(
            g.effective_margin(Duration::from_secs(300)),
            Duration::from_secs(2)
        );
        let g = sample(InstallId::new_random(), 3600, 0);
        assert_eq!(
            g.effective_margin(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn validity_rules() {
        let now = 1_000_000;
        let margin = Duration::from_secs(300);
        // 3600 s token with 301 s left: fine; with 300 s left: refresh.
        let g = sample(InstallId::new_random(), 3600, now + 301_000);
        assert!(g.satisfies(&Need::Validity(Duration::ZERO), margin, now));
        let g = sample(InstallId::new_random(), 3600, now + 300_000);
        assert!(!g.satisfies(&Need::Validity(Duration::ZERO), margin, now));
        // min_validity above the margin wins.
        let g = sample(InstallId::new_random(), 3600, now + 1_000_000);
        assert!(!g.satisfies(&Need::Validity(Duration::from_secs(1000)), margin, now));
        assert!(g.satisfies(&Need::Validity(Duration::from_secs(999)), margin, now));
        // Expired is never fine.
        let g = sample(InstallId::new_random(), 0, now - 1);
        assert!(!g.satisfies(&Need::Validity(Duration::ZERO), margin, now));
    }

    #[test]
    fn replace_compares_the_token() {
        let g = sample(InstallId::new_random(), 3600, 0);
        assert!(!g.satisfies(
            &Need::Replace("snyk_at_sample".to_owned().into()),
            Duration::ZERO,
            0
        ));
        assert!(g.satisfies(
            &Need::Replace("snyk_at_other".to_owned().into()),
            Duration::ZERO,
            0
        ));
        assert!(g.satisfies(
            &Need::Replace("snyk_at_sampl".to_owned().into()),
            Duration::ZERO,
            0
        ));
    }

    #[test]
    fn debug_redacts_tokens() {
        let dbg = format!("{:?}", sample(InstallId::new_random(), 1, 0));
        assert!(
            !dbg.contains("snyk_at_sample") && !dbg.contains("snyk_rt_sample"),
            "{dbg}"
        );
    }

    /// A grant whose refresh token expires at `refresh_expires_at` after a lifetime of
    /// `refresh_lifetime` seconds (the access token is irrelevant here).
    fn with_refresh(
        refresh_expires_at: Option<UnixMillis>,
        refresh_lifetime: Option<u64>,
    ) -> Grant {
        Grant {
            refresh_expires_at,
            refresh_lifetime_secs: refresh_lifetime,
            ..sample(InstallId::new_random(), 3600, 0)
        }
    }

    #[test]
    fn floor_is_capped_at_a_quarter_of_the_lifetime() {
        let floor = Duration::from_secs(60);
        // The 2-second test tokens: 0.5 s.
        let g = sample(InstallId::new_random(), 2, 0);
        assert_eq!(g.effective_floor(floor), Duration::from_millis(500));
        let g = sample(InstallId::new_random(), 3, 0);
        assert_eq!(g.effective_floor(floor), Duration::from_millis(750));
        // Exactly a quarter: the setting as it is.
        let g = sample(InstallId::new_random(), 240, 0);
        assert_eq!(g.effective_floor(floor), floor);
        let g = sample(InstallId::new_random(), 3600, 0);
        assert_eq!(g.effective_floor(floor), floor);
        assert_eq!(g.effective_floor(Duration::ZERO), Duration::ZERO);
        let g = sample(InstallId::new_random(), 0, 0);
        assert_eq!(g.effective_floor(floor), Duration::ZERO);
    }

    #[test]
    fn servable_ahead_while_more_than_the_floor_is_left() {
        let now = 1_000_000;
        let floor = Duration::from_secs(60);
        let min = Duration::ZERO;
        // 2-second token: floor 500 ms.
        let left = |ms: i64| sample(InstallId::new_random(), 2, now + ms);
        assert!(left(1_000).servable_ahead(min, floor, now));
        assert!(left(501).servable_ahead(min, floor, now));
        assert!(
            !left(500).servable_ahead(min, floor, now),
            "exactly at the floor is not servable"
        );
        assert!(!left(499).servable_ahead(min, floor, now));
        assert!(!left(0).servable_ahead(min, floor, now));
        assert!(!left(-1).servable_ahead(min, floor, now), "expired");

        // A caller's min_validity above the floor wins, with the same boundary.
        let min = Duration::from_secs(1);
        assert!(left(1_001).servable_ahead(min, floor, now));
        assert!(!left(1_000).servable_ahead(min, floor, now));
        assert!(!left(700).servable_ahead(min, floor, now));
        // One below the floor does not lower it.
        assert!(!left(500).servable_ahead(Duration::from_millis(100), floor, now));

        // A zero floor: servable while the token is valid at all.
        assert!(left(1).servable_ahead(Duration::ZERO, Duration::ZERO, now));
        assert!(!left(0).servable_ahead(Duration::ZERO, Duration::ZERO, now));

        // A long-lived token: the setting itself is the floor.
        let g = sample(InstallId::new_random(), 3600, now + 60_001);
        assert!(g.servable_ahead(Duration::ZERO, floor, now));
        let g = sample(InstallId::new_random(), 3600, now + 60_000);
        assert!(!g.servable_ahead(Duration::ZERO, floor, now));
    }

    #[test]
    fn servable_ahead_covers_the_window_between_floor_and_margin() {
        // Inside the margin (1 s of a 2 s token) but above the floor (0.5 s): not satisfied, yet
        // servable; below the floor: neither.
        let now = 1_000_000;
        let (margin, floor) = (Duration::from_secs(300), Duration::from_secs(60));
        let need = Need::Validity(Duration::ZERO);
        let g = sample(InstallId::new_random(), 2, now + 900);
        assert!(!g.satisfies(&need, margin, now));
        assert!(g.servable_ahead(Duration::ZERO, floor, now));
        let g = sample(InstallId::new_random(), 2, now + 400);
        assert!(!g.satisfies(&need, margin, now));
        assert!(!g.servable_ahead(Duration::ZERO, floor, now));
    }

    /// The defaults (margin 300 s, floor 60 s) with the default minimum refresh interval, 5 s.
    const RULES: HandoutRules = HandoutRules {
        margin: Duration::from_secs(300),
        floor: Duration::from_secs(60),
        min_refresh_interval: Duration::from_secs(5),
    };

    /// The hand-out of a token of `lifetime` seconds minted `age` ms before `NOW`.
    fn minted(lifetime: u64, age: i64) -> Handout {
        let expires_at = NOW - age + secs_to_millis(lifetime);
        Handout::from(&sample(InstallId::new_random(), lifetime, expires_at))
    }

    const NOW: UnixMillis = 1_000_000_000;

    fn validity(secs: u64) -> Need {
        Need::Validity(Duration::from_secs(secs))
    }

    fn replace_stored() -> Need {
        Need::Replace("snyk_at_sample".to_owned().into())
    }

    #[test]
    fn a_min_validity_just_under_the_lifetime_gets_the_stored_token_within_the_interval() {
        // An hour-long token asked for 3599 s: short of it one second after minting.
        let handling = |age| minted(3600, age).handling(&validity(3599), &RULES, NOW);
        assert_eq!(handling(500), Handling::Stored, "still lasts 3599 s");
        assert_eq!(handling(1_000), Handling::SpinRefused);
        assert_eq!(handling(4_999), Handling::SpinRefused);
        assert_eq!(
            handling(5_000),
            Handling::Refresh { not_before: None },
            "the interval passed: one refresh"
        );
        assert_eq!(handling(60_000), Handling::Refresh { not_before: None });
        // No min_validity: nothing to refuse.
        let h = minted(3600, 2_000);
        assert_eq!(h.handling(&validity(0), &RULES, NOW), Handling::Stored);
    }

    #[test]
    fn a_force_refresh_of_the_stored_token_waits_for_the_interval_from_its_minting() {
        let minted_at = |age| NOW - age;
        let handling = |age| minted(3600, age).handling(&replace_stored(), &RULES, NOW);
        assert_eq!(
            handling(0),
            Handling::Refresh {
                not_before: Some(minted_at(0) + 5_000)
            }
        );
        assert_eq!(
            handling(4_999),
            Handling::Refresh {
                not_before: Some(minted_at(4_999) + 5_000)
            }
        );
        assert_eq!(handling(5_000), Handling::Refresh { not_before: None });
        // A rejected token that is not the stored one: the stored one, as always.
        let other = Need::Replace("snyk_at_older".to_owned().into());
        assert_eq!(
            minted(3600, 0).handling(&other, &RULES, NOW),
            Handling::Stored
        );
    }

    #[test]
    fn the_servers_own_refreshes_are_never_held_to_the_interval() {
        // A 6-second token (the storm benchmark's): margin 3 s, floor 1.5 s; the interval (5 s)
        // is longer than the margin leaves it.
        let h = |age| minted(6, age);
        // Inside the margin above the floor: refresh ahead, as without the rule.
        assert_eq!(
            h(3_100).handling(&validity(0), &RULES, NOW),
            Handling::AheadOfRefresh
        );
        // Below the floor, and expired: the caller waits for the refresh.
        assert_eq!(
            h(4_600).handling(&validity(0), &RULES, NOW),
            Handling::Refresh { not_before: None }
        );
        assert_eq!(
            h(6_001).handling(&validity(0), &RULES, NOW),
            Handling::Refresh { not_before: None }
        );
        // A ForceRefresh waits at most until the token enters the margin, where the server
        // refreshes it anyway; inside it, at once.
        assert_eq!(
            h(1_000).handling(&replace_stored(), &RULES, NOW),
            Handling::Refresh {
                not_before: Some(NOW - 1_000 + 3_000)
            }
        );
        assert_eq!(
            h(3_000).handling(&replace_stored(), &RULES, NOW),
            Handling::Refresh { not_before: None }
        );
        // A min_validity only the caller asks for is still refused before the margin.
        assert_eq!(
            h(1_000).handling(&validity(5), &RULES, NOW),
            Handling::SpinRefused
        );
        assert_eq!(
            h(2_999).handling(&validity(5), &RULES, NOW),
            Handling::SpinRefused
        );
        assert_eq!(
            h(3_000).handling(&validity(5), &RULES, NOW),
            Handling::Refresh { not_before: None }
        );
        // The keep-alive's need is never held, however new the token.
        assert_eq!(
            minted(3600, 0).handling(&Need::KeepAlive(Duration::from_secs(60)), &RULES, NOW),
            Handling::Refresh { not_before: None }
        );
    }

    #[test]
    fn the_interval_counts_from_the_minting_in_the_grant_and_zero_turns_it_off() {
        // Minting is expiry minus lifetime: a grant written by one replica and read by another
        // gives both the same instant.
        let g = sample(InstallId::new_random(), 3600, NOW + 3_599_000);
        assert_eq!(g.access().minted_at(), NOW - 1_000);
        assert_eq!(Handout::from(&g).access().minted_at(), NOW - 1_000);
        // No interval (the rule turned off): nothing is held.
        let off = HandoutRules {
            min_refresh_interval: Duration::ZERO,
            ..RULES
        };
        let h = Handout::from(&g);
        assert_eq!(
            h.handling(&replace_stored(), &off, NOW),
            Handling::Refresh { not_before: None }
        );
        assert_eq!(
            h.handling(&validity(3599), &off, NOW),
            Handling::Refresh { not_before: None }
        );
        // A longer interval holds a ForceRefresh longer, up to the margin.
        let rules = HandoutRules {
            min_refresh_interval: Duration::from_secs(60),
            ..RULES
        };
        assert_eq!(
            Handout::from(&g).handling(&replace_stored(), &rules, NOW),
            Handling::Refresh {
                not_before: Some(NOW - 1_000 + 60_000)
            }
        );
    }

    #[test]
    fn keepalive_margin_is_capped_at_half_the_refresh_lifetime() {
        let day = 86_400;
        let margin = Duration::from_secs(7 * day);
        assert_eq!(
            with_refresh(Some(0), Some(10 * day)).effective_keepalive_margin(margin),
            Duration::from_secs(5 * day)
        );
        // Exactly twice the margin: the margin as it is.
        assert_eq!(
            with_refresh(Some(0), Some(14 * day)).effective_keepalive_margin(margin),
            margin
        );
        assert_eq!(
            with_refresh(Some(0), Some(180 * day)).effective_keepalive_margin(margin),
            margin
        );
        assert_eq!(
            with_refresh(Some(0), Some(3)).effective_keepalive_margin(margin),
            Duration::from_millis(1_500)
        );
        assert_eq!(
            with_refresh(Some(0), Some(0)).effective_keepalive_margin(margin),
            Duration::ZERO
        );
        // No known lifetime: nothing to cap by.
        assert_eq!(
            with_refresh(None, None).effective_keepalive_margin(margin),
            margin
        );
        assert_eq!(
            with_refresh(Some(0), None).effective_keepalive_margin(margin),
            margin
        );
    }

    #[test]
    fn keepalive_is_due_within_the_effective_margin() {
        let now = 1_000_000_000;
        let margin = Duration::from_secs(60);
        let at = |ms: i64| with_refresh(Some(now + ms), Some(3600));
        assert!(!at(60_001).keepalive_due(margin, now));
        assert!(
            at(60_000).keepalive_due(margin, now),
            "exactly at the margin is due"
        );
        assert!(at(59_999).keepalive_due(margin, now));
        assert!(at(0).keepalive_due(margin, now));
        assert!(at(-1_000).keepalive_due(margin, now), "already expired");

        // The margin capped at half a 4-second refresh lifetime: 2 s.
        let short = |ms: i64| with_refresh(Some(now + ms), Some(4));
        let week = Duration::from_secs(7 * 86_400);
        assert!(!short(2_001).keepalive_due(week, now));
        assert!(short(2_000).keepalive_due(week, now));

        // Need::KeepAlive is satisfied exactly when the keep-alive is not due.
        assert!(at(60_001).satisfies(&Need::KeepAlive(margin), Duration::ZERO, now));
        assert!(!at(60_000).satisfies(&Need::KeepAlive(margin), Duration::ZERO, now));
    }

    #[test]
    fn a_refresh_token_without_expiry_is_never_due() {
        let g = with_refresh(None, None);
        for now in [0, 1_000_000, i64::MAX / 2, i64::MAX] {
            assert!(!g.keepalive_due(Duration::from_secs(604_800), now));
            assert!(!g.keepalive_due(Duration::MAX, now));
            assert!(g.satisfies(
                &Need::KeepAlive(Duration::from_secs(604_800)),
                Duration::ZERO,
                now
            ));
        }
        // A lifetime without an expiry (not written by token-service, but readable): still never.
        assert!(!with_refresh(None, Some(10)).keepalive_due(Duration::MAX, i64::MAX));
    }
}
