//! The DNS setup wizard's check: each record a domain needs (`dkim::records`) looked up
//! live through `[dns] nameservers`, with a verdict: ok, missing, or wrong with what was
//! found and what is expected.

use std::fmt::Write as _;

use dkim::records::Record;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};

/// What the live DNS says about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The record is published as expected.
    Ok,
    /// Nothing of the kind is published.
    Missing,
    /// Something else is published: the values found.
    Wrong(Vec<String>),
    /// The lookup failed (timeout, server failure): no verdict.
    Failed(String),
}

/// One expected record and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The record the domain needs.
    pub record: Record,
    /// What the DNS has.
    pub verdict: Verdict,
}

/// Parses one line of `postern dns records` (`NAME TTL IN TYPE DATA`).
pub fn parse_record(line: &str) -> Option<Record> {
    let mut parts = line.splitn(5, ' ');
    let name = parts.next()?.to_string();
    let _ttl = parts.next()?;
    if parts.next()? != "IN" {
        return None;
    }
    let rtype = match parts.next()? {
        "MX" => "MX",
        "TXT" => "TXT",
        "CNAME" => "CNAME",
        "SRV" => "SRV",
        "A" => "A",
        "AAAA" => "AAAA",
        "CAA" => "CAA",
        _ => return None,
    };
    Some(Record {
        name,
        rtype,
        data: parts.next()?.to_string(),
    })
}

/// Looks every record up (all at once) and judges it; the checks come back in the
/// order of `expected`.
pub async fn check(resolver: &TokioResolver, expected: &[Record]) -> Vec<Check> {
    let mut lookups = tokio::task::JoinSet::new();
    for (i, record) in expected.iter().cloned().enumerate() {
        let resolver = resolver.clone();
        lookups.spawn(async move {
            let verdict = match record.rtype {
                "MX" => check_mx(&resolver, &record).await,
                "TXT" => check_txt(&resolver, &record).await,
                "CNAME" => check_cname(&resolver, &record).await,
                _ => check_exact(&resolver, &record).await,
            };
            (i, verdict)
        });
    }
    let mut verdicts: Vec<Option<Verdict>> = vec![None; expected.len()];
    while let Some(done) = lookups.join_next().await {
        if let Ok((i, verdict)) = done {
            verdicts[i] = Some(verdict);
        }
    }
    expected
        .iter()
        .zip(verdicts)
        .map(|(record, verdict)| Check {
            record: record.clone(),
            verdict: verdict.unwrap_or_else(|| Verdict::Failed("the lookup failed".into())),
        })
        .collect()
}

/// One line per record, then a summary.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    let (mut ok, mut missing, mut wrong, mut failed) = (0, 0, 0, 0);
    for c in checks {
        let r = &c.record;
        match &c.verdict {
            Verdict::Ok => {
                ok += 1;
                let _ = writeln!(out, "ok       {} {} {}", r.rtype, r.name, r.data);
            }
            Verdict::Missing => {
                missing += 1;
                let _ = writeln!(
                    out,
                    "missing  {} {}\n         publish: {r}",
                    r.rtype, r.name
                );
            }
            Verdict::Wrong(found) => {
                wrong += 1;
                let _ = writeln!(
                    out,
                    "wrong    {} {}\n         found:   {}\n         publish: {r}",
                    r.rtype,
                    r.name,
                    found.join(" | ")
                );
            }
            Verdict::Failed(e) => {
                failed += 1;
                let _ = writeln!(out, "unknown  {} {}: {e}", r.rtype, r.name);
            }
        }
    }
    let _ = writeln!(
        out,
        "{ok} ok, {missing} missing, {wrong} wrong{}",
        if failed > 0 {
            format!(", {failed} not checked (lookup failed)")
        } else {
            String::new()
        }
    );
    out
}

/// The answers of one lookup as RDATA; an empty list for NXDOMAIN or no records.
async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    rtype: RecordType,
) -> Result<Vec<RData>, String> {
    match resolver.lookup(name, rtype).await {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| r.data.clone())
            .collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// MX: our host among the exchanges (any preference).
async fn check_mx(resolver: &TokioResolver, record: &Record) -> Verdict {
    let want = record.data.split(' ').nth(1).unwrap_or_default();
    match lookup(resolver, &record.name, RecordType::MX).await {
        Err(e) => Verdict::Failed(e),
        Ok(found) if found.is_empty() => Verdict::Missing,
        Ok(found) => {
            let hosts: Vec<String> = found
                .iter()
                .filter_map(|d| match d {
                    RData::MX(mx) => Some(format!("{} {}", mx.preference, mx.exchange)),
                    _ => None,
                })
                .collect();
            if hosts
                .iter()
                .any(|h| h.split(' ').nth(1).is_some_and(|x| same_name(x, want)))
            {
                Verdict::Ok
            } else {
                Verdict::Wrong(hosts)
            }
        }
    }
}

/// The text of TXT data in presentation form: the quoted strings joined.
fn unquote(data: &str) -> String {
    let mut out = String::new();
    let mut chars = data.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c if quoted => out.push(c),
            _ => {}
        }
    }
    out
}

