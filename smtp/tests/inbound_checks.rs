//! The MX's checks against a loopback authoritative DNS server (`tests::dns::TestDns`):
//! the DNS block list (listing, Spamhaus's refusal code, NXDOMAIN, trusted networks,
//! the cache, a dead server) and SPF/DKIM/DMARC with the Authentication-Results header
//! (Ed25519 and RSA signatures, a changed body, p=reject and p=quarantine, the time
//! budget). Only 127.0.0.0/8 is ever used: no traffic leaves the machine.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hickory_resolver::TokioResolver;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::generate::DkimKeyPair;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use smtp::inbound::auth_results::{AuthResult, DmarcPolicyAction, Input, Report, Verifier};
use smtp::inbound::dnsbl::{Dnsbl, Listing, reverse_name};
use tests::dns::{TestDns, Zone};

/// `test.` (the parent every DMARC tree walk reaches) with example.test (SPF allows
/// only 127.0.0.2, DMARC p=reject) and quarantine.test (same SPF, p=quarantine), plus
/// `extra` lines; and the block lists `dnsbl.test.` and `second.test.`.
fn zones(extra: &[String]) -> Vec<Zone> {
    let mut test = Zone::new("test.")
        .record("@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 300")
        .record("@ 300 IN NS ns1")
        .record("ns1 300 IN A 127.0.0.1")
        .record("example 300 IN A 127.0.0.1")
        .record("example 300 IN TXT \"v=spf1 ip4:127.0.0.2 -all\"")
        .record("_dmarc.example 300 IN TXT \"v=DMARC1; p=reject\"")
        .record("quarantine 300 IN TXT \"v=spf1 ip4:127.0.0.2 -all\"")
        .record("_dmarc.quarantine 300 IN TXT \"v=DMARC1; p=quarantine\"");
    for line in extra {
        test = test.record(line);
    }
    let v6 = reverse_name("::1".parse().unwrap(), "dnsbl.test");
    let dnsbl = Zone::new("dnsbl.test.")
        .record("@ 60 IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 60")
        .record("@ 60 IN NS ns1.test.")
        .record("2.0.0.127 120 IN A 127.0.0.2")
        .record("2.0.0.127 120 IN TXT \"listed: test\"")
        // Spamhaus's "query refused / open resolver" return code.
        .record("10.0.0.127 60 IN A 127.255.255.254")
        // Not a code we know.
        .record("11.0.0.127 60 IN A 127.0.1.1")
        .record(&format!("{v6} 60 IN A 127.0.0.4"));
    let second = Zone::new("second.test.")
        .record("@ 60 IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 60")
        .record("@ 60 IN NS ns1.test.")
        .record("2.0.0.127 60 IN A 127.0.0.3")
        .record("3.0.0.127 60 IN A 127.0.0.9")
        .record("3.0.0.127 60 IN TXT \"second says so\"");
    vec![test, dnsbl, second]
}

fn dns_config(addr: SocketAddr, timeout_seconds: u64, budget_seconds: u64) -> common::dns::Config {
    common::dns::Config {
        nameservers: vec![addr],
        timeout_seconds,
        budget_seconds,
    }
}

/// The resolver `[dns]` makes, but with hickory's own cache off, so a repeated answer
/// can only come from the DNSBL's cache.
fn uncached_resolver(addr: SocketAddr, timeout_seconds: u64) -> TokioResolver {
    let (config, mut options) =
        common::dns::resolver_config(&dns_config(addr, timeout_seconds, 10)).unwrap();
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .unwrap()
}

