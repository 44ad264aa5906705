//! The activity log: who did what, from where, and when.
//!
//! Entries are keyed by (time in milliseconds, id), so a window of time is one range scan.

use std::net::IpAddr;
use std::time::SystemTime;

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

impl Store {
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
