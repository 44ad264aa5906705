//! One client of the workload: its operations and the checks of their answers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::model::{self, Ctx, Fetched, Oracle, SharedOracle, Told, View, digest};
use super::{Rng, message};
use crate::imap_wire::{Conn, Line, quote};

/// A client's keywords it set (true) or cleared (false) on one message; keywords it
/// never touched there (a copy made by another client may carry them) are not known.
pub(super) type Touched = BTreeMap<String, bool>;

/// What one client did and found.
#[derive(Debug, Default)]
pub(super) struct ClientResult {
    pub(super) commands: u64,
    pub(super) by_command: BTreeMap<String, u64>,
    pub(super) errors: Vec<String>,
    pub(super) allowed_no: u64,
    /// (mailbox, UID) -> this client's keywords it set (true) or cleared (false) there.
    pub(super) own: HashMap<(String, u32), Touched>,
    /// Messages a SEARCH left out while the client still saw them (RFC 2180 §4.3
    /// allows that for messages expunged elsewhere): they must be gone in the end.
    pub(super) must_vanish: HashSet<(String, u32)>,
    /// COPY/MOVE answered NO [EXPUNGEISSUED] before the EXPUNGE came: one of these
    /// messages must turn out expunged.
    pub(super) claims: Vec<(String, Vec<u32>)>,
}

pub(super) struct Client {
    pub(super) n: usize,
    pub(super) conn: Conn,
    pub(super) rng: Rng,
    pub(super) view: Option<View>,
    pub(super) oracle: SharedOracle,
    pub(super) ids: Arc<std::sync::atomic::AtomicU64>,
    pub(super) mailboxes: Vec<String>,
    pub(super) result: ClientResult,
}

/// A tagged status: (OK/NO/BAD, response code).
pub(super) fn status_of(line: Option<&Line>, tag: &str) -> (String, Option<String>) {
    let Some(line) = line else {
        return (String::new(), None);
    };
    let text = line.text();
    let rest = text.strip_prefix(tag).unwrap_or(&text).trim_start();
    let (status, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let code = after
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(c, _)| c.to_string());
    (status.to_ascii_uppercase(), code)
}

/// `a:b,c` -> every number (ranges either way round).
fn parse_set(set: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a.min(b)..=a.max(b));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