/// A UDP "DNS server" on loopback that never answers.
fn silent_server() -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn dnsbl_listed_refused_nxdomain_and_unknown_codes() {
    let dns = TestDns::start(&zones(&[])).unwrap();
    let resolver = common::dns::resolver(&dns_config(dns.addr(), 2, 10)).unwrap();
    let dnsbl = Dnsbl::new(resolver, vec!["dnsbl.test".into()], Vec::new());

    assert_eq!(
        dnsbl.check(ip("127.0.0.2")).await,
        Listing::Listed {
            zone: "dnsbl.test".into(),
            code: Ipv4Addr::new(127, 0, 0, 2),
            reason: Some("listed: test".into()),
        }
    );
    // 127.255.255.254: the list refuses us; that is not a listing.
    assert_eq!(dnsbl.check(ip("127.0.0.10")).await, Listing::NotListed);
    assert_eq!(dnsbl.check(ip("127.0.0.10")).await, Listing::NotListed);
    // NXDOMAIN.
    assert_eq!(dnsbl.check(ip("127.0.0.3")).await, Listing::NotListed);
    // 127.0.1.1 means nothing to us.
    assert_eq!(dnsbl.check(ip("127.0.0.11")).await, Listing::NotListed);
    // RFC 5782 §2.4 nibbles, and an IPv4 client seen on a dual-stack socket.
    assert!(matches!(
        dnsbl.check(ip("::1")).await,
        Listing::Listed { code, reason: None, .. } if code == Ipv4Addr::new(127, 0, 0, 4)
    ));
    assert!(matches!(
        dnsbl.check(ip("::ffff:127.0.0.2")).await,
        Listing::Listed { .. }
    ));
}

#[tokio::test]
async fn dnsbl_zones_are_asked_together_and_the_first_listing_wins() {
    let dns = TestDns::start(&zones(&[])).unwrap();
    let resolver = common::dns::resolver(&dns_config(dns.addr(), 2, 10)).unwrap();
    let dnsbl = Dnsbl::new(
        resolver,
        vec!["dnsbl.test".into(), "second.test.".into()],
        Vec::new(),
    );
    let Listing::Listed { zone, code, .. } = dnsbl.check(ip("127.0.0.2")).await else {
        panic!("listed by both")
    };
    assert_eq!(
        (zone.as_str(), code),
        ("dnsbl.test", Ipv4Addr::new(127, 0, 0, 2))
    );
    assert_eq!(
        dnsbl.check(ip("127.0.0.3")).await,
        Listing::Listed {
            zone: "second.test".into(),
            code: Ipv4Addr::new(127, 0, 0, 9),
            reason: Some("second says so".into()),
        }
    );
    assert_eq!(dnsbl.check(ip("127.0.0.4")).await, Listing::NotListed);
}

#[tokio::test]
async fn dnsbl_trusted_clients_are_never_looked_up() {
    let silent = silent_server();
    let resolver = common::dns::resolver(&dns_config(silent.local_addr().unwrap(), 5, 10)).unwrap();
    let dnsbl = Dnsbl::new(
        resolver,
        vec!["dnsbl.test".into()],
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
    );
    let start = Instant::now();
    assert_eq!(dnsbl.check(ip("127.0.0.2")).await, Listing::NotListed);
    assert_eq!(dnsbl.check(ip("::1")).await, Listing::NotListed);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let mut buf = [0u8; 512];
    assert_eq!(
        silent.recv_from(&mut buf).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "no query was sent"
    );
}

#[tokio::test]
async fn dnsbl_answers_are_cached() {
    let dns = TestDns::start(&zones(&[])).unwrap();
    let resolver = uncached_resolver(dns.addr(), 1);
    let dnsbl = Dnsbl::new(resolver.clone(), vec!["dnsbl.test".into()], Vec::new());
    let listed = dnsbl.check(ip("127.0.0.2")).await;
    assert!(matches!(listed, Listing::Listed { .. }), "{listed:?}");
    assert_eq!(dnsbl.check(ip("127.0.0.3")).await, Listing::NotListed);
    drop(dns);

    let start = Instant::now();
    assert_eq!(dnsbl.check(ip("127.0.0.2")).await, listed, "from the cache");
    assert_eq!(dnsbl.check(ip("127.0.0.3")).await, Listing::NotListed);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // Proof that the server is gone and hickory has nothing cached: a fresh checker on
    // the same resolver fails open.
    let fresh = Dnsbl::new(resolver, vec!["dnsbl.test".into()], Vec::new());
    assert_eq!(fresh.check(ip("127.0.0.2")).await, Listing::NotListed);
}

