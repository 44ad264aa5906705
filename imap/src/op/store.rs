//! STORE and UID STORE (RFC 3501 §6.4.6), with UNCHANGEDSINCE (RFC 7162 §3.1.3).

use imap_types::command::StoreModifier;
use imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_types::sequence::SequenceSet;
use store::FlagUpdate;

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
    let mut updates = Vec::new();
    for &i in &resolved.indexes {
        let m = &sel.messages[i];
        if m.gone {
            continue;
        }
        let mut new: Vec<String> = match kind {
            StoreType::Replace => given.clone(),
            StoreType::Add => {
                let mut f = m.flags.clone();
                for g in &given {
                    if !f.iter().any(|x| x.eq_ignore_ascii_case(g)) {
                        f.push(g.clone());
                    }
                }
                f
            }
            StoreType::Remove => m
                .flags
                .iter()
                .filter(|x| !given.iter().any(|g| g.eq_ignore_ascii_case(x)))
                .cloned()
                .collect(),
        };
        new.retain(|f| !f.eq_ignore_ascii_case("\\Recent"));
        updates.push(FlagUpdate {
            uid: m.uid,
            flags: new,
        });
    }
    let outcome = match store.update_flags(sel.id, &updates, unchanged_since) {
        Ok(o) => o,
        Err(e) => return core.store_failed(out, tag, &e),
    };
    for meta in &outcome.changed {
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
        for meta in &outcome.changed {
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
