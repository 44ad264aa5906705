//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3): what IMAP4rev1 clients send and
//! expect; the store keeps names in UTF-8.

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};

const MUTF7: GeneralPurpose = GeneralPurpose::new(&IMAP_MUTF7, NO_PAD);

/// Encodes a UTF-8 name: printable ASCII stays (`&` becomes `&-`), everything else
/// goes in `&...-` runs of base64 (`,` for `/`) over UTF-16BE.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&MUTF7.encode(bytes));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Decodes a modified UTF-7 name; `None` when it is not valid modified UTF-7 (then
/// the caller may take it as UTF-8 as RFC 9051 allows).
pub fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        let (plain, tail) = rest.split_at(amp);
        if !plain.chars().all(|c| (' '..='~').contains(&c)) {
            return None;
        }
        out.push_str(plain);
        let end = tail.find('-')?;
        let b64 = &tail[1..end];
        if b64.is_empty() {
            out.push('&');
        } else {
            let bytes = MUTF7.decode(b64).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let text = String::from_utf16(&units).ok()?;
            // RFC 3501: printable ASCII must not be base64-encoded.
            if text.chars().any(|c| (' '..='~').contains(&c)) {
                return None;
            }
            out.push_str(&text);
        }
        rest = &tail[end + 1..];
    }
    if !rest.chars().all(|c| (' '..='~').contains(&c)) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc_3501_examples_round_trip() {
        // RFC 3501 §5.1.3 and RFC 2152-style samples.
        let cases = [
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("INBOX", "INBOX"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            ("😀", "&2D3eAA-"),
        ];
        for (utf8, utf7) in cases {
            assert_eq!(encode(utf8), utf7);
            assert_eq!(decode(utf7).unwrap(), utf8);
        }
        assert_eq!(decode("&Jjo"), None);
        assert_eq!(decode("&AGE-"), None, "ASCII must not be encoded");
        assert_eq!(decode("Entwürfe"), None, "raw 8-bit is not modified UTF-7");
    }
}
