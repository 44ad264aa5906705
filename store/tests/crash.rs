//! Crash test: a child process writes to the store and acknowledges each commit on stdout;
//! the parent SIGKILLs it at a random moment, reopens the store and checks that everything
//! acknowledged survived whole. Twenty kills on one growing store.
//!
//! The child is this same test binary, re-executed to run the ignored test `crash_child`.

// clippy's allow-unwrap-in-tests does not reach the helpers of an integration test crate.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use store::Store;

const DIR_ENV: &str = "POSTERN_STORE_CRASH_DIR";
const BASE_ENV: &str = "POSTERN_STORE_CRASH_BASE";
const DOMAIN: &str = "example.test";
const ACCOUNT: &str = "crash@example.test";
const KILLS: u64 = 20;
/// Each child numbers its items from `kill * STRIDE`, so numbers never collide.
const STRIDE: u64 = 1_000_000;
/// A child left alone (parent gone) stops after this long.
const CHILD_MAX_RUN: Duration = Duration::from_secs(30);

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The body of item `n`: a header naming `n`, then a pattern seeded by `n`; 1 to 64 KiB.
fn body(n: u64) -> Vec<u8> {
    let size = 1024 + (splitmix64(n) % (63 * 1024 + 1)) as usize;
    let mut out = format!("X-Crash-Seq: {n}\r\n\r\n").into_bytes();
    let mut state = n ^ 0x5555_5555_5555_5555;
    while out.len() < size {
        state = splitmix64(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn alias(n: u64) -> String {
    format!("a{n}@{DOMAIN}")
}

fn seq_of(body: &[u8]) -> Option<u64> {
    let line = body.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .strip_prefix("X-Crash-Seq: ")?
        .parse()
        .ok()
}

fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % n
}

/// The writer: appends a message and adds an alias per item, then prints `ACK <n>`.
#[test]
#[ignore = "run as a child process by crash_recovery"]
fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        eprintln!("crash_child only runs when re-executed by crash_recovery");
        return;
    };
    let base: u64 = std::env::var(BASE_ENV).unwrap().parse().unwrap();
    let store = Store::open(Path::new(&dir)).unwrap();
    let account = store.account(ACCOUNT).unwrap().unwrap();
    let inbox = store.mailbox(account.id, "INBOX").unwrap().unwrap();
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    for n in base..base + STRIDE {
        if started.elapsed() > CHILD_MAX_RUN {
            break;
        }
        store
            .append(inbox.id, &body(n), &[], SystemTime::now())
            .unwrap();
        store.add_alias(&alias(n), &[ACCOUNT.to_string()]).unwrap();
        writeln!(out, "ACK {n}").unwrap();
        out.flush().unwrap();
    }
}

/// What a reopened store holds.
struct Found {
    messages: BTreeSet<u64>,
    aliases: HashSet<String>,
    swept: usize,
}

/// Reopens the store and checks every message is whole; returns what is there.
fn inspect(dir: &Path) -> Found {
    let store = Store::open(dir).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.join("blobs/tmp")).unwrap().count(),
        0,
        "blobs/tmp is not emptied at open"
    );
    let account = store.account(ACCOUNT).unwrap().unwrap();
    let inbox = store.mailbox(account.id, "INBOX").unwrap().unwrap();
    let mut messages = BTreeSet::new();
    let mut total = 0;
    let mut last_uid = 0;
    for meta in store.messages(inbox.id).unwrap() {
        assert!(meta.uid > last_uid);
        last_uid = meta.uid;
        let got = store
            .read_body(&meta)
            .unwrap_or_else(|e| panic!("message UID {} has no body: {e}", meta.uid));
        let n = seq_of(&got).unwrap_or_else(|| panic!("message UID {} is mangled", meta.uid));
        assert!(
            got == body(n),
            "the body of item {n} differs from what was written"
        );
        assert_eq!(meta.size, got.len() as u64);
        assert!(messages.insert(n), "item {n} was stored twice");
        total += meta.size;
    }
    assert!(inbox.uid_next > last_uid);
    assert_eq!(store.account(ACCOUNT).unwrap().unwrap().used_bytes, total);
    let aliases = store
        .aliases()
        .unwrap()
        .into_iter()
        .inspect(|a| assert_eq!(a.targets, [ACCOUNT]))
        .map(|a| a.address)
        .collect();
    let swept = store.sweep_orphan_blobs().unwrap();
    Found {
        messages,
        aliases,
        swept,
    }
}

#[test]
fn crash_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let store = Store::open(&dir).unwrap();
        store.add_domain(DOMAIN).unwrap();
        store.add_account(ACCOUNT, "$hash").unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut swept = 0;
    let mut found_last = 0;
    let mut lost_last = 0;
    for kill in 0..KILLS {
        let stderr_path = tmp.path().join(format!("child-{kill}.stderr"));
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--ignored"])
            .env(DIR_ENV, &dir)
            .env(BASE_ENV, (kill * STRIDE).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| line.strip_prefix("ACK ")?.parse::<u64>().ok())
                .collect::<Vec<u64>>()
        });
        thread::sleep(Duration::from_millis(50 + random_below(351)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "the child exited by itself ({status}) instead of being killed: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        acked.extend(reader.join().unwrap());

        let found = inspect(&dir);
        swept += found.swept;
        let lost: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|&n| !found.messages.contains(&n) || !found.aliases.contains(&alias(n)))
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged items lost after kill {kill}: {lost:?}"
        );
        found_last = acked.len() - lost.len();
        lost_last = lost.len();
    }
    println!(
        "crash test: {KILLS} kills, {} commits acknowledged, {found_last} found, {lost_last} lost",
        acked.len()
    );
    println!("crash test: {swept} orphan bodies swept after kills");
    assert!(!acked.is_empty(), "no child ever acknowledged a commit");
}
