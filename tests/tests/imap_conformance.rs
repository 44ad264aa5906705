//! IMAP transcripts for the points an independent conformance suite and real clients
//! found, each answer taken from the RFC text: ENVELOPE group syntax (RFC 3501
//! §7.4.2 with RFC 5322 Appendix A's examples), BINARY of quoted-printable (RFC 3516,
//! RFC 2045 §6.7), sections of message/rfc822 and empty parts (RFC 3501 §6.4.5),
//! `\Recent` after EXAMINE and SELECT (RFC 3501 §2.3.2, §6.3.2), LSUB's `\Noselect`
//! superiors (§6.3.9), DELETE of a mailbox with children (RFC 9051 §6.3.4), keywords
//! announced before use (§7.2.6), messages expunged elsewhere (RFC 2180 §4.1), and
//! IDLE at shutdown.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use tests::imap::{PRELUDE, PW, run, setup};

/// `expect(step, cmd, [regex...])`: the response lines must match, in order.
const EXPECT: &str = r#"
def expect(step, cmd, expected):
    got = step(cmd)
    ok = len(got) == len(expected) and all(re.fullmatch(e, g, re.S) for e, g in zip(expected, got))
    assert ok, "\nC: %s\nexpected: %s\ngot:      %s" % (cmd, expected, got)
    return got
def session():
    _, step = raw_session()
    step("l LOGIN %s %s" % (user, pw))
    return step
def append(step, box, text):
    data = text.encode()
    got = step("ap APPEND %s {%d+}\r\n%s" % (box, len(data), text))
    assert got[-1].startswith("ap OK"), got
"#;

fn transcript(body: &str, done: &str) {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{EXPECT}{body}\nprint({done:?})\n");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains(done), "{out}");
}

#[test]
fn envelope_of_groups_follows_rfc_3501_7_4_2() {
    transcript(
        r#"
s = session()
s("c CREATE Env")
# RFC 5322 Appendix A.1.3: a group with members, and an empty group.
append(s, "Env", "From: Pete <pete@silly.example>\r\nTo: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\r\nCc: Undisclosed recipients:;\r\nDate: Thu, 13 Feb 1969 23:32:54 -0330\r\nMessage-ID: <testabcd.1234@silly.example>\r\n\r\nTesting.\r\n")
# RFC 5322 Appendix A.5: comments in names, groups, addresses and after the group.
append(s, "Env", "From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\r\nTo:A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of the group)\r\nCc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;\r\nDate: Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n               -0330 (Newfoundland Time)\r\nMessage-ID:              <testabcd.1234@silly.test>\r\n\r\nTesting.\r\n")
s("e EXAMINE Env")
pete = r'\(\("Pete" NIL "pete" "silly.example"\)\)'
expect(s, "f1 FETCH 1 ENVELOPE", [
    r'\* 1 FETCH \(ENVELOPE \("Thu, 13 Feb 1969 23:32:54 -0330" NIL ' + " ".join([pete] * 3)
    + r' \(\(NIL NIL "A Group" NIL\)\("Ed Jones" NIL "c" "a.test"\)\(NIL NIL "joe" "where.test"\)\("John" NIL "jdoe" "one.test"\)\(NIL NIL NIL NIL\)\)'
    + r' \(\(NIL NIL "Undisclosed recipients" NIL\)\(NIL NIL NIL NIL\)\) NIL NIL "<testabcd.1234@silly.example>"\)\)',
    r"f1 OK .*"])
pete = r'\(\("Pete" NIL "pete" "silly.test"\)\)'
expect(s, "f2 FETCH 2 ENVELOPE", [
    r'\* 2 FETCH \(ENVELOPE \("Thu,      13        Feb          1969      23:32               -0330 \(Newfoundland Time\)" NIL ' + " ".join([pete] * 3)
    + r' \(\(NIL NIL "A Group" NIL\)\("Chris Jones" NIL "c" "public.example"\)\(NIL NIL "joe" "example.org"\)\("John" NIL "jdoe" "one.test"\)\(NIL NIL NIL NIL\)\)'
    + r' \(\(NIL NIL "Hidden recipients" NIL\)\(NIL NIL NIL NIL\)\) NIL NIL "<testabcd.1234@silly.test>"\)\)',
    r"f2 OK .*"])
"#,
        "envelope ok",
    );
}

