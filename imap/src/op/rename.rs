//! RENAME (RFC 3501 §6.3.5): children follow; renaming INBOX moves its messages.

use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next, mailbox_name};

/// Renames `from` to `to`.
pub fn run(
    core: &mut Core,
    tag: &str,
    from: &ImapMailbox<'_>,
    to: &ImapMailbox<'_>,
    out: &mut Vec<u8>,
) -> Next {
    let Some(account) = core.account().cloned() else {
        return core.bad(out, tag, "Not logged in");
    };
    let (from, to) = match (mailbox_name(from), mailbox_name(to)) {
        (Ok(f), Ok(t)) => (f, t.trim_end_matches(store::DELIMITER).to_string()),
        (Err(e), _) | (_, Err(e)) => return core.bad(out, tag, &e),
    };
    if to == store::INBOX {
        return core.no(out, tag, Some("ALREADYEXISTS"), "INBOX already exists");
    }
    match core.store.rename_mailbox(account.id, &from, &to) {
        Ok(()) => core.ok(out, tag, None, "RENAME completed"),
        Err(store::Error::NotFound(_)) => core.no(out, tag, Some("NONEXISTENT"), "No such mailbox"),
        Err(e) => core.store_failed(out, tag, &e),
    }
}
