//! A random concurrent IMAP workload with state checking: many clients on the same
//! mailboxes (SELECT/EXAMINE, FETCH of flags and bodies, STORE of keywords, EXPUNGE,
//! APPEND, COPY, MOVE, IDLE, SEARCH, NOOP, STATUS), every response checked against a
//! model of what that client may have been told ([`model`]), and at the end the
//! mailboxes checked against what every client did.
//!
//! Each client owns a few keywords (`$S<client>K<n>`) that only it sets or clears, so it
//! knows exactly which of its messages carry them: a lost update (a STORE computed
//! from a stale view) shows up as a wrong keyword. Every message carries its own
//! checksum and every (mailbox, UID) is bound to one content for good.

pub mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::imap_wire::{Conn, Line, quote, tls_config};
use model::{Ctx, Fetched, Oracle, SharedOracle, Told, View, digest};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The IMAPS listener.
    pub addr: SocketAddr,
    /// Login name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Concurrent clients.
    pub clients: usize,
    /// How long the clients run.
    pub duration: Duration,
    /// The mailboxes they share (created when missing; the first is where most of the
    /// work happens).
    pub mailboxes: Vec<String>,
    /// Messages put in each mailbox before the clients start.
    pub initial_messages: usize,
    /// Seed of the random choices.
    pub seed: u64,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Commands sent.
    pub commands: u64,
    /// Commands per verb.
    pub by_command: BTreeMap<String, u64>,
    /// Every protocol error found (the first ones with a transcript).
    pub errors: Vec<String>,
    /// Tagged NO answers that the model allowed (COPY/MOVE of a message expunged by
    /// another client, told in the same response).
    pub allowed_no: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} commands, {} protocol errors, {} NO [EXPUNGEISSUED] to COPY/MOVE allowed (the expunge told with it)",
            self.commands,
            self.errors.len(),
            self.allowed_no
        )?;
        let verbs: Vec<String> = self
            .by_command
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(f, "commands: {}", verbs.join(", "))?;
        for (kind, n) in self.kinds() {
            writeln!(f, "{n:7} x {kind}")?;
        }
        for e in self.errors.iter().take(40) {
            writeln!(f, "ERROR {e}")?;
        }
        Ok(())
    }
}

