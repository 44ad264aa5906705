//! Messages: append, list, read, flags and expunge, with UIDs (RFC 3501 §2.3.1.1), MODSEQ
//! (RFC 7162) and the account quota.

use std::collections::HashSet;
use std::sync::PoisonError;
use std::time::SystemTime;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::directory::{load_account, save_account};
use crate::mailbox::{load_mailbox, save_mailbox};
use crate::tables::{CHANGES, EXPUNGED, HEADERS, MAILBOXES, MESSAGES};
use crate::{AccountId, Change, Error, MailboxId, ModSeq, Store, Uid, decode, decode_opt, encode};

/// The index entry of a message; the body lives in a blob file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// The mailbox holding the message.
    pub mailbox: MailboxId,
    /// The message's UID in its mailbox.
    pub uid: Uid,
    /// The id of the body's blob file.
    pub blob: String,
    /// The body's size in octets (RFC822.SIZE).
    #[serde(default)]
    pub size: u64,
    /// The message's flags and keywords (RFC 3501 §2.3.2), without `\Recent`.
    #[serde(default)]
    pub flags: Vec<String>,
    /// INTERNALDATE (RFC 3501 §2.3.3), kept to the millisecond.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub internal_date: SystemTime,
    /// The MODSEQ of the message's last change (RFC 7162 §3.1).
    #[serde(default)]
    pub modseq: ModSeq,
}

/// The system flags (RFC 3501 §2.3.2), stored in this capitalisation whatever the input.
const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Validates flags, drops `\Recent` (RFC 3501 §2.3.2: session-only, never set by a client),
/// canonicalises system flags and removes case-insensitive duplicates.
///
/// RFC 3501 §9: `flag-keyword = atom`, `flag-extension = "\" atom`; an atom holds no
/// atom-specials (`(){ %*"\]`, space, controls) and only 7-bit characters. `NIL` is
/// refused too: in a flag list it reads as nil, not as a keyword.
pub fn normalize_flags(flags: &[String]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::with_capacity(flags.len());
    for flag in flags {
        let atom = flag.strip_prefix('\\').unwrap_or(flag);
        let valid = !atom.is_empty()
            && !flag.eq_ignore_ascii_case("NIL")
            && atom
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
        if !valid {
            return Err(Error::Invalid(format!(
                "the flag {flag:?} is not an atom (RFC 3501 §9)"
            )));
        }
        if flag.eq_ignore_ascii_case("\\Recent") {
            continue;
        }
        let flag = SYSTEM_FLAGS
            .iter()
            .find(|s| s.eq_ignore_ascii_case(flag))
            .map_or_else(|| flag.clone(), |s| (*s).to_string());
        if !out.iter().any(|f| f.eq_ignore_ascii_case(&flag)) {
            out.push(flag);
        }
    }
    Ok(out)
}

/// Loads one message inside a write transaction; [`Error::NotFound`] if it does not exist.
pub(crate) fn load_message(
    txn: &WriteTransaction,
    mailbox: MailboxId,
    uid: Uid,
) -> Result<MessageMeta, Error> {
    decode_opt("a message", txn.open_table(MESSAGES)?.get((mailbox, uid))?)?
        .ok_or_else(|| Error::NotFound(format!("the message with UID {uid} in mailbox {mailbox}")))
}

/// Writes a message's index entry and moves it in the CHANGES index from its
/// `previous` MODSEQ (none for a new message) to its current one.
pub(crate) fn save_message(
    txn: &WriteTransaction,
    meta: &MessageMeta,
    previous: Option<ModSeq>,
) -> Result<(), Error> {
    txn.open_table(MESSAGES)?.insert(
        (meta.mailbox, meta.uid),
        encode("a message", meta)?.as_slice(),
    )?;
    let mut changes = txn.open_table(CHANGES)?;
    if let Some(old) = previous {
        changes.remove((meta.mailbox, old, meta.uid))?;
    }
    changes.insert((meta.mailbox, meta.modseq, meta.uid), CHANGED)?;
    Ok(())
}

