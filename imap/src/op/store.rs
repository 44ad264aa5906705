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
    if let Some(bad) = crate::op::append::not_a_flag(&given) {
        return core.bad(out, tag, &bad);
    }
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
    let mut answered = Vec::with_capacity(outcome.current.len());
    for meta in &outcome.current {
        if let Some(i) = sel.index_of(meta.uid) {
            sel.messages[i].flags = sel.set_of(&meta.flags);
            sel.messages[i].modseq = meta.modseq;
            if !outcome.modified.contains(&meta.uid) {
                answered.push(i);
            }
        }
    }
    // A message expunged elsewhere that the client still sees takes the change in
    // this session's view only (RFC 2180 §4.2: the client keeps seeing it as it would
    // be); the store no longer has it.
    for &i in &resolved.indexes {
        let m = &sel.messages[i];
        if !m.gone && !outcome.missing.contains(&m.uid) {
            continue;
        }
        let current: Vec<String> = m.flags.names(&sel.keywords).map(str::to_string).collect();
        let new: Vec<String> = match change {
            FlagChange::Replace => given.clone(),
            FlagChange::Add => current
                .iter()
                .cloned()
                .chain(
                    given
                        .iter()
                        .filter(|g| !current.iter().any(|c| c.eq_ignore_ascii_case(g)))
                        .cloned(),
                )
                .collect(),
            FlagChange::Remove => current
                .into_iter()
                .filter(|c| !given.iter().any(|g| g.eq_ignore_ascii_case(c)))
                .collect(),
        };
        let new: Vec<String> = new
            .into_iter()
            .map(|f| {
                crate::flags::SYSTEM
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(&f))
                    .map_or(f, |s| (*s).to_string())
            })
            .collect();
        sel.messages[i].flags = sel.set_of(&new);
        answered.push(i);
    }
    answered.sort_unstable();
    // New keywords (ours, or another session's on these messages) are told first.
    sel.announce(out);
    if response == StoreResponse::Answer {
        // Messages expunged meanwhile are left out (RFC 2180 §4.2).
        for i in answered {
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
