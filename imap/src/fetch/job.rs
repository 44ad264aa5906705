//! A FETCH answered a message at a time and sent in parts of about
//! [`common::net::OUTPUT_CHUNK`]: each message's response is made when the previous
//! part has been written, and a literal of a whole message (or its text) is read from
//! the body file as it goes out. So `FETCH 1:* BODY.PEEK[]` over any mailbox holds
//! one part in memory, and a client that reads slowly slows its FETCH down instead
//! of making the server buffer the mailbox. Sections inside a MIME structure need the
//! message walked, so that message (at most `max_message_bytes`) is read whole.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::num::NonZeroU32;
use std::sync::Arc;

use imap_types::fetch::{MessageDataItemName, Section};
use message::Mime;
use store::{MessageMeta, ModSeq, Store, Uid};

use crate::fetch::section::{BinaryError, binary, binary_section, section_bytes, section_name};
use crate::fetch::{envelope, header_fields, structure};
use crate::resp;
use crate::selected::Selected;

/// Literals shorter than this are copied into the response; longer ones are sent
/// from where they are (the body file, the message read for a MIME walk).
const COPY_BELOW: usize = 64 * 1024;

/// Header rows read ahead at a time for header-only fetches.
const HEADER_WINDOW: usize = 256;

/// One piece of a message's response.
enum Segment {
    Bytes(Vec<u8>),
    Shared {
        data: Arc<Vec<u8>>,
        at: usize,
        end: usize,
    },
    File {
        file: std::fs::File,
        left: u64,
    },
}

/// The state of a FETCH between two parts.
pub struct FetchJob {
    /// The command's tag.
    pub tag: String,
    /// UID FETCH.
    pub uid: bool,
    /// The items, UID first for UID FETCH.
    pub items: Vec<MessageDataItemName<'static>>,
    /// The view indexes to answer, ascending.
    pub indexes: Vec<usize>,
    /// FLAGS goes out with every message (asked for, or `\Seen` was just set).
    pub want_flags: bool,
    /// CHANGEDSINCE (RFC 7162 §3.1.4): only messages changed after it.
    pub changed_since: Option<ModSeq>,
    next: usize,
    segments: VecDeque<Segment>,
    headers: (usize, Vec<Option<Vec<u8>>>),
    /// Some message could not be answered (gone without a trace).
    pub missing: bool,
    /// Some BINARY part has an encoding we cannot undo (RFC 3516 UNKNOWN-CTE).
    pub unknown_cte: bool,
}

/// How a [`FetchJob::step`] ended.
pub enum Step {
    /// More to send.
    More,
    /// Every message is answered; the tagged reply is up to the caller.
    Done,
    /// A literal could not be completed (a body file broke under us): the connection
    /// cannot go on.
    Broken,
}

impl FetchJob {
    /// A FETCH of `indexes` of the view.
    pub fn new(
        tag: String,
        uid: bool,
        items: Vec<MessageDataItemName<'static>>,
        indexes: Vec<usize>,
        want_flags: bool,
        changed_since: Option<ModSeq>,
    ) -> FetchJob {
        FetchJob {
            tag,
            uid,
            items,
            indexes,
            want_flags,
            changed_since,
            next: 0,
            segments: VecDeque::new(),
            headers: (0, Vec::new()),
            missing: false,
            unknown_cte: false,
        }
    }

