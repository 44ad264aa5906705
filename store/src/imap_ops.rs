//! Mailbox operations IMAP needs beyond append/flags/expunge: renaming a mailbox with its
//! children (RFC 3501 §6.3.5, including the INBOX rule), copying and moving messages in
//! one transaction (RFC 3501 §6.4.7, RFC 6851), changing the flags of many messages at
//! once with a MODSEQ guard (RFC 7162 §3.1.3), and the `\Recent` watermark (RFC 3501
//! §2.3.2: a message is recent in exactly one session).

use redb::ReadableTable;

use crate::mailbox::{load_mailbox, normalize_mailbox_name, save_mailbox};
use crate::message::{expunge_in, header_block, move_header, save_header, stage_append};
use crate::tables::MAILBOX_NAMES;
use crate::{
    AccountId, Change, DELIMITER, Error, INBOX, MailboxId, MessageMeta, Store, Uid, decode,
    normalize_flags,
};

impl Store {
    /// Renames `from` to `to` in an account, with every mailbox below it. Renaming INBOX
    /// moves its messages into a new mailbox `to` and leaves INBOX empty (RFC 3501
    /// §6.3.5). [`Error::Exists`] if `to` (or a child's new name) is taken,
    /// [`Error::NotFound`] if `from` does not exist.
    pub fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<(), Error> {
        let from = normalize_mailbox_name(from)?;
        let to = normalize_mailbox_name(to)?;
        if to == INBOX {
            return Err(Error::Exists("INBOX".into()));
        }
        let result = self.write(|txn| {
            let id = txn
                .open_table(MAILBOX_NAMES)?
                .get((account, from.as_str()))?
                .map(|v| v.value())
                .ok_or_else(|| Error::NotFound(format!("the mailbox {from}")))?;
            if txn
                .open_table(MAILBOX_NAMES)?
                .get((account, to.as_str()))?
                .is_some()
            {
                return Err(Error::Exists(format!("the mailbox {to}")));
            }
            if from == INBOX {
                // The messages move to a new mailbox; INBOX stays, empty.
                let target = crate::mailbox::insert_mailbox(txn, account, &to, None)?;
                let messages: Vec<MessageMeta> = {
                    let table = txn.open_table(crate::tables::MESSAGES)?;
                    let mut out = Vec::new();
                    for entry in table.range((id, 0)..=(id, Uid::MAX))? {
                        out.push(decode("a message", entry?.1.value())?);
                    }
                    out
                };
                for m in &messages {
                    // The body file moves with its index entry.
                    let (meta, _) = stage_append(
                        txn,
                        target.id,
                        m.blob.clone(),
                        m.size,
                        m.flags.clone(),
                        m.internal_date,
                    )?;
                    move_header(txn, (id, m.uid), (target.id, meta.uid))?;
                }
                let uids: Vec<Uid> = messages.iter().map(|m| m.uid).collect();
                // expunge_in frees the bytes stage_append counted a second time.
                let e = expunge_in(txn, id, &uids)?;
                return Ok(Some((id, e)));
            }
            // The mailbox and its children, by name.
            let prefix = format!("{from}{DELIMITER}");
            let mut renames: Vec<(String, MailboxId)> = Vec::new();
            {
                let names = txn.open_table(MAILBOX_NAMES)?;
                for entry in names.range((account, from.as_str())..)? {
                    let (k, v) = entry?;
                    let (owner, name) = k.value();
                    if owner != account {
                        break;
                    }
                    if name == from || name.starts_with(&prefix) {
                        renames.push((name.to_string(), v.value()));
                    } else if name > prefix.as_str() && !name.starts_with(from.as_str()) {
                        break;
                    }
                }
            }
            if renames.is_empty() {
                renames.push((from.clone(), id));
            }
            let mut names = txn.open_table(MAILBOX_NAMES)?;
            let mut pairs = Vec::with_capacity(renames.len());
            for (old, _) in &renames {
                let new = format!("{to}{}", &old[from.len()..]);
                let new = normalize_mailbox_name(&new)?;
                if new != *old && names.get((account, new.as_str()))?.is_some() {
                    return Err(Error::Exists(format!("the mailbox {new}")));
                }
                pairs.push((old.clone(), new));
            }
            crate::subscriptions::rename_in(txn, account, &pairs)?;
            for (old, _) in &renames {
                names.remove((account, old.as_str()))?;
            }
            for (old, mid) in &renames {
                let new = format!("{to}{}", &old[from.len()..]);
                names.insert((account, new.as_str()), *mid)?;
                let mut m = load_mailbox(txn, *mid)?;
                m.name = new;
                save_mailbox(txn, &m)?;
            }
            Ok(None)
        });
        if let Some((inbox, e)) = result? {
            // INBOX's messages moved: sessions showing them keep reading them.
            let unlink = self.limbo.retire(inbox, e.modseq, e.metas, false);
            self.blobs.remove_all(&unlink);
        }
        self.notify(Change::Directory);
        Ok(())
    }

