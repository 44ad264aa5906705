//! IMAP against the RFCs' own examples: RFC 3501 §6 transcripts and the §8 sample
//! session, and the extensions CONDSTORE, QRESYNC (RFC 7162) and CREATE-SPECIAL-USE
//! (RFC 6154), each driven line by line.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use tests::imap::{PRELUDE, PW, run, setup};

/// RFC 3501 §6 examples as transcripts: each client line, then the server lines
/// expected (regular expressions; response texts are ours, so `.*` stands for them).
/// Untagged responses must come in the order given.
const TRANSCRIPTS: &str = r#"
_, send = raw_session()
def step(cmd, expected):
    got = send(cmd)
    ok = len(got) == len(expected) and all(re.fullmatch(e, g) for e, g in zip(expected, got))
    assert ok, "\nC: %s\nexpected: %s\ngot:      %s" % (cmd, expected, got)
step("a001 LOGIN %s %s" % (user, pw), [r"a001 OK .*"])
# §6.1.2 NOOP, §6.1.1 CAPABILITY.
step("a002 NOOP", [r"a002 OK .*"])
step("abcd CAPABILITY", [r"\* CAPABILITY IMAP4rev1 .*", r"abcd OK .*"])
# §6.3.3 CREATE: owatagusiam/ creates a superior; then owatagusiam/blurdybloop.
step("A003 CREATE owatagusiam/", [r"A003 OK .*"])
step("A004 CREATE owatagusiam/blurdybloop", [r"A004 OK .*"])
# §6.3.4 DELETE: blurdybloop goes; foo with inferiors is refused here (no \Noselect).
step("A682 LIST \"\" *", [r'\* LIST \(.*\) "/" .*'] * 8 + [r"A682 OK .*"])
step("A683 DELETE blurdybloop", [r"A683 NO \[NONEXISTENT\] .*"])
step("A684 DELETE owatagusiam/blurdybloop", [r"A684 OK .*"])
step("A685 DELETE owatagusiam", [r"A685 OK .*"])
step("A686 LIST \"\" owatagusiam*", [r"A686 OK .*"])
# §6.3.5 RENAME: children follow; renaming INBOX moves its messages.
step("A687 CREATE foo/bar", [r"A687 OK .*"])
step("A688 CREATE foo/bar/zap", [r"A688 OK .*"])
step("A689 RENAME foo zowie", [r"A689 OK .*"])
step('A690 LIST "" zowie*', [r'\* LIST \(\\HasChildren\) "/" "zowie"', r'\* LIST \(\\HasChildren\) "/" "zowie/bar"', r'\* LIST \(\\HasNoChildren\) "/" "zowie/bar/zap"', r"A690 OK .*"])
step('A691 LIST "" foo*', [r"A691 OK .*"])
# §6.3.8 LIST "" "": the delimiter and the root.
step('A101 LIST "" ""', [r'\* LIST \(\\Noselect\) "/" ""', r"A101 OK .*"])
step('A102 LIST zowie/ ""', [r'\* LIST \(\\Noselect\) "/" "zowie/"', r"A102 OK .*"])
step('A103 LIST "" zowie/%', [r'\* LIST \(\\HasChildren\) "/" "zowie/bar"', r"A103 OK .*"])
# §6.3.11 APPEND, §6.3.10 STATUS.
for i in range(1, 12):
    step("A%03d APPEND zowie {%d+}\r\nSubject: m%d\r\n\r\nx\r\n" % (200 + i, 17 + len(str(i)), i), [r"A%03d OK \[APPENDUID \d+ %d\] .*" % (200 + i, i)])
