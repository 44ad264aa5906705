//! Messages that left a mailbox (expunged, moved away, their mailbox deleted) while an
//! IMAP session still shows them: RFC 2180 §4.1.1 lets a session keep fetching such a
//! message (flags and body) until it has been sent the EXPUNGE, and that is what
//! clients on several devices need. Each session with a mailbox selected holds an
//! [`ExpungeHold`] on it and says up to which MODSEQ it has reported expunges
//! ([`ExpungeHold::acknowledge`]); a message removed at a MODSEQ some holder has not
//! acknowledged yet keeps its index entry here, and its body file stays, until every
//! holder has.
//!
//! Body files are counted: a body whose last index entry is gone is deleted once no
//! held entry names it any more. All of this is in memory: after a restart no session
//! is left to need it, and the orphan sweep removes what was still held.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{MailboxId, MessageMeta, ModSeq, Store, Uid};

/// The held messages of every mailbox and the body files they name.
#[derive(Debug, Default)]
pub(crate) struct Limbo {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_hold: u64,
    boxes: HashMap<MailboxId, Held>,
    /// Body file -> how many held entries name it, and whether the index still does.
    bodies: HashMap<String, Body>,
}

#[derive(Debug, Default)]
struct Held {
    /// Hold id -> the MODSEQ up to which its session has reported expunges.
    holders: HashMap<u64, ModSeq>,
    /// MODSEQ of the removal -> the UIDs removed then.
    by_modseq: BTreeMap<ModSeq, Vec<Uid>>,
    /// The removed messages' last index entries.
    messages: HashMap<Uid, MessageMeta>,
}

#[derive(Debug, Default)]
struct Body {
    held: usize,
    /// No index entry names the file any more: delete it when `held` drops to 0.
    orphan: bool,
}

/// A session's claim on the messages that leave one mailbox: see the module docs.
/// Dropping it (the session deselects or ends) releases what only it was holding.
#[derive(Debug)]
pub struct ExpungeHold {
    store: Arc<Store>,
    mailbox: MailboxId,
    id: u64,
}

impl ExpungeHold {
    /// The session has reported every expunge up to `modseq` to its client (RFC 3501
    /// §7.4.1: the EXPUNGE responses were sent).
    pub fn acknowledge(&self, modseq: ModSeq) {
        let unlink = {
            let mut inner = self.store.limbo.lock();
            if let Some(held) = inner.boxes.get_mut(&self.mailbox)
                && let Some(acked) = held.holders.get_mut(&self.id)
            {
                if *acked >= modseq {
                    return;
                }
                *acked = modseq;
            }
            inner.release(self.mailbox)
        };
        self.store.blobs.remove_all(&unlink);
    }

    /// The last index entry of a message removed from the mailbox that a holder may
    /// still show.
    pub fn message(&self, uid: Uid) -> Option<MessageMeta> {
        let inner = self.store.limbo.lock();
        inner.boxes.get(&self.mailbox)?.messages.get(&uid).cloned()
    }

    /// The mailbox held.
    pub fn mailbox(&self) -> MailboxId {
        self.mailbox
    }
}

impl Drop for ExpungeHold {
    fn drop(&mut self) {
        let unlink = {
            let mut inner = self.store.limbo.lock();
            if let Some(held) = inner.boxes.get_mut(&self.mailbox) {
                held.holders.remove(&self.id);
            }
            inner.release(self.mailbox)
        };
        self.store.blobs.remove_all(&unlink);
    }
}

impl Inner {
    /// Lets go of the entries of `mailbox` every holder has acknowledged; returns the
    /// body files to delete.
    fn release(&mut self, mailbox: MailboxId) -> Vec<String> {
        let Some(held) = self.boxes.get_mut(&mailbox) else {
            return Vec::new();
        };
        let floor = held.holders.values().copied().min().unwrap_or(ModSeq::MAX);
        let mut freed = Vec::new();
        while let Some(entry) = held.by_modseq.first_entry() {
            if *entry.key() > floor {
                break;
            }
            for uid in entry.remove() {
                if let Some(meta) = held.messages.remove(&uid) {
                    freed.push(meta.blob);
                }
            }
        }
        if held.holders.is_empty() && held.messages.is_empty() {
            self.boxes.remove(&mailbox);
        }
        let mut unlink = Vec::new();
        for blob in freed {
            if let Some(body) = self.bodies.get_mut(&blob) {
                body.held = body.held.saturating_sub(1);
                if body.held == 0 {
                    let orphan = body.orphan;
                    self.bodies.remove(&blob);
                    if orphan {
                        unlink.push(blob);
                    }
                }
            }
        }
        unlink
    }
}

impl Limbo {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Messages leave `mailbox` at `modseq` in a write transaction not yet committed:
    /// while any session holds the mailbox their entries are held from now on, so a
    /// session that reads the index just after the commit still finds them here.
    /// Returns whether they were held; the caller then calls [`Limbo::settle`] after
    /// the commit, or [`Limbo::abort`] if it failed.
    pub(crate) fn stage(
        &self,
        mailbox: MailboxId,
        modseq: ModSeq,
        removed: &[MessageMeta],
    ) -> bool {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(held) = inner
            .boxes
            .get_mut(&mailbox)
            .filter(|h| !h.holders.is_empty())
        else {
            return false;
        };
        for meta in removed {
            inner.bodies.entry(meta.blob.clone()).or_default().held += 1;
            held.by_modseq.entry(modseq).or_default().push(meta.uid);
            held.messages.insert(meta.uid, meta.clone());
        }
        true
    }

