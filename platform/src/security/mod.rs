//! `postern security check`: one report of what an admin should look at, each line
//! `ok` or `warn` with the fix: SSH (passwords, root login, port 22), the firewall,
//! certificates, DNS records, DNSBL reachability and weak admin password hashes.
//! The judgements are pure functions of what was read, tested on their own; [`run`]
//! gathers what they judge and prints each line as soon as it is known.

pub mod run;

use std::path::{Path, PathBuf};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Fine as it is.
    pub ok: bool,
    /// What was looked at and what was found.
    pub what: String,
    /// What to do (empty when ok).
    pub fix: String,
}

pub(crate) fn ok(what: impl Into<String>) -> Finding {
    Finding {
        ok: true,
        what: what.into(),
        fix: String::new(),
    }
}

pub(crate) fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        ok: false,
        what: what.into(),
        fix: fix.into(),
    }
}

/// One finding as the report prints it: `ok    WHAT`, or `warn  WHAT` and its fix.
pub fn line(f: &Finding) -> String {
    if f.ok {
        format!("ok    {}\n", f.what)
    } else {
        format!("warn  {}\n      fix: {}\n", f.what, f.fix)
    }
}

/// The report's last line: how many checks and warnings.
pub fn summary(findings: &[Finding]) -> String {
    let warnings = findings.iter().filter(|f| !f.ok).count();
    format!("{} checks, {warnings} warnings\n", findings.len())
}

/// The sshd settings we judge, as sshd reads them: the first value of each keyword
/// wins, `Include` is expanded where it stands, and `Match` blocks (conditional) are
/// not the global setting.
#[derive(Debug, Default, PartialEq, Eq)]
struct Sshd {
    password_authentication: Option<String>,
    permit_root_login: Option<String>,
    ports: Vec<u16>,
}

fn read_sshd(path: &Path, sshd: &mut Sshd, depth: usize, in_match: &mut bool) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line
            .split(|c: char| c.is_whitespace() || c == '=')
            .filter(|w| !w.is_empty());
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if key == "match" {
            *in_match = true;
        }
        if *in_match {
            continue;
        }
        match key.as_str() {
            "include" if depth < 8 => {
                let rest: Vec<&str> = std::iter::once(value).chain(words).collect();
                for pattern in rest {
                    for file in expand(pattern) {
                        read_sshd(&file, sshd, depth + 1, in_match);
                    }
                }
            }
            "passwordauthentication" if sshd.password_authentication.is_none() => {
                sshd.password_authentication = Some(value.to_ascii_lowercase());
            }
            "permitrootlogin" if sshd.permit_root_login.is_none() => {
                sshd.permit_root_login = Some(value.to_ascii_lowercase());
            }
            "port" => {
                if let Ok(p) = value.parse() {
                    sshd.ports.push(p);
                }
            }
            _ => {}
        }
    }
}

/// An `Include` pattern: relative to /etc/ssh, `*` allowed in the file name.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let path = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        Path::new("/etc/ssh").join(pattern)
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains('*') {
        return vec![path];
    }
    let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// SSH: password logins, root logins with a password, the port.
pub fn ssh(sshd_config: &Path, firewall_ssh_port: u16) -> Vec<Finding> {
    if !sshd_config.exists() {
        return vec![ok(format!(
            "ssh: no server configuration at {} (no SSH server here)",
            sshd_config.display()
        ))];
    }
    let mut sshd = Sshd::default();
    read_sshd(sshd_config, &mut sshd, 0, &mut false);
    judge_ssh(&sshd, &sshd_config.display().to_string(), firewall_ssh_port)
}