    /// Appends several messages to a mailbox in one transaction (one fsync for all):
    /// bodies first, then the index entries. All or none: [`Error::OverQuota`] or any
    /// other failure leaves the mailbox as it was. Returns the new entries in order.
    pub fn append_many(
        &self,
        mailbox: MailboxId,
        messages: &[(Vec<u8>, Vec<String>, std::time::SystemTime)],
    ) -> Result<Vec<MessageMeta>, Error> {
        let mut flags = Vec::with_capacity(messages.len());
        for (_, f, _) in messages {
            flags.push(normalize_flags(f)?);
        }
        let gate = self
            .blob_gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut blobs = Vec::with_capacity(messages.len());
        for (body, _, _) in messages {
            match self.blobs.write_unsynced(body) {
                Ok(b) => blobs.push(b),
                Err(e) => {
                    self.blobs.remove_all(&blobs);
                    return Err(e);
                }
            }
        }
        let ids: Vec<&str> = blobs.iter().map(String::as_str).collect();
        let result = self.blobs.sync_fan_outs(&ids).and_then(|()| {
            self.write(|txn| {
                let mut metas = Vec::with_capacity(messages.len());
                let mut account = None;
                for (((body, _, date), flags), blob) in messages.iter().zip(flags).zip(&blobs) {
                    let size = u64::try_from(body.len()).unwrap_or(u64::MAX);
                    let date = crate::from_ms(crate::to_ms(*date));
                    let (meta, acc) = stage_append(txn, mailbox, blob.clone(), size, flags, date)?;
                    save_header(txn, mailbox, meta.uid, header_block(body))?;
                    account = Some(acc);
                    metas.push(meta);
                }
                Ok((metas, account))
            })
        });
        drop(gate);
        match result {
            Ok((metas, account)) => {
                if let (Some(account), Some(last)) = (account, metas.last()) {
                    self.notify(Change::Mailbox {
                        account,
                        mailbox,
                        modseq: last.modseq,
                    });
                }
                Ok(metas)
            }
            Err(e) => {
                self.blobs.remove_all(&blobs);
                Err(e)
            }
        }
    }

    /// Claims the mailbox's messages with UIDs below `upto` that no session has seen
    /// yet as `\Recent` for the caller: returns the first UID that is recent for it
    /// (its recent messages are those from there up to `upto`), and moves the watermark
    /// to `upto` so that no other session sees them as recent (RFC 3501 §2.3.2). The
    /// watermark is not worth an fsync: a crash at worst shows a few messages as
    /// recent again.
    pub fn claim_recent(&self, mailbox: MailboxId, upto: Uid) -> Result<Uid, Error> {
        // Nothing new since the last claim (the usual case): no write transaction.
        let first = self.recent_from(mailbox)?;
        if upto <= first {
            return Ok(first);
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)
            .map_err(|e| Error::Db(e.to_string()))?;
        let first = {
            let mut m = load_mailbox(&txn, mailbox)?;
            let first = m.recent_from.max(1);
            if upto > first {
                m.recent_from = upto;
                save_mailbox(&txn, &m)?;
            }
            first
        };
        txn.commit()?;
        Ok(first)
    }

    /// The first UID no session has claimed as `\Recent` (EXAMINE and STATUS look,
    /// claiming nothing).
    pub fn recent_from(&self, mailbox: MailboxId) -> Result<Uid, Error> {
        Ok(self
            .mailbox_by_id(mailbox)?
            .map_or(1, |m| m.recent_from.max(1)))
    }

    /// Every stored header block of a mailbox in one buffer: the buffer, and each
    /// message's UID (ascending) with its block's range in it. Header searches read
    /// this instead of a row per message.
    #[allow(clippy::type_complexity)]
    pub fn header_blocks(
        &self,
        mailbox: MailboxId,
    ) -> Result<(Vec<u8>, Vec<(Uid, std::ops::Range<usize>)>), Error> {
        self.read(|txn| {
            let table = txn.open_table(crate::tables::HEADERS)?;
            let mut arena = Vec::new();
            let mut index = Vec::new();
            for entry in table.range((mailbox, 0)..=(mailbox, Uid::MAX))? {
                let (k, v) = entry?;
                let start = arena.len();
                arena.extend_from_slice(v.value());
                index.push((k.value().1, start..arena.len()));
            }
            Ok((arena, index))
        })
    }

