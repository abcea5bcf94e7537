//! The `page_token` of ListInstalls: where the next page starts. Opaque to callers (URL-safe
//! base64 of the last install id of the previous page), checked on the way in, so a forged or
//! garbled token is INVALID_ARGUMENT and never reaches Redis as a bare string.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::grant::InstallId;

/// A page that starts after this install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken(InstallId);

/// A `page_token` this service did not issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("page_token is not one this service issued")]
pub struct BadPageToken;

impl PageToken {
    /// The token of the page after the one that ended with `last`.
    pub fn after(last: InstallId) -> Self {
        PageToken(last)
    }

    /// The last install of the previous page.
    pub fn last(self) -> InstallId {
        self.0
    }

    /// A request's `page_token`: empty for the first page.
    pub fn decode(token: &str) -> Result<Option<Self>, BadPageToken> {
        if token.is_empty() {
            return Ok(None);
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| BadPageToken)?;
        let id = std::str::from_utf8(&raw).map_err(|_| BadPageToken)?;
        InstallId::parse(id)
            .map(|id| Some(PageToken(id)))
            .map_err(|_| BadPageToken)
    }

    /// The `next_page_token` to answer with.
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_round_trips() {
        for _ in 0..100 {
            let id = InstallId::new_random();
            let token = PageToken::after(id).encode();
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')),
                "URL-safe, unpadded: {token}"
            );
            let back = PageToken::decode(&token).unwrap().unwrap();
            assert_eq!(back.last(), id);
        }
    }

    #[test]
    fn an_empty_token_is_the_first_page() {
        assert_eq!(PageToken::decode(""), Ok(None));
    }

    #[test]
    fn garbage_is_refused() {
        let id = InstallId::new_random().to_string();
        let padded = URL_SAFE_NO_PAD.encode(&id) + "==";
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0xfb_u8; 40]);
        for bad in [
            "x".to_owned(),
            "!!!!".to_owned(),
            " ".to_owned(),
            // The id itself, not encoded.
            id.clone(),
            // Padding and the standard alphabet are not what this service issues.
            padded,
            standard,
            // Valid base64 of something that is not an install id.
            URL_SAFE_NO_PAD.encode("not-an-install-id"),
            URL_SAFE_NO_PAD.encode(id.to_uppercase() + "0"),
            // Valid base64 of bytes that are not UTF-8.
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0xfd]),
            "A".repeat(5000),
        ] {
            assert_eq!(PageToken::decode(&bad), Err(BadPageToken), "{bad:?}");
        }
        assert_eq!(
            BadPageToken.to_string(),
            "page_token is not one this service issued"
        );
    }
}
