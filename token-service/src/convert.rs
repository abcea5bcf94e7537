//! The domain as the wire sees it: a [`Grant`] becomes a `pb::Install` (no secret) or a
//! `pb::AccessToken` (the one place an access token leaves the secret wrapper).

use secrecy::ExposeSecret as _;
use snykapps_proto::token_v1 as pb;

use crate::{
    events::{EventKind, InstallEvent},
    grant::{Grant, Handout, Status, UnixMillis},
};

impl From<&Grant> for pb::Install {
    fn from(g: &Grant) -> Self {
        let (status, reason) = match g.status {
            Status::Active => (pb::InstallStatus::Active, ""),
            Status::NeedsReauth(r) => (pb::InstallStatus::NeedsReauth, r.as_str()),
        };
        pb::Install {
            install_id: g.install_id.to_string(),
            orgs: g
                .orgs
                .iter()
                .map(|o| pb::Org {
                    id: o.id.to_string(),
                    name: o.name.clone(),
                })
                .collect(),
            scope: g.scope.clone(),
            status: status as i32,
            created_at: Some(timestamp(g.created_at)),
            access_token_expires_at: Some(timestamp(g.access_expires_at)),
            bot_id: g.bot_id.clone(),
            needs_reauth_reason: reason.to_owned(),
        }
    }
}

impl From<&Handout> for pb::AccessToken {
    fn from(h: &Handout) -> Self {
        pb::AccessToken {
            access_token: h.access_token.expose_secret().to_owned(),
            token_type: h.token_type.clone(),
            expires_at: Some(timestamp(h.access_expires_at)),
            install_id: h.install_id.to_string(),
        }
    }
}

impl From<EventKind> for pb::InstallEventKind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Installed => pb::InstallEventKind::Installed,
            EventKind::Refreshed => pb::InstallEventKind::Refreshed,
            EventKind::Reauthorized => pb::InstallEventKind::Reauthorized,
            EventKind::NeedsReauth => pb::InstallEventKind::NeedsReauth,
            EventKind::InDoubt => pb::InstallEventKind::InDoubt,
            EventKind::Deleted => pb::InstallEventKind::Deleted,
            EventKind::KeepaliveFailed => pb::InstallEventKind::KeepaliveFailed,
        }
    }
}

/// An event as the wire sees it. Nothing in an event can hold a token.
impl From<&InstallEvent> for pb::InstallEvent {
    fn from(e: &InstallEvent) -> Self {
        pb::InstallEvent {
            event_id: e.id.to_string(),
            kind: pb::InstallEventKind::from(e.kind) as i32,
            install_id: e.install_id.to_string(),
            at: Some(timestamp(e.at)),
            reason: e.reason.clone().unwrap_or_default(),
            org_ids: e.orgs.iter().map(ToString::to_string).collect(),
            generation: e.generation,
        }
    }
}

fn timestamp(millis: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::grant::{InstallId, ReauthReason, tests::sample};

    #[test]
    fn an_install_carries_its_status_and_reason() {
        let id = InstallId::new_random();
        let active = pb::Install::from(&sample(id, 3600, 5_000));
        assert_eq!(active.install_id, id.to_string());
        assert_eq!(active.status, pb::InstallStatus::Active as i32);
        assert_eq!(active.needs_reauth_reason, "");
        assert_eq!(active.access_token_expires_at.map(|t| t.seconds), Some(5));

        let grant = Grant {
            status: Status::NeedsReauth(ReauthReason::RefreshInDoubt),
            ..sample(id, 3600, 5_000)
        };
        let install = pb::Install::from(&grant);
        assert_eq!(install.status, pb::InstallStatus::NeedsReauth as i32);
        assert_eq!(install.needs_reauth_reason, "refresh_in_doubt");
    }

    #[test]
    fn an_access_token_is_handed_out_in_clear() {
        let id = InstallId::new_random();
        let token = pb::AccessToken::from(&crate::grant::Handout::from(&sample(id, 3600, 5_000)));
        assert_eq!(token.access_token, "snyk_at_sample");
        assert_eq!(token.token_type, "bearer");
        assert_eq!(token.install_id, id.to_string());
        assert_eq!(token.expires_at.map(|t| t.seconds), Some(5));
    }

    #[test]
    fn an_event_carries_its_kind_reason_orgs_and_generation() {
        let install_id = InstallId::new_random();
        let org = crate::grant::OrgId::parse("0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11").unwrap();
        let e = InstallEvent {
            id: crate::events::EventId { ms: 7, seq: 2 },
            kind: EventKind::InDoubt,
            install_id,
            at: 1_700_000_000_123,
            reason: Some("refresh_in_doubt".into()),
            orgs: vec![org],
            generation: 9,
        };
        let wire = pb::InstallEvent::from(&e);
        assert_eq!(wire.event_id, "7-2");
        assert_eq!(wire.kind, pb::InstallEventKind::InDoubt as i32);
        assert_eq!(wire.install_id, install_id.to_string());
        assert_eq!(wire.reason, "refresh_in_doubt");
        assert_eq!(wire.org_ids, vec![org.to_string()]);
        assert_eq!(wire.generation, 9);
        assert_eq!(
            wire.at.map(|t| (t.seconds, t.nanos)),
            Some((1_700_000_000, 123_000_000))
        );
    }

    #[test]
    fn timestamps_keep_milliseconds_and_normalize_before_the_epoch() {
        let t = timestamp(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
        // prost's Timestamp wants 0 <= nanos < 1e9, also before 1970.
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
    }
}