impl Report {
    /// The errors by kind (numbers and names taken out, first line only), most
    /// frequent first.
    pub fn kinds(&self) -> Vec<(String, usize)> {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for e in &self.errors {
            let first = e.lines().next().unwrap_or_default();
            let kind: String = first
                .split(' ')
                .skip_while(|w| *w != "client" && !w.ends_with(':'))
                .skip(2)
                .map(|w| {
                    if w.chars().any(|c| c.is_ascii_digit()) {
                        "#"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            *kinds.entry(kind.chars().take(110).collect()).or_default() += 1;
        }
        let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        kinds
    }
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (never zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }
}

/// A test message: its X-Stress field gives its id, body length and body digest, so
/// any copy of it can be checked on its own.
pub fn message(id: u64, len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 80);
    let mut i = 0;
    while body.len() < len {
        body.extend_from_slice(format!("{id}:{i} the quick brown fox jumps\r\n").as_bytes());
        i += 1;
    }
    let len = body.len();
    let mut m = format!(
        "From: Stress <stress@example.test>\r\nTo: alice@example.test\r\nSubject: stress {id}\r\nMessage-ID: <{id}@stress.test>\r\nX-Stress: {id} {len} {:x}\r\n\r\n",
        digest(&body)
    )
    .into_bytes();
    m.extend_from_slice(&body);
    m
}

/// Checks a message made by [`message`] against its own X-Stress field.
pub fn check_message(raw: &[u8]) -> Result<(), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let (header, body) = (&raw[..split], &raw[split + 4..]);
    let header = String::from_utf8_lossy(header);
    let field = header
        .lines()
        .find_map(|l| l.strip_prefix("X-Stress: "))
        .ok_or("no X-Stress field")?;
    let parts: Vec<&str> = field.split(' ').collect();
    let (Some(len), Some(d)) = (
        parts.get(1).and_then(|l| l.parse::<usize>().ok()),
        parts.get(2),
    ) else {
        return Err(format!("bad X-Stress field {field:?}"));
    };
    if body.len() != len || format!("{:x}", digest(body)) != *d {
        return Err(format!(
            "body of {} octets does not match X-Stress {field}",
            body.len()
        ));
    }
    Ok(())
}

/// Runs the workload and the final checks.
pub fn run(config: &Config) -> Result<Report> {
    let tls = tls_config();
    let oracle: SharedOracle = Arc::new(Mutex::new(Oracle::default()));
    let ids = Arc::new(std::sync::atomic::AtomicU64::new(1));
    // The mailboxes and their first messages.
    let mut setup = Conn::connect(config.addr, &tls)?;
    setup.login(&config.user, &config.password)?;
    for name in &config.mailboxes {
        if name != "INBOX" {
            setup.command(&format!("CREATE {}", quote(name)))?;
        }
        for _ in 0..config.initial_messages {
            let id = ids.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let m = message(id, 200 + (id as usize * 37) % 3000);
            let tag = setup.tag();
            let mut cmd = format!("{tag} APPEND {} {{{}+}}\r\n", quote(name), m.len()).into_bytes();
            cmd.extend_from_slice(&m);
            cmd.extend_from_slice(b"\r\n");
            setup.send(&cmd)?;
            let lines = setup.until_tagged(&tag)?;
            if !status_of(lines.last(), &tag).0.eq("OK") {
                bail!("setup APPEND failed: {lines:?}");
            }
        }
    }
    drop(setup);
    let deadline = Instant::now() + config.duration;
    let results: Vec<Result<ClientResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..config.clients)
            .map(|n| {
                let oracle = oracle.clone();
                let ids = ids.clone();
                let tls = tls.clone();
                s.spawn(move || {
                    let conn = Conn::connect(config.addr, &tls)?;
                    let mut c = Client {
                        n,
                        conn,
                        rng: Rng::new(config.seed ^ (n as u64 + 1).wrapping_mul(0x1234_5678_9abc)),
                        view: None,
                        oracle,
                        ids,
                        mailboxes: config.mailboxes.clone(),
                        result: ClientResult::default(),
                    };
                    c.conn.login(&config.user, &config.password)?;
                    c.work(deadline);
                    Ok(c.result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked")))
            })
            .collect()
    });
    let mut report = Report::default();
    let mut own: HashMap<(String, u32), BTreeMap<usize, Touched>> = HashMap::new();
    let mut must_vanish = HashSet::new();
    let mut claims = Vec::new();
    for (n, r) in results.into_iter().enumerate() {
        let r = r.with_context(|| format!("client {n}"))?;
        report.commands += r.commands;
        report.allowed_no += r.allowed_no;
        for (k, v) in r.by_command {
            *report.by_command.entry(k).or_default() += v;
        }
        report.errors.extend(r.errors);
        for (key, set) in r.own {
            own.entry(key).or_default().insert(n, set);
        }
        must_vanish.extend(r.must_vanish);
        claims.extend(r.claims);
    }
    final_check(
        config,
        &tls,
        &oracle,
        &own,
        &must_vanish,
        &claims,
        &mut report,
    )?;
    Ok(report)
}

/// With every client gone: each mailbox's messages have the content every client saw
/// under their UIDs and exactly the keywords their owners left on them.
fn final_check(
    config: &Config,
    tls: &Arc<rustls::ClientConfig>,
    oracle: &SharedOracle,
    own: &HashMap<(String, u32), BTreeMap<usize, Touched>>,
    must_vanish: &HashSet<(String, u32)>,
    claims: &[(String, Vec<u32>)],
    report: &mut Report,
) -> Result<()> {
    let mut present: HashSet<(String, u32)> = HashSet::new();
    let mut conn = Conn::connect(config.addr, tls)?;
    conn.login(&config.user, &config.password)?;
    for name in &config.mailboxes {
        let mut view = Some(View::new(name, true));
        let mut errors = Vec::new();
        for command in [
            format!("EXAMINE {}", quote(name)),
            "FETCH 1:* (UID FLAGS BODY.PEEK[])".to_string(),
        ] {
            let (tag, lines) = conn.command(&command)?;
            let mut told = Told::default();
            for line in &lines[..lines.len() - 1] {
                model::untagged(
                    &mut view,
                    Ctx::Selected,
                    line,
                    oracle,
                    &mut told,
                    &mut errors,
                );
            }
            let (status, _) = status_of(lines.last(), &tag);
            if status != "OK" && !(status == "BAD" && command.starts_with("FETCH")) {
                errors.push(format!(
                    "final {command}: {}",
                    lines.last().map(Line::text).unwrap_or_default()
                ));
            }
            for f in told.fetched {
                let (Some(uid), Some(flags)) = (f.uid, f.flags) else {
                    continue;
                };
                present.insert((name.clone(), uid));
                if must_vanish.contains(&(name.clone(), uid)) {
                    errors.push(format!(
                        "{name} UID {uid} was left out of a SEARCH as expunged, and is still there"
                    ));
                }
                if let Some(owners) = own.get(&(name.clone(), uid)) {
                    for (client, touched) in owners {
                        for (keyword, set) in touched {
                            if flags.contains(keyword) != *set {
                                errors.push(format!(
                                    "at the end, {name} UID {uid} has flags {flags:?}; client {client} left {keyword} {} (a lost update)",
                                    if *set { "set" } else { "cleared" }
                                ));
                            }
                        }
                    }
                }
            }
        }
        report
            .errors
            .extend(errors.into_iter().map(|e| format!("final check: {e}")));
    }
    for (mailbox, uids) in claims {
        if uids
            .iter()
            .all(|u| present.contains(&(mailbox.clone(), *u)))
        {
            report.errors.push(format!(
                "final check: COPY/MOVE of {mailbox} UIDs {uids:?} was refused with NO [EXPUNGEISSUED], and all of them still exist"
            ));
        }
    }
    Ok(())
}

/// A client's keywords it set (true) or cleared (false) on one message; keywords it
/// never touched there (a copy made by another client may carry them) are not known.
type Touched = BTreeMap<String, bool>;

/// What one client did and found.
#[derive(Debug, Default)]
struct ClientResult {
    commands: u64,
    by_command: BTreeMap<String, u64>,
    errors: Vec<String>,
    allowed_no: u64,
    /// (mailbox, UID) -> this client's keywords it set (true) or cleared (false) there.
    own: HashMap<(String, u32), Touched>,
    /// Messages a SEARCH left out while the client still saw them (RFC 2180 §4.3
    /// allows that for messages expunged elsewhere): they must be gone in the end.
    must_vanish: HashSet<(String, u32)>,
    /// COPY/MOVE answered NO [EXPUNGEISSUED] before the EXPUNGE came: one of these
    /// messages must turn out expunged.
    claims: Vec<(String, Vec<u32>)>,
}

struct Client {
    n: usize,
    conn: Conn,
    rng: Rng,
    view: Option<View>,
    oracle: SharedOracle,
    ids: Arc<std::sync::atomic::AtomicU64>,
    mailboxes: Vec<String>,
    result: ClientResult,
}

/// A tagged status: (OK/NO/BAD, response code).
fn status_of(line: Option<&Line>, tag: &str) -> (String, Option<String>) {
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

    fn work(&mut self, deadline: Instant) {
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
