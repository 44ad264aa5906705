//! Mailboxes: names, SPECIAL-USE roles (RFC 6154), UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ.

use std::time::{SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::directory;
use crate::tables::{EXPUNGED, MAILBOX_NAMES, MAILBOXES, MESSAGES, META};
use crate::{
    AccountId, Change, Error, MailboxId, MessageMeta, ModSeq, Store, Uid, decode, decode_opt,
    encode, next_counter,
};

/// The SPECIAL-USE role of a mailbox (RFC 6154 §2), plus the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The inbox (RFC 3501 §5.1); not a SPECIAL-USE attribute.
    Inbox,
    /// `\Sent`: copies of messages sent.
    Sent,
    /// `\Drafts`: drafts being composed.
    Drafts,
    /// `\Trash`: messages the user deleted.
    Trash,
    /// `\Junk`: messages judged spam.
    Junk,
    /// `\Archive`: archived messages.
    Archive,
}

impl Role {
    /// Every role, in the order a new account's mailboxes are created.
    pub const ALL: [Role; 6] = [
        Role::Inbox,
        Role::Sent,
        Role::Drafts,
        Role::Trash,
        Role::Junk,
        Role::Archive,
    ];

    /// The SPECIAL-USE attribute for LIST (RFC 6154 §2); `None` for the inbox.
    pub fn special_use(&self) -> Option<&'static str> {
        match self {
            Role::Inbox => None,
            Role::Sent => Some("\\Sent"),
            Role::Drafts => Some("\\Drafts"),
            Role::Trash => Some("\\Trash"),
            Role::Junk => Some("\\Junk"),
            Role::Archive => Some("\\Archive"),
        }
    }

    /// The name a new account's mailbox with this role gets.
    pub fn default_name(&self) -> &'static str {
        match self {
            Role::Inbox => INBOX,
            Role::Sent => "Sent",
            Role::Drafts => "Drafts",
            Role::Trash => "Trash",
            Role::Junk => "Junk",
            Role::Archive => "Archive",
        }
    }
}

/// A mailbox of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// The mailbox's id, unique across accounts and never reused.
    pub id: MailboxId,
    /// The owning account.
    pub account: AccountId,
    /// The full name, `/`-separated; the inbox is always `INBOX`.
    pub name: String,
    /// The SPECIAL-USE role, if any; at most one mailbox per account has each role.
    #[serde(default)]
    pub role: Option<Role>,
    /// UIDVALIDITY (RFC 3501 §2.3.1.1): different for every mailbox ever created in this store.
    pub uid_validity: u32,
    /// The UID the next message will get; never goes down, even after expunge.
    pub uid_next: Uid,
    /// HIGHESTMODSEQ (RFC 7162 §3.1.1): the MODSEQ of the latest change to the mailbox.
    pub highest_modseq: ModSeq,
    /// The lowest UID no session has claimed as `\Recent` yet (RFC 3501 §2.3.2).
    #[serde(default)]
    pub recent_from: Uid,
}

/// The inbox's name (RFC 3501 §5.1: case-insensitive).
pub const INBOX: &str = "INBOX";

/// The hierarchy delimiter of mailbox names.
pub const DELIMITER: char = '/';

/// Longest mailbox name accepted, in octets.
const MAX_NAME_LEN: usize = 255;

/// Validates a mailbox name and returns its stored form (`INBOX` in upper case).
///
/// RFC 3501 §5.1: "INBOX" is case-insensitive, other names are stored as given. Wildcards
/// `*` and `%` (RFC 3501 §6.3.8) and control characters are refused, as are empty hierarchy
/// levels.
pub fn normalize_mailbox_name(name: &str) -> Result<String, Error> {
    let bad = |why: &str| Err(Error::Invalid(format!("the mailbox name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("is longer than {MAX_NAME_LEN} octets"));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return bad("holds a control character or a wildcard (* or %)");
    }
    if name.split(DELIMITER).any(str::is_empty) {
        return bad("has an empty hierarchy level");
    }
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_string());
    }
    Ok(name.to_string())
}

