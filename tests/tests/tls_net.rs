//! TLS and connection handling of the running server: SIGHUP certificate reload without
//! dropping connections, SNI, per-IP connection caps with the protocol's reply.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use nix::sys::signal::Signal;
use tests::harness::{Setup, ensure_tool, python};

const ADMIN: &str = "admin@example.test";

/// Prints the SHA-256 of the certificate served for each SNI name given ("-": none),
/// then, if asked, holds one connection across a pause file and checks it still works.
const PROBE: &str = r#"
import hashlib, socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for name in sys.argv[2:]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=None if name == "-" else name) as t:
            print(hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest())
"#;

fn served(port: u16, names: &[&str]) -> Vec<String> {
    let mut args = vec![port.to_string()];
    args.extend(names.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(PROBE, &args).unwrap();
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

fn file_fingerprint(pem_path: &std::path::Path) -> String {
    // The first certificate of the file (the key may follow it).
    let script = "import hashlib, ssl, sys; t = open(sys.argv[1]).read(); e = '-----END CERTIFICATE-----'; print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(t[:t.index(e) + len(e)] + '\\n')).hexdigest())";
    let out = python(script, &[&pem_path.to_string_lossy()]).unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn sighup_reloads_certificates_keeps_connections_and_sni_picks_the_pair() {
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    let other = Setup::quickstart("admin@other.test", "").unwrap();
    let mut server = setup.serve().unwrap();
    let port = setup.ports.imaps.port();
    let tls = setup.data_dir.join("tls");
    let first = file_fingerprint(&tls.join("cert.pem"));
    assert_eq!(served(port, &["-"]), std::slice::from_ref(&first));

    // A client connected before the reload keeps working after it.
    let held = r#"
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
time.sleep(float(sys.argv[2]))
print(m.noop()[0])
"#;
    let port_s = port.to_string();
    let client = std::thread::spawn(move || python(held, &[&port_s, "2.5"]).unwrap());
    std::thread::sleep(Duration::from_millis(700));

    // New default pair, and an SNI pair for another name.
    let other_tls = other.data_dir.join("tls");
    std::fs::copy(other_tls.join("cert.pem"), tls.join("cert.pem")).unwrap();
    let second = file_fingerprint(&tls.join("cert.pem"));
    assert_ne!(first, second);
    std::fs::create_dir_all(tls.join("sni")).unwrap();
    let third = Setup::quickstart("admin@third.test", "").unwrap();
    let third_tls = third.data_dir.join("tls");
    std::fs::copy(
        third_tls.join("cert.pem"),
        tls.join("sni/my.third.test.pem"),
    )
    .unwrap();
    let sni = file_fingerprint(&tls.join("sni/my.third.test.pem"));
    // The server runs as the data directory's owner (postern): files an admin puts
    // there must be that user's, as `docs/web.md` says.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&setup.data_dir).unwrap();
    for path in [tls.join("sni"), tls.join("sni/my.third.test.pem")] {
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    }

    server.signal(Signal::SIGHUP).unwrap();
    server
        .wait_for_log("certificates reloaded", Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        served(
            port,
            &[
                "-",
                "unknown.example.test",
                "my.third.test",
                "MY.THIRD.TEST"
            ]
        ),
        [second.clone(), second.clone(), sni.clone(), sni]
    );
    let held = client.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&held.stdout).trim(),
        "OK",
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );

    // A broken file on reload: the error is logged and the old certificates stay.
    std::fs::write(tls.join("cert.pem"), "not a certificate").unwrap();
    server.signal(Signal::SIGHUP).unwrap();
    server
        .wait_for_log("certificate reload failed", Duration::from_secs(5))
        .unwrap();
    assert_eq!(served(port, &["-"]), [second]);
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn a_client_over_its_connection_cap_is_told_to_try_later() {
    let setup = Setup::quickstart(ADMIN, "[net]\nconnections_per_ip = 2\n").unwrap();
    let mut server = setup.serve().unwrap();
    let script = r#"
import smtplib, socket, ssl, sys
smtp_port, imaps_port = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", smtp_port)) for _ in range(2)]
for s in held:
    print("held:", s.recv(200).decode().strip())
try:
    smtplib.SMTP("127.0.0.1", smtp_port, timeout=5)
    print("third: accepted")
except smtplib.SMTPConnectError as e:
    print("third:", e.smtp_code, e.smtp_error.decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", imaps_port)), server_hostname="x") as t:
    print("imaps:", t.recv(200).decode().strip())
held[0].close()
import time; time.sleep(0.3)
s = smtplib.SMTP("127.0.0.1", smtp_port, timeout=5)
print("after release:", s.noop()[0])
s.quit()
"#;
    let out = python(
        script,
        &[
            &setup.ports.smtp.port().to_string(),
            &setup.ports.imaps.port().to_string(),
        ],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("held: 220 mail.example.test ESMTP Postern"),
        "{text}"
    );
    assert!(
        text.contains("third: 421 4.7.0 Too many connections from your address, try again later"),
        "{text}"
    );
    assert!(
        text.contains("imaps: * BYE [UNAVAILABLE] Too many connections"),
        "{text}"
    );
    assert!(text.contains("after release: 250"), "{text}");
    let log = server.log();
    assert_eq!(
        log.matches("client over its connection cap").count(),
        1,
        "logged once per IP per minute:\n{log}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

/// The names in the certificate the HTTPS listener at `port` presents for `name`.
fn certificate_names(port: u16, name: &str) -> String {
    let openssl = ensure_tool("openssl", "openssl").unwrap();
    let out = std::process::Command::new(&openssl)
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", name])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let mut x509 = std::process::Command::new(&openssl)
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x509.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    String::from_utf8(x509.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn the_self_signed_certificate_names_every_served_host_and_follows_new_domains() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let _server = setup.serve().unwrap();
    let port = setup.ports.https.port();
    let names = certificate_names(port, "autoconfig.example.test");
    for host in [
        "mail.example.test",
        "my.example.test",
        "mta-sts.example.test",
        "autoconfig.example.test",
    ] {
        assert!(names.contains(&format!("DNS:{host}")), "{host}: {names}");
    }
    // A domain added (CLI, through the running server) and an app: named at once.
    setup
        .cli_ok(&["domain", "add", "example.org"], None)
        .unwrap();
    setup
        .cli_ok(
            &[
                "app",
                "add",
                "wiki",
                "--upstream",
                "127.0.0.1:9",
                "--host",
                "wiki.example.test",
            ],
            None,
        )
        .unwrap();
    let names = certificate_names(port, "autoconfig.example.org");
    for host in [
        "mail.example.test",
        "my.example.org",
        "mta-sts.example.org",
        "autoconfig.example.org",
        "wiki.example.test",
    ] {
        assert!(names.contains(&format!("DNS:{host}")), "{host}: {names}");
    }
}
