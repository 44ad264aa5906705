//! APPEND (RFC 3501 §6.3.11) with APPENDUID (UIDPLUS, RFC 4315): the message is on
//! disk and fsynced before the OK.

use std::time::SystemTime;

use imap_types::datetime::DateTime;
use imap_types::extensions::binary::LiteralOrLiteral8;
use imap_types::flag::Flag;
use imap_types::mailbox::Mailbox as ImapMailbox;

use crate::core::{Core, Next};

/// Appends the message to the mailbox.
pub fn run(
    core: &mut Core,
    tag: &str,
    mailbox: &ImapMailbox<'_>,
    flags: &[Flag<'_>],
    date: Option<&DateTime>,
    message: LiteralOrLiteral8<'_>,
    out: &mut Vec<u8>,
) -> Next {
    let body: &[u8] = match &message {
        LiteralOrLiteral8::Literal(l) => l.as_ref(),
        LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
    };
    if body.is_empty() {
        return core.bad(out, tag, "The message is empty");
    }
    if body.len() as u64 > u64::from(core.limits.max_literal) {
        return core.no(
            out,
            tag,
            Some("TOOBIG"),
            "The message is larger than APPENDLIMIT",
        );
    }
    let mbox = match core.named_mailbox(out, tag, mailbox, "TRYCREATE") {
        Ok(m) => m,
        Err(next) => return next,
    };
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    if let Some(bad) = not_a_flag(&flags) {
        return core.bad(out, tag, &bad);
    }
    let internal_date = date.map_or_else(SystemTime::now, |d| SystemTime::from(*d.as_ref()));
    match core.store.append(mbox.id, body, &flags, internal_date) {
        Ok(meta) => {
            let code = format!("APPENDUID {} {}", mbox.uid_validity, meta.uid);
            core.ok(out, tag, Some(&code), "APPEND completed")
        }
        Err(e) => core.store_failed(out, tag, &e),
    }
}

/// Why a flag list the codec took is not one: `NIL` is nil in a flag list, not a
/// keyword (RFC 3501 §9 `flag-list`), so it is refused rather than stored.
pub fn not_a_flag(flags: &[String]) -> Option<String> {
    flags
        .iter()
        .find(|f| f.eq_ignore_ascii_case("NIL"))
        .map(|f| format!("{f} is not a flag: the flag list holds a nil"))
}