/// Allocates a UIDVALIDITY: strictly increasing across the store, seeded from the clock so
/// that a store rebuilt from scratch does not repeat the values of the one it replaces.
fn next_uid_validity(txn: &WriteTransaction) -> Result<u32, Error> {
    const KEY: &str = "next_uid_validity";
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(1)
        .max(1);
    let mut meta = txn.open_table(META)?;
    let stored = meta.get(KEY)?.map(|v| v.value()).unwrap_or(0);
    let value = stored.max(u64::from(clock));
    let uid_validity =
        u32::try_from(value).map_err(|_| Error::Exhausted("the UIDVALIDITY space".to_string()))?;
    meta.insert(KEY, value + 1)?;
    Ok(uid_validity)
}

/// Creates a mailbox inside a write transaction.
pub(crate) fn insert_mailbox(
    txn: &WriteTransaction,
    account: AccountId,
    name: &str,
    role: Option<Role>,
) -> Result<Mailbox, Error> {
    let name = normalize_mailbox_name(name)?;
    let mut names = txn.open_table(MAILBOX_NAMES)?;
    if names.get((account, name.as_str()))?.is_some() {
        return Err(Error::Exists(format!("the mailbox {name}")));
    }
    if let Some(role) = role {
        let mailboxes = txn.open_table(MAILBOXES)?;
        for entry in names.range((account, "")..)? {
            let (k, id) = entry?;
            if k.value().0 != account {
                break;
            }
            let other: Option<Mailbox> = decode_opt("a mailbox", mailboxes.get(id.value())?)?;
            if let Some(other) = other.filter(|m| m.role == Some(role)) {
                return Err(Error::Exists(format!(
                    "a mailbox with the role {role:?} ({})",
                    other.name
                )));
            }
        }
    }
    let mailbox = Mailbox {
        id: next_counter(txn, "next_mailbox_id", 1)?,
        account,
        name,
        role,
        uid_validity: next_uid_validity(txn)?,
        uid_next: 1,
        highest_modseq: 1,
        recent_from: 1,
    };
    names.insert((account, mailbox.name.as_str()), mailbox.id)?;
    save_mailbox(txn, &mailbox)?;
    crate::subscriptions::subscribe_in(txn, account, &mailbox.name)?;
    Ok(mailbox)
}

/// Loads a mailbox inside a write transaction; [`Error::NotFound`] if it does not exist.
pub(crate) fn load_mailbox(txn: &WriteTransaction, id: MailboxId) -> Result<Mailbox, Error> {
    decode_opt("a mailbox", txn.open_table(MAILBOXES)?.get(id)?)?
        .ok_or_else(|| Error::NotFound(format!("the mailbox with id {id}")))
}

/// Stores a mailbox inside a write transaction.
pub(crate) fn save_mailbox(txn: &WriteTransaction, mailbox: &Mailbox) -> Result<(), Error> {
    txn.open_table(MAILBOXES)?
        .insert(mailbox.id, encode("a mailbox", mailbox)?.as_slice())?;
    Ok(())
}

/// The ids of an account's mailboxes, inside a write transaction.
pub(crate) fn account_mailbox_ids(
    txn: &WriteTransaction,
    account: AccountId,
) -> Result<Vec<MailboxId>, Error> {
    let names = txn.open_table(MAILBOX_NAMES)?;
    let mut ids = Vec::new();
    for entry in names.range((account, "")..)? {
        let (k, id) = entry?;
        if k.value().0 != account {
            break;
        }
        ids.push(id.value());
    }
    Ok(ids)
}

/// What removing a mailbox freed.
pub(crate) struct Removed {
    /// The owning account.
    pub account: AccountId,
    /// The messages' last index entries, whose bodies go once the removal is
    /// committed (see [`crate::limbo`]).
    pub metas: Vec<MessageMeta>,
    /// Their total size, to take off the account's used bytes.
    pub bytes: u64,
}

