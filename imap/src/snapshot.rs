//! Mailboxes' message lists shared by all sessions: SELECT, EXAMINE and STATUS start
//! from the last list read of a mailbox, brought up to date from the store's CHANGES
//! index, instead of decoding every message's index entry again. A session copies
//! the list into its own view (the copy is small: UIDs, flag bits, MODSEQs).
//! Bounded: the least recently used lists are dropped past [`MAX_MESSAGES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use store::{MailboxId, Store, Uid};

use crate::flags::Keywords;
use crate::selected::Msg;

/// Messages kept across all cached lists.
pub const MAX_MESSAGES: usize = 500_000;

/// One mailbox's messages at one MODSEQ.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The mailbox as read with the messages.
    pub mailbox: store::Mailbox,
    /// Ascending UID.
    pub messages: Vec<Msg>,
    /// The keywords the flag bits refer to.
    pub keywords: Keywords,
}

/// The shared lists.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    lists: HashMap<MailboxId, (Arc<Snapshot>, u64)>,
    tick: u64,
    messages: usize,
}

impl Cache {
    /// The mailbox's messages now; `None` if it no longer exists.
    pub fn get(
        &self,
        store: &Store,
        mailbox: MailboxId,
    ) -> Result<Option<Arc<Snapshot>>, store::Error> {
        let cached = self.lock().lists.get(&mailbox).map(|(s, _)| s.clone());
        let fresh = match cached {
            Some(old) => match store.mailbox_changes(mailbox, old.mailbox.highest_modseq)? {
                None => {
                    self.forget(mailbox);
                    return Ok(None);
                }
                Some((m, changed, expunged))
                    if m.highest_modseq == old.mailbox.highest_modseq
                        && m.uid_next == old.mailbox.uid_next
                        && changed.is_empty()
                        && expunged.is_empty() =>
                {
                    return Ok(Some(old));
                }
                Some((m, changed, expunged)) => Arc::new(advance(&old, m, changed, &expunged)),
            },
            None => match store.mailbox_state(mailbox)? {
                None => return Ok(None),
                Some((m, metas)) => {
                    let mut keywords = Keywords::default();
                    let messages = metas
                        .iter()
                        .map(|meta| Msg {
                            uid: meta.uid,
                            flags: keywords.set_of(&meta.flags),
                            modseq: meta.modseq,
                            gone: false,
                        })
                        .collect();
                    Arc::new(Snapshot {
                        mailbox: m,
                        messages,
                        keywords,
                    })
                }
            },
        };
        self.put(mailbox, fresh.clone());
        Ok(Some(fresh))
    }

    /// Drops a mailbox's list (it was deleted).
    pub fn forget(&self, mailbox: MailboxId) {
        let mut inner = self.lock();
        if let Some((s, _)) = inner.lists.remove(&mailbox) {
            inner.messages -= s.messages.len();
        }
    }

    fn put(&self, mailbox: MailboxId, snapshot: Arc<Snapshot>) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let n = snapshot.messages.len();
        // Keep the newest of two racing readers.
        if let Some((old, _)) = inner.lists.get(&mailbox)
            && old.mailbox.highest_modseq > snapshot.mailbox.highest_modseq
        {
            return;
        }
        if let Some((old, _)) = inner.lists.insert(mailbox, (snapshot, tick)) {
            inner.messages -= old.messages.len();
        }
        inner.messages += n;
        while inner.messages > MAX_MESSAGES && inner.lists.len() > 1 {
            let Some((&oldest, _)) = inner.lists.iter().min_by_key(|(_, (_, t))| *t) else {
                break;
            };
            if let Some((old, _)) = inner.lists.remove(&oldest) {
                inner.messages -= old.messages.len();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `old` with the changes since its MODSEQ applied.
fn advance(
    old: &Snapshot,
    mailbox: store::Mailbox,
    changed: Vec<store::MessageMeta>,
    expunged: &[Uid],
) -> Snapshot {
    let mut keywords = old.keywords.clone();
    let mut messages: Vec<Msg> = old
        .messages
        .iter()
        .filter(|m| expunged.binary_search(&m.uid).is_err())
        .cloned()
        .collect();
    let last = messages.last().map_or(0, |m| m.uid);
    for meta in changed {
        let flags = keywords.set_of(&meta.flags);
        if meta.uid > last {
            messages.push(Msg {
                uid: meta.uid,
                flags,
                modseq: meta.modseq,
                gone: false,
            });
        } else if let Ok(i) = messages.binary_search_by_key(&meta.uid, |m| m.uid) {
            messages[i].flags = flags;
            messages[i].modseq = meta.modseq;
        }
    }
    messages.sort_unstable_by_key(|m| m.uid);
    Snapshot {
        mailbox,
        messages,
        keywords,
    }
}
