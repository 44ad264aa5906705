//! The DNS setup wizard, black-box: `postern dns check` against the loopback test DNS
//! (zone `test.`: example.test's MX is right, its SPF record is not ours, its DKIM keys
//! are not published), then with the records published as `postern dns records` says.
#![allow(clippy::unwrap_used)]

use tests::dns::{TestDns, Zone, standard_zones};
use tests::harness::Setup;

/// The verdict line of the first record of `rtype` whose owner starts with `owner`.
fn verdict<'a>(out: &'a str, rtype: &str, owner: &str) -> &'a str {
    out.lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            let _verdict = words.next();
            words.next() == Some(rtype) && words.next().is_some_and(|o| o.starts_with(owner))
        })
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {rtype} {owner} in:\n{out}"))
}

#[test]
fn dns_check_reports_ok_missing_and_wrong_records() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let out = setup
        .cli_ok(&["dns", "check", "example.test"], None)
        .unwrap();
    assert_eq!(verdict(&out, "MX", "example.test."), "ok", "{out}");
    assert_eq!(verdict(&out, "TXT", "example.test."), "wrong", "{out}");
    assert!(
        out.contains("found:   v=spf1 a:mail.example.test -all"),
        "{out}"
    );
    assert!(
        out.contains("publish: example.test. 3600 IN TXT \"v=spf1 mx -all\""),
        "{out}"
    );
    assert_eq!(verdict(&out, "TXT", "_dmarc."), "wrong", "{out}");
    let records = setup
        .cli_ok(&["dns", "records", "example.test"], None)
        .unwrap();
    let dkim: Vec<&str> = records
        .lines()
        .filter(|l| l.contains("._domainkey."))
        .collect();
    assert_eq!(dkim.len(), 2, "{records}");
    for line in &dkim {
        let owner = line.split(' ').next().unwrap();
        assert_eq!(verdict(&out, "TXT", owner), "missing", "{out}");
    }
    assert!(out.contains(" missing, "), "{out}");

    // Publish everything `dns records` prints (owners relative to the zone `test.`):
    // every record is then ok.
    let mut zone = Zone::new("test.")
        .record("@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 300")
        .record("@ 300 IN NS ns1")
        .record("ns1 300 IN A 127.0.0.1")
        .record("mail.example 300 IN A 127.0.0.1");
    for line in records.lines() {
        let (owner, rest) = line.split_once(' ').unwrap();
        let relative = owner.trim_end_matches(".test.");
        zone = zone.record(&format!("{relative} {rest}"));
    }
    let dns = TestDns::start(&[zone, standard_zones().remove(1)]).unwrap();
    let mut setup = setup;
    setup
        .write_config(&format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 1\n",
            dns.addr()
        ))
        .unwrap();
    let out = setup
        .cli_ok(&["dns", "check", "example.test"], None)
        .unwrap();
    let n = records.lines().count();
    assert!(
        out.contains(&format!("{n} ok, 0 missing, 0 wrong")),
        "{out}"
    );
}
