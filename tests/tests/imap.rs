//! IMAP black-box: python's imaplib drives a mailbox's whole life over IMAPS, two
//! sessions watch each other's changes, an IDLE client sees SMTP deliveries, and bad
//! input gets BAD/NO without ending the session.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use tests::imap::{PRELUDE, PW, run, setup, setup_with};

const LIFE: &str = r#"
MSG = (b"Date: Fri, 27 Nov 2026 04:17:22 +0000\r\n"
 b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n"
 b"To: alice@example.test, \"Bob B.\" <bob@example.org>\r\n"
 b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and a file\r\n"
 b"Message-ID: <m1@example.org>\r\n"
 b"MIME-Version: 1.0\r\n"
 b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
 b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
 b"Hallo J=C3=B6rg, the quarterly numbers.\r\n"
 b"--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n"
 b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n")
m = connect()
caps = ok(m.capability())[0].decode().upper().split()
for c in ("IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "UNSELECT", "NAMESPACE", "SPECIAL-USE", "LITERAL+", "ENABLE", "QUOTA"):
    assert c in caps, (c, caps)
assert "AUTH=PLAIN" not in caps, caps  # only before login
# LIST: the account's special-use mailboxes.
lst = ok(m.list('""', '"*"'))
text = b"\n".join(lst).decode()
assert '(\\HasNoChildren) "/" "INBOX"' in text, text
assert '(\\Sent \\HasNoChildren) "/" "Sent"' in text, text
assert '\\Junk' in text and '\\Trash' in text, text
# CREATE with a superior, and a non-ASCII name in modified UTF-7.
ok(m.create("Work/2026"))
ok(m.create('"Entw&APw-rfe"'))
typ, data = m.create("Work/2026")
assert typ == "NO" and b"ALREADYEXISTS" in data[0], data
text = b"\n".join(ok(m.list('""', '"*"'))).decode()
assert '(\\HasChildren) "/" "Work"' in text and '(\\HasNoChildren) "/" "Work/2026"' in text, text
assert 'Entw&APw-rfe' in text, text
text = b"\n".join(ok(m.list('""', '"%"'))).decode()
assert "Work/2026" not in text and "Work" in text, text
# APPEND with flags and a date: APPENDUID.
typ, data = m.append("Work/2026", "(\\Flagged $Work)", imaplib.Time2Internaldate(1795700000), MSG)
assert typ == "OK" and re.search(rb"\[APPENDUID \d+ 1\]", data[0]), data
typ, data = m.append("Nope", None, None, MSG)
assert typ == "NO" and b"TRYCREATE" in data[0], data
typ, data = m.status("Work/2026", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
assert re.search(rb"MESSAGES 1 RECENT 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1", data[0]), data
# SELECT.
typ, data = m.select("Work/2026")
assert typ == "OK" and data == [b"1"], data
assert m.untagged_responses.get("RECENT") == [b"1"], m.untagged_responses
assert "READ-WRITE" in m.untagged_responses, m.untagged_responses
# FETCH everything.
data = ok(m.fetch("1", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)"))
line = flat(data).decode()
assert "UID 1" in line and "\\Flagged" in line and "$Work" in line and "\\Recent" in line, line
assert "RFC822.SIZE %d" % len(MSG) in line, line
assert 'INTERNALDATE "' in line, line
assert '"=?utf-8?q?Gr=C3=BC=C3=9Fe?= and a file"' in line, line
assert '(NIL NIL "alice" "example.test")("Bob B." NIL "bob" "example.org")' in line, line
assert '("application" "pdf" ("name" "a.pdf") NIL NIL "base64" 12 NIL ("attachment" ("filename" "a.pdf")) NIL NIL) "mixed" ("boundary" "b1")' in line, line
# Sections; PEEK leaves \Seen alone, BODY[TEXT] sets it.
data = ok(m.fetch("1", "(BODY.PEEK[1])"))
assert data[0][1] == b"Hallo J=C3=B6rg, the quarterly numbers.", data
# BINARY (RFC 3516): the transfer encodings undone.
data = ok(m.fetch("1", "(BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2])"))
blob = flat(data)
assert "Hallo Jörg, the quarterly numbers.".encode() in blob and b"%PDF-1.4\n" in blob, blob
assert b"BINARY.SIZE[2] 9" in blob, blob
data = ok(m.fetch("1", "(BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[]<0.10>)"))
blob = flat(data)
assert b"Content-Disposition: attachment" in blob and b"Subject: =?utf-8?q?" in blob, blob
assert b"BODY[]<0> {10}" in blob, blob
assert b"\\Seen" not in flat(ok(m.fetch("1", "FLAGS"))), "PEEK set \\Seen"
data = ok(m.fetch("1", "(BODY[TEXT])"))
assert b"\\Seen" in flat(data), data
data = ok(m.fetch("1", "(RFC822)"))
assert data[0][1] == MSG, data
data = ok(m.uid("FETCH", "1:*", "(FLAGS)"))
assert b"UID 1" in flat(data), data
# SEARCH, with UTF-8 in a literal.
assert ok(m.search(None, "ALL")) == [b"1"]
assert ok(m.search(None, "FLAGGED", "FROM", "jorg")) == [b"1"]
assert ok(m.search(None, "UNSEEN")) == [b""]
assert ok(m.search(None, "OR", "DELETED", "KEYWORD", "$Work")) == [b"1"]
assert ok(m.search(None, "BODY", "quarterly")) == [b"1"]
assert ok(m.search(None, "NOT", "BODY", "quarterly")) == [b""]
assert ok(m.search(None, "LARGER", "100", "SENTON", "27-Nov-2026")) == [b"1"]
assert ok(m.uid("SEARCH", None, "UID", "1:*")) == [b"1"]
m.literal = "Grüße".encode()
assert ok(m.search("UTF-8", "SUBJECT")) == [b"1"]
assert ok(m.search(None, "HEADER", "Message-ID", "m1@example")) == [b"1"]
typ, data = m.search("KOI8-R", "ALL")
assert typ == "NO" and b"BADCHARSET" in data[0], data
# STORE, COPY (COPYUID), MOVE.
data = ok(m.store("1", "+FLAGS", "(\\Answered)"))
assert b"\\Answered" in flat(data) and b"\\Seen" in flat(data), data
data = ok(m.store("1", "-FLAGS.SILENT", "($Work)"))
assert data == [None], data
typ, data = m.copy("1", "INBOX")
assert typ == "OK" and re.search(rb"\[COPYUID \d+ 1 1\]", data[0]), data
ok(m.create("Archive2"))
typ, data = m.uid("MOVE", "1", "Archive2")
assert typ == "OK", (typ, data)
assert m.untagged_responses.get("EXPUNGE") == [b"1"], m.untagged_responses
typ, data = m.select("Archive2", readonly=True)
assert data == [b"1"], data
typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
assert typ == "NO", (typ, data)
ok(m.unselect() if hasattr(m, "unselect") else m._simple_command("UNSELECT"))
# EXPUNGE in INBOX.
typ, data = m.select("INBOX")
assert data == [b"1"], data
ok(m.store("1", "+FLAGS", "(\\Deleted)"))
ok(m.expunge())
assert m.untagged_responses.get("EXPUNGE") is None  # consumed by expunge()
typ, data = m.select("INBOX")
assert data == [b"0"], data
ok(m.close())
# RENAME takes children; DELETE refuses INBOX and parents.
ok(m.rename("Work", "Job"))
text = b"\n".join(ok(m.list('""', '"Job*"'))).decode()
assert "Job/2026" in text and "Work" not in b"\n".join(ok(m.list('""', '"*"'))).decode(), text
typ, data = m.delete("INBOX")
assert typ == "NO", data
typ, data = m.delete("Job")
assert typ == "NO", data
ok(m.delete("Job/2026"))
ok(m.delete("Job"))
ok(m.subscribe("Archive2"))
ok(m.unsubscribe("Archive2"))
assert "Archive2" not in b"\n".join(ok(m.lsub('""', '"*"'))).decode()
typ, data = m._simple_command("NAMESPACE")
assert typ == "OK", data
typ, data = m.getquotaroot("INBOX")
assert typ == "OK", data
print("BYE:", m.logout()[0])
"#;

#[test]
fn imaplib_drives_the_whole_life_of_a_mailbox() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{LIFE}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("BYE: BYE"), "{out}");
}

const TWO_SESSIONS: &str = r#"
a = connect(); b = connect()
for i in range(3):
    ok(a.append("INBOX", None, None, b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i)))
ok(a.select("INBOX")); ok(b.select("INBOX"))
# B flags message 2 and expunges message 1 (after marking it \Deleted).
ok(b.store("2", "+FLAGS", "(\\Flagged)"))
ok(b.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
ok(b.expunge())
# A's FETCH must not carry EXPUNGE (RFC 3501 §7.4.1), its NOOP then does.
typ, data = a.fetch("1:3", "(FLAGS)")
assert typ in ("OK", "NO"), (typ, data)
assert "EXPUNGE" not in a.untagged_responses, a.untagged_responses
a.untagged_responses.clear()
typ, data = a.noop()
assert a.untagged_responses.get("EXPUNGE") == [b"1"], a.untagged_responses
# Now message 2 (was 3) is unflagged, message 1 (was 2) flagged.
data = flat(ok(a.fetch("1:2", "(UID FLAGS)"))).decode()
assert re.search(r"1 \(UID 2 FLAGS \(\\Flagged", data), data
# An append by B shows up in A as EXISTS at A's next command.
ok(b.append("INBOX", None, None, b"Subject: n3\r\n\r\nbody\r\n"))
a.untagged_responses.clear()
a.noop()
assert a.untagged_responses.get("EXISTS") == [b"3"], a.untagged_responses
print("done")
"#;

#[test]
fn two_sessions_see_each_others_changes_when_the_rfc_allows() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{TWO_SESSIONS}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("done"), "{out}");
}