step("A042 STATUS zowie (UIDNEXT MESSAGES)", [r'\* STATUS "zowie" \(UIDNEXT 12 MESSAGES 11\)', r"A042 OK .*"])
# §6.3.1 SELECT.
step("A142 SELECT zowie", [r"\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft\)", r"\* OK \[PERMANENTFLAGS \(.*\\\*\)\] .*", r"\* 11 EXISTS", r"\* 11 RECENT", r"\* OK \[UNSEEN 1\] .*", r"\* OK \[UIDVALIDITY \d+\] .*", r"\* OK \[UIDNEXT 12\] .*", r"A142 OK \[READ-WRITE\] .*"])
# §6.4.6 STORE: +FLAGS on 2:4 answers each message's flags.
step("A003 STORE 2:4 +FLAGS (\\Deleted)", [r"\* 2 FETCH \(FLAGS \(\\Deleted \\Recent\)\)", r"\* 3 FETCH \(FLAGS \(\\Deleted \\Recent\)\)", r"\* 4 FETCH \(FLAGS \(\\Deleted \\Recent\)\)", r"A003 OK .*"])
step("A004 STORE 2:4 -FLAGS.SILENT (\\Deleted)", [r"A004 OK .*"])
# §6.4.3 EXPUNGE: 3, 4, 7 and 11 deleted -> EXPUNGE 3, 3, 5, 8.
step("A005 STORE 3:4,7,11 +FLAGS.SILENT (\\Deleted)", [r"A005 OK .*"])
step("A202 EXPUNGE", [r"\* 3 EXPUNGE", r"\* 3 EXPUNGE", r"\* 5 EXPUNGE", r"\* 8 EXPUNGE", r"A202 OK .*"])
# §6.4.4 SEARCH.
step("A282 SEARCH FLAGGED", [r"\* SEARCH", r"A282 OK .*"])
step("A283 SEARCH TEXT \"m5\"", [r"\* SEARCH 3", r"A283 OK .*"])
step("A284 SEARCH CHARSET UTF-8 TEXT {2+}\r\nm6", [r"\* SEARCH 4", r"A284 OK .*"])
# §6.4.5 FETCH, §6.4.8 UID FETCH.
step("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (SUBJECT)])", [r"\* 2 FETCH \(FLAGS \(\\Seen \\Recent\) BODY\[HEADER.FIELDS \(SUBJECT\)\] \{15\}\r\nSubject: m2\r\n\r\n\)", r"\* 3 FETCH \(.*\{15\}\r\nSubject: m5\r\n\r\n\)", r"\* 4 FETCH \(.*\{15\}\r\nSubject: m6\r\n\r\n\)", r"A654 OK .*"])
step("A999 UID FETCH 4:5 FLAGS", [r"\* 3 FETCH \(UID 5 FLAGS \(\\Seen \\Recent\)\)", r"A999 OK .*"])
# §6.4.7 COPY.
step("A003 COPY 2:4 MEETING", [r"A003 NO \[TRYCREATE\] .*"])
step("A004 CREATE MEETING", [r"A004 OK .*"])
step("A005 COPY 2:4 MEETING", [r"A005 OK \[COPYUID \d+ 2,5:6 1:3\] .*"])
# §6.4.2 CLOSE, §6.1.3 LOGOUT.
step("A341 CLOSE", [r"A341 OK .*"])
step("A023 LOGOUT", [r"\* BYE .*", r"A023 OK .*"])
print("transcripts ok")
"#;

#[test]
fn rfc_3501_section_6_examples() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{TRANSCRIPTS}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("transcripts ok"), "{out}");
}

const CONDSTORE: &str = r#"
_, step = raw_session()
step("a LOGIN %s %s" % (user, pw))
for i in range(3):
    step("b%d APPEND INBOX {12+}\r\nSubject: x\r\n" % i)
