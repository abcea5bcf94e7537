//! The AEAD keyring that seals grant records before they reach Redis (docs/design.md, invariant 3).
//!
//! A sealed record is `0x01 | key-id length | key id | 12-byte nonce | AES-256-GCM ciphertext+tag`.
//! The associated data binds the ciphertext to its install, its key id and its generation, so a
//! record copied to another install, relabelled with another key id, or replayed over a newer
//! generation fails to open instead of being believed.

use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::Engine as _;
use rand::RngCore as _;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a keyring could not be built from `TOKEN_ENCRYPTION_KEYS`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("TOKEN_ENCRYPTION_KEYS must list at least one `id:base64key`")]
    Empty,
    #[error("TOKEN_ENCRYPTION_KEYS entry {0} is not `id:base64key`")]
    Malformed(usize),
    #[error("TOKEN_ENCRYPTION_KEYS key id {0:?} must be 1-32 characters of [A-Za-z0-9_-]")]
    BadId(String),
    #[error("TOKEN_ENCRYPTION_KEYS key {0:?} is not 32 bytes of standard base64")]
    BadKey(String),
    #[error("TOKEN_ENCRYPTION_KEYS lists key id {0:?} twice")]
    DuplicateId(String),
}

/// Why a sealed record could not be opened. Says nothing about the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("record is truncated or not in a known format")]
    Malformed,
    #[error("record is sealed with key id {0:?}, which TOKEN_ENCRYPTION_KEYS does not list")]
    UnknownKey(String),
    #[error("record failed authentication (tampered, wrong key, or bound to another install)")]
    Inauthentic,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The keys from `TOKEN_ENCRYPTION_KEYS`: the first seals, every one opens.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// A record opened by [`Keyring::open`].
#[derive(Debug)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// False when the record was sealed with an older key and should be re-sealed on next write.
    pub sealed_with_primary: bool,
}

impl Keyring {
    /// Parses `id:base64key,…`.
    pub fn parse(spec: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (id, b64) = entry
                .split_once(':')
                .ok_or(KeyringError::Malformed(i + 1))?;
            let id_ok = (1..=32).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !id_ok {
                return Err(KeyringError::BadId(id.to_owned()));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyringError::DuplicateId(id.to_owned()));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| KeyringError::BadKey(id.to_owned()))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| KeyringError::BadKey(id.to_owned()))?;
            keys.push(Key {
                id: id.to_owned(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// Seals `plaintext` for `install_id` at `generation` with the primary key.
    pub fn seal(&self, install_id: &str, generation: u64, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(install_id, &key.id, generation);
        // Encryption only fails for inputs larger than GCM's 64 GiB limit; a grant is < 4 KiB.
        #[allow(clippy::expect_used)]
        let ciphertext = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts inputs far below its size limit");
        let mut out = Vec::with_capacity(2 + key.id.len() + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.push(key.id.len() as u8);
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a record sealed for `install_id` at `generation`.
    pub fn open(
        &self,
        install_id: &str,
        generation: u64,
        record: &[u8],
    ) -> Result<Opened, OpenError> {
        let (&format, rest) = record.split_first().ok_or(OpenError::Malformed)?;
        if format != FORMAT_V1 {
            return Err(OpenError::Malformed);
        }
        let (&id_len, rest) = rest.split_first().ok_or(OpenError::Malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + 16 {
            return Err(OpenError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let id = std::str::from_utf8(id).map_err(|_| OpenError::Malformed)?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let (index, key) = self
            .keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Malformed)?;
        let aad = associated_data(install_id, id, generation);
        let plaintext = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Inauthentic)?;
        Ok(Opened {
            plaintext,
            sealed_with_primary: index == 0,
        })
    }
}

fn associated_data(install_id: &str, key_id: &str, generation: u64) -> Vec<u8> {
    format!("snykapps.grant.v1\0{install_id}\0{key_id}\0{generation}").into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn round_trip_and_ciphertext_hides_plaintext() {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring.seal("inst", 3, b"snyk_rt_secret");
        assert!(!sealed.windows(14).any(|w| w == b"snyk_rt_secret"));
        let opened = ring.open("inst", 3, &sealed).unwrap();
        assert_eq!(opened.plaintext, b"snyk_rt_secret");
        assert!(opened.sealed_with_primary);
    }

    #[test]
    fn nonces_are_random() {
        let ring = Keyring::parse(K1).unwrap();
        assert_ne!(ring.seal("i", 1, b"x"), ring.seal("i", 1, b"x"));
    }

    #[test]
    fn bound_to_install_and_generation() {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring.seal("a", 1, b"x");
        assert_eq!(
            ring.open("b", 1, &sealed).unwrap_err(),
            OpenError::Inauthentic
        );
        assert_eq!(
            ring.open("a", 2, &sealed).unwrap_err(),
            OpenError::Inauthentic
        );
    }

    #[test]
    fn tampering_is_detected_anywhere() {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring.seal("a", 1, b"payload");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                ring.open("a", 1, &bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        for len in 0..sealed.len() {
            assert!(ring.open("a", 1, &sealed[..len]).is_err());
        }
    }

    #[test]
    fn relabelled_key_id_fails() {
        // Same key material under two ids: the id is bound, so relabelling is caught.
        let same = "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let ring = Keyring::parse(&format!("{K1},{same}")).unwrap();
        let mut sealed = ring.seal("a", 1, b"x");
        sealed[3] = b'2'; // "k1" -> "k2"
        assert_eq!(
            ring.open("a", 1, &sealed).unwrap_err(),
            OpenError::Inauthentic
        );
    }

    #[test]
    fn rotation_old_key_still_opens_and_is_flagged() {
        let old = Keyring::parse(K1).unwrap();
        let sealed = old.seal("a", 1, b"x");
        let rotated = Keyring::parse(&format!("{K2},{K1}")).unwrap();
        let opened = rotated.open("a", 1, &sealed).unwrap();
        assert!(!opened.sealed_with_primary);
        let only_new = Keyring::parse(K2).unwrap();
        assert_eq!(
            only_new.open("a", 1, &sealed).unwrap_err(),
            OpenError::UnknownKey("k1".into())
        );
    }

    #[test]
    fn wrong_key_with_same_id_fails() {
        let sealed = Keyring::parse(K1).unwrap().seal("a", 1, b"x");
        let impostor = Keyring::parse("k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=").unwrap();
        assert_eq!(
            impostor.open("a", 1, &sealed).unwrap_err(),
            OpenError::Inauthentic
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(Keyring::parse("").unwrap_err(), KeyringError::Empty);
        assert_eq!(
            Keyring::parse("nocolon").unwrap_err(),
            KeyringError::Malformed(1)
        );
        assert_eq!(
            Keyring::parse("bad id:AAAA").unwrap_err(),
            KeyringError::BadId("bad id".into())
        );
        assert_eq!(
            Keyring::parse("k:AAAA").unwrap_err(),
            KeyringError::BadKey("k".into())
        );
        assert_eq!(
            Keyring::parse(&format!("{K1},{K1}")).unwrap_err(),
            KeyringError::DuplicateId("k1".into())
        );
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::parse(K1).unwrap();
        assert_eq!(format!("{ring:?}"), r#"Keyring { key_ids: ["k1"] }"#);
    }
}
