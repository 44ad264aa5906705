//! STATUS (RFC 3501 §6.3.10, with DELETED and SIZE of RFC 9051 / RFC 8438). Reading a
//! mailbox's status claims no `\Recent` messages.

use imap_types::mailbox::Mailbox as ImapMailbox;
use imap_types::status::StatusDataItemName;

use crate::core::{Core, Next};
use crate::{flags, resp, utf7};

/// `* STATUS name (item value ...)` then OK.
pub fn run(
    core: &mut Core,
    tag: &str,
    mailbox: &ImapMailbox<'_>,
    items: &[StatusDataItemName],
    out: &mut Vec<u8>,
) -> Next {
    let mbox = match core.named_mailbox(out, tag, mailbox, "NONEXISTENT") {
        Ok(m) => m,
        Err(next) => return next,
    };
    let snap = match core.cache.get(&core.store, mbox.id) {
        Ok(Some(s)) => s,
        Ok(None) => return core.no(out, tag, Some("NONEXISTENT"), "No such mailbox"),
        Err(e) => return core.store_failed(out, tag, &e),
    };
    let count = |bit: u32, set: bool| {
        snap.messages
            .iter()
            .filter(|m| m.flags.has_system(bit) == set)
            .count() as u64
    };
    let mut values = Vec::new();
    for item in items {
        let (key, value) = match item {
            StatusDataItemName::Messages => ("MESSAGES", snap.messages.len() as u64),
            StatusDataItemName::Recent => {
                let from = match core.store.recent_from(mbox.id) {
                    Ok(f) => f,
                    Err(e) => return core.store_failed(out, tag, &e),
                };
                (
                    "RECENT",
                    snap.messages.iter().filter(|m| m.uid >= from).count() as u64,
                )
            }
            StatusDataItemName::UidNext => ("UIDNEXT", u64::from(snap.mailbox.uid_next)),
            StatusDataItemName::UidValidity => {
                ("UIDVALIDITY", u64::from(snap.mailbox.uid_validity))
            }
            StatusDataItemName::Unseen => ("UNSEEN", count(flags::SEEN, false)),
            StatusDataItemName::Deleted => ("DELETED", count(flags::DELETED, true)),
            StatusDataItemName::DeletedStorage => {
                let mut bytes = 0u64;
                for m in snap
                    .messages
                    .iter()
                    .filter(|m| m.flags.has_system(flags::DELETED))
                {
                    match core.store.message(mbox.id, m.uid) {
                        Ok(Some(meta)) => bytes += meta.size,
                        Ok(None) => {}
                        Err(e) => return core.store_failed(out, tag, &e),
                    }
                }
                ("DELETED-STORAGE", bytes)
            }
            StatusDataItemName::HighestModSeq => ("HIGHESTMODSEQ", snap.mailbox.highest_modseq),
        };
        values.push(format!("{key} {value}"));
    }
    out.extend_from_slice(b"* STATUS ");
    resp::string(out, utf7::encode(&mbox.name).as_bytes());
    crate::line!(out, " ({})", values.join(" "));
    core.ok(out, tag, None, "STATUS completed")
}
