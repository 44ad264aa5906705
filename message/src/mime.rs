//! The MIME structure of a message (RFC 2045, RFC 2046), walked in one pass over its
//! lines with an explicit stack: no recursion, linear time, and bounded nesting and part
//! counts ([`Limits`], Dovecot's defaults since CVE-2020-12100). A multipart or an
//! embedded message beyond a limit is kept as one opaque body, so every octet of the
//! message still belongs to some part.
//!
//! Each part records where its header block and its body are, as byte ranges of the
//! message (or of a decoded copy, for the rare message/rfc822 part that was
//! transfer-encoded), and how many lines its body has, so that a reader never needs to
//! walk a part twice.

use std::borrow::Cow;
use std::ops::Range;

use mail_parser::{MessageParser, MimeHeaders};

/// A part's index in [`Mime::parts`]; the message itself is part 0.
pub type PartId = usize;

/// How much structure is walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of multiparts and embedded messages followed (the message is at
    /// depth 0).
    pub max_depth: usize,
    /// Most parts recorded; later parts of a multipart are not listed.
    pub max_parts: usize,
    /// Most transfer-encoded message/rfc822 bodies decoded to be walked (each needs a
    /// decoded copy; RFC 2046 §5.2.1 does not allow them, some clients send them).
    pub max_decoded: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 100,
            max_parts: 10_000,
            max_decoded: 3,
        }
    }
}

/// What a part holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A body that is not walked further: a leaf, or a multipart or message/rfc822 part
    /// left [`Part::opaque`].
    Leaf,
    /// A multipart's body parts, in order.
    Multipart(Vec<PartId>),
    /// A message/rfc822 part: the part that is the embedded message.
    Message(PartId),
}

/// One part of the MIME tree.
#[derive(Debug, Clone)]
pub struct Part {
    /// Which buffer the ranges refer to (0: the message; see [`Mime::source`]).
    pub source: usize,
    /// The header block, with the blank line that ends it when there is one.
    pub header: Range<usize>,
    /// The body (for a multipart: preamble, parts and epilogue; for message/rfc822:
    /// the whole embedded message). The line break before a boundary delimiter belongs
    /// to the delimiter (RFC 2046 §5.1.1).
    pub body: Range<usize>,
    /// Lines of the body: its LF count, plus one for a last line without LF.
    pub lines: usize,
    /// 0 for the message, one more for each multipart or message/rfc822 level.
    pub depth: usize,
    /// The multipart or message/rfc822 part this one is in.
    pub parent: Option<PartId>,
    /// What it holds.
    pub kind: Kind,
    /// Media type, lower case; `text` when absent (RFC 2045 §5.2), `message` in a
    /// multipart/digest (RFC 2046 §5.1.5).
    pub media_type: String,
    /// Media subtype, lower case; empty when the field gave none.
    pub media_subtype: String,
    /// Content-Transfer-Encoding, lower case; `7bit` when absent (RFC 2045 §6.1).
    pub transfer_encoding: String,
    /// A multipart or message/rfc822 part whose structure was not followed (a limit,
    /// no boundary, or an encoding that cannot be undone): readers treat it as an
    /// opaque application/octet-stream body.
    pub opaque: bool,
    /// LF count before `body.start` in the source.
    body_lines_before: usize,
    /// On part 0: some structure was nested deeper than the depth limit.
    truncated: bool,
    /// Whether the part is a direct child of a multipart/digest.
    in_digest: bool,
}

impl Part {
    /// Whether the part is a message/rfc822 (the one message type IMAP describes with an
    /// envelope; RFC 3501 §7.4.2).
    pub fn is_message(&self) -> bool {
        self.media_type == "message" && self.media_subtype == "rfc822"
    }
}

/// A message and its MIME tree.
#[derive(Debug)]
pub struct Mime<'x> {
    sources: Vec<Cow<'x, [u8]>>,
    parts: Vec<Part>,
}

