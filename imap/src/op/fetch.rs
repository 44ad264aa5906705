//! FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8). A BODY[...] fetch without .PEEK
//! sets `\Seen` (read-write only) before the data goes out, and FLAGS then comes too.

use std::num::NonZeroU32;
use std::time::SystemTime;

use imap_types::IntoStatic;
use imap_types::command::FetchModifier;
use imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Part, Section};
use imap_types::sequence::SequenceSet;
use message::{Mime, PartId};
use store::FlagChange;

use crate::core::{Core, Next, Sync};
use crate::fetch;
use crate::resp;

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
    let needs_meta = items.iter().any(|i| {
        !matches!(
            i,
            MessageDataItemName::Uid | MessageDataItemName::Flags | MessageDataItemName::ModSeq
        )
    });
    let mut want_flags = items.contains(&MessageDataItemName::Flags);
    // \Seen first, in one transaction, so the data and FLAGS agree.
    if marks_seen {
        let uids: Vec<store::Uid> = resolved
            .indexes
            .iter()
            .map(|&i| &sel.messages[i])
            .filter(|m| !m.gone && !m.flags.iter().any(|f| f == "\\Seen"))
            .map(|m| m.uid)
            .collect();
        if !uids.is_empty() {
            match store.change_flags(sel.id, &uids, FlagChange::Add, &["\\Seen".into()], None) {
                Ok(outcome) => {
                    for meta in outcome.current {
                        if let Some(i) = sel.index_of(meta.uid) {
                            sel.messages[i].flags = meta.flags;
                            sel.messages[i].modseq = meta.modseq;
                        }
                    }
                    want_flags = true;
                }
                Err(e) => {
                    return core.store_failed(out, tag, &e);
                }
            }
        }
    }
    let needs_body = items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::Body
                | MessageDataItemName::BodyExt { .. }
                | MessageDataItemName::BodyStructure
                | MessageDataItemName::Envelope
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Header
                | MessageDataItemName::Rfc822Text
                | MessageDataItemName::Binary { .. }
                | MessageDataItemName::BinarySize { .. }
        )
    });
    // Header fetches (a client listing a mailbox) read the stored header blocks in one
    // go instead of opening every body file.
    let header_only = items.iter().all(|i| match i {
        MessageDataItemName::BodyExt { section, .. } => matches!(
            section,
            Some(
                Section::Header(None)
                    | Section::HeaderFields(None, _)
                    | Section::HeaderFieldsNot(None, _)
            )
        ),
        MessageDataItemName::Body
        | MessageDataItemName::BodyStructure
        | MessageDataItemName::Rfc822
        | MessageDataItemName::Rfc822Text
        | MessageDataItemName::Binary { .. }
        | MessageDataItemName::BinarySize { .. } => false,
        _ => true,
    });
    let mut header_rows: Vec<Option<Vec<u8>>> = if needs_body && header_only {
        let uids: Vec<store::Uid> = resolved
            .indexes
            .iter()
            .map(|&i| sel.messages[i].uid)
            .collect();
        store.headers(sel.id, &uids).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut missing = false;
    let mut unknown_cte = false;
    for (k, &i) in resolved.indexes.iter().enumerate() {
        let m = &sel.messages[i];
        if m.gone {
            missing = true;
            continue;
        }
        if changed_since.is_some_and(|since| m.modseq <= since) {
            continue;
        }
        let meta = if needs_meta {
            match store.message(sel.id, m.uid) {
                Ok(Some(meta)) => Some(meta),
                Ok(None) => {
                    missing = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "FETCH could not read a message");
                    missing = true;
                    continue;
                }
            }
        } else {
            None
        };
        let stored_header = header_rows.get_mut(k).and_then(Option::take);
        let raw = match (&meta, needs_body) {
            (Some(_), true) if stored_header.is_some() => stored_header,
            (Some(meta), true) => match store.read_body(meta) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::error!(error = %e, "FETCH could not read a message body");
                    missing = true;
                    continue;
                }
            },
            _ => None,
        };
        let parsed = raw.as_deref().map(parse);
        resp::raw(out, &format!("* {} FETCH (", i + 1));
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b' ');
            }
            first = false;
        };
        for item in &items {
            match item {
                MessageDataItemName::Uid => {
                    sep(out);
                    resp::raw(out, &format!("UID {}", m.uid));
                }
                MessageDataItemName::Flags => {
                    sep(out);
                    out.extend_from_slice(b"FLAGS ");
                    resp::flag_list(out, sel.flags_of(m));
                }
                MessageDataItemName::ModSeq => {
                    sep(out);
                    resp::raw(out, &format!("MODSEQ ({})", m.modseq));
                }
                MessageDataItemName::InternalDate => {
                    if let Some(meta) = &meta {
                        sep(out);
                        resp::raw(
                            out,
                            &format!("INTERNALDATE \"{}\"", internal_date(meta.internal_date)),
                        );
                    }
                }
                MessageDataItemName::Rfc822Size => {
                    if let Some(meta) = &meta {
                        sep(out);
                        resp::raw(out, &format!("RFC822.SIZE {}", meta.size));
                    }
                }
                MessageDataItemName::Envelope => {
                    if let Some(p) = &parsed {
                        sep(out);
                        out.extend_from_slice(b"ENVELOPE ");
                        match p.headers(0) {
                            Some(h) => fetch::envelope(&h, out),
                            None => fetch::empty_envelope(out),
                        }
                    }
                }
                MessageDataItemName::Body | MessageDataItemName::BodyStructure => {
                    if let Some(p) = &parsed {
                        sep(out);
                        let extended = matches!(item, MessageDataItemName::BodyStructure);
                        out.extend_from_slice(if extended {
                            b"BODYSTRUCTURE "
                        } else {
                            b"BODY "
                        });
                        fetch::structure(p, 0, extended, out);
                    }
                }
                MessageDataItemName::Rfc822 => {
                    if let Some(raw) = &raw {
                        sep(out);
                        out.extend_from_slice(b"RFC822 ");
                        resp::literal(out, raw);
                    }
                }
                MessageDataItemName::Rfc822Header => {
                    if let Some(p) = &parsed {
                        sep(out);
                        out.extend_from_slice(b"RFC822.HEADER ");
                        resp::literal(out, p.header(0));
                    }
                }
                MessageDataItemName::Rfc822Text => {
                    if let Some(p) = &parsed {
                        sep(out);
                        out.extend_from_slice(b"RFC822.TEXT ");
                        resp::literal(out, p.body(0));
                    }
                }
                MessageDataItemName::BodyExt {
                    section, partial, ..
                } => {
                    let partial = *partial;
                    if let Some(p) = &parsed {
                        sep(out);
                        out.extend_from_slice(b"BODY[");
                        resp::raw(out, &section_name(section.as_ref()));
                        out.push(b']');
                        match section_bytes(p, section.as_ref()) {
                            Some(bytes) => {
                                let bytes = match partial {
                                    Some((origin, length)) => {
                                        resp::raw(out, &format!("<{origin}>"));
                                        slice(&bytes, origin, length)
                                    }
                                    None => bytes,
                                };
                                out.push(b' ');
                                resp::literal(out, &bytes);
                            }
                            None => out.extend_from_slice(b" NIL"),
                        }
                    }
                }
                MessageDataItemName::Binary {
                    section, partial, ..
                } => {
                    if let Some(p) = &parsed {
                        let (path, name) = binary_section(section);
                        match binary(p, &path) {
                            Ok(Some(bytes)) => {
                                sep(out);
                                resp::raw(out, &format!("BINARY[{name}]"));
                                let bytes = match partial {
                                    Some((origin, length)) => {
                                        resp::raw(out, &format!("<{origin}>"));
                                        slice(&bytes, *origin, *length)
                                    }
                                    None => bytes,
                                };
                                out.push(b' ');
                                literal8(out, &bytes);
                            }
                            Ok(None) => {
                                sep(out);
                                resp::raw(out, &format!("BINARY[{name}] NIL"));
                            }
                            Err(()) => unknown_cte = true,
                        }
                    }
                }
                MessageDataItemName::BinarySize { section } => {
                    if let Some(p) = &parsed {
                        let (path, name) = binary_section(section);
                        match binary(p, &path) {
                            Ok(Some(bytes)) => {
                                sep(out);
                                resp::raw(out, &format!("BINARY.SIZE[{name}] {}", bytes.len()));
                            }
                            Ok(None) => {}
                            Err(()) => unknown_cte = true,
                        }
                    }
                }
            }
        }
        if want_flags && !items.contains(&MessageDataItemName::Flags) {
            sep(out);
            out.extend_from_slice(b"FLAGS ");
            resp::flag_list(out, sel.flags_of(m));
        }
        out.extend_from_slice(b")\r\n");
    }
    if unknown_cte {
        return core.finish(
            out,
            tag,
            "NO",
            Some("UNKNOWN-CTE"),
            "A part has a Content-Transfer-Encoding this server cannot decode",
            Sync::None,
        );
    }
    if missing {
        core.finish(
            out,
            tag,
            "NO",
            Some("EXPUNGEISSUED"),
            "Some of the requested messages were expunged",
            Sync::None,
        )
    } else {
        core.finish(out, tag, "OK", None, "FETCH completed", Sync::None)
    }
}

