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
    let Some(account) = core.account().map(|a| a.id) else {
        return core.bad(out, tag, "Not logged in");
    };
    let result = if subscribe {
        // Only existing mailboxes can be subscribed (RFC 3501 §6.3.6 allows the check).
        let mbox = match core.named_mailbox(out, tag, mailbox, "NONEXISTENT") {
            Ok(m) => m,
            Err(next) => return next,
        };
        core.store.subscribe_mailbox(account, &mbox.name)
    } else {
        match crate::core::mailbox_name(mailbox) {
            Ok(name) => core.store.unsubscribe_mailbox(account, &name),
            Err(e) => return core.bad(out, tag, &e),
        }
    };
    match result {
        Ok(()) => core.ok(out, tag, None, &format!("{verb} completed")),
        Err(e) => core.store_failed(out, tag, &e),
    }
}
