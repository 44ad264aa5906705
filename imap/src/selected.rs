//! The selected mailbox as this session knows it (RFC 3501 §2.3.1.2): messages in
//! sequence order with the flags last reported, and how to bring that view up to
//! date with the store as untagged EXPUNGE / EXISTS / RECENT / FETCH responses, at
//! the points the RFC allows (RFC 3501 §7.4.1, §5.5).
//!
//! A message expunged or moved by another session stays in the view, readable, until
//! this session has sent its EXPUNGE (RFC 2180 §4.1.1): the view holds it in the
//! store ([`store::ExpungeHold`]). Keywords the client has not been told about are
//! announced with FLAGS (and PERMANENTFLAGS) before any FETCH uses them (RFC 3501
//! §7.2.6).

use std::collections::HashSet;
use std::sync::Arc;

use imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use store::{ExpungeHold, MailboxId, MessageMeta, ModSeq, Store, Uid};

use crate::flags::{FlagSet, Keywords, LISTED};
use crate::line;
use crate::resp;
use crate::snapshot::Cache;

/// One message of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Its UID.
    pub uid: Uid,
    /// Its flags as last reported to the client (without `\Recent`).
    pub flags: FlagSet,
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
    /// The keywords the messages' flag bits name.
    pub keywords: Keywords,
    /// How many of `keywords` the client was told in FLAGS.
    pub announced: usize,
    /// UIDs that are `\Recent` in this session.
    pub recent: HashSet<Uid>,
    /// The highest MODSEQ reported (HIGHESTMODSEQ, RFC 7162).
    pub highest_modseq: ModSeq,
    /// UIDNEXT at the last sync.
    pub uid_next: Uid,
    /// QRESYNC is enabled: expunges are reported as VANISHED (RFC 7162 §3.2.10).
    pub vanished: bool,
    /// Messages marked `gone`.
    gone: usize,
    hold: ExpungeHold,
}

/// What a sequence set names in the view.
#[derive(Debug)]
pub struct Resolved {
    /// Indexes into `messages`, ascending, without duplicates.
    pub indexes: Vec<usize>,
}

/// The selected mailbox no longer exists.
#[derive(Debug)]
pub struct Deleted;

impl Selected {
    /// Opens `mailbox` for a session: its messages, and (read-write) the `\Recent`
    /// ones claimed for this session; read-only, the messages no session claimed yet
    /// are `\Recent` without being claimed (RFC 3501 §6.3.2). `Ok(None)` if the
    /// mailbox no longer exists.
    pub fn open(
        store: &Arc<Store>,
        cache: &Cache,
        mailbox: MailboxId,
        read_only: bool,
    ) -> Result<Option<Selected>, store::Error> {
        // The hold first: nothing that leaves the mailbox after the read is lost.
        let hold = store.hold_expunged(mailbox);
        let Some(snap) = cache.get(store, mailbox)? else {
            return Ok(None);
        };
        let m = &snap.mailbox;
        let recent_from = if read_only {
            store.recent_from(mailbox)?
        } else {
            store.claim_recent(mailbox, m.uid_next)?
        };
        let recent = snap
            .messages
            .iter()
            .filter(|x| x.uid >= recent_from)
            .map(|x| x.uid)
            .collect();
        hold.acknowledge(m.highest_modseq);
        Ok(Some(Selected {
            id: mailbox,
            name: m.name.clone(),
            read_only,
            uid_validity: m.uid_validity,
            messages: snap.messages.clone(),
            keywords: snap.keywords.clone(),
            announced: snap.keywords.len(),
            recent,
            highest_modseq: m.highest_modseq,
            uid_next: m.uid_next,
            vanished: false,
            gone: 0,
            hold,
        }))
    }

    /// The number of messages (EXISTS).
    pub fn exists(&self) -> usize {
        self.messages.len()
    }

    /// The index of a UID, if in the view.
    pub fn index_of(&self, uid: Uid) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// The last index entry of a message that left the mailbox but is still in this
    /// view (RFC 2180 §4.1.1).
    pub fn held(&self, uid: Uid) -> Option<MessageMeta> {
        self.hold.message(uid)
    }

