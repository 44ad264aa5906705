//! What FETCH returns from a message's content (RFC 3501 §6.4.5, §7.4.2): body
//! sections by part number, ENVELOPE and BODY / BODYSTRUCTURE, computed from
//! mail-parser's MIME tree and the raw octets (sizes and sections are always the
//! octets as stored, never decoded text).

use mail_parser::{Message, MessagePart, MimeHeaders};
use message::{Mime, PartId};

use crate::resp;

pub mod envelope;
pub mod job;
pub mod section;

pub use envelope::envelope;

/// The header lines of `header_block` whose names are (`not`: are not) in `names`,
/// folded lines kept, then the blank line (RFC 3501 HEADER.FIELDS[.NOT]).
pub fn header_fields(header_block: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header_block.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !(line[0] == b' ' || line[0] == b'\t') {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name.trim()));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// BODY (`extended` false) or BODYSTRUCTURE (`extended` true) of the message at
/// `id` (0: the whole message). Its recursion follows the MIME walker's parts, whose
/// depth is bounded ([`message::Limits`]).
pub fn structure(mime: &Mime<'_>, id: PartId, extended: bool, out: &mut Vec<u8>) {
    let part = mime.part(id);
    let headers = mime.headers(id);
    let root = headers.as_ref().map(Message::root_part);
    let ct = root.and_then(MimeHeaders::content_type);
    let children = mime.children(id);
    if !children.is_empty() || matches!(part.kind, message::Kind::Multipart(_)) {
        out.push(b'(');
        if children.is_empty() {
            // RFC 3501 needs at least one body: an empty text/plain stands in.
            out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
        }
        for &child in children {
            structure(mime, child, extended, out);
        }
        out.push(b' ');
        let subtype = if part.media_subtype.is_empty() {
            "mixed"
        } else {
            &part.media_subtype
        };
        resp::string(out, subtype.as_bytes());
        if extended {
            out.push(b' ');
            params(ct.and_then(|c| c.attributes()), out);
            extension(root, out);
        }
        out.push(b')');
        return;
    }
    // A multipart or message beyond the walker's limits is one opaque body.
    let (ctype, subtype) = if part.opaque {
        ("application", "octet-stream")
    } else if part.media_type == "text" && part.media_subtype.is_empty() {
        ("text", "plain")
    } else {
        (part.media_type.as_str(), part.media_subtype.as_str())
    };
    let body = mime.body(id);
    out.push(b'(');
    resp::string(out, ctype.as_bytes());
    out.push(b' ');
    resp::string(out, subtype.as_bytes());
    out.push(b' ');
    match ct.and_then(|c| c.attributes()) {
        Some(a) if !a.is_empty() && !part.opaque => params(Some(a), out),
        _ if ctype == "text" => out.extend_from_slice(b"(\"charset\" \"us-ascii\")"),
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    resp::nstring(out, root.and_then(|r| r.content_id()).map(str::as_bytes));
    out.push(b' ');
    resp::nstring(
        out,
        root.and_then(|r| r.content_description())
            .map(str::as_bytes),
    );
    out.push(b' ');
    resp::string(out, part.transfer_encoding.as_bytes());
    resp::raw(out, &format!(" {}", body.len()));
    if ctype == "message" && subtype == "rfc822" {
        match mime.embedded(id) {
            Some(inner) => {
                out.push(b' ');
                envelope(mime.header(inner), out);
                out.push(b' ');
                structure(mime, inner, extended, out);
            }
            None => {
                out.push(b' ');
                empty_envelope(out);
                out.extend_from_slice(b" (\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
            }
        }
        resp::raw(out, &format!(" {}", part.lines));
    } else if ctype == "text" {
        resp::raw(out, &format!(" {}", part.lines));
    }
    if extended {
        out.push(b' ');
        // Content-MD5 (RFC 1864) is obsolete and not kept: NIL.
        out.extend_from_slice(b"NIL");
        extension(root, out);
    }
    out.push(b')');
}

/// The envelope of a message with no header fields.
pub fn empty_envelope(out: &mut Vec<u8>) {
    out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
}

/// The extension data every part ends with: disposition, language, location.
fn extension(part: Option<&MessagePart<'_>>, out: &mut Vec<u8>) {
    out.push(b' ');
    match part {
        Some(p) => disposition(p, out),
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match part {
        Some(p) => language(p, out),
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    resp::nstring(
        out,
        part.and_then(|p| p.content_location()).map(str::as_bytes),
    );
}

fn params(attrs: Option<&[mail_parser::Attribute<'_>]>, out: &mut Vec<u8>) {
    match attrs {
        Some(a) if !a.is_empty() => {
            out.push(b'(');
            for (i, attr) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                resp::string(out, attr.name.to_ascii_lowercase().as_bytes());
                out.push(b' ');
                resp::string(out, attr.value.as_bytes());
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
}

fn disposition(part: &MessagePart<'_>, out: &mut Vec<u8>) {
    match part.content_disposition() {
        Some(d) => {
            out.push(b'(');
            resp::string(out, d.ctype().to_ascii_lowercase().as_bytes());
            out.push(b' ');
            params(d.attributes(), out);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

fn language(part: &MessagePart<'_>, out: &mut Vec<u8>) {
    match part.content_language() {
        mail_parser::HeaderValue::Text(t) => resp::string(out, t.as_bytes()),
        mail_parser::HeaderValue::TextList(list) if !list.is_empty() => {
            out.push(b'(');
            for (i, t) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                resp::string(out, t.as_bytes());
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
}

#[cfg(test)]
mod tests;
