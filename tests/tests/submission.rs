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
