//! The two cookies this service sets, and what they may contain.
//!
//! - `snykapps_binding`: the random browser binding of pending sign-ins (see `state`). HttpOnly,
//!   SameSite=Lax (it must travel with Snyk's top-level redirect back to `/callback`), `Secure`
//!   when the public URL is https, path `/`, lives as long as a state.
//! - `snykapps_session`: the installs this browser completed, newest first, at most
//!   [`MAX_INSTALLS`], and the moment the session ends. Encrypted and authenticated (AES-256-GCM,
//!   actix-web's private cookie jar, keyed by `AUTH_COOKIE_KEY`), so it can be neither read nor
//!   forged; same attributes. The expiry is inside the sealed value, so a cookie kept past its
//!   `Max-Age` (a copied cookie, a browser that ignores it) is still refused after
//!   `AUTH_SESSION_TTL_SECONDS`. It is what lets a browser see an install's page: install ids are
//!   never enough on their own. `POST /logout` clears it; Disconnect drops its install from it.
//!
//! The first key of `AUTH_COOKIE_KEY` seals; every key opens, so keys rotate without signing
//! anyone out. When the public URL is https both names get the `__Host-` prefix: the browser then
//! accepts them only with `Secure`, `Path=/` and no `Domain`, so a sibling subdomain cannot plant
//! or overwrite them (and cookies without the prefix are ignored).

use std::time::Duration;

use actix_web::{
    HttpRequest,
    cookie::{Cookie, CookieJar, Key, SameSite, time::Duration as CookieDuration},
};

use snykapps_ids::InstallId;

use crate::state::{Binding, STATE_TTL, unix_now};

pub const BINDING_COOKIE: &str = "snykapps_binding";
pub const SESSION_COOKIE: &str = "snykapps_session";
/// The prefix of both names when the public URL is https.
pub const HOST_PREFIX: &str = "__Host-";
/// How many installs a session remembers; older ones drop off.
pub const MAX_INSTALLS: usize = 10;
/// The installs one browser completed, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    installs: Vec<InstallId>,
}

impl Session {
    pub fn installs(&self) -> &[InstallId] {
        &self.installs
    }

    pub fn contains(&self, install_id: &InstallId) -> bool {
        self.installs.contains(install_id)
    }

    /// Remembers `install_id` as the newest; the oldest drops off past [`MAX_INSTALLS`].
    pub fn add(&mut self, install_id: InstallId) {
        self.installs.retain(|i| *i != install_id);
        self.installs.insert(0, install_id);
        self.installs.truncate(MAX_INSTALLS);
    }

    /// Forgets `install_id` (Disconnect). `true` when it was there.
    pub fn remove(&mut self, install_id: &InstallId) -> bool {
        let before = self.installs.len();
        self.installs.retain(|i| i != install_id);
        self.installs.len() != before
    }

    pub fn is_empty(&self) -> bool {
        self.installs.is_empty()
    }

    /// The sealed plain text: `<expires_at>|<id>,<id>,…` (Unix seconds).
    fn encode(&self, expires_at: u64) -> String {
        let ids: Vec<String> = self.installs.iter().map(InstallId::to_string).collect();
        format!("{expires_at}|{}", ids.join(","))
    }

    /// `None` for a value without a readable expiry (an older format, or damage) and for one
    /// whose expiry has come.
    fn decode(value: &str, now: u64) -> Option<Session> {
        let (expires_at, ids) = value.split_once('|')?;
        let expires_at: u64 = expires_at.parse().ok()?;
        if now >= expires_at {
            return None;
        }
        Some(Session::from_ids(ids))
    }

    fn from_ids(value: &str) -> Session {
        let mut installs: Vec<InstallId> = Vec::new();
        for id in value.split(',').filter_map(|id| InstallId::parse(id).ok()) {
            if !installs.contains(&id) {
                installs.push(id);
            }
        }
        installs.truncate(MAX_INSTALLS);
        Session { installs }
    }
}

