//! Body sections (RFC 3501 §6.4.5) and their decoded forms (RFC 3516 BINARY): which
//! octets a section names, and a part's content with its Content-Transfer-Encoding
//! undone.

use std::num::NonZeroU32;

use imap_types::fetch::{Part, Section};
use message::{Kind, Mime, PartId};

use crate::fetch::header_fields;

fn part_path(part: &Part) -> Vec<u32> {
    part.0.as_ref().iter().map(|n| n.get()).collect()
}

fn path_text(path: &[u32]) -> String {
    path.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The section as it is named in the response (RFC 3501 §7.4.2: as requested).
pub fn section_name(section: Option<&Section<'_>>) -> String {
    let with = |part: &Option<Part>, what: &str| match part {
        Some(p) => format!("{}.{what}", path_text(&part_path(p))),
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
        Some(Section::Part(p)) => path_text(&part_path(p)),
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
        Some(Section::Mime(p)) => format!("{}.MIME", path_text(&part_path(p))),
    }
}

/// Where a section's octets are in the message (`mime.source(part)` of the part
/// returned), or its octets when they are made (HEADER.FIELDS); `None` when the
/// message has no such part, or a HEADER/TEXT names a part that is no message. The
/// answer for those is an empty string, as Dovecot gives it.
pub enum Octets<'m> {
    /// A slice of the message (or of a decoded embedded message).
    Slice(&'m [u8]),
    /// Octets made for the answer.
    Made(Vec<u8>),
}

impl Octets<'_> {
    /// The octets.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Octets::Slice(s) => s,
            Octets::Made(v) => v,
        }
    }
}

/// The octets of a section, or `None` when the message has no such part.
pub fn section_bytes<'m>(mime: &'m Mime<'_>, section: Option<&Section<'_>>) -> Option<Octets<'m>> {
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
    Some(match section {
        None => Octets::Slice(mime.raw()),
        Some(Section::Part(p)) => Octets::Slice(mime.body(mime.resolve(&part_path(p))?)),
        Some(Section::Header(p)) => Octets::Slice(mime.header(message_at(p)?)),
        Some(Section::Text(p)) => Octets::Slice(mime.body(message_at(p)?)),
        Some(Section::HeaderFields(p, list)) => Octets::Made(header_fields(
            mime.header(message_at(p)?),
            &names(list.as_ref()),
            false,
        )),
        Some(Section::HeaderFieldsNot(p, list)) => Octets::Made(header_fields(
            mime.header(message_at(p)?),
            &names(list.as_ref()),
            true,
        )),
        Some(Section::Mime(p)) => Octets::Slice(mime.header(mime.resolve(&part_path(p))?)),
    })
}

/// A BINARY section's part numbers, and how the response names them (`1.2`).
pub fn binary_section(section: &[NonZeroU32]) -> (Vec<u32>, String) {
    let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
    let name = path_text(&path);
    (path, name)
}

/// Why a part cannot be given decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryError {
    /// A Content-Transfer-Encoding this server does not know (RFC 3516 UNKNOWN-CTE).
    UnknownCte,
}

/// The content of a part with its Content-Transfer-Encoding undone (RFC 3516):
/// `Ok(None)` when there is no such part. An empty path is the whole message, every
/// base64 or quoted-printable part of it decoded and marked
/// `Content-Transfer-Encoding: binary` (as Dovecot gives it); multiparts and messages
/// are as stored.
pub fn binary(mime: &Mime<'_>, path: &[u32]) -> Result<Option<Vec<u8>>, BinaryError> {
    if path.is_empty() {
        return binary_message(mime).map(Some);
    }
    let Some(id) = mime.resolve(path) else {
        return Ok(None);
    };
    let part = mime.part(id);
    if !matches!(part.kind, Kind::Leaf) {
        return Ok(Some(mime.body(id).to_vec()));
    }
    decode(&part.transfer_encoding, mime.body(id)).map(Some)
}

/// `body` with the transfer encoding `cte` undone.
fn decode(cte: &str, body: &[u8]) -> Result<Vec<u8>, BinaryError> {
    match cte {
        "7bit" | "8bit" | "binary" => Ok(body.to_vec()),
        "base64" => Ok(base64(body)),
        "quoted-printable" => Ok(quoted_printable(body)),
        _ => Err(BinaryError::UnknownCte),
    }
}

