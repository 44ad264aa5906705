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

mod client;
pub mod model;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::imap_wire::{Conn, Line, quote, tls_config};
use client::{Client, ClientResult, Touched, status_of};
use model::{Ctx, Oracle, SharedOracle, Told, View, digest};

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
