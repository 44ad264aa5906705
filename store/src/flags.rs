//! STORE (RFC 3501 §6.4.6) on many messages: the change is applied to each message's
//! flags as they are in the write transaction, not as a session last saw them, so
//! two sessions adding different keywords to one message both keep theirs. With
//! UNCHANGEDSINCE (RFC 7162 §3.1.3) a message changed after the given MODSEQ is left
//! alone and reported.

use crate::mailbox::{load_mailbox, save_mailbox};
use crate::message::{bump_modseq, load_message, save_message};
use crate::{Change, Error, MailboxId, MessageMeta, ModSeq, Store, Uid, normalize_flags};

/// How a STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    /// `+FLAGS`: add these.
    Add,
    /// `-FLAGS`: remove these.
    Remove,
    /// `FLAGS`: exactly these.
    Replace,
}

/// What [`Store::change_flags`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagsOutcome {
    /// Every message of the set that exists, as it is after the change (changed or
    /// not), ascending UID.
    pub current: Vec<MessageMeta>,
    /// The UIDs whose flags changed (each got a new MODSEQ).
    pub changed: Vec<Uid>,
    /// Messages left alone because their MODSEQ was above the UNCHANGEDSINCE guard.
    pub modified: Vec<Uid>,
    /// UIDs of the set that no longer exist.
    pub missing: Vec<Uid>,
}

/// `flags` changed by `change` with `given` (case-insensitive for matching).
fn apply(flags: &[String], change: FlagChange, given: &[String]) -> Vec<String> {
    match change {
        FlagChange::Replace => given.to_vec(),
        FlagChange::Add => {
            let mut out = flags.to_vec();
            for g in given {
                if !out.iter().any(|f| f.eq_ignore_ascii_case(g)) {
                    out.push(g.clone());
                }
            }
            out
        }
        FlagChange::Remove => flags
            .iter()
            .filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
            .cloned()
            .collect(),
    }
}

impl Store {
    /// Changes the flags of `uids` (ascending) in one transaction, each message read
    /// there; a message whose flags change gets the mailbox's next MODSEQ, one whose
    /// flags stay keeps its MODSEQ. [`Error::Invalid`] for a flag that is no atom.
    pub fn change_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        change: FlagChange,
        flags: &[String],
        unchanged_since: Option<ModSeq>,
    ) -> Result<FlagsOutcome, Error> {
        let given = normalize_flags(flags)?;
        let (outcome, account, modseq) = self.write(|txn| {
            let mut mbox = load_mailbox(txn, mailbox)?;
            let mut outcome = FlagsOutcome::default();
            for &uid in uids {
                let mut meta = match load_message(txn, mailbox, uid) {
                    Ok(m) => m,
                    Err(Error::NotFound(_)) => {
                        outcome.missing.push(uid);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // RFC 7162 §3.1.3: the guard first, whether or not the flags would change.
                if unchanged_since.is_some_and(|since| meta.modseq > since) {
                    outcome.modified.push(uid);
                    outcome.current.push(meta);
                    continue;
                }
                let new = apply(&meta.flags, change, &given);
                let same =
                    new.len() == meta.flags.len() && new.iter().all(|f| meta.flags.contains(f));
                if same {
                    outcome.current.push(meta);
                    continue;
                }
                let previous = meta.modseq;
                meta.flags = new;
                meta.modseq = bump_modseq(&mut mbox)?;
                save_message(txn, &meta, Some(previous))?;
                outcome.changed.push(uid);
                outcome.current.push(meta);
            }
            if !outcome.changed.is_empty() {
                save_mailbox(txn, &mbox)?;
            }
            Ok((outcome, mbox.account, mbox.highest_modseq))
        })?;
        if !outcome.changed.is_empty() {
            self.notify(Change::Mailbox {
                account,
                mailbox,
                modseq,
            });
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use std::time::SystemTime;

    fn s(f: &[&str]) -> Vec<String> {
        f.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn changes_apply_to_the_stored_flags_with_an_unchangedsince_guard() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let u1 = store
            .append(inbox.id, b"1", &s(&["$A"]), SystemTime::now())
            .unwrap();
        let u2 = store
            .append(inbox.id, b"2", &[], SystemTime::now())
            .unwrap();
        // Two sessions add their keyword, each from a view without the other's.
        store
            .change_flags(inbox.id, &[u1.uid], FlagChange::Add, &s(&["$B"]), None)
            .unwrap();
        let out = store
            .change_flags(
                inbox.id,
                &[u1.uid, 99],
                FlagChange::Add,
                &s(&["$c", "\\seen"]),
                None,
            )
            .unwrap();
        assert_eq!(out.current[0].flags, s(&["$A", "$B", "$c", "\\Seen"]));
        assert_eq!(
            (out.changed.clone(), out.missing.clone()),
            (vec![u1.uid], vec![99])
        );
        // No change, no new MODSEQ.
        let again = store
            .change_flags(inbox.id, &[u1.uid], FlagChange::Add, &s(&["$B"]), None)
            .unwrap();
        assert!(again.changed.is_empty());
        assert_eq!(again.current[0].modseq, out.current[0].modseq);
        let out = store
            .change_flags(
                inbox.id,
                &[u1.uid],
                FlagChange::Remove,
                &s(&["$a", "$B"]),
                None,
            )
            .unwrap();
        assert_eq!(out.current[0].flags, s(&["$c", "\\Seen"]));
        let guard = out.current[0].modseq - 1;
        let out = store
            .change_flags(
                inbox.id,
                &[u1.uid, u2.uid],
                FlagChange::Replace,
                &s(&["$W"]),
                Some(guard),
            )
            .unwrap();
        assert_eq!(out.modified, vec![u1.uid]);
        assert_eq!(out.changed, vec![u2.uid]);
        assert!(matches!(
            store.change_flags(inbox.id, &[u2.uid], FlagChange::Add, &s(&["NIL"]), None),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn recent_is_claimed_once() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        store
            .append(inbox.id, b"1", &[], SystemTime::now())
            .unwrap();
        store
            .append(inbox.id, b"2", &[], SystemTime::now())
            .unwrap();
        assert_eq!(store.claim_recent(inbox.id, 3).unwrap(), 1);
        assert_eq!(store.claim_recent(inbox.id, 3).unwrap(), 3);
        assert_eq!(store.recent_from(inbox.id).unwrap(), 3);
        let u3 = store
            .append(inbox.id, b"3", &[], SystemTime::now())
            .unwrap();
        let u4 = store
            .append(inbox.id, b"4", &[], SystemTime::now())
            .unwrap();
        // Claimed up to what the session saw: UID 4 is still for someone else.
        assert_eq!(store.claim_recent(inbox.id, u4.uid).unwrap(), u3.uid);
        assert_eq!(store.claim_recent(inbox.id, u4.uid + 1).unwrap(), u4.uid);
    }
}
