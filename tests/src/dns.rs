//! An in-process authoritative DNS server on loopback, for tests.
//!
//! [`TestDns::start`] binds UDP and TCP on the same free port of 127.0.0.1 (synchronously, on the
//! caller's thread), then serves the given zones from hickory-server's in-memory zone handler on
//! a background thread that owns its own tokio runtime. It therefore works the same from a plain
//! `#[test]` and from inside a `#[tokio::test]`. Dropping the [`TestDns`] stops the server.
//!
//! Zone records are zone-file lines (RFC 1035 section 5), parsed by hickory-proto's zone-file
//! parser (`hickory_proto::serialize::txt::Parser`) with `$ORIGIN` set to the zone's origin and a
//! default `$TTL` of 300. Names under an origin that do not exist get NXDOMAIN; names outside
//! every zone get REFUSED.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use hickory_proto::rr::{LowerName, Name, RData, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::sync::oneshot;

/// TTL used for records given without one, and for synthesized SOA/NS records.
const DEFAULT_TTL: u32 = 300;

/// One authoritative zone: an origin and zone-file lines relative to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The zone's origin, e.g. `"test."` (a missing final dot is added).
    pub origin: String,
    /// Zone-file lines, with names relative to `origin` or absolute, e.g.
    /// `"example 300 IN MX 10 mail.example"` or `"@ 300 IN TXT \"v=spf1 mx -all\""`.
    pub records: Vec<String>,
}

impl Zone {
    /// An empty zone for `origin` (SOA and NS are synthesized at start if none are given).
    pub fn new(origin: &str) -> Zone {
        Zone {
            origin: origin.to_owned(),
            records: Vec::new(),
        }
    }

    /// Adds one zone-file line.
    #[must_use]
    pub fn record(mut self, line: &str) -> Zone {
        self.records.push(line.to_owned());
        self
    }
}

/// The standard test zones: `test.` (mail domain `example.test`) and the DNSBL zone
/// `dnsbl.test.`.
pub fn standard_zones() -> Vec<Zone> {
    let test = Zone::new("test.")
        .record("@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 300")
        .record("@ 300 IN NS ns1")
        .record("ns1 300 IN A 127.0.0.1")
        .record("example 300 IN A 127.0.0.1")
        .record("mail.example 300 IN A 127.0.0.1")
        .record("example 300 IN MX 10 mail.example.test.")
        .record("example 300 IN TXT \"v=spf1 a:mail.example.test -all\"")
        .record("_dmarc.example 300 IN TXT \"v=DMARC1; p=reject\"");
    let dnsbl = Zone::new("dnsbl.test.")
        .record("@ 60 IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 60")
        .record("@ 60 IN NS ns1.test.")
        .record("2.0.0.127 60 IN A 127.0.0.2")
        .record("2.0.0.127 60 IN TXT \"listed: test\"")
        // Spamhaus "query refused" return code.
        .record("10.0.0.127 60 IN A 127.255.255.254");
    vec![test, dnsbl]
}

/// A running loopback DNS server; dropping it stops the server.
pub struct TestDns {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDns").field("addr", &self.addr).finish()
    }
}

impl TestDns {
    /// Starts a server on 127.0.0.1:<free port>, UDP and TCP on the same port, serving `zones`.
    ///
    /// Returns once the sockets are bound and registered with the server, so queries sent after
    /// this returns are answered.
    pub fn start(zones: &[Zone]) -> anyhow::Result<TestDns> {
        let mut parsed = Vec::with_capacity(zones.len());
        for zone in zones {
            let (origin, records) =
                parse_zone(zone).with_context(|| format!("zone {:?}", zone.origin))?;
            if parsed.iter().any(|(o, _)| o == &origin) {
                bail!("zone {origin} given twice");
            }
            parsed.push((origin, records));
        }

        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr().context("UDP local_addr")?;
        udp.set_nonblocking(true).context("UDP set_nonblocking")?;
        tcp.set_nonblocking(true).context("TCP set_nonblocking")?;

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-dns-{}", addr.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!(e).context("building tokio runtime")));
                        return;
                    }
                };
                runtime.block_on(serve(parsed, udp, tcp, ready_tx, stop_rx));
            })
            .context("spawning the DNS server thread")?;

        let mut dns = TestDns {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(dns),
            Ok(Err(e)) => Err(e),
            Err(e) => {
                dns.shutdown();
                Err(anyhow!("DNS server thread did not become ready: {e}"))
            }
        }
    }

    /// The address the server listens on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs on the server thread's runtime until `stop` fires (or its sender is dropped).
