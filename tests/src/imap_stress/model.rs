//! What one client may have been told about its selected mailbox, and the checks of
//! every response against it (RFC 3501 §7, RFC 9051 §7, RFC 2180 §4): message
//! numbers only shrink by EXPUNGE and only where EXPUNGE is allowed, a UID never
//! changes and UIDs ascend with message numbers, keywords are announced by FLAGS
//! before a FETCH uses them, a message's content never changes, and this client's own
//! keywords are exactly where it put them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::imap_wire::{Line, Value, parse_values};

/// A message's content: the FNV-1a hash of its octets.
pub type Digest = u64;

/// FNV-1a, 64 bits.
pub fn digest(bytes: &[u8]) -> Digest {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What every client learned about UIDs, shared: a (mailbox, UID) names one content
/// forever (RFC 3501 §2.3.1.1), whoever saw it.
#[derive(Debug, Default)]
pub struct Oracle {
    mailboxes: HashMap<String, OracleBox>,
}

#[derive(Debug, Default)]
struct OracleBox {
    validity: Option<u64>,
    contents: HashMap<u32, Digest>,
    max_uid: u32,
}

/// The oracle, shared by the clients.
pub type SharedOracle = Arc<Mutex<Oracle>>;

impl Oracle {
    /// Records a UIDVALIDITY; `Err` if it changed (no mailbox is recreated here).
    pub fn validity(&mut self, mailbox: &str, validity: u64) -> Result<(), String> {
        let b = self.mailboxes.entry(mailbox.to_string()).or_default();
        match b.validity {
            Some(v) if v != validity => Err(format!(
                "UIDVALIDITY of {mailbox} changed from {v} to {validity}"
            )),
            _ => {
                b.validity = Some(validity);
                Ok(())
            }
        }
    }

    /// Records that `uid` exists in `mailbox`.
    pub fn saw_uid(&mut self, mailbox: &str, uid: u32) {
        let b = self.mailboxes.entry(mailbox.to_string()).or_default();
        b.max_uid = b.max_uid.max(uid);
    }

    /// The highest UID any client has seen in `mailbox`.
    pub fn max_uid(&self, mailbox: &str) -> u32 {
        self.mailboxes.get(mailbox).map_or(0, |b| b.max_uid)
    }

    /// Records (or checks) the content of `uid`.
    pub fn content(&mut self, mailbox: &str, uid: u32, d: Digest) -> Result<(), String> {
        let b = self.mailboxes.entry(mailbox.to_string()).or_default();
        b.max_uid = b.max_uid.max(uid);
        match b.contents.insert(uid, d) {
            Some(old) if old != d => Err(format!(
                "UID {uid} of {mailbox} changed content ({old:x} then {d:x})"
            )),
            _ => Ok(()),
        }
    }

    /// The content recorded for `uid`, if any.
    pub fn known(&self, mailbox: &str, uid: u32) -> Option<Digest> {
        self.mailboxes.get(mailbox)?.contents.get(&uid).copied()
    }
}

/// What the client was told about its selected mailbox.
#[derive(Debug, Clone)]
pub struct View {
    /// The mailbox's name.
    pub mailbox: String,
    /// EXAMINE.
    pub read_only: bool,
    /// UIDs by message number (index + 1), `None` until a response said.
    pub uids: Vec<Option<u32>>,
    /// Flags by message number, as last reported.
    pub flags: Vec<Option<BTreeSet<String>>>,
    /// The keywords of the last FLAGS response.
    pub announced: HashSet<String>,
}

/// Where a response arrives: which untagged responses the command allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    /// FETCH, STORE and SEARCH without UID: no EXPUNGE (RFC 3501 §7.4.1).
    NoExpunge,
    /// Anything else with a mailbox selected.
    Selected,
    /// No mailbox selected.
    Unselected,
}

/// What one command's untagged responses told.
#[derive(Debug, Default)]
pub struct Told {
    /// UIDs expunged (UID unknown: `None`), in order.
    pub expunged: Vec<Option<u32>>,
    /// FETCH responses: message number at the time, UID if known, flags if given,
    /// body digest and length if given, RFC822.SIZE if given.
    pub fetched: Vec<Fetched>,
    /// SEARCH results.
    pub search: Option<Vec<u64>>,
    /// Response codes of untagged OK responses (`COPYUID ...`).
    pub codes: Vec<String>,
    /// EXISTS responses.
    pub exists: Vec<u64>,
    /// UIDVALIDITY, UIDNEXT if a SELECT said them.
    pub validity: Option<u64>,
}