impl<'x> Mime<'x> {
    /// Walks `raw` with the default limits.
    pub fn parse(raw: &'x [u8]) -> Mime<'x> {
        Mime::parse_with(raw, Limits::default())
    }

    /// Walks `raw` within `limits`.
    pub fn parse_with(raw: &'x [u8], limits: Limits) -> Mime<'x> {
        let mut mime = Mime {
            sources: vec![Cow::Borrowed(raw)],
            parts: Vec::new(),
        };
        let mut encoded = Vec::new();
        walk(raw, 0, None, 0, limits, &mut mime.parts, &mut encoded);
        // Transfer-encoded embedded messages, each walked from a decoded copy.
        let mut decoded = 0;
        while let Some(id) = encoded.pop() {
            let part = &mime.parts[id];
            let body = &mime.sources[part.source][part.body.clone()];
            let copy = match part.transfer_encoding.as_str() {
                "base64" => mail_parser::decoders::base64::base64_decode(body),
                "quoted-printable" => {
                    mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                }
                _ => None,
            };
            let (Some(copy), true) = (copy, decoded < limits.max_decoded) else {
                mime.parts[id].opaque = true;
                continue;
            };
            decoded += 1;
            let source = mime.sources.len();
            let depth = mime.parts[id].depth + 1;
            let root = walk(
                &copy,
                source,
                Some(id),
                depth,
                limits,
                &mut mime.parts,
                &mut encoded,
            );
            mime.sources.push(Cow::Owned(copy));
            mime.parts[id].kind = Kind::Message(root);
        }
        mime
    }

    /// Whether the message nests multiparts or messages deeper than the depth limit
    /// (readers that would recurse over the whole structure, such as sieve-rs's
    /// mail-parser tree, must not be given it).
    pub fn too_deep(&self) -> bool {
        self.parts.iter().any(|p| p.truncated)
    }

    /// Every part; the message is part 0.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// One part.
    pub fn part(&self, id: PartId) -> &Part {
        &self.parts[id]
    }

    /// The buffer a part's ranges refer to.
    pub fn source(&self, id: PartId) -> &[u8] {
        &self.sources[self.parts[id].source]
    }

    /// The message as given.
    pub fn raw(&self) -> &[u8] {
        &self.sources[0]
    }

    /// A part's header block.
    pub fn header(&self, id: PartId) -> &[u8] {
        let p = &self.parts[id];
        self.sources[p.source]
            .get(p.header.clone())
            .unwrap_or_default()
    }

    /// A part's body octets, as stored.
    pub fn body(&self, id: PartId) -> &[u8] {
        let p = &self.parts[id];
        self.sources[p.source]
            .get(p.body.clone())
            .unwrap_or_default()
    }

    /// A multipart's body parts (none for any other part).
    pub fn children(&self, id: PartId) -> &[PartId] {
        match &self.parts[id].kind {
            Kind::Multipart(ids) => ids,
            _ => &[],
        }
    }

    /// The embedded message of a message/rfc822 part.
    pub fn embedded(&self, id: PartId) -> Option<PartId> {
        match self.parts[id].kind {
            Kind::Message(root) => Some(root),
            _ => None,
        }
    }

    /// A part's header block parsed by mail-parser (no body: nothing nested).
    pub fn headers(&self, id: PartId) -> Option<mail_parser::Message<'_>> {
        MessageParser::default().parse_headers(self.header(id))
    }

    /// The part an IMAP section part number names (RFC 3501 §6.4.5): numbers count a
    /// multipart's parts from 1; a message whose body is not multipart has its body
    /// as part 1; the numbers after a message/rfc822 part go into its message.
    pub fn resolve(&self, path: &[u32]) -> Option<PartId> {
        let mut at: Option<PartId> = None;
        for &k in path {
            let k = usize::try_from(k).ok()?;
            let message = match at {
                None => 0,
                Some(id) => match &self.parts[id].kind {
                    Kind::Multipart(ids) => {
                        at = Some(*ids.get(k.checked_sub(1)?)?);
                        continue;
                    }
                    Kind::Message(root) => *root,
                    Kind::Leaf => return None,
                },
            };
            at = Some(match &self.parts[message].kind {
                Kind::Multipart(ids) => *ids.get(k.checked_sub(1)?)?,
                _ if k == 1 => message,
                _ => return None,
            });
        }
        at
    }

    /// The decoded text of a text/* leaf (transfer encoding and charset undone), for
    /// searching; `None` for any other part.
    pub fn text(&self, id: PartId) -> Option<String> {
        let p = &self.parts[id];
        if p.media_type != "text" || p.kind != Kind::Leaf {
            return None;
        }
        let body = self.body(id);
        let decoded: Cow<'_, [u8]> = match p.transfer_encoding.as_str() {
            "base64" => mail_parser::decoders::base64::base64_decode(body)?.into(),
            "quoted-printable" => {
                mail_parser::decoders::quoted_printable::quoted_printable_decode(body)?.into()
            }
            _ => body.into(),
        };
        let headers = self.headers(id);
        let decoder = headers
            .as_ref()
            .and_then(|h| h.root_part().content_type())
            .and_then(|ct| ct.attribute("charset"))
            .and_then(|c| mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes()));
        Some(match decoder {
            Some(decode) => decode(&decoded),
            None => String::from_utf8_lossy(&decoded).into_owned(),
        })
    }
}