/// Removes a mailbox, its messages and its expunge records inside a write transaction.
pub(crate) fn remove_mailbox(txn: &WriteTransaction, id: MailboxId) -> Result<Removed, Error> {
    let mailbox = load_mailbox(txn, id)?;
    txn.open_table(MAILBOXES)?.remove(id)?;
    txn.open_table(MAILBOX_NAMES)?
        .remove((mailbox.account, mailbox.name.as_str()))?;
    let mut removed = Removed {
        account: mailbox.account,
        metas: Vec::new(),
        bytes: 0,
    };
    let mut messages = txn.open_table(MESSAGES)?;
    let mut uids = Vec::new();
    for entry in messages.range((id, 0)..=(id, Uid::MAX))? {
        let (k, v) = entry?;
        let meta: MessageMeta = decode("a message", v.value())?;
        uids.push(k.value().1);
        removed.bytes = removed.bytes.saturating_add(meta.size);
        removed.metas.push(meta);
    }
    for uid in uids {
        messages.remove((id, uid))?;
    }
    {
        let mut headers = txn.open_table(crate::tables::HEADERS)?;
        let mut keys = Vec::new();
        for entry in headers.range((id, 0)..=(id, Uid::MAX))? {
            keys.push(entry?.0.value());
        }
        for key in keys {
            headers.remove(key)?;
        }
    }
    let mut changes = txn.open_table(crate::tables::CHANGES)?;
    let mut keys = Vec::new();
    for entry in changes.range((id, 0, 0)..=(id, ModSeq::MAX, Uid::MAX))? {
        keys.push(entry?.0.value());
    }
    for key in keys {
        changes.remove(key)?;
    }
    let mut expunged = txn.open_table(EXPUNGED)?;
    let mut uids = Vec::new();
    for entry in expunged.range((id, 0)..=(id, Uid::MAX))? {
        uids.push(entry?.0.value().1);
    }
    for uid in uids {
        expunged.remove((id, uid))?;
    }
    Ok(removed)
}

impl Store {
    /// An account's mailboxes: INBOX first, then by name.
    pub fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>, Error> {
        self.read(|txn| {
            let names = txn.open_table(MAILBOX_NAMES)?;
            let mailboxes = txn.open_table(MAILBOXES)?;
            let mut out: Vec<Mailbox> = Vec::new();
            for entry in names.range((account, "")..)? {
                let (k, id) = entry?;
                let (owner, name) = k.value();
                if owner != account {
                    break;
                }
                let mailbox = decode_opt("a mailbox", mailboxes.get(id.value())?)?
                    .ok_or_else(|| Error::Corrupt(format!("the mailbox {name} has no record")))?;
                out.push(mailbox);
            }
            out.sort_by(|a, b| (a.name != INBOX, &a.name).cmp(&(b.name != INBOX, &b.name)));
            Ok(out)
        })
    }

    /// An account's mailbox by name ("INBOX" case-insensitive, RFC 3501 §5.1).
    pub fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>, Error> {
        let name = normalize_mailbox_name(name)?;
        self.read(|txn| {
            let Some(id) = txn
                .open_table(MAILBOX_NAMES)?
                .get((account, name.as_str()))?
            else {
                return Ok(None);
            };
            decode_opt("a mailbox", txn.open_table(MAILBOXES)?.get(id.value())?)
        })
    }

    /// A mailbox by id.
    pub fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>, Error> {
        self.read(|txn| decode_opt("a mailbox", txn.open_table(MAILBOXES)?.get(id)?))
    }

    /// An account's mailbox with the given role (e.g. where Sieve's `fileinto :specialuse`
    /// or junk filing puts mail).
    pub fn mailbox_by_role(
        &self,
        account: AccountId,
        role: Role,
    ) -> Result<Option<Mailbox>, Error> {
        // INBOX always has the inbox role (it cannot be renamed away or deleted).
        if role == Role::Inbox
            && let Some(inbox) = self.mailbox(account, INBOX)?
            && inbox.role == Some(Role::Inbox)
        {
            return Ok(Some(inbox));
        }
        Ok(self
            .mailboxes(account)?
            .into_iter()
            .find(|m| m.role == Some(role)))
    }

