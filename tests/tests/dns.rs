//! Black-box checks of `tests::dns::TestDns` with somebody else's clients: `dig` (BIND) over UDP
//! and TCP, and hickory-resolver pointed at the server alone.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;

use tests::dns::{TestDns, Zone, standard_zones};

/// Finds `dig`, installing `bind9-dnsutils` once if it is missing. Panics (never skips) if that
/// fails.
fn dig_path() -> &'static str {
    static DIG: OnceLock<String> = OnceLock::new();
    DIG.get_or_init(|| {
        tests::harness::ensure_tool("dig", "bind9-dnsutils")
            .expect("dig is needed")
            .to_string_lossy()
            .into_owned()
    })
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Udp,
    Tcp,
}

struct DigAnswer {
    status: String,
    /// `+short`-style rdata of the answer section (one entry per record).
    answers: Vec<String>,
    full: String,
}

/// Runs `dig` against `server` and parses its header status and answer section.
fn dig(server: SocketAddr, transport: Transport, name: &str, rtype: &str) -> DigAnswer {
    let mut cmd = Command::new(dig_path());
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+time=2", "+tries=2", "+norecurse", "+noquestion"])
        .args(["+noauthority", "+noadditional", "+nostats", "+nocmd"]);
    if let Transport::Tcp = transport {
        cmd.arg("+tcp");
    }
    cmd.args([name, rtype]);
    let out = cmd.output().expect("running dig");
    let full = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig {name} {rtype} over {transport:?} failed: {}\n{full}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = full
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output:\n{full}"))
        .to_owned();
    // Answer lines: "name. TTL IN TYPE rdata..."
    let answers = full
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.len() >= 5 && fields[3].eq_ignore_ascii_case(rtype))
                .then(|| fields[4..].join(" "))
        })
        .collect();
    DigAnswer {
        status,
        answers,
        full,
    }
}

