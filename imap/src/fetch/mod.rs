//! What FETCH returns from a message's content (RFC 3501 §6.4.5, §7.4.2): body
//! sections by part number, ENVELOPE and BODY / BODYSTRUCTURE, computed from
//! mail-parser's MIME tree and the raw octets (sizes and sections are always the
//! octets as stored, never decoded text).

use mail_parser::{Address, HeaderName, Message, MessagePart, MimeHeaders, PartType};

use crate::resp;

/// A node of the MIME tree: a part of a message (each message carries its own raw
/// octets; a nested message/rfc822 that was transfer-encoded has decoded ones).
#[derive(Clone, Copy)]
pub struct Node<'m, 'x> {
    /// The message whose `parts` holds the part.
    pub msg: &'m Message<'x>,
    /// The part's index in `msg.parts`.
    pub part: usize,
}

impl<'m, 'x> Node<'m, 'x> {
    fn get(&self) -> Option<&'m MessagePart<'x>> {
        self.msg.parts.get(self.part)
    }

    fn raw(&self, from: u32, to: u32) -> &'m [u8] {
        self.msg
            .raw_message
            .get(from as usize..to as usize)
            .unwrap_or_default()
    }

    /// The part's body octets (for message/rfc822, the whole embedded message).
    pub fn body(&self) -> &'m [u8] {
        self.get()
            .map_or(&[][..], |p| self.raw(p.offset_body, p.offset_end))
    }

    /// The part's own header block (its MIME header), blank line included.
    pub fn header(&self) -> &'m [u8] {
        self.get()
            .map_or(&[][..], |p| self.raw(p.offset_header, p.offset_body))
    }

    /// The message inside a message/rfc822 part.
    pub fn embedded(&self) -> Option<&'m Message<'x>> {
        match &self.get()?.body {
            PartType::Message(m) => Some(m),
            _ => None,
        }
    }

    fn children(&self) -> Option<&'m [u32]> {
        match &self.get()?.body {
            PartType::Multipart(ids) => Some(ids),
            _ => None,
        }
    }
}

/// Resolves a section part number (`1.2.3`) from the top of `msg` (RFC 3501 §6.4.5:
/// a non-multipart message's body is part 1; a message/rfc822 part's numbers go
/// into the embedded message).
pub fn resolve<'m, 'x>(msg: &'m Message<'x>, path: &[u32]) -> Option<Node<'m, 'x>> {
    let mut node: Option<Node<'m, 'x>> = None;
    for &k in path {
        let k = k as usize;
        let next = match node {
            None => child_of_message(msg, k)?,
            Some(n) => match (n.children(), n.embedded()) {
                (Some(ids), _) => Node {
                    msg: n.msg,
                    part: *ids.get(k.checked_sub(1)?)? as usize,
                },
                (None, Some(inner)) => child_of_message(inner, k)?,
                (None, None) => return None,
            },
        };
        node = Some(next);
    }
    node
}

fn child_of_message<'m, 'x>(msg: &'m Message<'x>, k: usize) -> Option<Node<'m, 'x>> {
    let root = Node { msg, part: 0 };
    match root.children() {
        Some(ids) => Some(Node {
            msg,
            part: *ids.get(k.checked_sub(1)?)? as usize,
        }),
        None if k == 1 => Some(root),
        None => None,
    }
}

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

/// The RFC 3501 ENVELOPE of a message.
pub fn envelope(msg: &Message<'_>, out: &mut Vec<u8>) {
    out.push(b'(');
    raw_field(msg, HeaderName::Date, out);
    out.push(b' ');
    raw_field(msg, HeaderName::Subject, out);
    let from = msg.from();
    for (i, list) in [
        from,
        msg.sender().or(from),
        msg.reply_to().or(from),
        msg.to(),
        msg.cc(),
        msg.bcc(),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = i;
        out.push(b' ');
        addresses(list, out);
    }
    out.push(b' ');
    raw_field(msg, HeaderName::InReplyTo, out);
    out.push(b' ');
    raw_field(msg, HeaderName::MessageId, out);
    out.push(b')');
}

