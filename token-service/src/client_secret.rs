//! The app's client secrets (`SNYK_CLIENT_SECRET`): one, or two during a rotation, and which one
//! is sent first. Snyk lets an app hold two active secrets (docs/design.md, "Rotating the client
//! secret"); a call refused with `invalid_client` is made once more with the other secret, and
//! the one that worked is sent first from then on.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
};

use secrecy::{ExposeSecret, SecretString};

/// The variable, named in every message about the secrets.
pub const VAR: &str = "SNYK_CLIENT_SECRET";

/// At most this many secrets: Snyk keeps at most two active per app.
pub const MAX_SECRETS: usize = 2;

/// Why `SNYK_CLIENT_SECRET` was refused. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientSecretsError {
    #[error(
        "{VAR} must hold one secret, or two comma-separated (the current first) during a rotation; it holds {0}"
    )]
    Count(usize),
    #[error("{VAR} has an empty entry")]
    Empty,
    #[error("{VAR} lists the same secret twice")]
    Repeated,
}

/// The configured secrets, in the order given (the first is the current one). `Debug` shows only
/// how many there are.
#[derive(Clone)]
pub struct ClientSecrets(Arc<[SecretString]>);

impl fmt::Debug for ClientSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSecrets({} configured)", self.0.len())
    }
}

impl ClientSecrets {
    /// `secret` or `current,previous`. A Snyk client secret holds no comma, so the comma
    /// separates without ambiguity.
    pub fn parse(raw: &str) -> Result<Self, ClientSecretsError> {
        let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
        if parts.len() > MAX_SECRETS {
            return Err(ClientSecretsError::Count(parts.len()));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(ClientSecretsError::Empty);
        }
        if parts.len() == 2 && parts[0] == parts[1] {
            return Err(ClientSecretsError::Repeated);
        }
        Ok(ClientSecrets(
            parts
                .into_iter()
                .map(|p| SecretString::from(p.to_owned()))
                .collect(),
        ))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which secret a caller sends: [`ClientSecrets`] plus the index of the one sent first, shared by
/// every clone of the Snyk client. Lock-free: one relaxed load per call on the hot path.
#[derive(Debug)]
pub struct SecretChoice {
    secrets: ClientSecrets,
    /// The position (in `SNYK_CLIENT_SECRET`) of the secret tried first.
    first: AtomicUsize,
    /// Per position: the "no longer accepted" warning was logged (once per secret).
    warned: [AtomicBool; MAX_SECRETS],
}

impl SecretChoice {
    pub fn new(secrets: ClientSecrets) -> Self {
        SecretChoice {
            secrets,
            first: AtomicUsize::new(0),
            warned: Default::default(),
        }
    }

    /// The secrets to try, in order: the preferred one, then the other (if configured).
    pub fn order(&self) -> impl Iterator<Item = Slot<'_>> {
        let n = self.secrets.len();
        let first = self.first.load(Relaxed) % n.max(1);
        (0..n).map(move |i| {
            let position = (first + i) % n;
            Slot {
                position,
                secret: &self.secrets.0[position],
            }
        })
    }

    /// `position` was accepted: send it first from now on.
    pub fn accepted(&self, position: usize) {
        self.first.store(position, Relaxed);
    }

    /// `position` was refused with `invalid_client`. True the first time for that secret (the
    /// caller logs the warning then, not on every call).
    pub fn refused(&self, position: usize) -> bool {
        self.warned
            .get(position)
            .is_some_and(|w| !w.swap(true, Relaxed))
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// One configured secret and its position in `SNYK_CLIENT_SECRET` (0 = first listed).
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    pub position: usize,
    secret: &'a SecretString,
}

impl fmt::Debug for Slot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slot({})", self.label())
    }
}

impl Slot<'_> {
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    /// How metrics and logs name it: its place in the list, never its value.
    pub fn label(&self) -> &'static str {
        position_label(self.position)
    }
}

/// `"1"` for the first secret listed, `"2"` for the second.
pub fn position_label(position: usize) -> &'static str {
    match position {
        0 => "1",
        _ => "2",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn order(c: &SecretChoice) -> Vec<(usize, String)> {
        c.order()
            .map(|s| (s.position, s.expose().to_owned()))
            .collect()
    }

    #[test]
    fn one_or_two_secrets_the_current_first() {
        assert_eq!(ClientSecrets::parse("only").unwrap().len(), 1);
        let two = SecretChoice::new(ClientSecrets::parse(" new , old ").unwrap());
        assert_eq!(order(&two), [(0, "new".into()), (1, "old".into())]);
        two.accepted(1);
        assert_eq!(order(&two), [(1, "old".into()), (0, "new".into())]);
        let one = SecretChoice::new(ClientSecrets::parse("only").unwrap());
        one.accepted(0);
        assert_eq!(order(&one), [(0, "only".into())]);
    }

    #[test]
    fn three_empty_or_repeated_secrets_are_refused_without_showing_them() {
        for (raw, want) in [
            ("a,b,c", ClientSecretsError::Count(3)),
            ("a,", ClientSecretsError::Empty),
            (",b", ClientSecretsError::Empty),
            ("s3cret,s3cret", ClientSecretsError::Repeated),
        ] {
            let err = ClientSecrets::parse(raw).unwrap_err();
            assert_eq!(err, want, "{raw}");
            let msg = err.to_string();
            assert!(msg.contains(VAR) && !msg.contains("s3cret"), "{msg}");
        }
    }

    #[test]
    fn a_refused_secret_is_reported_once() {
        let c = SecretChoice::new(ClientSecrets::parse("a,b").unwrap());
        assert!(c.refused(0));
        assert!(!c.refused(0));
        assert!(c.refused(1));
        assert!(!c.refused(1));
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = ClientSecrets::parse("s3cret,0ther").unwrap();
        assert_eq!(format!("{s:?}"), "ClientSecrets(2 configured)");
        let c = SecretChoice::new(s);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("0ther"),
            "{shown}"
        );
    }
}
