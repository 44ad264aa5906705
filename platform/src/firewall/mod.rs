//! The firewall manager: our own chains `POSTERN` and `POSTERN_RATELIMIT` (IPv4 and
//! IPv6) with ipsets for blocks, block lists and bans, rendered from the configuration
//! and the store ([`rules`]) and applied by the tools ([`exec`]). `firewall apply`
//! always applies; `serve` applies at start only with `[firewall] manage = true`.
//! Blocks, block lists and bans are also refused at accept by every listener
//! ([`common::deny::DenyList`]), so they hold where the firewall is not managed.

pub mod exec;
pub mod rules;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::Store;

use crate::admin::Refusal;
use crate::config::Config;
use crate::privsep::Privileged;
use rules::Plan;

/// `[firewall]`: the host firewall and automatic bans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FirewallConfig {
    /// Apply the rules when `serve` starts (and keep the ipsets current). Off by
    /// default: development and tests never touch the host's rules; `postern firewall
    /// apply` applies them by hand.
    pub manage: bool,
    /// The SSH port, always open (rate limited). The spec suggests moving SSH off 22
    /// (e.g. 202) to cut the noise of scanners.
    pub ssh_port: u16,
    /// New SSH connections one address may open in 10 seconds.
    pub ssh_connections_per_10s: u32,
    /// New connections one address may open per second to the mail ports.
    pub mail_connections_per_second: u32,
    /// New connections one address may open per second to HTTP and HTTPS (the web
    /// front limits requests on top)...
    pub http_connections_per_second: u32,
    /// ...with bursts of this many.
    pub http_burst: u32,
    /// Failed logins (SMTP AUTH, IMAP, ManageSieve, admin API) one address may make in
    /// a day before it is banned. 0: never ban. Addresses in `[spam] trusted_networks`
    /// are never banned.
    pub ban_after_failed_logins: u32,
    /// How long a ban lasts, in hours.
    pub ban_hours: u32,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            manage: false,
            ssh_port: 22,
            ssh_connections_per_10s: 5,
            mail_connections_per_second: 50,
            http_connections_per_second: 200,
            http_burst: 400,
            ban_after_failed_logins: 100,
            ban_hours: 24,
        }
    }
}

/// The deny list for the listeners, from `[firewall]` and `[spam] trusted_networks`,
/// holding the store's blocks, block lists and bans.
pub fn deny_list(config: &Config, store: &Store) -> Result<common::deny::DenyList, Refusal> {
    let deny = common::deny::DenyList::new(
        config.firewall.ban_after_failed_logins,
        Duration::from_secs(u64::from(config.firewall.ban_hours) * 3600),
        config.spam.trusted_networks.clone(),
    );
    refresh_deny(&deny, store)?;
    Ok(deny)
}

/// Loads the store's blocks, block lists and bans into `deny`.
fn refresh_deny(deny: &common::deny::DenyList, store: &Store) -> Result<(), Refusal> {
    let mut nets: Vec<IpNet> = store.blocks()?.into_iter().map(|b| b.net).collect();
    for list in store.block_lists()? {
        nets.extend(list.nets);
    }
    deny.set_blocked(nets);
    for ban in store.bans()? {
        deny.ban(ban.ip, ban.until);
    }
    Ok(())
}

/// What the store holds for the rules: blocks, block lists and bans (with the
/// seconds left of each).
type Dynamic = (Vec<IpNet>, Vec<(String, Vec<IpNet>)>, Vec<(IpAddr, u64)>);

fn from_store(store: &Store) -> Result<Dynamic, Refusal> {
    let now = SystemTime::now();
    Ok((
        store.blocks()?.into_iter().map(|b| b.net).collect(),
        store
            .block_lists()?
            .into_iter()
            .map(|l| (l.name, l.nets))
            .collect(),
        store
            .bans()?
            .into_iter()
            .map(|b| {
                let left = b.until.duration_since(now).unwrap_or_default().as_secs();
                (b.ip, left)
            })
            .filter(|(_, left)| *left > 0)
            .collect(),
    ))
}

/// The plan for `config` and the store's state.
pub fn plan(config: &Config, store: &Store) -> Result<Plan, Refusal> {
    let (blocks, lists, bans) = from_store(store)?;
    Ok(plan_with(config, blocks, lists, bans))
}

