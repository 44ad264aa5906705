//! The firewall, enforced for real inside network namespaces the test creates (never
//! the host's tables): allowed ports connect and others time out, SSH's new
//! connections are rate limited, blocks and block lists drop an address and
//! unblocking restores it, re-applying changes nothing and keeps an admin's rule
//! before ours. And automatic bans: failed IMAP logins past the threshold ban that
//! address at accept, while another address of the same client goes on.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tests::harness::{Server, Setup, ensure_tool, free_port};
use tests::netns::NetnsPair;

/// Accepts (and closes) connections on every port given, until killed.
const LISTENER: &str = r#"
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// For each `SRC:PORT`, connects from SRC to the server: open, refused or timeout.
const PROBE: &str = r#"
import socket, sys
server = sys.argv[1]
for spec in sys.argv[2:]:
    src, port = spec.rsplit(":", 1)
    try:
        socket.create_connection((server, int(port)), timeout=1, source_address=(src, 0)).close()
        print("open")
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print("refused")
"#;

fn probe(pair: &NetnsPair, specs: &[(&str, u16)]) -> Vec<String> {
    let specs: Vec<String> = specs.iter().map(|(s, p)| format!("{s}:{p}")).collect();
    let mut args = vec!["-c", PROBE, &pair.server];
    args.extend(specs.iter().map(String::as_str));
    let out = NetnsPair::exec(&pair.a, "python3", &args).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The host's own rules and sets, to prove they are never touched.
fn host_state() -> String {
    let mut out = String::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let o = Command::new(tool).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        out.extend(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n")),
        );
    }
    let o = Command::new("ipset").args(["list", "-n"]).output().unwrap();
    out.push_str(&String::from_utf8_lossy(&o.stdout));
    out
}

/// `iptables-save` inside `ns`, without comments and counters.
fn rules_in(ns: &str) -> String {
    let out = NetnsPair::exec(ns, "iptables-save", &[]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_string() + "\n")
        .collect()
}

