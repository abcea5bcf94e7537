//! Lifecycle events of installs: what changed, as values. They live in the Redis Stream
//! `snykapps:events`, appended by the very Lua script that makes the change (`store/event.lua`,
//! written and read by `store::events`), and `watch` follows them for `WatchInstallEvents`
//! (docs/design.md, "Events"). Nothing here talks to Redis.

use std::{fmt, str::FromStr};

use crate::grant::{InstallId, OrgId, ReauthReason, UnixMillis};

/// `TOKEN_EVENTS_MAXLEN`'s default: the stream is trimmed to about this many events.
pub const DEFAULT_MAXLEN: u64 = 100_000;

/// What happened to an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Installed,
    Refreshed,
    Reauthorized,
    NeedsReauth,
    InDoubt,
    Deleted,
    KeepaliveFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Installed,
        EventKind::Refreshed,
        EventKind::Reauthorized,
        EventKind::NeedsReauth,
        EventKind::InDoubt,
        EventKind::Deleted,
        EventKind::KeepaliveFailed,
    ];

    /// The name stored in the stream's `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Installed => "installed",
            EventKind::Refreshed => "refreshed",
            EventKind::Reauthorized => "reauthorized",
            EventKind::NeedsReauth => "needs_reauth",
            EventKind::InDoubt => "in_doubt",
            EventKind::Deleted => "deleted",
            EventKind::KeepaliveFailed => "keepalive_failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The event of a NEEDS_REAUTH verdict: `in_doubt` when a refresh was sent and its outcome
    /// never stored (`refresh_in_doubt`), else `needs_reauth`.
    pub fn of_verdict(reason: ReauthReason) -> EventKind {
        match reason {
            ReauthReason::RefreshInDoubt => EventKind::InDoubt,
            ReauthReason::RefreshTokenRejected => EventKind::NeedsReauth,
        }
    }
}

/// The event a write appends, as the writer knows it (the script adds `at` and the generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: EventKind,
    /// Why (NEEDS_REAUTH, IN_DOUBT, KEEPALIVE_FAILED); never a token or an upstream message.
    pub reason: Option<&'static str>,
    /// The install's orgs after the change (INSTALLED, REAUTHORIZED).
    pub orgs: Vec<OrgId>,
}

impl NewEvent {
    pub fn plain(kind: EventKind) -> NewEvent {
        NewEvent {
            kind,
            reason: None,
            orgs: Vec::new(),
        }
    }

    pub fn because(kind: EventKind, reason: &'static str) -> NewEvent {
        NewEvent {
            kind,
            reason: Some(reason),
            orgs: Vec::new(),
        }
    }

    /// The event of a NEEDS_REAUTH verdict for `reason` (its kind and its reason).
    pub fn verdict(reason: ReauthReason) -> NewEvent {
        NewEvent::because(EventKind::of_verdict(reason), reason.as_str())
    }

    pub fn with_orgs(kind: EventKind, orgs: impl IntoIterator<Item = OrgId>) -> NewEvent {
        NewEvent {
            kind,
            reason: None,
            orgs: orgs.into_iter().collect(),
        }
    }
}

/// A Redis Stream entry id, `<ms>-<seq>`: the events' order and a watcher's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not an event id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("after_event_id must be \"\", \"0\" or an event id \"<ms>-<seq>\" received before")]
pub struct BadEventId;

impl FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(BadEventId)?;
        let number = |p: &str| {
            if p.is_empty() || p.len() > 20 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadEventId);
            }
            p.parse::<u64>().map_err(|_| BadEventId)
        };
        Ok(EventId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

/// Where a watcher starts (`WatchInstallEventsRequest.after_event_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// "": only events appended from now on.
    Now,
    /// "0": every retained event.
    Beginning,
    /// The events strictly after this one.
    After(EventId),
}

impl Start {
    pub fn parse(s: &str) -> Result<Start, BadEventId> {
        match s {
            "" => Ok(Start::Now),
            "0" => Ok(Start::Beginning),
            s => s.parse().map(Start::After),
        }
    }

    /// As `after_event_id` takes it: the inverse of [`Start::parse`].
    pub fn to_request(self) -> String {
        match self {
            Start::Now => String::new(),
            Start::Beginning => "0".to_owned(),
            Start::After(id) => id.to_string(),
        }
    }
}

/// One stored event. Holds no token: the stream never has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallEvent {
    pub id: EventId,
    pub kind: EventKind,
    pub install_id: InstallId,
    pub at: UnixMillis,
    pub reason: Option<String>,
    pub orgs: Vec<OrgId>,
    pub generation: u64,
}

impl InstallEvent {
    /// An entry's fields as the scripts write them (`store/event.lua`); `None` when they are
    /// not an event this version understands.
    pub fn from_fields(id: EventId, fields: &[(String, String)]) -> Option<InstallEvent> {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        Some(InstallEvent {
            id,
            kind: EventKind::parse(get("kind")?)?,
            install_id: InstallId::parse(get("install_id")?).ok()?,
            at: get("at")?.parse().ok()?,
            reason: get("reason").map(str::to_owned),
            orgs: match get("orgs") {
                Some(list) => list
                    .split(',')
                    .map(OrgId::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
                None => Vec::new(),
            },
            generation: get("gen")?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn event_ids_parse_order_and_print() {
        let a: EventId = "1700000000000-0".parse().unwrap();
        let b: EventId = "1700000000000-12".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1700000000000-12");
        for bad in [
            "",
            "0",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "1-2-3",
            " 1-2",
            "1-+2",
            "99999999999999999999999-0",
        ] {
            assert_eq!(bad.parse::<EventId>(), Err(BadEventId), "{bad:?}");
        }
    }

    #[test]
    fn starts_parse() {
        assert_eq!(Start::parse(""), Ok(Start::Now));
        assert_eq!(Start::parse("0"), Ok(Start::Beginning));
        assert_eq!(
            Start::parse("5-1"),
            Ok(Start::After(EventId { ms: 5, seq: 1 }))
        );
        assert_eq!(Start::parse("latest"), Err(BadEventId));
    }

    #[test]
    fn kinds_round_trip_and_verdicts_map() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("exploded"), None);
        assert_eq!(
            EventKind::of_verdict(ReauthReason::RefreshInDoubt),
            EventKind::InDoubt
        );
        assert_eq!(
            EventKind::of_verdict(ReauthReason::RefreshTokenRejected),
            EventKind::NeedsReauth
        );
    }

    #[test]
    fn stored_fields_become_an_event() {
        let id = InstallId::new_random();
        let org = "0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11";
        let f = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let fields = vec![
            f("kind", "installed"),
            f("install_id", &id.to_string()),
            f("at", "1700000000123"),
            f("gen", "1"),
            f("orgs", org),
        ];
        let e = InstallEvent::from_fields(EventId { ms: 1, seq: 0 }, &fields).unwrap();
        assert_eq!(e.kind, EventKind::Installed);
        assert_eq!(e.install_id, id);
        assert_eq!(e.orgs, vec![OrgId::parse(org).unwrap()]);
        assert_eq!((e.at, e.generation, e.reason), (1_700_000_000_123, 1, None));
        let unknown = vec![f("kind", "exploded"), f("install_id", &id.to_string())];
        assert_eq!(InstallEvent::from_fields(EventId::ZERO, &unknown), None);
    }
}
