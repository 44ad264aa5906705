//! SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2), CLOSE (§6.4.2) and UNSELECT
//! (RFC 3691).

use imap_types::mailbox::Mailbox as ImapMailbox;
use imap_types::sequence::SequenceSet;

use crate::core::{Core, Next, Sync};
use crate::line;
use crate::selected::Selected;

/// What a client that knows a mailbox passes in SELECT (QRESYNC ...) (RFC 7162 §3.2.5).
pub struct Resync {
    /// The UIDVALIDITY it knows.
    pub uid_validity: u32,
    /// The last MODSEQ it saw.
    pub modseq: u64,
    /// The UIDs it has, if it said.
    pub known_uids: Option<SequenceSet>,
}

/// Selects a mailbox read-write (SELECT) or read-only (EXAMINE).
pub fn select(
    core: &mut Core,
    tag: &str,
    mailbox: &ImapMailbox<'_>,
    read_only: bool,
    resync: Option<Resync>,
    out: &mut Vec<u8>,
) -> Next {
    if resync.is_some() && !core.qresync {
        return core.bad(out, tag, "QRESYNC is not enabled (ENABLE QRESYNC first)");
    }
    // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1); with QRESYNC the
    // client is told that the previous one is closed (RFC 7162 §3.2.11).
    if core.selected.take().is_some() && core.qresync {
        line!(out, "* OK [CLOSED] Previous mailbox closed");
    }
    let verb = if read_only { "EXAMINE" } else { "SELECT" };
    let mbox = match core.named_mailbox(out, tag, mailbox, "NONEXISTENT") {
        Ok(m) => m,
        Err(next) => return next,
    };
    let mut sel = match Selected::open(&core.store, &core.cache, mbox.id, read_only) {
        Ok(Some(s)) => s,
        Ok(None) => return core.no(out, tag, Some("NONEXISTENT"), "No such mailbox"),
        Err(e) => return core.store_failed(out, tag, &e),
    };
    sel.write_flag_lists(out);
    line!(out, "* {} EXISTS", sel.exists());
    line!(out, "* {} RECENT", sel.recent.len());
    if let Some(i) = sel
        .messages
        .iter()
        .position(|m| !m.flags.has_system(crate::flags::SEEN))
    {
        line!(out, "* OK [UNSEEN {}] First unseen", i + 1);
    }
    line!(out, "* OK [UIDVALIDITY {}] UIDs valid", sel.uid_validity);
    line!(out, "* OK [UIDNEXT {}] Predicted next UID", sel.uid_next);
    if core.condstore {
        line!(out, "* OK [HIGHESTMODSEQ {}] Highest", sel.highest_modseq);
    }
    sel.vanished = core.qresync;
    if let Some(r) = resync
        && r.uid_validity == sel.uid_validity
    {
        // What the client missed since its MODSEQ: the UIDs expunged (of those it
        // has), then the messages changed, with their flags and MODSEQ.
        let largest = sel.uid_next.saturating_sub(1) as usize;
        let gone: Vec<store::Uid> = match core.store.expunged_since(sel.id, r.modseq) {
            Ok(uids) => uids
                .into_iter()
                .filter(|&u| {
                    r.known_uids
                        .as_ref()
                        .is_none_or(|set| crate::op::search::in_set(set, u as usize, largest))
                })
                .collect(),
            Err(e) => return core.store_failed(out, tag, &e),
        };
        if !gone.is_empty() {
            line!(
                out,
                "* VANISHED (EARLIER) {}",
                crate::op::copy::ranges(&gone)
            );
        }
        match core.store.changes_since(sel.id, r.modseq) {
            Ok((changed, _)) => {
                for meta in changed {
                    if let Some(i) = sel.index_of(meta.uid) {
                        sel.write_flags(out, i, true, true);
                    }
                }
            }
            Err(e) => return core.store_failed(out, tag, &e),
        }
    }
    core.selected = Some(sel);
    let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
    core.finish(
        out,
        tag,
        "OK",
        Some(code),
        &format!("{verb} completed"),
        Sync::None,
    )
}

/// CLOSE: removes the `\Deleted` messages (read-write only) without EXPUNGE
/// responses, and deselects.
pub fn close(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    if let Some(sel) = core.selected.take()
        && !sel.read_only
    {
        let deleted: Vec<store::Uid> = sel
            .messages
            .iter()
            .filter(|m| m.flags.has_system(crate::flags::DELETED))
            .map(|m| m.uid)
            .collect();
        if !deleted.is_empty()
            && let Err(e) = core.store.expunge_deleted(sel.id, &deleted)
        {
            return core.store_failed(out, tag, &e);
        }
    }
    core.finish(out, tag, "OK", None, "CLOSE completed", Sync::None)
}

/// UNSELECT: deselects, expunging nothing.
pub fn unselect(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    core.selected = None;
    core.finish(out, tag, "OK", None, "UNSELECT completed", Sync::None)
}
