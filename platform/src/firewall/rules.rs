//! The firewall rendered as text, with no side effects: the `ipset restore` script of
//! our address sets and the `iptables-restore --noflush` input of our two chains, one
//! per address family. Golden tests pin the output.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

/// Everything the rules say, from the configuration and the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// SSH's port: always open (rate limited).
    pub ssh_port: u16,
    /// The mail listeners' ports.
    pub mail_ports: Vec<u16>,
    /// The HTTP and HTTPS listeners' ports.
    pub http_ports: Vec<u16>,
    /// New SSH connections one source may open in 10 seconds.
    pub ssh_per_10s: u32,
    /// New mail connections one source may open per second.
    pub mail_per_second: u32,
    /// New HTTP(S) connections one source may open per second...
    pub http_per_second: u32,
    /// ...with this burst.
    pub http_burst: u32,
    /// The app containers' network and the new mail connections each app may open per
    /// second (instead of `mail_per_second`).
    pub apps: Option<(IpNet, u32)>,
    /// The admin's blocks.
    pub blocks: Vec<IpNet>,
    /// The named block lists.
    pub lists: Vec<(String, Vec<IpNet>)>,
    /// Banned addresses and the seconds left of each ban.
    pub bans: Vec<(IpAddr, u64)>,
}

/// An address family, with its tools' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4: `iptables`.
    V4,
    /// IPv6: `ip6tables`.
    V6,
}

impl Family {
    /// Both, in the order they are applied.
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }

    /// `iptables` or `ip6tables`.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// `iptables-restore` or `ip6tables-restore`.
    pub fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

/// Our chain, the one INPUT jumps to.
pub const CHAIN: &str = "POSTERN";
/// The rate-limit chain `POSTERN` jumps to for new connections.
pub const RATE_CHAIN: &str = "POSTERN_RATELIMIT";
/// Block list sets start with this (then the list's name and the family digit).
pub const LIST_SET_PREFIX: &str = "postern_l_";

/// The manual block set of `family`.
pub fn block_set(family: Family) -> String {
    format!("postern_block{}", family.suffix())
}

/// The ban set of `family`.
pub fn ban_set(family: Family) -> String {
    format!("postern_ban{}", family.suffix())
}

/// The set of block list `name` in `family`.
pub fn list_set(name: &str, family: Family) -> String {
    format!("{LIST_SET_PREFIX}{name}{}", family.suffix())
}

/// The `ipset -exist restore` script: every set created if missing, its content
/// replaced at once (filled under a temporary name, then swapped in).
pub fn render_sets(plan: &Plan) -> String {
    let mut out = String::new();
    for family in Family::BOTH {
        let blocks: Vec<String> = plan
            .blocks
            .iter()
            .filter(|n| family.holds(n))
            .map(ToString::to_string)
            .collect();
        fill(
            &mut out,
            &block_set(family),
            "hash:net",
            family,
            "",
            &blocks,
        );
        for (name, nets) in &plan.lists {
            let nets: Vec<String> = nets
                .iter()
                .filter(|n| family.holds(n))
                .map(ToString::to_string)
                .collect();
            fill(
                &mut out,
                &list_set(name, family),
                "hash:net",
                family,
                " maxelem 1048576",
                &nets,
            );
        }
        let bans: Vec<String> = plan
            .bans
            .iter()
            .filter(|(ip, _)| family.holds(&IpNet::from(*ip)))
            .map(|(ip, left)| format!("{ip} timeout {}", left.max(&1)))
            .collect();
        fill(
            &mut out,
            &ban_set(family),
            "hash:ip",
            family,
            " timeout 0",
            &bans,
        );
    }
    out
}

fn fill(
    out: &mut String,
    set: &str,
    kind: &str,
    family: Family,
    options: &str,
    entries: &[String],
) {
    let tmp = format!("{set}_t");
    let family = family.ipset_family();
    let _ = writeln!(out, "create {set} {kind} family {family}{options}");
    let _ = writeln!(out, "create {tmp} {kind} family {family}{options}");
    let _ = writeln!(out, "flush {tmp}");
    for entry in entries {
        let _ = writeln!(out, "add {tmp} {entry}");
    }
    let _ = writeln!(out, "swap {tmp} {set}");
    let _ = writeln!(out, "destroy {tmp}");
}

