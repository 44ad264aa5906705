//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7).

use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next, mailbox_name};

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
    let Some(account) = core.account().cloned() else {
        return core.bad(out, tag, "Not logged in");
    };
    let name = match mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return core.bad(out, tag, &e),
    };
    match core.store.mailbox(account.id, &name) {
        Ok(Some(m)) => match core.store.set_subscribed(m.id, subscribe) {
            Ok(()) => core.ok(out, tag, None, &format!("{verb} completed")),
            Err(e) => core.store_failed(out, tag, &e),
        },
        Ok(None) | Err(store::Error::Invalid(_)) => {
            core.no(out, tag, Some("NONEXISTENT"), "No such mailbox")
        }
        Err(e) => core.store_failed(out, tag, &e),
    }
}
