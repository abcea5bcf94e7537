//! How internal callers authenticate: every internal call carries `authorization: Bearer <key>`,
//! checked against a `caller=key,…` list (`TOKEN_SERVICE_CLIENT_KEYS`,
//! `PROJECTS_SERVICE_CLIENT_KEYS`). A crate of its own because token-service (gRPC) and
//! projects-service (HTTP) both check it, and neither is the other's contract.
//!
//! A caller may be listed twice, with two keys both accepted, so its key rotates without
//! downtime: `caller=new,caller=old` on every replica, then the caller switches to `new`, then
//! `caller=old` goes. A third key for one caller, or one key given twice, is refused.
//!
//! Reading order (one file): [`ClientKeys`] (the parsed list; its `Debug` shows callers, never
//! keys) and its limits [`MIN_KEY_LEN`], [`MAX_KEYS_PER_CALLER`] → [`ClientKeysError`] (a refused
//! list, naming the variable and the caller) → [`ClientKeys::parse`], then
//! [`ClientKeys::authenticate`] (the header in, the caller's name or a [`Rejection`] out, compared
//! in constant time) → the tests.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who may call, with which keys: parsed from `caller=key,…`.
pub struct ClientKeys {
    // Keys are kept as SHA-256 digests: equal-length values to compare in constant time, and no
    // key material in memory dumps of this struct.
    entries: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let callers: Vec<_> = self.callers().collect();
        f.debug_struct("ClientKeys")
            .field("callers", &callers)
            .finish()
    }
}

/// Shortest key accepted: 16 characters (docs/operations.md shows how to generate 32 random bytes).
pub const MIN_KEY_LEN: usize = 16;

/// Keys one caller may hold at once: the new and the old, while a rotation rolls out.
pub const MAX_KEYS_PER_CALLER: usize = 2;

/// Why a `caller=key,…` list was refused. Never contains a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientKeysError {
    #[error("{0} must be `caller=key,…`")]
    Malformed(String),
    #[error("{var}: caller {caller:?} needs a name and a key of at least {MIN_KEY_LEN} characters")]
    Weak { var: String, caller: String },
    #[error(
        "{var} lists caller {caller:?} more than {MAX_KEYS_PER_CALLER} times: a caller holds at most two keys (the new and the old, during a rotation)"
    )]
    TooManyKeys { var: String, caller: String },
    /// The same key twice: for one caller it is not a second key, for two callers it would
    /// not say who is calling.
    #[error("{var} gives caller {caller:?} a key that is already listed; every key must differ")]
    RepeatedKey { var: String, caller: String },
    #[error("{0} must list at least one `caller=key`")]
    Empty(String),
}

/// Why a request's credentials were refused (the message is safe to return to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing authorization: Bearer <key>")]
    Missing,
    #[error("authorization must be `Bearer <key>`")]
    Malformed,
    #[error("unknown key")]
    UnknownKey,
}

impl ClientKeys {
    /// Parses `caller=key,…`; `var` names the variable in error messages.
    pub fn parse(var: &str, spec: &str) -> Result<Self, ClientKeysError> {
        let entries = pairs(var, spec)?
            .into_iter()
            .map(|(caller, key)| (caller.to_owned(), digest(key)))
            .collect();
        Ok(ClientKeys { entries })
    }

    /// The key of `caller` in the list `spec`, checked exactly as [`ClientKeys::parse`] checks
    /// it (`None` when the list, valid, has no such caller): for a tool that runs with the
    /// service's own environment and calls the service as one of its callers. Of two keys, the
    /// first listed: the new one, in the order a rotation lists them.
    pub fn key_of(
        var: &str,
        spec: &str,
        caller: &str,
    ) -> Result<Option<SecretString>, ClientKeysError> {
        Ok(pairs(var, spec)?
            .into_iter()
            .find(|(c, _)| *c == caller)
            .map(|(_, key)| SecretString::from(key.to_owned())))
    }

