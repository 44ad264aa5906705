//! SPF, DKIM and DMARC on the MX, black-box: a message DKIM-signed by Postern's own
//! submission (keys published in the test zone) passes; the same message with its body
//! changed fails DKIM; with SPF failing too, DMARC p=reject refuses it with 550; a
//! p=quarantine failure goes to Junk; forged Authentication-Results of ours (with a
//! trailing dot, or as ARC-Authentication-Results too) are removed.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use tests::dns::{TestDns, Zone, standard_zones};
use tests::harness::{Setup, python};

const SEND_RAW: &str = r#"
import smtplib, sys
port, source, mail_from, rcpt, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
msg = open(path, "rb").read()
s = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))
s.ehlo("mail.example.test")
try:
    s.sendmail(mail_from, [rcpt], msg)
    print("250")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
"#;

#[test]
fn spf_dkim_dmarc_are_verified_and_enforced() {
    let mut setup = Setup::quickstart("admin@example.test", "").unwrap();
    for (user, pw) in [("alice", "Alice-Pass-1"), ("carol", "Carol-Pass-1")] {
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
    // The test zone publishes our DKIM keys, example.test's SPF (a:mail.example.test,
    // which is 127.0.0.1) and DMARC p=reject, and a p=quarantine domain.
    let records = setup
        .cli_ok(&["dns", "records", "example.test"], None)
        .unwrap();
    let mut zones = standard_zones();
    let mut test: Zone = zones.remove(0);
    for line in records.lines().filter(|l| l.contains("._domainkey.")) {
        test = test.record(line);
    }
    test = test
        .record("quarantine 300 IN TXT \"v=spf1 -all\"")
        .record("_dmarc.quarantine 300 IN TXT \"v=DMARC1; p=quarantine\"");
    zones.insert(0, test);
    let dns = TestDns::start(&zones).unwrap();
    setup
        .write_config(&format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 2\n",
            dns.addr()
        ))
        .unwrap();
    let mut server = setup.serve().unwrap();

    // A message signed by our submission service (Ed25519 and RSA).
    let submit = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
s.login("alice@example.test", "Alice-Pass-1")
s.sendmail("alice@example.test", ["alice@example.test"],
    "From: Alice <alice@example.test>\r\nTo: carol@example.test\r\nSubject: signed\r\n\r\nThe original body.\r\n")
s.quit()
"#;
    let out = python(submit, &[&setup.ports.submissions.port().to_string()]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = setup
        .cli_ok(&["mail", "show", "alice@example.test", "1"], None)
        .unwrap();
    // What a remote MTA would relay: the message from its first DKIM-Signature on,
    // plus forged Authentication-Results claiming to be ours: plain, with our name
    // fully qualified (a trailing dot), and as an ARC-Authentication-Results.
    let signed = &stored[stored.find("DKIM-Signature:").unwrap()..];
    let forged = format!(
        "Authentication-Results: mail.example.test; dkim=pass; spf=pass; dmarc=pass\r\n\
         Authentication-Results: mail.example.test.; dkim=pass; spf=pass; dmarc=pass\r\n\
         ARC-Authentication-Results: i=1; mail.example.test; dkim=pass; spf=pass; dmarc=pass\r\n{signed}"
    );
    let dir = setup.dir.path();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let good = write("good.eml", &forged);
    let tampered = write(
        "tampered.eml",
        &forged.replace("The original body.", "A changed body."),
    );
    let quarantined = write(
        "quarantine.eml",
        "From: someone@quarantine.test\r\nTo: carol@example.test\r\nSubject: quarantine me\r\n\r\nx\r\n",
    );
    let port = setup.ports.smtp.port().to_string();
    let send = |source: &str, from: &str, path: &str| {
        let out = python(SEND_RAW, &[&port, source, from, "carol@example.test", path]).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(send("127.0.0.1", "alice@example.test", &good), "250");
    assert_eq!(send("127.0.0.1", "alice@example.test", &tampered), "250");
    let refused = send("127.0.0.5", "alice@example.test", &tampered);
    assert_eq!(
        refused,
        "550 5.7.1 Message rejected: it fails the DMARC policy of example.test"
    );
    assert_eq!(
        send("127.0.0.1", "someone@quarantine.test", &quarantined),
        "250"
    );

    let show = |uid: &str, mailbox: &str| {
        setup
            .cli_ok(
                &[
                    "mail",
                    "show",
                    "carol@example.test",
                    uid,
                    "--mailbox",
                    mailbox,
                ],
                None,
            )
            .unwrap()
    };
    let header = |msg: &str| -> String {
        let start = msg
            .find("Authentication-Results: mail.example.test;")
            .unwrap();
        let rest = &msg[start..];
        let end = rest.find("\r\n").map(|_| {
            let mut e = 0;
            for (i, line) in rest.split_inclusive("\r\n").enumerate() {
                if i > 0 && !line.starts_with('\t') && !line.starts_with(' ') {
                    break;
                }
                e += line.len();
            }
            e
        });
        rest[..end.unwrap()].replace("\r\n\t", " ")
    };
    let first = show("1", "INBOX");
    assert_eq!(
        first
            .matches("Authentication-Results: mail.example.test;")
            .count(),
        1,
        "the forged one is gone: {first}"
    );
    assert!(
        !first.contains("dkim=pass; spf=pass; dmarc=pass"),
        "{first}"
    );
    assert!(!first.contains("mail.example.test.;"), "{first}");
    assert!(!first.contains("ARC-Authentication-Results"), "{first}");
    let ar = header(&first);
    assert_eq!(ar.matches("dkim=pass").count(), 2, "{ar}");
    assert!(ar.contains("header.d=example.test"), "{ar}");
    assert!(ar.contains("spf=pass"), "{ar}");
    assert!(ar.contains("dmarc=pass"), "{ar}");
    let second = header(&show("2", "INBOX"));
    assert_eq!(
        second.matches("dkim=fail").count(),
        2,
        "a changed body is a DKIM failure: {second}"
    );
    assert!(
        second.contains("spf=pass") && second.contains("dmarc=pass"),
        "{second}"
    );
    let junk = setup
        .cli_ok(
            &["mail", "list", "carol@example.test", "--mailbox", "Junk"],
            None,
        )
        .unwrap();
    assert!(
        junk.contains("quarantine me"),
        "p=quarantine goes to Junk: {junk}"
    );
    let junk_header = header(&show("1", "Junk"));
    assert!(
        junk_header.contains("spf=fail") && junk_header.contains("dmarc=fail"),
        "{junk_header}"
    );
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(
        log.contains(
            "127.0.0.5 <alice@example.test> smtp-dmarc-reject DMARC p=reject of example.test"
        ),
        "{log}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
