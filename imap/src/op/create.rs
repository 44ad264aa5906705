//! CREATE (RFC 3501 §6.3.3): a trailing delimiter is dropped; missing superiors are
//! created too.

use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next, mailbox_name};

/// Creates the mailbox (and its missing superiors).
pub fn run(core: &mut Core, tag: &str, mailbox: &ImapMailbox<'_>, out: &mut Vec<u8>) -> Next {
    let Some(account) = core.account().cloned() else {
        return core.bad(out, tag, "Not logged in");
    };
    let name = match mailbox_name(mailbox) {
        Ok(n) => n.trim_end_matches(store::DELIMITER).to_string(),
        Err(e) => return core.bad(out, tag, &e),
    };
    if name == store::INBOX {
        return core.no(out, tag, Some("ALREADYEXISTS"), "INBOX always exists");
    }
    if let Err(e) = store::normalize_mailbox_name(&name) {
        return core.store_failed(out, tag, &e);
    }
    match core.store.mailbox(account.id, &name) {
        Ok(Some(_)) => {
            return core.no(
                out,
                tag,
                Some("ALREADYEXISTS"),
                "The mailbox already exists",
            );
        }
        Ok(None) => {}
        Err(e) => return core.store_failed(out, tag, &e),
    }
    // Superiors first (RFC 3501 §6.3.3: "foo/bar/zap" creates foo/ and foo/bar/).
    let levels: Vec<&str> = name.split(store::DELIMITER).collect();
    for depth in 1..levels.len() {
        let superior = levels[..depth].join(&store::DELIMITER.to_string());
        match core.store.mailbox(account.id, &superior) {
            Ok(Some(_)) => {}
            Ok(None) => {
                if let Err(e) = core.store.create_mailbox(account.id, &superior, None) {
                    return core.store_failed(out, tag, &e);
                }
            }
            Err(e) => return core.store_failed(out, tag, &e),
        }
    }
    match core.store.create_mailbox(account.id, &name, None) {
        Ok(_) => core.ok(out, tag, None, "CREATE completed"),
        Err(e) => core.store_failed(out, tag, &e),
    }
}