/// One FETCH response.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its message number.
    pub seq: usize,
    /// The UID, from the response or the view.
    pub uid: Option<u32>,
    /// FLAGS, if present.
    pub flags: Option<BTreeSet<String>>,
    /// BODY[] / RFC822 octets, if present.
    pub body: Option<Vec<u8>>,
    /// RFC822.SIZE, if present.
    pub size: Option<u64>,
}

impl View {
    /// A view of `mailbox` with no messages yet (SELECT's EXISTS fills it).
    pub fn new(mailbox: &str, read_only: bool) -> View {
        View {
            mailbox: mailbox.to_string(),
            read_only,
            uids: Vec::new(),
            flags: Vec::new(),
            announced: HashSet::new(),
        }
    }

    /// The number of messages.
    pub fn len(&self) -> usize {
        self.uids.len()
    }

    /// Whether the view holds no message.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }

    /// The message number of `uid`, if in the view.
    pub fn seq_of(&self, uid: u32) -> Option<usize> {
        self.uids
            .iter()
            .position(|u| *u == Some(uid))
            .map(|i| i + 1)
    }
}

/// Applies one untagged response line to the view (when there is one), checking it;
/// problems go to `errors`.
pub fn untagged(
    view: &mut Option<View>,
    ctx: Ctx,
    line: &Line,
    oracle: &SharedOracle,
    told: &mut Told,
    errors: &mut Vec<String>,
) {
    let text = line.text();
    let rest = match line.0.strip_prefix(b"* ") {
        Some(r) => r,
        None => {
            if !line.0.starts_with(b"+ ") {
                errors.push(format!("unexpected line: {text}"));
            }
            return;
        }
    };
    let mut words = text.splitn(4, ' ');
    let _star = words.next();
    let first = words.next().unwrap_or_default().to_ascii_uppercase();
    let second = words.next().unwrap_or_default().to_ascii_uppercase();
    if let Ok(n) = first.parse::<usize>() {
        let Some(v) = view.as_mut() else {
            errors.push(format!("message data without a selected mailbox: {text}"));
            return;
        };
        match second.as_str() {
            "EXISTS" => {
                told.exists.push(n as u64);
                if n < v.len() {
                    errors.push(format!(
                        "EXISTS {n} below the {} messages the client knows (RFC 3501 §7.3.1)",
                        v.len()
                    ));
                }
                v.uids.resize(n.max(v.len()), None);
                v.flags.resize(n.max(v.len()), None);
            }
            "RECENT" => {
                if n > v.len() {
                    errors.push(format!("RECENT {n} above EXISTS {}", v.len()));
                }
            }
            "EXPUNGE" => {
                if ctx == Ctx::NoExpunge {
                    errors.push(format!(
                        "EXPUNGE during FETCH, STORE or SEARCH (RFC 3501 §7.4.1): {text}"
                    ));
                }
                if n == 0 || n > v.len() {
                    errors.push(format!("EXPUNGE {n} of {} messages", v.len()));
                    return;
                }
                told.expunged.push(v.uids.remove(n - 1));
                v.flags.remove(n - 1);
            }
            "FETCH" => fetch(v, n, rest, oracle, told, errors),
            _ => errors.push(format!("unexpected message data: {text}")),
        }
        return;
    }
    match first.as_str() {
        "FLAGS" => {
            let Some(v) = view.as_mut() else {
                return;
            };
            match parse_values(&rest[b"FLAGS ".len()..]) {
                Ok(values) => {
                    let list = values.first().and_then(Value::list).unwrap_or_default();
                    v.announced = list
                        .iter()
                        .filter_map(|f| match f {
                            Value::Atom(a) if !a.starts_with('\\') => Some(a.clone()),
                            _ => None,
                        })
                        .collect();
                }
                Err(e) => errors.push(format!("FLAGS unparsable ({e}): {text}")),
            }
        }
        "OK" => {
            if let Some(code) = text
                .split_once('[')
                .and_then(|(_, r)| r.split_once(']'))
                .map(|(c, _)| c.to_string())
            {
                if let Some(v) = code.strip_prefix("UIDVALIDITY ") {
                    told.validity = v.trim().parse().ok();
                }
                told.codes.push(code);
            }
        }
        "SEARCH" => {
            let hits: Vec<u64> = text
                .split(' ')
                .skip(2)
                .filter(|w| !w.starts_with('(') && !w.ends_with(')'))
                .filter_map(|w| w.parse().ok())
                .collect();
            told.search = Some(hits);
        }
        "STATUS" | "LIST" | "LSUB" | "CAPABILITY" | "ENABLED" | "NAMESPACE" | "ID" => {}
        _ => errors.push(format!("unexpected untagged response: {text}")),
    }
}

