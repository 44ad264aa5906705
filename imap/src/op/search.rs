//! SEARCH and UID SEARCH (RFC 3501 §6.4.4): every search key, strings matched as
//! case-insensitive substrings of the decoded text, CHARSET US-ASCII or UTF-8.

use std::borrow::Cow;
use std::time::SystemTime;

use imap_types::core::Charset;
use imap_types::search::SearchKey;
use imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mail_parser::{HeaderValue, Message};

use crate::core::{Core, Next, Sync};
use crate::selected::{Msg, Selected};

/// What a key looks at for one message; the body is read only when a key needs it.
struct Candidate<'a> {
    seq: usize,
    msg: &'a Msg,
    recent: bool,
    meta: Option<store::MessageMeta>,
    raw: Option<Vec<u8>>,
    /// The header block, from the store's header table when it has one.
    header: Option<Cow<'a, [u8]>>,
}

/// Runs SEARCH / UID SEARCH.
pub fn run(
    core: &mut Core,
    tag: &str,
    charset: Option<&Charset<'_>>,
    criteria: &[SearchKey<'_>],
    uid: bool,
    out: &mut Vec<u8>,
) -> Next {
    if let Some(c) = charset {
        let name = c.as_ref();
        if !name.eq_ignore_ascii_case("UTF-8") && !name.eq_ignore_ascii_case("US-ASCII") {
            return core.no(
                out,
                tag,
                Some("BADCHARSET (US-ASCII UTF-8)"),
                "Unsupported charset",
            );
        }
    }
    core.updates(out, uid, uid);
    let store = core.store.clone();
    let Some(sel) = core.selected.as_ref() else {
        return core.bad(out, tag, "No mailbox selected");
    };
    let uses_modseq = criteria.iter().any(mentions_modseq);
    if uses_modseq {
        // RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE.
        core.condstore = true;
    }
    // Header keys read the stored header blocks, all in one go, not the bodies.
    let (arena, index) = if criteria.iter().any(uses_headers) {
        store.header_blocks(sel.id).unwrap_or_default()
    } else {
        Default::default()
    };
    let mut rows = index.iter().peekable();
    let mut hits = Vec::new();
    let mut highest = 0;
    for (i, m) in sel.messages.iter().enumerate() {
        // Both ascending by UID: the row of this message, if it has one.
        while rows.next_if(|(u, _)| *u < m.uid).is_some() {}
        let row = rows
            .next_if(|(u, _)| *u == m.uid)
            .and_then(|(_, r)| arena.get(r.clone()));
        if m.gone {
            continue;
        }
        let mut c = Candidate {
            seq: i + 1,
            msg: m,
            recent: sel.recent.contains(&m.uid),
            meta: None,
            raw: None,
            header: row.map(Cow::Borrowed),
        };
        if criteria.iter().all(|k| matches(k, &mut c, sel, &store)) {
            hits.push(if uid { m.uid as usize } else { i + 1 });
            highest = highest.max(m.modseq);
        }
    }
    let mut line = String::from("* SEARCH");
    for h in &hits {
        line.push(' ');
        line.push_str(&h.to_string());
    }
    if uses_modseq && !hits.is_empty() {
        line.push_str(&format!(" (MODSEQ {highest})"));
    }
    crate::line!(out, "{line}");
    core.finish(out, tag, "OK", None, "SEARCH completed", Sync::None)
}

fn uses_headers(k: &SearchKey<'_>) -> bool {
    match k {
        SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Cc(_)
        | SearchKey::Bcc(_)
        | SearchKey::Subject(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        SearchKey::Not(k) => uses_headers(k),
        SearchKey::Or(a, b) => uses_headers(a) || uses_headers(b),
        SearchKey::And(list) => list.as_ref().iter().any(uses_headers),
        _ => false,
    }
}

/// The candidate's header block: from the header table, else from its body.
fn header<'c>(c: &'c mut Candidate<'_>, sel: &Selected, store: &store::Store) -> Option<&'c [u8]> {
    if c.header.is_none() {
        let block = store::header_block(raw(c, sel, store)?).to_vec();
        c.header = Some(Cow::Owned(block));
    }
    c.header.as_deref()
}

/// The headers parsed (mail-parser over the header block only).
fn with_headers(
    c: &mut Candidate<'_>,
    sel: &Selected,
    store: &store::Store,
    f: &dyn Fn(&Message<'_>) -> bool,
) -> bool {
    let Some(block) = header(c, sel, store) else {
        return false;
    };
    match mail_parser::MessageParser::default().parse_headers(block) {
        Some(msg) => f(&msg),
        None => false,
    }
}

fn mentions_modseq(k: &SearchKey<'_>) -> bool {
    match k {
        SearchKey::ModSequence { .. } => true,
        SearchKey::Not(k) => mentions_modseq(k),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        SearchKey::And(list) => list.as_ref().iter().any(mentions_modseq),
        _ => false,
    }
}

fn has_flag(c: &Candidate<'_>, sel: &Selected, flag: &str) -> bool {
    c.msg.flags.has(flag, &sel.keywords)
}

fn meta<'c>(
    c: &'c mut Candidate<'_>,
    sel: &Selected,
    store: &store::Store,
) -> Option<&'c store::MessageMeta> {
    if c.meta.is_none() {
        c.meta = store.message(sel.id, c.msg.uid).ok().flatten();
    }
    c.meta.as_ref()
}

fn raw<'c>(c: &'c mut Candidate<'_>, sel: &Selected, store: &store::Store) -> Option<&'c [u8]> {
    if c.raw.is_none() {
        let m = meta(c, sel, store)?.clone();
        c.raw = store.read_body(&m).ok();
    }
    c.raw.as_deref()
}

fn contains(haystack: &str, needle: &[u8]) -> bool {
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    haystack.to_lowercase().contains(&needle)
}

fn value_text(v: &HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        HeaderValue::Address(a) => a
            .iter()
            .map(|x| {
                format!(
                    "{} <{}>",
                    x.name.as_deref().unwrap_or(""),
                    x.address.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        HeaderValue::DateTime(d) => d.to_rfc822(),
        _ => String::new(),
    }
}

/// The decoded text of every text part, embedded messages' included.
fn body_text(mime: &message::Mime<'_>) -> String {
    let mut text = String::new();
    for id in 0..mime.parts().len() {
        if let Some(t) = mime.text(id) {
            text.push_str(&t);
            text.push('\n');
        }
    }
    text
}

fn date_of(t: SystemTime) -> chrono::NaiveDate {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.date_naive()
}

/// The date of the Date: header in its own zone (RFC 3501: SENT* ignore time and zone).
fn sent_date(msg: &Message<'_>) -> Option<chrono::NaiveDate> {
    let d = msg.date()?;
    chrono::NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
}

/// Whether `value` is in `set`, `*` being `largest` (membership, not resolution: the
/// values need not exist).
pub(crate) fn in_set(set: &SequenceSet, value: usize, largest: usize) -> bool {
    set.0.as_ref().iter().any(|s| {
        let v = |x: &SeqOrUid| match x {
            SeqOrUid::Value(v) => v.get() as usize,
            SeqOrUid::Asterisk => largest,
        };
        match s {
            Sequence::Single(x) => v(x) == value,
            Sequence::Range(a, b) => {
                let (a, b) = (v(a), v(b));
                (a.min(b)..=a.max(b)).contains(&value)
            }
        }
    })
}

fn matches(
    key: &SearchKey<'_>,
    c: &mut Candidate<'_>,
    sel: &Selected,
    store: &store::Store,
) -> bool {
    let parsed_text = |c: &mut Candidate<'_>, f: &dyn Fn(&message::Mime<'_>) -> bool| -> bool {
        match raw(c, sel, store) {
            Some(raw) => f(&message::Mime::parse(raw)),
            None => false,
        }
    };
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, c, sel, store)),
        SearchKey::Or(a, b) => matches(a, c, sel, store) || matches(b, c, sel, store),
        SearchKey::Not(k) => !matches(k, c, sel, store),
        SearchKey::SequenceSet(set) => in_set(set, c.seq, sel.messages.len()),
        SearchKey::Uid(set) => in_set(
            set,
            c.msg.uid as usize,
            sel.messages.last().map_or(0, |m| m.uid as usize),
        ),
        SearchKey::Answered => has_flag(c, sel, "\\Answered"),
        SearchKey::Deleted => has_flag(c, sel, "\\Deleted"),
        SearchKey::Draft => has_flag(c, sel, "\\Draft"),
        SearchKey::Flagged => has_flag(c, sel, "\\Flagged"),
        SearchKey::Seen => has_flag(c, sel, "\\Seen"),
        SearchKey::Unanswered => !has_flag(c, sel, "\\Answered"),
        SearchKey::Undeleted => !has_flag(c, sel, "\\Deleted"),
        SearchKey::Undraft => !has_flag(c, sel, "\\Draft"),
        SearchKey::Unflagged => !has_flag(c, sel, "\\Flagged"),
        SearchKey::Unseen => !has_flag(c, sel, "\\Seen"),
        SearchKey::Keyword(k) => has_flag(c, sel, k.as_ref()),
        SearchKey::Unkeyword(k) => !has_flag(c, sel, k.as_ref()),
        SearchKey::Recent => c.recent,
        SearchKey::New => c.recent && !has_flag(c, sel, "\\Seen"),
        SearchKey::Old => !c.recent,
        SearchKey::Larger(n) => meta(c, sel, store).is_some_and(|m| m.size > u64::from(*n)),
        SearchKey::Smaller(n) => meta(c, sel, store).is_some_and(|m| m.size < u64::from(*n)),
        SearchKey::Before(d) => {
            meta(c, sel, store).is_some_and(|m| date_of(m.internal_date) < *d.as_ref())
        }
        SearchKey::On(d) => {
            meta(c, sel, store).is_some_and(|m| date_of(m.internal_date) == *d.as_ref())
        }
        SearchKey::Since(d) => {
            meta(c, sel, store).is_some_and(|m| date_of(m.internal_date) >= *d.as_ref())
        }
        SearchKey::SentBefore(d) => with_headers(c, sel, store, &|m| {
            sent_date(m).is_some_and(|x| x < *d.as_ref())
        }),
        SearchKey::SentOn(d) => with_headers(c, sel, store, &|m| {
            sent_date(m).is_some_and(|x| x == *d.as_ref())
        }),
        SearchKey::SentSince(d) => with_headers(c, sel, store, &|m| {
            sent_date(m).is_some_and(|x| x >= *d.as_ref())
        }),
        SearchKey::From(s) => header_key(c, sel, store, "From", s.as_ref()),
        SearchKey::To(s) => header_key(c, sel, store, "To", s.as_ref()),
        SearchKey::Cc(s) => header_key(c, sel, store, "Cc", s.as_ref()),
        SearchKey::Bcc(s) => header_key(c, sel, store, "Bcc", s.as_ref()),
        SearchKey::Subject(s) => header_key(c, sel, store, "Subject", s.as_ref()),
        SearchKey::Header(name, s) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            header_key(c, sel, store, &name, s.as_ref())
        }
        SearchKey::Body(s) => {
            let needle = s.as_ref().to_vec();
            parsed_text(c, &|m| contains(&body_text(m), &needle))
        }
        SearchKey::Text(s) => {
            let needle = s.as_ref().to_vec();
            parsed_text(c, &|m| {
                let header = String::from_utf8_lossy(m.header(0)).into_owned();
                let decoded: String = m
                    .headers(0)
                    .map(|h| {
                        h.root_part()
                            .headers
                            .iter()
                            .map(|h| value_text(&h.value) + "\n")
                            .collect()
                    })
                    .unwrap_or_default();
                contains(&header, &needle)
                    || contains(&decoded, &needle)
                    || contains(&body_text(m), &needle)
            })
        }
        SearchKey::ModSequence { modseq, .. } => c.msg.modseq >= *modseq,
    }
}

