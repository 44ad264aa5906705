//! ENVELOPE (RFC 3501 §7.4.2) from a header block as stored: fields unfolded, strings
//! as sent (encoded words kept), and address lists parsed by RFC 5322 §3.4 (with the
//! obsolete forms of §4.4): display names are phrases, comments are no part of them,
//! and a group becomes its start marker `(NIL NIL "name" NIL)`, its members and the
//! end marker `(NIL NIL NIL NIL)`.

use crate::resp;

/// The value of the first header field called `name`, unfolded (CRLF before white
/// space removed), without the leading and trailing white space.
pub fn field(block: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut lines = block.split_inclusive(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line == b"\r\n" || line == b"\n" {
            return None;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if matches!(line.first(), Some(b' ' | b'\t'))
            || !line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        let mut value = strip_eol(&line[colon + 1..]).to_vec();
        while let Some(next) = lines.peek() {
            if !matches!(next.first(), Some(b' ' | b'\t')) {
                break;
            }
            value.extend_from_slice(strip_eol(next));
            lines.next();
        }
        return Some(value.trim_ascii().to_vec());
    }
    None
}

fn strip_eol(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line)
}

/// One entry of an envelope address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A mailbox: display name (or, without one, the comment after the address),
    /// source route, local part and domain.
    Mailbox {
        /// The display name.
        name: Option<Vec<u8>>,
        /// The obsolete source route (`@a,@b`).
        route: Option<Vec<u8>>,
        /// The local part; `None` when there is none (`@host`).
        local: Option<Vec<u8>>,
        /// The domain; `None` when there is none.
        domain: Option<Vec<u8>>,
    },
    /// A group starts: its display name.
    GroupStart(Vec<u8>),
    /// The group ends.
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Vec<u8>),
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
    Comment(Vec<u8>),
    Special(u8),
}

fn tokens(value: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let mut depth = 0;
                let mut text = Vec::new();
                while i < value.len() {
                    match value[i] {
                        b'\\' if i + 1 < value.len() => {
                            text.push(value[i + 1]);
                            i += 2;
                            continue;
                        }
                        b'(' => {
                            if depth > 0 {
                                text.push(b'(');
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                            text.push(b')');
                        }
                        c => text.push(c),
                    }
                    i += 1;
                }
                out.push(Token::Comment(text));
            }
            b'"' => {
                i += 1;
                let mut text = Vec::new();
                while i < value.len() && value[i] != b'"' {
                    if value[i] == b'\\' && i + 1 < value.len() {
                        i += 1;
                    }
                    if value[i] != b'\r' && value[i] != b'\n' {
                        text.push(value[i]);
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Quoted(text));
            }
            b'[' => {
                let start = i;
                while i < value.len() && value[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(value.len());
                out.push(Token::Literal(value[start..i].to_vec()));
            }
            b'<' | b'>' | b':' | b';' | b'@' | b',' | b']' | b')' | b'\\' => {
                out.push(Token::Special(b));
                i += 1;
            }
            _ => {
                let start = i;
                while i < value.len()
                    && !matches!(
                        value[i],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'('
                            | b')'
                            | b'<'
                            | b'>'
                            | b'['
                            | b']'
                            | b':'
                            | b';'
                            | b'@'
                            | b','
                            | b'"'
                            | b'\\'
                    )
                {
                    i += 1;
                }
                out.push(Token::Word(value[start..i].to_vec()));
            }
        }
    }
    out
}