fn judge_ssh(sshd: &Sshd, file: &str, firewall_ssh_port: u16) -> Vec<Finding> {
    let mut out = Vec::new();
    // OpenSSH's defaults: passwords on, root only with a key, port 22.
    match sshd.password_authentication.as_deref().unwrap_or("yes") {
        "no" => out.push(ok("ssh: password authentication is off")),
        _ => out.push(warn(
            "ssh: password authentication is on (passwords can be guessed)",
            format!("install your SSH key, then set `PasswordAuthentication no` in {file} and reload sshd"),
        )),
    }
    match sshd
        .permit_root_login
        .as_deref()
        .unwrap_or("prohibit-password")
    {
        "yes" => out.push(warn(
            "ssh: root may log in with a password",
            format!("set `PermitRootLogin prohibit-password` (or `no`) in {file} and reload sshd"),
        )),
        other => out.push(ok(format!("ssh: root login is `{other}`"))),
    }
    let ports = if sshd.ports.is_empty() {
        vec![22]
    } else {
        sshd.ports.clone()
    };
    if ports.contains(&22) {
        out.push(warn(
            "ssh: listens on port 22, where every scanner knocks",
            "set `Port 202` in sshd_config and `[firewall] ssh_port = 202`, run `postern firewall apply`, restart sshd, and keep this session open until a login on 202 works",
        ));
    } else {
        out.push(ok(format!("ssh: listens on {ports:?}")));
    }
    if !ports.contains(&firewall_ssh_port) {
        out.push(warn(
            format!("firewall: `[firewall] ssh_port` is {firewall_ssh_port}, but sshd listens on {ports:?}"),
            format!("set `[firewall] ssh_port = {}` before you apply the firewall, or you lock yourself out", ports[0]),
        ));
    }
    out
}

/// Who the running server is, from `/proc/PID/status`: its uids and effective
/// capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its process id.
    pub pid: u32,
    /// Real, effective, saved and filesystem uids.
    pub uids: Vec<u32>,
    /// Effective capabilities (hex mask).
    pub cap_eff: u64,
}

/// Reads a process's uids and effective capabilities.
pub fn process(pid: u32) -> Option<Process> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    Some(Process {
        pid,
        uids: field("Uid:")?
            .split_whitespace()
            .filter_map(|u| u.parse().ok())
            .collect(),
        cap_eff: u64::from_str_radix(field("CapEff:")?, 16).ok()?,
    })
}

/// Privileges: the running server (`server`, the process holding the control socket
/// and every listener) must not run as root nor hold capabilities; with no server
/// running, `[server] run_as` must not leave it root.
pub fn privileges(server: Option<Process>, run_as: &str) -> Finding {
    let fix = "set `[server] run_as = \"postern\"` (the default) and start `postern serve` as root: it binds its ports, then runs every protocol as that user beside a small privileged helper for the firewall and containers";
    match server {
        Some(p) if p.uids.contains(&0) || p.cap_eff != 0 => warn(
            format!(
                "privileges: the server (pid {}), which parses mail, HTTP and TLS from the network, runs as root",
                p.pid
            ),
            fix,
        ),
        Some(p) => ok(format!(
            "privileges: the server (pid {}) runs as uid {} without capabilities; only its helper keeps root",
            p.pid,
            p.uids.first().copied().unwrap_or_default()
        )),
        None if run_as.is_empty() || run_as == "root" => warn(
            format!(
                "privileges: `[server] run_as` is {run_as:?}: `serve` would parse mail and HTTP as root"
            ),
            fix,
        ),
        None => ok(format!(
            "privileges: no server running; started as root it runs as {run_as}"
        )),
    }
}

/// The firewall, from the first line of `firewall show`.
pub fn firewall(show: &str, managed: bool) -> Finding {
    let state = show
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# firewall: "))
        .and_then(|l| l.split(';').next())
        .unwrap_or("unknown");
    match state {
        "applied and current" => {
            ok("firewall: chains POSTERN and POSTERN_RATELIMIT applied and current")
        }
        "applied, but older than the configuration and blocks" => warn(
            "firewall: applied, but older than the configuration and blocks",
            "run `postern firewall apply`",
        ),
        _ => warn(
            "firewall: our chains are not in the tables",
            if managed {
                "check the server's log: `[firewall] manage` is on but applying failed"
            } else {
                "run `postern firewall apply` (as root), and set `[firewall] manage = true` to apply it at every start"
            },
        ),
    }
}