fn postern_in(ns: &str, setup: &Setup, args: &[&str]) -> String {
    let bin = tests::harness::postern_bin().unwrap();
    let mut all = vec!["--config", setup.config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = NetnsPair::exec(ns, bin.to_str().unwrap(), &all).unwrap();
    assert!(
        out.status.success(),
        "postern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tools() {
    for (tool, package) in [
        ("iptables-restore", "iptables"),
        ("ipset", "ipset"),
        ("python3", "python3"),
    ] {
        ensure_tool(tool, package).unwrap();
    }
}

#[test]
fn rules_are_enforced_in_a_namespace_and_the_host_is_untouched() {
    tools();
    let host_before = host_state();
    let ssh = free_port().unwrap();
    let setup = Setup::quickstart(
        "admin@example.test",
        &format!("[firewall]\nssh_port = {ssh}\nssh_connections_per_10s = 5\n"),
    )
    .unwrap();
    let pair = NetnsPair::new(1).unwrap();
    let mail = setup.ports.smtp.port();
    let closed = free_port().unwrap();
    let listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.b,
            "python3",
            "-c",
            LISTENER,
            &pair.server,
        ])
        .args([mail, closed, ssh].map(|p| p.to_string()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut listener = Killed(listener);
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(listener.0.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    let (c1, c2) = (pair.client.as_str(), pair.client2.as_str());
    assert_eq!(probe(&pair, &[(c1, mail), (c1, closed)]), ["open", "open"]);

    // INPUT gets exactly one jump to our chain; an admin's rule inserted before it
    // afterwards stays before it when we apply again.
    let out = postern_in(&pair.b, &setup, &["firewall", "apply"]);
    assert!(out.starts_with("Applied"), "{out}");
    let custom = ["-I", "INPUT", "1", "-s", "10.250.250.250", "-j", "ACCEPT"];
    let inserted = NetnsPair::exec(&pair.b, "iptables", &custom).unwrap();
    assert!(inserted.status.success());
    postern_in(&pair.b, &setup, &["firewall", "apply"]);
    let applied = rules_in(&pair.b);
    let input: Vec<&str> = applied
        .lines()
        .filter(|l| l.starts_with("-A INPUT"))
        .collect();
    assert_eq!(
        input,
        [
            "-A INPUT -s 10.250.250.250/32 -j ACCEPT",
            "-A INPUT -j POSTERN"
        ],
        "{applied}"
    );
    assert!(applied.contains("-A POSTERN -p tcp -m conntrack --ctstate NEW -j POSTERN_RATELIMIT"));

    // Configured ports connect, others time out.
    assert_eq!(
        probe(&pair, &[(c1, mail), (c1, closed)]),
        ["open", "timeout"]
    );

    // SSH: the 6th new connection within 10 seconds is dropped.
    let ssh_probes: Vec<(&str, u16)> = (0..6).map(|_| (c1, ssh)).collect();
    assert_eq!(
        probe(&pair, &ssh_probes),
        ["open", "open", "open", "open", "open", "timeout"]
    );

    // A blocked address is dropped; the client's other address is not.
    let out = postern_in(&pair.b, &setup, &["firewall", "block", c1]);
    assert!(out.contains("re-applied"), "{out}");
    assert_eq!(probe(&pair, &[(c1, mail), (c2, mail)]), ["timeout", "open"]);
    postern_in(&pair.b, &setup, &["firewall", "unblock", c1]);
    assert_eq!(probe(&pair, &[(c1, mail)]), ["open"]);

    // A block list (a file of CIDRs) too, until it is dropped.
    let list = setup.dir.path().join("list.txt");
    std::fs::write(&list, format!("# test list\n{c1}/32\n2001:db8::/32 ; v6\n")).unwrap();
    postern_in(
        &pair.b,
        &setup,
        &[
            "firewall",
            "blocklist",
            "load",
            "test",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(probe(&pair, &[(c1, mail), (c2, mail)]), ["timeout", "open"]);
    postern_in(&pair.b, &setup, &["firewall", "blocklist", "drop", "test"]);
    assert_eq!(probe(&pair, &[(c1, mail)]), ["open"]);
    let sets = NetnsPair::exec(&pair.b, "ipset", &["list", "-n"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&sets.stdout).contains("postern_l_test"),
        "a dropped list's set is destroyed"
    );

    // Re-applying is idempotent and keeps the admin's rule first.
    let before = rules_in(&pair.b);
    postern_in(&pair.b, &setup, &["firewall", "apply"]);
    assert_eq!(rules_in(&pair.b), before);
    let show = postern_in(&pair.b, &setup, &["firewall", "show"]);
    assert!(
        show.starts_with("# firewall: applied and current"),
        "{show}"
    );

    // The activity log has every change.
    let log = setup.cli_ok(&["log"], None).unwrap();
    for action in [
        "firewall-apply",
        "firewall-block",
        "firewall-unblock",
        "blocklist-load",
        "blocklist-drop",
    ] {
        assert!(log.contains(action), "{action} in\n{log}");
    }
    drop(listener);
    drop(pair);
    assert_eq!(host_state(), host_before, "the host's rules changed");
}

/// IMAPS login attempts from SRC: for each password, a new connection; prints
/// `no` (refused login), `ok`, or `closed` (the connection was closed at once).
const LOGINS: &str = r#"
import imaplib, socket, ssl, sys
server, port, src, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class I(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        s = socket.create_connection((self.host, self.port), 5, source_address=(src, 0))
        return self.ssl_context.wrap_socket(s, server_hostname="mail.example.test")
for password in sys.argv[5:]:
    try:
        m = I(server, port, ssl_context=ctx)
    except (OSError, imaplib.IMAP4.abort) as e:
        print("closed"); continue
    try:
        m.login(user, password); print("ok"); m.logout()
    except imaplib.IMAP4.error:
        print("no")
"#;

#[test]
fn failed_logins_past_the_threshold_ban_the_address_at_accept() {
    tools();
    let mut setup = Setup::quickstart(
        "admin@example.test",
        "[firewall]\nban_after_failed_logins = 5\nban_hours = 1\n\n[auth]\nattempts_per_second = 1000\n",
    )
    .unwrap();
    let pair = NetnsPair::new(2).unwrap();
    // IMAPS on the namespace's address.
    let imaps = std::net::SocketAddr::new(pair.server.parse().unwrap(), setup.ports.imaps.port());
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replace(&setup.ports.imaps.to_string(), &imaps.to_string());
    std::fs::write(&setup.config, text).unwrap();
    setup.ports.imaps = imaps;
    let _server = Server::start_with(&setup.config, &["ip", "netns", "exec", &pair.b]).unwrap();

    let logins = |src: &str, passwords: &[&str]| -> Vec<String> {
        let port = imaps.port().to_string();
        let mut args = vec!["-c", LOGINS, &pair.server, &port, src, "admin@example.test"];
        args.extend_from_slice(passwords);
        let out = NetnsPair::exec(&pair.a, "python3", &args).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (c1, c2) = (pair.client.as_str(), pair.client2.as_str());
    let good = setup.password.clone();
    // Four failures: still let in.
    assert_eq!(logins(c1, &["bad1", "bad2", "bad3", "bad4"]), ["no"; 4]);
    assert_eq!(logins(c1, &[&good]), ["ok"]);
    // The fifth failure bans: the next connection is closed at accept, even with the
    // right password; the other address goes on.
    assert_eq!(logins(c1, &["bad5", &good]), ["no", "closed"]);
    assert_eq!(logins(c2, &[&good]), ["ok"]);
    let log = setup.cli_ok(&["log"], None).unwrap();
    let banned = log
        .lines()
        .find(|l| l.contains("ip-banned"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(banned.contains(c1), "{banned}");
    // The ban holds across a restart, until it is lifted.
    drop(_server);
    let _server = Server::start_with(&setup.config, &["ip", "netns", "exec", &pair.b]).unwrap();
    assert_eq!(logins(c1, &[&good]), ["closed"]);
    let out = setup.cli_ok(&["firewall", "unblock", c1], None).unwrap();
    assert!(out.contains("Lifted the ban"), "{out}");
    assert_eq!(logins(c1, &[&good]), ["ok"]);
    let _ = Duration::ZERO;
}
