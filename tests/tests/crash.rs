//! Nothing acknowledged is lost: `postern serve` is SIGKILLed while CLI clients commit
//! through its control socket, 20 times; every change a client saw succeed is there
//! afterwards and the store opens cleanly.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tests::harness::Setup;

const ADMIN: &str = "admin@example.test";
const KILLS: usize = 20;
const WRITERS: usize = 2;

fn jitter_ms(lo: u64, hi: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    lo + u64::from(nanos) % (hi - lo)
}

#[test]
fn sigkill_during_commits_loses_nothing_acknowledged() {
    let setup = Arc::new(Setup::quickstart(ADMIN, "").unwrap());
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut attempted = 0usize;
    for round in 0..KILLS {
        let mut server = setup.serve().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (setup, acked, stop) = (setup.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut tried = 0;
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let address = format!("r{round}w{w}n{n}@example.test");
                        tried += 1;
                        let out = setup.cli(&["alias", "add", &address, ADMIN], None).unwrap();
                        if out.status.success() {
                            acked.lock().unwrap().insert(address);
                        }
                    }
                    tried
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(jitter_ms(150, 600)));
        server.kill().unwrap();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            attempted += w.join().unwrap();
        }
    }
    // No server now: the CLI opens the store itself, as any restart would.
    let listed: BTreeSet<String> = setup
        .cli_ok(&["alias", "list"], None)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(" -> ").next())
        .map(str::to_string)
        .collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.iter().filter(|a| !listed.contains(*a)).collect();
    let found = acked.len() - lost.len();
    println!(
        "crash test (black-box): {KILLS} SIGKILLs, {attempted} commits attempted, {} acknowledged, {found} found, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(
        acked.len() >= KILLS,
        "too few commits to prove anything: {}",
        acked.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // And the server starts again on the same store.
    let mut server = setup.serve().unwrap();
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
