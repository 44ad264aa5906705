//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1): removes the `\Deleted`
//! messages (of the UID set) and reports each as an untagged EXPUNGE.

use imap_types::sequence::SequenceSet;

use crate::core::{Core, Next};

/// Expunges and answers with the updates.
pub fn run(core: &mut Core, tag: &str, uids: Option<&SequenceSet>, out: &mut Vec<u8>) -> Next {
    let store = core.store.clone();
    // The view's flags are made current (EXPUNGE may carry untagged updates), then
    // its \Deleted messages are the ones to remove.
    core.updates(out, true, uids.is_some());
    let Some(sel) = core.selected.as_ref() else {
        return core.bad(out, tag, "No mailbox selected");
    };
    if sel.read_only {
        return core.no(
            out,
            tag,
            Some("READ-ONLY"),
            "The mailbox is read-only (EXAMINE)",
        );
    }
    let allowed: Option<Vec<store::Uid>> = match uids {
        Some(set) => match sel.resolve(set, true) {
            Ok(r) => Some(r.indexes.iter().map(|&i| sel.messages[i].uid).collect()),
            Err(e) => return core.bad(out, tag, &e),
        },
        None => None,
    };
    let id = sel.id;
    let deleted: Vec<store::Uid> = sel
        .messages
        .iter()
        .filter(|m| !m.gone && m.flags.has_system(crate::flags::DELETED))
        .map(|m| m.uid)
        .filter(|u| allowed.as_ref().is_none_or(|a| a.binary_search(u).is_ok()))
        .collect();
    if !deleted.is_empty()
        && let Err(e) = store.expunge_deleted(id, &deleted)
    {
        return core.store_failed(out, tag, &e);
    }
    core.ok(out, tag, None, "EXPUNGE completed")
}