    /// Adds responses to `out` until it holds about `budget` octets or every message
    /// is answered.
    pub fn step(
        &mut self,
        sel: &Selected,
        store: &Arc<Store>,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Step {
        loop {
            while let Some(seg) = self.segments.front_mut() {
                if out.len() >= budget {
                    return Step::More;
                }
                let room = (budget - out.len()).max(COPY_BELOW);
                match seg {
                    Segment::Bytes(b) => {
                        out.extend_from_slice(b);
                        self.segments.pop_front();
                    }
                    Segment::Shared { data, at, end } => {
                        let n = (*end - *at).min(room);
                        out.extend_from_slice(&data[*at..*at + n]);
                        *at += n;
                        if at == end {
                            self.segments.pop_front();
                        }
                    }
                    Segment::File { file, left } => {
                        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(room);
                        let start = out.len();
                        out.resize(start + n, 0);
                        if let Err(e) = file.read_exact(&mut out[start..]) {
                            tracing::error!(error = %e, "a message body could not be read while it was sent");
                            return Step::Broken;
                        }
                        *left -= n as u64;
                        if *left == 0 {
                            self.segments.pop_front();
                        }
                    }
                }
            }
            if out.len() >= budget {
                return Step::More;
            }
            let Some(&i) = self.indexes.get(self.next) else {
                return Step::Done;
            };
            let k = self.next;
            self.next += 1;
            self.message(sel, store, k, i);
        }
    }

    /// The stored header block of the `k`th message, read ahead in windows.
    fn header_row(&mut self, sel: &Selected, store: &Store, k: usize) -> Option<Vec<u8>> {
        let (start, rows) = &self.headers;
        if k < *start || k >= start + rows.len() {
            let end = (k + HEADER_WINDOW).min(self.indexes.len());
            let uids: Vec<Uid> = self.indexes[k..end]
                .iter()
                .map(|&i| sel.messages[i].uid)
                .collect();
            self.headers = (k, store.headers(sel.id, &uids).unwrap_or_default());
        }
        let (start, rows) = &mut self.headers;
        rows.get_mut(k - *start).and_then(Option::take)
    }

    /// Makes the response of the message at view index `i` into segments.
    fn message(&mut self, sel: &Selected, store: &Arc<Store>, k: usize, i: usize) {
        let m = &sel.messages[i];
        if self.changed_since.is_some_and(|since| m.modseq <= since) {
            return;
        }
        let needs_meta = self.items.iter().any(|i| {
            !matches!(
                i,
                MessageDataItemName::Uid | MessageDataItemName::Flags | MessageDataItemName::ModSeq
            )
        });
        let meta = if needs_meta {
            // RFC 2180 §4.1.1: a message expunged elsewhere is still answered.
            match store.message(sel.id, m.uid) {
                Ok(Some(meta)) => Some(meta),
                Ok(None) => match sel.held(m.uid) {
                    Some(meta) => Some(meta),
                    None => {
                        self.missing = true;
                        return;
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "FETCH could not read a message");
                    self.missing = true;
                    return;
                }
            }
        } else {
            None
        };
        let needs_walk = self.items.iter().any(needs_walk);
        let needs_header = self.items.iter().any(needs_header);
        let header = if needs_header && !needs_walk {
            self.header_row(sel, store, k)
        } else {
            None
        };
        // The whole message in memory when a MIME walk needs it, or when the stored
        // header row does not say where the header ends (messages from before it).
        let header_complete = header.as_deref().is_some_and(ends_at_its_blank_line);
        let raw: Option<Arc<Vec<u8>>> = match &meta {
            Some(meta) if needs_walk || (needs_header && !header_complete) => {
                match store.read_body(meta) {
                    Ok(b) => Some(Arc::new(b)),
                    Err(e) => {
                        tracing::error!(error = %e, "FETCH could not read a message body");
                        self.missing = true;
                        return;
                    }
                }
            }
            _ => None,
        };
        let mime = raw.as_deref().map(|r| Mime::parse(r));
        let header: Option<Vec<u8>> = match (&mime, header) {
            (Some(mime), _) => Some(mime.header(0).to_vec()),
            (None, h) => h,
        };
        let mut w = Writer {
            segments: &mut self.segments,
            cur: Vec::new(),
        };
        resp::raw(&mut w.cur, &format!("* {} FETCH (", i + 1));
        let mut first = true;
        let mut sep = |w: &mut Writer<'_>| {
            if !first {
                w.cur.push(b' ');
            }
            first = false;
        };
        for item in &self.items {
            match item {
                MessageDataItemName::Uid => {
                    sep(&mut w);
                    resp::raw(&mut w.cur, &format!("UID {}", m.uid));
                }
                MessageDataItemName::Flags => {
                    sep(&mut w);
                    w.cur.extend_from_slice(b"FLAGS ");
                    resp::flag_list(&mut w.cur, sel.flags_of(m));
                }
                MessageDataItemName::ModSeq => {
                    sep(&mut w);
                    resp::raw(&mut w.cur, &format!("MODSEQ ({})", m.modseq));
                }
                MessageDataItemName::InternalDate => {
                    if let Some(meta) = &meta {
                        sep(&mut w);
                        resp::raw(
                            &mut w.cur,
                            &format!("INTERNALDATE \"{}\"", internal_date(meta.internal_date)),
                        );
                    }
                }
                MessageDataItemName::Rfc822Size => {
                    if let Some(meta) = &meta {
                        sep(&mut w);
                        resp::raw(&mut w.cur, &format!("RFC822.SIZE {}", meta.size));
                    }
                }
                MessageDataItemName::Envelope => {
                    if let Some(h) = &header {
                        sep(&mut w);
                        w.cur.extend_from_slice(b"ENVELOPE ");
                        envelope(h, &mut w.cur);
                    }
                }
                MessageDataItemName::Body | MessageDataItemName::BodyStructure => {
                    if let Some(mime) = &mime {
                        sep(&mut w);
                        let extended = matches!(item, MessageDataItemName::BodyStructure);
                        w.cur.extend_from_slice(if extended {
                            b"BODYSTRUCTURE "
                        } else {
                            b"BODY "
                        });
                        structure(mime, 0, extended, &mut w.cur);
                    }
                }
                MessageDataItemName::Rfc822 => {
                    if let Some(meta) = &meta {
                        sep(&mut w);
                        w.cur.extend_from_slice(b"RFC822 ");
                        if !w.whole(store, meta, &raw, 0, None) {
                            self.missing = true;
                        }
                    }
                }
                MessageDataItemName::Rfc822Header => {
                    if let Some(h) = &header {
                        sep(&mut w);
                        w.cur.extend_from_slice(b"RFC822.HEADER ");
                        resp::literal(&mut w.cur, h);
                    }
                }
                MessageDataItemName::Rfc822Text => {
                    if let (Some(meta), Some(h)) = (&meta, &header) {
                        sep(&mut w);
                        w.cur.extend_from_slice(b"RFC822.TEXT ");
                        if !w.whole(store, meta, &raw, h.len(), None) {
                            self.missing = true;
                        }
                    }
                }
                MessageDataItemName::BodyExt {
                    section, partial, ..
                } => {
                    let Some(meta) = &meta else {
                        continue;
                    };
                    sep(&mut w);
                    w.cur.extend_from_slice(b"BODY[");
                    resp::raw(&mut w.cur, &section_name(section.as_ref()));
                    w.cur.push(b']');
                    if let Some((origin, _)) = partial {
                        resp::raw(&mut w.cur, &format!("<{origin}>"));
                    }
                    w.cur.push(b' ');
                    let ok = match (section, &mime) {
                        (None, _) => w.whole(store, meta, &raw, 0, *partial),
                        (Some(Section::Text(None)), None) => {
                            let from = header.as_ref().map_or(0, Vec::len);
                            w.whole(store, meta, &raw, from, *partial)
                        }
                        (Some(Section::Header(None)), None) => {
                            let h = header.clone().unwrap_or_default();
                            w.made(h, *partial, false);
                            true
                        }
                        (Some(Section::HeaderFields(None, list)), None)
                        | (Some(Section::HeaderFieldsNot(None, list)), None) => {
                            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
                            let names: Vec<String> = list
                                .as_ref()
                                .iter()
                                .map(|n| String::from_utf8_lossy(n.as_ref()).into_owned())
                                .collect();
                            let h = header.as_deref().unwrap_or_default();
                            w.made(header_fields(h, &names, not), *partial, false);
                            true
                        }
                        (Some(_), Some(mime)) => {
                            match section_bytes(mime, section.as_ref()) {
                                Some(octets) => {
                                    w.slice(octets.bytes(), raw.as_ref(), *partial, false)
                                }
                                // No such part: an empty string, as Dovecot answers.
                                None => w.made(Vec::new(), None, false),
                            }
                            true
                        }
                        (Some(_), None) => {
                            w.made(Vec::new(), None, false);
                            true
                        }
                    };
                    if !ok {
                        self.missing = true;
                    }
                }
                MessageDataItemName::Binary {
                    section, partial, ..
                } => {
                    if let Some(mime) = &mime {
                        let (path, name) = binary_section(section);
                        match binary(mime, &path) {
                            Ok(bytes) => {
                                sep(&mut w);
                                resp::raw(&mut w.cur, &format!("BINARY[{name}]"));
                                if let Some((origin, _)) = partial {
                                    resp::raw(&mut w.cur, &format!("<{origin}>"));
                                }
                                w.cur.push(b' ');
                                w.made(bytes.unwrap_or_default(), *partial, true);
                            }
                            Err(BinaryError::UnknownCte) => self.unknown_cte = true,
                        }
                    }
                }
                MessageDataItemName::BinarySize { section } => {
                    if let Some(mime) = &mime {
                        let (path, name) = binary_section(section);
                        match binary(mime, &path) {
                            Ok(bytes) => {
                                sep(&mut w);
                                let n = bytes.map_or(0, |b| b.len());
                                resp::raw(&mut w.cur, &format!("BINARY.SIZE[{name}] {n}"));
                            }
                            Err(BinaryError::UnknownCte) => self.unknown_cte = true,
                        }
                    }
                }
            }
        }
        if self.want_flags && !self.items.contains(&MessageDataItemName::Flags) {
            sep(&mut w);
            w.cur.extend_from_slice(b"FLAGS ");
            resp::flag_list(&mut w.cur, sel.flags_of(m));
        }
        w.cur.extend_from_slice(b")\r\n");
        w.flush();
    }
}

