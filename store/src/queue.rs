//! The outbound queue: messages waiting for delivery to remote servers, durable like
//! mailbox messages (the body in a blob file made durable first, then the index entry
//! committed). Each recipient carries its own state, so a message delivered to some
//! recipients and deferred for others is never sent twice to the first ones.

use std::time::SystemTime;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::tables::QUEUE;
use crate::{AccountId, Change, Error, Store, decode, decode_opt, encode, next_counter};

/// Identifies a queued message; allocated from a counter, never reused.
pub type QueueId = u64;

/// What became of one recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RecipientState {
    /// Not delivered yet; retried at the message's next attempt.
    Pending,
    /// A remote server accepted it (its reply).
    Delivered {
        /// The server and its reply, e.g. `mx.example.org [192.0.2.1]: 250 2.0.0 OK`.
        reply: String,
    },
    /// Permanently failed (a 5xx, a null MX, expiry); a DSN reports it.
    Failed {
        /// The RFC 3463 status, e.g. `5.1.1`.
        status: String,
        /// What went wrong, with the remote server's reply where there was one.
        reply: String,
        /// The server that answered, if any (`Remote-MTA`, RFC 3464 §2.3.5).
        remote: Option<String>,
    },
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    /// The forward-path.
    pub address: String,
    /// Its state.
    pub state: RecipientState,
    /// The last temporary failure, for `postern queue list` and the expiry DSN.
    #[serde(default)]
    pub last_error: Option<String>,
    /// RFC 3461 NOTIFY as given (e.g. `FAILURE,DELAY`); None: the default (FAILURE).
    #[serde(default)]
    pub notify: Option<String>,
    /// RFC 3461 ORCPT as given (`rfc822;addr`).
    #[serde(default)]
    pub orcpt: Option<String>,
    /// A local mailbox the message is for (an account that was over quota when the
    /// message came): delivered by an append, never over SMTP.
    #[serde(default)]
    pub local: Option<LocalTarget>,
}

/// Where a queued local delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalTarget {
    /// The account.
    pub account: AccountId,
    /// Its mailbox chosen at delivery (INBOX, Junk, a Sieve `fileinto`).
    pub mailbox: crate::MailboxId,
    /// The flags to store it with.
    #[serde(default)]
    pub flags: Vec<String>,
}

impl QueuedRecipient {
    /// A pending recipient with no DSN options.
    pub fn new(address: &str) -> Self {
        QueuedRecipient {
            address: address.to_string(),
            state: RecipientState::Pending,
            last_error: None,
            notify: None,
            orcpt: None,
            local: None,
        }
    }
}

/// A message in the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Its queue id.
    pub id: QueueId,
    /// The reverse-path ("" for the null sender).
    pub sender: String,
    /// The account that submitted it (its DSNs go to that account's INBOX).
    #[serde(default)]
    pub account: Option<AccountId>,
    /// The recipients and what became of each.
    pub recipients: Vec<QueuedRecipient>,
    /// The id of the body's blob file.
    pub blob: String,
    /// The body's size in octets.
    pub size: u64,
    /// When it was queued.
    #[serde(with = "crate::unix_ms")]
    pub created: SystemTime,
    /// When the next attempt is due.
    #[serde(with = "crate::unix_ms")]
    pub next_attempt: SystemTime,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// RFC 8689 REQUIRETLS was given.
    #[serde(default)]
    pub require_tls: bool,
    /// RFC 6531 SMTPUTF8 was given.
    #[serde(default)]
    pub smtputf8: bool,
    /// RFC 3461 ENVID.
    #[serde(default)]
    pub env_id: Option<String>,
    /// RFC 3461 RET=HDRS: a DSN returns only the headers (the default returns the
    /// headers too; RET=FULL returns the whole message).
    #[serde(default)]
    pub ret_full: bool,
    /// No failure report may go to the sender: the message failed SPF and DMARC, so
    /// its envelope sender is likely forged (a report would be backscatter).
    #[serde(default)]
    pub no_reports: bool,
}

impl QueuedMessage {
    /// Whether any recipient is still pending.
    pub fn is_pending(&self) -> bool {
        self.recipients
            .iter()
            .any(|r| r.state == RecipientState::Pending)
    }
}

/// What [`Store::enqueue`] needs besides the body.
#[derive(Debug, Clone, Default)]
pub struct NewQueued {
    /// The reverse-path ("" for the null sender).
    pub sender: String,
    /// The submitting account.
    pub account: Option<AccountId>,
    /// The recipients (all pending).
    pub recipients: Vec<QueuedRecipient>,
    /// RFC 8689 REQUIRETLS.
    pub require_tls: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 3461 ENVID.
    pub env_id: Option<String>,
    /// RFC 3461 RET=FULL.
    pub ret_full: bool,
    /// Never send a failure report (see [`QueuedMessage::no_reports`]).
    pub no_reports: bool,
}

/// Records a new queue entry inside a write transaction; its body is already durable.
pub(crate) fn stage_enqueue(
    txn: &redb::WriteTransaction,
    new: NewQueued,
    blob: String,
    size: u64,
    now: SystemTime,
) -> Result<QueuedMessage, Error> {
    if new.recipients.is_empty() {
        return Err(Error::Invalid("a queued message needs a recipient".into()));
    }
    let now = crate::from_ms(crate::to_ms(now));
    let id = next_counter(txn, "next_queue_id", 1)?;
    let message = QueuedMessage {
        id,
        sender: new.sender,
        account: new.account,
        recipients: new.recipients,
        blob,
        size,
        created: now,
        next_attempt: now,
        attempts: 0,
        require_tls: new.require_tls,
        smtputf8: new.smtputf8,
        env_id: new.env_id,
        ret_full: new.ret_full,
        no_reports: new.no_reports,
    };
    txn.open_table(QUEUE)?
        .insert(id, encode("a queued message", &message)?.as_slice())?;
    Ok(message)
}

