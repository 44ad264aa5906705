//! FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8). A BODY[...] fetch without .PEEK
//! sets `\Seen` (read-write only) before the data goes out, and FLAGS then comes too.
//! The responses are made and sent in parts ([`FetchJob`]).

use imap_types::IntoStatic;
use imap_types::command::FetchModifier;
use imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_types::sequence::SequenceSet;
use store::FlagChange;

use crate::core::{Core, Next};
use crate::fetch::job::FetchJob;
use crate::{flags, resp};

/// Runs FETCH / UID FETCH.
#[allow(clippy::too_many_arguments)]
pub fn run(
    core: &mut Core,
    tag: &str,
    set: &SequenceSet,
    items: MacroOrMessageDataItemNames<'_>,
    uid: bool,
    modifiers: &[FetchModifier],
    out: &mut Vec<u8>,
) -> Next {
    let mut items = match items {
        MacroOrMessageDataItemNames::Macro(m) => {
            m.expand().into_iter().map(|i| i.into_static()).collect()
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(items) => items,
    };
    let changed_since = modifiers.iter().find_map(|m| match m {
        FetchModifier::ChangedSince(v) => Some(v.get()),
        FetchModifier::Vanished => None,
    });
    let vanished = modifiers.contains(&FetchModifier::Vanished);
    if vanished && !(uid && changed_since.is_some() && core.qresync) {
        // RFC 7162 §3.2.6: only UID FETCH with CHANGEDSINCE, once QRESYNC is enabled.
        return core.bad(
            out,
            tag,
            "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC",
        );
    }
    if changed_since.is_some() && !items.contains(&MessageDataItemName::ModSeq) {
        items.push(MessageDataItemName::ModSeq);
    }
    // RFC 7162 §3.1: FETCH MODSEQ and CHANGEDSINCE are CONDSTORE-enabling commands.
    if items.contains(&MessageDataItemName::ModSeq) {
        core.condstore = true;
    }
    if uid && !items.contains(&MessageDataItemName::Uid) {
        items.insert(0, MessageDataItemName::Uid);
    }
    // Updates first: no EXPUNGE during FETCH (RFC 3501 §7.4.1), allowed in UID FETCH.
    core.updates(out, uid, uid);
    let store = core.store.clone();
    let Some(sel) = core.selected.as_mut() else {
        return core.bad(out, tag, "No mailbox selected");
    };
    let resolved = match sel.resolve(set, uid) {
        Ok(r) => r,
        Err(e) => return core.bad(out, tag, &e),
    };
    if let (true, Some(since)) = (vanished, changed_since) {
        let largest = sel.uid_next.saturating_sub(1) as usize;
        match store.expunged_since(sel.id, since) {
            Ok(uids) => {
                let gone: Vec<store::Uid> = uids
                    .into_iter()
                    .filter(|&u| crate::op::search::in_set(set, u as usize, largest))
                    .collect();
                if !gone.is_empty() {
                    resp::raw(
                        out,
                        &format!(
                            "* VANISHED (EARLIER) {}\r\n",
                            crate::op::copy::ranges(&gone)
                        ),
                    );
                }
            }
            Err(e) => return core.store_failed(out, tag, &e),
        }
    }
    let marks_seen = !sel.read_only
        && items.iter().any(|i| match i {
            MessageDataItemName::BodyExt { peek, .. }
            | MessageDataItemName::Binary { peek, .. } => !peek,
            MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
            _ => false,
        });
    let mut want_flags = items.contains(&MessageDataItemName::Flags);
    // \Seen first, in one transaction, so the data and FLAGS agree.
    if marks_seen {
        let unseen: Vec<usize> = resolved
            .indexes
            .iter()
            .copied()
            .filter(|&i| !sel.messages[i].flags.has_system(flags::SEEN))
            .collect();
        let uids: Vec<store::Uid> = unseen
            .iter()
            .map(|&i| &sel.messages[i])
            .filter(|m| !m.gone)
            .map(|m| m.uid)
            .collect();
        if !uids.is_empty() {
            match store.change_flags(sel.id, &uids, FlagChange::Add, &["\\Seen".into()], None) {
                Ok(outcome) => {
                    for meta in outcome.current {
                        if let Some(i) = sel.index_of(meta.uid) {
                            sel.messages[i].flags = sel.set_of(&meta.flags);
                            sel.messages[i].modseq = meta.modseq;
                        }
                    }
                }
                Err(e) => return core.store_failed(out, tag, &e),
            }
        }
        // A message expunged elsewhere (or meanwhile) cannot change in the store any
        // more; the session shows it read, as the client just read it. FLAGS comes
        // along when this changed them (RFC 3501 §6.4.5).
        want_flags |= !unseen.is_empty();
        for i in unseen {
            sel.messages[i].flags.set_system(flags::SEEN, true);
        }
    }
    sel.announce(out);
    let job = FetchJob::new(
        tag.to_string(),
        uid,
        items.into_iter().map(IntoStatic::into_static).collect(),
        resolved.indexes,
        want_flags,
        changed_since,
    );
    core.pending = Some(job);
    core.resume(out)
}