got = step("c CAPABILITY")
assert "CONDSTORE" in got[0], got
got = step("d ENABLE CONDSTORE")
assert got[0] == "* ENABLED CONDSTORE", got
got = step("e SELECT INBOX (CONDSTORE)")
hm = [l for l in got if "HIGHESTMODSEQ" in l]
assert hm, got
highest = int(re.search(r"HIGHESTMODSEQ (\d+)", hm[0]).group(1))
got = step("f STORE 2 +FLAGS (\\Seen)")
m = re.fullmatch(r"\* 2 FETCH \(FLAGS \(\\Seen \\Recent\) MODSEQ \((\d+)\)\)", got[0])
assert m and int(m.group(1)) > highest, got
modseq = int(m.group(1))
got = step("g FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest)
assert len(got) == 2 and got[0] == "* 2 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (%d))" % modseq, got
got = step("h UID STORE 1,2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % highest)
assert got[-1].startswith("h OK [MODIFIED 2]"), got
assert any(l.startswith("* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent) MODSEQ (") for l in got), got
got = step("i SEARCH MODSEQ %d" % modseq)
assert re.fullmatch(r"\* SEARCH 1 2 \(MODSEQ \d+\)", got[0]), got
got = step("j STATUS INBOX (HIGHESTMODSEQ)")
assert re.fullmatch(r'\* STATUS "INBOX" \(HIGHESTMODSEQ \d+\)', got[0]), got
print("condstore ok")
"#;

#[test]
fn condstore_enable_changedsince_unchangedsince_and_search_modseq() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{CONDSTORE}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("condstore ok"), "{out}");
}

const QRESYNC: &str = r#"
def session():
    _, step = raw_session()
    step("l LOGIN %s %s" % (user, pw))
    return step
a = session(); b = session()
for i in range(3):
    a("p%d APPEND INBOX {12+}\r\nSubject: x\r\n" % i)
got = a("s1 SELECT INBOX (QRESYNC (1 1))")
assert got[-1].startswith("s1 BAD"), got
assert a("e ENABLE QRESYNC")[0] == "* ENABLED QRESYNC"
got = a("s2 SELECT INBOX")
validity = re.search(r"UIDVALIDITY (\d+)", "\n".join(got)).group(1)
highest = int(re.search(r"HIGHESTMODSEQ (\d+)", "\n".join(got)).group(1))
b("b1 SELECT INBOX")
b("b2 STORE 1 +FLAGS (\\Flagged)")
b("b3 STORE 3 +FLAGS.SILENT (\\Deleted)")
b("b4 EXPUNGE")
got = a("n NOOP")
assert "* VANISHED 3" in got and not any("EXPUNGE" in l for l in got), got
assert any(re.fullmatch(r"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)", l) for l in got), got
got = a("f UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % highest)
assert got[0] == "* VANISHED (EARLIER) 3", got
assert re.fullmatch(r"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)", got[1]), got
got = a("s3 SELECT INBOX (QRESYNC (%s %d 1:3))" % (validity, highest))
assert got[0].startswith("* OK [CLOSED]"), got
assert "* VANISHED (EARLIER) 3" in got, got
assert any(re.fullmatch(r"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged( \\Recent)?\) MODSEQ \(\d+\)\)", l) for l in got), got
assert got[-1].startswith("s3 OK [READ-WRITE]"), got
print("qresync ok")
"#;

#[test]
fn qresync_reports_vanished_and_resynchronises_on_select() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{QRESYNC}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("qresync ok"), "{out}");
}

/// RFC 3501 §8, the sample session, on a mailbox built to match it: 18 messages, the
/// last 2 recent, 17 the first unseen, message 12 the IMAP WG minutes.
const SECTION_8: &str = r#"
session = raw_session
body = "".join("Line %02d of the minutes of the IMAP4rev1 working group meeting.\r\n" % i for i in range(92))
minutes = ("Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    "From: Terry Gray <gray@cac.washington.edu>\r\n"
    "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    "To: imap@cac.washington.edu\r\n"
    "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n" + body).encode()
