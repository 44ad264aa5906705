//! ACME against Debian's pebble on loopback, validating for real: pebble resolves our
//! names through the test DNS and dials our HTTP and HTTPS listeners for HTTP-01 and
//! TLS-ALPN-01. Certificates are issued at start and served on HTTPS and the mail
//! listeners; a forced renewal swaps the certificate while a connection stays open;
//! a renewal interrupted between its writes leaves a matching pair the server starts
//! with; a failing order keeps the old certificate and mails the admins.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tests::ca::TestCa;
use tests::dns::{TestDns, standard_zones};
use tests::harness::{Setup, ensure_tool, free_port, python};

const NAMES: [&str; 4] = [
    "mail.example.test",
    "my.example.test",
    "mta-sts.example.test",
    "autoconfig.example.test",
];

/// pebble, stopped with SIGTERM when dropped.
struct Pebble {
    child: Child,
    directory: String,
    /// Its issuing root (changes with every start).
    root: PathBuf,
    log: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn start_pebble(dir: &Path, dns: &TestDns, http_port: u16, tls_port: u16) -> Pebble {
    let pebble = ensure_tool("pebble", "pebble").unwrap();
    let curl = ensure_tool("curl", "curl").unwrap();
    // pebble ships no certificate for its own HTTPS: one from a test CA.
    let ca = TestCa::new(dir).unwrap();
    ca.issue(dir, "pebble", &["localhost", "127.0.0.1"])
        .unwrap();
    let (port, management) = (free_port().unwrap(), free_port().unwrap());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("pebble.pem"),
        "privateKey": dir.join("pebble.key"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = dir.join("pebble.log");
    let child = Command::new(pebble)
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &dns.addr().to_string()])
        // Deterministic: no nonce rejections, no reused authorizations, no sleeps.
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .env("PEBBLE_VA_NOSLEEP", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let directory = format!("https://127.0.0.1:{port}/dir");
    let root = dir.join("pebble-root.pem");
    let mut pebble = Pebble {
        child,
        directory,
        root,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(&curl)
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(dir.join("ca.pem"))
            .args(["-o"])
            .arg(&pebble.root)
            .arg(format!("https://127.0.0.1:{management}/roots/0"))
            .status()
            .unwrap();
        if out.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pebble did not start: {}",
            std::fs::read_to_string(&pebble.log).unwrap_or_default()
        );
        if let Some(status) = pebble.child.try_wait().unwrap() {
            panic!(
                "pebble exited ({status}): {}",
                std::fs::read_to_string(&pebble.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    pebble
}

/// The test zones, with every name we get a certificate for on 127.0.0.1.
fn zones() -> Vec<tests::dns::Zone> {
    let mut zones = standard_zones();
    for label in ["my.example", "mta-sts.example", "autoconfig.example"] {
        zones[0] = zones[0]
            .clone()
            .record(&format!("{label} 300 IN A 127.0.0.1"));
    }
    zones
}

fn acme_config(dns: &TestDns, pebble: &Pebble, dir: &Path, challenge: &str) -> String {
    format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 1\n\n[acme]\ndirectory = \"{}\"\nemail = \"admin@example.test\"\nca_file = \"{}\"\nchallenge = \"{challenge}\"\n",
        dns.addr(),
        pebble.directory,
        dir.join("ca.pem").display()
    )
}

/// SHA-256 of the certificate the TLS listener at `port` serves for `name`, verified
/// against `root` with the host name checked (so the whole chain must be sent).
const FINGERPRINT: &str = r#"
import hashlib, socket, ssl, sys
port, root = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=root)
for name in sys.argv[3:]:
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=name) as s:
        print(name, hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())
"#;

fn fingerprints(port: u16, root: &Path, names: &[&str]) -> Vec<(String, String)> {
    let mut args = vec![port.to_string(), root.display().to_string()];
    args.extend(names.iter().map(|n| n.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(FINGERPRINT, &args).unwrap();
    assert!(
        out.status.success(),
        "TLS to port {port} for {names:?} against pebble's root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, f)| (n.to_string(), f.to_string()))
        .collect()
}

/// An IMAPS connection held open across a renewal: prints the certificate's
/// fingerprint and the greeting, waits for a line on stdin, then proves the old
/// connection still works (NOOP) and prints the fingerprint a new connection gets.
const HELD_OPEN: &str = r#"
import hashlib, socket, ssl, sys
port, root, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=root)
def connect():
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=name)
def fp(s):
    return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
old = connect()
f = old.makefile("rb")
print("first", fp(old), f.readline().decode().split()[1], flush=True)
sys.stdin.readline()
old.sendall(b"a1 NOOP\r\n")
while True:
    line = f.readline().decode()
    if line.startswith("a1 "):
        print("noop", line.split()[1], flush=True)
        break
new = connect()
print("second", fp(new), flush=True)
"#;

fn wait_issued(setup: &Setup, names: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = setup.cli_ok(&["acme", "status"], None).unwrap();
        let issued = names.iter().all(|n| {
            status
                .lines()
                .any(|l| l.starts_with(&format!("{n}: expires")) && l.contains("Pebble"))
        });
        if issued {
            return status;
        }
        assert!(!status.contains("failed"), "an order failed:\n{status}");
        assert!(
            Instant::now() < deadline,
            "certificates not issued in time:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn certificates_are_issued_renewed_in_place_and_failures_are_reported() {
    ensure_tool("openssl", "openssl").unwrap();
    let mut setup = Setup::quickstart("admin@example.test", "").unwrap();
    let work = tempfile::tempdir().unwrap();
    let dns = TestDns::start(&zones()).unwrap();
    let pebble = start_pebble(
        work.path(),
        &dns,
        setup.ports.http.port(),
        setup.ports.https.port(),
    );

    // 1. TLS-ALPN-01: every name gets a certificate at start.
    setup
        .write_config(&acme_config(&dns, &pebble, work.path(), "tls-alpn-01"))
        .unwrap();
    let mut server = setup.serve().unwrap();
    let status = wait_issued(&setup, &NAMES);
    server
        .wait_for_log("TLS-ALPN-01 challenge answered", Duration::from_secs(1))
        .unwrap();
    assert!(!server.log().contains("HTTP-01 challenge answered"));
    // Served by name on HTTPS, chain and host name verified against pebble's root...
    let https = setup.ports.https.port();
    let issued = fingerprints(https, &pebble.root, &NAMES);
    assert_eq!(issued.len(), 4, "{status}");
    let openssl = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{https}")])
        .args(["-servername", "my.example.test", "-verify_hostname"])
        .args(["my.example.test", "-verify_return_error", "-CAfile"])
        .arg(&pebble.root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&openssl.stdout);
    assert!(
        openssl.status.success() && text.contains("Verify return code: 0 (ok)"),
        "openssl s_client: {text}{}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    // ...and on the mail listeners (the host name's is the default pair).
    let imaps = setup.ports.imaps.port();
    let mail = fingerprints(imaps, &pebble.root, &["mail.example.test"]);
    assert_eq!(mail[0], issued[0]);
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert_eq!(log.matches("acme-issued").count(), 4, "{log}");
    server.stop(Duration::from_secs(10)).unwrap();

    // 2. HTTP-01, after a restart: nothing is due, so nothing is ordered; a forced
    // renewal swaps the certificate while an IMAPS connection stays open.
    setup
        .write_config(&acme_config(&dns, &pebble, work.path(), "http-01"))
        .unwrap();
    let mut server = setup.serve().unwrap();
    let python3 = ensure_tool("python3", "python3").unwrap();
    let mut held = Command::new(python3)
        .args(["-c", HELD_OPEN, &imaps.to_string()])
        .arg(&pebble.root)
        .arg("mail.example.test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(held.stdout.take().unwrap()).lines();
    let next = |lines: &mut std::io::Lines<BufReader<ChildStdout>>| lines.next().unwrap().unwrap();
    let first = next(&mut lines);
    assert_eq!(first, format!("first {} OK", mail[0].1), "{first}");
    let renewed = setup
        .cli_ok(&["acme", "renew", "--force", "mail.example.test"], None)
        .unwrap();
    assert!(
        renewed.starts_with("mail.example.test: issued"),
        "{renewed}"
    );
    server
        .wait_for_log("HTTP-01 challenge answered", Duration::from_secs(1))
        .unwrap();
    writeln!(held.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(next(&mut lines), "noop OK");
    let second = next(&mut lines);
    let new_fp = second.strip_prefix("second ").unwrap();
    assert_ne!(
        new_fp, mail[0].1,
        "the renewal did not swap the certificate"
    );
    assert!(held.wait().unwrap().success());
    // Only the forced name was ordered.
    assert_eq!(server.log().matches("certificate installed").count(), 1);
    assert_eq!(
        fingerprints(https, &pebble.root, &NAMES[1..]),
        issued[1..].to_vec()
    );

    // An interrupted renewal (the certificate file cannot be replaced, as if the
    // server died between writes): the pair on disk still matches, and the server
    // starts again with the certificate it had.
    let pair = setup.data_dir.join("tls/cert.pem");
    let chattr = |flag: &str| {
        let status = Command::new(ensure_tool("chattr", "e2fsprogs").unwrap())
            .arg(flag)
            .arg(&pair)
            .status()
            .unwrap();
        assert!(status.success(), "chattr {flag}");
    };
    chattr("+i");
    let out = setup
        .cli(&["acme", "renew", "--force", "mail.example.test"], None)
        .unwrap();
    chattr("-i");
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    server.stop(Duration::from_secs(10)).unwrap();
    let server = setup.serve().unwrap();
    assert_eq!(
        fingerprints(imaps, &pebble.root, &["mail.example.test"]),
        vec![("mail.example.test".to_string(), new_fp.to_string())]
    );
    drop(server);

    // 3. A failing order: pebble's HTTP-01 port no longer reaches us. The old
    // certificate stays, the command fails naming the host, the activity log says
    // so and every admin gets a mail naming the host and the error.
    setup.ports.http = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    setup
        .write_config(&acme_config(&dns, &pebble, work.path(), "http-01"))
        .unwrap();
    let _server = setup.serve().unwrap();
    let out = setup
        .cli(&["acme", "renew", "--force", "my.example.test"], None)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("my.example.test"), "{err}");
    assert_eq!(
        fingerprints(https, &pebble.root, &["my.example.test"]),
        vec![issued[1].clone()]
    );
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(log.contains("acme-failed"), "{log}");
    let inbox = setup
        .cli_ok(&["mail", "list", "admin@example.test"], None)
        .unwrap();
    let line = inbox
        .lines()
        .find(|l| l.contains("Certificate for my.example.test could not be renewed"))
        .unwrap_or_else(|| panic!("no notice in the admin's INBOX:\n{inbox}"));
    let uid = line.split_whitespace().next().unwrap();
    let notice = setup
        .cli_ok(&["mail", "show", "admin@example.test", uid], None)
        .unwrap();
    assert!(notice.contains("my.example.test"), "{notice}");
    assert!(
        notice.contains("connection") || notice.contains("Connection"),
        "the notice names the error:\n{notice}"
    );
    let status = setup.cli_ok(&["acme", "status"], None).unwrap();
    assert!(
        status.contains("failed 1 time(s)"),
        "the status shows the failure:\n{status}"
    );
}
