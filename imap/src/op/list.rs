//! LIST and LSUB (RFC 3501 §6.3.8, §6.3.9) with CHILDREN (RFC 3348) and SPECIAL-USE
//! (RFC 6154) attributes. `*` matches anything, `%` anything but the delimiter.

use std::collections::{BTreeMap, BTreeSet};

use imap_types::mailbox::{ListMailbox, Mailbox as ImapMailbox};

use crate::core::{Core, Next};
use crate::{resp, utf7};

/// Lists the account's mailboxes matching `reference` + `pattern`.
pub fn run(
    core: &mut Core,
    tag: &str,
    reference: &ImapMailbox<'_>,
    pattern: &ListMailbox<'_>,
    lsub: bool,
    out: &mut Vec<u8>,
) -> Next {
    let verb = if lsub { "LSUB" } else { "LIST" };
    let Some(account) = core.account().cloned() else {
        return core.bad(out, tag, "Not logged in");
    };
    let reference = match reference {
        ImapMailbox::Inbox => store::INBOX.to_string(),
        ImapMailbox::Other(o) => {
            let raw = String::from_utf8_lossy(o.as_ref()).into_owned();
            utf7::decode(&raw).unwrap_or(raw)
        }
    };
    let raw_pattern = match pattern {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    };
    let pattern = utf7::decode(&raw_pattern).unwrap_or(raw_pattern);
    if pattern.is_empty() && !lsub {
        // RFC 3501: an empty pattern asks for the delimiter and the reference's root.
        let root = reference
            .split_once(store::DELIMITER)
            .map(|(r, _)| format!("{r}{}", store::DELIMITER))
            .unwrap_or_default();
        out.extend_from_slice(b"* LIST (\\Noselect) \"/\" ");
        resp::string(out, utf7::encode(&root).as_bytes());
        out.extend_from_slice(b"\r\n");
        return core.ok(out, tag, None, "LIST completed");
    }
    let full = format!("{reference}{pattern}");
    let boxes = match core.store.mailboxes(account.id) {
        Ok(b) => b,
        Err(e) => return core.store_failed(out, tag, &e),
    };
    let subscribed: BTreeSet<String> = match core.store.subscriptions(account.id) {
        Ok(s) => s.into_iter().collect(),
        Err(e) => return core.store_failed(out, tag, &e),
    };
    let existing: BTreeSet<&str> = boxes.iter().map(|m| m.name.as_str()).collect();
    let special = |name: &str| {
        boxes
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.role)
            .and_then(|r| r.special_use())
    };
    let mut names: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    if lsub {
        // RFC 3501 §6.3.9: the subscribed names (whether or not they exist); a
        // superior that is not subscribed is listed \Noselect where the pattern's `%`
        // stops at it and hides the subscribed name below.
        for name in &subscribed {
            names.insert(name.clone(), special(name).into_iter().collect());
        }
        for name in &subscribed {
            if matches(&full, name) {
                continue;
            }
            let levels: Vec<&str> = name.split(store::DELIMITER).collect();
            for depth in 1..levels.len() {
                let superior = levels[..depth].join("/");
                if !subscribed.contains(&superior) && matches(&full, &superior) {
                    names.insert(superior, vec!["\\Noselect"]);
                }
            }
        }
    } else {
        // Every mailbox with its attributes; superiors that are not mailboxes are
        // \Noselect.
        for m in &boxes {
            names.insert(m.name.clone(), special(&m.name).into_iter().collect());
            let levels: Vec<&str> = m.name.split(store::DELIMITER).collect();
            for depth in 1..levels.len() {
                let superior = levels[..depth].join("/");
                if !existing.contains(superior.as_str()) {
                    names.entry(superior).or_insert_with(|| vec!["\\Noselect"]);
                }
            }
        }
    }
    let has_children = |name: &str| {
        let prefix = format!("{name}{}", store::DELIMITER);
        existing.iter().any(|n| n.starts_with(&prefix))
    };
    let mut ordered: Vec<(&String, &Vec<&str>)> = names.iter().collect();
    ordered.sort_by_key(|(n, _)| (n.as_str() != store::INBOX, n.as_str()));
    for (name, attrs) in ordered {
        if !matches(&full, name) {
            continue;
        }
        let mut attrs = attrs.clone();
        if !lsub {
            attrs.push(if has_children(name) {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
        }
        crate::line!(
            out,
            "* {verb} ({}) \"{}\" {}",
            attrs.join(" "),
            store::DELIMITER,
            {
                let mut s = Vec::new();
                resp::string(&mut s, utf7::encode(name).as_bytes());
                String::from_utf8_lossy(&s).into_owned()
            }
        );
    }
    core.ok(out, tag, None, &format!("{verb} completed"))
}

/// Whether `name` matches the LIST pattern (a leading INBOX case-insensitively).
pub fn matches(pattern: &str, name: &str) -> bool {
    let fixed;
    let pattern = if name.starts_with(store::INBOX)
        && pattern.is_char_boundary(5.min(pattern.len()))
        && pattern.len() >= 5
        && pattern[..5].eq_ignore_ascii_case(store::INBOX)
    {
        fixed = format!("{}{}", store::INBOX, &pattern[5..]);
        fixed.as_str()
    } else {
        pattern
    };
    wild(pattern.as_bytes(), name.as_bytes())
}

/// Wildcard matching by dynamic programming over (pattern, name) prefixes: names are
/// at most 255 octets and patterns come from one command line.
fn wild(p: &[u8], n: &[u8]) -> bool {
    // row[j]: the pattern so far matches n[..j].
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        match c {
            b'*' | b'%' => {
                for j in 0..=n.len() {
                    // Extend a match by one more name octet, or match nothing.
                    next[j] = row[j] || (j > 0 && next[j - 1] && (c == b'*' || n[j - 1] != b'/'));
                }
            }
            _ => {
                for j in 1..=n.len() {
                    next[j] = row[j - 1] && n[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("*", "INBOX"));
        assert!(matches("*", "Work/2026/Q1"));
        assert!(matches("%", "Work"));
        assert!(!matches("%", "Work/2026"));
        assert!(matches("Work/%", "Work/2026"));
        assert!(!matches("Work/%", "Work/2026/Q1"));
        assert!(matches("Work/*", "Work/2026/Q1"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("W%k", "Work"));
        assert!(!matches("W%k", "Wo/rk"));
        assert!(matches("*26*", "Work/2026/Q1"));
        assert!(!matches("Sent", "Sent Items"));
        assert!(matches("*/%", "a/b/c"));
        assert!(matches("%/%/%", "a/b/c"));
        assert!(!matches("%/%", "a/b/c"));
    }
}
