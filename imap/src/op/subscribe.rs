//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7).

use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next};

/// Sets the mailbox's subscription.
pub fn run(
    core: &mut Core,
    tag: &str,
    mailbox: &ImapMailbox<'_>,
    subscribe: bool,
    out: &mut Vec<u8>,
) -> Next {
    let verb = if subscribe {
        "SUBSCRIBE"
    } else {
        "UNSUBSCRIBE"
    };
    let mbox = match core.named_mailbox(out, tag, mailbox, "NONEXISTENT") {
        Ok(m) => m,
        Err(next) => return next,
    };
    match core.store.set_subscribed(mbox.id, subscribe) {
        Ok(()) => core.ok(out, tag, None, &format!("{verb} completed")),
        Err(e) => core.store_failed(out, tag, &e),
    }
}