/// The plan for `config` (ports, rates, the apps' network) with these blocks, block
/// lists and bans: what the privileged helper applies, from its own configuration.
pub fn plan_with(
    config: &Config,
    blocks: Vec<IpNet>,
    lists: Vec<(String, Vec<IpNet>)>,
    bans: Vec<(IpAddr, u64)>,
) -> Plan {
    let ports = |lists: &[&Vec<SocketAddr>]| -> Vec<u16> {
        let mut ports: Vec<u16> = lists
            .iter()
            .flat_map(|l| l.iter().map(|a| a.port()))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    };
    Plan {
        ssh_port: config.firewall.ssh_port,
        mail_ports: ports(&[
            &config.smtp.listen,
            &config.submission.listen,
            &config.submission.listen_tls,
            &config.imap.listen_tls,
            &config.imap.listen,
            &config.managesieve.listen,
        ]),
        http_ports: ports(&[&config.http.listen, &config.https.listen]),
        ssh_per_10s: config.firewall.ssh_connections_per_10s,
        mail_per_second: config.firewall.mail_connections_per_second,
        http_per_second: config.firewall.http_connections_per_second,
        http_burst: config.firewall.http_burst,
        apps: Some((
            IpNet::V4(config.apps.subnet),
            config.apps.mail_connections_per_second,
        )),
        blocks,
        lists,
        bans,
    }
}

/// Where the last applied rules' digest is kept, for "current" checks.
fn applied_marker(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("firewall.applied")
}

fn digest(plan: &Plan) -> String {
    let text = format!(
        "{}{}",
        rules::render_rules(plan, rules::Family::V4),
        rules::render_rules(plan, rules::Family::V6)
    );
    let hash = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies the rules for `config` and the store, in this network namespace, through
/// `privileged`.
pub fn apply(config: &Config, store: &Store, privileged: &Privileged) -> Result<Plan, Refusal> {
    let plan = plan(config, store)?;
    privileged
        .apply_firewall(plan.blocks.clone(), plan.lists.clone(), plan.bans.clone())
        .map_err(Refusal)?;
    let _ = std::fs::write(applied_marker(config), digest(&plan));
    Ok(plan)
}

/// How the firewall stands: chains missing, present but older than the configuration
/// and store, or current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Our chains are not in the tables (or have no INPUT jump).
    Missing,
    /// Present, but the rules would differ if applied now.
    Stale,
    /// Present and as they would be applied now.
    Current,
}

/// The firewall's [`State`] here.
pub fn state(config: &Config, store: &Store, privileged: &Privileged) -> Result<State, Refusal> {
    if !privileged.firewall_present() {
        return Ok(State::Missing);
    }
    let applied = std::fs::read_to_string(applied_marker(config)).unwrap_or_default();
    Ok(if applied == digest(&plan(config, store)?) {
        State::Current
    } else {
        State::Stale
    })
}

/// Whether rule changes should go to the kernel now: managed, or applied by hand
/// before (our chains exist here).
fn active(config: &Config, privileged: &Privileged) -> bool {
    config.firewall.manage || privileged.firewall_present()
}

/// Parses an address or network for block/unblock; refuses to block everyone.
pub fn parse_net(text: &str) -> Result<IpNet, Refusal> {
    let net = match text.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            Refusal(format!(
                "{text:?} is neither an address nor a network (CIDR)"
            ))
        })?,
    };
    if net.prefix_len() == 0 {
        return Err(Refusal(format!("{text} would block every address")));
    }
    Ok(net.trunc())
}

/// Parses a block list file: one address or CIDR per line; blank lines and comments
/// (`#` or `;` to the end of the line) are skipped.
pub fn parse_list(text: &str) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let net = parse_net(line).map_err(|e| format!("line {}: {}", n + 1, e.0))?;
        nets.push(net);
    }
    if nets.is_empty() {
        return Err("no address or network in it".into());
    }
    Ok(nets)
}

/// A firewall request, run in the server (with its deny list) or in the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The rules and sets as they would be applied, and the state.
    Show,
    /// Apply now.
    Apply,
    /// Block an address or network.
    Block { net: String },
    /// Lift a block or a ban.
    Unblock { addr: String },
    /// Create or replace a named block list.
    ListLoad {
        name: String,
        nets: Vec<String>,
        source: String,
    },
    /// Remove a named block list.
    ListDrop { name: String },
}

impl Request {
    /// The activity-log action and detail of a change.
    pub fn action(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Request::Show => return None,
            Request::Apply => ("firewall-apply", String::new()),
            Request::Block { net } => ("firewall-block", net.clone()),
            Request::Unblock { addr } => ("firewall-unblock", addr.clone()),
            Request::ListLoad { name, nets, source } => (
                "blocklist-load",
                format!("{name}: {} networks from {source}", nets.len()),
            ),
            Request::ListDrop { name } => ("blocklist-drop", name.clone()),
        })
    }
}