/// Whether a stored header row is the whole header block: it ends with its first
/// blank line (rows are cut at 64 KiB, and a message without a blank line has none).
fn ends_at_its_blank_line(row: &[u8]) -> bool {
    let mut at = 0;
    for line in row.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        if line == b"\r\n" || line == b"\n" {
            return at == row.len();
        }
    }
    false
}

/// Whether an item needs the message's MIME structure walked.
fn needs_walk(item: &MessageDataItemName<'_>) -> bool {
    match item {
        MessageDataItemName::Body
        | MessageDataItemName::BodyStructure
        | MessageDataItemName::Binary { .. }
        | MessageDataItemName::BinarySize { .. } => true,
        MessageDataItemName::BodyExt { section, .. } => !matches!(
            section,
            None | Some(
                Section::Header(None)
                    | Section::HeaderFields(None, _)
                    | Section::HeaderFieldsNot(None, _)
                    | Section::Text(None)
            )
        ),
        _ => false,
    }
}

/// Whether an item needs the message's header block.
fn needs_header(item: &MessageDataItemName<'_>) -> bool {
    match item {
        MessageDataItemName::Envelope
        | MessageDataItemName::Rfc822Header
        | MessageDataItemName::Rfc822Text => true,
        MessageDataItemName::BodyExt { section, .. } => matches!(
            section,
            Some(
                Section::Header(None)
                    | Section::HeaderFields(None, _)
                    | Section::HeaderFieldsNot(None, _)
                    | Section::Text(None)
            )
        ),
        _ => false,
    }
}