const IDLE: &str = r#"
import smtplib, select
m = connect()
ok(m.select("INBOX"))
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
line = m.readline()
assert line.startswith(b"+"), line
smtp_port = int(sys.argv[4])
start = time.time()
with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
    s.sendmail("someone@elsewhere.example", ["alice@example.test"], b"Subject: wake up\r\n\r\nhi\r\n")
delivered = time.time()
m.sock.settimeout(5)
line = m.readline()
seen = time.time()
assert re.match(rb"\* \d+ EXISTS", line), line
print("exists after %.3f s" % (seen - delivered))
m.send(b"DONE\r\n")
while True:
    l = m.readline()
    if l.startswith(tag):
        assert b"OK" in l, l
        break
print("done")
"#;

#[test]
fn an_idling_client_sees_smtp_delivery_within_a_second() {
    let (setup, _server) = setup_with("[spam]\ndnsbl = []\n", "");
    let script = format!("{PRELUDE}{IDLE}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
            &setup.ports.smtp.port().to_string(),
        ],
    );
    let secs: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("exists after "))
        .and_then(|l| l.strip_suffix(" s"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs < 1.0, "{out}");
}

const BAD_INPUT: &str = r#"
import functools
print = functools.partial(print, flush=True)
raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x")
f = raw.makefile("rb")
def send(b): raw.sendall(b)
def until(tag):
    lines = []
    while True:
        l = f.readline()
        assert l, lines
        lines.append(l)
        if l.startswith(tag + b" ") or l.startswith(b"* BYE"):
            return lines
