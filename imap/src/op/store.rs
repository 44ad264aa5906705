//! STORE and UID STORE (RFC 3501 §6.4.6), with UNCHANGEDSINCE (RFC 7162 §3.1.3).

use imap_types::command::StoreModifier;
use imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_types::sequence::SequenceSet;
use store::FlagChange;

use crate::core::{Core, Next, Sync};
use crate::resp;

/// Changes flags; answers each message's new FLAGS unless `.SILENT`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    core: &mut Core,
    tag: &str,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: &[Flag<'_>],
    uid: bool,
    modifiers: &[StoreModifier],
    out: &mut Vec<u8>,
) -> Next {
    let unchanged_since = modifiers
        .iter()
        .map(|StoreModifier::UnchangedSince(v)| *v)
        .next();
    // Current flags first (no EXPUNGE during STORE, RFC 3501 §7.4.1).
    core.updates(out, uid, uid);
    let store = core.store.clone();
    let condstore = core.condstore || unchanged_since.is_some();
    let Some(sel) = core.selected.as_mut() else {
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
    let resolved = match sel.resolve(set, uid) {
        Ok(r) => r,
        Err(e) => return core.bad(out, tag, &e),
    };
    let given: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    let uids: Vec<store::Uid> = resolved
        .indexes
        .iter()
        .map(|&i| &sel.messages[i])
        .filter(|m| !m.gone)
        .map(|m| m.uid)
        .collect();
    let change = match kind {
        StoreType::Replace => FlagChange::Replace,
        StoreType::Add => FlagChange::Add,
        StoreType::Remove => FlagChange::Remove,
    };
    let outcome = match store.change_flags(sel.id, &uids, change, &given, unchanged_since) {
        Ok(o) => o,
        Err(e) => return core.store_failed(out, tag, &e),
    };
    for meta in &outcome.current {
        if let Some(i) = sel.index_of(meta.uid) {
            sel.messages[i].flags = meta.flags.clone();
            sel.messages[i].modseq = meta.modseq;
        }
    }
    if response == StoreResponse::Answer {
        for &i in &resolved.indexes {
            let m = &sel.messages[i];
            if m.gone || outcome.modified.contains(&m.uid) {
                continue;
            }
            sel.write_flags(out, i, uid, condstore);
        }
    } else if condstore {
        // RFC 7162 §3.1.3: .SILENT still reports the new MODSEQ.
        for meta in outcome
            .current
            .iter()
            .filter(|m| outcome.changed.contains(&m.uid))
        {
            if let Some(i) = sel.index_of(meta.uid) {
                let line = if uid {
                    format!(
                        "* {} FETCH (UID {} MODSEQ ({}))\r\n",
                        i + 1,
                        meta.uid,
                        meta.modseq
                    )
                } else {
                    format!("* {} FETCH (MODSEQ ({}))\r\n", i + 1, meta.modseq)
                };
                resp::raw(out, &line);
            }
        }
    }
    if outcome.modified.is_empty() {
        core.finish(out, tag, "OK", None, "STORE completed", Sync::None)
    } else {
        let list: Vec<String> = outcome
            .modified
            .iter()
            .filter_map(|u| {
                if uid {
                    Some(u.to_string())
                } else {
                    sel.index_of(*u).map(|i| (i + 1).to_string())
                }
            })
            .collect();
        let code = format!("MODIFIED {}", list.join(","));
        core.finish(
            out,
            tag,
            "OK",
            Some(&code),
            "Conditional STORE completed",
            Sync::None,
        )
    }
}
