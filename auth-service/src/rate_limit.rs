//! The per-client rate limit of `GET /auth`: each one writes a state to Redis and sends the
//! browser to Snyk, so a flood from one address must not fill Redis or make us look like an
//! attacker to Snyk. `/callback` is not limited: a sign-in already under way always finishes.
//!
//! The key is the client address: the TCP peer (actix's `peer_addr`) by default. Behind a reverse
//! proxy every request comes from the proxy, so `AUTH_TRUST_X_FORWARDED_FOR=true` takes the
//! **last** `X-Forwarded-For` entry instead: the one the proxy in front of us appended, which a
//! client cannot choose (earlier entries can be forged). Turn it on only when every request
//! reaches auth-service through exactly one such proxy; otherwise a client picks its own key.
//! IPv6 addresses count per /64, the block one host usually gets.
//!
//! governor's keyed limiter (GCRA) keeps one small state per key; [`AuthRateLimiter::run_cleanup`]
//! drops the keys that are back to a full allowance every [`CLEANUP_EVERY`], so memory follows the
//! number of addresses seen in the last minute or two, not since start.

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use actix_web::HttpRequest;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};

/// How often keys with a full allowance are forgotten.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(30);

/// The `/auth` limiter, shared by every worker of the server.
#[derive(Clone)]
pub struct AuthRateLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    trust_x_forwarded_for: bool,
}

impl std::fmt::Debug for AuthRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRateLimiter")
            .field("keys", &self.limiter.len())
            .field("trust_x_forwarded_for", &self.trust_x_forwarded_for)
            .finish()
    }
}

impl AuthRateLimiter {
    /// `per_minute` requests per client and minute, in bursts of up to `per_minute`.
    pub fn new(per_minute: NonZeroU32, trust_x_forwarded_for: bool) -> Self {
        Self::with_quota(Quota::per_minute(per_minute), trust_x_forwarded_for)
    }

    fn with_quota(quota: Quota, trust_x_forwarded_for: bool) -> Self {
        AuthRateLimiter {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            trust_x_forwarded_for,
        }
    }

    /// `Ok` when the request may go on, else how long the client should wait (at least 1 s).
    /// A request whose address cannot be told is let through (actix always knows the peer of a
    /// TCP connection; only test requests lack one).
    pub fn check(&self, req: &HttpRequest) -> Result<(), Duration> {
        let Some(ip) = self.client_ip(req) else {
            return Ok(());
        };
        self.limiter.check_key(&key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            wait.max(Duration::from_secs(1))
        })
    }

    /// The address the limit applies to (see the module docs).
    fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        if self.trust_x_forwarded_for
            && let Some(ip) = last_forwarded_for(req)
        {
            return Some(ip);
        }
        req.peer_addr().map(|a| a.ip())
    }

    /// Number of client keys held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// Forgets the keys whose allowance is full again (indistinguishable from a new key).
    pub fn cleanup(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Runs [`AuthRateLimiter::cleanup`] every [`CLEANUP_EVERY`], forever (abort the task to stop).
    pub async fn run_cleanup(self) {
        let mut every = tokio::time::interval(CLEANUP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.cleanup();
        }
    }
}

/// The last entry of the last `X-Forwarded-For` header, when it is an IP address.
fn last_forwarded_for(req: &HttpRequest) -> Option<IpAddr> {
    let header = req.headers().get_all("x-forwarded-for").last()?;
    let last = header.to_str().ok()?.rsplit(',').next()?.trim();
    last.parse().ok()
}

/// IPv4 addresses as they are, IPv6 addresses cut to their /64 (an IPv4-mapped one to its IPv4).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn from(peer: &str, forwarded: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().expect("addr"));
        if let Some(f) = forwarded {
            req = req.insert_header(("x-forwarded-for", f));
        }
        req.to_http_request()
    }

    fn limiter(per_minute: u32, trust: bool) -> AuthRateLimiter {
        AuthRateLimiter::new(NonZeroU32::new(per_minute).expect("non-zero"), trust)
    }

    #[test]
    fn each_address_gets_its_own_allowance() {
        let l = limiter(3, false);
        for _ in 0..3 {
            assert!(l.check(&from("10.0.0.1:1000", None)).is_ok());
        }
        let wait = l
            .check(&from("10.0.0.1:2000", None))
            .expect_err("the fourth in a minute is refused, whatever the source port");
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(20)).contains(&wait),
            "{wait:?}"
        );
        assert!(
            l.check(&from("10.0.0.2:1000", None)).is_ok(),
            "another client"
        );
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn the_forwarded_header_counts_only_when_trusted() {
        let untrusted = limiter(1, false);
        assert!(
            untrusted
                .check(&from("10.0.0.9:1", Some("1.1.1.1")))
                .is_ok()
        );
        assert!(
            untrusted
                .check(&from("10.0.0.9:1", Some("2.2.2.2")))
                .is_err(),
            "by default the header is ignored: a client cannot pick its key"
        );

        let trusted = limiter(1, true);
        assert!(
            trusted
                .check(&from("10.0.0.9:1", Some("6.6.6.6, 1.1.1.1")))
                .is_ok()
        );
        assert!(
            trusted
                .check(&from("10.0.0.9:1", Some("7.7.7.7, 1.1.1.1")))
                .is_err(),
            "the last entry (the proxy's) is the key, not the forgeable first one"
        );
        assert!(trusted.check(&from("10.0.0.9:1", Some("2.2.2.2"))).is_ok());
        assert!(
            trusted
                .check(&from("10.0.0.8:1", Some("not an ip")))
                .is_ok()
                && trusted.check(&from("10.0.0.8:1", None)).is_err(),
            "an unreadable header falls back to the peer"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(key(mapped), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn cleanup_forgets_only_idle_keys() {
        let l = limiter(30, false);
        assert!(l.check(&from("10.0.0.1:1", None)).is_ok());
        l.cleanup();
        assert_eq!(
            l.len(),
            1,
            "a key that used its allowance a moment ago stays"
        );

        // A quota that refills within a millisecond: its keys are idle almost at once.
        let quick = AuthRateLimiter::with_quota(
            Quota::with_period(Duration::from_micros(100)).expect("non-zero"),
            false,
        );
        for n in 0..100 {
            assert!(quick.check(&from(&format!("10.0.1.{n}:1"), None)).is_ok());
        }
        assert_eq!(quick.len(), 100);
        std::thread::sleep(Duration::from_millis(5));
        quick.cleanup();
        assert!(quick.is_empty(), "{} keys left", quick.len());
    }
}
