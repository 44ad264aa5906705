//! Changes that commit together or not at all: every mailbox copy and every queue entry
//! one message makes, the ids a Sieve script remembers, a queue entry's new state or
//! its removal. The bodies are written first and made durable by one `syncfs(2)`, then
//! one redb transaction records everything; a failure leaves nothing behind, so a
//! client that retries never makes a recipient receive a message twice.
//!
//! Concurrent commits are grouped (the first waiting caller commits everything queued
//! in one transaction, one fsync for many messages); a batch that cannot be staged is
//! then committed alone, so it fails only itself.
//!
//! Two conditions are decided inside the transaction, where no concurrent delivery can
//! race them:
//! - an append whose account is over quota by then becomes a queued local delivery
//!   ([`Batch::append_or_defer`]), retried by the queue and finally reported;
//! - a group of items under a [`Once`] key (a vacation reply) is dropped when that key
//!   is already remembered, and the key is remembered otherwise.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use redb::{ReadableTable, WriteTransaction};

use crate::Body;
use crate::message::{normalize_flags, save_header, stage_append};
use crate::queue::stage_enqueue;
use crate::tables::{QUEUE, SIEVE_SEEN};
use crate::{
    AccountId, Change, Error, MailboxId, MessageMeta, NewQueued, QueueId, QueuedMessage, Store,
    decode, encode, from_ms, to_ms,
};

/// A key that may be used once until it expires: `(account, id)` of the account's
/// Sieve memory (RFC 5230 §4.2 vacation, RFC 7352 duplicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Once {
    /// The account whose memory it is.
    pub account: AccountId,
    /// The id.
    pub id: String,
    /// When it may be used again.
    pub until: SystemTime,
}

#[derive(Debug)]
struct NewAppend<'a> {
    mailbox: MailboxId,
    body: Body<'a>,
    flags: Vec<String>,
    internal_date: SystemTime,
    defer: Option<NewQueued>,
    group: Option<usize>,
}

#[derive(Debug)]
struct NewEnqueue<'a> {
    new: NewQueued,
    body: Body<'a>,
    group: Option<usize>,
}

/// Changes to commit together ([`Store::commit`]).
#[derive(Debug, Default)]
pub struct Batch<'a> {
    appends: Vec<NewAppend<'a>>,
    enqueues: Vec<NewEnqueue<'a>>,
    groups: Vec<Once>,
    open_group: Option<usize>,
    remember: Vec<Once>,
    queue_updates: Vec<QueuedMessage>,
    queue_removals: Vec<QueueId>,
}

/// What became of one append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored in its mailbox.
    Stored(MessageMeta),
    /// The account was over quota: queued for a later local delivery as this entry.
    Deferred(QueueId),
    /// Its group's [`Once`] key was already used.
    Skipped,
}

/// The outcome of a committed batch, in the order the items were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// One per append.
    pub appended: Vec<Appended>,
    /// One per enqueue: its queue id, or `None` when its group was skipped.
    pub queued: Vec<Option<QueueId>>,
}

