//! The two cookies this service sets, and what they may contain.
//!
//! - `snykapps_binding`: the random browser binding of pending sign-ins (see `state`). HttpOnly,
//!   SameSite=Lax (it must travel with Snyk's top-level redirect back to `/callback`), `Secure`
//!   when the public URL is https, path `/`, lives as long as a state.
//! - `snykapps_session`: the installs this browser completed, newest first, at most
//!   [`MAX_INSTALLS`]. Encrypted and authenticated (AES-256-GCM, actix-web's private cookie jar,
//!   keyed by `AUTH_COOKIE_KEY`), so it can be neither read nor forged; same attributes, 30 days.
//!   It is what lets a browser see an install's page: install ids are never enough on their own.

use actix_web::{
    HttpRequest,
    cookie::{Cookie, CookieJar, Key, SameSite, time::Duration as CookieDuration},
};

use crate::state::{Binding, STATE_TTL};

pub const BINDING_COOKIE: &str = "snykapps_binding";
pub const SESSION_COOKIE: &str = "snykapps_session";
/// How many installs a session remembers; older ones drop off.
pub const MAX_INSTALLS: usize = 10;
const SESSION_DAYS: i64 = 30;
/// Longest install id we keep (token-service's are 36-character UUIDs).
const MAX_ID_LEN: usize = 64;

/// The installs one browser completed, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    installs: Vec<String>,
}

/// The shape of an install id we accept (token-service issues UUIDs).
pub fn is_install_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Session {
    pub fn installs(&self) -> &[String] {
        &self.installs
    }

    pub fn contains(&self, install_id: &str) -> bool {
        self.installs.iter().any(|i| i == install_id)
    }

    /// Remembers `install_id` as the newest; the oldest drops off past [`MAX_INSTALLS`].
    pub fn add(&mut self, install_id: &str) {
        if !is_install_id(install_id) {
            return;
        }
        self.installs.retain(|i| i != install_id);
        self.installs.insert(0, install_id.to_owned());
        self.installs.truncate(MAX_INSTALLS);
    }

    fn encode(&self) -> String {
        self.installs.join(",")
    }

    fn decode(value: &str) -> Session {
        let mut installs: Vec<String> = Vec::new();
        for id in value.split(',').filter(|id| is_install_id(id)) {
            if !installs.iter().any(|i| i == id) {
                installs.push(id.to_owned());
            }
        }
        installs.truncate(MAX_INSTALLS);
        Session { installs }
    }
}

/// Reads and writes the cookies with one key and one `Secure` policy.
#[derive(Clone)]
pub struct Cookies {
    key: Key,
    secure: bool,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookies")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl Cookies {
    pub fn new(key: Key, secure: bool) -> Self {
        Cookies { key, secure }
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
        req.cookie(BINDING_COOKIE)
            .and_then(|c| Binding::parse(c.value()))
    }

    /// Sets (or refreshes) `binding`; it outlives the states bound to it by a minute.
    pub fn binding_cookie(&self, binding: &Binding) -> Cookie<'static> {
        let max_age =
            CookieDuration::seconds(STATE_TTL.as_secs().try_into().unwrap_or(i64::MAX) + 60);
        self.base(BINDING_COOKIE, binding.value().to_owned(), max_age)
    }

    /// The session this browser presents; empty when absent, tampered with or sealed with
    /// another key.
    pub fn session(&self, req: &HttpRequest) -> Session {
        let Some(cookie) = req.cookie(SESSION_COOKIE) else {
            return Session::default();
        };
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        jar.private(&self.key)
            .get(SESSION_COOKIE)
            .map(|c| Session::decode(c.value()))
            .unwrap_or_default()
    }

    /// The sealed cookie that carries `session`.
    pub fn session_cookie(&self, session: &Session) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(self.base(
            SESSION_COOKIE,
            session.encode(),
            CookieDuration::days(SESSION_DAYS),
        ));
        // `add` just put it there; the fallback (an empty cookie, which reads as no session) is
        // unreachable.
        jar.get(SESSION_COOKIE)
            .cloned()
            .unwrap_or_else(|| Cookie::named(SESSION_COOKIE))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actix_web::test::TestRequest;

    fn cookies() -> Cookies {
        Cookies::new(Key::from(&[7u8; 64]), true)
    }

    fn id(n: usize) -> String {
        format!("00000000-0000-4000-8000-{n:012}")
    }

    #[test]
    fn newest_first_capped_and_deduplicated() {
        let mut s = Session::default();
        for n in 0..12 {
            s.add(&id(n));
        }
        assert_eq!(s.installs().len(), MAX_INSTALLS);
        assert_eq!(s.installs()[0], id(11));
        assert!(
            !s.contains(&id(0)) && !s.contains(&id(1)),
            "the oldest drop off"
        );
        s.add(&id(5));
        assert_eq!(s.installs()[0], id(5));
        assert_eq!(s.installs().iter().filter(|i| **i == id(5)).count(), 1);
        s.add("not,an id");
        assert!(!s.contains("not,an id"));
    }

    #[test]
    fn the_session_cookie_round_trips_sealed() {
        let c = cookies();
        let mut s = Session::default();
        s.add(&id(1));
        s.add(&id(2));
        let cookie = c.session_cookie(&s);
        assert!(
            !cookie.value().contains(&id(1)),
            "the install ids are encrypted"
        );
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        let req = TestRequest::default().cookie(cookie).to_http_request();
        assert_eq!(c.session(&req), s);
    }

    #[test]
    fn forged_or_foreign_sessions_read_as_empty() {
        let c = cookies();
        let plain = TestRequest::default()
            .cookie(Cookie::new(SESSION_COOKIE, id(1)))
            .to_http_request();
        assert_eq!(
            c.session(&plain),
            Session::default(),
            "a plain-text id is not a session"
        );

        let mut s = Session::default();
        s.add(&id(1));
        let other = Cookies::new(Key::from(&[8u8; 64]), true).session_cookie(&s);
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
        let c = Cookies::new(Key::from(&[7u8; 64]), false);
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
