//! Gathering the report: what needs no network (SSH, the firewall, certificates, admin
//! hashes) is printed at once; every DNS and DNSBL lookup runs at the same time under
//! one time budget, each result printed as it comes; a lookup still unanswered when
//! the budget is spent is a warning, not a wait.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hickory_resolver::TokioResolver;

use super::{Finding, warn};
use crate::admin::Request;
use crate::config::Config;

/// Runs the checks and prints the report to `out` line by line; `ask` runs an admin
/// request (through the running server, or on the store).
pub fn check(
    config: &Config,
    sshd_config: &Path,
    budget: Duration,
    ask: &dyn Fn(Request) -> Result<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut findings: Vec<Finding> = Vec::new();
    let mut report = |found: Vec<Finding>, out: &mut dyn Write| -> Result<()> {
        for f in &found {
            out.write_all(super::line(f).as_bytes())?;
        }
        out.flush()?;
        findings.extend(found);
        Ok(())
    };
    report(super::ssh(sshd_config, config.firewall.ssh_port), out)?;
    let server = crate::control::server_pid(&config.data_dir).and_then(super::process);
    report(vec![super::privileges(server, &config.server.run_as)], out)?;
    let show = ask(Request::Firewall(crate::firewall::Request::Show))?;
    report(vec![super::firewall(&show, config.firewall.manage)], out)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    report(super::certificates(config, now), out)?;
    report(super::admins(&ask(Request::WeakAdminHashes)?), out)?;

    // The network: every lookup at once.
    let mut expected = Vec::new();
    for domain in ask(Request::DomainList)?.lines() {
        let records = ask(Request::DnsRecords {
            domain: domain.to_string(),
        })?;
        let records: Vec<_> = records
            .lines()
            .filter_map(crate::dnssetup::parse_record)
            .collect();
        expected.push((domain.to_string(), records));
    }
    let resolver = common::dns::resolver(&config.dns).context("the DNS resolver of [dns]")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut lookups = tokio::task::JoinSet::new();
        let mut pending: Vec<String> = Vec::new();
        for (domain, records) in expected {
            let resolver = resolver.clone();
            pending.push(format!("dns {domain}"));
            lookups.spawn(async move {
                let checks = crate::dnssetup::check(&resolver, &records).await;
                (format!("dns {domain}"), super::dns(&domain, &checks))
            });
        }
        for zone in &config.spam.dnsbl {
            let (resolver, zone) = (resolver.clone(), zone.clone());
            pending.push(format!("dnsbl {zone}"));
            lookups.spawn(async move {
                let answer = dnsbl_answer(&resolver, &zone).await;
                (format!("dnsbl {zone}"), vec![super::dnsbl(&zone, answer)])
            });
        }
        loop {
            match tokio::time::timeout_at(deadline, lookups.join_next()).await {
                Ok(Some(Ok((what, found)))) => {
                    pending.retain(|p| *p != what);
                    report(found, out)?;
                }
                Ok(Some(Err(e))) => tracing::warn!(error = %e, "a lookup task failed"),
                Ok(None) => break,
                Err(_) => {
                    lookups.abort_all();
                    break;
                }
            }
        }
        let unanswered = pending
            .iter()
            .map(|what| {
                warn(
                    format!(
                        "{what}: no answer from the resolver within {} s",
                        budget.as_secs()
                    ),
                    "check `[dns] nameservers` (a resolver that does not answer also delays every message's DNSBL, SPF, DKIM and DMARC checks)",
                )
            })
            .collect();
        report(unanswered, out)
    })?;
    out.write_all(super::summary(&findings).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The addresses a DNSBL zone gives for its test entry 127.0.0.2 (RFC 5782 §5).
async fn dnsbl_answer(
    resolver: &TokioResolver,
    zone: &str,
) -> Result<Vec<std::net::Ipv4Addr>, String> {
    let name = format!("2.0.0.127.{}.", zone.trim_end_matches('.'));
    resolver
        .ipv4_lookup(name.as_str())
        .await
        .map(|lookup| {
            lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()
        })
        .map_err(|e| e.to_string())
}