/// The content of a part with its Content-Transfer-Encoding undone (RFC 3516):
/// `Ok(None)` when there is no such part, `Err` for an encoding we cannot decode. An
/// empty path is the whole message as stored; multiparts and messages are as stored.
fn binary(mime: &Mime<'_>, path: &[u32]) -> Result<Option<Vec<u8>>, ()> {
    use base64::Engine;
    if path.is_empty() {
        return Ok(Some(mime.raw().to_vec()));
    }
    let Some(id) = mime.resolve(path) else {
        return Ok(None);
    };
    let body = mime.body(id);
    let part = mime.part(id);
    if !matches!(part.kind, message::Kind::Leaf) {
        return Ok(Some(body.to_vec()));
    }
    match part.transfer_encoding.as_str() {
        "7bit" | "8bit" | "binary" => Ok(Some(body.to_vec())),
        "base64" => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            engine.decode(clean).map(Some).map_err(|_| ())
        }
        "quoted-printable" => Ok(Some(quoted_printable(body))),
        _ => Err(()),
    }
}

/// Undoes quoted-printable (RFC 2045 §6.7): `=XX` octets, `=` line ends removed.
fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            if body[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if body[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (
                body.get(i + 1).copied().and_then(hex),
                body.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// A BINARY section's part numbers, and how the response names them (`1.2`).
fn binary_section(section: &[NonZeroU32]) -> (Vec<u32>, String) {
    let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
    let name = path
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    (path, name)
}

/// A literal, or a literal8 (`~{n}`, RFC 3516) when the data holds a NUL.
fn literal8(out: &mut Vec<u8>, data: &[u8]) {
    if data.contains(&0) {
        out.push(b'~');
    }
    resp::literal(out, data);
}

/// Walks a message's MIME structure (bounded; see [`message::Limits`]).
pub fn parse(raw: &[u8]) -> Mime<'_> {
    Mime::parse(raw)
}

/// `dd-Mon-yyyy hh:mm:ss +0000` (RFC 3501 date-time), in UTC.
pub fn internal_date(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.format("%d-%b-%Y %H:%M:%S +0000").to_string()
}

fn slice(bytes: &[u8], origin: u32, length: NonZeroU32) -> Vec<u8> {
    let start = (origin as usize).min(bytes.len());
    let end = start.saturating_add(length.get() as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

fn part_path(part: &Part) -> Vec<u32> {
    part.0.as_ref().iter().map(|n| n.get()).collect()
}

fn path_text(part: &Part) -> String {
    part_path(part)
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The section as it is named in the response (RFC 3501 §7.4.2: as requested).
pub fn section_name(section: Option<&Section<'_>>) -> String {
    let with = |part: &Option<Part>, what: &str| match part {
        Some(p) => format!("{}.{what}", path_text(p)),
        None => what.to_string(),
    };
    let names = |list: &[imap_types::core::AString<'_>]| {
        list.iter()
            .map(|n| String::from_utf8_lossy(n.as_ref()).to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match section {
        None => String::new(),
        Some(Section::Part(p)) => path_text(p),
        Some(Section::Header(p)) => with(p, "HEADER"),
        Some(Section::HeaderFields(p, list)) => {
            format!("{} ({})", with(p, "HEADER.FIELDS"), names(list.as_ref()))
        }
        Some(Section::HeaderFieldsNot(p, list)) => {
            format!(
                "{} ({})",
                with(p, "HEADER.FIELDS.NOT"),
                names(list.as_ref())
            )
        }
        Some(Section::Text(p)) => with(p, "TEXT"),
        Some(Section::Mime(p)) => format!("{}.MIME", path_text(p)),
    }
}

/// The octets of a section, or `None` when the message has no such part.
pub fn section_bytes(mime: &Mime<'_>, section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    // HEADER / TEXT / HEADER.FIELDS of a part number: the message inside that
    // message/rfc822 part; without one: the top message.
    let message_at = |part: &Option<Part>| -> Option<PartId> {
        match part {
            None => Some(0),
            Some(p) => mime.embedded(mime.resolve(&part_path(p))?),
        }
    };
    let names = |list: &[imap_types::core::AString<'_>]| -> Vec<String> {
        list.iter()
            .map(|n| String::from_utf8_lossy(n.as_ref()).into_owned())
            .collect()
    };
    match section {
        None => Some(mime.raw().to_vec()),
        Some(Section::Part(p)) => mime.resolve(&part_path(p)).map(|n| mime.body(n).to_vec()),
        Some(Section::Header(p)) => message_at(p).map(|n| mime.header(n).to_vec()),
        Some(Section::Text(p)) => message_at(p).map(|n| mime.body(n).to_vec()),
        Some(Section::HeaderFields(p, list)) => message_at(p)
            .map(|n| fetch::header_fields(mime.header(n), &names(list.as_ref()), false)),
        Some(Section::HeaderFieldsNot(p, list)) => {
            message_at(p).map(|n| fetch::header_fields(mime.header(n), &names(list.as_ref()), true))
        }
        Some(Section::Mime(p)) => mime.resolve(&part_path(p)).map(|n| mime.header(n).to_vec()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn binary_undoes_transfer_encodings() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nJ=C3=B6rg=\r\n and =3D\r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n/w==\r\n--b\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
        let msg = parse(raw);
        assert_eq!(
            binary(&msg, &[1]).unwrap().unwrap(),
            "Jörg and =".as_bytes()
        );
        assert_eq!(binary(&msg, &[2]).unwrap().unwrap(), [0, 1, 2, 255]);
        assert!(binary(&msg, &[3]).is_err());
        assert_eq!(binary(&msg, &[4]).unwrap(), None);
        assert_eq!(binary(&msg, &[]).unwrap().unwrap(), raw);
        let mut out = Vec::new();
        literal8(&mut out, &[0, 1]);
        assert_eq!(out, b"~{2}\r\n\x00\x01");
        out.clear();
        literal8(&mut out, b"ab");
        assert_eq!(out, b"{2}\r\nab");
    }
}