/// The header block of a message: up to and including the blank line (all of it when
/// there is none), at most 64 KiB.
pub fn header_block(body: &[u8]) -> &[u8] {
    const MAX: usize = 64 * 1024;
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| body.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(body.len());
    &body[..end.min(MAX)]
}

/// Stores a message's header block (see [`crate::tables::HEADERS`]).
pub(crate) fn save_header(
    txn: &WriteTransaction,
    mailbox: MailboxId,
    uid: Uid,
    header: &[u8],
) -> Result<(), Error> {
    txn.open_table(HEADERS)?.insert((mailbox, uid), header)?;
    Ok(())
}

/// Moves a header row to a message's new place (MOVE, renaming INBOX).
pub(crate) fn move_header(
    txn: &WriteTransaction,
    from: (MailboxId, Uid),
    to: (MailboxId, Uid),
) -> Result<(), Error> {
    let mut headers = txn.open_table(HEADERS)?;
    let row = headers.remove(from)?.map(|v| v.value().to_vec());
    if let Some(row) = row {
        headers.insert(to, row.as_slice())?;
    }
    Ok(())
}

/// What changed in a mailbox after MODSEQ `since`, read in `txn` (see
/// [`Store::changes_since`]).
pub(crate) fn changes_in(
    txn: &redb::ReadTransaction,
    mailbox: MailboxId,
    since: ModSeq,
) -> Result<(Vec<MessageMeta>, Vec<Uid>), Error> {
    let changes = txn.open_table(CHANGES)?;
    let messages = txn.open_table(MESSAGES)?;
    let mut changed = Vec::new();
    let mut expunged = Vec::new();
    let start = since.saturating_add(1);
    for entry in changes.range((mailbox, start, 0)..=(mailbox, ModSeq::MAX, Uid::MAX))? {
        let (k, kind) = entry?;
        let (_, _, uid) = k.value();
        if kind.value() == EXPUNGED_MARK {
            expunged.push(uid);
        } else if let Some(meta) =
            decode_opt::<MessageMeta>("a message", messages.get((mailbox, uid))?)?
        {
            changed.push(meta);
        }
    }
    changed.sort_by_key(|m| m.uid);
    expunged.sort_unstable();
    Ok((changed, expunged))
}

/// CHANGES values.
const CHANGED: u8 = 0;
const EXPUNGED_MARK: u8 = 1;

/// Takes the next MODSEQ of a mailbox (RFC 7162 §3.1: strictly ascending per mailbox).
pub(crate) fn bump_modseq(mailbox: &mut crate::Mailbox) -> Result<ModSeq, Error> {
    mailbox.highest_modseq = mailbox
        .highest_modseq
        .checked_add(1)
        .ok_or_else(|| Error::Exhausted(format!("the MODSEQ space of mailbox {}", mailbox.name)))?;
    Ok(mailbox.highest_modseq)
}

/// Records an appended message in the index, inside a write transaction.
pub(crate) fn stage_append(
    txn: &WriteTransaction,
    mailbox: MailboxId,
    blob: String,
    size: u64,
    flags: Vec<String>,
    internal_date: SystemTime,
) -> Result<(MessageMeta, AccountId), Error> {
    let mut mbox = load_mailbox(txn, mailbox)?;
    let mut account = load_account(txn, mbox.account)?;
    let used = account.used_bytes;
    if account.quota_bytes > 0 && used.saturating_add(size) > account.quota_bytes {
        return Err(Error::OverQuota {
            account: account.email,
            quota: account.quota_bytes,
            used,
            size,
        });
    }
    // RFC 3501 §2.3.1.1: UIDs strictly ascend and are never reused.
    let uid = mbox.uid_next;
    mbox.uid_next = uid
        .checked_add(1)
        .ok_or_else(|| Error::Exhausted(format!("the UID space of mailbox {}", mbox.name)))?;
    let meta = MessageMeta {
        mailbox,
        uid,
        blob,
        size,
        flags,
        internal_date,
        modseq: bump_modseq(&mut mbox)?,
    };
    save_message(txn, &meta, None)?;
    save_mailbox(txn, &mbox)?;
    account.used_bytes = used.saturating_add(size);
    save_account(txn, &account)?;
    Ok((meta, mbox.account))
}