    /// The caller names, in the order listed, each once (a caller with two keys too).
    pub fn callers(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, (caller, _))| !self.entries[..*i].iter().any(|(c, _)| c == caller))
            .map(|(_, (caller, _))| caller.as_str())
    }

    /// The caller whose key this is. Every entry is compared (both keys of a caller that has
    /// two), so timing does not reveal which.
    pub fn identify(&self, key: &SecretString) -> Option<&str> {
        self.identify_digest(&digest(key.expose_secret()))
    }

    /// [`ClientKeys::identify`] by the key's digest: a key read from a request is digested where
    /// it lies, never copied (no allocation on the hot path, no copy left to zeroize).
    fn identify_digest(&self, d: &[u8; 32]) -> Option<&str> {
        let mut found = None;
        for (caller, expected) in &self.entries {
            if bool::from(expected.ct_eq(d)) {
                found = Some(caller.as_str());
            }
        }
        found
    }

    /// Checks an `authorization` header value (`None` when absent); returns the caller's name.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<&str, Rejection> {
        let value = std::str::from_utf8(header.ok_or(Rejection::Missing)?)
            .map_err(|_| Rejection::Malformed)?;
        let key = match value.split_once(' ') {
            Some((scheme, key))
                if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() =>
            {
                key.trim()
            }
            _ => return Err(Rejection::Malformed),
        };
        self.identify_digest(&digest(key))
            .ok_or(Rejection::UnknownKey)
    }
}