/// The `iptables-restore --noflush` input for `family`: our two chains, created if
/// missing and refilled; nothing else in the table is touched.
pub fn render_rules(plan: &Plan, family: Family) -> String {
    let mut out = String::new();
    let mut rule = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    rule("*filter".into());
    rule(format!(":{CHAIN} - [0:0]"));
    rule(format!(":{RATE_CHAIN} - [0:0]"));
    rule(format!("-F {CHAIN}"));
    rule(format!("-F {RATE_CHAIN}"));
    rule(format!("-A {CHAIN} -i lo -j ACCEPT"));
    // Blocks first: a blocked address gets nothing, not even established traffic.
    rule(format!(
        "-A {CHAIN} -m set --match-set {} src -j DROP",
        block_set(family)
    ));
    for (name, _) in &plan.lists {
        rule(format!(
            "-A {CHAIN} -m set --match-set {} src -j DROP",
            list_set(name, family)
        ));
    }
    rule(format!(
        "-A {CHAIN} -m set --match-set {} src -j DROP",
        ban_set(family)
    ));
    rule(format!(
        "-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    ));
    rule(format!("-A {CHAIN} -m conntrack --ctstate INVALID -j DROP"));
    // ICMP: IPv6 does not work without neighbour discovery; IPv4 keeps ping and
    // path-MTU discovery.
    rule(match family {
        Family::V4 => format!("-A {CHAIN} -p icmp -j ACCEPT"),
        Family::V6 => format!("-A {CHAIN} -p ipv6-icmp -j ACCEPT"),
    });
    rule(format!(
        "-A {CHAIN} -p tcp -m conntrack --ctstate NEW -j {RATE_CHAIN}"
    ));
    let mut open = vec![plan.ssh_port];
    open.extend(&plan.mail_ports);
    open.extend(&plan.http_ports);
    for ports in port_lists(&open) {
        rule(format!(
            "-A {CHAIN} -p tcp -m multiport --dports {ports} -j ACCEPT"
        ));
    }
    rule(format!("-A {CHAIN} -j DROP"));

    if let Some((net, per_second)) = plan.apps.filter(|(net, _)| family.holds(net)) {
        // Each app (one address) has its own, higher mail rate, and no other limit.
        for ports in port_lists(&plan.mail_ports) {
            rule(format!(
                "-A {RATE_CHAIN} -s {net} -p tcp -m multiport --dports {ports} -m hashlimit --hashlimit-name postern_apps --hashlimit-mode srcip --hashlimit-above {per_second}/sec --hashlimit-burst {per_second} -j DROP"
            ));
        }
        rule(format!("-A {RATE_CHAIN} -s {net} -j RETURN"));
    }
    let recent = format!("postern_ssh{}", family.suffix());
    rule(format!(
        "-A {RATE_CHAIN} -p tcp --dport {} -m recent --name {recent} --set --rsource",
        plan.ssh_port
    ));
    rule(format!(
        "-A {RATE_CHAIN} -p tcp --dport {} -m recent --name {recent} --update --seconds 10 --hitcount {} --rsource -j DROP",
        plan.ssh_port,
        plan.ssh_per_10s + 1
    ));
    for ports in port_lists(&plan.mail_ports) {
        rule(format!(
            "-A {RATE_CHAIN} -p tcp -m multiport --dports {ports} -m hashlimit --hashlimit-name postern_mail --hashlimit-mode srcip --hashlimit-above {}/sec --hashlimit-burst {} -j DROP",
            plan.mail_per_second, plan.mail_per_second
        ));
    }
    for ports in port_lists(&plan.http_ports) {
        rule(format!(
            "-A {RATE_CHAIN} -p tcp -m multiport --dports {ports} -m hashlimit --hashlimit-name postern_http --hashlimit-mode srcip --hashlimit-above {}/sec --hashlimit-burst {} -j DROP",
            plan.http_per_second, plan.http_burst
        ));
    }
    rule(format!("-A {RATE_CHAIN} -j RETURN"));
    rule("COMMIT".into());
    out
}

/// `ports` deduplicated, sorted, as comma lists of at most 15 (multiport's limit).
fn port_lists(ports: &[u16]) -> Vec<String> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    ports
        .chunks(15)
        .map(|c| {
            c.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn default_plan() -> Plan {
        Plan {
            ssh_port: 22,
            mail_ports: vec![25, 587, 465, 993, 4190],
            http_ports: vec![80, 443],
            ssh_per_10s: 5,
            mail_per_second: 50,
            http_per_second: 200,
            http_burst: 400,
            apps: Some(("10.77.0.0/16".parse().unwrap(), 500)),
            blocks: Vec::new(),
            lists: Vec::new(),
            bans: Vec::new(),
        }
    }

    fn custom_plan() -> Plan {
        Plan {
            ssh_port: 202,
            mail_ports: vec![25, 587],
            http_ports: vec![8443],
            ssh_per_10s: 3,
            mail_per_second: 20,
            http_per_second: 100,
            http_burst: 150,
            apps: None,
            blocks: vec![
                "192.0.2.0/24".parse().unwrap(),
                "198.51.100.7/32".parse().unwrap(),
                "2001:db8::/48".parse().unwrap(),
            ],
            lists: vec![(
                "country-xx".into(),
                vec![
                    "203.0.113.0/24".parse().unwrap(),
                    "2001:db8:ffff::/48".parse().unwrap(),
                ],
            )],
            bans: vec![
                ("10.9.8.7".parse().unwrap(), 3600),
                ("2001:db8::99".parse().unwrap(), 60),
            ],
        }
    }

    /// Compares with `golden/NAME`; `POSTERN_UPDATE_GOLDEN=1` rewrites the file.
    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/firewall/golden")
            .join(name);
        if std::env::var_os("POSTERN_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert_eq!(actual, expected, "{name} differs from {}", path.display());
    }

    #[test]
    fn default_configuration() {
        let plan = default_plan();
        golden("default.ipset", &render_sets(&plan));
        golden("default.v4", &render_rules(&plan, Family::V4));
        golden("default.v6", &render_rules(&plan, Family::V6));
    }

    #[test]
    fn ssh_moved_blocks_a_list_and_bans() {
        let plan = custom_plan();
        golden("custom.ipset", &render_sets(&plan));
        golden("custom.v4", &render_rules(&plan, Family::V4));
        golden("custom.v6", &render_rules(&plan, Family::V6));
    }

    #[test]
    fn more_than_fifteen_ports_are_split() {
        let ports: Vec<u16> = (1000..1020).collect();
        let lists = port_lists(&ports);
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].split(',').count(), 15);
        assert_eq!(lists[1], "1015,1016,1017,1018,1019");
    }
}
