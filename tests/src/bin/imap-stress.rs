//! Runs the concurrent IMAP state-checking workload against any IMAPS server (ours in
//! `tests/tests/imap_stress.rs`, or another for comparison):
//!
//! `imap-stress HOST:PORT USER PASSWORD CLIENTS SECONDS [MAILBOX...]`
//!
//! Prints the report; exits 1 if it found protocol errors.

use std::time::Duration;

use anyhow::{Context, Result};
use tests::imap_stress::{Config, run};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: imap-stress HOST:PORT USER PASSWORD CLIENTS SECONDS [MAILBOX...]";
    let addr = args.first().context(usage)?.parse()?;
    let mut mailboxes: Vec<String> = args.iter().skip(5).cloned().collect();
    if mailboxes.is_empty() {
        mailboxes = vec!["Stress".into(), "Stress-B".into(), "Stress-C".into()];
    }
    let config = Config {
        addr,
        user: args.get(1).context(usage)?.clone(),
        password: args.get(2).context(usage)?.clone(),
        clients: args.get(3).context(usage)?.parse()?,
        duration: Duration::from_secs(args.get(4).context(usage)?.parse()?),
        mailboxes,
        initial_messages: 40,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
    };
    let report = run(&config)?;
    print!("{report}");
    if !report.errors.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