fn header_key(
    c: &mut Candidate<'_>,
    sel: &Selected,
    store: &store::Store,
    name: &str,
    needle: &[u8],
) -> bool {
    let Some(block) = header(c, sel, store) else {
        return false;
    };
    field_contains(block, name, needle)
}

/// Whether some field `name` of a header block contains `needle` (RFC 3501 §6.4.4:
/// case-insensitive substring), in its text as sent (unfolded) or decoded: encoded
/// words undone and, for address fields, as `name <local@domain>`. An empty needle
/// matches every message that has the field.
pub fn field_contains(block: &[u8], name: &str, needle: &[u8]) -> bool {
    let address = ["from", "to", "cc", "bcc", "sender", "reply-to"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(name));
    // A needle of atom characters can only match decoded text where it matches the
    // text as sent, unless decoding changes the octets (encoded words, escapes).
    let plain_needle = needle
        .iter()
        .all(|b| b.is_ascii_graphic() && !b"<>,\"\\()".contains(b));
    let mut found = false;
    for_each_field(block, name, |value| {
        if found {
            return;
        }
        if needle.is_empty() || contains_ci(value, needle) {
            found = true;
            return;
        }
        let decodes_differently =
            value.windows(2).any(|w| w == b"=?") || value.iter().any(|&b| b == b'\\' || b >= 0x80);
        if plain_needle && !decodes_differently {
            return;
        }
        let text = decoded(value, address);
        found = contains(&text, needle);
    });
    found
}

