//! One grant as Redis holds it: a hash of the generation (`gen`, the fence of every write), the
//! sealed record (`rec`: the grant's serde form, sealed with the keyring, bound to the install and
//! the generation) and the "sending" mark, read together in one round trip.

use super::{Store, error::StoreError, fenced::SendingMark, keys::grant_key};
use crate::grant::{Grant, InstallId};

/// A grant and the generation it was read at (the fence for the next write).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub generation: u64,
    pub grant: Grant,
    /// False when sealed with an older key: the next write re-seals it with the primary key.
    pub sealed_with_primary: bool,
    /// Set while a refresh token of this grant may be at Snyk with its answer not yet stored.
    pub sending: Option<SendingMark>,
}

/// The plaintext a grant is sealed as: its serde form, every field but the install id.
fn stored_form(grant: &Grant) -> Vec<u8> {
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_vec(grant).unwrap_or_default()
}

/// The grant of install `id` from its stored form.
fn from_stored_form(id: InstallId, plaintext: &[u8]) -> Result<Grant, serde_json::Error> {
    let mut grant: Grant = serde_json::from_slice(plaintext)?;
    grant.install_id = id;
    Ok(grant)
}

impl Store {
    /// Reads one grant: one round trip (`HMGET gen rec sending`).
    pub async fn load(&self, id: &InstallId) -> Result<Option<Versioned>, StoreError> {
        let mut c = self.conn.clone();
        let (generation, rec, sending): (Option<u64>, Option<Vec<u8>>, Option<String>) =
            redis::cmd("HMGET")
                .arg(grant_key(id))
                .arg("gen")
                .arg("rec")
                .arg("sending")
                .query_async(&mut c)
                .await?;
        match (generation, rec) {
            (Some(generation), Some(rec)) => {
                let mut v = self.open(id, generation, &rec)?;
                v.sending = sending.as_deref().and_then(SendingMark::parse);
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    }

    fn open(
        &self,
        id: &InstallId,
        generation: u64,
        sealed: &[u8],
    ) -> Result<Versioned, StoreError> {
        let opened = self
            .keyring
            .open(&id.to_string(), generation, sealed)
            .map_err(|source| StoreError::Unreadable {
                install: *id,
                source,
            })?;
        let grant = from_stored_form(*id, &opened.plaintext).map_err(|e| StoreError::Corrupt {
            install: *id,
            reason: e.to_string(),
        })?;
        Ok(Versioned {
            generation,
            grant,
            sealed_with_primary: opened.sealed_with_primary,
            sending: None,
        })
    }

    pub(super) fn seal(&self, grant: &Grant, generation: u64) -> Vec<u8> {
        self.keyring.seal(
            &grant.install_id.to_string(),
            generation,
            &stored_form(grant),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::grant::{Org, OrgId, ReauthReason, Status};

    /// A grant with every field set to something other than its default.
    fn full_grant() -> Grant {
        Grant {
            install_id: InstallId::new_random(),
            access_token: "snyk_at_stored".to_owned().into(),
            refresh_token: "snyk_rt_stored".to_owned().into(),
            token_type: "bearer".into(),
            access_expires_at: 1_700_000_360_000,
            access_lifetime_secs: 3600,
            refresh_expires_at: Some(1_715_552_000_000),
            refresh_lifetime_secs: Some(15_552_000),
            scope: "org.read org.project.read".into(),
            bot_id: "bot-7".into(),
            orgs: vec![Org {
                id: OrgId::parse("0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11").unwrap(),
                name: "Acme \"R&D\"".into(),
            }],
            created_at: 1_690_000_000_000,
            status: Status::NeedsReauth(ReauthReason::RefreshInDoubt),
            refresh_started_at: Some(1_700_000_000_123),
        }
    }

    /// Every field, the tokens included (`Debug` covers the others and redacts the tokens).
    fn assert_same(a: &Grant, b: &Grant) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(
            a.access_token.expose_secret(),
            b.access_token.expose_secret()
        );
        assert_eq!(
            a.refresh_token.expose_secret(),
            b.refresh_token.expose_secret()
        );
    }

    #[test]
    fn a_grant_round_trips_through_its_stored_form() {
        let grant = full_grant();
        let stored = stored_form(&grant);
        assert_same(
            &from_stored_form(grant.install_id, &stored).unwrap(),
            &grant,
        );
        let text = String::from_utf8(stored).unwrap();
        assert!(
            !text.contains(&grant.install_id.to_string()),
            "the key names the install, the record does not: {text}"
        );
    }

    /// Records written before the grant was serialised directly: they load, and a grant is
    /// stored byte for byte as they were.
    #[test]
    fn records_stored_by_earlier_versions_still_load() {
        const FULL: &str = r#"{"access_token":"snyk_at_stored","refresh_token":"snyk_rt_stored","token_type":"bearer","access_expires_at":1700000360000,"access_lifetime_secs":3600,"refresh_expires_at":1715552000000,"refresh_lifetime_secs":15552000,"scope":"org.read org.project.read","bot_id":"bot-7","orgs":[{"id":"0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11","name":"Acme \"R&D\""}],"created_at":1690000000000,"status":{"state":"needs_reauth","reason":"refresh_in_doubt"},"refresh_started_at":1700000000123}"#;
        const BARE: &str = r#"{"access_token":"snyk_at_stored","refresh_token":"snyk_rt_stored","token_type":"bearer","access_expires_at":1700000360000,"access_lifetime_secs":3600,"refresh_expires_at":null,"refresh_lifetime_secs":null,"scope":"org.read org.project.read","bot_id":"bot-7","orgs":[],"created_at":1690000000000,"status":{"state":"active"},"refresh_started_at":null}"#;
        // Before the refresh token's lifetime was kept.
        const NO_REFRESH_LIFETIME: &str = r#"{"access_token":"snyk_at_stored","refresh_token":"snyk_rt_stored","token_type":"bearer","access_expires_at":1700000360000,"access_lifetime_secs":3600,"refresh_expires_at":null,"scope":"org.read org.project.read","bot_id":"bot-7","orgs":[],"created_at":1690000000000,"status":{"state":"active"},"refresh_started_at":null}"#;

        let full = full_grant();
        let bare = Grant {
            refresh_expires_at: None,
            refresh_lifetime_secs: None,
            orgs: vec![],
            status: Status::Active,
            refresh_started_at: None,
            ..full.clone()
        };
        let id = full.install_id;
        for (stored, expected) in [(FULL, &full), (BARE, &bare)] {
            assert_same(&from_stored_form(id, stored.as_bytes()).unwrap(), expected);
            assert_eq!(String::from_utf8(stored_form(expected)).unwrap(), stored);
        }
        assert_same(
            &from_stored_form(id, NO_REFRESH_LIFETIME.as_bytes()).unwrap(),
            &bare,
        );
    }
}
