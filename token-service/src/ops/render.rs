//! What the operator tools print: for a person, an aligned table (`installs list`), a block
//! (`installs show`) and one line per event (`events tail`); for a script, JSON with the same
//! fields under stable snake_case names. Installs and events carry no token or secret (the
//! proto has none), so nothing here can print one.
//!
//! Text for a person goes to a terminal, and much of it was chosen by someone else: an org's
//! name by whoever created the org at Snyk, a reason or a status message by whatever answers at
//! `--url`. Every such field passes through [`for_terminal`] first, so none can move the cursor,
//! recolour, retitle or clear the screen, forge a line, or reorder what follows it. JSON needs no
//! such care (its encoder escapes control characters), and stays byte for byte what was received.

use std::{borrow::Cow, fmt::Write as _, time::SystemTime};

use prost_types::Timestamp;
use serde::Serialize;
use snykapps_proto::token_v1::{self as pb, InstallEventKind, InstallStatus};

use crate::events::EventKind;

/// `text` safe to print on a terminal: every control character (C0 with tab and newline, DEL,
/// C1 with its one-byte CSI) and every bidirectional formatting character (which would reorder
/// the rest of the line on screen) is written as a Rust escape (`\u{1b}`, `\n`, `\u{202e}`),
/// so an operator sees that it is there and what it is; other text is unchanged. A backslash is
/// left alone: telling a real `\u{1b}` apart from an escaped one would cost every Windows-ish
/// name a doubled backslash, and a look-alike is no danger to the terminal.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Arabic letter mark; left-to-right and right-to-left marks; the embeddings and
            // overrides; the isolates; line and paragraph separators (a line break to some
            // terminals).
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// An install's status as the tools name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    NeedsReauth,
    /// A status this tool does not know (a newer token-service, or none set).
    Unknown,
}

impl State {
    pub fn of(install: &pb::Install) -> State {
        match InstallStatus::try_from(install.status) {
            Ok(InstallStatus::Active) => State::Active,
            Ok(InstallStatus::NeedsReauth) => State::NeedsReauth,
            _ => State::Unknown,
        }
    }

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::NeedsReauth => "needs_reauth",
            State::Unknown => "unknown",
        }
    }
}

/// One install, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct InstallView<'a> {
    pub install_id: &'a str,
    pub status: &'static str,
    /// Why it needs re-authorization; null while active.
    pub needs_reauth_reason: Option<&'a str>,
    pub orgs: Vec<OrgView<'a>>,
    pub scope: &'a str,
    pub bot_id: &'a str,
    /// RFC 3339, UTC.
    pub created_at: Option<String>,
    pub access_token_expires_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OrgView<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

impl<'a> From<&'a pb::Install> for InstallView<'a> {
    fn from(i: &'a pb::Install) -> Self {
        InstallView {
            install_id: &i.install_id,
            status: State::of(i).name(),
            needs_reauth_reason: Some(i.needs_reauth_reason.as_str()).filter(|r| !r.is_empty()),
            orgs: i
                .orgs
                .iter()
                .map(|o| OrgView {
                    id: &o.id,
                    name: &o.name,
                })
                .collect(),
            scope: &i.scope,
            bot_id: &i.bot_id,
            created_at: i.created_at.as_ref().map(rfc3339),
            access_token_expires_at: i.access_token_expires_at.as_ref().map(rfc3339),
        }
    }
}

/// One event, as `events tail --json` prints it (one object per line).
#[derive(Debug, Serialize)]
pub struct EventView<'a> {
    pub event_id: &'a str,
    pub kind: &'static str,
    pub install_id: &'a str,
    pub at: Option<String>,
    /// needs_reauth, in_doubt, keepalive_failed: why; null otherwise.
    pub reason: Option<&'a str>,
    /// installed, reauthorized: the install's orgs after the change.
    pub org_ids: &'a [String],
    pub generation: u64,
}

