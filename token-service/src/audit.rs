//! The audit trail, at tracing target `audit`: which caller took which install's token, and every
//! install read or change (docs/design.md, "The audit trail").
//!
//! Install reads and changes, event watches and refused calls are written at once, one line
//! each ([`write`], and `caller::Refusal` for calls refused before the service). Token
//! hand-outs (`GetAccessToken`, `ForceRefresh`) are the hot path: at tens of thousands a second
//! a line each costs throughput (measured in docs/design.md) and floods the log pipeline. So a
//! hand-out is written at once only when it is the first of its kind ([`Key`]: caller, RPC,
//! install, org asked by, outcome) since the kind's last line; after that, hand-outs of that kind
//! are counted, and every `TOKEN_AUDIT_INTERVAL_SECONDS` one line per kind gives the count and the
//! first and last time. A kind with no hand-out for a whole interval is forgotten, so its next
//! hand-out is written at once again and memory holds only the kinds of the last interval.
//!
//! Counting takes no lock and allocates nothing once a kind is known: the kinds live in a
//! lock-free map (papaya) and each kind's counters are atomics. At shutdown the pending counts
//! are written ([`AuditTrail::flush`]). With the interval set to 0, every hand-out is written
//! at once, as a line of its own.

use std::{
    hash::{Hash, Hasher},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use papaya::Equivalent;
use tokio_util::sync::CancellationToken;

use crate::{
    caller::{AuthenticatedCaller, Rpc},
    grant::{InstallId, OrgId, UnixMillis, now_millis},
};

/// `TOKEN_AUDIT_INTERVAL_SECONDS` by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How an audited call ended: `ok`, or the gRPC code's name (`PermissionDenied`), formatted only
/// when a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome(pub Result<(), tonic::Code>);

impl Outcome {
    pub const OK: Outcome = Outcome(Ok(()));

    /// The outcome of a call that answered `result`.
    pub fn of<T>(result: &Result<T, tonic::Status>) -> Outcome {
        Outcome(result.as_ref().map(drop).map_err(tonic::Status::code))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Ok(()) => f.write_str("ok"),
            Err(code) => write!(f, "{code:?}"),
        }
    }
}

/// What an audit line is about: who, which RPC, which install (and org, when asked by org), and
/// how it ended. Never a token: nothing here can hold one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry<'a> {
    pub caller: &'a str,
    pub rpc: Rpc,
    pub install_id: Option<InstallId>,
    pub org_id: Option<OrgId>,
    pub outcome: Outcome,
}

impl<'a> Entry<'a> {
    pub fn new(caller: &'a AuthenticatedCaller, rpc: Rpc, outcome: Outcome) -> Self {
        Entry {
            caller: caller.name(),
            rpc,
            install_id: None,
            org_id: None,
            outcome,
        }
    }

    pub fn install(self, install_id: Option<InstallId>) -> Self {
        Entry { install_id, ..self }
    }

    pub fn org(self, org_id: Option<OrgId>) -> Self {
        Entry { org_id, ..self }
    }
}

/// Writes `entry` as one audit line at once (install reads and changes, event watches).
pub fn write(entry: Entry<'_>) {
    line(entry, None);
}

/// Hand-outs of one kind written as one line: how many, and the first and last time.
#[derive(Debug, Clone, Copy)]
struct Counted {
    count: u64,
    first: UnixMillis,
    last: UnixMillis,
}

fn line(entry: Entry<'_>, counted: Option<Counted>) {
    tracing::info!(
        target: "audit",
        caller = entry.caller,
        rpc = entry.rpc.name(),
        install_id = entry.install_id.map(tracing::field::display),
        org_id = entry.org_id.map(tracing::field::display),
        outcome = %entry.outcome,
        count = counted.map(|c| c.count),
        first = counted.map(|c| tracing::field::display(Rfc3339(c.first))),
        last = counted.map(|c| tracing::field::display(Rfc3339(c.last))),
        "audit"
    );
}

/// A kind of hand-out, owned (the map's key). Hashes and compares like the [`Entry`] it was made
/// from, so the hot path looks it up by an `Entry` without building one.
#[derive(Debug)]
struct Key {
    caller: Arc<str>,
    rpc: Rpc,
    install_id: Option<InstallId>,
    org_id: Option<OrgId>,
    outcome: Outcome,
}

