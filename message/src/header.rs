//! The header fields of a message (RFC 5322 §2.2): one scanner that every part of
//! Postern uses, so no two of them can disagree about which fields a message has.
//!
//! A field starts at a line that does not begin with white space and runs over the
//! folded lines after it; the header ends at the first empty line. A line that is
//! neither a field nor a continuation (no colon, a name outside RFC 5322's `ftext`, or
//! a continuation with nothing to continue) is skipped, not taken as the end of the
//! header: a reader that went on would otherwise see fields this scanner missed.

/// One header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'x> {
    /// The field name, without trailing white space (RFC 5322 §4.5.3 allows it).
    pub name: &'x [u8],
    /// The raw value after the colon, folding kept, without the final line break.
    pub value: &'x [u8],
    /// The whole field as it stands in the message, line break included.
    pub raw: &'x [u8],
    /// Where `raw` starts in the message.
    pub offset: usize,
    /// Where the colon is in `raw`.
    pub colon: usize,
}

/// One stretch of the header: a line and its continuation lines, a field or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span<'x> {
    /// The lines as they stand in the message, line breaks included.
    pub raw: &'x [u8],
    /// Where `raw` starts in the message.
    pub offset: usize,
    /// The field these lines are, if they are one.
    pub field: Option<Field<'x>>,
}

impl Field<'_> {
    /// Whether the field is called `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded (RFC 5322 §2.2.3: the CRLF before folding white space
    /// removed) and trimmed, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        unfold(self.value)
    }
}

/// The value with its line breaks removed and surrounding white space trimmed.
pub fn unfold(value: &[u8]) -> String {
    let unfolded: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    String::from_utf8_lossy(&unfolded).trim().to_string()
}

/// The fields of the header at the start of `message`.
pub fn fields(message: &[u8]) -> impl Iterator<Item = Field<'_>> + Clone {
    spans(message).filter_map(|s| s.field)
}

/// Every stretch of the header at the start of `message`, fields or not, in order.
pub fn spans(message: &[u8]) -> Spans<'_> {
    Spans {
        message,
        pos: 0,
        done: false,
    }
}

/// The length of the header block at the start of `message`, with the empty line that
/// ends it (the whole message if there is none).
pub fn header_len(message: &[u8]) -> usize {
    let mut pos = 0;
    while pos < message.len() {
        let end = line_end(message, pos);
        if is_blank(&message[pos..end]) {
            return end;
        }
        pos = end;
    }
    message.len()
}

/// The values of every field called `name`, unfolded.
pub fn values(message: &[u8], name: &str) -> Vec<String> {
    fields(message)
        .filter(|f| f.is(name))
        .map(|f| f.text())
        .collect()
}

/// An iterator over the stretches of a message's header.
#[derive(Debug, Clone)]
pub struct Spans<'x> {
    message: &'x [u8],
    pos: usize,
    done: bool,
}

impl<'x> Iterator for Spans<'x> {
    type Item = Span<'x>;

    fn next(&mut self) -> Option<Span<'x>> {
        let m = self.message;
        if self.done || self.pos >= m.len() {
            return None;
        }
        let start = self.pos;
        let first_end = line_end(m, start);
        let first = &m[start..first_end];
        if is_blank(first) {
            self.done = true;
            return None;
        }
        // Continuation lines of this stretch.
        let mut end = first_end;
        while end < m.len() && matches!(m[end], b' ' | b'\t') {
            end = line_end(m, end);
        }
        self.pos = end;
        let raw = &m[start..end];
        let field = first
            .iter()
            .position(|&b| b == b':')
            .filter(|_| !matches!(first[0], b' ' | b'\t'))
            .map(|colon| (colon, trim_end(&first[..colon])))
            .filter(|(_, name)| is_field_name(name))
            .map(|(colon, name)| Field {
                name,
                value: strip_line_break(&raw[colon + 1..]),
                raw,
                offset: start,
                colon,
            });
        Some(Span {
            raw,
            offset: start,
            field,
        })
    }
}

/// RFC 5322 §3.6.8: a field name is one or more printable US-ASCII characters other
/// than the colon.
pub fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
}

fn line_end(m: &[u8], from: usize) -> usize {
    m[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(m.len(), |i| from + i + 1)
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &b[..n]
}

fn strip_line_break(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fields_folding_and_the_end_of_the_header() {
        let m = b"From: a@example.org\r\nSubject: one\r\n two\r\nbroken line\r\n continued\r\nTo : b@example.org\r\n\r\nFrom: body@example.org\r\n";
        let got: Vec<(String, String)> = fields(m)
            .map(|f| (String::from_utf8(f.name.to_vec()).unwrap(), f.text()))
            .collect();
        assert_eq!(
            got,
            [
                ("From".to_string(), "a@example.org".to_string()),
                ("Subject".into(), "one two".into()),
                ("To".into(), "b@example.org".into()),
            ]
        );
        let subject = fields(m).nth(1).unwrap();
        assert_eq!(subject.raw, b"Subject: one\r\n two\r\n");
        assert_eq!(subject.value, b" one\r\n two");
        assert_eq!(&m[subject.offset..subject.offset + 8], b"Subject:");
        assert_eq!(header_len(m), m.len() - b"From: body@example.org\r\n".len());
        assert_eq!(values(m, "from"), ["a@example.org"]);
    }

    #[test]
    fn a_header_without_a_body_and_bare_line_feeds() {
        let m = b"A: 1\nB: 2";
        assert_eq!(fields(m).count(), 2);
        assert_eq!(header_len(m), m.len());
        assert_eq!(fields(b"\r\nA: 1\r\n").count(), 0);
        assert_eq!(header_len(b"\r\nA: 1\r\n"), 2);
        // A leading continuation line continues nothing and is skipped, as is a name
        // with a space in it.
        assert_eq!(values(b" x\r\nA: 1\r\nFr om: y\r\n\r\n", "a"), ["1"]);
        assert_eq!(fields(b"Fr om: y\r\n\r\n").count(), 0);
        let spans: Vec<_> = spans(b" x\r\nA: 1\r\n\r\nB: 2").collect();
        assert_eq!(spans.len(), 2);
        assert!(spans[0].field.is_none());
        assert_eq!(spans[1].field.unwrap().colon, 1);
    }
}