/// An open part while walking: a multipart still taking parts has its boundary.
struct Frame {
    part: PartId,
    boundary: Option<Vec<u8>>,
}

/// Walks one buffer whose start is the header of a message (`parent`: the
/// message/rfc822 part it is embedded in). Returns the message's part; transfer-encoded
/// message/rfc822 parts found are added to `encoded`.
fn walk(
    buf: &[u8],
    source: usize,
    parent: Option<PartId>,
    depth: usize,
    limits: Limits,
    parts: &mut Vec<Part>,
    encoded: &mut Vec<PartId>,
) -> PartId {
    let root = new_part(parts, source, 0, 0, parent, depth, false);
    let mut frames = vec![Frame {
        part: root,
        boundary: None,
    }];
    // The innermost frame's part is still in its header block.
    let mut in_header = true;
    let mut pos = 0;
    let mut lines_before = 0;
    while pos < buf.len() {
        let end = buf[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| pos + i + 1);
        let line = &buf[pos..end];
        let ends_in_lf = line.last() == Some(&b'\n');
        if let Some((k, closing)) = delimiter(&frames, line) {
            // The line break before the delimiter is the delimiter's (pos > 0: a
            // boundary is only known after a header block).
            let cut = if pos >= 2 && buf[pos - 2] == b'\r' {
                pos - 2
            } else {
                pos - 1
            };
            let cut_lines = lines_before - 1;
            while frames.len() > k + 1 {
                if let Some(f) = frames.pop() {
                    end_part(parts, f.part, cut, cut_lines, buf, in_header);
                    in_header = false;
                }
            }
            if closing {
                frames[k].boundary = None;
            } else if parts.len() < limits.max_parts {
                let multipart = frames[k].part;
                let in_digest = parts[multipart].media_subtype == "digest";
                let child_depth = parts[multipart].depth + 1;
                let lines = lines_before + usize::from(ends_in_lf);
                let child = new_part(
                    parts,
                    source,
                    end,
                    lines,
                    Some(multipart),
                    child_depth,
                    in_digest,
                );
                if let Kind::Multipart(ids) = &mut parts[multipart].kind {
                    ids.push(child);
                }
                frames.push(Frame {
                    part: child,
                    boundary: None,
                });
                in_header = true;
            }
        } else if in_header && (line == b"\r\n" || line == b"\n") {
            let id = frames[frames.len() - 1].part;
            let p = &mut parts[id];
            p.header.end = end;
            p.body = end..end;
            p.body_lines_before = lines_before + 1;
            let boundary = classify(p, buf);
            in_header = false;
            let descend = parts.len() < limits.max_parts && parts[id].depth < limits.max_depth;
            if parts[id].depth >= limits.max_depth
                && (parts[id].media_type == "multipart" || parts[id].is_message())
            {
                // A structure this deep is cut here: the first part cut is remembered.
                parts[0].truncated = true;
            }
            let p = &mut parts[id];
            match (p.media_type.as_str(), p.media_subtype.as_str()) {
                ("multipart", _) => match boundary {
                    Some(b) if descend => {
                        p.kind = Kind::Multipart(Vec::new());
                        if let Some(top) = frames.last_mut() {
                            top.boundary = Some(b);
                        }
                    }
                    _ => p.opaque = true,
                },
                ("message", "rfc822") => match p.transfer_encoding.as_str() {
                    "7bit" | "8bit" | "binary" if descend => {
                        let child_depth = p.depth + 1;
                        let child = new_part(
                            parts,
                            source,
                            end,
                            lines_before + 1,
                            Some(id),
                            child_depth,
                            false,
                        );
                        parts[id].kind = Kind::Message(child);
                        frames.push(Frame {
                            part: child,
                            boundary: None,
                        });
                        in_header = true;
                    }
                    "base64" | "quoted-printable" if descend => encoded.push(id),
                    _ => p.opaque = true,
                },
                _ => {}
            }
        }
        lines_before += usize::from(ends_in_lf);
        pos = end;
    }
    while let Some(f) = frames.pop() {
        end_part(parts, f.part, buf.len(), lines_before, buf, in_header);
        in_header = false;
    }
    root
}