/// Certificates: self-signed, or expiring within 14 days.
pub fn certificates(config: &crate::config::Config, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, path) in crate::certs::files(config) {
        let Some(info) = crate::certs::read(&path) else {
            out.push(warn(
                format!("certificate {name}: {} cannot be read", path.display()),
                "replace the file, or remove it",
            ));
            continue;
        };
        let days = (info.not_after - now) / 86_400;
        if info.self_signed {
            out.push(warn(
                format!("certificate {name}: self-signed; clients do not trust it"),
                "set `[acme] directory` and `email` (or `quickstart --acme-email`), or install a CA certificate in DATA/tls",
            ));
        } else if days < 14 {
            out.push(warn(
                format!("certificate {name}: expires in {} days", days.max(0)),
                "`postern acme status` shows why it was not renewed; `postern acme renew` tries now",
            ));
        } else {
            out.push(ok(format!(
                "certificate {name}: valid for {days} more days"
            )));
        }
    }
    out
}

/// The DNS wizard's verdicts for one domain.
pub fn dns(domain: &str, checks: &[crate::dnssetup::Check]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut good = 0;
    for c in checks {
        let r = &c.record;
        match &c.verdict {
            crate::dnssetup::Verdict::Ok => good += 1,
            crate::dnssetup::Verdict::Missing => out.push(warn(
                format!("dns {domain}: {} {} is missing", r.name, r.rtype),
                format!("publish {} {} {}", r.name, r.rtype, r.data),
            )),
            crate::dnssetup::Verdict::Wrong(found) => out.push(warn(
                format!(
                    "dns {domain}: {} {} is {}",
                    r.name,
                    r.rtype,
                    found.join(", ")
                ),
                format!("publish {} {} {}", r.name, r.rtype, r.data),
            )),
            crate::dnssetup::Verdict::Failed(e) => out.push(warn(
                format!(
                    "dns {domain}: {} {} could not be looked up ({e})",
                    r.name, r.rtype
                ),
                "check `[dns] nameservers`",
            )),
        }
    }
    if out.is_empty() {
        out.push(ok(format!("dns {domain}: all {good} records as expected")));
    }
    out
}

/// A DNSBL zone's answer for its test entry 127.0.0.2 (RFC 5782 §5).
pub fn dnsbl(zone: &str, answer: Result<Vec<std::net::Ipv4Addr>, String>) -> Finding {
    match answer {
        Ok(addrs) if addrs.iter().any(|a| a.octets()[..3] == [127, 255, 255]) => warn(
            format!("dnsbl {zone}: refuses our resolver ({})", addrs[0]),
            "Spamhaus refuses public and open resolvers: point `[dns] nameservers` at a resolver of your own",
        ),
        Ok(addrs) if addrs.iter().any(|a| a.octets()[0] == 127) => ok(format!(
            "dnsbl {zone}: answers through the configured resolver"
        )),
        Ok(_) => warn(
            format!("dnsbl {zone}: does not list its test entry 127.0.0.2"),
            "check the zone name in `[spam] dnsbl`",
        ),
        Err(e) => warn(
            format!("dnsbl {zone}: not reachable ({e}); mail is accepted unchecked"),
            "check `[dns] nameservers` and the zone name in `[spam] dnsbl`",
        ),
    }
}

