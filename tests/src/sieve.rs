//! Helpers for the Sieve tests: uploading a script the way a mail client does.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use crate::harness::Setup;
use crate::imap::run;

/// Uploads `script` as `name` for `user` over ManageSieve (STARTTLS, AUTHENTICATE
/// PLAIN, PUTSCRIPT with a `{N+}` literal) and makes it active.
pub fn put_script(setup: &Setup, password: &str, user: &str, name: &str, script: &str) {
    if let Err(refusal) = try_put_script(setup, password, user, name, script) {
        panic!("PUTSCRIPT refused: {refusal}");
    }
}

/// Like [`put_script`]; `Err` with the server's answer when PUTSCRIPT is refused.
pub fn try_put_script(
    setup: &Setup,
    password: &str,
    user: &str,
    name: &str,
    script: &str,
) -> Result<(), String> {
    const CLIENT: &str = r#"
import socket, ssl, sys, base64
port, user, pw, name, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
script = open(path, "rb").read()
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
f = sock.makefile("rb")
def response():
    lines = []
    while True:
        l = f.readline()
        assert l, lines
        lines.append(l)
        if l.startswith((b"OK", b"NO", b"BYE")):
            return lines
response()
sock.sendall(b"STARTTLS\r\n")
assert response()[-1].startswith(b"OK")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
sock = ctx.wrap_socket(sock, server_hostname="x")
f = sock.makefile("rb")
response()
token = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode())
sock.sendall(b'AUTHENTICATE "PLAIN" "' + token + b'"\r\n')
r = response(); assert r[-1].startswith(b"OK"), r
sock.sendall(b'PUTSCRIPT "' + name.encode() + b'" {%d+}\r\n' % len(script) + script + b"\r\n")
r = response()
if not r[-1].startswith(b"OK"):
    print("REFUSED", b"".join(r).decode(errors="replace"))
    sys.exit(0)
sock.sendall(b'SETACTIVE "' + name.encode() + b'"\r\n')
r = response(); assert r[-1].startswith(b"OK"), r
sock.sendall(b"LOGOUT\r\n")
print("uploaded")
"#;
    let path = setup.dir.path().join(format!("{name}.sieve"));
    std::fs::write(&path, script).unwrap();
    let out = run(
        CLIENT,
        &[
            &setup.ports.managesieve.port().to_string(),
            user,
            password,
            name,
            &path.to_string_lossy(),
        ],
    );
    if let Some(refusal) = out.split("REFUSED ").nth(1) {
        return Err(refusal.to_string());
    }
    assert!(out.contains("uploaded"), "{out}");
    Ok(())
}