    /// The transaction that [`Limbo::stage`]d `removed` did not commit: forgets them.
    pub(crate) fn abort(&self, mailbox: MailboxId, modseq: ModSeq, removed: &[MessageMeta]) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(held) = inner.boxes.get_mut(&mailbox) {
            held.by_modseq.remove(&modseq);
            for meta in removed {
                held.messages.remove(&meta.uid);
            }
        }
        for meta in removed {
            if let Some(body) = inner.bodies.get_mut(&meta.blob) {
                body.held = body.held.saturating_sub(1);
                if body.held == 0 && !body.orphan {
                    inner.bodies.remove(&meta.blob);
                }
            }
        }
    }

    /// Messages left `mailbox` at `modseq` (committed; `staged` if [`Limbo::stage`]
    /// held them); `owned` when no index entry names their body files any more (an
    /// expunge, not a move). Holds them now if a session that did not acknowledge
    /// `modseq` appeared meanwhile. Returns the body files to delete now: those no
    /// holder needs.
    pub(crate) fn settle(
        &self,
        mailbox: MailboxId,
        modseq: ModSeq,
        removed: Vec<MessageMeta>,
        staged: bool,
        owned: bool,
    ) -> Vec<String> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let late = !staged
            && inner
                .boxes
                .get(&mailbox)
                .is_some_and(|h| h.holders.values().any(|&acked| acked < modseq));
        let mut unlink = Vec::new();
        for meta in removed {
            if late {
                inner.bodies.entry(meta.blob.clone()).or_default().held += 1;
            }
            if owned {
                match inner.bodies.get_mut(&meta.blob) {
                    Some(body) => body.orphan = true,
                    None => unlink.push(meta.blob.clone()),
                }
            }
            if late && let Some(held) = inner.boxes.get_mut(&mailbox) {
                held.by_modseq.entry(modseq).or_default().push(meta.uid);
                held.messages.insert(meta.uid, meta);
            }
        }
        // Holders that acknowledged meanwhile may already release them.
        unlink.extend(inner.release(mailbox));
        unlink
    }

    /// [`Limbo::settle`] for removals that were not staged (a mailbox deleted).
    pub(crate) fn retire(
        &self,
        mailbox: MailboxId,
        modseq: ModSeq,
        removed: Vec<MessageMeta>,
        owned: bool,
    ) -> Vec<String> {
        self.settle(mailbox, modseq, removed, false, owned)
    }

    /// Whether a body file the index no longer names is still held (the orphan sweep
    /// leaves those).
    pub(crate) fn holds_body(&self, blob: &str) -> bool {
        self.lock().bodies.contains_key(blob)
    }
}

impl Store {
    /// Holds the messages that leave `mailbox` from now on until the returned hold has
    /// acknowledged their removal (or is dropped). A session takes it before it reads
    /// the mailbox's messages, and acknowledges the MODSEQ it read at.
    pub fn hold_expunged(self: &Arc<Self>, mailbox: MailboxId) -> ExpungeHold {
        let mut inner = self.limbo.lock();
        inner.next_hold += 1;
        let id = inner.next_hold;
        inner
            .boxes
            .entry(mailbox)
            .or_default()
            .holders
            .insert(id, 0);
        ExpungeHold {
            store: self.clone(),
            mailbox,
            id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use std::time::SystemTime;

    fn exists(store: &Store, m: &MessageMeta) -> bool {
        store.read_body(m).is_ok()
    }

    #[test]
    fn an_expunged_body_stays_until_every_holder_has_reported_it() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let store = Arc::new(store);
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let m = store
            .append(inbox.id, b"one\r\n", &[], SystemTime::now())
            .unwrap();
        let a = store.hold_expunged(inbox.id);
        let b = store.hold_expunged(inbox.id);
        a.acknowledge(m.modseq);
        b.acknowledge(m.modseq);
        store.expunge(inbox.id, &[m.uid]).unwrap();
        let gone = store
            .mailbox_by_id(inbox.id)
            .unwrap()
            .unwrap()
            .highest_modseq;
        assert_eq!(a.message(m.uid).unwrap().blob, m.blob);
        assert!(exists(&store, &m));
        a.acknowledge(gone);
        assert!(exists(&store, &m), "b has not reported the expunge");
        assert_eq!(
            store.sweep_orphan_blobs().unwrap(),
            0,
            "held bodies are no orphans"
        );
        drop(b);
        assert!(!exists(&store, &m));
        assert!(a.message(m.uid).is_none());
        // Without holders an expunge deletes at once.
        let n = store
            .append(inbox.id, b"two\r\n", &[], SystemTime::now())
            .unwrap();
        drop(a);
        store.expunge(inbox.id, &[n.uid]).unwrap();
        assert!(!exists(&store, &n));
    }

    #[test]
    fn a_moved_message_stays_readable_and_its_body_outlives_a_later_expunge() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let store = Arc::new(store);
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let trash = store.mailbox(alice.id, "Trash").unwrap().unwrap();
        let m = store
            .append(inbox.id, b"moved\r\n", &[], SystemTime::now())
            .unwrap();
        let hold = store.hold_expunged(inbox.id);
        hold.acknowledge(m.modseq);
        let pairs = store.move_messages(inbox.id, &[m.uid], trash.id).unwrap();
        let held = hold.message(m.uid).unwrap();
        assert_eq!(store.read_body(&held).unwrap(), b"moved\r\n");
        // The new owner expunges it: the file waits for the holder.
        store.expunge(trash.id, &[pairs[0].1]).unwrap();
        assert!(exists(&store, &held));
        drop(hold);
        assert!(!exists(&store, &held));
    }
}