impl Key {
    fn entry(&self) -> Entry<'_> {
        Entry {
            caller: &self.caller,
            rpc: self.rpc,
            install_id: self.install_id,
            org_id: self.org_id,
            outcome: self.outcome,
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.entry().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.entry() == other.entry()
    }
}

impl Eq for Key {}

impl Equivalent<Key> for Entry<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.entry()
    }
}

/// Set in [`Slot::count`] once the flusher has taken the slot out of service: a hand-out that
/// finds it counts in a fresh slot instead.
const RETIRED: u64 = 1 << 63;

/// One kind's hand-outs since its last line.
#[derive(Debug, Default)]
struct Slot {
    /// Hand-outs not yet written, with [`RETIRED`] set once the slot is out of service.
    count: AtomicU64,
    /// When the first and the last of them were handed out (0: not known yet).
    first: AtomicI64,
    last: AtomicI64,
}

impl Slot {
    /// Counts one hand-out at `now`; false when the slot is retired (count it elsewhere).
    fn count(&self, now: UnixMillis) -> bool {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if before & RETIRED != 0 {
            return false;
        }
        if before == 0 {
            self.first.store(now, Ordering::Relaxed);
        }
        self.last.store(now, Ordering::Relaxed);
        true
    }

    /// Takes the pending count with its first and last time; `None` when there is none.
    fn take(&self) -> Option<Counted> {
        let count = self.count.swap(0, Ordering::AcqRel);
        if count == 0 {
            return None;
        }
        let last = self.last.load(Ordering::Relaxed);
        // A hand-out counted just before the swap may not have stored its time yet.
        let first = match self.first.swap(0, Ordering::Relaxed) {
            0 => last,
            first => first.min(last),
        };
        Some(Counted { count, first, last })
    }

    /// Takes the slot out of service if nothing is pending (only the flusher retires slots).
    fn retire_if_idle(&self) -> bool {
        self.count
            .compare_exchange(0, RETIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Token hand-outs, counted by kind and written once per interval (see the module doc).
#[derive(Debug)]
pub struct AuditTrail {
    /// `None`: every hand-out is written at once.
    interval: Option<Duration>,
    /// The kinds seen since the last flush. The LRU crate's fast hasher (foldhash): the keys
    /// are the callers' own ids and names, and a flush forgets idle ones.
    slots: papaya::HashMap<Key, Slot, lru::DefaultHasher>,
    /// One flush at a time (the periodic one and the final one at shutdown).
    flushing: Mutex<()>,
    /// Hand-outs written so far (the sum of the lines' counts): what the unit tests check.
    written: AtomicU64,
}

impl AuditTrail {
    /// Hand-outs are written once per `interval`; `Duration::ZERO` writes each at once.
    pub fn new(interval: Duration) -> Self {
        AuditTrail {
            interval: (!interval.is_zero()).then_some(interval),
            slots: papaya::HashMap::builder()
                .hasher(lru::DefaultHasher::default())
                .build(),
            flushing: Mutex::new(()),
            written: AtomicU64::new(0),
        }
    }

    /// Records one token hand-out: written at once when it is the first of its kind since that
    /// kind's last line (or every hand-out, with no interval), counted otherwise.
    pub fn handed_out(&self, entry: Entry<'_>) {
        if self.interval.is_none() {
            return self.write_now(entry);
        }
        let now = now_millis();
        let slots = self.slots.pin();
        loop {
            if let Some(slot) = slots.get(&entry) {
                if slot.count(now) {
                    return;
                }
                // Retired by the flusher: take it out so a fresh one can take its place.
                let _ = slots.remove_if(&entry, |_, s| std::ptr::eq(s, slot));
                continue;
            }
            let key = Key {
                caller: Arc::from(entry.caller),
                rpc: entry.rpc,
                install_id: entry.install_id,
                org_id: entry.org_id,
                outcome: entry.outcome,
            };
            if slots.try_insert(key, Slot::default()).is_ok() {
                // The first of its kind: its own line now; the slot counts the ones after it.
                return self.write_now(entry);
            }
            // Another call inserted the kind first: count there.
        }
    }

    /// Writes one line per kind with hand-outs pending, and forgets the kinds that had none since
    /// the last flush (their next hand-out is written at once).
    pub fn flush(&self) {
        self.flush_with(true);
    }

    fn flush_with(&self, forget_idle: bool) {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let slots = self.slots.pin();
        for (key, slot) in slots.iter() {
            match slot.take() {
                Some(counted) => self.write(key.entry(), counted),
                None if forget_idle && slot.retire_if_idle() => {
                    let _ = slots.remove_if(key, |_, s| std::ptr::eq(s, slot));
                }
                None => {}
            }
        }
    }

    /// One hand-out, written at once.
    fn write_now(&self, entry: Entry<'_>) {
        let now = now_millis();
        let counted = Counted {
            count: 1,
            first: now,
            last: now,
        };
        self.write(entry, counted);
    }

    fn write(&self, entry: Entry<'_>, counted: Counted) {
        self.written.fetch_add(counted.count, Ordering::Relaxed);
        line(entry, Some(counted));
    }

    /// Flushes every interval until `stop` fires, then writes what is pending (after the last
    /// hand-out: the server has stopped serving by then).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if let Some(interval) = self.interval {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => self.flush(),
                    () = stop.cancelled() => break,
                }
            }
        }
        self.flush_with(false);
    }
}

