//! The activity log: who did what, from where, and when.
//!
//! Entries are keyed by (time in milliseconds, id), so a window of time is one range scan.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::tables::AUDIT;
use crate::{Error, Store, decode, encode, from_ms, next_counter, to_ms};

/// Something worth recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who acted: an account address, `cli`, `system`...
    #[serde(default)]
    pub actor: String,
    /// What happened, a short machine-friendly verb such as `login.failed` or `account.add`.
    #[serde(default)]
    pub action: String,
    /// The remote address involved, if any.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// Free-form detail for people.
    #[serde(default)]
    pub detail: String,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The entry's id, ascending in recording order.
    pub id: u64,
    /// When it was recorded (millisecond precision).
    pub time: SystemTime,
    /// What was recorded.
    pub event: AuditEvent,
}

/// `[audit]`: the activity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days an entry is kept; older ones are deleted once a day. 0: kept forever.
    pub keep_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { keep_days: 90 }
    }
}

/// How long refusals of one kind from one address are counted into one entry.
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose refusals are being counted at once, at most.
const MAX_WINDOWS: usize = 100_000;

/// Refusals being counted: per (address, action), when the minute started, how many
/// came after the first (which was written), and the last one's actor and detail.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    windows: Mutex<HashMap<(IpAddr, String), Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    more: u64,
    last: AuditEvent,
}

impl Window {
    /// The entry counting the refusals after the first.
    fn summary(&self) -> AuditEvent {
        AuditEvent {
            detail: format!(
                "{} more like this from this address within a minute; the last: {}",
                self.more, self.last.detail
            ),
            ..self.last.clone()
        }
    }
}

impl Store {
    /// Records the refusal of a client that did not log in (relay attempts, unknown
    /// users, DNSBL listings...): the first of one kind from one address in a minute
    /// is written at once; the others are counted, and one entry with the count is
    /// written when the minute is over ([`Store::flush_refusals`]). So a client
    /// cannot make the activity log (each entry an fsync) grow as fast as it can
    /// talk. Returns whether an entry was written now.
    pub fn log_refusal(&self, event: &AuditEvent) -> Result<bool, Error> {
        let Some(ip) = event.ip else {
            self.log_event(event)?;
            return Ok(true);
        };
        let now = Instant::now();
        let key = (ip, event.action.clone());
        let summary = {
            let mut windows = self
                .refusals
                .windows
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let full = windows.len() >= MAX_WINDOWS;
            match windows.get_mut(&key) {
                Some(w) if now.duration_since(w.started) < REFUSAL_WINDOW => {
                    w.more += 1;
                    w.last = event.clone();
                    return Ok(false);
                }
                Some(w) => {
                    let summary = (w.more > 0).then(|| w.summary());
                    *w = Window {
                        started: now,
                        more: 0,
                        last: event.clone(),
                    };
                    summary
                }
                None if full => None,
                None => {
                    windows.insert(
                        key,
                        Window {
                            started: now,
                            more: 0,
                            last: event.clone(),
                        },
                    );
                    None
                }
            }
        };
        if let Some(summary) = summary {
            self.log_event(&summary)?;
        }
        self.log_event(event)?;
        Ok(true)
    }

    /// Writes the counts of the refusal minutes that are over (every one with `all`,
    /// at shutdown) and forgets them. Returns how many entries were written.
    pub fn flush_refusals(&self, all: bool) -> Result<usize, Error> {
        let now = Instant::now();
        let due: Vec<AuditEvent> = {
            let mut windows = self
                .refusals
                .windows
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut due = Vec::new();
            windows.retain(|_, w| {
                let over = all || now.duration_since(w.started) >= REFUSAL_WINDOW;
                if over && w.more > 0 {
                    due.push(w.summary());
                }
                !over
            });
            due
        };
        for event in &due {
            self.log_event(event)?;
        }
        Ok(due.len())
    }

    /// Records an event, timestamped now.
    pub fn log_event(&self, event: &AuditEvent) -> Result<(), Error> {
        self.log_event_at(event, SystemTime::now())
    }

    /// Records an event with the given time (imports, tests).
    pub fn log_event_at(&self, event: &AuditEvent, time: SystemTime) -> Result<(), Error> {
        let value = encode("an activity log entry", event)?;
        self.write(|txn| {
            let id = next_counter(txn, "next_audit_id", 1)?;
            txn.open_table(AUDIT)?
                .insert((to_ms(time), id), value.as_slice())?;
            Ok(())
        })
    }