/// A header's raw value, unfolded and trimmed, or NIL.
fn raw_field(msg: &Message<'_>, name: HeaderName<'_>, out: &mut Vec<u8>) {
    match msg.header_raw(name) {
        Some(v) => {
            let unfolded: String = v.replace("\r\n", "").replace('\n', "");
            let trimmed = unfolded.trim();
            if trimmed.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                resp::string(out, trimmed.as_bytes());
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

/// An RFC 2047 encoded word for a non-ASCII display name, so that the envelope
/// carries what the header would (names are decoded by mail-parser).
fn encoded_name(name: &str) -> Vec<u8> {
    if name.is_ascii() {
        name.as_bytes().to_vec()
    } else {
        use base64::Engine;
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
        )
        .into_bytes()
    }
}

fn address(name: Option<&str>, email: Option<&str>, out: &mut Vec<u8>) {
    out.push(b'(');
    resp::nstring(out, name.map(encoded_name).as_deref());
    out.extend_from_slice(b" NIL ");
    match email.and_then(|e| e.rsplit_once('@')) {
        Some((local, host)) => {
            resp::string(out, local.as_bytes());
            out.push(b' ');
            resp::string(out, host.as_bytes());
        }
        None => {
            resp::nstring(out, email.map(str::as_bytes));
            out.extend_from_slice(b" NIL");
        }
    }
    out.push(b')');
}

fn addresses(list: Option<&Address<'_>>, out: &mut Vec<u8>) {
    let Some(list) = list else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut inner = Vec::new();
    match list {
        Address::List(addrs) => {
            for a in addrs {
                address(a.name.as_deref(), a.address.as_deref(), &mut inner);
            }
        }
        Address::Group(groups) => {
            for g in groups {
                match &g.name {
                    // RFC 3501 §7.4.2: a group is (NIL NIL "name" NIL) ... (NIL NIL NIL NIL).
                    Some(name) => {
                        inner.extend_from_slice(b"(NIL NIL ");
                        resp::string(&mut inner, name.as_bytes());
                        inner.extend_from_slice(b" NIL)");
                        for a in &g.addresses {
                            address(a.name.as_deref(), a.address.as_deref(), &mut inner);
                        }
                        inner.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => {
                        for a in &g.addresses {
                            address(a.name.as_deref(), a.address.as_deref(), &mut inner);
                        }
                    }
                }
            }
        }
    }
    if inner.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend_from_slice(&inner);
        out.push(b')');
    }
}

/// BODY (`extended` false) or BODYSTRUCTURE (`extended` true) of a message.
pub fn structure(msg: &Message<'_>, extended: bool, out: &mut Vec<u8>) {
    part_structure(Node { msg, part: 0 }, extended, false, out);
}

fn part_structure(node: Node<'_, '_>, extended: bool, in_digest: bool, out: &mut Vec<u8>) {
    let Some(part) = node.get() else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let ct = part.content_type();
    if let Some(children) = node.children() {
        let subtype = ct
            .and_then(|c| c.subtype())
            .unwrap_or("mixed")
            .to_ascii_lowercase();
        out.push(b'(');
        if children.is_empty() {
            // RFC 3501 needs at least one body: an empty text/plain stands in.
            out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
        }
        for &child in children {
            part_structure(
                Node {
                    msg: node.msg,
                    part: child as usize,
                },
                extended,
                subtype == "digest",
                out,
            );
        }
        out.push(b' ');
        resp::string(out, subtype.as_bytes());
        if extended {
            out.push(b' ');
            params(ct.and_then(|c| c.attributes()), out);
            out.push(b' ');
            disposition(part, out);
            out.push(b' ');
            language(part, out);
            out.push(b' ');
            resp::nstring(out, part.content_location().map(str::as_bytes));
        }
        out.push(b')');
        return;
    }
    let (ctype, subtype) = match ct {
        Some(c) => (
            c.ctype().to_ascii_lowercase(),
            c.subtype().map_or_else(
                || {
                    if c.ctype().eq_ignore_ascii_case("text") {
                        "plain".to_string()
                    } else {
                        String::new()
                    }
                },
                str::to_ascii_lowercase,
            ),
        ),
        None if in_digest => ("message".to_string(), "rfc822".to_string()),
        None => ("text".to_string(), "plain".to_string()),
    };
    let body = node.body();
    out.push(b'(');
    resp::string(out, ctype.as_bytes());
    out.push(b' ');
    resp::string(out, subtype.as_bytes());
    out.push(b' ');
    match ct.and_then(|c| c.attributes()) {
        Some(a) if !a.is_empty() => params(Some(a), out),
        _ if ctype == "text" => out.extend_from_slice(b"(\"charset\" \"us-ascii\")"),
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    resp::nstring(out, part.content_id().map(str::as_bytes));
    out.push(b' ');
    resp::nstring(out, part.content_description().map(str::as_bytes));
    out.push(b' ');
    let encoding = part
        .content_transfer_encoding()
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "7bit".into());
    resp::string(out, encoding.as_bytes());
    resp::raw(out, &format!(" {}", body.len()));
    if ctype == "message" && subtype == "rfc822" {
        if let Some(inner) = node.embedded() {
            out.push(b' ');
            envelope(inner, out);
            out.push(b' ');
            structure(inner, extended, out);
        } else {
            out.extend_from_slice(b" NIL (\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
        }
        resp::raw(out, &format!(" {}", lines(body)));
    } else if ctype == "text" {
        resp::raw(out, &format!(" {}", lines(body)));
    }
    if extended {
        out.push(b' ');
        // Content-MD5 (RFC 1864) is obsolete and not kept: NIL.
        out.extend_from_slice(b"NIL");
        out.push(b' ');
        disposition(part, out);
        out.push(b' ');
        language(part, out);
        out.push(b' ');
        resp::nstring(out, part.content_location().map(str::as_bytes));
    }
    out.push(b')');
}

fn lines(body: &[u8]) -> usize {
    let n = body.iter().filter(|&&b| b == b'\n').count();
    if body.last().is_some_and(|&b| b != b'\n') {
        n + 1
    } else {
        n
    }
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