#[tokio::test]
async fn dnsbl_unreachable_server_fails_open_within_the_timeout() {
    let silent = silent_server();
    // timeout_seconds = 1, two attempts (common::dns).
    let resolver = common::dns::resolver(&dns_config(silent.local_addr().unwrap(), 1, 10)).unwrap();
    let dnsbl = Dnsbl::new(resolver, vec!["dnsbl.test".into()], Vec::new());
    let start = Instant::now();
    assert_eq!(dnsbl.check(ip("127.0.0.2")).await, Listing::NotListed);
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let mut buf = [0u8; 512];
    assert!(silent.recv_from(&mut buf).is_ok(), "it was asked");
}

/// TXT data as quoted strings of at most 255 bytes (RFC 1035 §3.3.14).
fn txt(text: &str) -> String {
    text.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// DER length octets.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=127 => vec![n as u8],
        128..=255 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

/// mail-auth's generator gives the RSA public key as PKCS#1; DKIM records publish
/// SubjectPublicKeyInfo (RFC 6376 §3.6.1): wrap it.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1 (rsaEncryption), NULL }
    let algorithm = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    bits.extend(der_len(pkcs1.len() + 1));
    bits.push(0);
    bits.extend_from_slice(pkcs1);
    let mut spki = vec![0x30];
    spki.extend(der_len(algorithm.len() + bits.len()));
    spki.extend_from_slice(&algorithm);
    spki.extend(bits);
    spki
}

const MESSAGE: &str = "From: Alice <alice@example.test>\r\n\
                       To: carol@example.test\r\n\
                       Subject: signed\r\n\
                       Date: Fri, 27 Nov 2026 01:00:00 +0000\r\n\
                       Message-ID: <1@example.test>\r\n\
                       \r\n\
                       The original body.\r\n";