/// Calls `f` with the unfolded value of each field `name` of a header block.
fn for_each_field(block: &[u8], name: &str, mut f: impl FnMut(&[u8])) {
    let mut lines = block.split_inclusive(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line == b"\r\n" || line == b"\n" {
            return;
        }
        let matches = line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes());
        if !matches {
            continue;
        }
        let eol = |l: &[u8]| {
            let l = l.strip_suffix(b"\n").unwrap_or(l);
            l.strip_suffix(b"\r").unwrap_or(l).len()
        };
        let first = &line[name.len() + 1..];
        if !matches!(lines.peek(), Some(next) if matches!(next.first(), Some(b' ' | b'\t'))) {
            f(first[..eol(first)].trim_ascii());
            continue;
        }
        let mut value = first[..eol(first)].to_vec();
        while let Some(next) = lines.next_if(|n| matches!(n.first(), Some(b' ' | b'\t'))) {
            value.extend_from_slice(&next[..eol(next)]);
        }
        f(value.trim_ascii());
    }
}

/// ASCII case-insensitive substring search.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// A field's value with encoded words undone; an address list as `name <addr>, ...`.
fn decoded(value: &[u8], address: bool) -> String {
    let words = |raw: &[u8]| -> String {
        // An unstructured field of its own: mail-parser undoes its encoded words.
        let mut block = b"Subject: ".to_vec();
        block.extend_from_slice(raw);
        block.extend_from_slice(b"\r\n\r\n");
        mail_parser::MessageParser::default()
            .parse_headers(&block)
            .and_then(|m| m.subject().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned())
    };
    if !address {
        return words(value);
    }
    let mut out = Vec::new();
    for a in crate::fetch::envelope::address_list(value) {
        match a {
            crate::fetch::envelope::Addr::Mailbox {
                name,
                local,
                domain,
                ..
            } => {
                let name = name.map(|n| words(&n)).unwrap_or_default();
                let local =
                    String::from_utf8_lossy(local.as_deref().unwrap_or_default()).into_owned();
                let domain =
                    String::from_utf8_lossy(domain.as_deref().unwrap_or_default()).into_owned();
                out.push(format!("{name} <{local}@{domain}>"));
            }
            crate::fetch::envelope::Addr::GroupStart(n) => out.push(format!("{}:", words(&n))),
            crate::fetch::envelope::Addr::GroupEnd => out.push(";".into()),
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::field_contains;

    #[test]
    fn header_keys_match_the_field_as_sent_or_decoded() {
        let block = b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\nTo: a@b.c,\r\n \"Bob \\\"B\\\"\" <bob@x.y>\r\nSubject: Hello\r\n world\r\nSubject: second\r\n\r\n";
        assert!(field_contains(block, "from", b"J\xc3\xb6RG"));
        assert!(field_contains(block, "From", b"jorg@EXAMPLE"));
        assert!(field_contains(block, "from", b"<jorg@"));
        assert!(!field_contains(block, "from", b"bob"));
        assert!(field_contains(block, "to", b"Bob \"B\""));
        assert!(field_contains(block, "subject", b"hello world"));
        assert!(field_contains(block, "SUBJECT", b"second"));
        assert!(field_contains(block, "subject", b""));
        assert!(!field_contains(block, "cc", b""));
    }
}