/// One message's response being made: small pieces gathered in `cur`, big literals
/// as their own segments.
struct Writer<'a> {
    segments: &'a mut VecDeque<Segment>,
    cur: Vec<u8>,
}

impl Writer<'_> {
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.segments
                .push_back(Segment::Bytes(std::mem::take(&mut self.cur)));
        }
    }

    /// The range `<origin.length>` picks of `len` octets.
    fn window(len: usize, partial: Option<(u32, NonZeroU32)>) -> (usize, usize) {
        match partial {
            Some((origin, length)) => {
                let start = (origin as usize).min(len);
                let end = start.saturating_add(length.get() as usize).min(len);
                (start, end)
            }
            None => (0, len),
        }
    }

    /// A literal of octets made for the answer (literal8 when `binary` and they hold
    /// a NUL, RFC 3516).
    fn made(&mut self, bytes: Vec<u8>, partial: Option<(u32, NonZeroU32)>, binary: bool) {
        let (start, end) = Self::window(bytes.len(), partial);
        let data = &bytes[start..end];
        if binary && data.contains(&0) {
            self.cur.push(b'~');
        }
        resp::raw(&mut self.cur, &format!("{{{}}}\r\n", data.len()));
        if data.len() < COPY_BELOW {
            self.cur.extend_from_slice(data);
        } else {
            self.flush();
            self.segments.push_back(Segment::Shared {
                data: Arc::new(bytes),
                at: start,
                end,
            });
        }
    }

    /// A literal of a slice of the message (`raw`, when it lies in it) or of a decoded
    /// copy.
    fn slice(
        &mut self,
        bytes: &[u8],
        raw: Option<&Arc<Vec<u8>>>,
        partial: Option<(u32, NonZeroU32)>,
        binary: bool,
    ) {
        let (start, end) = Self::window(bytes.len(), partial);
        let data = &bytes[start..end];
        let within = raw.and_then(|r| {
            let base = r.as_ptr() as usize;
            let at = data.as_ptr() as usize;
            (at >= base && at + data.len() <= base + r.len()).then(|| (r.clone(), at - base))
        });
        match within {
            Some((r, offset)) if data.len() >= COPY_BELOW => {
                if binary && data.contains(&0) {
                    self.cur.push(b'~');
                }
                resp::raw(&mut self.cur, &format!("{{{}}}\r\n", data.len()));
                self.flush();
                self.segments.push_back(Segment::Shared {
                    data: r,
                    at: offset,
                    end: offset + data.len(),
                });
            }
            _ => self.made(data.to_vec(), None, binary),
        }
    }

    /// A literal of the message from octet `from` on (0: all of it; the header's
    /// length: its text), from the message in memory or streamed from the body file.
    /// False if the body file cannot be opened.
    fn whole(
        &mut self,
        store: &Store,
        meta: &MessageMeta,
        raw: &Option<Arc<Vec<u8>>>,
        from: usize,
        partial: Option<(u32, NonZeroU32)>,
    ) -> bool {
        if let Some(r) = raw {
            let from = from.min(r.len());
            let r2 = r.clone();
            self.slice(&r2[from..], Some(r), partial, false);
            return true;
        }
        let size = usize::try_from(meta.size).unwrap_or(usize::MAX);
        let from = from.min(size);
        let (start, end) = Self::window(size - from, partial);
        let (start, end) = (from + start, from + end);
        let mut file = match store.open_body(meta) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "FETCH could not open a message body");
                // The literal is promised by now: an empty one keeps the syntax.
                resp::raw(&mut self.cur, "{0}\r\n");
                return false;
            }
        };
        if start > 0
            && let Err(e) = file.seek(SeekFrom::Start(start as u64))
        {
            tracing::error!(error = %e, "FETCH could not read a message body");
            resp::raw(&mut self.cur, "{0}\r\n");
            return false;
        }
        resp::raw(&mut self.cur, &format!("{{{}}}\r\n", end - start));
        self.flush();
        self.segments.push_back(Segment::File {
            file,
            left: (end - start) as u64,
        });
        true
    }
}

/// `dd-Mon-yyyy hh:mm:ss +0000` (RFC 3501 date-time), in UTC.
pub fn internal_date(t: std::time::SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.format("%d-%b-%Y %H:%M:%S +0000").to_string()
}