f.readline()
# Before login: a huge synchronising literal is refused, the session goes on.
send(b"a1 LOGIN {1000000000}\r\n")
print("big-literal-unauth:", until(b"a1")[-1])
send(b"a2 LOGIN %s %s\r\n" % (user.encode(), pw.encode()))
print("login:", until(b"a2")[-1])
send(b"a3 APPEND INBOX {1000000000}\r\n")
print("big-literal:", until(b"a3")[-1])
send(b"a4 FROBNICATE\r\n")
print("unknown:", until(b"a4")[-1])
send(b"a5 FETCH\r\n")
print("noargs:", until(b"a5")[-1])
send(b"a6 SELECT INBOX\r\n"); until(b"a6")
send(b"a7 APPEND INBOX {20+}\r\nSubject: x\r\n\r\nbody\r\n\r\n"); print("append:", until(b"a7")[-1])
send(b"a8 FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30]\r\n")
print("deep:", until(b"a8")[-1])
seq = ",".join(str(i % 5 + 1) for i in range(100000)).encode()
send(b"a9 UID FETCH " + seq + b" (FLAGS)\r\n")
print("bigset:", until(b"a9")[-1])
send(b"b1 FETCH 99 FLAGS\r\n"); print("range:", until(b"b1")[-1])
send(b'b2 SELECT "unterminated\r\n'); print("quote:", until(b"b2")[-1])
send(b"b3 NOOP\r\n"); print("still:", until(b"b3")[-1])
send(b"b4 APPEND INBOX {1000000000+}\r\n"); print("nonsync:", until(b"b4")[-1])
"#;