    /// A mailbox and all its messages (ascending UID), read together; `None` if it no
    /// longer exists.
    pub fn mailbox_state(
        &self,
        mailbox: MailboxId,
    ) -> Result<Option<(crate::Mailbox, Vec<MessageMeta>)>, Error> {
        self.read(|txn| {
            let Some(m) = crate::decode_opt::<crate::Mailbox>(
                "a mailbox",
                txn.open_table(crate::tables::MAILBOXES)?.get(mailbox)?,
            )?
            else {
                return Ok(None);
            };
            let messages = txn.open_table(crate::tables::MESSAGES)?;
            let mut out = Vec::new();
            for entry in messages.range((mailbox, 0)..=(mailbox, Uid::MAX))? {
                out.push(decode("a message", entry?.1.value())?);
            }
            Ok(Some((m, out)))
        })
    }

    /// A mailbox and what changed in it after MODSEQ `since` (as
    /// [`Store::changes_since`]), read together so the mailbox's HIGHESTMODSEQ and
    /// UIDNEXT describe exactly those changes; `None` if it no longer exists.
    #[allow(clippy::type_complexity)]
    pub fn mailbox_changes(
        &self,
        mailbox: MailboxId,
        since: crate::ModSeq,
    ) -> Result<Option<(crate::Mailbox, Vec<MessageMeta>, Vec<Uid>)>, Error> {
        self.read(|txn| {
            let Some(m) = crate::decode_opt::<crate::Mailbox>(
                "a mailbox",
                txn.open_table(crate::tables::MAILBOXES)?.get(mailbox)?,
            )?
            else {
                return Ok(None);
            };
            if m.highest_modseq <= since {
                return Ok(Some((m, Vec::new(), Vec::new())));
            }
            let (changed, expunged) = crate::message::changes_in(txn, mailbox, since)?;
            Ok(Some((m, changed, expunged)))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_util;

    fn append(store: &Store, mailbox: MailboxId, text: &str, flags: &[&str]) -> Uid {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        store
            .append(
                mailbox,
                text.as_bytes(),
                &flags,
                std::time::SystemTime::now(),
            )
            .unwrap()
            .uid
    }

    #[test]
    fn rename_takes_children_along_and_inbox_moves_its_messages() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let a = store.create_mailbox(alice.id, "Work", None).unwrap();
        store.create_mailbox(alice.id, "Work/2026", None).unwrap();
        store.create_mailbox(alice.id, "Work Stuff", None).unwrap();
        append(&store, a.id, "Subject: a\r\n\r\nx\r\n", &["\\Seen"]);
        store.rename_mailbox(alice.id, "Work", "Job").unwrap();
        let names: Vec<String> = store
            .mailboxes(alice.id)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains(&"Job".into()) && names.contains(&"Job/2026".into()));
        assert!(names.contains(&"Work Stuff".into()) && !names.contains(&"Work".into()));
        let job = store.mailbox(alice.id, "Job").unwrap().unwrap();
        assert_eq!(job.id, a.id, "same mailbox, same UIDVALIDITY");
        assert!(matches!(
            store.rename_mailbox(alice.id, "Job", "Work Stuff"),
            Err(Error::Exists(_))
        ));
        // INBOX: its messages go to the new mailbox, INBOX stays and is empty.
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        append(&store, inbox.id, "Subject: b\r\n\r\ny\r\n", &[]);
        let used = store.account_by_id(alice.id).unwrap().unwrap().used_bytes;
        store.rename_mailbox(alice.id, "inbox", "Old").unwrap();
        assert!(store.messages(inbox.id).unwrap().is_empty());
        let old = store.mailbox(alice.id, "Old").unwrap().unwrap();
        let moved = store.messages(old.id).unwrap();
        assert_eq!(moved.len(), 1);
        assert_eq!(
            store.read_body(&moved[0]).unwrap(),
            b"Subject: b\r\n\r\ny\r\n"
        );
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            used
        );
    }

