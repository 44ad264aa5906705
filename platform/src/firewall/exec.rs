//! The thin layer that runs the firewall tools: `ipset`, `iptables-restore`,
//! `ip6tables-restore` and the one `INPUT` jump. Everything it feeds them is rendered
//! by [`super::rules`].

use super::rules::{self, Family, Plan};

/// Runs a firewall tool (see [`crate::tool::run`]).
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    crate::tool::run(program, args, input).map_err(|e| {
        if e.starts_with("cannot run") {
            format!("{e} (install iptables and ipset)")
        } else {
            e
        }
    })
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