impl<'a> From<&'a pb::InstallEvent> for EventView<'a> {
    fn from(e: &'a pb::InstallEvent) -> Self {
        EventView {
            event_id: &e.event_id,
            kind: kind_name(e.kind),
            install_id: &e.install_id,
            at: e.at.as_ref().map(rfc3339),
            reason: Some(e.reason.as_str()).filter(|r| !r.is_empty()),
            org_ids: &e.org_ids,
            generation: e.generation,
        }
    }
}

/// The event kind's name, as the event stream spells it (`EventKind::as_str`); "unknown" for a
/// kind this version does not know.
pub fn kind_name(kind: i32) -> &'static str {
    EventKind::ALL
        .into_iter()
        .find(|k| InstallEventKind::from(*k) as i32 == kind)
        .map_or("unknown", EventKind::as_str)
}

/// `2026-12-01T10:35:22Z`: whole seconds, UTC.
pub fn rfc3339(t: &Timestamp) -> String {
    Timestamp {
        seconds: t.seconds,
        nanos: 0,
    }
    .to_string()
}

/// The status for a person: `active`, or `needs-reauth: <reason>`.
fn status_text(i: &pb::Install) -> String {
    match (State::of(i), i.needs_reauth_reason.as_str()) {
        (State::Active, _) => "active".into(),
        (State::NeedsReauth, "") => "needs-reauth".into(),
        (State::NeedsReauth, reason) => format!("needs-reauth: {}", for_terminal(reason)),
        (State::Unknown, _) => format!("unknown ({})", i.status),
    }
}

