//! The selected mailbox as this session knows it (RFC 3501 §2.3.1.2): messages in
//! sequence order with the flags last reported, and how to bring that view up to
//! date with the store as untagged EXPUNGE / EXISTS / RECENT / FETCH responses.

use std::collections::HashSet;
use std::sync::Arc;

use imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use store::{MailboxId, ModSeq, Store, Uid};

use crate::line;
use crate::resp;

/// One message of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Its UID.
    pub uid: Uid,
    /// Its flags as last reported to the client (without `\Recent`).
    pub flags: Vec<String>,
    /// The MODSEQ those flags had.
    pub modseq: ModSeq,
    /// Expunged in the store, not yet reported (RFC 3501 §7.4.1 forbids EXPUNGE during
    /// FETCH, STORE and SEARCH).
    pub gone: bool,
}

/// The selected mailbox.
#[derive(Debug)]
pub struct Selected {
    /// The mailbox.
    pub id: MailboxId,
    /// Its name (UTF-8).
    pub name: String,
    /// EXAMINE: no flag changes, no expunge, no `\Recent` claims.
    pub read_only: bool,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// The messages in sequence order (sequence number = index + 1).
    pub messages: Vec<Msg>,
    /// UIDs that are `\Recent` in this session.
    pub recent: HashSet<Uid>,
    /// The highest MODSEQ reported (HIGHESTMODSEQ, RFC 7162).
    pub highest_modseq: ModSeq,
    /// UIDNEXT at the last sync.
    pub uid_next: Uid,
    /// QRESYNC is enabled: expunges are reported as VANISHED (RFC 7162 §3.2.10).
    pub vanished: bool,
}

/// What a sequence set names in the view.
#[derive(Debug)]
pub struct Resolved {
    /// Indexes into `messages`, ascending, without duplicates.
    pub indexes: Vec<usize>,
}

impl Selected {
    /// Opens `mailbox` for a session: its messages, and (read-write) the `\Recent`
    /// ones claimed for this session.
    pub fn open(
        store: &Arc<Store>,
        mailbox: &store::Mailbox,
        read_only: bool,
    ) -> Result<Selected, store::Error> {
        let recent_from = if read_only {
            Uid::MAX
        } else {
            store.claim_recent(mailbox.id)?
        };
        let current = store
            .mailbox_by_id(mailbox.id)?
            .unwrap_or_else(|| mailbox.clone());
        let metas = store.messages(mailbox.id)?;
        let messages: Vec<Msg> = metas
            .iter()
            .map(|m| Msg {
                uid: m.uid,
                flags: m.flags.clone(),
                modseq: m.modseq,
                gone: false,
            })
            .collect();
        let recent = metas
            .iter()
            .filter(|m| m.uid >= recent_from)
            .map(|m| m.uid)
            .collect();
        Ok(Selected {
            id: mailbox.id,
            name: mailbox.name.clone(),
            read_only,
            uid_validity: current.uid_validity,
            messages,
            recent,
            highest_modseq: current.highest_modseq,
            uid_next: current.uid_next,
            vanished: false,
        })
    }

    /// The number of messages (EXISTS).
    pub fn exists(&self) -> usize {
        self.messages.len()
    }