    /// The newest `limit` entries at or after `since` (all time if `None`), oldest first.
    pub fn events(
        &self,
        since: Option<SystemTime>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from = since.map_or(0, to_ms);
        self.read(|txn| {
            let audit = txn.open_table(AUDIT)?;
            let mut out = Vec::new();
            for entry in audit.range((from, 0)..)?.rev().take(limit) {
                let (k, v) = entry?;
                let (ms, id) = k.value();
                out.push(AuditEntry {
                    id,
                    time: from_ms(ms),
                    event: decode("an activity log entry", v.value())?,
                });
            }
            out.reverse();
            Ok(out)
        })
    }

    /// Deletes the entries older than `before`; returns how many went.
    pub fn prune_events(&self, before: SystemTime) -> Result<usize, Error> {
        let until = to_ms(before);
        self.write(|txn| {
            let mut audit = txn.open_table(AUDIT)?;
            let mut keys = Vec::new();
            for entry in audit.range(..(until, 0))? {
                keys.push(entry?.0.value());
            }
            for key in &keys {
                audit.remove(key)?;
            }
            Ok(keys.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use std::time::{Duration, UNIX_EPOCH};

    fn event(action: &str) -> AuditEvent {
        AuditEvent {
            actor: "cli".into(),
            action: action.into(),
            ip: Some("192.0.2.7".parse().unwrap()),
            detail: format!("did {action}"),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn events_since_and_limit() {
        let (_dir, store) = test_util::store();
        for i in 0..10 {
            store.log_event_at(&event(&format!("a{i}")), at(i)).unwrap();
        }
        let actions =
            |v: Vec<AuditEntry>| v.into_iter().map(|e| e.event.action).collect::<Vec<_>>();
        assert_eq!(actions(store.events(None, 3).unwrap()), ["a7", "a8", "a9"]);
        assert_eq!(
            actions(store.events(Some(at(8)), 10).unwrap()),
            ["a8", "a9"]
        );
        assert_eq!(actions(store.events(Some(at(2)), 2).unwrap()), ["a8", "a9"]);
        assert_eq!(store.events(None, 100).unwrap().len(), 10);
        assert!(store.events(None, 0).unwrap().is_empty());
        assert!(store.events(Some(at(50)), 5).unwrap().is_empty());
        let all = store.events(None, 100).unwrap();
        assert!(
            all.windows(2)
                .all(|w| w[0].id < w[1].id && w[0].time <= w[1].time)
        );
        assert_eq!(all[0].time, at(0));
        assert_eq!(all[0].event, event("a0"));
    }

    #[test]
    fn refusals_of_one_kind_from_one_address_are_counted_into_one_entry() {
        let (_dir, store) = test_util::store();
        for i in 0..500 {
            let mut e = event("smtp-relay-denied");
            e.detail = format!("to <v{i}@remote.test>");
            store.log_refusal(&e).unwrap();
        }
        let mut other = event("smtp-relay-denied");
        other.ip = Some("192.0.2.8".parse().unwrap());
        assert!(store.log_refusal(&other).unwrap());
        assert_eq!(store.events(None, 1000).unwrap().len(), 2);
        // The minute is not over: nothing more; at shutdown the count is written.
        assert_eq!(store.flush_refusals(false).unwrap(), 0);
        assert_eq!(store.flush_refusals(true).unwrap(), 1);
        let all = store.events(None, 1000).unwrap();
        assert_eq!(all.len(), 3);
        assert!(
            all[2].event.detail.starts_with(
                "499 more like this from this address within a minute; the last: to <v499@"
            ),
            "{:?}",
            all[2]
        );
        // A new minute starts a new count.
        assert!(store.log_refusal(&event("smtp-relay-denied")).unwrap());
    }

    #[test]
    fn same_millisecond_keeps_both() {
        let (_dir, store) = test_util::store();
        store.log_event_at(&event("x"), at(1)).unwrap();
        store.log_event_at(&event("y"), at(1)).unwrap();
        let got = store.events(None, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].event.action, "y");
    }

    #[test]
    fn log_event_uses_now_and_prune_works() {
        let (_dir, store) = test_util::store();
        store.log_event_at(&event("old"), at(0)).unwrap();
        let before = SystemTime::now() - Duration::from_secs(1);
        store.log_event(&event("new")).unwrap();
        let got = store.events(Some(before), 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event.action, "new");
        assert_eq!(store.prune_events(at(1)).unwrap(), 1);
        assert_eq!(store.events(None, 10).unwrap().len(), 1);
    }
}