/// What [`expunge_in`] removed.
pub(crate) struct Expunged {
    /// The UIDs removed, ascending.
    pub removed: Vec<Uid>,
    /// Their last index entries, for the caller to retire after the commit (their body
    /// files deleted, or kept on a move; see [`crate::limbo`]).
    pub metas: Vec<MessageMeta>,
    /// The MODSEQ of the expunge (the mailbox's highest if nothing was removed).
    pub modseq: ModSeq,
}

/// Removes messages from the index within `txn`, records the expunge MODSEQ per UID
/// for QRESYNC (RFC 7162 §3.2.10) and frees their bytes from the account's quota.
pub(crate) fn expunge_in(
    txn: &WriteTransaction,
    mailbox: MailboxId,
    uids: &[Uid],
) -> Result<Expunged, Error> {
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    let mut mbox = load_mailbox(txn, mailbox)?;
    let mut removed = Vec::new();
    let mut metas = Vec::new();
    let mut bytes = 0u64;
    {
        let mut messages = txn.open_table(MESSAGES)?;
        let mut changes = txn.open_table(CHANGES)?;
        for &uid in &uids {
            let Some(v) = messages.remove((mailbox, uid))? else {
                continue;
            };
            let meta: MessageMeta = decode("a message", v.value())?;
            changes.remove((mailbox, meta.modseq, uid))?;
            txn.open_table(HEADERS)?.remove((mailbox, uid))?;
            removed.push(uid);
            bytes = bytes.saturating_add(meta.size);
            metas.push(meta);
        }
    }
    if removed.is_empty() {
        return Ok(Expunged {
            removed,
            metas,
            modseq: mbox.highest_modseq,
        });
    }
    let modseq = bump_modseq(&mut mbox)?;
    {
        let mut expunged = txn.open_table(EXPUNGED)?;
        let mut changes = txn.open_table(CHANGES)?;
        for &uid in &removed {
            expunged.insert((mailbox, uid), modseq)?;
            changes.insert((mailbox, modseq, uid), EXPUNGED_MARK)?;
        }
    }
    save_mailbox(txn, &mbox)?;
    let mut account = load_account(txn, mbox.account)?;
    account.used_bytes = account.used_bytes.saturating_sub(bytes);
    save_account(txn, &account)?;
    Ok(Expunged {
        removed,
        metas,
        modseq,
    })
}

impl Store {
    /// Appends a message to a mailbox: the body is made durable first, then the index entry
    /// committed with the next UID and MODSEQ, and the account's used bytes updated
    /// (group-committed with concurrent appends, [`Store::commit`]).
    ///
    /// [`Error::OverQuota`] if the account's quota would be exceeded; [`Error::NotFound`] if
    /// the mailbox does not exist.
    pub fn append(
        &self,
        mailbox: MailboxId,
        body: &[u8],
        flags: &[String],
        internal_date: SystemTime,
    ) -> Result<MessageMeta, Error> {
        let mut batch = crate::Batch::new();
        batch.append(mailbox, body, flags, internal_date);
        match self.commit(batch)?.appended.pop() {
            Some(crate::Appended::Stored(meta)) => Ok(meta),
            other => Err(Error::Db(format!("the append was not stored: {other:?}"))),
        }
    }

    /// A mailbox's messages in ascending UID order. [`Error::NotFound`] if it does not exist.
    pub fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>, Error> {
        self.read(|txn| {
            if txn.open_table(MAILBOXES)?.get(mailbox)?.is_none() {
                return Err(Error::NotFound(format!("the mailbox with id {mailbox}")));
            }
            let messages = txn.open_table(MESSAGES)?;
            let mut out = Vec::new();
            for entry in messages.range((mailbox, 0)..=(mailbox, Uid::MAX))? {
                let (_, v) = entry?;
                out.push(decode("a message", v.value())?);
            }
            Ok(out)
        })
    }

    /// One message by UID, if it exists.
    pub fn message(&self, mailbox: MailboxId, uid: Uid) -> Result<Option<MessageMeta>, Error> {
        self.read(|txn| decode_opt("a message", txn.open_table(MESSAGES)?.get((mailbox, uid))?))
    }