    /// The index of a UID, if in the view.
    pub fn index_of(&self, uid: Uid) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Brings the view up to date. With `expunge` false (during FETCH, STORE, SEARCH
    /// and their UID forms), messages expunged meanwhile stay in the view marked
    /// `gone` and their EXPUNGE waits. `uid` adds the UID to FETCH FLAGS updates,
    /// `modseq` the MODSEQ (CONDSTORE enabled). Appends the untagged responses to `out`.
    pub fn sync(
        &mut self,
        store: &Arc<Store>,
        out: &mut Vec<u8>,
        expunge: bool,
        uid: bool,
        modseq: bool,
    ) -> Result<(), store::Error> {
        let Some(current) = store.mailbox_by_id(self.id)? else {
            // Deleted under us: nothing more to report; the next command will fail.
            return Ok(());
        };
        if current.highest_modseq == self.highest_modseq && current.uid_next == self.uid_next {
            if expunge {
                self.report_gone(out);
            }
            return Ok(());
        }
        // Only what changed since the view's MODSEQ (the store's CHANGES index).
        let (changed, expunged) = store.changes_since(self.id, self.highest_modseq)?;
        for gone in expunged {
            if let Some(i) = self.index_of(gone) {
                self.messages[i].gone = true;
            }
        }
        if expunge {
            self.report_gone(out);
        }
        let last = self.messages.last().map_or(0, |m| m.uid);
        let mut updates = Vec::new();
        let mut fresh = Vec::new();
        for meta in changed {
            if meta.uid > last {
                fresh.push(meta);
                continue;
            }
            if let Some(i) = self.index_of(meta.uid) {
                let m = &mut self.messages[i];
                if m.gone || m.modseq == meta.modseq {
                    continue;
                }
                let differs = m.flags != meta.flags;
                m.flags = meta.flags;
                m.modseq = meta.modseq;
                if differs || modseq {
                    updates.push(i);
                }
            }
        }
        if !fresh.is_empty() {
            let recent_from = if self.read_only {
                Uid::MAX
            } else {
                store.claim_recent(self.id)?
            };
            for m in fresh {
                if m.uid >= recent_from {
                    self.recent.insert(m.uid);
                }
                self.messages.push(Msg {
                    uid: m.uid,
                    flags: m.flags,
                    modseq: m.modseq,
                    gone: false,
                });
            }
            line!(out, "* {} EXISTS", self.messages.len());
            line!(out, "* {} RECENT", self.recent.len());
        }
        for i in updates {
            self.write_flags(out, i, uid, modseq);
        }
        self.highest_modseq = current.highest_modseq;
        self.uid_next = current.uid_next;
        Ok(())
    }

    /// Sends EXPUNGE for every message marked gone, in ascending order as RFC 3501
    /// §6.4.3 shows it (each number counts the removals before it), and drops them
    /// from the view.
    fn report_gone(&mut self, out: &mut Vec<u8>) {
        let mut removed = 0;
        let mut vanished = Vec::new();
        for (i, m) in self.messages.iter().enumerate() {
            if m.gone {
                if self.vanished {
                    vanished.push(m.uid);
                } else {
                    line!(out, "* {} EXPUNGE", i + 1 - removed);
                }
                self.recent.remove(&m.uid);
                removed += 1;
            }
        }
        if !vanished.is_empty() {
            line!(out, "* VANISHED {}", crate::op::copy::ranges(&vanished));
        }
        if removed > 0 {
            self.messages.retain(|m| !m.gone);
        }
    }

    /// `* n FETCH (FLAGS (...) [UID u] [MODSEQ (m)])` for the message at `i`.
    pub fn write_flags(&self, out: &mut Vec<u8>, i: usize, uid: bool, modseq: bool) {
        let m = &self.messages[i];
        let _ =
            std::fmt::Write::write_fmt(&mut resp::Sink(out), format_args!("* {} FETCH (", i + 1));
        if uid {
            resp::raw(out, &format!("UID {} ", m.uid));
        }
        out.extend_from_slice(b"FLAGS ");
        resp::flag_list(out, self.flags_of(m));
        if modseq {
            resp::raw(out, &format!(" MODSEQ ({})", m.modseq));
        }
        out.extend_from_slice(b")\r\n");
    }

    /// The flags to show for a message, `\Recent` included where it applies.
    pub fn flags_of<'a>(&self, m: &'a Msg) -> Vec<&'a str> {
        let mut flags: Vec<&str> = m.flags.iter().map(String::as_str).collect();
        if self.recent.contains(&m.uid) {
            flags.push("\\Recent");
        }
        flags
    }

    /// Resolves a sequence set against the view: message sequence numbers, or UIDs
    /// (`uid`), where `*` is the last message (RFC 3501 §6.4.8, §9 seq-number). Out of
    /// range sequence numbers are an error (`Err` with the text for BAD); UIDs that do
    /// not exist are ignored. Works on ranges, not elements, so huge sets stay cheap.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Resolved, String> {
        let n = self.messages.len();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let largest_uid = self.messages.last().map(|m| m.uid);
        for seq in set.0.as_ref() {
            let (a, b) = match seq {
                Sequence::Single(x) => (*x, *x),
                Sequence::Range(a, b) => (*a, *b),
            };
            if uid {
                let Some(largest) = largest_uid else {
                    continue;
                };
                let value = |x: SeqOrUid| match x {
                    SeqOrUid::Value(v) => v.get(),
                    SeqOrUid::Asterisk => largest,
                };
                let (lo, hi) = {
                    let (x, y) = (value(a), value(b));
                    (x.min(y), x.max(y))
                };
                let start = self.messages.partition_point(|m| m.uid < lo);
                let end = self.messages.partition_point(|m| m.uid <= hi);
                if start < end {
                    ranges.push((start, end - 1));
                }
            } else {
                if n == 0 {
                    return Err("The mailbox is empty: no message sequence numbers exist".into());
                }
                let value = |x: SeqOrUid| -> Result<usize, String> {
                    match x {
                        SeqOrUid::Value(v) => {
                            let v = v.get() as usize;
                            if v > n {
                                Err(format!(
                                    "Message sequence number {v} is above {n}, the number of messages"
                                ))
                            } else {
                                Ok(v - 1)
                            }
                        }
                        SeqOrUid::Asterisk => Ok(n - 1),
                    }
                };
                let (x, y) = (value(a)?, value(b)?);
                ranges.push((x.min(y), x.max(y)));
            }
        }
        ranges.sort_unstable();
        let mut indexes = Vec::new();
        let mut next = 0usize;
        for (lo, hi) in ranges {
            let lo = lo.max(next);
            if lo > hi {
                continue;
            }
            indexes.extend(lo..=hi);
            next = hi + 1;
        }
        Ok(Resolved { indexes })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_types::command::CommandBody;

    fn view(uids: &[Uid]) -> Selected {
        Selected {
            id: 1,
            name: "INBOX".into(),
            read_only: false,
            uid_validity: 1,
            messages: uids
                .iter()
                .map(|&uid| Msg {
                    uid,
                    flags: vec![],
                    modseq: 1,
                    gone: false,
                })
                .collect(),
            recent: HashSet::new(),
            highest_modseq: 1,
            uid_next: uids.last().map_or(1, |u| u + 1),
            vanished: false,
        }
    }

    fn set(text: &str) -> SequenceSet {
        let line = format!("a FETCH {text} FLAGS\r\n");
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).unwrap();
        match cmd.body {
            CommandBody::Fetch { sequence_set, .. } => sequence_set,
            _ => unreachable!(),
        }
    }

    #[test]
    fn sequence_numbers_and_uids() {
        let v = view(&[3, 5, 9, 12]);
        assert_eq!(v.resolve(&set("1:*"), false).unwrap().indexes, [0, 1, 2, 3]);
        assert_eq!(v.resolve(&set("*:2"), false).unwrap().indexes, [1, 2, 3]);
        assert_eq!(v.resolve(&set("2,1,2"), false).unwrap().indexes, [0, 1]);
        assert!(v.resolve(&set("5"), false).is_err());
        // UIDs: missing ones ignored, ranges either way round, * = highest UID.
        assert_eq!(v.resolve(&set("4:10"), true).unwrap().indexes, [1, 2]);
        assert_eq!(v.resolve(&set("10:4"), true).unwrap().indexes, [1, 2]);
        assert_eq!(v.resolve(&set("100:*"), true).unwrap().indexes, [3]);
        assert_eq!(
            v.resolve(&set("1,2,4"), true).unwrap().indexes,
            Vec::<usize>::new()
        );
        let empty = view(&[]);
        assert!(empty.resolve(&set("1:*"), false).is_err());
        assert!(empty.resolve(&set("1:*"), true).unwrap().indexes.is_empty());
    }

    #[test]
    fn a_hundred_thousand_element_set_is_cheap() {
        let v = view(&(1..=10_000).collect::<Vec<_>>());
        let text: Vec<String> = (0..100_000)
            .map(|i| format!("{}:*", i % 10_000 + 1))
            .collect();
        let r = v.resolve(&set(&text.join(",")), false).unwrap();
        assert_eq!(r.indexes.len(), 10_000);
    }
}
