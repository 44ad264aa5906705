//! The mail path as a sender and an attacker meet it, black-box with smtplib: who a
//! message is from (one From: field, Sender:, DMARC over every From: domain), what the
//! MSA adds, signing never silently off, DSN parameters, refused recipients counting
//! as errors, and RFC 5321 §4.5.2's dot rules at the start of DATA.
#![allow(clippy::unwrap_used)] // test: a failed unwrap is a failed test

use tests::harness::python;
use tests::imap::{PRELUDE, PW, setup};

/// Runs `script` (after the IMAP prelude) with the server's ports; returns its output,
/// failing the test with the server's log unless it printed `done`.
fn drive(setup: &tests::harness::Setup, server: &tests::harness::Server, script: &str) -> String {
    let out = python(
        &format!("{PRELUDE}{script}"),
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
            &setup.ports.smtp.port().to_string(),
            &setup.ports.submission.port().to_string(),
        ],
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("done"),
        "{text}\n{}",
        server.log()
    );
    text
}

const SMTP_PRELUDE: &str = r#"
import smtplib
mx_port = int(sys.argv[4]); sub_port = int(sys.argv[5])
def submit(raw, frm="alice@example.test", to=("alice@example.test",)):
    s = smtplib.SMTP("127.0.0.1", sub_port)
    s.starttls(context=ctx); s.login(user, pw)
    try:
        s.sendmail(frm, list(to), raw.encode())
        return 250, ""
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()
    finally:
        s.quit()
def mx(raw, frm="someone@other.test", to=("alice@example.test",)):
    s = smtplib.SMTP("127.0.0.1", mx_port)
    try:
        s.sendmail(frm, list(to), raw.encode())
        return 250, ""
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()
    finally:
        s.quit()
def inbox():
    m = connect(); ok(m.select("INBOX"))
    n = int(ok(m.search(None, "ALL"))[0].split()[-1]) if ok(m.search(None, "ALL"))[0] else 0
    msgs = [ok(m.fetch(str(i), "(BODY.PEEK[])"))[0][1] for i in range(1, n + 1)]
    m.logout()
    return msgs
"#;

#[test]
fn a_second_from_field_forges_nothing() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
# Submission: two From: fields, the first someone else's, are refused by rule.
code, text = submit("From: CEO <ceo@bank.test>\r\nFrom: alice@example.test\r\nSubject: wire\r\n\r\nPay.\r\n")
assert code == 550 and "exactly one" in text, (code, text)
code, text = submit("Subject: no from\r\n\r\nx\r\n")
assert code == 550 and "no From" in text, (code, text)
# Several authors need a Sender: that is the user's.
code, text = submit("From: alice@example.test, bob@example.test\r\nSubject: two\r\n\r\nx\r\n")
assert code == 550 and "bob@example.test" in text, (code, text)
code, text = submit("From: alice@example.test, alice+x@example.test\r\nSubject: two\r\n\r\nx\r\n")
assert code == 550 and "Sender" in text, (code, text)
code, text = submit("From: alice@example.test, alice+x@example.test\r\nSender: alice@example.test\r\nSubject: two\r\n\r\nx\r\n")
assert code == 250, (code, text)
code, text = submit("From: alice@example.test\r\nSender: admin@example.test\r\nSubject: s\r\n\r\nx\r\n")
assert code == 550 and "admin@example.test" in text, (code, text)
# The MX: two From: domains are both judged by DMARC; example.test's p=reject fails.
code, text = mx("From: CEO <ceo@bank.test>\r\nFrom: admin@example.test\r\nSubject: wire\r\n\r\nPay.\r\n")
assert code == 550 and "example.test" in text, (code, text)
assert not any(b"Subject: wire" in m for m in inbox())
print("done")
"#
        ),
    );
    let log = setup.cli_ok(&["log", "--limit", "50"], None).unwrap();
    assert!(log.contains("submission-identity"), "{log}");
    assert!(log.contains("alice@example.test"), "{log}");
    assert!(log.contains("smtp-dmarc-reject"), "{log}");
}