    /// `* FLAGS` with the system flags and every keyword of the view, and for a
    /// read-write mailbox `* OK [PERMANENTFLAGS ...]` (with `\*`: new keywords may be
    /// made); the keywords count as told from now on.
    pub fn write_flag_lists(&mut self, out: &mut Vec<u8>) {
        let names = || {
            LISTED
                .iter()
                .copied()
                .chain(self.keywords.names().iter().map(String::as_str))
        };
        out.extend_from_slice(b"* FLAGS ");
        resp::flag_list(out, names());
        out.extend_from_slice(b"\r\n");
        if self.read_only {
            line!(out, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ");
            resp::flag_list(out, names().chain(["\\*"]));
            out.extend_from_slice(b"] Flags permitted\r\n");
        }
        self.announced = self.keywords.len();
    }

    /// Announces keywords learned since the last FLAGS (RFC 3501 §7.2.6: before a
    /// FETCH response may carry them).
    pub fn announce(&mut self, out: &mut Vec<u8>) {
        if self.announced < self.keywords.len() {
            self.write_flag_lists(out);
        }
    }

    /// Flags as stored into the view's set, learning (not yet announcing) keywords.
    pub fn set_of(&mut self, flags: &[String]) -> FlagSet {
        self.keywords.set_of(flags)
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
    ) -> Result<Result<(), Deleted>, store::Error> {
        let Some((current, changed, expunged)) =
            store.mailbox_changes(self.id, self.highest_modseq)?
        else {
            return Ok(Err(Deleted));
        };
        for gone in expunged {
            if let Some(i) = self.index_of(gone)
                && !self.messages[i].gone
            {
                self.messages[i].gone = true;
                self.gone += 1;
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
                if self.messages[i].gone || self.messages[i].modseq == meta.modseq {
                    continue;
                }
                let flags = self.keywords.set_of(&meta.flags);
                let m = &mut self.messages[i];
                let differs = m.flags != flags;
                m.flags = flags;
                m.modseq = meta.modseq;
                if differs || modseq {
                    updates.push(i);
                }
            }
        }
        if !fresh.is_empty() {
            let recent_from = if self.read_only {
                store.recent_from(self.id)?
            } else {
                store.claim_recent(self.id, current.uid_next)?
            };
            for meta in fresh {
                if meta.uid >= recent_from {
                    self.recent.insert(meta.uid);
                }
                let flags = self.keywords.set_of(&meta.flags);
                self.messages.push(Msg {
                    uid: meta.uid,
                    flags,
                    modseq: meta.modseq,
                    gone: false,
                });
            }
            self.announce(out);
            line!(out, "* {} EXISTS", self.messages.len());
            line!(out, "* {} RECENT", self.recent.len());
        }
        self.announce(out);
        for i in updates {
            self.write_flags(out, i, uid, modseq);
        }
        self.highest_modseq = current.highest_modseq;
        self.uid_next = current.uid_next;
        if self.gone == 0 {
            self.hold.acknowledge(self.highest_modseq);
        }
        Ok(Ok(()))
    }

    /// Sends EXPUNGE for every message marked gone, in ascending order as RFC 3501
    /// §6.4.3 shows it (each number counts the removals before it), and drops them
    /// from the view.
    fn report_gone(&mut self, out: &mut Vec<u8>) {
        if self.gone == 0 {
            return;
        }
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
        self.messages.retain(|m| !m.gone);
        self.gone = 0;
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
    pub fn flags_of<'a>(&'a self, m: &'a Msg) -> impl Iterator<Item = &'a str> + 'a {
        let recent = self.recent.contains(&m.uid).then_some("\\Recent");
        m.flags.names(&self.keywords).chain(recent)
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
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let hold = store.hold_expunged(1);
        Selected {
            id: 1,
            name: "INBOX".into(),
            read_only: false,
            uid_validity: 1,
            messages: uids
                .iter()
                .map(|&uid| Msg {
                    uid,
                    flags: FlagSet::default(),
                    modseq: 1,
                    gone: false,
                })
                .collect(),
            keywords: Keywords::default(),
            announced: 0,
            recent: HashSet::new(),
            highest_modseq: 1,
            uid_next: uids.last().map_or(1, |u| u + 1),
            vanished: false,
            gone: 0,
            hold,
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
