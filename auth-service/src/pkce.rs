//! PKCE (RFC 7636) with the S256 method, the only one Snyk accepts: a random verifier that stays
//! on our side, and the challenge sent to Snyk's consent page.

use base64::Engine as _;
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Characters in a verifier: 48 random bytes in base64url, 384 bits, inside RFC 7636's 43-128.
pub const VERIFIER_LEN: usize = 64;

/// A fresh code verifier: 64 characters of `[A-Za-z0-9_-]`. Secret until Snyk has redeemed the
/// code, so it is only ever held as a [`SecretString`].
pub fn new_verifier() -> SecretString {
    let bytes: [u8; 48] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

/// `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`, without padding.
pub fn challenge(verifier: &SecretString) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            challenge(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_long_random_and_unreserved() {
        let a = new_verifier();
        let b = new_verifier();
        assert_ne!(a.expose_secret(), b.expose_secret());
        for v in [&a, &b] {
            let v = v.expose_secret();
            assert_eq!(v.len(), VERIFIER_LEN);
            assert!(
                v.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{v}"
            );
        }
        let c = challenge(&a);
        assert_eq!(c.len(), 43, "a SHA-256 digest is 43 base64url characters");
        assert!(!c.contains('='));
    }
}