/// The whole message with each base64 / quoted-printable leaf part decoded in place
/// and its Content-Transfer-Encoding field saying `binary`.
fn binary_message(mime: &Mime<'_>) -> Result<Vec<u8>, BinaryError> {
    let raw = mime.raw();
    let mut encoded: Vec<PartId> = (0..mime.parts().len())
        .filter(|&id| {
            let p = mime.part(id);
            p.source == 0
                && matches!(p.kind, Kind::Leaf)
                && matches!(p.transfer_encoding.as_str(), "base64" | "quoted-printable")
        })
        .collect();
    encoded.sort_by_key(|&id| mime.part(id).header.start);
    if mime
        .parts()
        .iter()
        .any(|p| p.source == 0 && matches!(p.kind, Kind::Leaf) && !known(&p.transfer_encoding))
    {
        return Err(BinaryError::UnknownCte);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for id in encoded {
        let p = mime.part(id);
        if p.header.start < at {
            continue;
        }
        out.extend_from_slice(&raw[at..p.header.start]);
        out.extend_from_slice(&binary_header(&raw[p.header.clone()]));
        out.extend_from_slice(&decode(&p.transfer_encoding, &raw[p.body.clone()])?);
        at = p.body.end;
    }
    out.extend_from_slice(&raw[at..]);
    Ok(out)
}

fn known(cte: &str) -> bool {
    matches!(
        cte,
        "7bit" | "8bit" | "binary" | "base64" | "quoted-printable"
    )
}

/// A header block with its Content-Transfer-Encoding field's value made `binary`.
fn binary_header(block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len());
    let mut in_cte = false;
    for line in block.split_inclusive(|&b| b == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if in_cte && continuation {
            continue;
        }
        in_cte = false;
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if !continuation
            && line.contains(&b':')
            && name
                .trim_ascii()
                .eq_ignore_ascii_case(b"Content-Transfer-Encoding")
        {
            in_cte = true;
            out.extend_from_slice(&line[..=name.len()]);
            out.extend_from_slice(b" binary");
            out.extend_from_slice(if line.ends_with(b"\r\n") {
                b"\r\n"
            } else {
                b"\n"
            });
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// Base64 (RFC 2045 §6.8), leniently: characters outside the alphabet are skipped,
/// padding is optional.
fn base64(body: &[u8]) -> Vec<u8> {
    let value = |b: u8| -> Option<u32> {
        match b {
            b'A'..=b'Z' => Some(u32::from(b - b'A')),
            b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in body {
        if b == b'=' {
            break;
        }
        let Some(v) = value(b) else {
            continue;
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Undoes quoted-printable (RFC 2045 §6.7): `=XX` octets, soft line breaks (`=` at a
/// line's end) removed, and the white space that ends a line dropped (rule 3: it is
/// transport padding, not data). A `=` not followed by two hex digits stays as it is.
pub fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        let (text, ending): (&[u8], &[u8]) = if let Some(t) = line.strip_suffix(b"\r\n") {
            (t, b"\r\n")
        } else if let Some(t) = line.strip_suffix(b"\n") {
            (t, b"\n")
        } else {
            (line, b"")
        };
        let mut text = text;
        while let Some((&last, rest)) = text.split_last() {
            if last == b' ' || last == b'\t' {
                text = rest;
            } else {
                break;
            }
        }
        let soft = text.last() == Some(&b'=');
        if soft {
            text = &text[..text.len() - 1];
        }
        let mut i = 0;
        while i < text.len() {
            if text[i] == b'='
                && let (Some(h), Some(l)) = (
                    text.get(i + 1).copied().and_then(hex),
                    text.get(i + 2).copied().and_then(hex),
                )
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            out.push(text[i]);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(ending);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn binary_undoes_transfer_encodings() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nJ=C3=B6rg=\r\n and =3D  \r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n/w==\r\n--b\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
        let msg = Mime::parse(raw);
        assert_eq!(
            binary(&msg, &[1]).unwrap().unwrap(),
            "Jörg and =".as_bytes()
        );
        assert_eq!(binary(&msg, &[2]).unwrap().unwrap(), [0, 1, 2, 255]);
        assert_eq!(binary(&msg, &[3]), Err(BinaryError::UnknownCte));
        assert_eq!(binary(&msg, &[4]).unwrap(), None);
        // The whole message: every encoded part decoded; an unknown one refuses.
        assert_eq!(binary(&msg, &[]), Err(BinaryError::UnknownCte));
    }

    #[test]
    fn binary_of_the_whole_message_decodes_its_parts_in_place() {
        let raw = b"Subject: qp\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\ncaf=C3=A9  \r\nsoft=\r\nbreak\r\n";
        let msg = Mime::parse(raw);
        assert_eq!(
            binary(&msg, &[]).unwrap().unwrap(),
            "Subject: qp\r\nContent-Transfer-Encoding: binary\r\n\r\ncafé\r\nsoftbreak\r\n"
                .as_bytes()
        );
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding:\r\n base64\r\n\r\nAAE=\r\n--b--\r\n";
        let msg = Mime::parse(raw);
        assert_eq!(
            binary(&msg, &[]).unwrap().unwrap(),
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\n--b--\r\n"
        );
    }

    #[test]
    fn quoted_printable_drops_transport_padding() {
        assert_eq!(
            quoted_printable(b"a  \r\nb=  \r\nc =3D=ZZ=\r\n"),
            b"a\r\nbc ==ZZ"
        );
        assert_eq!(quoted_printable(b"no end"), b"no end");
    }
}