    /// Creates a mailbox. [`Error::Exists`] if the name or the role is taken in the account;
    /// [`Error::NotFound`] if the account does not exist.
    pub fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        role: Option<Role>,
    ) -> Result<Mailbox, Error> {
        let mailbox = self.write(|txn| {
            if txn
                .open_table(crate::tables::ACCOUNTS)?
                .get(account)?
                .is_none()
            {
                return Err(Error::NotFound(format!("the account with id {account}")));
            }
            insert_mailbox(txn, account, name, role)
        })?;
        self.notify(Change::Directory);
        Ok(mailbox)
    }

    /// Deletes a mailbox with its messages (RFC 3501 §6.3.4), freeing their quota; INBOX
    /// cannot be deleted.
    pub fn delete_mailbox(&self, mailbox: MailboxId) -> Result<(), Error> {
        let metas = self.write(|txn| {
            if load_mailbox(txn, mailbox)?.name == INBOX {
                return Err(Error::Invalid(
                    "INBOX cannot be deleted (RFC 3501 §6.3.4)".into(),
                ));
            }
            let removed = remove_mailbox(txn, mailbox)?;
            let mut account = directory::load_account(txn, removed.account)?;
            account.used_bytes = account.used_bytes.saturating_sub(removed.bytes);
            directory::save_account(txn, &account)?;
            Ok(removed.metas)
        })?;
        let unlink = self.limbo.retire(mailbox, ModSeq::MAX, metas, true);
        self.blobs.remove_all(&unlink);
        self.notify(Change::Directory);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use std::collections::HashSet;

    #[test]
    fn new_accounts_get_special_use_mailboxes() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let boxes = store.mailboxes(alice.id).unwrap();
        let got: Vec<_> = boxes.iter().map(|m| (m.name.as_str(), m.role)).collect();
        assert_eq!(
            got,
            [
                ("INBOX", Some(Role::Inbox)),
                ("Archive", Some(Role::Archive)),
                ("Drafts", Some(Role::Drafts)),
                ("Junk", Some(Role::Junk)),
                ("Sent", Some(Role::Sent)),
                ("Trash", Some(Role::Trash)),
            ]
        );
        for m in &boxes {
            assert_eq!((m.uid_next, m.account), (1, alice.id));
        }
        assert_eq!(Role::Sent.special_use(), Some("\\Sent"));
        assert_eq!(Role::Inbox.special_use(), None);
        assert_eq!(
            store
                .mailbox_by_role(alice.id, Role::Junk)
                .unwrap()
                .unwrap()
                .name,
            "Junk"
        );
    }

    #[test]
    fn inbox_is_case_insensitive_other_names_are_not() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "InBoX").unwrap().unwrap();
        assert_eq!(inbox.name, "INBOX");
        assert!(store.mailbox(alice.id, "sent").unwrap().is_none());
        assert!(matches!(
            store.create_mailbox(alice.id, "inbox", None),
            Err(Error::Exists(_))
        ));
        assert_eq!(store.mailbox_by_id(inbox.id).unwrap().unwrap(), inbox);
    }

    #[test]
    fn create_mailbox_rules() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let m = store.create_mailbox(alice.id, "Lists/rust", None).unwrap();
        assert_eq!(store.mailbox(alice.id, "Lists/rust").unwrap().unwrap(), m);
        assert!(matches!(
            store.create_mailbox(alice.id, "Lists/rust", None),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            store.create_mailbox(alice.id, "Spam", Some(Role::Junk)),
            Err(Error::Exists(_))
        ));
        for bad in ["", "a//b", "/a", "a/", "a*", "50%", "a\nb"] {
            assert!(
                matches!(
                    store.create_mailbox(alice.id, bad, None),
                    Err(Error::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            store.create_mailbox(999, "x", None),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn uid_validity_is_distinct_for_every_mailbox() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let mut seen = HashSet::new();
        for m in store.mailboxes(alice.id).unwrap() {
            assert!(m.uid_validity > 0);
            assert!(seen.insert(m.uid_validity));
        }
        let x = store.create_mailbox(alice.id, "x", None).unwrap();
        store.delete_mailbox(x.id).unwrap();
        let x2 = store.create_mailbox(alice.id, "x", None).unwrap();
        assert!(x2.uid_validity > x.uid_validity);
        assert_ne!(x2.id, x.id);
        assert!(seen.insert(x.uid_validity) && seen.insert(x2.uid_validity));
    }

    #[test]
    fn delete_and_subscribe() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, INBOX).unwrap().unwrap();
        assert!(matches!(
            store.delete_mailbox(inbox.id),
            Err(Error::Invalid(_))
        ));
        let trash = store.mailbox(alice.id, "Trash").unwrap().unwrap();
        store
            .append(trash.id, b"x", &[], SystemTime::now())
            .unwrap();
        store.delete_mailbox(trash.id).unwrap();
        assert!(store.mailbox(alice.id, "Trash").unwrap().is_none());
        assert!(matches!(
            store.delete_mailbox(trash.id),
            Err(Error::NotFound(_))
        ));
        store
            .create_mailbox(alice.id, "Bin", Some(Role::Trash))
            .unwrap();
    }
}
