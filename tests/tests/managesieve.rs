#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
//! ManageSieve black-box (RFC 5804): Debian's sieve-connect manages a script's whole
//! life over STARTTLS, a python client speaks every command by hand (the RFC's own
//! examples among them), and a script stored over ManageSieve survives a restart.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tests::harness::ensure_tool;
use tests::imap::{PW, run, setup};

const USER: &str = "alice@example.test";

/// Runs sieve-connect against the server as alice, over STARTTLS (the self-signed
/// certificate not verified, plaintext refused), the password on stdin.
fn sieve_connect(port: u16, args: &[&str]) -> (Output, String) {
    let tool = ensure_tool("sieve-connect", "sieve-connect").unwrap();
    let port = port.to_string();
    let mut child = Command::new(tool)
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--nosrv",
            "--user",
            USER,
            "--passwordfd",
            "0",
            "--notlsverify",
            "--noclearchan",
            "--authmech",
            "PLAIN",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PW}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// The lines sieve-connect's `--list` printed, one per script.
fn listed(port: u16) -> Vec<String> {
    let (out, text) = sieve_connect(port, &["--list"]);
    assert!(out.status.success(), "{text}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A vacation script with UTF-8 in it, ending in a newline (sieve-connect's download
/// keeps the bytes exact only then: it reads the literal line by line).
const VACATION: &str = "require [\"vacation\", \"fileinto\"];\n\
# Grüße aus dem Urlaub\n\
if header :contains \"subject\" \"urgent\" {\n\
    fileinto \"Urgent\";\n\
}\n\
vacation :days 7 :subject \"Away\" \"I am away until Monday. Grüße!\";\n";

#[test]
fn sieve_connect_round_trip() {
    let (setup, server) = setup();
    let port = setup.ports.managesieve.port();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("vacation.sieve");
    std::fs::write(&local, VACATION).unwrap();
    let local = local.to_str().unwrap();

    // Upload, then it is listed, not active.
    let (out, text) = sieve_connect(
        port,
        &[
            "--upload",
            "--localsieve",
            local,
            "--remotesieve",
            "vacation",
        ],
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(listed(port), vec!["\"vacation\"".to_string()]);

    // CHECKSCRIPT of the same file.
    let (out, text) = sieve_connect(port, &["--checkscript", "--localsieve", local]);
    assert!(out.status.success(), "{text}");

    // Activate: marked ACTIVE.
    let (out, text) = sieve_connect(port, &["--activate", "--remotesieve", "vacation"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(listed(port), vec!["\"vacation\" ACTIVE".to_string()]);

    // Download: the same bytes.
    let back = dir.path().join("back.sieve");
    let (out, text) = sieve_connect(
        port,
        &[
            "--download",
            "--remotesieve",
            "vacation",
            "--localsieve",
            back.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(std::fs::read(&back).unwrap(), VACATION.as_bytes());

    // The active script cannot be deleted; deactivated, it can.
    let (out, text) = sieve_connect(port, &["--delete", "--remotesieve", "vacation"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("(ACTIVE)"), "{text}");
    let (out, text) = sieve_connect(port, &["--deactivate"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(listed(port), vec!["\"vacation\"".to_string()]);
    let (out, text) = sieve_connect(port, &["--delete", "--remotesieve", "vacation"]);
    assert!(out.status.success(), "{text}");
    assert!(listed(port).is_empty());

    // A syntax error on line 3: refused, the line number in sieve-connect's output,
    // nothing stored.
    let broken = dir.path().join("broken.sieve");
    std::fs::write(
        &broken,
        "require \"fileinto\";\n# sort lists\nif header :contains \"list-id\" \"x\" { fileinto \"Lists\" }\n",
    )
    .unwrap();
    let (out, text) = sieve_connect(
        port,
        &[
            "--upload",
            "--localsieve",
            broken.to_str().unwrap(),
            "--remotesieve",
            "broken",
        ],
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("PUTSCRIPT(broken) failed: NO \"line 3, column"),
        "{text}"
    );
    assert!(listed(port).is_empty());

    // The changes are in the server's activity log.
    let log = server.log();
    for needle in [
        "ManageSieve: script stored",
        "ManageSieve: active script set",
        "ManageSieve: script deleted",
    ] {
        assert!(log.contains(needle), "{needle} missing from:\n{log}");
    }
    assert!(log.contains(USER), "{log}");
}

/// A raw ManageSieve client: reads whole responses (literals included), STARTTLS,
/// and parses capability lists and LISTSCRIPTS (quoted-escaped or literal names).
const PRELUDE: &str = r##"
import socket, ssl, sys, re, base64
port = int(sys.argv[1]); user = sys.argv[2]; pw = sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def b64plain(authzid, authcid, password):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, authcid, password)).encode()).decode()

def final(raw):
    """The last line of a response (its OK/NO/BYE), as text."""
    return raw[:-2].rsplit(b"\r\n", 1)[-1].decode()

class Conn:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.f = self.sock.makefile("rb")
        self.greeting = self.response()

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def response(self):
        """Every byte up to the end of the OK/NO/BYE line, a literal's bytes read by count."""
        raw = b""; logical = b""
        while True:
            l = self.f.readline()
            assert l, ("connection closed", raw)
            raw += l; logical += l
            m = re.search(rb"\{(\d+)\+?\}\r\n$", l)
            if m:
                data = self.f.read(int(m.group(1)))
                raw += data; logical += data
                continue
            if re.match(rb"(OK|NO|BYE)\b", logical):
                return raw
            logical = b""

    def cmd(self, line):
        self.send(line if isinstance(line, bytes) else line.encode())
        self.send(b"\r\n")
        return self.response()

    def ok(self, line):
        r = self.cmd(line)
        assert final(r).startswith("OK"), (line, r)
        return r

    def no(self, line, code=None):
        r = self.cmd(line)
        last = final(r)
        assert last.startswith("NO"), (line, r)
        if code:
            assert last.startswith("NO (%s) " % code), (line, code, r)
        return last

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert final(r).startswith("OK"), r
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mail.example.test")
        self.f = self.sock.makefile("rb")
        # RFC 5804 §2.2: the capabilities come again, unprompted.
        return self.response()

    def login(self):
        self.ok('AUTHENTICATE "PLAIN" "%s"' % b64plain("", user, pw))

def caps(raw):
    out = {}
    for l in raw.decode().split("\r\n"):
        m = re.match(r'^"([^"]+)"(?: "(.*)")?$', l)
        if m:
            out[m.group(1)] = m.group(2)
    return out

def strings_list(raw):
    """LISTSCRIPTS: [(name, active)], names quoted (with escapes) or literal."""
    out = []; i = 0
    while not re.match(rb"(OK|NO)\b", raw[i:]):
        if raw[i:i+1] == b'"':
            j = i + 1; name = b""
            while raw[j:j+1] != b'"':
                if raw[j:j+1] == b"\\":
                    j += 1
                    assert raw[j:j+1] in (b'"', b"\\"), raw
                name += raw[j:j+1]; j += 1
            i = j + 1
        else:
            m = re.match(rb"\{(\d+)\}\r\n", raw[i:])
            assert m, raw[i:]
            start = i + m.end(); name = raw[start:start + int(m.group(1))]; i = start + int(m.group(1))
        active = raw[i:].startswith(b" ACTIVE")
        if active:
            i += 7
        assert raw[i:i+2] == b"\r\n", raw[i:]
        i += 2
        out.append((name.decode(), active))
    return out
"##;

const BY_HAND: &str = r##"
c = Conn()
# Before TLS: no mechanism, STARTTLS offered (RFC 5804 §1.7).
pre = caps(c.greeting)
assert final(c.greeting).startswith("OK"), c.greeting
assert pre["IMPLEMENTATION"] == "Postern", pre
assert pre["SASL"] == "", pre
assert "STARTTLS" in pre, pre
assert pre["VERSION"] == "1.0", pre
assert pre["MAXREDIRECTS"].isdigit(), pre
sieve_ext = pre["SIEVE"].split()
for ext in ("fileinto", "vacation", "envelope", "imap4flags", "comparator-i;ascii-numeric"):
    assert ext in sieve_ext, (ext, sieve_ext)
assert "enotify" not in sieve_ext, sieve_ext
assert caps(c.ok("CAPABILITY")) == pre
c.no("LISTSCRIPTS")

post = caps(c.starttls())
assert post["SASL"] == "PLAIN", post
assert "STARTTLS" not in post, post
assert post["SIEVE"] == pre["SIEVE"], post
c.no("STARTTLS")

# AUTHENTICATE: a wrong password, then the initial response inline.
assert c.no('AUTHENTICATE "PLAIN" "%s"' % b64plain("", user, "Wrong-Pass-1")) == 'NO "Authentication failed"'
assert c.no('AUTHENTICATE "PLAIN" "%s"' % b64plain("someone@example.test", user, pw)) == 'NO "Authentication failed"'
c.no('AUTHENTICATE "DIGEST-MD5"')
c.login()
owner = caps(c.ok("CAPABILITY"))
assert owner.get("OWNER") == user, owner
c.no('AUTHENTICATE "PLAIN" "%s"' % b64plain("", user, pw))
# UNAUTHENTICATE (RFC 5804 §2.14.1), then AUTHENTICATE by continuation.
c.ok("UNAUTHENTICATE")
assert c.no("LISTSCRIPTS") == 'NO "Authenticate first"'
c.send('AUTHENTICATE "PLAIN"\r\n')
assert c.f.readline() == b'""\r\n'
assert final(c.cmd('"%s"' % b64plain(user, user, pw))).startswith("OK")
c.ok("LISTSCRIPTS")

# HAVESPACE (RFC 5804 §2.5).
c.ok('HAVESPACE "myscript" 999')
assert c.no('HAVESPACE "myscript" 999999999', "QUOTA/MAXSIZE")

# PUTSCRIPT, RFC 5804 §2.6 first example: refused, the compiler's reason told.
last = c.no('Putscript "foo" {31+}\r\n#comment\r\nInvalidSieveCommand\r\n')
assert "invalidsievecommand" in last.lower(), last
# The second example, verbatim, uses "envelope" without requiring it (RFC 5228 §5.4):
# refused at line 3. With the require it is stored.
rfc2 = (b'require ["fileinto"];\r\n\r\nif envelope :contains "to" "tmartin+sent" {\r\n'
        b'  fileinto "INBOX.sent";\r\n}')
# (The RFC announces {110+}, which is not its text's length: the length is counted here.)
last = c.no(b'Putscript "mysievescript" {%d+}\r\n%s\r\n' % (len(rfc2), rfc2))
assert last.startswith('NO "line 3, column'), last
assert "envelope" in last, last
script = rfc2.replace(b'["fileinto"]', b'["fileinto", "envelope"]')
c.ok(b'Putscript "mysievescript" {%d+}\r\n%s\r\n' % (len(script), script))
# The third example: over the size limit.
big = b'redirect "111@example.net";\r\n' + b"# " + b"x" * 65536 + b"\r\n"
c.no(b'Putscript "myforwards" {%d+}\r\n%s\r\n' % (len(big), big), "QUOTA/MAXSIZE")
# A literal far over the limit is read and dropped; the session goes on.
huge = b"#" * 300000
c.no(b'PUTSCRIPT "huge" {%d+}\r\n%s\r\n' % (len(huge), huge), "QUOTA/MAXSIZE")
c.ok("NOOP")
# The synchronising form {N}: no continuation is sent, the client goes on at once.
sync = "require \"vacation\";\r\nvacation \"Gone fishing. Grüße\";\r\n".encode()
c.send(b'PUTSCRIPT "sync" {%d}\r\n' % len(sync))
c.sock.settimeout(0.5)
try:
    early = c.sock.recv(100)
except (socket.timeout, TimeoutError):
    early = None
c.sock.settimeout(20)
assert early is None, early
c.send(sync + b"\r\n")
assert final(c.response()).startswith("OK")
# A quoted string, with escapes.
c.ok(r'PUTSCRIPT "quoted" "require \"fileinto\"; fileinto \"Lists\"; # back\\slash"')
# Names that need escaping, and UTF-8 names.
c.ok(r'PUTSCRIPT "clever\"script" "keep;"')
c.ok(r'PUTSCRIPT "back\\slash" "keep;"')
c.ok('PUTSCRIPT "Grüße" "keep;"')
c.no('PUTSCRIPT "" "keep;"')
c.no(b'PUTSCRIPT {5+}\r\na\r\nb\r "keep;"')
c.no(b'PUTSCRIPT "latin1 \xe9" "keep;"')

# CHECKSCRIPT (RFC 5804 §2.12): its example, a good script, and an error on line 3.
c.no("CheckScript {31+}\r\n#comment\r\nInvalidSieveCommand\r\n")
c.ok(b"CHECKSCRIPT {%d+}\r\n%s\r\n" % (len(script), script))
bad3 = b'keep;\r\n# two\r\nif true { stop }\r\n'
last = c.no(b"CHECKSCRIPT {%d+}\r\n%s\r\n" % (len(bad3), bad3))
assert last.startswith('NO "line 3, column'), last

# SETACTIVE (§2.8), LISTSCRIPTS (§2.7) with the ACTIVE marker.
c.ok('Setactive "mysievescript"')
c.no('Setactive "baz"', "NONEXISTENT")
listed = strings_list(c.ok("Listscripts"))
assert sorted(listed) == sorted([
    ("Grüße", False), ("back\\slash", False), ('clever"script', False),
    ("mysievescript", True), ("quoted", False), ("sync", False)]), listed

# GETSCRIPT (§2.9): a literal, byte-exact.
r = c.ok('Getscript "mysievescript"')
assert r.startswith(b"{%d}\r\n%s\r\nOK" % (len(script), script)), r
r = c.ok('GETSCRIPT "sync"')
assert r.startswith(b"{%d}\r\n%s\r\nOK" % (len(sync), sync)), r
r = c.ok('GETSCRIPT "quoted"')
quoted = b'require "fileinto"; fileinto "Lists"; # back\\slash'
assert r.startswith(b"{%d}\r\n%s\r\nOK" % (len(quoted), quoted)), r
r = c.ok(r'GETSCRIPT "clever\"script"')
assert r.startswith(b"{5}\r\nkeep;\r\nOK"), r
r = c.ok(b'GETSCRIPT {13+}\r\nclever"script')
assert r.startswith(b"{5}\r\nkeep;\r\nOK"), r
c.no('GETSCRIPT "nope"', "NONEXISTENT")

# RENAMESCRIPT (§2.11.1): the active script stays active.
c.ok('Renamescript "mysievescript" "renamed"')
c.no('Renamescript "quoted" "renamed"', "ALREADYEXISTS")
c.no('Renamescript "nope" "other"', "NONEXISTENT")
listed = dict(strings_list(c.ok("LISTSCRIPTS")))
assert listed.get("renamed") is True and "mysievescript" not in listed, listed

# DELETESCRIPT (§2.10): not the active one, not an unknown one.
c.no('Deletescript "renamed"', "ACTIVE")
c.no('Deletescript "nope"', "NONEXISTENT")
c.ok('DELETESCRIPT "sync"')
# SETACTIVE "": nothing active, and then the script can go.
c.ok('SETACTIVE ""')
assert not any(a for _, a in strings_list(c.ok("LISTSCRIPTS")))
c.ok('DELETESCRIPT "renamed"')
names = [n for n, _ in strings_list(c.ok("LISTSCRIPTS"))]
assert "renamed" not in names and "sync" not in names, names

# NOOP with a tag (§2.13).
assert final(c.ok('NOOP "STARTTLS-SYNC-42"')) == 'OK (TAG "STARTTLS-SYNC-42") "Done"'
# Unknown commands and wrong arguments.
assert c.no("FROBNICATE") == 'NO "Unknown command"'
c.no('GETSCRIPT unquoted')
c.no('HAVESPACE "x" big')

# UNAUTHENTICATE, then commands that need a login are refused.
c.ok("UNAUTHENTICATE")
assert c.no('GETSCRIPT "quoted"') == 'NO "Authenticate first"'
assert c.no('PUTSCRIPT "x" "keep;"') == 'NO "Authenticate first"'
assert "OWNER" not in caps(c.ok("CAPABILITY"))
# LOGOUT: OK, then the server closes.
assert final(c.ok("LOGOUT")).startswith("OK")
assert c.f.read() == b""
print("done")
"##;

#[test]
fn managesieve_by_hand() {
    let (setup, _server) = setup();
    let script = format!("{PRELUDE}{BY_HAND}");
    let out = run(
        &script,
        &[&setup.ports.managesieve.port().to_string(), USER, PW],
    );
    assert!(out.contains("done"), "{out}");
}

const PUT_AND_PLAINTEXT: &str = r##"
c = Conn()
# No password in the clear (RFC 5804 §2.1 lets the server refuse): ENCRYPT-NEEDED,
# by continuation too, before STARTTLS.
c.no('AUTHENTICATE "PLAIN" "%s"' % b64plain("", user, pw), "ENCRYPT-NEEDED")
c.no('AUTHENTICATE "PLAIN"', "ENCRYPT-NEEDED")
c.no('AUTHENTICATE "PLAIN" {%d+}\r\n%s' % (len(b64plain("", user, pw)), b64plain("", user, pw)), "ENCRYPT-NEEDED")
c.no("LISTSCRIPTS")
c.starttls()
c.login()
c.ok(b'PUTSCRIPT "kept" {%d+}\r\n%s\r\n' % (len(KEPT), KEPT))
c.ok('SETACTIVE "kept"')
c.ok("LOGOUT")
print("stored")
"##;

const GET_AFTER_RESTART: &str = r##"
c = Conn()
c.starttls()
c.login()
r = c.ok('GETSCRIPT "kept"')
assert r.startswith(b"{%d}\r\n%s\r\nOK" % (len(KEPT), KEPT)), r
assert strings_list(c.ok("LISTSCRIPTS")) == [("kept", True)]
c.ok("LOGOUT")
print("fetched")
"##;

/// The script: CRLF and bare LF line ends, UTF-8, a tab.
const KEPT: &str = r##"
KEPT = ("require [\"fileinto\", \"imap4flags\"];\r\n"
        "# Sortierung für Listen\n"
        "if header :contains \"List-Id\" \"dev\" {\r\n\tfileinto \"Dev\";\r\n\taddflag \"$List\";\r\n}\r\n").encode()
"##;

#[test]
fn plaintext_authenticate_is_refused_and_a_stored_script_survives_a_restart() {
    let (setup, mut server) = setup();
    let port = setup.ports.managesieve.port().to_string();
    let out = run(
        &format!("{PRELUDE}{KEPT}{PUT_AND_PLAINTEXT}"),
        &[&port, USER, PW],
    );
    assert!(out.contains("stored"), "{out}");
    // What GETSCRIPT returns after a restart is what the store holds.
    server.stop(Duration::from_secs(15)).unwrap();
    let _server = setup.serve().unwrap();
    let out = run(
        &format!("{PRELUDE}{KEPT}{GET_AFTER_RESTART}"),
        &[&port, USER, PW],
    );
    assert!(out.contains("fetched"), "{out}");
}
