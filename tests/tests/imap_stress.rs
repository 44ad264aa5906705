//! The concurrent state-checking IMAP workload (`tests::imap_stress`) against the real
//! server: 10 clients on shared mailboxes selecting, fetching, storing keywords,
//! expunging, appending, copying, moving and idling, every response checked against
//! what that client may have been told. CI runs it for 20 seconds; the long run is
//! `STRESS_SECONDS=600 cargo test -p tests --test imap_stress -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use tests::imap::{PW, setup_with};
use tests::imap_stress::{Config, run};

fn stress(seconds: u64) {
    let (setup, _server) = setup_with("[net]\nconnections_per_ip = 100\n", "");
    let config = Config {
        addr: setup.ports.imaps,
        user: "alice@example.test".into(),
        password: PW.into(),
        clients: 10,
        duration: Duration::from_secs(seconds),
        mailboxes: vec!["INBOX".into(), "Shared-B".into(), "Shared-C".into()],
        initial_messages: 30,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
    };
    let report = run(&config).unwrap();
    println!("imap-stress, {seconds} s, seed {}: {report}", config.seed);
    assert!(report.commands > 1000, "too little work to prove anything");
    assert!(report.errors.is_empty(), "{report}");
}

#[test]
fn ten_clients_on_one_mailbox_get_only_answers_they_may_be_given() {
    stress(20);
}

#[test]
#[ignore = "the long run (10 minutes by default): STRESS_SECONDS sets its length"]
fn ten_clients_for_ten_minutes() {
    let seconds = std::env::var("STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    stress(seconds);
}
