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

/// A resolver that never answers: UDP datagrams are read and dropped, TCP connections
/// accepted and left waiting. Prints its port, then runs until killed.
const SILENT_DNS: &str = r#"
import socket, threading
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
port = u.getsockname()[1]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", port)); t.listen(64)
held = []
def tcp():
    while True:
        held.append(t.accept()[0])
threading.Thread(target=tcp, daemon=True).start()
print(port, flush=True)
while True:
    u.recvfrom(4096)
"#;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_report_answers_in_seconds_when_the_resolver_does_not() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let python = tests::harness::ensure_tool("python3", "python3").unwrap();
    let mut dns = Killed(
        Command::new(python)
            .args(["-c", SILENT_DNS])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut port = String::new();
    BufReader::new(dns.0.stdout.as_mut().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim();
    let mut setup = Setup::quickstart("admin@example.test", "").unwrap();
    setup
        .cli_ok(&["domain", "add", "example.org"], None)
        .unwrap();
    setup
        .write_config(&format!(
            "[dns]\nnameservers = [\"127.0.0.1:{port}\"]\ntimeout_seconds = 5\n\n[spam]\ndnsbl = [\"dnsbl.test\", \"other.test\"]\n"
        ))
        .unwrap();
    let _server = setup.serve().unwrap();
    let sshd = setup.dir.path().join("sshd_config");
    std::fs::write(&sshd, "PasswordAuthentication no\n").unwrap();
    let start = Instant::now();
    let mut child = Killed(
        Command::new(tests::harness::postern_bin().unwrap())
            .arg("--config")
            .arg(&setup.config)
            .args(["security", "check", "--sshd-config"])
            .arg(&sshd)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The first lines (what is known without the network) come at once; the whole
    // report within its time budget, however many lookups hang.
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.push((start.elapsed(), line));
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "security check still silent after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    let lines = reader.join().unwrap();
    let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert!(took < Duration::from_secs(20), "took {took:?}:\n{text}");
    let (first_at, first) = &lines[0];
    assert!(
        first.contains("ssh: password authentication is off"),
        "{text}"
    );
    assert!(
        *first_at < Duration::from_secs(5),
        "first line after {first_at:?}"
    );
    for needle in [
        "dns example.test:",
        "dns example.org:",
        "dnsbl dnsbl.test:",
        "dnsbl other.test:",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"));
        assert!(line.starts_with("warn"), "{line}");
    }
    assert!(text.lines().last().unwrap().ends_with("warnings"), "{text}");
    let _ = &mut dns;
}