#[test]
fn binary_undoes_quoted_printable_as_rfc_2045_says() {
    transcript(
        r#"
s = session()
s("c CREATE Bin")
# RFC 2045 §6.7: =XX octets, "=" at a line's end is a soft break, and white space at a
# line's end is transport padding to be deleted.
append(s, "Bin", "From: a@example.test\r\nSubject: qp\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nJ=C3=B6rg   \r\nsoft=\r\nbreak =3D end\r\n")
append(s, "Bin", "From: a@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nau lait\t \r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n")
s("e EXAMINE Bin")
expect(s, "b1 FETCH 1 (BINARY[1] BINARY.SIZE[1])", [
    r"\* 1 FETCH \(BINARY\[1\] \{24\}\r\nJörg\r\nsoftbreak = end\r\n BINARY.SIZE\[1\] 24\)", r"b1 OK .*"])
# RFC 3516 BINARY[]: the whole message, its quoted-printable body decoded.
expect(s, "b2 FETCH 1 BINARY[]", [
    r"\* 1 FETCH \(BINARY\[\] \{\d+\}\r\nFrom: a@example.test\r\nSubject: qp\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: binary\r\n\r\nJörg\r\nsoftbreak = end\r\n\)",
    r"b2 OK .*"])
expect(s, "b3 FETCH 2 (BINARY[1] BINARY[2] BINARY.SIZE[2])", [
    "\\* 2 FETCH \\(BINARY\\[1\\] \\{13\\}\r\ncafé au lait BINARY\\[2\\] ~\\{4\\}\r\n\x00\x01\x02\x03 BINARY.SIZE\\[2\\] 4\\)",
    r"b3 OK .*"])
got = s("b4 FETCH 2 BINARY[]")
assert "Content-Transfer-Encoding: binary\r\n\r\ncafé au lait\r\n--b\r\n" in got[0], got
assert "\x00\x01\x02\x03\r\n--b--" in got[0], got
"#,
        "binary ok",
    );
}

#[test]
fn sections_of_embedded_messages_and_of_parts_that_are_not_there() {
    transcript(
        r#"
s = session()
s("c CREATE Sec")
append(s, "Sec", "From: a@example.test\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.test\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\nplain\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--i--\r\n\r\n--o\r\n\r\n--o--\r\n")
s("e EXAMINE Sec")
# RFC 3501 §6.4.5: HEADER and TEXT of a message/rfc822 part are its message's; the
# numbers after it go into that message.
expect(s, "s1 FETCH 1 (BODY[2.HEADER] BODY[2.TEXT])", [
    r"\* 1 FETCH \(BODY\[2.HEADER\] \{93\}\r\nFrom: inner@example.test\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n BODY\[2.TEXT\] \{\d+\}\r\n--i\r\nContent-Type: text/plain\r\n\r\nplain\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--i--\r\n\)",
    r"s1 OK .*"])
expect(s, "s2 FETCH 1 (BODY[2.1] BODY[2.2.MIME])", [
    r"\* 1 FETCH \(BODY\[2.1\] \{5\}\r\nplain BODY\[2.2.MIME\] \{27\}\r\nContent-Type: text/html\r\n\r\n\)", r"s2 OK .*"])
# An empty part is an empty string; so is a part that is not there, and the TEXT of
# a part that is no message.
expect(s, "s3 FETCH 1 (BODY[3] BODY[4] BODY[1.TEXT] BODY[2.3])", [
    r"\* 1 FETCH \(BODY\[3\] \{0\}\r\n BODY\[4\] \{0\}\r\n BODY\[1.TEXT\] \{0\}\r\n BODY\[2.3\] \{0\}\r\n\)", r"s3 OK .*"])
"#,
        "sections ok",
    );
}

