//! Subscriptions (RFC 3501 §6.3.6, §6.3.7): names an account subscribed to, kept apart
//! from its mailboxes, since "the server MUST NOT unilaterally remove an existing
//! mailbox name from the subscription list even if a mailbox by that name no longer
//! exists". A new mailbox starts subscribed; RENAME takes the subscriptions of the
//! renamed names along.

use redb::{ReadableTable, WriteTransaction};

use crate::mailbox::normalize_mailbox_name;
use crate::tables::SUBSCRIPTIONS;
use crate::{AccountId, Change, Error, Store};

/// Subscribes `name` (already normalised) within a write transaction.
pub(crate) fn subscribe_in(
    txn: &WriteTransaction,
    account: AccountId,
    name: &str,
) -> Result<(), Error> {
    txn.open_table(SUBSCRIPTIONS)?.insert((account, name), 0)?;
    Ok(())
}

/// Drops every subscription of an account (the account is deleted).
pub(crate) fn remove_account(txn: &WriteTransaction, account: AccountId) -> Result<(), Error> {
    let mut table = txn.open_table(SUBSCRIPTIONS)?;
    let names: Vec<String> = names_in(&table, account)?;
    for name in names {
        table.remove((account, name.as_str()))?;
    }
    Ok(())
}

/// Moves the subscriptions of `renames` (old name -> new name) within a transaction.
pub(crate) fn rename_in(
    txn: &WriteTransaction,
    account: AccountId,
    renames: &[(String, String)],
) -> Result<(), Error> {
    let mut table = txn.open_table(SUBSCRIPTIONS)?;
    let mut moved = Vec::new();
    for (old, new) in renames {
        if table.remove((account, old.as_str()))?.is_some() {
            moved.push(new);
        }
    }
    for new in moved {
        table.insert((account, new.as_str()), 0)?;
    }
    Ok(())
}

fn names_in(
    table: &impl ReadableTable<(u64, &'static str), u8>,
    account: AccountId,
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for entry in table.range((account, "")..)? {
        let (k, _) = entry?;
        let (owner, name) = k.value();
        if owner != account {
            break;
        }
        out.push(name.to_string());
    }
    Ok(out)
}

impl Store {
    /// Adds `name` to the account's subscriptions (RFC 3501 §6.3.6).
    pub fn subscribe_mailbox(&self, account: AccountId, name: &str) -> Result<(), Error> {
        let name = normalize_mailbox_name(name)?;
        self.write(|txn| subscribe_in(txn, account, &name))?;
        self.notify(Change::Directory);
        Ok(())
    }

    /// Removes `name` from the account's subscriptions (RFC 3501 §6.3.7); a name not
    /// subscribed is no error.
    pub fn unsubscribe_mailbox(&self, account: AccountId, name: &str) -> Result<(), Error> {
        let name = normalize_mailbox_name(name)?;
        self.write(|txn| {
            txn.open_table(SUBSCRIPTIONS)?
                .remove((account, name.as_str()))?;
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(())
    }

    /// The account's subscribed names, in order; a name may outlive its mailbox.
    pub fn subscriptions(&self, account: AccountId) -> Result<Vec<String>, Error> {
        self.read(|txn| names_in(&txn.open_table(SUBSCRIPTIONS)?, account))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util;

    #[test]
    fn subscriptions_outlive_their_mailboxes_and_follow_renames() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let subs = |s: &crate::Store| s.subscriptions(alice.id).unwrap();
        assert!(
            subs(&store).contains(&"Sent".to_string()),
            "new mailboxes start subscribed"
        );
        let work = store.create_mailbox(alice.id, "Work", None).unwrap();
        store.create_mailbox(alice.id, "Work/2026", None).unwrap();
        store.unsubscribe_mailbox(alice.id, "Work").unwrap();
        store.unsubscribe_mailbox(alice.id, "Work").unwrap();
        store.rename_mailbox(alice.id, "Work", "Job").unwrap();
        let now = subs(&store);
        assert!(now.contains(&"Job/2026".to_string()) && !now.contains(&"Work/2026".to_string()));
        assert!(!now.contains(&"Job".to_string()), "Work was not subscribed");
        store.subscribe_mailbox(alice.id, "Job").unwrap();
        store
            .delete_mailbox(store.mailbox(alice.id, "Job/2026").unwrap().unwrap().id)
            .unwrap();
        assert!(
            subs(&store).contains(&"Job/2026".to_string()),
            "RFC 3501 §6.3.6"
        );
        let _ = work;
        store.delete_account(&alice.email).unwrap();
        assert!(subs(&store).is_empty());
    }
}