impl Client {
    fn with_oracle<T>(&self, f: impl FnOnce(&mut Oracle) -> T) -> T {
        f(&mut self.oracle.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn keyword(&mut self) -> String {
        format!("$S{}K{}", self.n, self.rng.below(3))
    }

    fn error(&mut self, text: String) {
        let with_transcript = self.result.errors.len() < 6;
        let mut e = format!("client {}: {text}", self.n);
        if with_transcript {
            let tail = self.conn.transcript.len().saturating_sub(16);
            e.push_str("\n    ");
            e.push_str(&self.conn.transcript[tail..].join("\n    "));
        }
        self.result.errors.push(e);
    }

    /// Sends one command (already tagged, with its literal) and checks its responses.
    fn exec_raw(
        &mut self,
        tag: &str,
        bytes: &[u8],
        verb: &str,
        ctx: Ctx,
        skip_own: &[u32],
    ) -> Result<(Told, String, Option<String>)> {
        self.result.commands += 1;
        *self.result.by_command.entry(verb.to_string()).or_default() += 1;
        self.conn.send(bytes)?;
        let lines = self.conn.until_tagged(tag)?;
        let mut told = Told::default();
        let mut errors = Vec::new();
        let ctx = if self.view.is_none() {
            Ctx::Unselected
        } else {
            ctx
        };
        for line in &lines[..lines.len() - 1] {
            if verb == "LOGOUT" && line.0.starts_with(b"* BYE") {
                continue;
            }
            model::untagged(
                &mut self.view,
                ctx,
                line,
                &self.oracle,
                &mut told,
                &mut errors,
            );
        }
        let (status, code) = status_of(lines.last(), tag);
        self.check_own(&told.fetched, skip_own, &mut errors);
        self.settle_claims(&told);
        for e in errors {
            self.error(format!("{verb}: {e}"));
        }
        Ok((told, status, code))
    }

    fn exec(
        &mut self,
        command: &str,
        verb: &str,
        ctx: Ctx,
        skip_own: &[u32],
    ) -> Result<(Told, String, Option<String>)> {
        let tag = self.conn.tag();
        self.exec_raw(
            &tag,
            format!("{tag} {command}\r\n").as_bytes(),
            verb,
            ctx,
            skip_own,
        )
    }

    /// This client's keywords on the messages a command reported (the last report of
    /// each) are the ones it left there.
    fn check_own(&mut self, fetched: &[Fetched], skip: &[u32], errors: &mut Vec<String>) {
        let Some(view) = &self.view else {
            return;
        };
        let mut last: HashMap<u32, &BTreeSet<String>> = HashMap::new();
        for f in fetched {
            if let (Some(uid), Some(flags)) = (f.uid, &f.flags) {
                last.insert(uid, flags);
            }
        }
        for (uid, flags) in last {
            if skip.contains(&uid) {
                continue;
            }
            let Some(touched) = self.result.own.get(&(view.mailbox.clone(), uid)) else {
                continue;
            };
            for (keyword, set) in touched {
                if flags.contains(keyword) != *set {
                    errors.push(format!(
                        "UID {uid} shows flags {flags:?}, this client left {keyword} {} (a lost update)",
                        if *set { "set" } else { "cleared" }
                    ));
                }
            }
        }
    }

    fn ok(&mut self, verb: &str, status: &str, code: &Option<String>) {
        if status != "OK" {
            self.error(format!("{verb} answered {status} {code:?}"));
        }
    }

    pub(super) fn work(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if let Err(e) = self.step() {
                self.error(format!("connection failed: {e:#}"));
                return;
            }
        }
        // The end: whatever a SEARCH left out must be gone once everything is told.
        if self.view.is_some() {
            let _ = self.exec("NOOP", "NOOP", Ctx::Selected, &[]);
            let vanished: Vec<(String, u32)> = self
                .result
                .must_vanish
                .iter()
                .filter(|(m, u)| {
                    self.view
                        .as_ref()
                        .is_some_and(|v| &v.mailbox == m && v.seq_of(*u).is_some())
                })
                .cloned()
                .collect();
            for (m, u) in vanished {
                self.error(format!(
                    "{m} UID {u} was left out of a SEARCH as expunged, and no EXPUNGE came"
                ));
            }
        }
        let _ = self.exec("LOGOUT", "LOGOUT", Ctx::Selected, &[]);
    }

    /// Claims of NO [EXPUNGEISSUED] that an EXPUNGE just made true are settled.
    fn settle_claims(&mut self, told: &Told) {
        let Some(view) = &self.view else {
            return;
        };
        let gone: Vec<u32> = told.expunged.iter().flatten().copied().collect();
        if gone.is_empty() {
            return;
        }
        let mailbox = view.mailbox.clone();
        self.result
            .claims
            .retain(|(m, uids)| !(m == &mailbox && uids.iter().any(|u| gone.contains(u))));
    }

    fn step(&mut self) -> Result<()> {
        if self.view.is_none() {
            self.select()?;
            return self.learn_uids();
        }
        let roll = self.rng.below(100);
        match roll {
            0..=7 => self.select(),
            8..=22 => self.fetch_flags(),
            23..=31 => self.fetch_body(),
            32..=47 => self.store_keyword(),
            48..=55 => self.expunge(),
            56..=64 => self.append(),
            65..=71 => self.copy_or_move(false),
            72..=79 => self.copy_or_move(true),
            80..=87 => self.idle(),
            88..=92 => self.search(),
            93..=96 => {
                let (_, s, c) = self.exec("NOOP", "NOOP", Ctx::Selected, &[])?;
                self.ok("NOOP", &s, &c);
                Ok(())
            }
            _ => self.status(),
        }?;
        self.learn_uids()
    }

    /// Message numbers whose UID is unknown (new messages): fetched like a client
    /// would after EXISTS.
    fn learn_uids(&mut self) -> Result<()> {
        for _ in 0..5 {
            let Some(v) = &self.view else {
                return Ok(());
            };
            let Some(first) = v.uids.iter().position(Option::is_none) else {
                return Ok(());
            };
            let last = v.len();
            let (told, s, c) = self.exec(
                &format!("FETCH {}:{last} (UID FLAGS)", first + 1),
                "FETCH",
                Ctx::NoExpunge,
                &[],
            )?;
            self.ok("FETCH (new messages)", &s, &c);
            self.every_seq_answered(&told, first + 1, last);
        }
        Ok(())
    }

    fn every_seq_answered(&mut self, told: &Told, a: usize, b: usize) {
        let got: HashSet<usize> = told.fetched.iter().map(|f| f.seq).collect();
        let missing: Vec<usize> = (a..=b).filter(|s| !got.contains(s)).collect();
        if !missing.is_empty() {
            self.error(format!("FETCH {a}:{b} left out messages {missing:?} (RFC 2180 §4.1: a message stays readable until its EXPUNGE is sent)"));
        }
    }

    fn select(&mut self) -> Result<()> {
        let name = self.mailboxes[if self.rng.percent(60) {
            0
        } else {
            self.rng.below(self.mailboxes.len())
        }]
        .clone();
        let examine = self.rng.percent(15);
        let verb = if examine { "EXAMINE" } else { "SELECT" };
        self.view = Some(View::new(&name, examine));
        let (told, s, c) = self.exec(
            &format!("{verb} {}", quote(&name)),
            verb,
            Ctx::Selected,
            &[],
        )?;
        self.ok(verb, &s, &c);
        if s != "OK" {
            self.view = None;
            return Ok(());
        }
        if told.exists.len() != 1 {
            self.error(format!(
                "{verb} sent {} EXISTS responses",
                told.exists.len()
            ));
        }
        if let Some(validity) = told.validity {
            let r = self.with_oracle(|o| o.validity(&name, validity));
            if let Err(e) = r {
                self.error(e);
            }
        } else {
            self.error(format!("{verb} without UIDVALIDITY"));
        }
        Ok(())
    }

    fn range(&mut self) -> Option<(usize, usize)> {
        let len = self.view.as_ref()?.len();
        if len == 0 {
            return None;
        }
        let a = 1 + self.rng.below(len);
        let b = (a + self.rng.below(6)).min(len);
        Some((a, b))
    }

    fn uids_of(&self, a: usize, b: usize) -> Vec<u32> {
        self.view
            .as_ref()
            .map(|v| v.uids[a - 1..b].iter().flatten().copied().collect())
            .unwrap_or_default()
    }

    fn fetch_flags(&mut self) -> Result<()> {
        let Some((a, b)) = self.range() else {
            return Ok(());
        };
        if self.rng.percent(50) {
            let (told, s, c) = self.exec(
                &format!("FETCH {a}:{b} (UID FLAGS)"),
                "FETCH",
                Ctx::NoExpunge,
                &[],
            )?;
            self.ok("FETCH", &s, &c);
            self.every_seq_answered(&told, a, b);
        } else {
            let uids = self.uids_of(a, b);
            let Some(set) = uid_set(&uids) else {
                return Ok(());
            };
            let (told, s, c) = self.exec(
                &format!("UID FETCH {set} (FLAGS)"),
                "UID FETCH",
                Ctx::Selected,
                &[],
            )?;
            self.ok("UID FETCH", &s, &c);
            let got: HashSet<u32> = told.fetched.iter().filter_map(|f| f.uid).collect();
            let still: Vec<u32> = uids
                .iter()
                .filter(|u| self.view.as_ref().is_some_and(|v| v.seq_of(**u).is_some()))
                .filter(|u| !got.contains(u))
                .copied()
                .collect();
            if !still.is_empty() {
                self.error(format!(
                    "UID FETCH {set} left out UIDs {still:?} the client still sees"
                ));
            }
        }
        Ok(())
    }

    fn fetch_body(&mut self) -> Result<()> {
        let Some((a, _)) = self.range() else {
            return Ok(());
        };
        let b = (a + self.rng.below(2)).min(self.view.as_ref().map_or(a, View::len));
        let peek = self.rng.percent(70) || self.view.as_ref().is_some_and(|v| v.read_only);
        let item = if peek { "BODY.PEEK[]" } else { "BODY[]" };
        let (told, s, c) = self.exec(
            &format!("FETCH {a}:{b} (UID RFC822.SIZE {item})"),
            "FETCH BODY",
            Ctx::NoExpunge,
            &[],
        )?;
        self.ok("FETCH BODY", &s, &c);
        self.every_seq_answered(&told, a, b);
        for f in &told.fetched {
            if f.body.is_none() && (a..=b).contains(&f.seq) && f.size.is_some() {
                self.error(format!(
                    "FETCH {item} of message {} came without the body",
                    f.seq
                ));
            }
            // RFC 3501 §6.4.5: FLAGS comes when setting \Seen changed them.
            if !peek
                && f.body.is_some()
                && f.flags.as_ref().is_some_and(|fl| !fl.contains("\\Seen"))
            {
                self.error(format!(
                    "FETCH BODY[] of message {} did not report \\Seen",
                    f.seq
                ));
            }
        }
        Ok(())
    }

    fn store_keyword(&mut self) -> Result<()> {
        if self.view.as_ref().is_none_or(|v| v.read_only) {
            return self.fetch_flags();
        }
        let Some((a, b)) = self.range() else {
            return Ok(());
        };
        let keyword = self.keyword();
        let add = self.rng.percent(60);
        let silent = if self.rng.percent(40) { ".SILENT" } else { "" };
        let sign = if add { "+" } else { "-" };
        let uid_form = self.rng.percent(40);
        let uids = self.uids_of(a, b);
        let mailbox = self
            .view
            .as_ref()
            .map(|v| v.mailbox.clone())
            .unwrap_or_default();
        // The client's expectation changes with the command: its keywords are now
        // set (cleared) on every message of the set that still exists.
        for &u in &uids {
            self.result
                .own
                .entry((mailbox.clone(), u))
                .or_default()
                .insert(keyword.clone(), add);
        }
        let (command, ctx) = match (uid_form, uid_set(&uids)) {
            (true, Some(set)) => (
                format!("UID STORE {set} {sign}FLAGS{silent} ({keyword})"),
                Ctx::Selected,
            ),
            _ => (
                format!("STORE {a}:{b} {sign}FLAGS{silent} ({keyword})"),
                Ctx::NoExpunge,
            ),
        };
        let (told, s, c) = self.exec(&command, "STORE", ctx, &uids)?;
        self.ok("STORE", &s, &c);
        if silent.is_empty() {
            // The STORE's own FETCH responses (the last of each message: updates of
            // others' changes may come first) show the change.
            let mut last: HashMap<u32, &BTreeSet<String>> = HashMap::new();
            for f in &told.fetched {
                if let (Some(u), Some(flags)) = (f.uid, &f.flags) {
                    last.insert(u, flags);
                }
            }
            for (u, flags) in last {
                if uids.contains(&u) && flags.contains(&keyword) != add {
                    self.error(format!("{command}: UID {u} answered with flags {flags:?}"));
                }
            }
        }
        Ok(())
    }

    fn expunge(&mut self) -> Result<()> {
        if self.view.as_ref().is_none_or(|v| v.read_only) {
            return self.fetch_flags();
        }
        let Some((a, _)) = self.range() else {
            return Ok(());
        };
        let (_, s, c) = self.exec(
            &format!("STORE {a} +FLAGS.SILENT (\\Deleted)"),
            "STORE",
            Ctx::NoExpunge,
            &[],
        )?;
        self.ok("STORE \\Deleted", &s, &c);
        let uid = self.uids_of(a, a).first().copied();
        let (command, verb) = match uid {
            Some(u) if self.rng.percent(50) => (format!("UID EXPUNGE {u}"), "UID EXPUNGE"),
            _ => ("EXPUNGE".to_string(), "EXPUNGE"),
        };
        let (_, s, c) = self.exec(&command, verb, Ctx::Selected, &[])?;
        self.ok(verb, &s, &c);
        Ok(())
    }

    fn append(&mut self) -> Result<()> {
        let name = self.mailboxes[self.rng.below(self.mailboxes.len())].clone();
        let id = self.ids.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let len = if self.rng.percent(5) {
            200_000 + self.rng.below(300_000)
        } else {
            100 + self.rng.below(4000)
        };
        let m = message(id, len);
        let keyword = self.keyword();
        let with_keyword = self.rng.percent(30);
        let flags = if with_keyword {
            format!(" ({keyword})")
        } else {
            String::new()
        };
        let floor = self.with_oracle(|o| o.max_uid(&name));
        let tag = self.conn.tag();
        let mut bytes =
            format!("{tag} APPEND {}{flags} {{{}+}}\r\n", quote(&name), m.len()).into_bytes();
        bytes.extend_from_slice(&m);
        bytes.extend_from_slice(b"\r\n");
        let (_, s, c) = self.exec_raw(&tag, &bytes, "APPEND", Ctx::Selected, &[])?;
        self.ok("APPEND", &s, &c);
        let uid = c
            .as_deref()
            .and_then(|c| c.strip_prefix("APPENDUID "))
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|u| u.parse::<u32>().ok());
        match uid {
            None if s == "OK" => self.error(format!("APPEND without APPENDUID: {c:?}")),
            None => {}
            Some(u) => {
                if u <= floor {
                    self.error(format!(
                        "APPENDUID {u} not above UID {floor} seen before the APPEND"
                    ));
                }
                let r = self.with_oracle(|o| o.content(&name, u, digest(&m)));
                if let Err(e) = r {
                    self.error(e);
                }
                if with_keyword {
                    self.result
                        .own
                        .insert((name, u), BTreeMap::from([(keyword, true)]));
                }
            }
        }
        Ok(())
    }

