//! `postern import mbox|maildir EMAIL PATH [--mailbox NAME]`: brings an existing
//! mailbox in. Messages are read here (mail-parser's mbox and Maildir readers), line
//! ends made CRLF, and sent in batches to the running server through the control
//! socket (or written to the store directly when no server runs). What the target
//! mailbox already holds (by SHA-256 of the message) is skipped, so an interrupted
//! import can simply be run again.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use indicatif::{ProgressBar, ProgressStyle};

use crate::admin::{self, ImportedMessage, Request};
use crate::config::Config;
use crate::control;

/// The source format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// One mbox file (mboxrd/mboxo; `Status:` / `X-Status:` flags).
    Mbox,
    /// A Maildir directory (cur/ and new/; flags from the `:2,` suffix).
    Maildir,
}

/// Bytes per batch sent to the server.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Messages per batch.
const BATCH_MESSAGES: usize = 200;

/// Runs requests through the server when it runs, else on the store.
enum Admin {
    Socket(std::path::PathBuf),
    Direct(Box<store::Store>),
}

impl Admin {
    fn call(&self, config: &Config, request: &Request, actor: &str) -> Result<String> {
        match self {
            Admin::Socket(dir) => match control::send(dir, request, actor)? {
                Some(reply) => reply.map_err(|r| anyhow!(r.0)),
                None => bail!(
                    "the server stopped during the import; run the same command again to resume"
                ),
            },
            Admin::Direct(store) => {
                admin::execute(store, config, request, actor).map_err(|r| anyhow!(r.0))
            }
        }
    }
}

/// One message read from the source.
struct Item {
    body: Vec<u8>,
    flags: Vec<String>,
    date_secs: u64,
}

/// Runs the import; returns the summary line.
pub fn run(
    config: &Config,
    actor: &str,
    kind: Kind,
    email: &str,
    path: &Path,
    mailbox: &str,
) -> Result<String> {
    let admin = if control::send(&config.data_dir, &Request::UserList, actor)?.is_some() {
        Admin::Socket(config.data_dir.clone())
    } else {
        if !config.data_dir.exists() {
            bail!("no data directory at {}", config.data_dir.display());
        }
        Admin::Direct(Box::new(store::Store::open(&config.data_dir)?))
    };
    let digests = admin.call(
        config,
        &Request::MailboxDigests {
            email: email.to_string(),
            mailbox: mailbox.to_string(),
        },
        actor,
    )?;
    let mut present: HashMap<String, usize> = HashMap::new();
    for d in digests.lines() {
        *present.entry(d.to_string()).or_insert(0) += 1;
    }
    // A bar over the source's bytes (drawn only on a terminal).
    let total = match kind {
        Kind::Mbox => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        Kind::Maildir => ["cur", "new"]
            .iter()
            .filter_map(|d| std::fs::read_dir(path.join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum(),
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} [{elapsed}, {eta} left]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let maildir_bar = bar.clone();
    let items: Box<dyn Iterator<Item = Result<Item>>> = match kind {
        Kind::Mbox => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Box::new(
                mail_parser::mailbox::mbox::MessageIterator::new(BufReader::new(
                    bar.wrap_read(file),
                ))
                .map(|m| {
                    let m = m.context("reading the mbox")?;
                    let date_secs = m.internal_date();
                    let body = crlf(m.contents());
                    let flags = mbox_flags(&body);
                    Ok(Item {
                        body,
                        flags,
                        date_secs,
                    })
                }),
            )
        }
        Kind::Maildir => {
            if !path.join("cur").is_dir() && !path.join("new").is_dir() {
                bail!("{} is not a Maildir (no cur/ or new/)", path.display());
            }
            Box::new(
                mail_parser::mailbox::maildir::MessageIterator::new(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .map(move |m| {
                        let m = m.context("reading the Maildir")?;
                        maildir_bar.inc(m.contents().len() as u64);
                        let flags = m
                            .flags()
                            .iter()
                            .filter_map(|f| maildir_flag(*f))
                            .map(String::from)
                            .collect();
                        Ok(Item {
                            body: crlf(m.contents()),
                            flags,
                            date_secs: m.internal_date(),
                        })
                    }),
            )
        }
    };
    let (mut imported, mut skipped) = (0usize, 0usize);
    let mut batch: Vec<ImportedMessage> = Vec::new();
    let mut batch_bytes = 0;
    let send = |batch: &mut Vec<ImportedMessage>, imported: &mut usize| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        admin.call(
            config,
            &Request::ImportBatch {
                email: email.to_string(),
                mailbox: mailbox.to_string(),
                messages: std::mem::take(batch),
            },
            actor,
        )?;
        *imported += n;
        Ok(())
    };
    for item in items {
        let item = item?;
        let d = admin::digest(&item.body);
        if let Some(n) = present.get_mut(&d)
            && *n > 0
        {
            *n -= 1;
            skipped += 1;
            continue;
        }
        batch_bytes += item.body.len();
        batch.push(ImportedMessage {
            body_b64: base64::engine::general_purpose::STANDARD.encode(&item.body),
            flags: item.flags,
            internal_date_ms: item.date_secs.saturating_mul(1000),
        });
        if batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES {
            send(&mut batch, &mut imported)?;
            batch_bytes = 0;
        }
        bar.set_message(format!("{imported} imported, {skipped} already there"));
    }
    send(&mut batch, &mut imported)?;
    bar.finish_and_clear();
    Ok(format!(
        "Imported {imported} messages into {email} {mailbox}; {skipped} were already there\n"
    ))
}

/// CRLF line ends (IMAP and RFC 5322), whatever the source used.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

fn maildir_flag(f: mail_parser::mailbox::maildir::Flag) -> Option<&'static str> {
    use mail_parser::mailbox::maildir::Flag;
    match f {
        Flag::Seen => Some("\\Seen"),
        Flag::Replied => Some("\\Answered"),
        Flag::Flagged => Some("\\Flagged"),
        Flag::Trashed => Some("\\Deleted"),
        Flag::Draft => Some("\\Draft"),
        Flag::Passed => Some("$Forwarded"),
    }
}

/// Flags of an mbox message from its `Status:` (R read) and `X-Status:` (A answered,
/// F flagged, D deleted, T draft) headers, as mutt and Thunderbird write them.
fn mbox_flags(body: &[u8]) -> Vec<String> {
    let mut flags = Vec::new();
    let header_end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(body.len());
    for line in body[..header_end].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            if value.contains('R') {
                flags.push("\\Seen".to_string());
            }
        } else if name.eq_ignore_ascii_case("X-Status") {
            for (c, f) in [
                ('A', "\\Answered"),
                ('F', "\\Flagged"),
                ('D', "\\Deleted"),
                ('T', "\\Draft"),
            ] {
                if value.contains(c) {
                    flags.push(f.to_string());
                }
            }
        }
    }
    flags.dedup();
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_and_mbox_flags() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        let body = crlf(b"Subject: x\nStatus: RO\nX-Status: AF\n\nStatus: R in the body\n");
        assert_eq!(mbox_flags(&body), vec!["\\Seen", "\\Answered", "\\Flagged"]);
    }
}