/// Parses an address list (RFC 5322 §3.4 `address-list`, leniently).
pub fn address_list(value: &[u8]) -> Vec<Addr> {
    let toks = tokens(value);
    let mut out = Vec::new();
    let mut in_group = false;
    let mut i = 0;
    while i < toks.len() {
        let mut phrase: Vec<Vec<u8>> = Vec::new();
        let mut comment: Option<Vec<u8>> = None;
        // The words before a special say what the entry is.
        while let Some(t) = toks.get(i) {
            match t {
                Token::Word(w) | Token::Quoted(w) | Token::Literal(w) => phrase.push(w.clone()),
                Token::Comment(c) => comment = Some(c.clone()),
                Token::Special(_) => break,
            }
            i += 1;
        }
        match toks.get(i) {
            Some(Token::Special(b':')) if !in_group => {
                i += 1;
                out.push(Addr::GroupStart(phrase.join(&b' ')));
                in_group = true;
                continue;
            }
            Some(Token::Special(b'<')) => {
                i += 1;
                let (route, local, domain, next) = angle_addr(&toks, i);
                i = next;
                let mut trailing = None;
                while let Some(Token::Comment(c)) = toks.get(i) {
                    trailing = Some(c.clone());
                    i += 1;
                }
                let name = (!phrase.is_empty())
                    .then(|| phrase.join(&b' '))
                    .or(trailing)
                    .or(comment);
                out.push(Addr::Mailbox {
                    name,
                    route,
                    local,
                    domain,
                });
            }
            Some(Token::Special(b'@')) => {
                i += 1;
                let (domain, next) = domain(&toks, i);
                i = next;
                let mut trailing = comment;
                while let Some(Token::Comment(c)) = toks.get(i) {
                    trailing = Some(c.clone());
                    i += 1;
                }
                out.push(Addr::Mailbox {
                    name: trailing,
                    route: None,
                    local: (!phrase.is_empty()).then(|| local_part(&phrase)),
                    domain,
                });
            }
            _ => {
                if !phrase.is_empty() {
                    out.push(Addr::Mailbox {
                        name: None,
                        route: None,
                        local: Some(local_part(&phrase)),
                        domain: None,
                    });
                }
            }
        }
        // Past the entry: its separator, or the group's end.
        match toks.get(i) {
            Some(Token::Special(b';')) => {
                if in_group {
                    out.push(Addr::GroupEnd);
                    in_group = false;
                }
                i += 1;
            }
            Some(Token::Special(_)) => i += 1,
            _ => {}
        }
    }
    if in_group {
        out.push(Addr::GroupEnd);
    }
    out
}

/// A local part from its words (`first.last` comes as one word; obsolete spaced
/// forms are joined without the space).
fn local_part(words: &[Vec<u8>]) -> Vec<u8> {
    words.concat()
}

/// After `@`: the domain words up to the next special other than `.` (inside words).
fn domain(toks: &[Token], mut i: usize) -> (Option<Vec<u8>>, usize) {
    let mut d = Vec::new();
    while let Some(t) = toks.get(i) {
        match t {
            Token::Word(w) | Token::Literal(w) => d.extend_from_slice(w),
            // A comment after the domain is the caller's (an old-style name).
            Token::Comment(_) if d.is_empty() => {}
            _ => break,
        }
        i += 1;
    }
    ((!d.is_empty()).then_some(d), i)
}

/// After `<`: `[route:] local@domain >`.
#[allow(clippy::type_complexity)]
fn angle_addr(
    toks: &[Token],
    mut i: usize,
) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>, usize) {
    let mut route = None;
    // obs-route: @a,@b:
    if matches!(toks.get(i), Some(Token::Special(b'@'))) {
        let start = i;
        while i < toks.len() && !matches!(toks[i], Token::Special(b':' | b'>')) {
            i += 1;
        }
        if matches!(toks.get(i), Some(Token::Special(b':'))) {
            let mut r = Vec::new();
            for t in &toks[start..i] {
                match t {
                    Token::Word(w) | Token::Literal(w) => r.extend_from_slice(w),
                    Token::Special(c) => r.push(*c),
                    _ => {}
                }
            }
            route = Some(r);
            i += 1;
        } else {
            i = start;
        }
    }
    let mut local = Vec::new();
    while let Some(t) = toks.get(i) {
        match t {
            Token::Word(w) | Token::Quoted(w) => local.extend_from_slice(w),
            Token::Comment(_) => {}
            _ => break,
        }
        i += 1;
    }
    let mut dom = None;
    if matches!(toks.get(i), Some(Token::Special(b'@'))) {
        let (d, next) = domain(toks, i + 1);
        dom = d;
        i = next;
    }
    while i < toks.len() && !matches!(toks[i], Token::Special(b'>' | b',' | b';')) {
        i += 1;
    }
    if matches!(toks.get(i), Some(Token::Special(b'>'))) {
        i += 1;
    }
    (route, (!local.is_empty()).then_some(local), dom, i)
}

