//! STATUS (RFC 3501 §6.3.10, with DELETED and SIZE of RFC 9051 / RFC 8438). Reading a
//! mailbox's status claims no `\Recent` messages.

use imap_types::mailbox::Mailbox as ImapMailbox;
use imap_types::status::StatusDataItemName;

use crate::core::{Core, Next};
use crate::{resp, utf7};

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
    let metas = match core.store.messages(mbox.id) {
        Ok(m) => m,
        Err(e) => return core.store_failed(out, tag, &e),
    };
    let has = |m: &store::MessageMeta, flag: &str| m.flags.iter().any(|f| f == flag);
    let mut values = Vec::new();
    for item in items {
        let (key, value) = match item {
            StatusDataItemName::Messages => ("MESSAGES", metas.len() as u64),
            StatusDataItemName::Recent => (
                "RECENT",
                metas.iter().filter(|m| m.uid >= mbox.recent_from).count() as u64,
            ),
            StatusDataItemName::UidNext => ("UIDNEXT", u64::from(mbox.uid_next)),
            StatusDataItemName::UidValidity => ("UIDVALIDITY", u64::from(mbox.uid_validity)),
            StatusDataItemName::Unseen => (
                "UNSEEN",
                metas.iter().filter(|m| !has(m, "\\Seen")).count() as u64,
            ),
            StatusDataItemName::Deleted => (
                "DELETED",
                metas.iter().filter(|m| has(m, "\\Deleted")).count() as u64,
            ),
            StatusDataItemName::DeletedStorage => (
                "DELETED-STORAGE",
                metas
                    .iter()
                    .filter(|m| has(m, "\\Deleted"))
                    .map(|m| m.size)
                    .sum(),
            ),
            StatusDataItemName::HighestModSeq => ("HIGHESTMODSEQ", mbox.highest_modseq),
        };
        values.push(format!("{key} {value}"));
    }
    out.extend_from_slice(b"* STATUS ");
    resp::string(out, utf7::encode(&mbox.name).as_bytes());
    crate::line!(out, " ({})", values.join(" "));
    core.ok(out, tag, None, "STATUS completed")
}