    /// Reads a message's body. [`Error::Corrupt`] if the index references a missing body.
    pub fn read_body(&self, msg: &MessageMeta) -> Result<Vec<u8>, Error> {
        self.blobs.read(&msg.blob)?.ok_or_else(|| {
            Error::Corrupt(format!(
                "the body of the message with UID {} in mailbox {} (blob {}) is missing",
                msg.uid, msg.mailbox, msg.blob
            ))
        })
    }

    /// Opens a message's body for reading in parts (a FETCH streams it instead of
    /// holding it whole). [`Error::Corrupt`] if the index references a missing body or
    /// one of another size.
    pub fn open_body(&self, msg: &MessageMeta) -> Result<std::fs::File, Error> {
        let missing = || {
            Error::Corrupt(format!(
                "the body of the message with UID {} in mailbox {} (blob {}) is missing",
                msg.uid, msg.mailbox, msg.blob
            ))
        };
        let (file, path) = self.blobs.open_body(&msg.blob)?.ok_or_else(missing)?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len != msg.size {
            return Err(Error::Corrupt(format!(
                "the body of the message with UID {} in mailbox {} has {len} octets, the index says {}",
                msg.uid, msg.mailbox, msg.size
            )));
        }
        Ok(file)
    }

    /// Replaces a message's flags and gives it the mailbox's next MODSEQ (RFC 7162 §3.1).
    /// [`Error::NotFound`] if there is no such message.
    pub fn set_flags(
        &self,
        mailbox: MailboxId,
        uid: Uid,
        flags: &[String],
    ) -> Result<MessageMeta, Error> {
        let flags = normalize_flags(flags)?;
        let (meta, account) = self.write(|txn| {
            let mut mbox = load_mailbox(txn, mailbox)?;
            let mut meta = load_message(txn, mailbox, uid)?;
            let previous = meta.modseq;
            meta.flags = flags;
            meta.modseq = bump_modseq(&mut mbox)?;
            save_message(txn, &meta, Some(previous))?;
            save_mailbox(txn, &mbox)?;
            Ok((meta, mbox.account))
        })?;
        self.notify(Change::Mailbox {
            account,
            mailbox,
            modseq: meta.modseq,
        });
        Ok(meta)
    }

    /// Removes messages from the index, then deletes their bodies and frees their quota.
    /// Returns the UIDs actually removed, ascending; UIDs not present are ignored.
    ///
    /// The expunge takes one new MODSEQ, recorded per UID for QRESYNC (RFC 7162 §3.2.10).
    pub fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>, Error> {
        self.expunge_if(mailbox, uids, |_| true)
    }