/// Unix milliseconds as an RFC 3339 UTC time (`2026-12-07T15:04:05.123Z`), formatted only when
/// the line is written.
struct Rfc3339(UnixMillis);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .map_err(|_| std::fmt::Error)?;
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        f.write_str(&at.format(&format).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(caller: &str, n: u128) -> Entry<'_> {
        Entry {
            caller,
            rpc: Rpc::GetAccessToken,
            install_id: Some(
                InstallId::parse(&uuid::Uuid::from_u128(n).hyphenated().to_string()).unwrap(),
            ),
            org_id: None,
            outcome: Outcome::OK,
        }
    }

    fn pending(trail: &AuditTrail, e: Entry<'_>) -> Option<u64> {
        trail
            .slots
            .pin()
            .get(&e)
            .map(|s| s.count.load(Ordering::Relaxed))
    }

    #[test]
    fn the_first_of_a_kind_is_not_counted_twice_and_the_rest_wait_for_the_flush() {
        let trail = AuditTrail::new(Duration::from_secs(60));
        let a = entry("projects-service", 1);
        trail.handed_out(a);
        assert_eq!(pending(&trail, a), Some(0), "the first is written at once");
        for _ in 0..5 {
            trail.handed_out(a);
        }
        trail.handed_out(entry("ops", 1));
        assert_eq!(pending(&trail, a), Some(5));
        assert_eq!(pending(&trail, entry("ops", 1)), Some(0));
        trail.flush();
        assert_eq!(pending(&trail, a), Some(0));
        // Idle for a whole interval: forgotten, so the next one is written at once.
        trail.flush();
        assert_eq!(pending(&trail, a), None);
        trail.handed_out(a);
        assert_eq!(pending(&trail, a), Some(0));
    }

    #[test]
    fn a_retired_slot_never_swallows_a_hand_out() {
        let trail = AuditTrail::new(Duration::from_secs(60));
        let a = entry("c", 7);
        trail.handed_out(a);
        // Retire without removing, as a flush that lost the race to a hand-out would leave it.
        assert!(trail.slots.pin().get(&a).unwrap().retire_if_idle());
        trail.handed_out(a);
        // The retired slot was replaced; that hand-out was written at once as the first of a
        // fresh slot.
        assert_eq!(pending(&trail, a), Some(0));
        trail.handed_out(a);
        assert_eq!(pending(&trail, a), Some(1));
        trail.flush_with(false);
        assert_eq!(trail.written.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let trail = Arc::new(AuditTrail::new(Duration::from_secs(60)));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let trail = Arc::clone(&trail);
                std::thread::spawn(move || {
                    for i in 0..10_000u128 {
                        trail.handed_out(entry("c", i % 3));
                        if t == 0 && i % 1000 == 0 {
                            trail.flush();
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let before_last_flush = trail.written.load(Ordering::Relaxed);
        assert!(
            before_last_flush < 40_000,
            "hand-outs are counted, not all written"
        );
        trail.flush_with(false);
        assert_eq!(trail.written.load(Ordering::Relaxed), 40_000);
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Rfc3339(1_796_655_845_123).to_string(),
            "2026-12-07T15:04:05.123Z"
        );
    }
}
