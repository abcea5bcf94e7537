//! The client's active secrets: at most two, changed as Snyk's
//! `POST /rest/orgs/{org_id}/apps/creations/{app_id}/secrets` changes them (`mode` `create`,
//! `replace` or `delete`), so a client's secret rotation can be played end to end.

use std::fmt;

use serde::Deserialize;

use crate::pkce;

/// Snyk keeps at most two active secrets per app: the current and the next.
pub const MAX_CLIENT_SECRETS: usize = 2;

/// What Snyk's endpoint does, by its `mode`. `Debug` leaves out the secret to delete.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretChange {
    /// Add a new generated secret, keeping the existing one.
    Create,
    /// Replace every existing secret with one new generated secret.
    Replace,
    /// Remove this existing secret.
    Delete { secret: String },
}

impl SecretChange {
    /// Snyk's name of the mode.
    pub fn mode(&self) -> &'static str {
        match self {
            SecretChange::Create => "create",
            SecretChange::Replace => "replace",
            SecretChange::Delete { .. } => "delete",
        }
    }
}

impl fmt::Debug for SecretChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mode())
    }
}

/// Why a change was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientSecretError {
    #[error("the app already has {MAX_CLIENT_SECRETS} active secrets; delete one first")]
    TooMany,
    #[error("no active secret matches the one given")]
    Unknown,
    #[error("that is the app's only active secret; create another one first, or use replace")]
    Last,
}

/// The active secrets, oldest first.
pub(crate) struct ClientSecrets {
    active: Vec<String>,
}

impl fmt::Debug for ClientSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSecrets({} active)", self.active.len())
    }
}

impl ClientSecrets {
    pub(crate) fn new(initial: &str) -> Self {
        ClientSecrets {
            active: vec![initial.to_owned()],
        }
    }

    /// Is `secret` one of the active ones? (A test double: plain comparison, no timing care.)
    pub(crate) fn accepts(&self, secret: &str) -> bool {
        self.active.iter().any(|s| s == secret)
    }

    pub(crate) fn len(&self) -> usize {
        self.active.len()
    }

    /// Applies `change`; the new secret when one was generated (as Snyk shows it once).
    pub(crate) fn apply(
        &mut self,
        change: &SecretChange,
    ) -> Result<Option<String>, ClientSecretError> {
        match change {
            SecretChange::Create => {
                if self.active.len() >= MAX_CLIENT_SECRETS {
                    return Err(ClientSecretError::TooMany);
                }
                let secret = generate();
                self.active.push(secret.clone());
                Ok(Some(secret))
            }
            SecretChange::Replace => {
                let secret = generate();
                self.active = vec![secret.clone()];
                Ok(Some(secret))
            }
            SecretChange::Delete { secret } => {
                let Some(i) = self.active.iter().position(|s| s == secret) else {
                    return Err(ClientSecretError::Unknown);
                };
                if self.active.len() == 1 {
                    return Err(ClientSecretError::Last);
                }
                self.active.remove(i);
                Ok(None)
            }
        }
    }
}

fn generate() -> String {
    pkce::random_token("snyk_cs_")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn two_at_most_replace_leaves_one_and_the_last_stays() {
        let mut s = ClientSecrets::new("a");
        let b = s.apply(&SecretChange::Create).unwrap().unwrap();
        assert!(s.accepts("a") && s.accepts(&b));
        assert_eq!(
            s.apply(&SecretChange::Create),
            Err(ClientSecretError::TooMany)
        );
        let delete = |secret: &str| SecretChange::Delete {
            secret: secret.to_owned(),
        };
        assert_eq!(s.apply(&delete("nope")), Err(ClientSecretError::Unknown));
        assert_eq!(s.apply(&delete("a")), Ok(None));
        assert!(!s.accepts("a") && s.accepts(&b));
        assert_eq!(s.apply(&delete(&b)), Err(ClientSecretError::Last));
        let c = s.apply(&SecretChange::Replace).unwrap().unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.accepts(&c) && !s.accepts(&b));
        assert!(!s.accepts(""));
    }

    #[test]
    fn modes_read_as_snyk_names_them() {
        let read = |v: serde_json::Value| serde_json::from_value::<SecretChange>(v);
        assert_eq!(
            read(serde_json::json!({"mode": "create"})).unwrap(),
            SecretChange::Create
        );
        assert_eq!(
            read(serde_json::json!({"mode": "delete", "secret": "x"})).unwrap(),
            SecretChange::Delete { secret: "x".into() }
        );
        assert!(read(serde_json::json!({"mode": "delete"})).is_err());
        assert!(read(serde_json::json!({"mode": "rotate"})).is_err());
    }
}