#[test]
fn bad_input_gets_bad_or_no_and_the_session_goes_on() {
    let (setup, mut server) = setup();
    let script = format!("{PRELUDE}{BAD_INPUT}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    let expect = [
        "big-literal-unauth: b'a1 NO [TOOBIG]",
        "login: b'a2 OK",
        "big-literal: b'a3 NO [TOOBIG]",
        "unknown: b'a4 BAD Unknown command FROBNICATE",
        "noargs: b'a5 BAD Invalid arguments for FETCH",
        "append: b'a7 OK [APPENDUID",
        "deep: b'a8 OK",
        "bigset: b'a9 OK",
        "range: b'b1 BAD Message sequence number 99",
        "quote: b'b2 BAD",
        "still: b'b3 OK",
        "nonsync: b'* BYE [TOOBIG]",
    ];
    for e in expect {
        assert!(out.contains(e), "missing {e:?} in\n{out}");
    }
    // The server is still fine.
    server
        .wait_for_log("postern is running", Duration::from_secs(1))
        .unwrap();
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// mbsync (isync) against Postern: a 500-message account synced to a Maildir, then
/// changes on both sides (new messages, flags, deletions) synced both ways; both
/// sides must then hold the same messages with the same flags and contents.
const MBSYNC: &str = r#"
import os, subprocess, glob, email
work, cert = sys.argv[4], sys.argv[5]
N = 500
# The 500 messages go in as one pipelined burst of LITERAL+ APPENDs.
raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x")
f = raw.makefile("rb")
f.readline()
burst = b"l LOGIN %s %s\r\n" % (user.encode(), pw.encode())
for i in range(N):
    flags = b"(\\Seen) " if i % 3 == 0 else (b"(\\Flagged) " if i % 7 == 0 else b"")
    msg = b"Message-ID: <n%d@remote>\r\nSubject: message %d\r\n\r\nbody of %d\r\n" % (i, i, i)
    burst += b"a%d APPEND INBOX %s{%d+}\r\n%s\r\n" % (i, flags, len(msg), msg)
raw.sendall(burst)
done = 0
while done < N:
    line = f.readline()
    assert line, "connection closed"
    if line.startswith(b"a"):
        assert b" OK " in line, line
        done += 1
raw.close()
rc = os.path.join(work, "mbsyncrc")
mail = os.path.join(work, "mail")
os.makedirs(mail, exist_ok=True)
with open(rc, "w") as f:
    f.write(f"""IMAPAccount postern
Host 127.0.0.1
Port {port}
User {user}
Pass {pw}
SSLType IMAPS
CertificateFile {cert}
AuthMechs LOGIN

IMAPStore remote
Account postern

MaildirStore local
Path {mail}/
Inbox {mail}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
def mbsync():
    r = subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True, timeout=300)
    print("mbsync exit", r.returncode, r.stdout.strip()[-300:], r.stderr.strip()[-2000:])
    assert r.returncode == 0, r.stderr
    assert "rror" not in r.stderr and "arning" not in r.stderr, r.stderr
mbsync()
def local_files():
    return glob.glob(os.path.join(mail, "INBOX", "cur", "*")) + glob.glob(os.path.join(mail, "INBOX", "new", "*"))
assert len(local_files()) == N, len(local_files())
# Local changes: 5 new messages, flags on 10, 5 deleted.
files = sorted(local_files(), key=lambda p: open(p, "rb").read())
for i in range(5):
    with open(os.path.join(mail, "INBOX", "new", "local%d.%d.host" % (i, os.getpid())), "wb") as f:
        f.write(b"Message-ID: <l%d@local>\r\nSubject: local %d\r\n\r\nwritten locally\r\n" % (i, i))
def msgid(path):
    return email.message_from_bytes(open(path, "rb").read())["Message-ID"]
by_id = {msgid(p): p for p in files}
for i in range(10, 20):
    p = by_id["<n%d@remote>" % i]
    base = os.path.basename(p).split(":2,")[0]
    flags = set(os.path.basename(p).split(":2,")[1]) if ":2," in p else set()
    flags |= {"F", "R"}
    os.rename(p, os.path.join(mail, "INBOX", "cur", base + ":2," + "".join(sorted(flags))))
for i in range(20, 25):
    os.remove(by_id["<n%d@remote>" % i])
# Remote changes: 5 new messages, \Answered on 10 others, 5 expunged.
m = connect()
for i in range(5):
    ok(m.append("INBOX", None, None, b"Message-ID: <r%d@remote>\r\nSubject: remote %d\r\n\r\nwritten remotely\r\n" % (i, i)))
ok(m.select("INBOX"))
uids = {}
for line in ok(m.uid("SEARCH", None, "ALL"))[0].split():
    pass
data = ok(m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
for d in data:
    if isinstance(d, tuple):
        uid = re.search(rb"UID (\d+)", d[0]).group(1).decode()
        mid = d[1].decode().split(":", 1)[1].strip()
        uids[mid] = uid
ok(m.uid("STORE", ",".join(uids["<n%d@remote>" % i] for i in range(30, 40)), "+FLAGS", "(\\Answered)"))
ok(m.uid("STORE", ",".join(uids["<n%d@remote>" % i] for i in range(40, 45)), "+FLAGS", "(\\Deleted)"))
ok(m.expunge())
m.logout()
mbsync()
# Both sides now: same Message-IDs, flags and bodies.
letters = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
local = {}
for p in local_files():
    raw = open(p, "rb").read()
    fl = os.path.basename(p).split(":2,")[1] if ":2," in p else ""
    # Maildir keeps LF line ends (mbsync converts); compare the lines themselves.
    body = b"".join(l for l in raw.replace(b"\r\n", b"\n").splitlines(True) if not l.startswith(b"X-TUID:"))
    local[msgid(p)] = (frozenset(letters[c] for c in fl if c in letters), body)
m = connect(); ok(m.select("INBOX"))
remote = {}
data = ok(m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])"))
for d in data:
    if isinstance(d, tuple):
        fl = re.search(rb"FLAGS \(([^)]*)\)", d[0]).group(1).decode().split()
        body = b"".join(l for l in d[1].replace(b"\r\n", b"\n").splitlines(True) if not l.startswith(b"X-TUID:"))
        remote[email.message_from_bytes(d[1])["Message-ID"]] = (frozenset(f for f in fl if f != "\\Recent"), body)
assert len(remote) == N + 10 - 10, len(remote)
assert set(local) == set(remote), (set(local) ^ set(remote))
for k in local:
    assert local[k] == remote[k], (k, local[k], remote[k])
assert "<l3@local>" in remote and "<r3@remote>" in local
assert "<n22@remote>" not in remote and "<n42@remote>" not in local
assert "\\Flagged" in remote["<n15@remote>"][0] and "\\Answered" in local["<n35@remote>"][0]
print("identical", len(local))
"#;

#[test]
fn mbsync_syncs_500_messages_both_ways() {
    tests::harness::ensure_tool("mbsync", "isync").unwrap();
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{MBSYNC}");
    let work = setup.dir.path().join("mbsync");
    std::fs::create_dir_all(&work).unwrap();
    let cert = setup.data_dir.join("tls").join("cert.pem");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
            &work.to_string_lossy(),
            &cert.to_string_lossy(),
        ],
    );
    assert!(out.contains("identical 500"), "{out}");
}

/// An mbox of `n` messages: LF line ends, mutt's Status/X-Status flags on some, a
/// `>From ` line (mboxrd quoting) in each body.
fn write_mbox(path: &std::path::Path, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str("From sender@example.org Fri Nov 27 04:17:22 2026\n");
        text.push_str(&format!(
            "Message-ID: <mbox{i}@example.org>\nSubject: old message {i}\n"
        ));
        if i % 4 == 0 {
            text.push_str("Status: RO\n");
        }
        if i % 10 == 0 {
            text.push_str("X-Status: F\n");
        }
        text.push_str(&format!("\nLine one of {i}.\n>From the archive.\n\n"));
    }
    std::fs::write(path, text).unwrap();
}

const CHECK_IMPORT: &str = r#"
m = connect()
typ, data = m.select("Old", readonly=True)
assert data == [b"2000"], data
data = flat(ok(m.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])"))).decode()
assert "\\Seen" in data and "\\Flagged" in data, data
assert 'INTERNALDATE "27-Nov-2026 04:17:22 +0000"' in data, data
assert "Subject: old message 0\r\n" in data and "\r\nFrom the archive.\r\n" in data, data
assert ok(m.search(None, "FLAGGED")) == [b" ".join(str(i + 1).encode() for i in range(0, 2000, 10))]
typ, data = m.select("Imported", readonly=True)
assert data == [b"3"], data
flags = {}
for d in ok(m.fetch("1:3", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")):
    if isinstance(d, tuple):
        subj = d[1].decode().strip()
        flags[subj] = sorted(re.search(r"FLAGS \(([^)]*)\)", d[0].decode()).group(1).split())
# No session has seen them yet: EXAMINE shows them \Recent without claiming them
# (RFC 3501 §6.3.2), so the next SELECT still gets them.
assert flags == {"Subject: maildir one": ["\\Flagged", "\\Recent", "\\Seen"], "Subject: maildir two": ["\\Answered", "\\Recent"], "Subject: maildir three": ["\\Recent"]}, flags
typ, data = m.select("Imported")
assert ok(m.search(None, "RECENT")) == [b"1 2 3"]
print("imported ok")
"#;

#[test]
fn import_of_an_mbox_and_a_maildir_while_serve_runs_resumes_without_duplicates() {
    let (setup, _server) = setup();
    let dir = setup.dir.path();
    let full = dir.join("old.mbox");
    let half = dir.join("half.mbox");
    write_mbox(&full, 2000);
    write_mbox(&half, 1000);
    // An "interrupted" import (the first half), then the whole file: only the rest.
    let out = setup
        .cli_ok(
            &[
                "import",
                "mbox",
                "alice@example.test",
                &half.to_string_lossy(),
                "--mailbox",
                "Old",
            ],
            None,
        )
        .unwrap();
    assert!(out.contains("Imported 1000 messages"), "{out}");
    let out = setup
        .cli_ok(
            &[
                "import",
                "mbox",
                "alice@example.test",
                &full.to_string_lossy(),
                "--mailbox",
                "Old",
            ],
            None,
        )
        .unwrap();
    assert!(
        out.contains("Imported 1000 messages") && out.contains("1000 were already there"),
        "{out}"
    );
    // A Maildir with flags in the file names.
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(
        maildir.join("cur/1.1.host:2,FS"),
        "Subject: maildir one\n\nbody\n",
    )
    .unwrap();
    std::fs::write(
        maildir.join("cur/2.2.host:2,R"),
        "Subject: maildir two\n\nbody\n",
    )
    .unwrap();
    std::fs::write(
        maildir.join("new/3.3.host"),
        "Subject: maildir three\n\nbody\n",
    )
    .unwrap();
    let out = setup
        .cli_ok(
            &[
                "import",
                "maildir",
                "alice@example.test",
                &maildir.to_string_lossy(),
                "--mailbox",
                "Imported",
            ],
            None,
        )
        .unwrap();
    assert!(out.contains("Imported 3 messages"), "{out}");
    let bad = setup
        .cli(
            &[
                "import",
                "maildir",
                "alice@example.test",
                &full.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a Maildir"));
    let script = format!("{PRELUDE}{CHECK_IMPORT}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("imported ok"), "{out}");
}

const SESSION_LIMIT: &str = r#"
a = connect(); b = connect()
c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
try:
    c.login(user, pw)
    print("third: OK")
except imaplib.IMAP4.error as e:
    print("third:", e)
a.logout()
time.sleep(0.3)
c.login(user, pw)
print("after logout: OK")
"#;

#[test]
fn an_account_over_its_session_limit_is_refused_at_login() {
    let (setup, _server) = setup_with("", "max_sessions_per_account = 2");
    let script = format!("{PRELUDE}{SESSION_LIMIT}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(
        out.contains("third: b'[LIMIT] Too many sessions for this account'"),
        "{out}"
    );
    assert!(out.contains("after logout: OK"), "{out}");
}

const STARTTLS: &str = r#"
plain = int(sys.argv[4])
m = imaplib.IMAP4("127.0.0.1", plain)
caps = m.capabilities
assert "STARTTLS" in caps and "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps, caps
try:
    m.login(user, pw)
    raise SystemExit("LOGIN worked in the clear")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
m.starttls(ssl_context=ctx)
caps = ok(m.capability())[0].decode().split()
assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps and "AUTH=PLAIN" in caps, caps
# AUTHENTICATE PLAIN through the "+" continuation (imaplib sends no initial response).
typ, data = m.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + pw.encode())
assert typ == "OK", (typ, data)
ok(m.select("INBOX"))
m.logout()
# SASL-IR: the initial response on the command line.
import base64
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x")
f = s.makefile("rb"); f.readline()
s.sendall(b"x AUTHENTICATE PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()) + b"\r\n")
line = f.readline()
assert line.startswith(b"x OK"), line
print("starttls ok")
"#;

#[test]
fn plaintext_imap_offers_starttls_and_refuses_login_before_it() {
    let plain = tests::harness::free_port().unwrap();
    let (setup, _server) = setup_with("", &format!("listen = [\"127.0.0.1:{plain}\"]"));
    let script = format!("{PRELUDE}{STARTTLS}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
            &plain.to_string(),
        ],
    );
    assert!(out.contains("starttls ok"), "{out}");
}

const QUOTA: &str = r#"
m = connect()
msg = b"Subject: big\r\n\r\n" + b"x" * 1484
assert len(msg) == 1500
typ, data = m.append("INBOX", None, None, msg)
assert typ == "OK", (typ, data)
typ, data = m.append("INBOX", None, None, msg)
assert typ == "NO" and b"OVERQUOTA" in data[0], (typ, data)
typ, data = m.getquotaroot("INBOX")
assert typ == "OK" and data == [[b'"INBOX" ""'], [b'"" (STORAGE 2 2)']], data
print("quota ok")
"#;

#[test]
fn append_over_the_account_quota_gets_overquota() {
    let (setup, _server) = setup();
    setup
        .cli_ok(&["user", "quota", "alice@example.test", "2K"], None)
        .unwrap();
    let script = format!("{PRELUDE}{QUOTA}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            "alice@example.test",
            PW,
        ],
    );
    assert!(out.contains("quota ok"), "{out}");
}