#[test]
fn the_msa_adds_date_and_message_id() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
code, text = submit("From: alice@example.test\r\nTo: alice@example.test\r\nSubject: bare\r\n\r\nhello\r\n")
assert code == 250, (code, text)
got = [m for m in inbox() if b"Subject: bare" in m]
assert len(got) == 1, got
head = got[0].split(b"\r\n\r\n", 1)[0]
assert re.search(rb"\r\nDate: \w{3}, \d{1,2} \w{3} \d{4} ", head), head
assert re.search(rb"\r\nMessage-ID: <[^>]+@mail\.example\.test>", head), head
# Date and Message-ID come before the signature's fields, so they are signed.
assert head.index(b"DKIM-Signature") < head.index(b"Message-ID"), head
print("done")
"#
        ),
    );
}

#[test]
fn dsn_parameters_with_line_breaks_are_refused() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
s = smtplib.SMTP("127.0.0.1", sub_port)
s.starttls(context=ctx); s.login(user, pw)
# ENVID=x<CR><LF>Bcc: ... in xtext: a field injected into our own failure report.
code, text = s.mail("alice@example.test", ["RET=HDRS", "ENVID=x+0D+0ABcc:+20victim@remote.test"])
assert code == 501 and b"5.5.4" in text and b"ENVID" in text, (code, text)
code, text = s.mail("alice@example.test", ["ENVID=" + "A" * 101])
assert code == 501, (code, text)
code, text = s.mail("alice@example.test", ["ENVID=ok+2Bid"])
assert code == 250, (code, text)
code, text = s.rcpt("someone@remote.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;a+0D+0AX-Evil:+20yes@remote.test"])
assert code == 501 and b"ORCPT" in text, (code, text)
code, text = s.rcpt("someone@remote.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;someone@remote.test"])
assert code == 250, (code, text)
s.rset(); s.quit()
print("done")
"#
        ),
    );
}

#[test]
fn refused_recipients_count_as_errors() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
s = smtplib.SMTP("127.0.0.1", mx_port)
s.ehlo("probe.test")
assert s.mail("a@other.test")[0] == 250
closed = None
for i in range(40):
    try:
        code, text = s.rcpt("victim%d@remote.test" % i)
    except smtplib.SMTPServerDisconnected:
        closed = i
        break
    if code == 421:
        closed = i
        break
    assert code == 554, (i, code, text)
assert closed is not None and closed <= 20, closed
print("done after", closed)
"#
        ),
    );
}

#[test]
fn data_that_starts_with_a_dot() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
def raw_data(payload):
    sock = socket.create_connection(("127.0.0.1", mx_port))
    f = sock.makefile("rb")
    def expect(prefix):
        while True:
            line = f.readline().decode()
            if line[3:4] != "-":
                assert line.startswith(prefix), (prefix, line)
                return line
    expect("220")
    sock.sendall(b"EHLO c.test\r\n"); expect("250")
    sock.sendall(b"MAIL FROM:<a@other.test>\r\n"); expect("250")
    sock.sendall(b"RCPT TO:<alice@example.test>\r\n"); expect("250")
    sock.sendall(b"DATA\r\n"); expect("354")
    sock.sendall(payload)
    line = expect("250")
    # The connection is in command state again: nothing of the payload is left over.
    sock.sendall(b"NOOP\r\n"); expect("250")
    sock.sendall(b"QUIT\r\n"); expect("221")
    return line
raw_data(b".\r\n")
raw_data(b"..leading dot\r\nSubject: dotted\r\n\r\nbody\r\n.\r\n")
msgs = inbox()
assert len(msgs) == 2, msgs
# The empty message: only our trace fields.
assert msgs[0].split(b"\r\n\r\n", 1)[0].startswith(b"Received: "), msgs[0]
assert b"\r\n.leading dot\r\n" in msgs[1], msgs[1]
assert b"..leading" not in msgs[1], msgs[1]
print("done")
"#
        ),
    );
}