/// `message` with a relaxed/relaxed DKIM-Signature of d=example.test, s=`selector`.
fn sign(key: impl SigningKey, selector: &str, message: &str) -> String {
    let signature = DkimSigner::from_key(key)
        .domain("example.test")
        .selector(selector)
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

struct Keys {
    ed25519: Ed25519Key,
    rsa: RsaKey<Sha256>,
    records: Vec<String>,
}

/// An Ed25519 key (selector `sel`) and an RSA-2048 key (selector `rsa`), with their
/// DKIM records for the test zone.
fn keys() -> Keys {
    let ed = DkimKeyPair::generate_ed25519().unwrap();
    let rsa = DkimKeyPair::generate_rsa(2048).unwrap();
    let rsa_spki = STANDARD.encode(spki_from_pkcs1(rsa.public_key()));
    assert!(rsa_spki.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
    let records = vec![
        format!(
            "sel._domainkey.example 300 IN TXT {}",
            txt(&format!(
                "v=DKIM1; k=ed25519; p={}",
                STANDARD.encode(ed.public_key())
            ))
        ),
        format!(
            "rsa._domainkey.example 300 IN TXT {}",
            txt(&format!("v=DKIM1; k=rsa; p={rsa_spki}"))
        ),
    ];
    assert!(records[1].contains("\" \""), "the RSA record is split");
    #[allow(deprecated)] // from_key_der needs rustls-pki-types, not a dependency here
    let rsa = RsaKey::<Sha256>::from_der(rsa.private_key()).unwrap();
    Keys {
        ed25519: Ed25519Key::from_pkcs8_der(ed.private_key()).unwrap(),
        rsa,
        records,
    }
}

/// The header unfolded to one line.
fn unfolded(report: &Report) -> String {
    report.header.trim_end().replace("\r\n", "")
}

fn input<'a>(client: &str, mail_from: &'a str, message: &'a str) -> Input<'a> {
    Input {
        client_ip: ip(client),
        helo: "mail.example.test",
        mail_from,
        message: message.as_bytes(),
        seal: None,
        body: None,
    }
}

#[tokio::test]
async fn dkim_ed25519_and_rsa_pass_and_a_changed_body_fails() {
    let keys = keys();
    let dns = TestDns::start(&zones(&keys.records)).unwrap();
    let verifier = Verifier::new(&dns_config(dns.addr(), 2, 10), "mx.example.test").unwrap();
    let signed = sign(keys.rsa, "rsa", &sign(keys.ed25519, "sel", MESSAGE));

    let report = verifier
        .verify(&input("127.0.0.2", "alice@example.test", &signed))
        .await;
    let header = unfolded(&report);
    assert!(
        report
            .header
            .starts_with("Authentication-Results: mx.example.test;\r\n\t"),
        "{}",
        report.header
    );
    assert!(report.header.ends_with("\r\n"));
    assert_eq!(report.dkim.len(), 2, "{header}");
    let algorithms: Vec<&str> = report.dkim.iter().map(|d| d.algorithm.as_str()).collect();
    assert_eq!(algorithms, ["rsa-sha256", "ed25519-sha256"]);
    for dkim in &report.dkim {
        assert_eq!(dkim.result, AuthResult::Pass, "{header}");
        assert_eq!(dkim.domain, "example.test");
        assert_eq!(dkim.header_b.len(), 8);
    }
    assert_eq!(
        header
            .matches("dkim=pass header.d=example.test header.s=")
            .count(),
        2,
        "{header}"
    );
    assert!(header.contains("header.s=sel header.b="), "{header}");
    assert!(header.contains("header.s=rsa header.b="), "{header}");
    assert!(
        header.contains("spf=pass smtp.mailfrom=alice@example.test;"),
        "{header}"
    );
    assert!(header.contains("arc=none;"), "{header}");
    assert!(
        header.contains("dmarc=pass (p=reject) header.from=example.test"),
        "{header}"
    );
    assert_eq!(report.dmarc_action(), DmarcPolicyAction::None);

    // The same message spooled in a file: the header in memory, the body hashed as it
    // streams from the file. Same verdicts, and a changed body still fails.
    for (text, expected) in [
        (signed.clone(), AuthResult::Pass),
        (
            signed.replace("The original body.", "The originaL body."),
            AuthResult::Fail,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spooled");
        std::fs::write(&path, text.as_bytes()).unwrap();
        let header_len = text.find("\r\n\r\n").unwrap() + 4;
        let rest = store::Body::Spooled(std::sync::Arc::new(store::Spooled {
            head: Vec::new(),
            file: std::sync::Arc::new(std::fs::File::open(&path).unwrap()),
            offset: header_len as u64,
            len: (text.len() - header_len) as u64,
            ascii: true,
        }));
        let mut spooled = input("127.0.0.2", "alice@example.test", &text[..header_len]);
        spooled.body = Some(&rest);
        let report = verifier.verify(&spooled).await;
        assert_eq!(report.dkim.len(), 2);
        assert!(
            report.dkim.iter().all(|d| d.result == expected),
            "{expected:?}: {}",
            report.header
        );
    }

    // One body byte changed: both signatures fail (mail-auth says neutral).
    let tampered = signed.replace("The original body.", "The originaL body.");
    let report = verifier
        .verify(&input("127.0.0.2", "alice@example.test", &tampered))
        .await;
    let header = unfolded(&report);
    assert!(
        report.dkim.iter().all(|d| d.result == AuthResult::Fail),
        "{header}"
    );
    assert_eq!(
        header
            .matches("dkim=fail (body hash did not verify) header.d=example.test")
            .count(),
        2,
        "{header}"
    );
    assert!(!header.contains("neutral"), "{header}");
    // SPF still aligns: DMARC passes on it.
    assert!(header.contains("dmarc=pass"), "{header}");

    // Unsigned: dkim=none.
    let report = verifier
        .verify(&input("127.0.0.2", "alice@example.test", MESSAGE))
        .await;
    assert!(report.dkim.is_empty());
    assert!(
        unfolded(&report).contains("dkim=none;"),
        "{}",
        report.header
    );
}

#[tokio::test]
async fn spf_and_dmarc_reject_and_quarantine() {
    let dns = TestDns::start(&zones(&[])).unwrap();
    let verifier = Verifier::new(&dns_config(dns.addr(), 2, 10), "mx.example.test").unwrap();

    let report = verifier
        .verify(&input("127.0.0.1", "alice@example.test", MESSAGE))
        .await;
    let header = unfolded(&report);
    assert_eq!(report.spf.result, AuthResult::Fail, "{header}");
    assert_eq!(report.dmarc_outcome.result, AuthResult::Fail, "{header}");
    assert!(
        header.contains("spf=fail smtp.mailfrom=alice@example.test"),
        "{header}"
    );
    assert!(
        header.contains("dmarc=fail (p=reject) header.from=example.test"),
        "{header}"
    );
    assert_eq!(report.dmarc_action(), DmarcPolicyAction::Reject);
    assert_eq!(report.dmarc, DmarcPolicyAction::Reject);
    assert_eq!(report.from_domain, "example.test");

    let report = verifier
        .verify(&input("127.0.0.2", "alice@example.test", MESSAGE))
        .await;
    let header = unfolded(&report);
    assert_eq!(report.spf.result, AuthResult::Pass, "{header}");
    assert_eq!(report.dmarc_outcome.result, AuthResult::Pass, "{header}");
    assert!(header.contains("spf=pass"), "{header}");
    assert!(header.contains("dmarc=pass"), "{header}");
    assert_eq!(report.dmarc_action(), DmarcPolicyAction::None);

    // The null sender is checked as postmaster@<HELO> (RFC 7208 §2.4): no SPF there.
    let report = verifier.verify(&input("127.0.0.1", "", MESSAGE)).await;
    assert_eq!(report.spf.mail_from, "postmaster@mail.example.test");
    assert_eq!(report.spf.result, AuthResult::None, "{}", report.header);

    let quarantined = "From: someone@quarantine.test\r\nTo: carol@example.test\r\n\
                       Subject: quarantine me\r\n\r\nx\r\n";
    let report = verifier
        .verify(&input("127.0.0.1", "someone@quarantine.test", quarantined))
        .await;
    let header = unfolded(&report);
    assert!(
        header.contains("dmarc=fail (p=quarantine) header.from=quarantine.test"),
        "{header}"
    );
    assert_eq!(report.dmarc_action(), DmarcPolicyAction::Quarantine);
}

#[tokio::test]
async fn a_silent_dns_server_costs_the_budget_and_gives_temperror() {
    let silent = silent_server();
    // Queries may take 5 s each; the budget of 1 s cuts them short.
    let verifier = Verifier::new(
        &dns_config(silent.local_addr().unwrap(), 5, 1),
        "mx.example.test",
    )
    .unwrap();
    let signed = sign(
        Ed25519Key::from_pkcs8_der(DkimKeyPair::generate_ed25519().unwrap().private_key()).unwrap(),
        "sel",
        MESSAGE,
    );
    let start = Instant::now();
    let report = verifier
        .verify(&input("127.0.0.2", "alice@example.test", &signed))
        .await;
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    let header = unfolded(&report);
    assert_eq!(report.spf.result, AuthResult::TempError, "{header}");
    assert_eq!(report.dkim.len(), 1);
    assert_eq!(report.dkim[0].result, AuthResult::TempError, "{header}");
    assert_eq!(
        report.dmarc_outcome.result,
        AuthResult::TempError,
        "{header}"
    );
    assert_eq!(report.dmarc_action(), DmarcPolicyAction::None);
    assert!(
        header.contains("spf=temperror (time budget exceeded)"),
        "{header}"
    );
    assert!(
        header.contains("dkim=temperror (time budget exceeded) header.d=example.test"),
        "{header}"
    );
    assert!(
        header.contains("dmarc=temperror (time budget exceeded) header.from=example.test"),
        "{header}"
    );
}