/// The orgs for a person: their names (the id where a name is missing).
fn org_names(i: &pb::Install) -> String {
    if i.orgs.is_empty() {
        return "-".into();
    }
    i.orgs
        .iter()
        .map(|o| for_terminal(if o.name.is_empty() { &o.id } else { &o.name }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The orgs with their ids: `Acme (0f…), Beta (1a…)`.
pub fn orgs_with_ids(i: &pb::Install) -> String {
    if i.orgs.is_empty() {
        return "none".into();
    }
    i.orgs
        .iter()
        .map(|o| format!("{} ({})", for_terminal(&o.name), for_terminal(&o.id)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An expiry for a person: `2026-12-01T11:35:22Z (in 59 min)` or `… (expired 3 min ago)`.
fn expiry(t: Option<&Timestamp>, now: SystemTime) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let left = t.seconds - now;
    if left >= 0 {
        format!("{} (in {})", rfc3339(t), span(left.unsigned_abs()))
    } else {
        format!("{} (expired {} ago)", rfc3339(t), span(left.unsigned_abs()))
    }
}

/// A duration in its largest sensible unit.
fn span(secs: u64) -> String {
    match secs {
        0..90 => format!("{secs} s"),
        90..5400 => format!("{} min", secs / 60),
        5400..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// `installs list`: a header and one aligned row per install.
pub fn table(installs: &[pb::Install], now: SystemTime) -> String {
    const HEADER: [&str; 5] = [
        "INSTALL",
        "STATUS",
        "ORGS",
        "CREATED",
        "ACCESS TOKEN EXPIRES",
    ];
    let rows: Vec<[String; 5]> = installs
        .iter()
        .map(|i| {
            [
                for_terminal(&i.install_id).into_owned(),
                status_text(i),
                org_names(i),
                i.created_at.as_ref().map_or_else(|| "-".into(), rfc3339),
                expiry(i.access_token_expires_at.as_ref(), now),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (k, (cell, w)) in row.iter().zip(widths).enumerate() {
            if k + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `installs show`: one labelled line per field.
pub fn block(i: &pb::Install, now: SystemTime) -> String {
    let status = match State::of(i) {
        State::NeedsReauth => format!(
            "needs re-authorization ({})",
            if i.needs_reauth_reason.is_empty() {
                "no reason given".into()
            } else {
                for_terminal(&i.needs_reauth_reason)
            }
        ),
        _ => status_text(i),
    };
    let fields = [
        ("Install", for_terminal(&i.install_id).into_owned()),
        ("Status", status),
        ("Orgs", orgs_with_ids(i)),
        ("Scope", or_dash(&i.scope)),
        ("Bot", or_dash(&i.bot_id)),
        (
            "Created",
            i.created_at.as_ref().map_or_else(|| "-".into(), rfc3339),
        ),
        (
            "Access token",
            format!(
                "expires {}",
                expiry(i.access_token_expires_at.as_ref(), now)
            ),
        ),
    ];
    fields
        .iter()
        .map(|(label, value)| format!("{label:<14}{value}\n"))
        .collect()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        for_terminal(s).into_owned()
    }
}

/// `events tail`: one line per event.
pub fn event_line(e: &pb::InstallEvent) -> String {
    let mut line = format!(
        "{}  {}  {:<16}  install {}  generation {}",
        for_terminal(&e.event_id),
        e.at.as_ref().map_or_else(|| "-".into(), rfc3339),
        kind_name(e.kind),
        for_terminal(&e.install_id),
        e.generation
    );
    if !e.reason.is_empty() {
        let _ = write!(line, "  reason {}", for_terminal(&e.reason));
    }
    if !e.org_ids.is_empty() {
        let orgs: Vec<_> = e.org_ids.iter().map(|o| for_terminal(o)).collect();
        let _ = write!(line, "  orgs {}", orgs.join(","));
    }
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn install(
        id: &str,
        status: InstallStatus,
        reason: &str,
        orgs: &[(&str, &str)],
    ) -> pb::Install {
        pb::Install {
            install_id: id.into(),
            orgs: orgs
                .iter()
                .map(|(id, name)| pb::Org {
                    id: (*id).into(),
                    name: (*name).into(),
                })
                .collect(),
            scope: "org.read".into(),
            status: status as i32,
            created_at: at(1_700_000_000),
            access_token_expires_at: at(1_700_003_600),
            bot_id: "bot-1".into(),
            needs_reauth_reason: reason.into(),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_060)
    }

    #[test]
    fn the_table_is_aligned_and_says_status_reason_orgs_and_expiry() {
        let installs = [
            install(
                "123e4567-e89b-12d3-a456-426614174000",
                InstallStatus::Active,
                "",
                &[("o1", "Acme"), ("o2", "")],
            ),
            install(
                "223e4567-e89b-12d3-a456-426614174000",
                InstallStatus::NeedsReauth,
                "refresh_token_rejected",
                &[("o3", "Beta")],
            ),
        ];
        let table = table(&installs, now());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[1],
            "123e4567-e89b-12d3-a456-426614174000  active                                Acme, o2  2023-11-14T22:13:20Z  2023-11-14T23:13:20Z (in 59 min)"
        );
        assert_eq!(
            lines[2],
            "223e4567-e89b-12d3-a456-426614174000  needs-reauth: refresh_token_rejected  Beta      2023-11-14T22:13:20Z  2023-11-14T23:13:20Z (in 59 min)"
        );
        // Every column starts where its header does.
        for column in ["STATUS", "ORGS", "CREATED", "ACCESS TOKEN EXPIRES"] {
            let start = lines[0].find(column).unwrap();
            for row in &lines[1..] {
                assert_eq!(&row[start - 2..start], "  ", "{column}: {table}");
                assert_ne!(&row[start..=start], " ", "{column}: {table}");
            }
        }
    }

    #[test]
    fn json_names_are_stable_and_empty_values_are_null() {
        let active = install("i1", InstallStatus::Active, "", &[("o1", "Acme")]);
        let v = serde_json::to_value(InstallView::from(&active)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "install_id": "i1",
                "status": "active",
                "needs_reauth_reason": null,
                "orgs": [{"id": "o1", "name": "Acme"}],
                "scope": "org.read",
                "bot_id": "bot-1",
                "created_at": "2023-11-14T22:13:20Z",
                "access_token_expires_at": "2023-11-14T23:13:20Z",
            })
        );
        let event = pb::InstallEvent {
            event_id: "1700000000000-0".into(),
            kind: InstallEventKind::NeedsReauth as i32,
            install_id: "i1".into(),
            at: at(1_700_000_000),
            reason: "refresh_token_rejected".into(),
            org_ids: vec![],
            generation: 4,
        };
        assert_eq!(
            serde_json::to_value(EventView::from(&event)).unwrap(),
            serde_json::json!({
                "event_id": "1700000000000-0",
                "kind": "needs_reauth",
                "install_id": "i1",
                "at": "2023-11-14T22:13:20Z",
                "reason": "refresh_token_rejected",
                "org_ids": [],
                "generation": 4,
            })
        );
        assert_eq!(
            event_line(&event),
            "1700000000000-0  2023-11-14T22:13:20Z  needs_reauth      install i1  generation 4  reason refresh_token_rejected"
        );
    }

    #[test]
    fn control_and_bidi_characters_are_escaped_for_the_terminal() {
        for (raw, shown) in [
            ("\u{1b}[31mRed\u{1b}[0m", "\\u{1b}[31mRed\\u{1b}[0m"),
            ("\u{1b}]0;pwned\u{7}", "\\u{1b}]0;pwned\\u{7}"),
            ("a\nb\tc\rd\0", "a\\nb\\tc\\rd\\u{0}"),
            (
                "del\u{7f} csi\u{9b}2J nel\u{85}",
                "del\\u{7f} csi\\u{9b}2J nel\\u{85}",
            ),
            (
                "\u{202e}gpj.exe\u{2066}x\u{2069}\u{200f}",
                "\\u{202e}gpj.exe\\u{2066}x\\u{2069}\\u{200f}",
            ),
            ("line\u{2028}sep", "line\\u{2028}sep"),
        ] {
            assert_eq!(for_terminal(raw), shown, "{raw:?}");
        }
        for plain in ["Acme", "Zürich Ünïcode ✓ 日本", "back\\slash", ""] {
            assert!(
                matches!(for_terminal(plain), Cow::Borrowed(p) if p == plain),
                "{plain:?}"
            );
        }
    }

    #[test]
    fn every_field_from_outside_is_escaped_but_json_is_as_received() {
        let evil = "Evil\u{1b}[2J\u{1b}]0;title\u{7}\nforged line\u{202e}";
        let mut i = install(evil, InstallStatus::NeedsReauth, evil, &[(evil, evil)]);
        i.scope = evil.into();
        i.bot_id = evil.into();
        let event = pb::InstallEvent {
            event_id: evil.into(),
            kind: InstallEventKind::NeedsReauth as i32,
            install_id: evil.into(),
            at: at(1_700_000_000),
            reason: evil.into(),
            org_ids: vec![evil.into()],
            generation: 1,
        };
        let escaped = for_terminal(evil).into_owned();
        for (what, text, fields) in [
            ("table", table(std::slice::from_ref(&i), now()), 3),
            ("block", block(&i, now()), 6),
            ("orgs", orgs_with_ids(&i), 2),
            ("event", event_line(&event), 4),
        ] {
            assert!(
                !text.chars().any(|c| needs_escape(c) && c != '\n'),
                "{what}: {text:?}"
            );
            assert_eq!(text.matches(&escaped).count(), fields, "{what}: {text}");
            assert_eq!(
                text.lines().count(),
                text.matches('\n').count().max(1),
                "{what}: no forged line: {text:?}"
            );
        }
        let json = serde_json::to_value(InstallView::from(&i)).unwrap();
        assert_eq!(json["orgs"][0]["name"], evil);
        assert_eq!(json["needs_reauth_reason"], evil);
        let json = serde_json::to_value(EventView::from(&event)).unwrap();
        assert_eq!(json["reason"], evil);
    }

    #[test]
    fn the_block_names_every_field() {
        let i = install(
            "i1",
            InstallStatus::NeedsReauth,
            "refresh_in_doubt",
            &[("o1", "Acme")],
        );
        let block = block(&i, now());
        for expected in [
            "Install       i1\n",
            "Status        needs re-authorization (refresh_in_doubt)\n",
            "Orgs          Acme (o1)\n",
            "Access token  expires 2023-11-14T23:13:20Z (in 59 min)\n",
        ] {
            assert!(block.contains(expected), "{expected:?} in\n{block}");
        }
        let expired = expiry(at(1_700_000_000).as_ref(), now());
        assert_eq!(expired, "2023-11-14T22:13:20Z (expired 60 s ago)");
    }
}