impl Committed {
    /// Whether anything went to the queue (deferred appends included).
    pub fn queued_any(&self) -> bool {
        self.queued.iter().any(Option::is_some)
            || self
                .appended
                .iter()
                .any(|a| matches!(a, Appended::Deferred(_)))
    }
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new() -> Batch<'a> {
        Batch::default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty()
            && self.enqueues.is_empty()
            && self.remember.is_empty()
            && self.queue_updates.is_empty()
            && self.queue_removals.is_empty()
    }

    /// Appends `body` to `mailbox`; the whole batch fails if the account is over quota.
    /// Returns the append's index in [`Committed::appended`].
    pub fn append(
        &mut self,
        mailbox: MailboxId,
        body: impl Into<Body<'a>>,
        flags: &[String],
        internal_date: SystemTime,
    ) -> usize {
        self.push_append(mailbox, body.into(), flags, internal_date, None)
    }

    /// Appends `body` to `mailbox`, or, if the account is over quota at commit, queues
    /// it as `defer` (whose recipient names the local target) for the queue to retry.
    pub fn append_or_defer(
        &mut self,
        mailbox: MailboxId,
        body: impl Into<Body<'a>>,
        flags: &[String],
        internal_date: SystemTime,
        defer: NewQueued,
    ) -> usize {
        self.push_append(mailbox, body.into(), flags, internal_date, Some(defer))
    }

    fn push_append(
        &mut self,
        mailbox: MailboxId,
        body: Body<'a>,
        flags: &[String],
        internal_date: SystemTime,
        defer: Option<NewQueued>,
    ) -> usize {
        self.appends.push(NewAppend {
            mailbox,
            body,
            flags: flags.to_vec(),
            internal_date,
            defer,
            group: self.open_group,
        });
        self.appends.len() - 1
    }

    /// Queues `body` for `new.recipients`. Returns the index in [`Committed::queued`].
    pub fn enqueue(&mut self, new: NewQueued, body: impl Into<Body<'a>>) -> usize {
        self.enqueues.push(NewEnqueue {
            new,
            body: body.into(),
            group: self.open_group,
        });
        self.enqueues.len() - 1
    }

    /// Items added from now until [`Batch::end_once`] are committed only if `once` is
    /// not remembered at commit; then it is remembered with them.
    pub fn begin_once(&mut self, once: Once) {
        self.groups.push(once);
        self.open_group = Some(self.groups.len() - 1);
    }

    /// Ends the group [`Batch::begin_once`] opened.
    pub fn end_once(&mut self) {
        self.open_group = None;
    }

    /// Remembers an id (RFC 7352 duplicate) with the batch.
    pub fn remember(&mut self, once: Once) {
        self.remember.push(once);
    }

    /// Saves a queued message's new state; the batch fails with
    /// [`Error::NotFound`] if it was dropped meanwhile.
    pub fn update_queued(&mut self, message: QueuedMessage) {
        self.queue_updates.push(message);
    }

    /// Removes a queued message (and, after the commit, its body); the batch fails with
    /// [`Error::NotFound`] if it is not queued.
    pub fn remove_queued(&mut self, id: QueueId) {
        self.queue_removals.push(id);
    }
}

/// A batch whose bodies are on disk, waiting for its index commit.
pub(crate) struct Pending {
    appends: Vec<PendingAppend>,
    enqueues: Vec<(NewQueued, String, u64, Option<usize>)>,
    groups: Vec<Once>,
    remember: Vec<Once>,
    queue_updates: Vec<QueuedMessage>,
    queue_removals: Vec<QueueId>,
    slot: Arc<Mutex<Option<Result<Staged, Error>>>>,
}

struct PendingAppend {
    mailbox: MailboxId,
    blob: String,
    size: u64,
    header: Vec<u8>,
    flags: Vec<String>,
    internal_date: SystemTime,
    defer: Option<NewQueued>,
    group: Option<usize>,
}

impl Pending {
    fn blobs(&self) -> impl Iterator<Item = &str> {
        self.appends
            .iter()
            .map(|a| a.blob.as_str())
            .chain(self.enqueues.iter().map(|e| e.1.as_str()))
    }
}

