//! Helpers for the IMAP black-box tests: a server with a user, and the python
//! prelude (imaplib connection, reply checks, a line-by-line raw session).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use crate::harness::{Server, Setup, python};

/// alice@example.test's password.
pub const PW: &str = "Alice-Pass-1";

/// A server with alice and the default test configuration.
pub fn setup() -> (Setup, Server) {
    setup_with("", "")
}

/// A server with alice, `extra` TOML appended to the test configuration and
/// `imap_lines` added to its `[imap]` table (which the harness writes).
pub fn setup_with(extra: &str, imap_lines: &str) -> (Setup, Server) {
    let setup = Setup::quickstart("admin@example.test", extra).unwrap();
    setup
        .cli_ok(
            &["user", "add", "alice@example.test", "--password-stdin"],
            Some(&format!("{PW}\n")),
        )
        .unwrap();
    if !imap_lines.is_empty() {
        let config = std::fs::read_to_string(&setup.config).unwrap();
        let config = config.replacen("[imap]\n", &format!("[imap]\n{imap_lines}\n"), 1);
        std::fs::write(&setup.config, config).unwrap();
    }
    let server = setup.serve().unwrap();
    (setup, server)
}

/// Runs a python script; fails the test unless it exits 0. Returns its output.
pub fn run(script: &str, args: &[&str]) -> String {
    let out = python(script, args).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// Shared python helpers: a logged-in IMAPS connection, and `ok()` that checks a reply.
pub const PRELUDE: &str = r#"
import imaplib, ssl, sys, re, time, socket
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
port = int(sys.argv[1]); user = sys.argv[2]; pw = sys.argv[3]
def connect():
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
    m.login(user, pw)
    return m
def ok(reply, what=""):
    typ, data = reply
    assert typ == "OK", (what, typ, data)
    return data
def flat(data):
    out = b""
    for d in data:
        if isinstance(d, tuple):
            out += d[0] + d[1]
        elif d is not None:
            out += d
    return out
def raw_session():
    """A connection spoken to line by line: returns the greeting and step(cmd), which
    sends one command and returns every response line up to the tagged one (a literal
    joined to the line that announced it)."""
    raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x")
    f = raw.makefile("rb")
    greeting = f.readline().decode()
    def step(cmd):
        raw.sendall(cmd.encode() + b"\r\n")
        tag = cmd.split(" ")[0]
        got = []
        while True:
            l = f.readline().decode()
            assert l, ("connection closed", cmd, got)
            while True:
                m = re.search(r"\{(\d+)\}\r\n$", l)
                if not m:
                    break
                l += f.read(int(m.group(1))).decode() + f.readline().decode()
            got.append(l.rstrip("\r\n"))
            if l.startswith(tag + " "):
                return got
    return greeting, step
"#;
