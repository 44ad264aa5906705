//! COPY / UID COPY (RFC 3501 §6.4.7) and MOVE / UID MOVE (RFC 6851), with COPYUID
//! (UIDPLUS, RFC 4315). Either all messages reach the target or none.

use imap_types::mailbox::Mailbox as ImapMailbox;
use imap_types::sequence::SequenceSet;

use crate::core::{Core, Next};
use crate::line;

/// Copies or moves the messages to `mailbox`.
pub fn run(
    core: &mut Core,
    tag: &str,
    set: &SequenceSet,
    mailbox: &ImapMailbox<'_>,
    uid: bool,
    moving: bool,
    out: &mut Vec<u8>,
) -> Next {
    let verb = if moving { "MOVE" } else { "COPY" };
    let target = match core.named_mailbox(out, tag, mailbox, "TRYCREATE") {
        Ok(m) => m,
        Err(next) => return next,
    };
    let store = core.store.clone();
    let Some(sel) = core.selected.as_ref() else {
        return core.bad(out, tag, "No mailbox selected");
    };
    if moving && sel.read_only {
        return core.no(
            out,
            tag,
            Some("READ-ONLY"),
            "The mailbox is read-only (EXAMINE)",
        );
    }
    let resolved = match sel.resolve(set, uid) {
        Ok(r) => r,
        Err(e) => return core.bad(out, tag, &e),
    };
    let uids: Vec<store::Uid> = resolved
        .indexes
        .iter()
        .map(|&i| sel.messages[i].uid)
        .collect();
    let source = sel.id;
    if uids.is_empty() {
        return core.ok(
            out,
            tag,
            None,
            &format!("{verb} completed (nothing to {verb})"),
        );
    }
    let result = if moving {
        store.move_messages(source, &uids, target.id)
    } else {
        store.copy_messages(source, &uids, target.id)
    };
    let pairs = match result {
        Ok(p) => p,
        // RFC 2180 §4.4.1: nothing copied; the EXPUNGEs come with this answer.
        Err(store::Error::Expunged(_)) => {
            return core.no(
                out,
                tag,
                Some("EXPUNGEISSUED"),
                "Some of the messages were expunged: nothing was copied",
            );
        }
        Err(e) => return core.store_failed(out, tag, &e),
    };
    let code = copyuid(target.uid_validity, &pairs);
    if moving {
        // RFC 6851 §4.3: COPYUID comes untagged, before the EXPUNGEs.
        if let Some(code) = &code {
            line!(out, "* OK [{code}] Moved");
        }
        core.ok(out, tag, None, "MOVE completed")
    } else {
        core.ok(out, tag, code.as_deref(), "COPY completed")
    }
}

/// `COPYUID validity source-uids target-uids`, compressed into ranges.
fn copyuid(validity: u32, pairs: &[(store::Uid, store::Uid)]) -> Option<String> {
    if pairs.is_empty() {
        return None;
    }
    let from: Vec<store::Uid> = pairs.iter().map(|p| p.0).collect();
    let to: Vec<store::Uid> = pairs.iter().map(|p| p.1).collect();
    Some(format!(
        "COPYUID {validity} {} {}",
        ranges(&from),
        ranges(&to)
    ))
}

/// `1:3,7,9:10` from ascending numbers.
pub fn ranges(values: &[store::Uid]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let start = values[i];
        let mut end = start;
        while i + 1 < values.len() && values[i + 1] == end + 1 {
            i += 1;
            end = values[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_ranges() {
        assert_eq!(super::ranges(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(super::ranges(&[5]), "5");
    }
}