/// The RFC 3501 ENVELOPE of a message's header block.
pub fn envelope(header: &[u8], out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, name: &str| match field(header, name) {
        Some(v) if !v.is_empty() => resp::string(out, &v),
        _ => out.extend_from_slice(b"NIL"),
    };
    let list = |name: &str| -> Option<Vec<Addr>> {
        field(header, name)
            .map(|v| address_list(&v))
            .filter(|l| !l.is_empty())
    };
    out.push(b'(');
    text(out, "Date");
    out.push(b' ');
    text(out, "Subject");
    let from = list("From");
    // RFC 3501 §7.4.2: an absent or empty Sender or Reply-To is the From.
    let sender = list("Sender").or_else(|| from.clone());
    let reply_to = list("Reply-To").or_else(|| from.clone());
    for l in [from, sender, reply_to, list("To"), list("Cc"), list("Bcc")] {
        out.push(b' ');
        addresses(l.as_deref(), out);
    }
    out.push(b' ');
    text(out, "In-Reply-To");
    out.push(b' ');
    text(out, "Message-ID");
    out.push(b')');
}

/// An address list as an envelope member, or NIL.
fn addresses(list: Option<&[Addr]>, out: &mut Vec<u8>) {
    let Some(list) = list else {
        out.extend_from_slice(b"NIL");
        return;
    };
    out.push(b'(');
    for a in list {
        match a {
            Addr::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                resp::string(out, name);
                out.extend_from_slice(b" NIL)");
            }
            Addr::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
            Addr::Mailbox {
                name,
                route,
                local,
                domain,
            } => {
                out.push(b'(');
                resp::nstring(out, name.as_deref());
                out.push(b' ');
                resp::nstring(out, route.as_deref());
                out.push(b' ');
                // Never NIL: a NIL host would read as group syntax (as Dovecot does).
                resp::string(out, local.as_deref().unwrap_or(b"MISSING_MAILBOX"));
                out.push(b' ');
                resp::string(out, domain.as_deref().unwrap_or(b"MISSING_DOMAIN"));
                out.push(b')');
            }
        }
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(header: &str) -> String {
        let mut out = Vec::new();
        envelope(header.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc_5322_group_examples() {
        // RFC 5322 Appendix A.1.3.
        let e = env(
            "From: Pete <pete@silly.example>\r\nTo: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\r\nCc: Undisclosed recipients:;\r\n\r\n",
        );
        assert!(e.contains(r#"((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL))"#), "{e}");
        assert!(
            e.contains(r#"((NIL NIL "Undisclosed recipients" NIL)(NIL NIL NIL NIL))"#),
            "{e}"
        );
        // RFC 5322 Appendix A.5: comments are no part of names or groups.
        let e = env(
            "From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\r\nTo:A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of the group)\r\nCc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;\r\n\r\n",
        );
        assert_eq!(
            e,
            r#"(NIL NIL (("Pete" NIL "pete" "silly.test")) (("Pete" NIL "pete" "silly.test")) (("Pete" NIL "pete" "silly.test")) ((NIL NIL "A Group" NIL)("Chris Jones" NIL "c" "public.example")(NIL NIL "joe" "example.org")("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL)) ((NIL NIL "Hidden recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)"#
        );
    }

    #[test]
    fn names_routes_and_broken_addresses() {
        let e = env(
            "From: \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>, c@d.org (Carl)\r\nSender: <@a.test,@b.test:joe@c.test>\r\nTo: =?utf-8?q?J=C3=B6rg?= <j@x.org>, undisclosed, @host\r\nSubject: =?utf-8?b?SsO2cmc=?=\r\n\r\n",
        );
        assert!(
            e.contains(r#"({16}"#)
                || e.contains(r#"("Giant; \"Big\" Box" NIL "sysservices" "example.net")"#),
            "{e}"
        );
        assert!(e.contains(r#"("Carl" NIL "c" "d.org")"#), "{e}");
        assert!(
            e.contains(r#"((NIL "@a.test,@b.test" "joe" "c.test"))"#),
            "{e}"
        );
        assert!(e.contains(r#"(("=?utf-8?q?J=C3=B6rg?=" NIL "j" "x.org")(NIL NIL "undisclosed" "MISSING_DOMAIN")(NIL NIL "MISSING_MAILBOX" "host"))"#), "{e}");
        assert!(e.starts_with(r#"(NIL "=?utf-8?b?SsO2cmc=?=" "#), "{e}");
    }
}