impl Store {
    /// Queues a message for delivery: the body is made durable, then the entry
    /// committed; when this returns the message survives a crash. Due at once.
    pub fn enqueue(&self, new: NewQueued, body: &[u8]) -> Result<QueuedMessage, Error> {
        let mut batch = crate::Batch::new();
        batch.enqueue(new, body);
        let committed = self.commit(batch)?;
        let id = committed
            .queued
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| Error::Db("the queue entry was not committed".into()))?;
        self.queued_message(id)?
            .ok_or_else(|| Error::NotFound(format!("queued message {id}")))
    }

    /// Makes a queued message due now (`postern queue retry`). [`Error::NotFound`] if it
    /// is not queued.
    pub fn retry_queued(&self, id: QueueId) -> Result<QueuedMessage, Error> {
        let message = self.write(|txn| {
            let mut table = txn.open_table(QUEUE)?;
            let mut message: QueuedMessage = decode_opt("a queued message", table.get(id)?)?
                .ok_or_else(|| Error::NotFound(format!("queued message {id}")))?;
            message.next_attempt = crate::now();
            table.insert(id, encode("a queued message", &message)?.as_slice())?;
            Ok(message)
        })?;
        self.notify(Change::Queue);
        Ok(message)
    }

    /// Every queued message, oldest first.
    pub fn queued(&self) -> Result<Vec<QueuedMessage>, Error> {
        self.read(|txn| {
            let table = txn.open_table(QUEUE)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, v) = entry?;
                out.push(decode("a queued message", v.value())?);
            }
            Ok(out)
        })
    }

    /// One queued message, if it is (still) queued.
    pub fn queued_message(&self, id: QueueId) -> Result<Option<QueuedMessage>, Error> {
        self.read(|txn| decode_opt("a queued message", txn.open_table(QUEUE)?.get(id)?))
    }

    /// The body of a queued message.
    pub fn read_queued_body(&self, message: &QueuedMessage) -> Result<Vec<u8>, Error> {
        self.blobs.read(&message.blob)?.ok_or_else(|| {
            Error::Corrupt(format!(
                "the body of queued message {} is missing",
                message.id
            ))
        })
    }

    /// Saves a queued message's new state (recipients, next attempt). [`Error::NotFound`]
    /// if it was dropped meanwhile.
    pub fn update_queued(&self, message: &QueuedMessage) -> Result<(), Error> {
        self.write(|txn| {
            let mut table = txn.open_table(QUEUE)?;
            if table.get(message.id)?.is_none() {
                return Err(Error::NotFound(format!("queued message {}", message.id)));
            }
            table.insert(message.id, encode("a queued message", message)?.as_slice())?;
            Ok(())
        })
    }

    /// Removes a message from the queue (done, or dropped by an admin) and its body.
    /// [`Error::NotFound`] if it is not queued.
    pub fn remove_queued(&self, id: QueueId) -> Result<QueuedMessage, Error> {
        let removed: QueuedMessage = self.write(|txn| {
            let mut table = txn.open_table(QUEUE)?;
            let removed = table
                .remove(id)?
                .ok_or_else(|| Error::NotFound(format!("queued message {id}")))?;
            decode("a queued message", removed.value())
        })?;
        self.blobs.remove_all(std::slice::from_ref(&removed.blob));
        Ok(removed)
    }

    /// The blob ids the queue references (for the orphan sweep).
    pub(crate) fn queued_blobs(&self) -> Result<Vec<String>, Error> {
        Ok(self.queued()?.into_iter().map(|m| m.blob).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;

    fn new(to: &[&str]) -> NewQueued {
        NewQueued {
            sender: "alice@example.org".into(),
            recipients: to.iter().map(|a| QueuedRecipient::new(a)).collect(),
            ..NewQueued::default()
        }
    }

    #[test]
    fn enqueue_update_remove() {
        let (dir, store) = test_util::store();
        let a = store.enqueue(new(&["x@remote.example"]), b"hello").unwrap();
        let b = store.enqueue(new(&["y@remote.example"]), b"world").unwrap();
        assert!(b.id > a.id);
        assert_eq!(store.read_queued_body(&a).unwrap(), b"hello");
        let mut a2 = a.clone();
        a2.recipients[0].state = RecipientState::Delivered {
            reply: "250 OK".into(),
        };
        a2.attempts = 1;
        store.update_queued(&a2).unwrap();
        assert_eq!(store.queued_message(a.id).unwrap().unwrap(), a2);
        assert!(!a2.is_pending());
        assert_eq!(store.queued().unwrap().len(), 2);
        // The sweep keeps queued bodies.
        assert_eq!(store.sweep_orphan_blobs().unwrap(), 0);
        store.remove_queued(a.id).unwrap();
        assert!(matches!(store.remove_queued(a.id), Err(Error::NotFound(_))));
        assert!(matches!(store.update_queued(&a2), Err(Error::NotFound(_))));
        assert_eq!(store.queued().unwrap(), vec![b.clone()]);
        drop(store);
        // Survives a reopen, and ids are never reused.
        let store = Store::open(&dir.path().join("data")).unwrap();
        assert_eq!(store.queued().unwrap(), vec![b]);
        let c = store.enqueue(new(&["z@remote.example"]), b"!").unwrap();
        assert!(c.id > a.id + 1);
        assert!(store.enqueue(new(&[]), b"!").is_err());
    }
}