/// A staged batch: its outcome, the bodies to remove once it is committed, and the
/// changes to announce.
struct Staged {
    committed: Committed,
    unused: Vec<String>,
    changes: Vec<Change>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Commits `batch`: every body durable, then every change in one transaction. On
    /// an error nothing of it is stored.
    pub fn commit(&self, batch: Batch<'_>) -> Result<Committed, Error> {
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let mut appends = Vec::with_capacity(batch.appends.len());
        for a in &batch.appends {
            appends.push((normalize_flags(&a.flags)?, from_ms(to_ms(a.internal_date))));
        }
        let gate = self
            .blob_gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut written: Vec<String> = Vec::new();
        let write = |body: &Body<'_>, written: &mut Vec<String>| -> Result<String, Error> {
            let id = self.blobs.write_body_unsynced(body)?;
            written.push(id.clone());
            Ok(id)
        };
        let mut pending = Pending {
            appends: Vec::with_capacity(batch.appends.len()),
            enqueues: Vec::with_capacity(batch.enqueues.len()),
            groups: batch.groups,
            remember: batch.remember,
            queue_updates: batch.queue_updates,
            queue_removals: batch.queue_removals,
            slot: Arc::new(Mutex::new(None)),
        };
        let bodies = (|| {
            for (a, (flags, internal_date)) in batch.appends.into_iter().zip(appends) {
                pending.appends.push(PendingAppend {
                    mailbox: a.mailbox,
                    blob: write(&a.body, &mut written)?,
                    size: a.body.len(),
                    header: crate::message::header_block(&a.body.header()).to_vec(),
                    flags,
                    internal_date,
                    defer: a.defer,
                    group: a.group,
                });
            }
            for e in batch.enqueues {
                if e.new.recipients.is_empty() {
                    return Err(Error::Invalid("a queued message needs a recipient".into()));
                }
                let blob = write(&e.body, &mut written)?;
                let size = e.body.len();
                pending.enqueues.push((e.new, blob, size, e.group));
            }
            Ok(())
        })();
        if let Err(e) = bodies {
            self.blobs.remove_all(&written);
            return Err(e);
        }
        // Group commit: queue the batch; whoever holds the commit lock commits
        // everything queued in one transaction. Each caller returns only after the
        // transaction holding its batch committed (or its batch failed).
        let slot = pending.slot.clone();
        lock(&self.commit_queue).push(pending);
        let result = loop {
            if let Some(done) = lock(&slot).take() {
                break done;
            }
            let _leader = lock(&self.commit_lock);
            if let Some(done) = lock(&slot).take() {
                break done;
            }
            let queued = std::mem::take(&mut *lock(&self.commit_queue));
            self.commit_pending(queued);
        };
        drop(gate);
        let staged = result?;
        self.blobs.remove_all(&staged.unused);
        for change in staged.changes {
            self.notify(change);
        }
        Ok(staged.committed)
    }

    /// Commits queued batches in one transaction and hands each its outcome. If one of
    /// them cannot be staged, each is committed alone so one failure does not fail
    /// its neighbours.
    fn commit_pending(&self, queued: Vec<Pending>) {
        if queued.is_empty() {
            return;
        }
        // The bodies and their renames become durable before the index naming them.
        let ids: Vec<&str> = queued.iter().flat_map(Pending::blobs).collect();
        if let Err(e) = self.blobs.sync_fan_outs(&ids) {
            let e = e.to_string();
            for p in &queued {
                self.fail(
                    p,
                    Error::Db(format!("making the message bodies durable: {e}")),
                );
            }
            return;
        }
        let now = SystemTime::now();
        let together = self.db.begin_write().map_err(Error::from).and_then(|txn| {
            let mut staged = Vec::with_capacity(queued.len());
            for p in &queued {
                staged.push(stage(&txn, p, now)?);
            }
            Ok((txn, staged))
        });
        match together {
            Ok((txn, staged)) => match txn.commit() {
                Ok(()) => {
                    for (p, s) in queued.iter().zip(staged) {
                        *lock(&p.slot) = Some(Ok(s));
                    }
                }
                // A failed commit may still have reached the disk, so the bodies stay;
                // the orphan sweep reclaims them if the index does not name them.
                Err(e) => {
                    let e = Error::from(e).to_string();
                    for p in &queued {
                        *lock(&p.slot) = Some(Err(Error::Db(e.clone())));
                    }
                }
            },
            Err(_) => {
                for p in &queued {
                    let outcome = self.commit_alone(p, now);
                    if outcome.is_err() {
                        self.remove_bodies(p);
                    }
                    *lock(&p.slot) = Some(outcome);
                }
            }
        }
    }

    fn commit_alone(&self, p: &Pending, now: SystemTime) -> Result<Staged, Error> {
        let txn = self.db.begin_write()?;
        let staged = stage(&txn, p, now)?;
        txn.commit()?;
        Ok(staged)
    }

    fn fail(&self, p: &Pending, e: Error) {
        *lock(&p.slot) = Some(Err(e));
    }

    fn remove_bodies(&self, p: &Pending) {
        let ids: Vec<String> = p.blobs().map(str::to_string).collect();
        self.blobs.remove_all(&ids);
    }
}