async fn serve(
    zones: Vec<(Name, BTreeMap<RrKey, RecordSet>)>,
    udp: UdpSocket,
    tcp: TcpListener,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
    stop: oneshot::Receiver<()>,
) {
    let setup = async {
        let mut catalog = Catalog::new();
        for (origin, records) in zones {
            let handler: InMemoryZoneHandler = InMemoryZoneHandler::new(
                origin.clone(),
                records,
                ZoneType::Primary,
                AxfrPolicy::Deny,
            )
            .map_err(|e| anyhow!("loading zone {origin}: {e}"))?;
            let handler: Arc<dyn ZoneHandler> = Arc::new(handler);
            catalog.upsert(LowerName::new(&origin), vec![handler]);
        }
        let mut server = Server::new(catalog);
        server.register_socket(
            tokio::net::UdpSocket::from_std(udp).context("registering the UDP socket")?,
        );
        server.register_listener(
            tokio::net::TcpListener::from_std(tcp).context("registering the TCP listener")?,
            Duration::from_secs(10),
            64,
        );
        anyhow::Ok(server)
    };
    let mut server = match setup.await {
        Ok(server) => {
            let _ = ready.send(Ok(()));
            server
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // Either an explicit stop or the TestDns being dropped/forgotten ends the server.
    let _ = stop.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown_gracefully()).await;
}

/// Binds a UDP socket and a TCP listener on the same free loopback port.
fn bind_pair() -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..50 {
        let udp = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .context("binding a UDP socket on 127.0.0.1")?;
        let addr = udp.local_addr().context("UDP local_addr")?;
        match TcpListener::bind(addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(anyhow!(
        "no loopback port was free for both UDP and TCP: {last_error:?}"
    ))
}

/// Parses one zone with hickory's zone-file parser, checks it, and adds SOA/NS if missing.
fn parse_zone(zone: &Zone) -> anyhow::Result<(Name, BTreeMap<RrKey, RecordSet>)> {
    let mut origin = Name::from_ascii(&zone.origin).context("parsing the origin")?;
    origin.set_fqdn(true);

    let mut text = format!("$ORIGIN {origin}\n$TTL {DEFAULT_TTL}\n");
    for line in &zone.records {
        text.push_str(line);
        text.push('\n');
    }
    let (_, mut records) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|e| anyhow!("parsing the zone's records: {e}"))?;

    for (key, rrset) in &records {
        if !origin.zone_of(rrset.name()) {
            bail!("record {} is outside the zone {origin}", rrset.name());
        }
        for record in rrset.records_without_rrsigs() {
            if let RData::TXT(txt) = &record.data
                && let Some(long) = txt.txt_data.iter().find(|s| s.len() > 255)
            {
                bail!(
                    "TXT record {} has a {}-byte string; split it into quoted strings of at \
                     most 255 bytes",
                    key.name,
                    long.len()
                );
            }
        }
    }

    let origin_key = |rtype| RrKey::new(LowerName::new(&origin), rtype);
    let mut synthesized = String::new();
    if !records.contains_key(&origin_key(RecordType::SOA)) {
        synthesized.push_str(&format!(
            "@ {DEFAULT_TTL} IN SOA ns1 hostmaster 1 3600 600 86400 {DEFAULT_TTL}\n"
        ));
    }
    if !records.contains_key(&origin_key(RecordType::NS)) {
        synthesized.push_str(&format!("@ {DEFAULT_TTL} IN NS ns1\n"));
        let ns1 = Name::from_ascii("ns1")
            .and_then(|n| n.append_domain(&origin))
            .context("building the ns1 name")?;
        let ns1 = LowerName::new(&ns1);
        if !records.keys().any(|k| k.name == ns1) {
            synthesized.push_str(&format!("ns1 {DEFAULT_TTL} IN A 127.0.0.1\n"));
        }
    }
    if !synthesized.is_empty() {
        let text = format!("$ORIGIN {origin}\n{synthesized}");
        let (_, extra) = Parser::new(text, None, Some(origin.clone()))
            .parse()
            .map_err(|e| anyhow!("parsing the synthesized SOA/NS records: {e}"))?;
        for (key, rrset) in extra {
            records.entry(key).or_insert(rrset);
        }
    }
    Ok((origin, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesizes_soa_and_ns() {
        let (origin, records) =
            parse_zone(&Zone::new("x.test").record("a IN A 127.0.0.9")).unwrap();
        assert_eq!(origin.to_string(), "x.test.");
        let has = |name: &str, t| {
            records.contains_key(&RrKey::new(
                LowerName::new(&Name::from_ascii(name).unwrap()),
                t,
            ))
        };
        assert!(has("x.test.", RecordType::SOA));
        assert!(has("x.test.", RecordType::NS));
        assert!(has("ns1.x.test.", RecordType::A));
        assert!(has("a.x.test.", RecordType::A));
    }

    #[test]
    fn rejects_out_of_zone_and_long_strings() {
        assert!(parse_zone(&Zone::new("x.test.").record("a.other. 60 IN A 127.0.0.1")).is_err());
        let long = format!("a 60 IN TXT \"{}\"", "x".repeat(256));
        assert!(parse_zone(&Zone::new("x.test.").record(&long)).is_err());
        assert!(parse_zone(&Zone::new("x.test.").record("a 60 IN BOGUS 1")).is_err());
    }
}
