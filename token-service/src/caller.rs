//! Who is calling: the `authorization: Bearer <key>` check every RPC passes first (invariant 5).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// The caller an RPC was authenticated as (a request extension, logged by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Who may call, with which key: parsed from `caller=key,…`.
pub struct ClientKeys {
    // Keys are kept as SHA-256 digests: equal-length values to compare in constant time, and no
    // key material in memory dumps of this struct.
    entries: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let callers: Vec<_> = self.entries.iter().map(|(c, _)| c.as_str()).collect();
        f.debug_struct("ClientKeys").field("callers", &callers).finish()
    }
}

/// Shortest key accepted: 16 characters (the README shows how to generate 32 random bytes).
pub const MIN_KEY_LEN: usize = 16;

impl ClientKeys {
    /// Parses `caller=key,…`; `var` names the variable in error messages.
    pub fn parse(var: &str, spec: &str) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((caller, key)) = pair.split_once('=') else {
                anyhow::bail!("{var} must be `caller=key,…`");
            };
            let (caller, key) = (caller.trim(), key.trim());
            if caller.is_empty() || key.len() < MIN_KEY_LEN {
                anyhow::bail!("{var}: caller {caller:?} needs a name and a key of at least {MIN_KEY_LEN} characters");
            }
            if entries.iter().any(|(c, _)| c == caller) {
                anyhow::bail!("{var} lists caller {caller:?} twice");
            }
            entries.push((caller.to_owned(), digest(key)));
        }
        if entries.is_empty() {
            anyhow::bail!("{var} must list at least one `caller=key`");
        }
        Ok(ClientKeys { entries })
    }

    /// The caller whose key this is. Every entry is compared, so timing does not reveal which.
    pub fn identify(&self, key: &SecretString) -> Option<&str> {
        let d = digest(key.expose_secret());
        let mut found = None;
        for (caller, expected) in &self.entries {
            if bool::from(expected.ct_eq(&d)) {
                found = Some(caller.as_str());
            }
        }
        found
    }

    /// A tonic interceptor: rejects calls without a known key, tags the others with [`Caller`].
    pub fn check(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <key>"))?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization must be `Bearer <key>`"))?;
        let key = match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => return Err(Status::unauthenticated("authorization must be `Bearer <key>`")),
        };
        let caller = self
            .identify(&SecretString::from(key.to_owned()))
            .ok_or_else(|| Status::unauthenticated("unknown key"))?
            .to_owned();
        req.extensions_mut().insert(Caller(caller));
        Ok(req)
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tonic::Code;

    fn keys() -> ClientKeys {
        ClientKeys::parse("V", "projects-service=aaaaaaaaaaaaaaaa1, auth-service=bbbbbbbbbbbbbbbb2").unwrap()
    }

    fn call(auth: Option<&str>) -> Result<Request<()>, Status> {
        let mut req = Request::new(());
        if let Some(a) = auth {
            req.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        keys().check(req)
    }

    #[test]
    fn known_key_is_tagged_with_its_caller() {
        let req = call(Some("Bearer bbbbbbbbbbbbbbbb2")).unwrap();
        assert_eq!(req.extensions().get::<Caller>(), Some(&Caller("auth-service".into())));
        assert!(call(Some("bearer aaaaaaaaaaaaaaaa1")).is_ok());
    }

    #[test]
    fn missing_wrong_or_malformed_keys_are_unauthenticated() {
        for auth in [None, Some("Bearer nope"), Some("aaaaaaaaaaaaaaaa1"), Some("Basic aaaaaaaaaaaaaaaa1"), Some("Bearer ")] {
            let err = call(auth).unwrap_err();
            assert_eq!(err.code(), Code::Unauthenticated, "{auth:?}");
            assert!(!err.message().contains("aaaa"), "key echoed: {}", err.message());
        }
    }

    #[test]
    fn parse_rejects_bad_specs() {
        for bad in ["", "x", "=aaaaaaaaaaaaaaaa", "a=short", "a=aaaaaaaaaaaaaaaa,a=bbbbbbbbbbbbbbbb"] {
            assert!(ClientKeys::parse("V", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_names_callers_only() {
        assert_eq!(format!("{:?}", keys()), r#"ClientKeys { callers: ["projects-service", "auth-service"] }"#);
    }
}
