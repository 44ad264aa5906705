//! `postern security check` against a running server: an sshd_config that allows
//! passwords and root on port 22, the firewall not applied, the self-signed
//! certificate, the test zone's DNS records, one reachable and one unknown DNSBL zone,
//! and the admin's strong hash; each judged ok or warn with its fix.
#![allow(clippy::unwrap_used)]

use tests::harness::Setup;

#[test]
fn the_report_names_each_problem_and_its_fix() {
    let setup = Setup::quickstart(
        "admin@example.test",
        "[spam]\ndnsbl = [\"dnsbl.test\", \"nowhere.test\"]\n",
    )
    .unwrap();
    let _server = setup.serve().unwrap();
    let sshd = setup.dir.path().join("sshd_config");
    std::fs::write(
        &sshd,
        "# test\nPasswordAuthentication yes\nPermitRootLogin yes\n",
    )
    .unwrap();
    let report = setup
        .cli_ok(
            &["security", "check", "--sshd-config", sshd.to_str().unwrap()],
            None,
        )
        .unwrap();
    let line = |needle: &str| -> &str {
        report
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{report}"))
    };
    assert!(line("password authentication is on").starts_with("warn"));
    assert!(line("root may log in with a password").starts_with("warn"));
    assert!(line("listens on port 22").starts_with("warn"));
    assert!(report.contains("fix: set `Port 202` in sshd_config and `[firewall] ssh_port = 202`"));
    assert!(line("firewall: our chains are not in the tables").starts_with("warn"));
    assert!(line("certificate default: self-signed").starts_with("warn"));
    // The test zone publishes the MX as expected, not the MTA-STS record.
    assert!(!report.contains("example.test. MX is"), "{report}");
    assert!(line("_mta-sts.example.test. TXT is missing").starts_with("warn"));
    assert!(line("dnsbl dnsbl.test: answers").starts_with("ok"));
    assert!(line("dnsbl nowhere.test: not reachable").starts_with("warn"));
    assert!(line("admin accounts: every password hash is argon2id").starts_with("ok"));
    let summary = report.lines().last().unwrap();
    assert!(summary.ends_with("warnings"), "{summary}");

    // With passwords off, root by key only and SSH on 202, SSH is fine.
    std::fs::write(
        &sshd,
        "PasswordAuthentication no\nPermitRootLogin prohibit-password\nPort 202\n",
    )
    .unwrap();
    let report = setup
        .cli_ok(
            &["security", "check", "--sshd-config", sshd.to_str().unwrap()],
            None,
        )
        .unwrap();
    assert!(line_ok(&report, "ssh: password authentication is off"));
    assert!(line_ok(&report, "ssh: listens on [202]"));
    // ...but the firewall would lock it out: its SSH port is still 22.
    assert!(report.contains("`[firewall] ssh_port` is 22, but sshd listens on [202]"));
}

fn line_ok(report: &str, needle: &str) -> bool {
    report
        .lines()
        .any(|l| l.starts_with("ok") && l.contains(needle))
}
