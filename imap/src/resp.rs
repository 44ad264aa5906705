//! Writing response data: IMAP strings (quoted where the grammar allows, a literal
//! otherwise), NIL, flag lists and tagged status lines (RFC 3501 §4, §7).

use std::fmt::Write as _;

/// Appends `s` as an IMAP string: quoted when it is short 7-bit text without CR, LF,
/// NUL, otherwise a literal (RFC 3501 §4.3).
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024
        && s.iter()
            .all(|&b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n');
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends a literal `{n}` CRLF and the octets.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(Sink(out), "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

/// Appends NIL or the string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Appends `(f1 f2 ...)`.
pub fn flag_list<S: AsRef<str>>(out: &mut Vec<u8>, flags: impl IntoIterator<Item = S>) {
    out.push(b'(');
    for (i, f) in flags.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_ref().as_bytes());
    }
    out.push(b')');
}

/// Appends text as it is (numbers, atoms, fixed syntax).
pub fn raw(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// A `fmt::Write` into a byte vector.
pub struct Sink<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends a formatted line ending in CRLF.
#[macro_export]
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = write!($crate::resp::Sink($out), $($arg)*);
        $out.extend_from_slice(b"\r\n");
    }};
}

/// The result of a command: tag, `OK`/`NO`/`BAD`, an optional response code, text.
pub fn tagged(out: &mut Vec<u8>, tag: &str, status: &str, code: Option<&str>, text: &str) {
    match code {
        Some(code) => line!(out, "{tag} {status} [{code}] {text}"),
        None => line!(out, "{tag} {status} {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        string(&mut out, br#"a "b" \c"#);
        assert_eq!(out, br#""a \"b\" \\c""#);
        out.clear();
        string(&mut out, "Grüße".as_bytes());
        assert_eq!(out, "{7}\r\nGrüße".as_bytes());
        out.clear();
        string(&mut out, b"two\r\nlines");
        assert_eq!(out, b"{10}\r\ntwo\r\nlines");
        out.clear();
        nstring(&mut out, None);
        assert_eq!(out, b"NIL");
    }
}