    #[test]
    fn append_many_is_one_transaction_and_all_or_nothing() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let now = std::time::SystemTime::now();
        let metas = store
            .append_many(
                inbox.id,
                &[
                    (b"one\r\n".to_vec(), vec!["\\Seen".into()], now),
                    (b"two\r\n".to_vec(), vec![], now),
                ],
            )
            .unwrap();
        assert_eq!(metas.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.read_body(&metas[1]).unwrap(), b"two\r\n");
        store.set_quota("alice@example.org", 20).unwrap();
        let over = store.append_many(
            inbox.id,
            &[
                (b"three\r\n".to_vec(), vec![], now),
                (vec![b'x'; 100], vec![], now),
            ],
        );
        assert!(matches!(over, Err(Error::OverQuota { .. })), "{over:?}");
        assert_eq!(store.messages(inbox.id).unwrap().len(), 2);
    }

    #[test]
    fn changes_since_reads_only_what_changed_and_survives_the_schema_1_upgrade() {
        let (dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let u1 = append(&store, inbox.id, "one\r\n", &[]);
        let u2 = append(&store, inbox.id, "two\r\n", &[]);
        let u3 = append(&store, inbox.id, "three\r\n", &[]);
        let mark = store
            .mailbox_by_id(inbox.id)
            .unwrap()
            .unwrap()
            .highest_modseq;
        store.set_flags(inbox.id, u1, &["\\Seen".into()]).unwrap();
        store.expunge(inbox.id, &[u2]).unwrap();
        let u4 = append(&store, inbox.id, "four\r\n", &[]);
        let (changed, expunged) = store.changes_since(inbox.id, mark).unwrap();
        assert_eq!(changed.iter().map(|m| m.uid).collect::<Vec<_>>(), [u1, u4]);
        assert_eq!(changed[0].flags, ["\\Seen"]);
        assert_eq!(expunged, [u2]);
        let (all, _) = store.changes_since(inbox.id, 0).unwrap();
        assert_eq!(all.iter().map(|m| m.uid).collect::<Vec<_>>(), [u1, u3, u4]);
        // A schema-1 store (no CHANGES index) gets it built when opened.
        store
            .write(|txn| {
                let mut t = txn.open_table(crate::tables::CHANGES)?;
                let keys: Vec<_> = t
                    .iter()?
                    .map(|e| e.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for k in keys {
                    t.remove(k)?;
                }
                txn.open_table(crate::tables::META)?
                    .insert("schema_version", 1)?;
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("data")).unwrap();
        assert_eq!(store.schema_version().unwrap(), crate::SCHEMA_VERSION);
        let (changed, expunged) = store.changes_since(inbox.id, mark).unwrap();
        assert_eq!(changed.iter().map(|m| m.uid).collect::<Vec<_>>(), [u1, u4]);
        assert_eq!(expunged, [u2]);
    }

    #[test]
    fn header_blocks_follow_their_messages() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let dst = store.create_mailbox(alice.id, "Dst", None).unwrap();
        let u1 = append(&store, inbox.id, "Subject: one\r\n\r\nbody\r\n", &[]);
        let u2 = append(&store, inbox.id, "Subject: two\r\n\r\nbody\r\n", &[]);
        let h = |m, u| store.headers(m, &[u]).unwrap().remove(0);
        assert_eq!(h(inbox.id, u1).unwrap(), b"Subject: one\r\n\r\n");
        let copied = store.copy_messages(inbox.id, &[u1], dst.id).unwrap();
        assert_eq!(h(dst.id, copied[0].1).unwrap(), b"Subject: one\r\n\r\n");
        let moved = store.move_messages(inbox.id, &[u2], dst.id).unwrap();
        assert_eq!(h(dst.id, moved[0].1).unwrap(), b"Subject: two\r\n\r\n");
        assert_eq!(h(inbox.id, u2), None);
        store.rename_mailbox(alice.id, "INBOX", "Old").unwrap();
        let old = store.mailbox(alice.id, "Old").unwrap().unwrap();
        assert_eq!(h(old.id, 1).unwrap(), b"Subject: one\r\n\r\n");
        store.expunge(old.id, &[1]).unwrap();
        assert_eq!(h(old.id, 1), None);
        let many = store
            .append_many(
                dst.id,
                &[(
                    b"Subject: m\r\n\r\nx\r\n".to_vec(),
                    vec![],
                    std::time::SystemTime::now(),
                )],
            )
            .unwrap();
        assert_eq!(h(dst.id, many[0].uid).unwrap(), b"Subject: m\r\n\r\n");
    }
}
