//! Writing ManageSieve responses (RFC 5804 §4): strings, and the `OK` / `NO` / `BYE`
//! lines with their optional response code and text.

/// The longest string sent quoted; longer ones go as literals.
const MAX_QUOTED: usize = 1024;

/// Appends `s` as a ManageSieve string: quoted, with `"` and `\` escaped, unless it
/// holds bytes a quoted string cannot (CR, LF, NUL) or is long; then as a literal
/// `{N}` CRLF followed by the bytes (`literal-s2c`).
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() > MAX_QUOTED || s.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        literal(out, s);
        return;
    }
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends `s` as a literal `{N}` CRLF bytes (no CRLF after the bytes).
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// `OK [(code)] "text"` CRLF.
pub fn ok(out: &mut Vec<u8>, code: Option<&str>, text: &str) {
    status(out, "OK", code, text);
}

/// `NO [(code)] "text"` CRLF.
pub fn no(out: &mut Vec<u8>, code: Option<&str>, text: &str) {
    status(out, "NO", code, text);
}

/// `BYE [(code)] "text"` CRLF.
pub fn bye(out: &mut Vec<u8>, code: Option<&str>, text: &str) {
    status(out, "BYE", code, text);
}

/// RFC 5804 §4: `response-oknobye = ("OK" / "NO" / "BYE") [SP "(" resp-code ")"]
/// [SP string] CRLF`. The text is for people: control characters become spaces so it
/// stays one quoted string.
fn status(out: &mut Vec<u8>, word: &str, code: Option<&str>, text: &str) {
    out.extend_from_slice(word.as_bytes());
    if let Some(code) = code {
        out.extend_from_slice(b" (");
        out.extend_from_slice(code.as_bytes());
        out.push(b')');
    }
    if !text.is_empty() {
        out.push(b' ');
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        string(out, clean.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        string(&mut out, bytes);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn strings_are_quoted_escaped_or_literal() {
        assert_eq!(s(b"main"), "\"main\"");
        assert_eq!(s(b""), "\"\"");
        assert_eq!(s(b"clever\"script"), "\"clever\\\"script\"");
        assert_eq!(s(b"back\\slash"), "\"back\\\\slash\"");
        assert_eq!(s("Grüße".as_bytes()), "\"Grüße\"");
        assert_eq!(s(b"two\r\nlines"), "{10}\r\ntwo\r\nlines");
        assert_eq!(s(b"lf\n"), "{3}\r\nlf\n");
        let long = vec![b'a'; 1025];
        assert!(s(&long).starts_with("{1025}\r\naaa"));
    }

    #[test]
    fn status_lines() {
        let mut out = Vec::new();
        ok(&mut out, None, "");
        no(&mut out, Some("QUOTA/MAXSIZE"), "too \"big\"");
        bye(&mut out, None, "line1\nline2");
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "OK\r\nNO (QUOTA/MAXSIZE) \"too \\\"big\\\"\"\r\nBYE \"line1 line2\"\r\n"
        );
    }
}