/// Why a password hash is weak (legacy scheme or parameters under today's), if it is.
pub fn weak_hash(hash: &str) -> Option<String> {
    let scheme = hash.split('$').nth(1).unwrap_or("");
    if scheme != "argon2id" {
        return Some(format!("a legacy {scheme} hash"));
    }
    let params = hash.split('$').nth(3).unwrap_or("");
    let param = |key: &str| {
        params
            .split(',')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    // argon2's (and OWASP's) minimum: 19 MiB, 2 passes.
    (param("m") < 19_456 || param("t") < 2).then(|| "argon2id with weak parameters".into())
}

/// Admin accounts: weak or legacy password hashes.
pub fn admins(weak: &str) -> Vec<Finding> {
    let lines: Vec<&str> = weak.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return vec![ok(
            "admin accounts: every password hash is argon2id at today's strength",
        )];
    }
    lines
        .iter()
        .map(|l| {
            let email = l.split(':').next().unwrap_or(l);
            warn(
                format!("admin account {l}"),
                format!("have {email} set a new password (`postern user passwd {email}`): it is hashed with argon2id"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sshd_first_value_wins_includes_expand_and_match_blocks_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sshd_config.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("10-local.conf"), "PasswordAuthentication no\n").unwrap();
        let main = dir.path().join("sshd_config");
        std::fs::write(
            &main,
            format!(
                "Include {}/*.conf\nPasswordAuthentication yes\nPort 202\nMatch User bob\n  PermitRootLogin yes\n",
                d.display()
            ),
        )
        .unwrap();
        let mut sshd = Sshd::default();
        read_sshd(&main, &mut sshd, 0, &mut false);
        assert_eq!(sshd.password_authentication.as_deref(), Some("no"));
        assert_eq!(sshd.permit_root_login, None);
        assert_eq!(sshd.ports, [202]);
        let findings = judge_ssh(&sshd, "f", 202);
        assert!(findings.iter().all(|f| f.ok), "{findings:?}");
    }

    #[test]
    fn openssh_defaults_warn_about_passwords_and_port_22() {
        let findings = judge_ssh(&Sshd::default(), "f", 22);
        let warned: Vec<&str> = findings
            .iter()
            .filter(|f| !f.ok)
            .map(|f| f.what.as_str())
            .collect();
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(warned[0].contains("password authentication is on"));
        assert!(warned[1].contains("port 22"));
        let root = Sshd {
            permit_root_login: Some("yes".into()),
            ports: vec![202],
            password_authentication: Some("no".into()),
        };
        let findings = judge_ssh(&root, "f", 22);
        assert!(
            findings
                .iter()
                .any(|f| !f.ok && f.what.contains("root may log in"))
        );
        assert!(
            findings
                .iter()
                .any(|f| !f.ok && f.what.contains("ssh_port` is 22"))
        );
    }

    #[test]
    fn legacy_and_weak_hashes_are_named() {
        assert_eq!(
            weak_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            None
        );
        assert!(weak_hash("$argon2id$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA").is_some());
        assert_eq!(
            weak_hash("$pbkdf2-sha256$i=600000,l=32$c2FsdA$aGFzaA").as_deref(),
            Some("a legacy pbkdf2-sha256 hash")
        );
        assert!(weak_hash("$argon2i$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA").is_some());
        let real = common::auth::hash_password("Strong-Pass-1").unwrap();
        assert_eq!(weak_hash(&real), None, "{real}");
    }

    #[test]
    fn a_server_with_root_or_capabilities_is_warned_about() {
        let p = |uids: Vec<u32>, cap_eff| {
            Some(Process {
                pid: 7,
                uids,
                cap_eff,
            })
        };
        assert!(privileges(p(vec![994; 4], 0), "postern").ok);
        assert!(!privileges(p(vec![0; 4], 0x1ff), "postern").ok);
        assert!(!privileges(p(vec![994, 994, 0, 994], 0), "postern").ok);
        assert!(!privileges(p(vec![994; 4], 0x400), "postern").ok);
        assert!(privileges(None, "postern").ok);
        assert!(!privileges(None, "").ok);
        assert!(!privileges(None, "root").ok);
        let me = process(std::process::id()).unwrap();
        assert_eq!(me.uids.len(), 4);
    }

    #[test]
    fn dnsbl_answers_are_judged() {
        use std::net::Ipv4Addr;
        assert!(dnsbl("z", Ok(vec![Ipv4Addr::new(127, 0, 0, 2)])).ok);
        assert!(!dnsbl("z", Ok(vec![Ipv4Addr::new(127, 255, 255, 254)])).ok);
        assert!(!dnsbl("z", Err("timeout".into())).ok);
    }
}
