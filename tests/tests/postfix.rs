//! Interop with the reference MTA: Debian's Postfix, started here on loopback with its
//! own configuration and queue, relays mail to Postern (over STARTTLS when offered).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use tests::harness::{Setup, ensure_postfix, free_port, python};

#[test]
fn postfix_relays_to_postern_over_starttls() {
    ensure_postfix().unwrap();
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    setup
        .cli_ok(
            &["user", "add", "alice@example.test", "--password-stdin"],
            Some("Alice-Pass-1\n"),
        )
        .unwrap();
    let mut server = setup.serve().unwrap();
    let pf_dir = tempfile::tempdir().unwrap();
    let pf_port = free_port().unwrap();
    let _postfix = tests::postfix::start(pf_dir.path(), pf_port, setup.ports.smtp.port(), "");

    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.sendmail("sender@remote.test", ["alice@example.test"],
           "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: through postfix\r\n\r\nRelayed by Postfix.\r\n")
s.quit()
"#;
    let out = python(script, &[&pf_port.to_string()]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let list = loop {
        let list = setup
            .cli_ok(&["mail", "list", "alice@example.test"], None)
            .unwrap();
        if list.contains("through postfix") {
            break list;
        }
        let log = std::fs::read_to_string(pf_dir.path().join("postfix.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "postfix did not deliver within 60 s:\n{log}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let uid = list
        .lines()
        .find(|l| l.contains("through postfix"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    let msg = setup
        .cli_ok(&["mail", "show", "alice@example.test", &uid], None)
        .unwrap();
    assert!(msg.starts_with("Received: from mta.postern.test ([127.0.0.1])\r\n\tby mail.example.test (Postern) with ESMTPS id "), "{msg}");
    assert!(
        msg.contains("by mta.postern.test (Postfix) with ESMTP"),
        "Postfix's own Received is kept: {msg}"
    );
    assert!(msg.ends_with("\r\n\r\nRelayed by Postfix.\r\n"), "{msg:?}");
    let log = std::fs::read_to_string(pf_dir.path().join("postfix.log")).unwrap_or_default();
    assert!(
        log.contains("status=sent (250 2.0.0 Message accepted as "),
        "{log}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