/// Runs `request`; `deny` is the running server's deny list (None in the CLI).
pub fn execute(
    store: &Store,
    config: &Config,
    deny: Option<&common::deny::DenyList>,
    privileged: &Privileged,
    request: &Request,
    actor: &str,
) -> Result<String, Refusal> {
    let mut out = String::new();
    let mut changed = true;
    match request {
        Request::Show => {
            changed = false;
            let plan = plan(config, store)?;
            let state = match state(config, store, privileged)? {
                State::Missing => "not applied here",
                State::Stale => "applied, but older than the configuration and blocks",
                State::Current => "applied and current",
            };
            let _ = writeln!(
                out,
                "# firewall: {state}; managed by serve: {}",
                config.firewall.manage
            );
            let _ = writeln!(out, "# ipset -exist restore");
            out.push_str(&rules::render_sets(&plan));
            for family in rules::Family::BOTH {
                let _ = writeln!(out, "# {} --noflush", family.restore());
                out.push_str(&rules::render_rules(&plan, family));
            }
            let _ = writeln!(
                out,
                "# then, if missing: iptables/ip6tables -I INPUT 1 -j {}",
                rules::CHAIN
            );
        }
        Request::Apply => {
            let plan = apply(config, store, privileged)?;
            let _ = writeln!(
                out,
                "Applied: chains {} and {} (IPv4 and IPv6); open ports {} (SSH), {:?} (mail), {:?} (web); {} blocks, {} block lists, {} bans",
                rules::CHAIN,
                rules::RATE_CHAIN,
                plan.ssh_port,
                plan.mail_ports,
                plan.http_ports,
                plan.blocks.len(),
                plan.lists.len(),
                plan.bans.len()
            );
        }
        Request::Block { net } => {
            let net = parse_net(net)?;
            if store.add_block(net, actor)? {
                let _ = writeln!(out, "Blocked {net}");
            } else {
                changed = false;
                let _ = writeln!(out, "{net} was already blocked");
            }
        }
        Request::Unblock { addr } => {
            let net = parse_net(addr)?;
            let unblocked = store.remove_block(net)?;
            let unbanned = match (net.prefix_len() == net.max_prefix_len(), deny) {
                (true, Some(deny)) => {
                    let a = store.remove_ban(net.addr())?;
                    deny.unban(net.addr()) || a
                }
                (true, None) => store.remove_ban(net.addr())?,
                (false, _) => false,
            };
            if !unblocked && !unbanned {
                let inside = store
                    .blocks()?
                    .into_iter()
                    .find(|b| b.net.contains(&net))
                    .map(|b| format!(" (it is inside the blocked {}: unblock that)", b.net))
                    .unwrap_or_default();
                return Err(Refusal(format!(
                    "{net} is neither blocked nor banned{inside}"
                )));
            }
            if unblocked {
                let _ = writeln!(out, "Unblocked {net}");
            }
            if unbanned {
                let _ = writeln!(out, "Lifted the ban on {}", net.addr());
            }
        }
        Request::ListLoad { name, nets, source } => {
            let parsed = nets
                .iter()
                .map(|n| parse_net(n))
                .collect::<Result<Vec<_>, _>>()?;
            let count = parsed.len();
            let old = store.set_block_list(name, parsed, source)?;
            let _ = writeln!(
                out,
                "{} block list {name}: {count} networks",
                if old.is_some() { "Replaced" } else { "Loaded" }
            );
        }
        Request::ListDrop { name } => {
            let list = store.remove_block_list(name)?;
            let _ = writeln!(
                out,
                "Dropped block list {name} ({} networks)",
                list.nets.len()
            );
        }
    }
    if changed {
        if let Some(deny) = deny {
            refresh_deny(deny, store)?;
        }
        if !matches!(request, Request::Apply) && active(config, privileged) {
            // The change is in the store and the listeners' deny list already; the
            // kernel's rules follow when we may change them.
            match apply(config, store, privileged) {
                Ok(_) => {
                    let _ = writeln!(out, "The firewall rules were re-applied.");
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "Warning: the firewall rules could not be re-applied here ({}); run `postern firewall apply` as root",
                        e.0
                    );
                }
            }
        }
    }
    Ok(out)
}

/// The hook for new bans when `serve` manages the firewall: the address goes into the
/// ban set at once (through `privileged`), with the ban's time left.
pub fn ban_hook(privileged: Privileged) -> store::login::OnBan {
    Box::new(move |ip, until| {
        let seconds = until
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs();
        if let Err(e) = privileged.add_ban(ip, seconds.max(1)) {
            tracing::error!(%ip, error = e, "could not add the ban to the firewall");
        }
    })
}