/// `* n FETCH (...)`.
fn fetch(
    v: &mut View,
    n: usize,
    rest: &[u8],
    oracle: &SharedOracle,
    told: &mut Told,
    errors: &mut Vec<String>,
) {
    let text = String::from_utf8_lossy(&rest[..rest.len().min(200)]).into_owned();
    if n == 0 || n > v.len() {
        errors.push(format!("FETCH for message {n} of {}: {text}", v.len()));
        return;
    }
    let at = rest
        .windows(6)
        .position(|w| w.eq_ignore_ascii_case(b"FETCH "))
        .map_or(rest.len(), |p| p + 6);
    let values = match parse_values(&rest[at..]) {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!("FETCH unparsable ({e}): {text}"));
            return;
        }
    };
    let Some(items) = values.first().and_then(Value::list) else {
        errors.push(format!("FETCH without a list: {text}"));
        return;
    };
    let mut f = Fetched {
        seq: n,
        uid: v.uids[n - 1],
        flags: None,
        body: None,
        size: None,
    };
    for pair in items.chunks(2) {
        let [name, value] = pair else {
            errors.push(format!("FETCH item without a value: {text}"));
            return;
        };
        let name = name.atom().unwrap_or_default();
        match name.as_str() {
            "UID" => {
                let Some(uid) = value.number().and_then(|u| u32::try_from(u).ok()) else {
                    errors.push(format!("bad UID: {text}"));
                    continue;
                };
                match v.uids[n - 1] {
                    Some(known) if known != uid => errors.push(format!(
                        "message {n} was UID {known}, now UID {uid} without an EXPUNGE"
                    )),
                    Some(_) => {}
                    None => {
                        let before = v.uids[..n - 1].iter().rev().flatten().next();
                        let after = v.uids[n..].iter().flatten().next();
                        if before.is_some_and(|&b| b >= uid) || after.is_some_and(|&a| a <= uid) {
                            errors.push(format!(
                                "UID {uid} of message {n} out of order ({before:?} before, {after:?} after)"
                            ));
                        }
                        if v.seq_of(uid).is_some() {
                            errors.push(format!("UID {uid} at two message numbers"));
                        }
                        v.uids[n - 1] = Some(uid);
                    }
                }
                if let Ok(mut o) = oracle.lock() {
                    o.saw_uid(&v.mailbox, uid);
                }
                f.uid = Some(uid);
            }
            "FLAGS" => {
                let mut set = BTreeSet::new();
                for flag in value.list().unwrap_or_default() {
                    match flag {
                        Value::Atom(a) => {
                            if !a.starts_with('\\') && !v.announced.contains(a) {
                                errors.push(format!(
                                    "keyword {a} in FETCH before a FLAGS response listed it (RFC 3501 §7.2.6)"
                                ));
                            }
                            set.insert(a.clone());
                        }
                        other => errors.push(format!("flag that is not an atom: {other:?}")),
                    }
                }
                set.remove("\\Recent");
                v.flags[n - 1] = Some(set.clone());
                f.flags = Some(set);
            }
            "RFC822.SIZE" => f.size = value.number(),
            "BODY[]" | "RFC822" | "BINARY[]" => match value {
                Value::Str(b) => f.body = Some(b.clone()),
                other => errors.push(format!("{name} is {other:?}")),
            },
            "MODSEQ" | "INTERNALDATE" | "ENVELOPE" | "BODYSTRUCTURE" | "BODY" => {}
            _ if name.starts_with("BODY[") || name.starts_with("BINARY") => {}
            _ => errors.push(format!("unexpected FETCH item {name}")),
        }
    }
    if let (Some(body), Some(size)) = (&f.body, f.size)
        && body.len() as u64 != size
    {
        errors.push(format!(
            "RFC822.SIZE {size} but BODY[] has {} octets",
            body.len()
        ));
    }
    if let Some(body) = &f.body {
        if let Err(e) = crate::imap_stress::check_message(body) {
            errors.push(format!("message {n} content is damaged: {e}"));
        }
        if let Some(uid) = f.uid
            && let Ok(mut o) = oracle.lock()
            && let Err(e) = o.content(&v.mailbox, uid, digest(body))
        {
            errors.push(e);
        }
    }
    told.fetched.push(f);
}
