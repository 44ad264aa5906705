//! GETQUOTA and GETQUOTAROOT (RFC 9208): one quota root, "", per account, with the
//! STORAGE resource in KiB. An account without a limit has no quota root.

use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next};
use crate::{line, resp, utf7};

fn quota_line(account: &store::Account, out: &mut Vec<u8>) {
    line!(
        out,
        "* QUOTA \"\" (STORAGE {} {})",
        account.used_bytes.div_ceil(1024),
        account.quota_bytes / 1024
    );
}

/// The account as stored now (used bytes change with every message).
fn fresh_account(core: &Core) -> Option<store::Account> {
    let id = core.account()?.id;
    core.store.account_by_id(id).ok().flatten()
}

/// GETQUOTA "".
pub fn get_quota(core: &mut Core, tag: &str, root: &[u8], out: &mut Vec<u8>) -> Next {
    let Some(account) = fresh_account(core) else {
        return core.no(out, tag, Some("SERVERBUG"), "The account could not be read");
    };
    if !root.is_empty() || account.quota_bytes == 0 {
        return core.no(out, tag, Some("NONEXISTENT"), "No such quota root");
    }
    quota_line(&account, out);
    core.ok(out, tag, None, "GETQUOTA completed")
}

/// GETQUOTAROOT mailbox.
pub fn get_quota_root(
    core: &mut Core,
    tag: &str,
    mailbox: &ImapMailbox<'_>,
    out: &mut Vec<u8>,
) -> Next {
    let Some(account) = fresh_account(core) else {
        return core.no(out, tag, Some("SERVERBUG"), "The account could not be read");
    };
    let mbox = match core.named_mailbox(out, tag, mailbox, "NONEXISTENT") {
        Ok(m) => m,
        Err(next) => return next,
    };
    out.extend_from_slice(b"* QUOTAROOT ");
    resp::string(out, utf7::encode(&mbox.name).as_bytes());
    if account.quota_bytes > 0 {
        out.extend_from_slice(b" \"\"\r\n");
        quota_line(&account, out);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    core.ok(out, tag, None, "GETQUOTAROOT completed")
}
