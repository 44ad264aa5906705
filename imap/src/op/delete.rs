//! DELETE (RFC 3501 §6.3.4): not INBOX; a mailbox with inferiors is refused here (we
//! keep no \Noselect placeholders), as the RFC allows, with HASCHILDREN (RFC 9051
//! §6.3.4, §7.1).

use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next, mailbox_name};

/// Deletes the mailbox with its messages.
pub fn run(core: &mut Core, tag: &str, mailbox: &ImapMailbox<'_>, out: &mut Vec<u8>) -> Next {
    let Some(account) = core.account().cloned() else {
        return core.bad(out, tag, "Not logged in");
    };
    let name = match mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return core.bad(out, tag, &e),
    };
    if name == store::INBOX {
        return core.no(out, tag, Some("CANNOT"), "INBOX cannot be deleted");
    }
    let all = match core.store.mailboxes(account.id) {
        Ok(a) => a,
        Err(e) => return core.store_failed(out, tag, &e),
    };
    let Some(target) = all.iter().find(|m| m.name == name) else {
        return core.no(out, tag, Some("NONEXISTENT"), "No such mailbox");
    };
    let prefix = format!("{name}{}", store::DELIMITER);
    if all.iter().any(|m| m.name.starts_with(&prefix)) {
        return core.no(
            out,
            tag,
            Some("HASCHILDREN"),
            "The mailbox has inferior mailboxes: delete them first",
        );
    }
    if core.selected.as_ref().is_some_and(|s| s.id == target.id) {
        core.selected = None;
    }
    match core.store.delete_mailbox(target.id) {
        Ok(()) => {
            core.cache.forget(target.id);
            core.ok(out, tag, None, "DELETE completed")
        }
        Err(e) => core.store_failed(out, tag, &e),
    }
}