_, other = session()
other("o1 LOGIN %s %s" % (user, pw))
for i in range(1, 17):
    msg = minutes if i == 12 else b"Subject: message %d\r\n\r\nbody\r\n" % i
    date = '"17-Jul-1996 02:44:25 -0700" ' if i == 12 else ""
    got = other("o%d APPEND INBOX (\\Seen) %s{%d+}\r\n%s" % (i + 1, date, len(msg), msg.decode()))
    assert got[-1].startswith("o%d OK" % (i + 1)), got
other("o20 SELECT INBOX")  # claims the 16 as \Recent for itself
other("o21 CLOSE")  # so that the next two stay \Recent for the session below
for i in (17, 18):
    other("o%d APPEND INBOX {27+}\r\nSubject: message %d\r\n\r\nbody\r\n" % (i + 10, i))
greeting, step = session()
assert re.fullmatch(r"\* OK .*\r\n", greeting), greeting
got = step("a001 login %s %s" % (user, pw))
assert re.fullmatch(r"a001 OK .*", got[-1]), got
got = step("a002 select inbox")
for want in [r"\* 18 EXISTS", r"\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft\)", r"\* 2 RECENT",
             r"\* OK \[UNSEEN 17\] .*", r"\* OK \[UIDVALIDITY \d+\] .*"]:
    assert any(re.fullmatch(want, l) for l in got), (want, got)
assert re.fullmatch(r"a002 OK \[READ-WRITE\] .*", got[-1]), got
got = step("a003 fetch 12 full")
want = ('* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 09:44:25 +0000" RFC822.SIZE %d '
        'ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) '
        '((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        '"<B27397-0100000@cac.washington.edu>") BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" %d 92))'
        % (len(minutes), len(body)))
# MIME types and parameter names are case-insensitive (RFC 2045): compare BODY so.
assert got[0][:got[0].index(" BODY (")] == want[:want.index(" BODY (")], (got[0], want)
assert got[0][got[0].index(" BODY ("):].lower() == want[want.index(" BODY ("):].lower(), (got[0], want)
assert re.fullmatch(r"a003 OK .*", got[-1]), got
got = step("a004 fetch 12 body[header]")
header = minutes[:minutes.index(b"\r\n\r\n") + 4].decode()
assert got[0] == "* 12 FETCH (BODY[HEADER] {%d}\r\n%s)" % (len(header), header), got
assert re.fullmatch(r"a004 OK .*", got[-1]), got
got = step("a005 store 12 +flags \\deleted")
assert got[0] == "* 12 FETCH (FLAGS (\\Seen \\Deleted))", got
assert re.fullmatch(r"a005 OK .*", got[-1]), got
got = step("a006 logout")
assert re.fullmatch(r"\* BYE .*", got[0]) and re.fullmatch(r"a006 OK .*", got[-1]), got
print("section 8 ok")
"#;

#[test]
fn rfc_3501_section_8_sample_session() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{SECTION_8}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("section 8 ok"), "{out}");
}

const CREATE_SPECIAL_USE: &str = r#"
m = connect()
caps = ok(m.capability())[0].decode().upper().split()
assert "CREATE-SPECIAL-USE" in caps, caps
typ, data = m._simple_command("CREATE", "Spam2 (USE (\\Junk))")
assert typ == "NO" and b"USEATTR" in data[-1], (typ, data)
typ, data = m._simple_command("CREATE", "Everything (USE (\\All))")
assert typ == "NO" and b"USEATTR" in data[-1], (typ, data)
ok(m.delete("Junk"))
typ, data = m._simple_command("CREATE", '"Spam 2" (USE (\\Junk))')
assert typ == "OK", (typ, data)
text = b"\n".join(ok(m.list('""', '"*"'))).decode()
assert '(\\Junk \\HasNoChildren) "/" "Spam 2"' in text, text
assert "Everything" not in text and "Spam2" not in text, text
print("special-use ok")
"#;

#[test]
fn create_special_use_gives_a_free_role_and_refuses_the_rest() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{CREATE_SPECIAL_USE}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("special-use ok"), "{out}");
}
