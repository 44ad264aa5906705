//! COPY and MOVE (RFC 3501 §6.4.7, RFC 6851): one write transaction that reads the
//! sources and writes the copies (and, for a move, removes the sources), so a message
//! expunged or moved by another session meanwhile cannot be copied from a stale entry:
//! then nothing is done and the caller gets [`Error::Expunged`]. All or none.

use std::collections::HashMap;

use redb::ReadableTable;

use crate::mailbox::load_mailbox;
use crate::message::{expunge_in, load_message, move_header, stage_append};
use crate::tables::HEADERS;
use crate::{Change, Error, MailboxId, Store, Uid};

impl Store {
    /// Copies messages (ascending UIDs of `src`) into `dst`, keeping flags and internal
    /// dates; each copy gets its own body file (a hard link). Returns (source UID, new
    /// UID) pairs for COPYUID (RFC 4315). [`Error::Expunged`] if any of them is gone,
    /// [`Error::OverQuota`] if they do not fit: then `dst` is as it was.
    pub fn copy_messages(
        &self,
        src: MailboxId,
        uids: &[Uid],
        dst: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>, Error> {
        self.copy_or_move(src, uids, dst, false)
    }

    /// Moves messages: the copies and the removal from `src` commit together (RFC
    /// 6851 §3.3); the body files move with them. Errors as [`Store::copy_messages`].
    pub fn move_messages(
        &self,
        src: MailboxId,
        uids: &[Uid],
        dst: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>, Error> {
        self.copy_or_move(src, uids, dst, true)
    }

    fn copy_or_move(
        &self,
        src: MailboxId,
        uids: &[Uid],
        dst: MailboxId,
        remove: bool,
    ) -> Result<Vec<(Uid, Uid)>, Error> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let gate = self
            .blob_gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A copy's body file is a link to the source's, made before the transaction;
        // the transaction checks that the source still names that file.
        let mut links: HashMap<Uid, (String, String)> = HashMap::new();
        if !remove {
            let result = self.link_bodies(src, uids, &mut links);
            if let Err(e) = result {
                let made: Vec<String> = links.into_values().map(|(_, new)| new).collect();
                self.blobs.remove_all(&made);
                return Err(e);
            }
        }
        let mut staged = None;
        let result = self.write(|txn| {
            let mut sources = Vec::with_capacity(uids.len());
            for &uid in uids {
                match load_message(txn, src, uid) {
                    Ok(m) => sources.push(m),
                    Err(Error::NotFound(_)) => {
                        return Err(Error::Expunged(format!("the message with UID {uid}")));
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut pairs = Vec::with_capacity(sources.len());
            for m in &sources {
                let blob = if remove {
                    m.blob.clone()
                } else {
                    match links.get(&m.uid) {
                        Some((from, new)) if *from == m.blob => new.clone(),
                        _ => {
                            return Err(Error::Expunged(format!("the message with UID {}", m.uid)));
                        }
                    }
                };
                let (meta, _) =
                    stage_append(txn, dst, blob, m.size, m.flags.clone(), m.internal_date)?;
                if remove {
                    move_header(txn, (src, m.uid), (dst, meta.uid))?;
                } else {
                    let mut headers = txn.open_table(HEADERS)?;
                    let row = headers.get((src, m.uid))?.map(|v| v.value().to_vec());
                    if let Some(row) = row {
                        headers.insert((dst, meta.uid), row.as_slice())?;
                    }
                }
                pairs.push((m.uid, meta.uid));
            }
            // A move's sources leave `src`; expunge_in frees the bytes stage_append
            // counted a second time.
            let moved = if remove {
                Some(expunge_in(txn, src, uids)?)
            } else {
                None
            };
            let dst_box = load_mailbox(txn, dst)?;
            if let Some(m) = &moved {
                // Last before the commit: sessions showing them keep reading them.
                let held = self.limbo.stage(src, m.modseq, &m.metas);
                staged = Some((m.modseq, m.metas.clone(), held));
            }
            Ok((pairs, dst_box.account, dst_box.highest_modseq, moved))
        });
        drop(gate);
        match result {
            Ok((pairs, account, modseq, moved)) => {
                self.notify(Change::Mailbox {
                    account,
                    mailbox: dst,
                    modseq,
                });
                if let Some(moved) = moved {
                    let modseq = moved.modseq;
                    let held = staged.is_some_and(|(_, _, held)| held);
                    let unlink = self.limbo.settle(src, modseq, moved.metas, held, false);
                    self.blobs.remove_all(&unlink);
                    self.notify(Change::Mailbox {
                        account,
                        mailbox: src,
                        modseq,
                    });
                }
                Ok(pairs)
            }
            Err(e) => {
                if let Some((modseq, metas, true)) = staged {
                    self.limbo.abort(src, modseq, &metas);
                }
                let made: Vec<String> = links.into_values().map(|(_, new)| new).collect();
                self.blobs.remove_all(&made);
                Err(e)
            }
        }
    }

    /// Links a new body file for each source message (UID -> (source file, new file))
    /// and makes them durable. A source already gone is left out: the transaction will
    /// find it missing.
    fn link_bodies(
        &self,
        src: MailboxId,
        uids: &[Uid],
        links: &mut HashMap<Uid, (String, String)>,
    ) -> Result<(), Error> {
        for &uid in uids {
            let Some(m) = self.message(src, uid)? else {
                continue;
            };
            if let Some(new) = self.blobs.link(&m.blob)? {
                links.insert(uid, (m.blob, new));
            }
        }
        let ids: Vec<&str> = links.values().map(|(_, new)| new.as_str()).collect();
        self.blobs.sync_fan_outs(&ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use std::time::SystemTime;

    fn append(store: &Store, mailbox: MailboxId, text: &str, flags: &[&str]) -> Uid {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        store
            .append(mailbox, text.as_bytes(), &flags, SystemTime::now())
            .unwrap()
            .uid
    }

    #[test]
    fn copy_and_move_keep_flags_and_bodies_all_or_none() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let dst = store.create_mailbox(alice.id, "Dst", None).unwrap();
        let u1 = append(&store, inbox.id, "one\r\n", &["\\Flagged"]);
        let u2 = append(&store, inbox.id, "two\r\n", &[]);
        // One source gone: nothing is copied.
        assert!(matches!(
            store.copy_messages(inbox.id, &[u1, u2, 99], dst.id),
            Err(Error::Expunged(_))
        ));
        assert!(store.messages(dst.id).unwrap().is_empty());
        let pairs = store.copy_messages(inbox.id, &[u1, u2], dst.id).unwrap();
        assert_eq!(pairs, vec![(u1, 1), (u2, 2)]);
        let copied = store.messages(dst.id).unwrap();
        assert_eq!(copied[0].flags, vec!["\\Flagged".to_string()]);
        assert_ne!(copied[0].blob, store.messages(inbox.id).unwrap()[0].blob);
        assert_eq!(store.read_body(&copied[1]).unwrap(), b"two\r\n");
        // Each copy owns its file: expunging the source leaves the copy readable.
        store.expunge(inbox.id, &[u1]).unwrap();
        assert_eq!(store.read_body(&copied[0]).unwrap(), b"one\r\n");
        let used = store.account_by_id(alice.id).unwrap().unwrap().used_bytes;
        assert!(matches!(
            store.move_messages(inbox.id, &[u1, u2], dst.id),
            Err(Error::Expunged(_))
        ));
        assert_eq!(store.messages(inbox.id).unwrap().len(), 1);
        let pairs = store.move_messages(inbox.id, &[u2], dst.id).unwrap();
        assert_eq!(pairs, vec![(u2, 3)]);
        assert!(store.messages(inbox.id).unwrap().is_empty());
        let moved = store.message(dst.id, 3).unwrap().unwrap();
        assert_eq!(store.read_body(&moved).unwrap(), b"two\r\n");
        assert_eq!(
            store.account_by_id(alice.id).unwrap().unwrap().used_bytes,
            used
        );
        assert_eq!(store.expunged_since(inbox.id, 0).unwrap(), vec![u1, u2]);
    }

    #[test]
    fn racing_moves_and_expunges_leave_every_body_with_one_entry() {
        let (dir, store, alice) = test_util::store_with_alice();
        let store = std::sync::Arc::new(store);
        let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
        let a = store.create_mailbox(alice.id, "A", None).unwrap();
        let b = store.create_mailbox(alice.id, "B", None).unwrap();
        let uids: Vec<Uid> = (0..60)
            .map(|i| append(&store, inbox.id, &format!("m{i}\r\n"), &[]))
            .collect();
        let threads: Vec<_> = [a.id, b.id, 0]
            .into_iter()
            .map(|target| {
                let store = store.clone();
                let uids = uids.clone();
                std::thread::spawn(move || {
                    for u in uids {
                        let _ = if target == 0 {
                            store.expunge(inbox.id, &[u]).map(|_| ())
                        } else {
                            store.move_messages(inbox.id, &[u], target).map(|_| ())
                        };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut blobs = std::collections::HashSet::new();
        for m in [inbox.id, a.id, b.id] {
            for meta in store.messages(m).unwrap() {
                assert!(blobs.insert(meta.blob.clone()), "two entries on one body");
                store.read_body(&meta).unwrap();
            }
        }
        let on_disk = crate::blob::BlobDir::open(&dir.path().join("data/blobs"))
            .unwrap()
            .list()
            .unwrap();
        assert_eq!(on_disk, blobs, "every body has exactly its entry");
    }
}
