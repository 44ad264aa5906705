//! CREATE (RFC 3501 §6.3.3): a trailing delimiter is dropped; missing superiors are
//! created too. With CREATE-SPECIAL-USE (RFC 6154 §3) a role can be given.

use imap_types::command::{Command, CommandBody};
use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next, mailbox_name};

/// CREATE name (USE (attr)) (RFC 6154 §5.2): one of \\Sent \\Drafts \\Trash \\Junk
/// \\Archive, not already another mailbox's; anything else `NO [USEATTR]`.
pub fn with_use(core: &mut Core, command: Command<'_>, uses: &[String], out: &mut Vec<u8>) -> Next {
    let tag = command.tag.as_ref().to_string();
    let CommandBody::Create { mailbox } = command.body else {
        return core.bad(out, &tag, "Not a CREATE");
    };
    if !crate::core::allowed(
        core.state(),
        &CommandBody::Create {
            mailbox: mailbox.clone(),
        },
    ) {
        return core.bad(out, &tag, "CREATE is not allowed before login");
    }
    let role = match uses {
        [one] => store::Role::ALL
            .into_iter()
            .find(|r| r.special_use().is_some_and(|u| u.eq_ignore_ascii_case(one))),
        [] => None,
        _ => {
            return core.no(
                out,
                &tag,
                Some("USEATTR"),
                "A mailbox takes one special use here",
            );
        }
    };
    if !uses.is_empty() && role.is_none() {
        return core.no(
            out,
            &tag,
            Some("USEATTR"),
            "Unsupported special-use attribute",
        );
    }
    create(core, &tag, &mailbox, role, out)
}

/// Creates the mailbox (and its missing superiors).
pub fn run(core: &mut Core, tag: &str, mailbox: &ImapMailbox<'_>, out: &mut Vec<u8>) -> Next {
    create(core, tag, mailbox, None, out)
}

fn create(
    core: &mut Core,
    tag: &str,
    mailbox: &ImapMailbox<'_>,
    role: Option<store::Role>,
    out: &mut Vec<u8>,
) -> Next {
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
    if let Some(role) = role {
        match core.store.mailbox_by_role(account.id, role) {
            Ok(Some(other)) => {
                return core.no(
                    out,
                    tag,
                    Some("USEATTR"),
                    &format!("{} already has that special use", other.name),
                );
            }
            Ok(None) => {}
            Err(e) => return core.store_failed(out, tag, &e),
        }
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
    match core.store.create_mailbox(account.id, &name, role) {
        Ok(_) => core.ok(out, tag, None, "CREATE completed"),
        Err(e) => core.store_failed(out, tag, &e),
    }
}
