//! The thin layer that runs the firewall tools: `ipset`, `iptables-restore`,
//! `ip6tables-restore` and the one `INPUT` jump. Everything it feeds them is rendered
//! by [`super::rules`].

use std::io::Write;
use std::process::{Command, Stdio};

use super::rules::{self, Family, Plan};

/// Runs `program args` with `input` on stdin; an error carries its stderr.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e} (install iptables and ipset)"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Applies `plan`: the sets, then both families' chains (atomically each), then the
/// `INPUT` jump if it is missing (inserted first; an existing one stays where it is),
/// then the sets of dropped block lists are destroyed.
pub fn apply(plan: &Plan) -> Result<(), String> {
    run(
        "ipset",
        &["-exist", "restore"],
        Some(&rules::render_sets(plan)),
    )?;
    for family in Family::BOTH {
        run(
            family.restore(),
            &["--noflush"],
            Some(&rules::render_rules(plan, family)),
        )?;
        let jump = ["-C", "INPUT", "-j", rules::CHAIN];
        if run(family.iptables(), &jump, None).is_err() {
            run(
                family.iptables(),
                &["-I", "INPUT", "1", "-j", rules::CHAIN],
                None,
            )?;
        }
    }
    let wanted: Vec<String> = plan
        .lists
        .iter()
        .flat_map(|(name, _)| Family::BOTH.map(|f| rules::list_set(name, f)))
        .collect();
    for set in run("ipset", &["list", "-n"], None)?.lines() {
        if set.starts_with(rules::LIST_SET_PREFIX) && !wanted.iter().any(|w| w == set) {
            run("ipset", &["destroy", set], None)?;
        }
    }
    Ok(())
}

/// Whether our chains exist here (both families) with the `INPUT` jump.
pub fn chains_present() -> bool {
    Family::BOTH.iter().all(|f| {
        run(f.iptables(), &["-S", rules::CHAIN], None).is_ok()
            && run(f.iptables(), &["-C", "INPUT", "-j", rules::CHAIN], None).is_ok()
    })
}

/// Adds one ban to the ban set (the chains must exist), for `seconds`.
pub fn add_ban(ip: std::net::IpAddr, seconds: u64) -> Result<(), String> {
    let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
    run(
        "ipset",
        &[
            "-exist",
            "add",
            &rules::ban_set(family),
            &ip.to_string(),
            "timeout",
            &seconds.max(1).to_string(),
        ],
        None,
    )
    .map(|_| ())
}