/// Records one batch inside `txn`.
fn stage(txn: &WriteTransaction, p: &Pending, now: SystemTime) -> Result<Staged, Error> {
    let mut staged = Staged {
        committed: Committed::default(),
        unused: Vec::new(),
        changes: Vec::new(),
    };
    // Groups first: a key already remembered drops its items.
    let mut skipped = vec![false; p.groups.len()];
    {
        let mut seen = txn.open_table(SIEVE_SEEN)?;
        for (i, once) in p.groups.iter().enumerate() {
            let used = seen
                .get((once.account, once.id.as_str()))?
                .is_some_and(|until| until.value() > to_ms(now));
            skipped[i] = used;
            if !used {
                seen.insert((once.account, once.id.as_str()), to_ms(once.until))?;
            }
        }
        for once in &p.remember {
            seen.insert((once.account, once.id.as_str()), to_ms(once.until))?;
        }
        // The accounts' expired ids go on the way.
        let mut accounts: Vec<AccountId> = p
            .groups
            .iter()
            .chain(&p.remember)
            .map(|o| o.account)
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        for account in accounts {
            let mut expired = Vec::new();
            for row in seen.range((account, "")..)? {
                let (key, until) = row?;
                let (owner, id) = key.value();
                if owner != account {
                    break;
                }
                if until.value() <= to_ms(now) {
                    expired.push(id.to_string());
                }
            }
            for id in &expired {
                seen.remove((account, id.as_str()))?;
            }
        }
    }
    let is_skipped = |group: Option<usize>| group.is_some_and(|g| skipped[g]);
    let mut queued = false;
    for a in &p.appends {
        if is_skipped(a.group) {
            staged.unused.push(a.blob.clone());
            staged.committed.appended.push(Appended::Skipped);
            continue;
        }
        match stage_append(
            txn,
            a.mailbox,
            a.blob.clone(),
            a.size,
            a.flags.clone(),
            a.internal_date,
        ) {
            Ok((meta, account)) => {
                save_header(txn, a.mailbox, meta.uid, &a.header)?;
                staged.changes.push(Change::Mailbox {
                    account,
                    mailbox: a.mailbox,
                    modseq: meta.modseq,
                });
                staged.committed.appended.push(Appended::Stored(meta));
            }
            Err(Error::OverQuota { .. }) if a.defer.is_some() => {
                let defer = a.defer.clone().unwrap_or_default();
                let message = stage_enqueue(txn, defer, a.blob.clone(), a.size, now)?;
                queued = true;
                staged
                    .committed
                    .appended
                    .push(Appended::Deferred(message.id));
            }
            Err(e) => return Err(e),
        }
    }
    for (new, blob, size, group) in &p.enqueues {
        if is_skipped(*group) {
            staged.unused.push(blob.clone());
            staged.committed.queued.push(None);
            continue;
        }
        let message = stage_enqueue(txn, new.clone(), blob.clone(), *size, now)?;
        queued = true;
        staged.committed.queued.push(Some(message.id));
    }
    if !p.queue_updates.is_empty() || !p.queue_removals.is_empty() {
        let mut table = txn.open_table(QUEUE)?;
        for message in &p.queue_updates {
            if table.get(message.id)?.is_none() {
                return Err(Error::NotFound(format!("queued message {}", message.id)));
            }
            table.insert(message.id, encode("a queued message", message)?.as_slice())?;
        }
        for &id in &p.queue_removals {
            let removed = table
                .remove(id)?
                .ok_or_else(|| Error::NotFound(format!("queued message {id}")))?;
            let removed: QueuedMessage = decode("a queued message", removed.value())?;
            staged.unused.push(removed.blob);
        }
    }
    if queued {
        staged.changes.push(Change::Queue);
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueuedRecipient;
    use crate::test_util::store_with_alice;
    use std::time::Duration;

    fn inbox(store: &Store, account: AccountId) -> MailboxId {
        store.mailbox(account, "INBOX").unwrap().unwrap().id
    }

    #[test]
    fn one_failure_stores_nothing_of_the_batch() {
        let (_dir, store, alice) = store_with_alice();
        let now = SystemTime::now();
        let mut batch = Batch::new();
        batch.append(
            inbox(&store, alice.id),
            &b"Subject: a\r\n\r\nx\r\n"[..],
            &[],
            now,
        );
        batch.enqueue(
            NewQueued {
                recipients: vec![QueuedRecipient::new("bob@remote.test")],
                ..NewQueued::default()
            },
            &b"Subject: a\r\n\r\nx\r\n"[..],
        );
        batch.append(9999, &b"x"[..], &[], now);
        assert!(matches!(store.commit(batch), Err(Error::NotFound(_))));
        assert!(store.messages(inbox(&store, alice.id)).unwrap().is_empty());
        assert!(store.queued().unwrap().is_empty());
        // No body file is left behind either.
        assert_eq!(store.sweep_orphan_blobs().unwrap(), 0);
    }

    #[test]
    fn an_account_over_quota_at_commit_gets_a_queued_local_delivery() {
        let (_dir, store, alice) = store_with_alice();
        let bob = store.add_account("bob@example.org", "$hash").unwrap();
        store.set_quota("bob@example.org", 10).unwrap();
        let now = SystemTime::now();
        let body = b"Subject: big\r\n\r\nmore than ten bytes\r\n";
        let mut batch = Batch::new();
        batch.append(inbox(&store, alice.id), &body[..], &[], now);
        let target = local_target(&store, bob.id);
        batch.append_or_defer(
            inbox(&store, bob.id),
            &body[..],
            &["\\Flagged".to_string()],
            now,
            NewQueued {
                sender: "a@remote.test".into(),
                recipients: vec![QueuedRecipient {
                    local: Some(target),
                    ..QueuedRecipient::new("bob@example.org")
                }],
                ..NewQueued::default()
            },
        );
        let committed = store.commit(batch).unwrap();
        assert!(matches!(committed.appended[0], Appended::Stored(_)));
        let Appended::Deferred(id) = committed.appended[1] else {
            panic!("{committed:?}");
        };
        assert!(committed.queued_any());
        let queued = store.queued_message(id).unwrap().unwrap();
        assert_eq!(queued.sender, "a@remote.test");
        assert_eq!(store.read_queued_body(&queued).unwrap(), body);
        assert_eq!(
            queued.recipients[0].local.as_ref().unwrap().flags,
            ["\\Flagged"]
        );
        assert_eq!(store.messages(inbox(&store, alice.id)).unwrap().len(), 1);
        assert!(store.messages(inbox(&store, bob.id)).unwrap().is_empty());
    }

    fn local_target(store: &Store, account: AccountId) -> crate::LocalTarget {
        crate::LocalTarget {
            account,
            mailbox: inbox(store, account),
            flags: vec!["\\Flagged".into()],
        }
    }

    #[test]
    fn a_once_key_lets_one_of_two_concurrent_replies_through() {
        let (_dir, store, alice) = store_with_alice();
        let store = Arc::new(store);
        let until = SystemTime::now() + Duration::from_secs(86_400);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut batch = Batch::new();
                    batch.begin_once(Once {
                        account: alice.id,
                        id: "vacation:someone@remote.test".into(),
                        until,
                    });
                    batch.enqueue(
                        NewQueued {
                            recipients: vec![QueuedRecipient::new("someone@remote.test")],
                            ..NewQueued::default()
                        },
                        &b"Subject: away\r\n\r\nx\r\n"[..],
                    );
                    batch.end_once();
                    store.commit(batch).unwrap()
                })
            })
            .collect();
        let sent = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|c| c.queued[0].is_some())
            .count();
        assert_eq!(sent, 1);
        assert_eq!(store.queued().unwrap().len(), 1);
        // The skipped copies left no body behind.
        assert_eq!(store.sweep_orphan_blobs().unwrap(), 0);
    }

    #[test]
    fn a_report_and_the_removal_of_its_entry_commit_together() {
        let (_dir, store, alice) = store_with_alice();
        let queued = store
            .enqueue(
                NewQueued {
                    sender: "alice@example.org".into(),
                    recipients: vec![QueuedRecipient::new("x@remote.test")],
                    ..NewQueued::default()
                },
                b"Subject: out\r\n\r\nx\r\n",
            )
            .unwrap();
        let mut batch = Batch::new();
        batch.append(
            inbox(&store, alice.id),
            &b"Subject: failure report\r\n\r\nx\r\n"[..],
            &[],
            SystemTime::now(),
        );
        batch.remove_queued(queued.id);
        store.commit(batch).unwrap();
        assert!(store.queued().unwrap().is_empty());
        assert_eq!(store.messages(inbox(&store, alice.id)).unwrap().len(), 1);
        // Removing it again fails and stores no second report.
        let mut batch = Batch::new();
        batch.append(inbox(&store, alice.id), &b"x"[..], &[], SystemTime::now());
        batch.remove_queued(queued.id);
        assert!(matches!(store.commit(batch), Err(Error::NotFound(_))));
        assert_eq!(store.messages(inbox(&store, alice.id)).unwrap().len(), 1);
    }
}