/// Reads and writes the cookies with one keyring, one `Secure` policy and one session lifetime.
#[derive(Clone)]
pub struct Cookies {
    /// Seals new sessions.
    sealing: Key,
    /// Open sessions sealed before a rotation (tried after `sealing`).
    older: Vec<Key>,
    secure: bool,
    ttl: Duration,
    binding_name: &'static str,
    session_name: &'static str,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookies")
            .field("secure", &self.secure)
            .field("ttl", &self.ttl)
            .field("keys", &(1 + self.older.len()))
            .finish_non_exhaustive()
    }
}

/// Seconds as a cookie duration, saturating.
fn cookie_seconds(secs: u64) -> CookieDuration {
    CookieDuration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

impl Cookies {
    /// `sealing` seals every new session; `older` keys (and `sealing`) open them. `secure` (the
    /// public URL is https) adds `Secure` and the `__Host-` names; sessions last `ttl`.
    pub fn new(sealing: Key, older: Vec<Key>, secure: bool, ttl: Duration) -> Self {
        let (binding_name, session_name) = if secure {
            ("__Host-snykapps_binding", "__Host-snykapps_session")
        } else {
            (BINDING_COOKIE, SESSION_COOKIE)
        };
        Cookies {
            sealing,
            older,
            secure,
            ttl,
            binding_name,
            session_name,
        }
    }

    /// The name of the binding cookie (`__Host-` prefixed when secure).
    pub fn binding_name(&self) -> &'static str {
        self.binding_name
    }

    /// The name of the session cookie (`__Host-` prefixed when secure).
    pub fn session_name(&self) -> &'static str {
        self.session_name
    }

    fn base(&self, name: &'static str, value: String, max_age: CookieDuration) -> Cookie<'static> {
        Cookie::build(name, value)
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .path("/")
            .max_age(max_age)
            .finish()
    }

    /// The binding this browser holds, if its cookie has the shape of one we issued.
    pub fn binding(&self, req: &HttpRequest) -> Option<Binding> {
        req.cookie(self.binding_name)
            .and_then(|c| Binding::parse(c.value()))
    }

    /// Sets (or refreshes) `binding`; it outlives the states bound to it by a minute.
    pub fn binding_cookie(&self, binding: &Binding) -> Cookie<'static> {
        self.base(
            self.binding_name,
            binding.value().to_owned(),
            cookie_seconds(STATE_TTL.as_secs() + 60),
        )
    }

    /// The session this browser presents; empty when absent, tampered with, sealed with a key
    /// not in the keyring, or expired.
    pub fn session(&self, req: &HttpRequest) -> Session {
        self.session_at(req, unix_now())
    }

    /// [`Cookies::session`] as of `now` (Unix seconds).
    pub fn session_at(&self, req: &HttpRequest, now: u64) -> Session {
        let Some(cookie) = req.cookie(self.session_name) else {
            return Session::default();
        };
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        std::iter::once(&self.sealing)
            .chain(&self.older)
            .find_map(|key| jar.private(key).get(self.session_name))
            .and_then(|c| Session::decode(c.value(), now))
            .unwrap_or_default()
    }

    /// The sealed cookie that carries `session`, valid for the session lifetime from now.
    pub fn session_cookie(&self, session: &Session) -> Cookie<'static> {
        self.session_cookie_at(session, unix_now())
    }

    /// [`Cookies::session_cookie`] sealed at `now` (Unix seconds): it expires at `now + ttl`.
    pub fn session_cookie_at(&self, session: &Session, now: u64) -> Cookie<'static> {
        let ttl = self.ttl.as_secs();
        let mut jar = CookieJar::new();
        jar.private_mut(&self.sealing).add(self.base(
            self.session_name,
            session.encode(now.saturating_add(ttl)),
            cookie_seconds(ttl),
        ));
        // `add` just put it there; the fallback (an empty cookie, which reads as no session) is
        // unreachable.
        jar.get(self.session_name)
            .cloned()
            .unwrap_or_else(|| Cookie::named(self.session_name))
    }

    /// Cookies that make the browser forget its session and binding (logout).
    pub fn removals(&self) -> [Cookie<'static>; 2] {
        [self.session_name, self.binding_name].map(|name| {
            let mut c = self.base(name, String::new(), CookieDuration::ZERO);
            c.make_removal();
            c
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actix_web::test::TestRequest;

    const TTL: Duration = Duration::from_secs(3600);

    fn key(n: u8) -> Key {
        Key::from(&[n; 64])
    }

    fn cookies() -> Cookies {
        Cookies::new(key(7), vec![], true, TTL)
    }

    fn one_install() -> Session {
        let mut s = Session::default();
        s.add(id(1));
        s
    }

    fn presenting(cookie: Cookie<'static>) -> HttpRequest {
        TestRequest::default().cookie(cookie).to_http_request()
    }

    fn id(n: usize) -> InstallId {
        InstallId::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap()
    }

    #[test]
    fn newest_first_capped_and_deduplicated() {
        let mut s = Session::default();
        for n in 0..12 {
            s.add(id(n));
        }
        assert_eq!(s.installs().len(), MAX_INSTALLS);
        assert_eq!(s.installs()[0], id(11));
        assert!(
            !s.contains(&id(0)) && !s.contains(&id(1)),
            "the oldest drop off"
        );
        s.add(id(5));
        assert_eq!(s.installs()[0], id(5));
        assert_eq!(s.installs().iter().filter(|i| **i == id(5)).count(), 1);
    }

    #[test]
    fn remove_forgets_one_install_only() {
        let mut s = Session::default();
        s.add(id(1));
        s.add(id(2));
        assert!(s.remove(&id(1)));
        assert_eq!(s.installs(), &[id(2)]);
        assert!(!s.remove(&id(1)), "already gone");
        assert!(!s.is_empty());
        assert!(s.remove(&id(2)));
        assert!(s.is_empty());
    }

    #[test]
    fn the_session_cookie_round_trips_sealed() {
        let c = cookies();
        let mut s = Session::default();
        s.add(id(1));
        s.add(id(2));
        let cookie = c.session_cookie(&s);
        assert!(
            !cookie.value().contains(&id(1).to_string()),
            "the install ids are encrypted"
        );
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None, "__Host- cookies have no Domain");
        assert_eq!(cookie.name(), "__Host-snykapps_session");
        assert_eq!(cookie.max_age(), Some(CookieDuration::seconds(3600)));
        let req = TestRequest::default().cookie(cookie).to_http_request();
        assert_eq!(c.session(&req), s);
    }

    #[test]
    fn a_session_is_refused_once_its_sealed_expiry_has_come() {
        let c = cookies();
        let cookie = c.session_cookie_at(&one_install(), 1_000);
        let req = presenting(cookie);
        assert_eq!(c.session_at(&req, 1_000 + 3599), one_install());
        assert_eq!(
            c.session_at(&req, 1_000 + 3600),
            Session::default(),
            "expired"
        );
        assert_eq!(c.session_at(&req, u64::MAX), Session::default());
        // Sealed long ago with the default lifetime: refused now, whatever Max-Age said.
        let old = Cookies::new(key(7), vec![], true, TTL).session_cookie_at(&one_install(), 0);
        assert_eq!(c.session(&presenting(old)), Session::default());
    }

    #[test]
    fn a_sealed_value_without_an_expiry_is_refused() {
        // The format before sessions carried their expiry: just the ids.
        let c = cookies();
        let mut jar = CookieJar::new();
        jar.private_mut(&key(7))
            .add(Cookie::new("__Host-snykapps_session", id(1).to_string()));
        let legacy = jar.get("__Host-snykapps_session").cloned().unwrap();
        assert_eq!(c.session(&presenting(legacy)), Session::default());
        for plain in ["", "|", "x|id", "-1|id", "12"] {
            assert_eq!(Session::decode(plain, 0), None, "{plain:?}");
        }
    }

    #[test]
    fn keys_rotate_first_seals_all_open() {
        let before = Cookies::new(key(1), vec![], true, TTL);
        let sealed_with_old = before.session_cookie(&one_install());
        let rotated = Cookies::new(key(2), vec![key(1)], true, TTL);
        assert_eq!(
            rotated.session(&presenting(sealed_with_old)),
            one_install(),
            "the old key still opens"
        );
        let sealed_with_new = rotated.session_cookie(&one_install());
        assert_eq!(
            before.session(&presenting(sealed_with_new.clone())),
            Session::default(),
            "the first key seals"
        );
        let only_new = Cookies::new(key(2), vec![], true, TTL);
        assert_eq!(
            only_new.session(&presenting(sealed_with_new)),
            one_install()
        );
    }

    #[test]
    fn names_are_host_prefixed_only_over_https() {
        let secure = cookies();
        let plain = Cookies::new(key(7), vec![], false, TTL);
        assert_eq!(
            (secure.session_name(), secure.binding_name()),
            ("__Host-snykapps_session", "__Host-snykapps_binding")
        );
        assert_eq!(
            (plain.session_name(), plain.binding_name()),
            ("snykapps_session", "snykapps_binding")
        );
        // Over https a cookie without the prefix (which a sibling subdomain could plant) is not
        // read, even when it is validly sealed.
        let unprefixed = plain.session_cookie(&one_install());
        assert_eq!(secure.session(&presenting(unprefixed)), Session::default());
        let b = Binding::generate();
        let planted = presenting(Cookie::new(BINDING_COOKIE, b.value().to_owned()));
        assert!(secure.binding(&planted).is_none());
        assert!(plain.binding(&planted).is_some());
    }

    #[test]
    fn removals_clear_both_cookies_with_matching_attributes() {
        let c = cookies();
        let [session, binding] = c.removals();
        for (cookie, name) in [
            (session, "__Host-snykapps_session"),
            (binding, "__Host-snykapps_binding"),
        ] {
            assert_eq!(cookie.name(), name);
            assert_eq!(cookie.value(), "");
            assert_eq!(cookie.max_age(), Some(CookieDuration::ZERO));
            assert_eq!((cookie.path(), cookie.secure()), (Some("/"), Some(true)));
        }
    }

    #[test]
    fn forged_or_foreign_sessions_read_as_empty() {
        let c = cookies();
        let plain = TestRequest::default()
            .cookie(Cookie::new(
                "__Host-snykapps_session",
                format!("99999999999|{}", id(1)),
            ))
            .to_http_request();
        assert_eq!(
            c.session(&plain),
            Session::default(),
            "a plain-text id is not a session"
        );

        let mut s = Session::default();
        s.add(id(1));
        let other = Cookies::new(key(8), vec![], true, TTL).session_cookie(&s);
        let req = TestRequest::default().cookie(other).to_http_request();
        assert_eq!(
            c.session(&req),
            Session::default(),
            "sealed with another key"
        );

        let mut tampered = c.session_cookie(&s);
        let mut v = tampered.value().to_owned();
        v.replace_range(10..11, if &v[10..11] == "A" { "B" } else { "A" });
        tampered.set_value(v);
        let req = TestRequest::default().cookie(tampered).to_http_request();
        assert_eq!(c.session(&req), Session::default(), "tampered");
    }

    #[test]
    fn binding_cookie_attributes() {
        let c = Cookies::new(key(7), vec![], false, TTL);
        let b = Binding::generate();
        let cookie = c.binding_cookie(&b);
        assert_eq!(cookie.value(), b.value());
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.secure(), Some(false));
        assert_eq!(cookie.max_age(), Some(CookieDuration::seconds(660)));
        let req = TestRequest::default().cookie(cookie).to_http_request();
        assert_eq!(
            c.binding(&req).map(|b| b.value().to_owned()),
            Some(b.value().to_owned())
        );
        let junk = TestRequest::default()
            .cookie(Cookie::new(BINDING_COOKIE, "x"))
            .to_http_request();
        assert!(c.binding(&junk).is_none());
    }
}