    /// EXPUNGE (RFC 3501 §6.4.3): removes those of `uids` that carry `\Deleted` at the
    /// moment of the removal, their flags read in the same write transaction (so a
    /// message whose `\Deleted` another session just cleared stays). Returns the UIDs
    /// removed, ascending.
    pub fn expunge_deleted(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>, Error> {
        self.expunge_if(mailbox, uids, |m| m.flags.iter().any(|f| f == "\\Deleted"))
    }

    fn expunge_if(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        keep_unless: impl Fn(&MessageMeta) -> bool,
    ) -> Result<Vec<Uid>, Error> {
        let mut staged = None;
        let result = self.write(|txn| {
            let mut chosen = Vec::with_capacity(uids.len());
            {
                let messages = txn.open_table(MESSAGES)?;
                for &uid in uids {
                    if let Some(meta) =
                        decode_opt::<MessageMeta>("a message", messages.get((mailbox, uid))?)?
                        && keep_unless(&meta)
                    {
                        chosen.push(uid);
                    }
                }
            }
            let e = expunge_in(txn, mailbox, &chosen)?;
            let account = load_mailbox(txn, mailbox)?.account;
            // Last before the commit: sessions showing them keep reading them.
            let held = self.limbo.stage(mailbox, e.modseq, &e.metas);
            staged = Some((e.modseq, e.metas.clone(), held));
            Ok((e, account))
        });
        let (expunged, account) = match result {
            Ok(r) => r,
            Err(e) => {
                if let Some((modseq, metas, true)) = staged {
                    self.limbo.abort(mailbox, modseq, &metas);
                }
                return Err(e);
            }
        };
        let held = staged.is_some_and(|(_, _, held)| held);
        if !expunged.removed.is_empty() {
            let unlink = self
                .limbo
                .settle(mailbox, expunged.modseq, expunged.metas, held, true);
            self.blobs.remove_all(&unlink);
            self.notify(Change::Mailbox {
                account,
                mailbox,
                modseq: expunged.modseq,
            });
        }
        Ok(expunged.removed)
    }

    /// The stored header blocks of messages (`None` for a message stored before the
    /// header table existed, or gone), in one read.
    pub fn headers(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        self.read(|txn| {
            let headers = txn.open_table(HEADERS)?;
            let mut out = Vec::with_capacity(uids.len());
            for &uid in uids {
                out.push(headers.get((mailbox, uid))?.map(|v| v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// What changed in a mailbox after MODSEQ `since`, from the CHANGES index (no
    /// full scan): the messages appended or whose flags changed (their current entries,
    /// ascending UID), and the UIDs expunged (ascending).
    pub fn changes_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> Result<(Vec<MessageMeta>, Vec<Uid>), Error> {
        self.read(|txn| changes_in(txn, mailbox, since))
    }

    /// The UIDs expunged from a mailbox with a MODSEQ above `since`, ascending, for
    /// `VANISHED (EARLIER)` (RFC 7162 §3.2.5.2).
    pub fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> Result<Vec<Uid>, Error> {
        self.read(|txn| {
            let expunged = txn.open_table(EXPUNGED)?;
            let mut out = Vec::new();
            for entry in expunged.range((mailbox, 0)..=(mailbox, Uid::MAX))? {
                let (k, modseq) = entry?;
                if modseq.value() > since {
                    out.push(k.value().1);
                }
            }
            Ok(out)
        })
    }

    /// Deletes body files that no index entry references (left by a crash between a body's
    /// write and its commit, or between an expunge's commit and its deletions). Returns how
    /// many were deleted. Appends wait while it runs.
    pub fn sweep_orphan_blobs(&self) -> Result<usize, Error> {
        let _gate = self
            .blob_gate
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let referenced: HashSet<String> = self.read(|txn| {
            let messages = txn.open_table(MESSAGES)?;
            let mut ids = HashSet::new();
            for entry in messages.iter()? {
                let (_, v) = entry?;
                let meta: MessageMeta = decode("a message", v.value())?;
                ids.insert(meta.blob);
            }
            Ok(ids)
        })?;
        let mut referenced = referenced;
        referenced.extend(self.queued_blobs()?);
        let mut swept = 0;
        for id in self.blobs.list()? {
            if !referenced.contains(&id) && !self.limbo.holds_body(&id) {
                self.blobs.remove(&id)?;
                swept += 1;
            }
        }
        if swept > 0 {
            tracing::info!(swept, "removed unreferenced message bodies");
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use std::time::{Duration, UNIX_EPOCH};

    fn flags(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    fn blob_count(dir: &std::path::Path) -> usize {
        let mut n = 0;
        for d in std::fs::read_dir(dir.join("data/blobs")).unwrap() {
            let d = d.unwrap();
            if d.file_name() != "tmp" {
                n += std::fs::read_dir(d.path()).unwrap().count();
            }
        }
        n
    }

    #[test]
    fn append_read_list() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let date = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut last_modseq = inbox.highest_modseq;
        for (i, body) in [&b"one"[..], b"two!", b""].iter().enumerate() {
            let m = store
                .append(inbox.id, body, &flags(&["\\seen"]), date)
                .unwrap();
            assert_eq!(m.uid, i as u32 + 1);
            assert!(m.modseq > last_modseq);
            last_modseq = m.modseq;
            assert_eq!(m.size, body.len() as u64);
            assert_eq!(m.flags, ["\\Seen"]);
            assert_eq!(m.internal_date, date);
            assert_eq!(store.read_body(&m).unwrap(), *body);
        }
        let list = store.messages(inbox.id).unwrap();
        assert_eq!(list.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(store.message(inbox.id, 2).unwrap().unwrap(), list[1]);
        let inbox = store.mailbox_by_id(inbox.id).unwrap().unwrap();
        assert_eq!((inbox.uid_next, inbox.highest_modseq), (4, last_modseq));
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            7
        );
        assert!(matches!(store.messages(12345), Err(Error::NotFound(_))));
    }

    #[test]
    fn append_to_missing_mailbox_leaves_no_body() {
        let (dir, store, _alice) = test_util::store_with_alice();
        assert!(matches!(
            store.append(999, b"x", &[], SystemTime::now()),
            Err(Error::NotFound(_))
        ));
        assert_eq!(blob_count(dir.path()), 0);
    }

    #[test]
    fn flags_bump_modseq() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let m = store
            .append(inbox.id, b"x", &[], SystemTime::now())
            .unwrap();
        let m2 = store
            .set_flags(
                inbox.id,
                m.uid,
                &flags(&["\\Flagged", "$Junk", "\\flagged", "\\Recent"]),
            )
            .unwrap();
        assert_eq!(m2.flags, ["\\Flagged", "$Junk"]);
        assert!(m2.modseq > m.modseq);
        let m3 = store.set_flags(inbox.id, m.uid, &[]).unwrap();
        assert!(m3.modseq > m2.modseq);
        assert_eq!(store.message(inbox.id, m.uid).unwrap().unwrap(), m3);
        assert_eq!(
            store
                .mailbox_by_id(inbox.id)
                .unwrap()
                .unwrap()
                .highest_modseq,
            m3.modseq
        );
        assert!(matches!(
            store.set_flags(inbox.id, 99, &[]),
            Err(Error::NotFound(_))
        ));
        for bad in ["", "\\", "a b", "(x)", "x*", "caf\u{e9}", "NIL", "nil"] {
            assert!(
                matches!(
                    store.set_flags(inbox.id, m.uid, &flags(&[bad])),
                    Err(Error::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expunge_never_reuses_uids_and_frees_quota() {
        let (dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let a = store
            .append(inbox.id, b"aaaa", &[], SystemTime::now())
            .unwrap();
        let b = store
            .append(inbox.id, b"bb", &[], SystemTime::now())
            .unwrap();
        assert_eq!(blob_count(dir.path()), 2);
        assert_eq!(
            store.expunge(inbox.id, &[b.uid, 77, b.uid]).unwrap(),
            [b.uid]
        );
        assert_eq!(blob_count(dir.path()), 1);
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            4
        );
        assert_eq!(store.expunged_since(inbox.id, b.modseq).unwrap(), [b.uid]);
        let after = store
            .mailbox_by_id(inbox.id)
            .unwrap()
            .unwrap()
            .highest_modseq;
        assert!(store.expunged_since(inbox.id, after).unwrap().is_empty());
        assert!(store.expunge(inbox.id, &[b.uid]).unwrap().is_empty());
        let c = store
            .append(inbox.id, b"c", &[], SystemTime::now())
            .unwrap();
        assert_eq!(c.uid, 3);
        assert!(c.modseq > after);
        assert_eq!(
            store.expunge(inbox.id, &[a.uid, c.uid]).unwrap(),
            [a.uid, c.uid]
        );
        assert!(store.messages(inbox.id).unwrap().is_empty());
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            0
        );
        assert_eq!(blob_count(dir.path()), 0);
        let d = store
            .append(inbox.id, b"d", &[], SystemTime::now())
            .unwrap();
        assert_eq!(d.uid, 4);
    }

    #[test]
    fn uids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, body) = {
            let store = Store::open(dir.path()).unwrap();
            store.add_domain("example.org").unwrap();
            let alice = store.add_account("alice@example.org", "h").unwrap();
            let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap().id;
            let m = store
                .append(inbox, b"kept", &[], SystemTime::now())
                .unwrap();
            store.expunge(inbox, &[m.uid]).unwrap();
            store
                .append(inbox, b"body", &[], SystemTime::now())
                .unwrap();
            (inbox, b"body".to_vec())
        };
        let store = Store::open(dir.path()).unwrap();
        let list = store.messages(inbox).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].uid, 2);
        assert_eq!(store.read_body(&list[0]).unwrap(), body);
        assert_eq!(
            store
                .append(inbox, b"x", &[], SystemTime::now())
                .unwrap()
                .uid,
            3
        );
    }

    #[test]
    fn quota_is_enforced() {
        let (dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        store.set_quota(&alice.email, 10).unwrap();
        store
            .append(inbox.id, b"123456", &[], SystemTime::now())
            .unwrap();
        let err = store
            .append(inbox.id, b"123456", &[], SystemTime::now())
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::OverQuota {
                    quota: 10,
                    used: 6,
                    size: 6,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("alice@example.org"));
        assert_eq!(blob_count(dir.path()), 1);
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            6
        );
        store
            .append(inbox.id, b"1234", &[], SystemTime::now())
            .unwrap();
        store.set_quota(&alice.email, 0).unwrap();
        store
            .append(inbox.id, &[0; 100], &[], SystemTime::now())
            .unwrap();
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            110
        );
    }

    #[test]
    fn delete_mailbox_frees_quota() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let junk = store.mailbox(alice.id, "Junk").unwrap().unwrap();
        store
            .append(junk.id, b"spam", &[], SystemTime::now())
            .unwrap();
        store.delete_mailbox(junk.id).unwrap();
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            0
        );
    }

    #[test]
    fn sweep_removes_only_orphans() {
        let (dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let m = store
            .append(inbox.id, b"keep", &[], SystemTime::now())
            .unwrap();
        store.blobs.write(b"orphan").unwrap();
        assert_eq!(blob_count(dir.path()), 2);
        assert_eq!(store.sweep_orphan_blobs().unwrap(), 1);
        assert_eq!(store.sweep_orphan_blobs().unwrap(), 0);
        assert_eq!(store.read_body(&m).unwrap(), b"keep");
    }

    #[test]
    fn missing_body_is_corrupt() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let m = store
            .append(inbox.id, b"x", &[], SystemTime::now())
            .unwrap();
        store.blobs.remove(&m.blob).unwrap();
        assert!(matches!(store.read_body(&m), Err(Error::Corrupt(_))));
        let mut forged = m.clone();
        forged.blob = "../../store.redb".into();
        assert!(matches!(store.read_body(&forged), Err(Error::Invalid(_))));
    }

    #[test]
    fn concurrent_appends_share_commits_and_one_failure_spares_the_others() {
        let (dir, store, alice) = test_util::store_with_alice();
        let bob = store.add_account("bob@example.org", "$hash").unwrap();
        let store = std::sync::Arc::new(store);
        let inbox = |id| store.mailbox(id, "INBOX").unwrap().unwrap().id;
        let (a_inbox, b_inbox) = (inbox(alice.id), inbox(bob.id));
        // Bob can take one 100-byte message; the second in any batch is over quota.
        store.set_quota("bob@example.org", 150).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    let mut over = 0;
                    for i in 0..20 {
                        let (mailbox, body) = if t == 0 && i < 2 {
                            (b_inbox, vec![b'b'; 100])
                        } else {
                            (a_inbox, format!("{t}-{i}").into_bytes())
                        };
                        match store.append(mailbox, &body, &[], SystemTime::now()) {
                            Ok(_) => ok += 1,
                            Err(Error::OverQuota { .. }) => over += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (ok, over)
                })
            })
            .collect();
        let (ok, over) = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!((ok, over), (319, 1));
        let msgs = store.messages(a_inbox).unwrap();
        assert_eq!(msgs.len(), 318);
        let uids: Vec<Uid> = msgs.iter().map(|m| m.uid).collect();
        assert!(uids.windows(2).all(|w| w[0] < w[1]), "UIDs strictly ascend");
        for m in &msgs {
            let body = store.read_body(m).unwrap();
            assert!(std::str::from_utf8(&body).unwrap().contains('-'));
        }
        assert_eq!(store.messages(b_inbox).unwrap().len(), 1);
        // The refused body was removed: 318 + 1 bodies on disk.
        assert_eq!(blob_count(dir.path()), 319);
    }
}