fn new_part(
    parts: &mut Vec<Part>,
    source: usize,
    start: usize,
    lines_before: usize,
    parent: Option<PartId>,
    depth: usize,
    in_digest: bool,
) -> PartId {
    parts.push(Part {
        source,
        header: start..start,
        body: start..start,
        lines: 0,
        depth,
        parent,
        kind: Kind::Leaf,
        media_type: String::new(),
        media_subtype: String::new(),
        transfer_encoding: String::new(),
        opaque: false,
        body_lines_before: lines_before,
        in_digest,
        truncated: false,
    });
    parts.len() - 1
}

/// Ends a part at `cut` (`cut_lines` LFs before it). A part still in its header block
/// (no blank line came) has that header and an empty body.
fn end_part(
    parts: &mut [Part],
    id: PartId,
    cut: usize,
    cut_lines: usize,
    buf: &[u8],
    in_header: bool,
) {
    let p = &mut parts[id];
    if in_header {
        p.header.end = cut.max(p.header.start);
        p.body = p.header.end..p.header.end;
        classify(p, buf);
        p.opaque = p.media_type == "multipart" || p.is_message();
        return;
    }
    p.body.end = cut.max(p.body.start);
    p.lines = if p.body.is_empty() {
        0
    } else {
        let last_unterminated = buf.get(p.body.end - 1) != Some(&b'\n');
        cut_lines.saturating_sub(p.body_lines_before) + usize::from(last_unterminated)
    };
}

/// Which open multipart `line` is a boundary delimiter of (innermost first), and
/// whether it is the close delimiter (RFC 2046 §5.1.1: `--boundary` then optional
/// white space; `--boundary--` closes).
fn delimiter(frames: &[Frame], line: &[u8]) -> Option<(usize, bool)> {
    let rest = line.strip_prefix(b"--")?;
    frames.iter().enumerate().rev().find_map(|(k, f)| {
        let after = rest.strip_prefix(f.boundary.as_deref()?)?;
        if after.starts_with(b"--") {
            Some((k, true))
        } else if after.iter().all(|b| b.is_ascii_whitespace()) {
            Some((k, false))
        } else {
            None
        }
    })
}

/// Sets a part's media type and transfer encoding from its header block; returns the
/// boundary parameter of a multipart.
fn classify(p: &mut Part, buf: &[u8]) -> Option<Vec<u8>> {
    let block = &buf[p.header.clone()];
    let parsed = MessageParser::default().parse_headers(block);
    let root = parsed.as_ref().map(|m| m.root_part());
    match root.and_then(|r| r.content_type()) {
        Some(ct) => {
            p.media_type = ct.ctype().trim().to_ascii_lowercase();
            p.media_subtype = ct
                .subtype()
                .map(|s| s.trim().to_ascii_lowercase())
                .unwrap_or_default();
        }
        None if p.in_digest => {
            p.media_type = "message".into();
            p.media_subtype = "rfc822".into();
        }
        None => {
            p.media_type = "text".into();
            p.media_subtype = "plain".into();
        }
    }
    p.transfer_encoding = root
        .and_then(|r| r.content_transfer_encoding())
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "7bit".into());
    let b = root?.content_type()?.attribute("boundary")?;
    (p.media_type == "multipart" && !b.is_empty()).then(|| b.as_bytes().to_vec())
}

#[cfg(test)]
mod tests;