#[test]
fn recent_is_shown_by_examine_and_claimed_by_the_first_select() {
    transcript(
        r#"
a = session(); b = session()
a("c CREATE Rec")
append(a, "Rec", "Subject: 1\r\n\r\nx\r\n")
append(a, "Rec", "Subject: 2\r\n\r\nx\r\n")
recent = lambda got: [l for l in got if l.endswith(" RECENT")]
expect(b, "s1 STATUS Rec (RECENT)", [r'\* STATUS "Rec" \(RECENT 2\)', r"s1 OK .*"])
# RFC 3501 §6.3.2: EXAMINE must not cause messages to lose \Recent: it shows them.
got = a("e1 EXAMINE Rec"); assert recent(got) == ["* 2 RECENT"], got
expect(a, "f1 FETCH 1:* FLAGS", [r"\* 1 FETCH \(FLAGS \(\\Recent\)\)", r"\* 2 FETCH \(FLAGS \(\\Recent\)\)", r"f1 OK .*"])
# RFC 3501 §2.3.2: the first session to select is told; later ones are not.
got = b("s2 SELECT Rec"); assert recent(got) == ["* 2 RECENT"], got
got = a("e2 EXAMINE Rec"); assert recent(got) == ["* 0 RECENT"], got
append(a, "Rec", "Subject: 3\r\n\r\nx\r\n")
got = b("n1 NOOP"); assert "* 3 RECENT" in got, got
got = a("s3 SELECT Rec"); assert recent(got) == ["* 0 RECENT"], got
got = b("s4 SELECT Rec"); assert recent(got) == ["* 0 RECENT"], got
"#,
        "recent ok",
    );
}

#[test]
fn lsub_lists_an_unsubscribed_superior_as_noselect() {
    transcript(
        r#"
s = session()
s("c1 CREATE foo/bar")
s("u1 UNSUBSCRIBE foo")
s("u2 UNSUBSCRIBE foo/bar")
s("u3 SUBSCRIBE foo/bar")
# RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not: % returns foo, \Noselect.
expect(s, 'l1 LSUB "" f%', [r'\* LSUB \(\\Noselect\) "/" "foo"', r"l1 OK .*"])
expect(s, 'l2 LSUB "" foo*', [r'\* LSUB \(\) "/" "foo/bar"', r"l2 OK .*"])
expect(s, 'l3 LSUB "" foo/%', [r'\* LSUB \(\) "/" "foo/bar"', r"l3 OK .*"])
# RFC 3501 §6.3.6: a subscription outlives its mailbox.
s("c2 CREATE gone")
s("d1 DELETE gone")
expect(s, 'l4 LSUB "" gone', [r'\* LSUB \(\) "/" "gone"', r"l4 OK .*"])
# RFC 9051 §6.3.4: a mailbox with children is not deleted, with HASCHILDREN.
expect(s, "d2 DELETE foo", [r"d2 NO \[HASCHILDREN\] .*"])
# RFC 2180 §3: a session whose selected mailbox another deletes is told BYE.
t = session()
s("c3 CREATE doomed")
t("s1 SELECT doomed")
s("d3 DELETE doomed")
got = t("n1 NOOP")
assert got[0].startswith("* BYE"), got
"#,
        "lsub ok",
    );
}

#[test]
fn keywords_come_in_flags_before_a_fetch_uses_them_and_nil_is_no_keyword() {
    transcript(
        r#"
a = session(); b = session()
append(a, "INBOX", "Subject: k\r\n\r\nx\r\n")
a("s1 SELECT INBOX")
b("s2 SELECT INBOX")
b("k1 STORE 1 +FLAGS ($Label1)")
# RFC 3501 §7.2.6: the client learns the keyword from FLAGS first.
got = a("n1 NOOP")
assert got[0].startswith("* FLAGS (") and "$Label1" in got[0], got
assert got[1].startswith("* OK [PERMANENTFLAGS (") and "$Label1" in got[1], got
assert re.fullmatch(r"\* 1 FETCH \(FLAGS \(.*\$Label1.*\)\)", got[2]), got
# A keyword the client sets itself is announced before the STORE's answer too.
got = a("k2 STORE 1 +FLAGS ($Mine)")
assert got[0].startswith("* FLAGS (") and "$Mine" in got[0], got
assert re.fullmatch(r"\* 1 FETCH \(FLAGS \(.*\$Mine.*\)\)", got[2]), got
expect(a, "k3 STORE 1 +FLAGS (NIL)", [r"k3 BAD .*"])
expect(a, "k4 STORE 1 +FLAGS (nil)", [r"k4 BAD .*"])
got = a("f1 FETCH 1 FLAGS")
assert "NIL" not in got[0] and "nil" not in got[0], got
"#,
        "keywords ok",
    );
}