/// A TXT record's tags, normalised: `v=DKIM1; k=rsa; p=...` -> [("v","DKIM1"), ...].
fn tags(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.split_whitespace().collect::<String>(),
            ))
        })
        .collect()
}

/// TXT: among the records with the same version tag (`v=spf1`, `v=DKIM1`...), one
/// with the same content; for DKIM the same key type and public key.
async fn check_txt(resolver: &TokioResolver, record: &Record) -> Verdict {
    let want = unquote(&record.data);
    let version = |text: &str| {
        text.split([';', ' '])
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let want_version = version(&want);
    let found = match lookup(resolver, &record.name, RecordType::TXT).await {
        Err(e) => return Verdict::Failed(e),
        Ok(found) => found,
    };
    let texts: Vec<String> = found
        .iter()
        .filter_map(|d| match d {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .filter(|t| version(t) == want_version)
        .collect();
    if texts.is_empty() {
        return Verdict::Missing;
    }
    let matches = |t: &str| {
        if want_version == "v=dkim1" {
            let (a, b) = (tags(t), tags(&want));
            let get = |tags: &[(String, String)], k: &str| {
                tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            };
            get(&a, "p") == get(&b, "p")
                && get(&a, "k").unwrap_or_else(|| "rsa".into())
                    == get(&b, "k").unwrap_or_else(|| "rsa".into())
        } else if want_version == "v=spf1" {
            t.split_whitespace()
                .map(str::to_ascii_lowercase)
                .eq(want.split_whitespace().map(str::to_ascii_lowercase))
        } else {
            tags(t) == tags(&want)
        }
    };
    if texts.iter().any(|t| matches(t)) {
        Verdict::Ok
    } else {
        Verdict::Wrong(texts)
    }
}

/// CNAME: pointing at our host, or (a flattened setup) the same addresses as it.
async fn check_cname(resolver: &TokioResolver, record: &Record) -> Verdict {
    match lookup(resolver, &record.name, RecordType::CNAME).await {
        Err(e) => Verdict::Failed(e),
        Ok(found) if !found.is_empty() => {
            let targets: Vec<String> = found
                .iter()
                .filter_map(|d| match d {
                    RData::CNAME(c) => Some(c.0.to_string()),
                    _ => None,
                })
                .collect();
            if targets.iter().any(|t| same_name(t, &record.data)) {
                Verdict::Ok
            } else {
                Verdict::Wrong(targets)
            }
        }
        Ok(_) => {
            let addresses = |name: String| async move {
                let mut all = Vec::new();
                for rtype in [RecordType::A, RecordType::AAAA] {
                    all.extend(
                        lookup(resolver, &name, rtype)
                            .await
                            .unwrap_or_default()
                            .iter()
                            .map(|d| d.to_string()),
                    );
                }
                all.sort();
                all
            };
            let here = addresses(record.name.clone()).await;
            if here.is_empty() {
                return Verdict::Missing;
            }
            if here == addresses(record.data.clone()).await {
                Verdict::Ok
            } else {
                Verdict::Wrong(here)
            }
        }
    }
}

/// Any other type (SRV): the same data, compared case-insensitively.
async fn check_exact(resolver: &TokioResolver, record: &Record) -> Verdict {
    let Ok(rtype) = record.rtype.parse::<RecordType>() else {
        return Verdict::Failed(format!("unknown type {}", record.rtype));
    };
    match lookup(resolver, &record.name, rtype).await {
        Err(e) => Verdict::Failed(e),
        Ok(found) if found.is_empty() => Verdict::Missing,
        Ok(found) => {
            let found: Vec<String> = found.iter().map(|d| d.to_string()).collect();
            let want: Vec<String> = record
                .data
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect();
            if found.iter().any(|f| {
                f.split_whitespace()
                    .map(str::to_ascii_lowercase)
                    .eq(want.iter().cloned())
            }) {
                Verdict::Ok
            } else {
                Verdict::Wrong(found)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_parse_back() {
        let r = parse_record("_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=reject\"");
        assert_eq!(
            r,
            Some(Record {
                name: "_dmarc.example.test.".into(),
                rtype: "TXT",
                data: "\"v=DMARC1; p=reject\"".into()
            })
        );
        assert_eq!(parse_record("garbage"), None);
        assert_eq!(unquote("\"ab\" \"c\\\"d\""), "abc\"d");
    }

    #[test]
    fn tags_ignore_spacing() {
        assert_eq!(tags("v=DMARC1;p=reject"), tags("v=DMARC1; p=reject"));
        assert_ne!(tags("v=DMARC1; p=none"), tags("v=DMARC1; p=reject"));
    }
}
