//! Submission, black-box with swaks: AUTH only over TLS (587 STARTTLS, 465 implicit
//! TLS), wrong passwords refused and logged, nobody sends as anybody else.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::process::Command;
use std::time::Duration;

use tests::harness::{Setup, ensure_package, ensure_tool};

#[test]
fn swaks_submits_with_auth_over_tls_only_and_as_itself_only() {
    let swaks = ensure_tool("swaks", "swaks").unwrap();
    ensure_package("libnet-ssleay-perl").unwrap();
    ensure_package("libio-socket-ssl-perl").unwrap();
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    for (user, pw) in [("alice", "Alice-Pass-1"), ("bob", "Bob-Pass-1!")] {
        setup
            .cli_ok(
                &[
                    "user",
                    "add",
                    &format!("{user}@example.test"),
                    "--password-stdin",
                ],
                Some(&format!("{pw}\n")),
            )
            .unwrap();
    }
    let mut server = setup.serve().unwrap();
    let run = |port: u16, tls: &str, user: &str, password: &str, from: &str| {
        let mut cmd = Command::new(&swaks);
        cmd.args([
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--helo",
            "client.test",
        ]);
        if !tls.is_empty() {
            cmd.arg(tls);
        }
        cmd.args([
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            password,
        ]);
        cmd.args([
            "--from",
            from,
            "--to",
            "bob@example.test",
            "--timeout",
            "10",
        ]);
        cmd.args([
            "--header",
            &format!("From: <{from}>"),
            "--header",
            "Subject: submitted",
        ]);
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let sub = setup.ports.submission.port();
    let subs = setup.ports.submissions.port();
    let (rc, text) = run(
        sub,
        "--tls",
        "alice@example.test",
        "Alice-Pass-1",
        "alice@example.test",
    );
    assert_eq!(rc, 0, "{text}");
    assert!(
        text.contains("235 2.7.0 Authentication successful"),
        "{text}"
    );
    let (rc, text) = run(
        subs,
        "--tls-on-connect",
        "alice@example.test",
        "Alice-Pass-1",
        "alice+x@example.test",
    );
    assert_eq!(rc, 0, "{text}");
    // No TLS: AUTH is not even offered.
    let (rc, text) = run(
        sub,
        "",
        "alice@example.test",
        "Alice-Pass-1",
        "alice@example.test",
    );
    assert_ne!(rc, 0, "{text}");
    assert!(!text.contains("235 "), "{text}");
    // Wrong password: swaks exits 28 (AUTH failed).
    let (rc, text) = run(
        sub,
        "--tls",
        "alice@example.test",
        "Wrong-Pass-1",
        "alice@example.test",
    );
    assert_eq!(rc, 28, "{text}");
    assert!(text.contains("535 5.7.8"), "{text}");
    // Alice as Bob: refused at MAIL FROM (swaks 23).
    let (rc, text) = run(
        sub,
        "--tls",
        "alice@example.test",
        "Alice-Pass-1",
        "bob@example.test",
    );
    assert_eq!(rc, 23, "{text}");
    assert!(
        text.contains("550 5.7.1 Sender address <bob@example.test> is not yours"),
        "{text}"
    );

    let list = setup
        .cli_ok(&["mail", "list", "bob@example.test"], None)
        .unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains("\tsubmitted")).count(),
        2,
        "{list}"
    );
    // Every submitted message is DKIM-signed, Ed25519 and RSA, and an independent
    // verifier (dkimpy) accepts both signatures against the records we publish.
    ensure_package("python3-dkim").unwrap();
    ensure_package("python3-nacl").unwrap();
    let records = setup.dir.path().join("records.txt");
    std::fs::write(
        &records,
        setup
            .cli_ok(&["dns", "records", "example.test"], None)
            .unwrap(),
    )
    .unwrap();
    let uid = list
        .lines()
        .find(|l| l.contains("\tsubmitted"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    let message = setup.dir.path().join("signed.eml");
    std::fs::write(
        &message,
        setup
            .cli_ok(&["mail", "show", "bob@example.test", &uid], None)
            .unwrap(),
    )
    .unwrap();
    // dkimpy's verdict per signature ("ed25519-sha256 pass", ...), stderr for context.
    let dkimpy = || {
        let out = Command::new("/usr/bin/python3")
            .args([
                "-c",
                DKIMPY_VERIFY,
                &records.to_string_lossy(),
                &message.to_string_lossy(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let verdicts = dkimpy();
    assert!(
        verdicts.contains("ed25519-sha256 pass") && verdicts.contains("rsa-sha256 pass"),
        "{verdicts}"
    );
    // The body changed after signing: both fail.
    let tampered = std::fs::read_to_string(&message).unwrap() + "One more line.\r\n";
    std::fs::write(&message, tampered).unwrap();
    let verdicts = dkimpy();
    assert!(
        verdicts.contains("ed25519-sha256 fail") && verdicts.contains("rsa-sha256 fail"),
        "{verdicts}"
    );

    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(
        log.contains("127.0.0.1 alice@example.test login submission"),
        "{log}"
    );
    assert!(
        log.contains("127.0.0.1 alice@example.test login-failed submission"),
        "{log}"
    );
    assert!(
        log.contains("127.0.0.1 alice@example.test login submissions"),
        "{log}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn submission_is_rate_limited_per_account() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    // Into the harness's own [submission] table.
    let config = std::fs::read_to_string(&setup.config).unwrap().replacen(
        "[submission]\n",
        "[submission]\nmax_messages_per_hour = 2\n",
        1,
    );
    std::fs::write(&setup.config, config).unwrap();
    setup
        .cli_ok(
            &["user", "add", "alice@example.test", "--password-stdin"],
            Some("Alice-Pass-1\n"),
        )
        .unwrap();
    let mut server = setup.serve().unwrap();
    let out = tests::harness::python(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10); s.starttls(context=ctx)
s.login("alice@example.test", "Alice-Pass-1")
for i in range(3):
    code, text = s.mail("alice@example.test")
    print(code, text.decode())
    if code == 250:
        s.rcpt("alice@example.test")
        print(s.data(b"From: alice@example.test\r\nSubject: %d\r\n\r\nhi\r\n" % i)[0])
"#,
        &[&setup.ports.submission.port().to_string()],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("250 2.1.0").count(), 2, "{text}");
    assert!(
        text.contains("450 4.7.1 Too many messages from your account this hour"),
        "{text}"
    );
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(log.contains("smtp-rate-limited"), "{log}");
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

/// dkimpy (Debian's python3-dkim) verifying each DKIM-Signature of a message, with the
/// keys taken from `postern dns records` output instead of live DNS.
const DKIMPY_VERIFY: &str = r#"
import re, sys, dkim
keys = {}
for line in open(sys.argv[1]):
    f = line.split(" ", 4)
    if len(f) == 5 and f[3] == "TXT" and "._domainkey." in f[0]:
        keys[f[0].rstrip(".").lower()] = "".join(re.findall(r'"([^"]*)"', f[4])).encode()
def dnsfunc(name, timeout=5):
    return keys.get(name.decode().rstrip(".").lower())
msg = open(sys.argv[2], "rb").read()
d = dkim.DKIM(msg)
headers = [v for k, v in dkim.rfc822_parse(msg)[0] if k.lower() == b"dkim-signature"]
for i, h in enumerate(headers):
    algo = re.search(rb"a=([^;]+);", h.replace(b"\r\n", b"").replace(b"\t", b"")).group(1).strip().decode()
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.ValidationError as e:
        ok = False
        print(algo, "error:", e, file=sys.stderr)
    print(algo, "pass" if ok else "fail")
"#;