    fn copy_or_move(&mut self, moving: bool) -> Result<()> {
        if moving && self.view.as_ref().is_none_or(|v| v.read_only) {
            return self.fetch_flags();
        }
        let Some((a, b)) = self.range() else {
            return Ok(());
        };
        let b = a + (b - a) / 2;
        let source = self
            .view
            .as_ref()
            .map(|v| v.mailbox.clone())
            .unwrap_or_default();
        let targets: Vec<&String> = self.mailboxes.iter().filter(|m| **m != source).collect();
        let Some(target) = targets
            .get(self.rng.below(targets.len()))
            .map(|t| (*t).clone())
        else {
            return Ok(());
        };
        let uids = self.uids_of(a, b);
        let verb = if moving { "MOVE" } else { "COPY" };
        let floor = self.with_oracle(|o| o.max_uid(&target));
        let command = match (self.rng.percent(50), uid_set(&uids)) {
            (true, Some(set)) => format!("UID {verb} {set} {}", quote(&target)),
            _ => format!("{verb} {a}:{b} {}", quote(&target)),
        };
        let (told, s, c) = self.exec(&command, verb, Ctx::Selected, &[])?;
        let gone: Vec<u32> = told.expunged.iter().flatten().copied().collect();
        if s == "NO" && c.as_deref() == Some("EXPUNGEISSUED") {
            // The claim must come true: an EXPUNGE of one of them, now or later.
            self.result.allowed_no += 1;
            if !uids.iter().any(|u| gone.contains(u)) {
                self.result.claims.push((source, uids));
            }
            return Ok(());
        }
        self.ok(verb, &s, &c);
        if s != "OK" {
            return Ok(());
        }
        let copyuid = told
            .codes
            .iter()
            .chain(c.iter())
            .find_map(|code| code.strip_prefix("COPYUID ").map(str::to_string));
        if moving {
            let kept: Vec<u32> = uids.iter().filter(|u| !gone.contains(u)).copied().collect();
            if !kept.is_empty() {
                self.error(format!(
                    "{command}: OK but no EXPUNGE for moved UIDs {kept:?} (RFC 6851 §3.3)"
                ));
            }
        }
        let Some(copyuid) = copyuid else {
            self.error(format!("{command}: no COPYUID"));
            return Ok(());
        };
        let parts: Vec<&str> = copyuid.split(' ').collect();
        let (src, dst) = match parts.as_slice() {
            [_, src, dst] => (parse_set(src), parse_set(dst)),
            _ => {
                self.error(format!("bad COPYUID {copyuid}"));
                return Ok(());
            }
        };
        if src.len() != dst.len() || src.iter().any(|u| !uids.contains(u)) {
            self.error(format!(
                "{command}: COPYUID {copyuid} does not match the UIDs {uids:?} of {a}:{b}"
            ));
            return Ok(());
        }
        for (s_uid, d_uid) in src.iter().zip(&dst) {
            if *d_uid <= floor {
                self.error(format!("{command}: new UID {d_uid} not above {floor}"));
            }
            let known = self.with_oracle(|o| o.known(&source, *s_uid));
            if let Some(d) = known {
                let r = self.with_oracle(|o| o.content(&target, *d_uid, d));
                if let Err(e) = r {
                    self.error(e);
                }
            }
            if let Some(set) = self.result.own.get(&(source.clone(), *s_uid)).cloned() {
                self.result.own.insert((target.clone(), *d_uid), set);
            }
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<()> {
        let tag = self.conn.tag();
        self.result.commands += 1;
        *self.result.by_command.entry("IDLE".into()).or_default() += 1;
        self.conn.send(format!("{tag} IDLE\r\n").as_bytes())?;
        let mut told = Told::default();
        let mut errors = Vec::new();
        loop {
            let line = self.conn.read_line()?;
            if line.0.starts_with(b"+ ") {
                break;
            }
            if line.0.starts_with(tag.as_bytes()) {
                errors.push(format!("IDLE refused: {}", line.text()));
                for e in errors {
                    self.error(e);
                }
                return Ok(());
            }
            model::untagged(
                &mut self.view,
                Ctx::Selected,
                &line,
                &self.oracle,
                &mut told,
                &mut errors,
            );
        }
        std::thread::sleep(Duration::from_millis(20 + self.rng.below(300) as u64));
        self.conn.send(b"DONE\r\n")?;
        let lines = self.conn.until_tagged(&tag)?;
        for line in &lines[..lines.len() - 1] {
            model::untagged(
                &mut self.view,
                Ctx::Selected,
                line,
                &self.oracle,
                &mut told,
                &mut errors,
            );
        }
        let (s, c) = status_of(lines.last(), &tag);
        self.check_own(&told.fetched, &[], &mut errors);
        self.settle_claims(&told);
        for e in errors {
            self.error(format!("IDLE: {e}"));
        }
        self.ok("IDLE", &s, &c);
        Ok(())
    }

    fn search(&mut self) -> Result<()> {
        let keyword = self.keyword();
        let (command, uid_form, ctx) = if self.rng.percent(50) {
            (format!("UID SEARCH KEYWORD {keyword}"), true, Ctx::Selected)
        } else {
            ("SEARCH ALL".to_string(), false, Ctx::NoExpunge)
        };
        let before = self.view.as_ref().map_or(0, View::len);
        let seen_before: HashSet<u32> = self
            .view
            .iter()
            .flat_map(|v| v.uids.iter().flatten().copied())
            .collect();
        let (told, s, c) = self.exec(&command, "SEARCH", ctx, &[])?;
        self.ok("SEARCH", &s, &c);
        let Some(hits) = told.search else {
            self.error(format!("{command}: no SEARCH response"));
            return Ok(());
        };
        let Some(view) = self.view.clone() else {
            return Ok(());
        };
        let largest_known = view.uids.iter().flatten().max().copied().unwrap_or(0);
        let unknown = view.uids.iter().any(Option::is_none);
        if !uid_form {
            let set: HashSet<u64> = hits.iter().copied().collect();
            for h in &hits {
                if *h == 0 || *h as usize > view.len() {
                    self.error(format!(
                        "SEARCH ALL answered {h} with {} messages",
                        view.len()
                    ));
                }
            }
            for seq in 1..=before.min(view.len()) {
                if !set.contains(&(seq as u64)) {
                    match view.uids[seq - 1] {
                        Some(u) => {
                            self.result.must_vanish.insert((view.mailbox.clone(), u));
                        }
                        None => self.error(format!("SEARCH ALL left out message {seq}")),
                    }
                }
            }
            return Ok(());
        }
        let hits: HashSet<u32> = hits.iter().filter_map(|h| u32::try_from(*h).ok()).collect();
        for h in &hits {
            if view.seq_of(*h).is_none()
                && !seen_before.contains(h)
                && !(unknown && *h > largest_known)
            {
                self.error(format!(
                    "{command} answered UID {h}, not in the mailbox as the client knows it"
                ));
            }
        }
        for u in view.uids.iter().flatten() {
            let Some(own) = self.result.own.get(&(view.mailbox.clone(), *u)) else {
                continue;
            };
            let Some(&expected) = own.get(&keyword) else {
                continue;
            };
            if expected && !hits.contains(u) {
                self.result.must_vanish.insert((view.mailbox.clone(), *u));
            } else if !expected && hits.contains(u) {
                self.error(format!(
                    "{command} found UID {u}, which does not carry the keyword (a lost update)"
                ));
            }
        }
        Ok(())
    }

    fn status(&mut self) -> Result<()> {
        let name = self.mailboxes[self.rng.below(self.mailboxes.len())].clone();
        let (_, s, c) = self.exec(
            &format!("STATUS {} (MESSAGES UIDNEXT UNSEEN)", quote(&name)),
            "STATUS",
            Ctx::Selected,
            &[],
        )?;
        self.ok("STATUS", &s, &c);
        Ok(())
    }
}

/// Ascending UIDs as a UID set, `None` when empty.
fn uid_set(uids: &[u32]) -> Option<String> {
    if uids.is_empty() {
        return None;
    }
    Some(
        uids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}