#[test]
fn a_message_expunged_elsewhere_stays_readable_until_its_expunge_is_sent() {
    transcript(
        r#"
a = session(); b = session()
a("c CREATE Exp")
for i in range(3):
    append(a, "Exp", "Subject: m%d\r\n\r\nbody %d\r\n" % (i, i))
a("s1 SELECT Exp")
b("s2 SELECT Exp")
b("d1 STORE 2 +FLAGS.SILENT (\\Deleted)")
expect(b, "x1 EXPUNGE", [r"\* 2 EXPUNGE", r"x1 OK .*"])
b("m1 MOVE 2 Trash")
# RFC 2180 §4.1.1: a still sees messages 2 and 3 (no EXPUNGE during FETCH), bodies
# and all, and can change their flags in its view.
expect(a, "f1 FETCH 1:3 (UID BODY.PEEK[TEXT])", [
    r"\* 1 FETCH \(UID 1 BODY\[TEXT\] \{8\}\r\nbody 0\r\n\)",
    r"\* 2 FETCH \(UID 2 BODY\[TEXT\] \{8\}\r\nbody 1\r\n\)",
    r"\* 3 FETCH \(UID 3 BODY\[TEXT\] \{8\}\r\nbody 2\r\n\)",
    r"f1 OK .*"])
expect(a, "k1 STORE 3 +FLAGS (\\Flagged)", [r"\* 3 FETCH \(FLAGS \(\\Flagged \\Recent\)\)", r"k1 OK .*"])
# COPY of a message that is gone: nothing copied, and the EXPUNGEs come with the NO.
expect(a, "c1 COPY 1:3 Archive", [r"\* 2 EXPUNGE", r"\* 2 EXPUNGE", r"c1 NO \[EXPUNGEISSUED\] .*"])
expect(a, "f2 FETCH 1 UID", [r"\* 1 FETCH \(UID 1\)", r"f2 OK .*"])
"#,
        "expunged ok",
    );
}

#[test]
fn an_idling_client_gets_its_bye_as_soon_as_the_server_stops() {
    let (setup, mut server) = setup();
    // A long grace period: a client in IDLE must not wait it out.
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace("shutdown_grace_seconds = 2", "shutdown_grace_seconds = 60"),
    )
    .unwrap();
    server.stop(Duration::from_secs(10)).unwrap();
    let mut server = setup.serve().unwrap();
    let py = r#"
import socket, ssl, sys, time, os, signal
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
port = int(sys.argv[1]); user = sys.argv[2]; pw = sys.argv[3]; pid = int(sys.argv[4])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x")
f = s.makefile("rb")
f.readline()
s.sendall(("a LOGIN %s %s\r\nb SELECT INBOX\r\nc IDLE\r\n" % (user, pw)).encode())
while not f.readline().startswith(b"+ "):
    pass
start = time.time()
os.kill(pid, signal.SIGTERM)
line = f.readline()
took = time.time() - start
assert line.startswith(b"* BYE"), line
assert took < 5, took
print("bye after %.2f s" % took)
"#;
    let pid = server.pid().unwrap().to_string();
    let started = Instant::now();
    let out = run(
        py,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
            &pid,
        ],
    );
    assert!(out.contains("bye after"), "{out}");
    server.wait(Duration::from_secs(30)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the server held the grace period for an idle client: {:?}",
        started.elapsed()
    );
}
