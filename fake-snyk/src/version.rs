//! REST API versions: parsing the `version` query parameter and choosing the release to serve,
//! as Snyk does: the newest release of the endpoint on or before the requested date whose
//! stability is at least the requested one.

use time::{Date, Month};

/// Release stability, ordered from least to most stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stability {
    Wip,
    Experimental,
    Beta,
    Ga,
}

impl Stability {
    /// The `snyk-version-lifecycle-stage` header value.
    pub(crate) fn stage(self) -> &'static str {
        match self {
            Self::Wip => "wip",
            Self::Experimental => "experimental",
            Self::Beta => "beta",
            Self::Ga => "ga",
        }
    }
}

/// A parsed `version` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requested {
    date: Date,
    stability: Stability,
}

/// The release chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Served {
    pub(crate) label: &'static str,
    pub(crate) stability: Stability,
}

/// Releases per endpoint, copied from rest.json's `x-snyk-api-releases` (a unit test checks that
/// they still match the document).
pub(crate) const ORGS_RELEASES: &[&str] = &[
    "2022-04-06~experimental",
    "2022-12-15~beta",
    "2023-05-29",
    "2024-02-28",
];
pub(crate) const PROJECTS_RELEASES: &[&str] = &[
    "2021-06-04~beta",
    "2022-08-12~experimental",
    "2022-12-21~experimental",
    "2023-02-15",
    "2023-08-28",
    "2023-09-11",
    "2023-11-06",
    "2024-05-31",
];
pub(crate) const SELF_RELEASES: &[&str] = &[
    "2022-03-01~experimental",
    "2022-09-14~experimental",
    "2024-04-22",
];

/// Why a `version` parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VersionError {
    #[error("version is required (YYYY-MM-DD, optionally ~beta or ~experimental)")]
    Missing,
    #[error(
        "version {0:?} is not a date of the form YYYY-MM-DD with an optional ~beta or ~experimental"
    )]
    Malformed(String),
    #[error("version {0:?} is in the future")]
    Future(String),
    #[error("no release of this endpoint matches version {0:?}")]
    NotReleased(String),
}

fn parse_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let year: i32 = text[0..4].parse().ok()?;
    let month: u8 = text[5..7].parse().ok()?;
    let day: u8 = text[8..10].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// Parses `YYYY-MM-DD[~stability]`. A bare stability without a date (which rest.json's
/// `QueryVersion` pattern also allows) is refused, as docs/snyk-api.md asks for a date.
pub(crate) fn parse(raw: Option<&str>, today: Date) -> Result<Requested, VersionError> {
    let raw = raw.ok_or(VersionError::Missing)?;
    let malformed = || VersionError::Malformed(raw.to_owned());
    let (date, stability) = match raw.split_once('~') {
        None => (raw, Stability::Ga),
        Some((date, "beta")) => (date, Stability::Beta),
        Some((date, "experimental")) => (date, Stability::Experimental),
        Some((date, "wip" | "work-in-progress")) => (date, Stability::Wip),
        Some(_) => return Err(malformed()),
    };
    let date = parse_date(date).ok_or_else(malformed)?;
    if date > today {
        return Err(VersionError::Future(raw.to_owned()));
    }
    Ok(Requested { date, stability })
}

fn parse_release(label: &'static str) -> Option<(Date, Stability)> {
    let (date, stability) = match label.split_once('~') {
        None => (label, Stability::Ga),
        Some((date, "beta")) => (date, Stability::Beta),
        Some((date, "experimental")) => (date, Stability::Experimental),
        Some((date, _)) => (date, Stability::Wip),
    };
    Some((parse_date(date)?, stability))
}

/// The newest release on or before the requested date that is at least as stable as asked.
pub(crate) fn resolve(
    releases: &'static [&'static str],
    requested: &Requested,
    raw: &str,
) -> Result<Served, VersionError> {
    releases
        .iter()
        .filter_map(|label| parse_release(label).map(|(d, s)| (label, d, s)))
        .filter(|(_, date, stability)| *date <= requested.date && *stability >= requested.stability)
        .max_by_key(|(_, date, stability)| (*date, *stability))
        .map(|(label, _, stability)| Served { label, stability })
        .ok_or_else(|| VersionError::NotReleased(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2025 - 06 - 01);

    fn serve(releases: &'static [&'static str], raw: &str) -> Result<&'static str, VersionError> {
        let requested = parse(Some(raw), TODAY)?;
        resolve(releases, &requested, raw).map(|s| s.label)
    }

    #[test]
    fn newest_release_on_or_before_the_date_is_served() {
        assert_eq!(serve(PROJECTS_RELEASES, "2024-05-31"), Ok("2024-05-31"));
        assert_eq!(serve(PROJECTS_RELEASES, "2025-01-01"), Ok("2024-05-31"));
        assert_eq!(serve(PROJECTS_RELEASES, "2023-09-10"), Ok("2023-08-28"));
        assert_eq!(serve(ORGS_RELEASES, "2024-05-31"), Ok("2024-02-28"));
    }

    #[test]
    fn stability_suffix_widens_the_choice() {
        assert_eq!(
            serve(PROJECTS_RELEASES, "2022-12-31"),
            Err(VersionError::NotReleased("2022-12-31".into()))
        );
        assert_eq!(
            serve(PROJECTS_RELEASES, "2022-12-31~beta"),
            Ok("2021-06-04~beta")
        );
        assert_eq!(
            serve(PROJECTS_RELEASES, "2022-12-31~experimental"),
            Ok("2022-12-21~experimental")
        );
        assert_eq!(
            serve(SELF_RELEASES, "2024-04-21"),
            Err(VersionError::NotReleased("2024-04-21".into()))
        );
    }

    #[test]
    fn malformed_and_future_versions_are_refused() {
        for raw in [
            "2024-5-31",
            "2024-02-30",
            "beta",
            "2024-05-31~gamma",
            "2024-05-31~",
            "20240531",
            "2024-05-31 ",
        ] {
            assert_eq!(
                parse(Some(raw), TODAY),
                Err(VersionError::Malformed(raw.into())),
                "{raw}"
            );
        }
        assert_eq!(parse(None, TODAY), Err(VersionError::Missing));
        assert_eq!(
            parse(Some("2025-06-02"), TODAY),
            Err(VersionError::Future("2025-06-02".into()))
        );
    }

    #[test]
    fn release_tables_match_rest_json() {
        let path = std::env::var("SNYK_OPENAPI_PATH").unwrap_or_else(|_| {
            format!(
                "{}/../docs/snyk-openapi/rest.json",
                env!("CARGO_MANIFEST_DIR")
            )
        });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read Snyk's OpenAPI document at {path}: {e}"));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (path, table) in [
            ("/orgs", ORGS_RELEASES),
            ("/orgs/{org_id}/projects", PROJECTS_RELEASES),
            ("/self", SELF_RELEASES),
        ] {
            let releases: Vec<&str> = doc["paths"][path]["get"]["x-snyk-api-releases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(releases, table, "{path}");
            for label in table {
                assert!(parse_release(label).is_some(), "{label}");
            }
        }
    }
}
