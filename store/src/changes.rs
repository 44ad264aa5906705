//! Change notifications, sent after each commit, for IMAP IDLE (RFC 2177) and NOTIFY-style
//! consumers.
//!
//! Delivery is best effort: a receiver that lags behind the channel capacity gets
//! `RecvError::Lagged` and should rescan what it watches.

use tokio::sync::broadcast;

use crate::{AccountId, MailboxId, ModSeq, Store};

/// What changed in the store. Sent after the commit that made the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A mailbox's messages or flags changed (append, flag change, expunge, deletion).
    Mailbox {
        /// The account owning the mailbox.
        account: AccountId,
        /// The mailbox that changed.
        mailbox: MailboxId,
        /// The mailbox's HIGHESTMODSEQ after the change (RFC 7162 §3.1.1).
        modseq: ModSeq,
    },
    /// Domains, accounts, aliases, mailbox lists or DKIM keys changed.
    Directory,
    /// A message was queued for remote delivery, or a retry was asked for.
    Queue,
}

impl Store {
    /// Subscribes to the changes committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Announces a committed change; having no subscriber is not an error.
    pub(crate) fn notify(&self, change: Change) {
        let _ = self.changes.send(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use std::time::SystemTime;

    #[test]
    fn append_is_announced_after_commit() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let mut rx = store.subscribe();
        let meta = store
            .append(
                inbox.id,
                b"Subject: hi\r\n\r\nhello\r\n",
                &[],
                SystemTime::now(),
            )
            .unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            Change::Mailbox {
                account: alice.id,
                mailbox: inbox.id,
                modseq: meta.modseq
            }
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn directory_changes_are_announced() {
        let (_dir, store) = test_util::store();
        let mut rx = store.subscribe();
        store.add_domain("example.net").unwrap();
        assert_eq!(rx.try_recv().unwrap(), Change::Directory);
    }

    #[test]
    fn failed_operations_announce_nothing() {
        let (_dir, store) = test_util::store();
        let mut rx = store.subscribe();
        assert!(store.add_account("bob@nowhere.example", "h").is_err());
        assert!(rx.try_recv().is_err());
    }
}