/// A 400-byte TXT value published as two quoted strings (as a DKIM key would be).
fn long_txt_value() -> String {
    (0..400).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

fn zones_with_long_txt() -> Vec<Zone> {
    let value = long_txt_value();
    let (first, second) = value.split_at(200);
    let mut zones = standard_zones();
    zones[0] = zones[0].clone().record(&format!(
        "sel._domainkey.example 300 IN TXT \"{first}\" \"{second}\""
    ));
    zones
}

/// dig prints each string of a TXT record quoted and separated by a space.
fn joined_txt(rdata: &str) -> String {
    rdata
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

fn check_with_dig(transport: Transport) {
    let dns = TestDns::start(&zones_with_long_txt()).expect("starting TestDns");
    let addr = dns.addr();
    assert!(addr.ip().is_loopback());

    let mx = dig(addr, transport, "example.test", "MX");
    assert_eq!(mx.status, "NOERROR", "{}", mx.full);
    assert_eq!(mx.answers, ["10 mail.example.test."], "{}", mx.full);
    assert!(
        mx.full.contains("flags: qr aa"),
        "not authoritative:\n{}",
        mx.full
    );

    let a = dig(addr, transport, "mail.example.test", "A");
    assert_eq!(a.status, "NOERROR", "{}", a.full);
    assert_eq!(a.answers, ["127.0.0.1"], "{}", a.full);

    let spf = dig(addr, transport, "example.test", "TXT");
    assert_eq!(
        spf.answers,
        ["\"v=spf1 a:mail.example.test -all\""],
        "{}",
        spf.full
    );

    let dmarc = dig(addr, transport, "_dmarc.example.test", "TXT");
    assert_eq!(dmarc.answers, ["\"v=DMARC1; p=reject\""], "{}", dmarc.full);

    let long = dig(addr, transport, "sel._domainkey.example.test", "TXT");
    assert_eq!(long.status, "NOERROR", "{}", long.full);
    assert_eq!(long.answers.len(), 1, "{}", long.full);
    assert_eq!(
        long.answers[0].matches('"').count(),
        4,
        "expected two strings:\n{}",
        long.full
    );
    assert_eq!(
        joined_txt(&long.answers[0]),
        long_txt_value(),
        "{}",
        long.full
    );

    let nx = dig(addr, transport, "_dmarc.test", "TXT");
    assert_eq!(nx.status, "NXDOMAIN", "{}", nx.full);
    assert!(nx.answers.is_empty(), "{}", nx.full);

    let nx = dig(addr, transport, "3.0.0.127.dnsbl.test", "A");
    assert_eq!(nx.status, "NXDOMAIN", "{}", nx.full);

    let refused = dig(addr, transport, "example.com", "A");
    assert_eq!(refused.status, "REFUSED", "{}", refused.full);

    let listed = dig(addr, transport, "2.0.0.127.dnsbl.test", "A");
    assert_eq!(listed.status, "NOERROR", "{}", listed.full);
    assert_eq!(listed.answers, ["127.0.0.2"], "{}", listed.full);
    let reason = dig(addr, transport, "2.0.0.127.dnsbl.test", "TXT");
    assert_eq!(reason.answers, ["\"listed: test\""], "{}", reason.full);
    let refused_code = dig(addr, transport, "10.0.0.127.dnsbl.test", "A");
    assert_eq!(
        refused_code.answers,
        ["127.255.255.254"],
        "{}",
        refused_code.full
    );

    let soa = dig(addr, transport, "test", "SOA");
    assert_eq!(soa.status, "NOERROR", "{}", soa.full);
    assert_eq!(soa.answers.len(), 1, "{}", soa.full);
}

#[test]
fn dig_over_udp() {
    check_with_dig(Transport::Udp);
}

#[test]
fn dig_over_tcp() {
    check_with_dig(Transport::Tcp);
}

#[test]
fn synthesized_soa_and_ns_and_drop_stops_server() {
    let dns = TestDns::start(&[Zone::new("other.test.").record("host IN A 192.0.2.7")]).unwrap();
    let addr = dns.addr();
    let soa = dig(addr, Transport::Udp, "other.test", "SOA");
    assert_eq!(soa.status, "NOERROR", "{}", soa.full);
    assert_eq!(soa.answers.len(), 1, "{}", soa.full);
    let ns = dig(addr, Transport::Tcp, "other.test", "NS");
    assert_eq!(ns.answers, ["ns1.other.test."], "{}", ns.full);
    let host = dig(addr, Transport::Udp, "host.other.test", "A");
    assert_eq!(host.answers, ["192.0.2.7"], "{}", host.full);
    drop(dns);
    // After drop the port is closed: a TCP connection is refused.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn bad_zone_is_an_error() {
    let err = TestDns::start(&[Zone::new("bad.test.").record("x 60 IN A not-an-ip")]).unwrap_err();
    assert!(format!("{err:#}").contains("bad.test"), "{err:#}");
}

#[tokio::test]
async fn hickory_resolver_pointed_at_it() {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::proto::rr::RData;
    use hickory_resolver::{Resolver, TokioResolver};

    // Started from inside a tokio runtime: TestDns must not use (or block) the caller's runtime.
    let dns = TestDns::start(&standard_zones()).unwrap();
    let mut ns = NameServerConfig::udp_and_tcp(dns.addr().ip());
    for conn in &mut ns.connections {
        conn.port = dns.addr().port();
    }
    let resolver: TokioResolver = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .build()
    .unwrap();

    let mx = resolver.mx_lookup("example.test.").await.unwrap();
    let exchanges: Vec<String> = mx
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some(format!("{} {}", mx.preference, mx.exchange)),
            _ => None,
        })
        .collect();
    assert_eq!(exchanges, ["10 mail.example.test."]);

    let listed = resolver.ipv4_lookup("2.0.0.127.dnsbl.test.").await.unwrap();
    let ips: Vec<String> = listed
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(ips, ["127.0.0.2"]);

    // NXDOMAIN comes back as an error, not as an empty answer.
    assert!(resolver.txt_lookup("_dmarc.test.").await.is_err());
}
