//! The ids that cross service boundaries, parsed once into types: an install (one completed
//! OAuth install of the app, one grant) and a Snyk org. Every service takes them from here, so no
//! id travels between crates as a bare `String`, and each has one spelling (the canonical
//! hyphenated UUID) and so one Redis key and one URL.
//!
//! Reading order (one file): [`BadId`] (the error: which field was not a UUID) → the macro that
//! gives [`InstallId`] and [`OrgId`] the same `parse`, `Display` and `Debug` →
//! [`InstallId::new_random`] (a new install's id) → the tests.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an id could not be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field} must be a UUID like 123e4567-e89b-12d3-a456-426614174000")]
pub struct BadId {
    pub field: &'static str,
}

macro_rules! uuid_id {
    ($name:ident, $field:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Accepts only the canonical hyphenated form, so one id has one spelling (and one key).
            pub fn parse(s: &str) -> Result<Self, BadId> {
                if s.len() != 36 {
                    return Err(BadId { field: $field });
                }
                Uuid::try_parse(s)
                    .map(Self)
                    .map_err(|_| BadId { field: $field })
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

uuid_id!(
    InstallId,
    "install_id",
    "One completed install of the app: one grant."
);
uuid_id!(OrgId, "org_id", "A Snyk organization id.");

impl InstallId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_accept_only_canonical_uuids() {
        assert!(InstallId::parse("123e4567-e89b-12d3-a456-426614174000").is_ok());
        for bad in [
            "",
            "x",
            "123e4567e89b12d3a456426614174000",
            "{123e4567-e89b-12d3-a456-426614174000}",
            &"a".repeat(5000),
        ] {
            assert_eq!(
                InstallId::parse(bad).unwrap_err(),
                BadId {
                    field: "install_id"
                }
            );
        }
        assert_eq!(
            OrgId::parse("nope").unwrap_err().to_string(),
            "org_id must be a UUID like 123e4567-e89b-12d3-a456-426614174000"
        );
    }

    #[test]
    fn any_case_parses_to_one_spelling() {
        let upper = InstallId::parse("123E4567-E89B-12D3-A456-426614174000").unwrap();
        assert_eq!(upper.to_string(), "123e4567-e89b-12d3-a456-426614174000");
    }
}