/// The `(caller, key)` entries of `caller=key,…`, every rule checked: a name, a key of at least
/// [`MIN_KEY_LEN`] characters, at most [`MAX_KEYS_PER_CALLER`] entries per caller, no key twice,
/// at least one entry.
fn pairs<'s>(var: &str, spec: &'s str) -> Result<Vec<(&'s str, &'s str)>, ClientKeysError> {
    let mut entries: Vec<(&str, &str)> = Vec::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((caller, key)) = pair.split_once('=') else {
            return Err(ClientKeysError::Malformed(var.to_owned()));
        };
        let (caller, key) = (caller.trim(), key.trim());
        if caller.is_empty() || key.len() < MIN_KEY_LEN {
            return Err(ClientKeysError::Weak {
                var: var.to_owned(),
                caller: caller.to_owned(),
            });
        }
        if entries.iter().filter(|(c, _)| *c == caller).count() >= MAX_KEYS_PER_CALLER {
            return Err(ClientKeysError::TooManyKeys {
                var: var.to_owned(),
                caller: caller.to_owned(),
            });
        }
        // Start-up only: comparing keys in the clear here reveals nothing to a caller.
        if entries.iter().any(|(_, k)| *k == key) {
            return Err(ClientKeysError::RepeatedKey {
                var: var.to_owned(),
                caller: caller.to_owned(),
            });
        }
        entries.push((caller, key));
    }
    if entries.is_empty() {
        return Err(ClientKeysError::Empty(var.to_owned()));
    }
    Ok(entries)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> ClientKeys {
        ClientKeys::parse(
            "V",
            "projects-service=aaaaaaaaaaaaaaaa1, auth-service=bbbbbbbbbbbbbbbb2",
        )
        .unwrap()
    }

    #[test]
    fn known_keys_name_their_caller() {
        assert_eq!(
            keys().authenticate(Some(b"Bearer bbbbbbbbbbbbbbbb2")),
            Ok("auth-service")
        );
        assert_eq!(
            keys().authenticate(Some(b"bearer aaaaaaaaaaaaaaaa1")),
            Ok("projects-service")
        );
    }

    #[test]
    fn missing_wrong_or_malformed_keys_are_rejected() {
        let k = keys();
        assert_eq!(k.authenticate(None), Err(Rejection::Missing));
        for bad in [
            &b"Bearer nope"[..],
            b"aaaaaaaaaaaaaaaa1",
            b"Basic aaaaaaaaaaaaaaaa1",
            b"Bearer ",
            b"Bearer \xff",
        ] {
            assert!(k.authenticate(Some(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            k.authenticate(Some(b"Bearer aaaaaaaaaaaaaaaa1x")),
            Err(Rejection::UnknownKey)
        );
    }

    #[test]
    fn parse_rejects_bad_specs_and_names_the_variable() {
        for bad in [
            "",
            "x",
            "=aaaaaaaaaaaaaaaa",
            "a=short",
            "a=aaaaaaaaaaaaaaaa,a=bbbbbbbbbbbbbbbb,a=cccccccccccccccc",
            "a=aaaaaaaaaaaaaaaa,a=aaaaaaaaaaaaaaaa",
            "a=aaaaaaaaaaaaaaaa,b=aaaaaaaaaaaaaaaa",
        ] {
            let err = ClientKeys::parse("SOME_VAR", bad).unwrap_err();
            assert!(err.to_string().contains("SOME_VAR"), "{err}");
            assert!(!err.to_string().contains("aaaa"), "key echoed: {err}");
        }
    }

    #[test]
    fn key_of_finds_one_callers_key_under_the_same_rules() {
        let spec = "projects-service=aaaaaaaaaaaaaaaa1, ops = cccccccccccccccc3 ";
        let key = ClientKeys::key_of("V", spec, "ops").unwrap().unwrap();
        assert_eq!(key.expose_secret(), "cccccccccccccccc3");
        assert!(ClientKeys::key_of("V", spec, "nobody").unwrap().is_none());
        for bad in [
            "",
            "ops=short",
            "ops=aaaaaaaaaaaaaaaa,ops=bbbbbbbbbbbbbbbb,ops=cccccccccccccccc",
            "ops=aaaaaaaaaaaaaaaa,ops=aaaaaaaaaaaaaaaa",
        ] {
            let err = ClientKeys::key_of("V", bad, "ops").unwrap_err();
            assert_eq!(err, ClientKeys::parse("V", bad).unwrap_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_caller_listed_twice_is_accepted_with_either_key() {
        let k = ClientKeys::parse(
            "V",
            "ops=nnnnnnnnnnnnnnnn-new, auth-service=bbbbbbbbbbbbbbbb2, ops=oooooooooooooooo-old",
        )
        .unwrap();
        for key in ["nnnnnnnnnnnnnnnn-new", "oooooooooooooooo-old"] {
            let header = format!("Bearer {key}");
            assert_eq!(k.authenticate(Some(header.as_bytes())), Ok("ops"), "{key}");
        }
        assert_eq!(
            k.authenticate(Some(b"Bearer bbbbbbbbbbbbbbbb2")),
            Ok("auth-service")
        );
        assert_eq!(
            k.authenticate(Some(b"Bearer oooooooooooooooo-ol")),
            Err(Rejection::UnknownKey)
        );
        assert_eq!(k.callers().collect::<Vec<_>>(), ["ops", "auth-service"]);
        // The tool that calls as `ops` takes the first: the new key, in rotation order.
        let spec = "ops=nnnnnnnnnnnnnnnn-new,ops=oooooooooooooooo-old";
        let first = ClientKeys::key_of("V", spec, "ops").unwrap().unwrap();
        assert_eq!(first.expose_secret(), "nnnnnnnnnnnnnnnn-new");
    }

    #[test]
    fn a_third_key_or_a_repeated_key_is_refused_naming_the_variable_and_the_caller() {
        let third =
            "ops=aaaaaaaaaaaaaaaa,x=xxxxxxxxxxxxxxxx,ops=bbbbbbbbbbbbbbbb,ops=cccccccccccccccc";
        let err = ClientKeys::parse("TOKEN_SERVICE_CLIENT_KEYS", third).unwrap_err();
        assert_eq!(
            err,
            ClientKeysError::TooManyKeys {
                var: "TOKEN_SERVICE_CLIENT_KEYS".into(),
                caller: "ops".into()
            }
        );
        assert_eq!(
            err.to_string(),
            r#"TOKEN_SERVICE_CLIENT_KEYS lists caller "ops" more than 2 times: a caller holds at most two keys (the new and the old, during a rotation)"#
        );
        for (spec, caller) in [
            ("ops=aaaaaaaaaaaaaaaa,ops=aaaaaaaaaaaaaaaa", "ops"),
            ("ops=aaaaaaaaaaaaaaaa,other=aaaaaaaaaaaaaaaa", "other"),
        ] {
            let err = ClientKeys::parse("V", spec).unwrap_err();
            assert_eq!(
                err,
                ClientKeysError::RepeatedKey {
                    var: "V".into(),
                    caller: caller.into()
                },
                "{spec}"
            );
            assert!(!err.to_string().contains("aaaa"), "{err}");
        }
    }

    #[test]
    fn debug_names_callers_only() {
        assert_eq!(
            format!("{:?}", keys()),
            r#"ClientKeys { callers: ["projects-service", "auth-service"] }"#
        );
    }
}
