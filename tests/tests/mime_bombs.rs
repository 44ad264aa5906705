//! Messages built to exhaust a MIME walker: tens of thousands of nested
//! message/rfc822 or multipart levels, accepted over the MX like any other mail. A
//! client asking for BODYSTRUCTURE (every client does) must get an answer, the server
//! must stay up, and the answer must cost little CPU (no quadratic walk).
#![allow(clippy::unwrap_used)] // test: a failed unwrap is a failed test

use tests::harness::python;
use tests::imap::{PRELUDE, PW, setup};

/// Sends three bombs to alice over port 25, then fetches BODYSTRUCTURE, ENVELOPE,
/// BODY[1.1.1...] and SEARCH TEXT of each over IMAPS, printing the server's CPU seconds
/// spent on each FETCH (read from /proc/PID/stat).
const SCRIPT: &str = r#"
import smtplib, os
smtp_port = int(sys.argv[4]); pid = int(sys.argv[5])
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def rfc822(n):
    head = "From: a@example.org\r\nTo: alice@example.test\r\nSubject: rfc822 bomb\r\nContent-Type: message/rfc822\r\n\r\n"
    return head + "Content-Type:message/rfc822\r\n\r\n" * n + "innermost\r\n"
def multipart(n):
    head = "From: a@example.org\r\nTo: alice@example.test\r\nSubject: multipart bomb\r\n"
    out = [head]
    for i in range(n):
        out.append("Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i))
    out.append("Content-Type: text/plain\r\n\r\ninnermost\r\n")
    for i in reversed(range(n)):
        out.append("--b%d--\r\n" % i)
    return "".join(out)
bombs = [("rfc822", rfc822(20000)), ("multipart", multipart(30000)), ("multipart10k", multipart(10000))]
s = smtplib.SMTP("127.0.0.1", smtp_port)
for name, msg in bombs:
    refused = s.sendmail("a@example.org", ["alice@example.test"], msg.encode())
    assert refused == {}, refused
s.quit()
m = connect()
ok(m.select("INBOX"))
for i, (name, _) in enumerate(bombs, 1):
    before = cpu()
    text = flat(ok(m.fetch(str(i), "(BODYSTRUCTURE)"), name))
    assert b"BODYSTRUCTURE (" in text, (name, text[:300])
    # The structure is described to the walker's depth limit, not 20,000 levels.
    assert len(text) < 100_000, (name, len(text))
    text = flat(ok(m.fetch(str(i), "(ENVELOPE BODY.PEEK[1.1.1.1] BODY.PEEK[1.MIME])"), name))
    assert b"ENVELOPE (" in text and b"BODY[1.1.1.1]" in text, (name, text[:300])
    spent = cpu() - before
    print("%s: FETCH answered, %.2f s of server CPU" % (name, spent))
    assert spent < 3.0, (name, spent)
    ok(m.search(None, "TEXT", "innermost"), name)
ok(m.noop())
m.logout()
# The whole server is still up: a new IMAP session and the MX both answer.
m = connect(); ok(m.noop()); m.logout()
s = smtplib.SMTP("127.0.0.1", smtp_port); assert s.noop()[0] == 250; s.quit()
print("bombs ok")
"#;

#[test]
fn nested_mime_bombs_do_not_take_the_server_down() {
    let (setup, server) = setup();
    let script = format!("{PRELUDE}{SCRIPT}");
    let out = python(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
            &setup.ports.smtp.port().to_string(),
            &server.pid().unwrap().to_string(),
        ],
    )
    .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{out}");
    let log = server.log();
    assert!(out.contains("bombs ok"), "{out}\n{log}");
}

/// The same bombs to a user whose Sieve script runs at delivery: sieve-rs parses the
/// whole message with mail-parser, whose nested-message tree overflowed the stack when
/// dropped. The message is kept without running the script, the server stays up.
#[test]
fn nested_mime_bombs_do_not_take_delivery_down_through_sieve() {
    let (setup, server) = setup();
    tests::sieve::put_script(
        &setup,
        PW,
        "alice@example.test",
        "filter",
        "require \"fileinto\";\nif header :contains \"subject\" \"nothing\" { fileinto \"Junk\"; }\n",
    );
    let out = python(
        &format!("{PRELUDE}{}", r#"
import smtplib
smtp_port = int(sys.argv[4])
head = "From: a@example.org\r\nTo: alice@example.test\r\nSubject: rfc822 bomb\r\nContent-Type: message/rfc822\r\n\r\n"
bomb = head + "Content-Type:message/rfc822\r\n\r\n" * 20000 + "innermost\r\n"
s = smtplib.SMTP("127.0.0.1", smtp_port)
assert s.sendmail("a@example.org", ["alice@example.test"], bomb.encode()) == {}
assert s.sendmail("a@example.org", ["alice@example.test"], b"From: a@example.org\r\nSubject: plain\r\n\r\nx\r\n") == {}
s.quit()
m = connect(); ok(m.select("INBOX"))
assert len(ok(m.search(None, "ALL"))[0].split()) == 2
m.logout()
print("sieve bombs ok")
"#),
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
            &setup.ports.smtp.port().to_string(),
        ],
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = server.log();
    assert!(text.contains("sieve bombs ok"), "{text}\n{log}");
    assert!(log.contains("nested too deep for a Sieve script"), "{log}");
}
