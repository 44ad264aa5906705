//! The web front, black-box with curl: plain HTTP redirects to HTTPS keeping host,
//! path and query; HTTPS (HTTP/1.1 and HTTP/2) serves the MTA-STS policy and the
//! Thunderbird autoconfiguration of our domains, with the security headers on every
//! response.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use tests::harness::{Setup, ensure_tool};

/// Runs curl with `args`; returns (headers, body) as text, and the `-w` output last.
fn curl(args: &[&str]) -> (String, String) {
    let curl = ensure_tool("curl", "curl").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new(curl)
        .args(["-sS", "--max-time", "10", "-D"])
        .arg(&headers)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(&headers).unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `https://HOST:PORT/PATH` with HOST resolved to our loopback listener.
fn https(setup: &Setup, host: &str, path: &str, extra: &[&str]) -> (String, String) {
    let port = setup.ports.https.port();
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let mut args = vec!["-k", "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn assert_security_headers(headers: &str, frame: &str) {
    for (name, value) in [
        ("Strict-Transport-Security", "max-age=63072000"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-XSS-Protection", "1; mode=block"),
        ("X-Download-Options", "noopen"),
        ("X-Permitted-Cross-Domain-Policies", "none"),
        ("Referrer-Policy", "no-referrer-when-downgrade"),
        ("X-Frame-Options", frame),
    ] {
        assert_eq!(header(headers, name), Some(value), "{name} in\n{headers}");
    }
}

#[test]
fn http_redirects_and_https_serves_policies_and_autoconfig() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let _server = setup.serve().unwrap();
    let http = setup.ports.http.port();
    let https_port = setup.ports.https.port();

    // Plain HTTP: 301 to the same host (without its port), path and query on HTTPS.
    let (headers, _) = curl(&[
        "-H",
        "Host: Mail.Example.test:80",
        &format!("http://127.0.0.1:{http}/some/path?a=1&b=two"),
    ]);
    assert!(headers.starts_with("HTTP/1.1 301"), "{headers}");
    assert_eq!(
        header(&headers, "Location"),
        Some(format!("https://mail.example.test:{https_port}/some/path?a=1&b=two").as_str()),
        "{headers}"
    );
    // Another of our names keeps its host; a name that is not ours is never reflected
    // (the redirect goes to our host name).
    for (host, to) in [
        ("autoconfig.example.test", "autoconfig.example.test"),
        ("evil.test/x?", "mail.example.test"),
        ("evil.test", "mail.example.test"),
        ("my.other.test", "mail.example.test"),
    ] {
        let (headers, _) = curl(&[
            "-H",
            &format!("Host: {host}"),
            &format!("http://127.0.0.1:{http}/p?q=1"),
        ]);
        assert_eq!(
            header(&headers, "Location"),
            Some(format!("https://{to}:{https_port}/p?q=1").as_str()),
            "Host: {host}\n{headers}"
        );
    }

    // The MTA-STS policy, over HTTP/1.1 and HTTP/2.
    let (headers, body) = https(
        &setup,
        "mta-sts.example.test",
        "/.well-known/mta-sts.txt",
        &["--http1.1"],
    );
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    assert_eq!(header(&headers, "Content-Type"), Some("text/plain"));
    assert_eq!(
        body,
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"
    );
    assert_security_headers(&headers, "SAMEORIGIN");
    let (headers, body2) = https(
        &setup,
        "mta-sts.example.test",
        "/.well-known/mta-sts.txt",
        &["--http2"],
    );
    assert!(headers.starts_with("HTTP/2 200"), "{headers}");
    assert_eq!(body2, body);
    assert_security_headers(&headers, "SAMEORIGIN");

    // Thunderbird autoconfiguration, on autoconfig.<domain> and on the domain itself.
    for (host, path) in [
        ("autoconfig.example.test", "/mail/config-v1.1.xml"),
        (
            "example.test",
            "/.well-known/autoconfig/mail/config-v1.1.xml",
        ),
    ] {
        let (headers, xml) = https(&setup, host, path, &[]);
        assert!(headers.contains(" 200"), "{headers}");
        let imaps = setup.ports.imaps.port();
        let submissions = setup.ports.submissions.port();
        let submission = setup.ports.submission.port();
        assert!(xml.contains("<domain>example.test</domain>"), "{xml}");
        assert!(
            xml.contains(&format!(
                "<incomingServer type=\"imap\">\n      <hostname>mail.example.test</hostname>\n      <port>{imaps}</port>\n      <socketType>SSL</socketType>"
            )),
            "{xml}"
        );
        assert!(
            xml.contains(&format!(
                "<port>{submissions}</port>\n      <socketType>SSL</socketType>"
            )),
            "{xml}"
        );
        assert!(
            xml.contains(&format!(
                "<port>{submission}</port>\n      <socketType>STARTTLS</socketType>"
            )),
            "{xml}"
        );
        assert!(xml.contains("<username>%EMAILADDRESS%</username>"), "{xml}");
    }

    // Not ours: 404, still with the headers. The admin host: no framing, strict CSP.
    let (headers, _) = https(
        &setup,
        "mta-sts.other.test",
        "/.well-known/mta-sts.txt",
        &[],
    );
    assert!(headers.contains(" 404"), "{headers}");
    assert_security_headers(&headers, "SAMEORIGIN");
    let (headers, _) = https(&setup, "my.example.test", "/", &[]);
    assert_security_headers(&headers, "DENY");
    assert_eq!(
        header(&headers, "Content-Security-Policy"),
        Some(
            "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "{headers}"
    );
    let (headers, body) = https(&setup, "mail.example.test", "/healthz", &[]);
    assert!(headers.contains(" 200"), "{headers}");
    assert_eq!(body, "ok\n");
}

/// `openssl s_client` against the HTTPS listener with `args`; true if a TLS session
/// was established.
fn handshake(port: u16, args: &[&str]) -> bool {
    let openssl = ensure_tool("openssl", "openssl").unwrap();
    let out = Command::new(openssl)
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "mail.example.test"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)")
}

#[test]
fn https_refuses_old_protocols_and_non_aead_suites() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let _server = setup.serve().unwrap();
    let port = setup.ports.https.port();
    // The client is told to allow everything (security level 0), so a refusal is ours.
    let weak = "DEFAULT@SECLEVEL=0";
    assert!(handshake(port, &["-tls1_3"]), "TLS 1.3 must work");
    assert!(handshake(port, &["-tls1_2"]), "TLS 1.2 must work");
    assert!(!handshake(port, &["-tls1_1", "-cipher", weak]));
    assert!(!handshake(port, &["-tls1", "-cipher", weak]));
    // TLS 1.2 with CBC (non-AEAD) suites only, and with RSA key exchange only.
    assert!(!handshake(
        port,
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA@SECLEVEL=0"
        ]
    ));
    assert!(!handshake(
        port,
        &[
            "-tls1_2",
            "-cipher",
            "AES128-GCM-SHA256:AES256-GCM-SHA384@SECLEVEL=0"
        ]
    ));
}

/// An upstream app (python http.server): answers GET with its view of the request as
/// JSON and headers of its own; `/ws` with an Upgrade is switched and echoes bytes.
const UPSTREAM: &str = r#"
import http.server, json, sys, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers(); self.wfile.flush()
            while True:
                data = self.connection.recv(4096)
                if not data:
                    return
                self.connection.sendall(b"echo:" + data)
        body = json.dumps({"path": self.path, "version": self.request_version,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Strict-Transport-Security", "max-age=0")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("X-Upstream", "yes")
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
"#;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_upstream(dir: &std::path::Path) -> (Child, u16) {
    let port_file = dir.join("upstream.port");
    let child = Command::new("python3")
        .args(["-c", UPSTREAM])
        .arg(&port_file)
        .spawn()
        .unwrap();
    let child = Child(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            return (child, p.trim().parse().unwrap());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upstream did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

const WEBSOCKET: &str = r#"
import socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="wiki.example.test")
s.sendall(b"GET /ws HTTP/1.1\r\nHost: wiki.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101"), head
s.sendall(b"hello through the proxy")
got = b""
while len(got) < len(b"echo:hello through the proxy"):
    got += s.recv(100)
assert got == b"echo:hello through the proxy", got
print("websocket ok")
"#;

#[test]
fn apps_are_proxied_with_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, upstream_port) = start_upstream(dir.path());
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let _server = setup.serve().unwrap();
    let added = setup
        .cli_ok(
            &[
                "app",
                "add",
                "wiki",
                "--upstream",
                &format!("127.0.0.1:{upstream_port}"),
            ],
            None,
        )
        .unwrap();
    assert!(added.contains("https://wiki.example.test/"), "{added}");
    let list = setup.cli_ok(&["app", "list"], None).unwrap();
    assert!(
        list.starts_with("wiki\twiki.example.test\t127.0.0.1:"),
        "{list}"
    );

    for version in ["--http1.1", "--http2"] {
        let (headers, body) = https(
            &setup,
            "wiki.example.test",
            "/some/page?x=1",
            &[
                version,
                "-H",
                "X-Forwarded-For: 6.6.6.6",
                "-H",
                "X-Real-IP: 6.6.6.6",
            ],
        );
        assert!(headers.contains(" 200"), "{headers}");
        // The app sees the true client, HTTPS, its host, HTTP/1.1.
        for needle in [
            r#""path": "/some/page?x=1""#,
            r#""version": "HTTP/1.1""#,
            r#""x-forwarded-for": "127.0.0.1""#,
            r#""x-real-ip": "127.0.0.1""#,
            r#""x-forwarded-proto": "https""#,
            r#""host": "wiki.example.test""#,
        ] {
            assert!(body.contains(needle), "{needle} not in {body}");
        }
        assert!(!body.contains("6.6.6.6"), "{body}");
        // Its own headers pass, its HSTS does not replace ours, its Referrer-Policy stays.
        assert_eq!(header(&headers, "X-Upstream"), Some("yes"), "{headers}");
        assert_eq!(
            header(&headers, "Strict-Transport-Security"),
            Some("max-age=63072000")
        );
        assert_eq!(header(&headers, "Referrer-Policy"), Some("same-origin"));
        assert_eq!(header(&headers, "X-Frame-Options"), Some("SAMEORIGIN"));
        assert_eq!(header(&headers, "X-Content-Type-Options"), Some("nosniff"));
    }

    let out = tests::imap::run(WEBSOCKET, &[&setup.ports.https.port().to_string()]);
    assert!(out.contains("websocket ok"), "{out}");

    // An app whose upstream is down: 502, and removed apps are gone.
    setup.cli_ok(&["app", "del", "wiki"], None).unwrap();
    let closed = tests::harness::free_port().unwrap();
    setup
        .cli_ok(
            &[
                "app",
                "add",
                "down",
                "--upstream",
                &format!("127.0.0.1:{closed}"),
                "--host",
                "down.example.test",
            ],
            None,
        )
        .unwrap();
    let (headers, _) = https(&setup, "down.example.test", "/", &[]);
    assert!(headers.contains(" 502"), "{headers}");
    let (headers, _) = https(&setup, "wiki.example.test", "/", &[]);
    assert!(headers.contains(" 404"), "{headers}");
}

#[test]
fn requests_over_the_rate_get_429_per_client_address() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replacen("[http]\n", "[http]\nrequests_per_second = 5\n", 1),
    )
    .unwrap();
    let _server = setup.serve().unwrap();
    let url = format!(
        "https://mail.example.test:{}/healthz",
        setup.ports.https.port()
    );
    let resolve = format!("mail.example.test:{}:127.0.0.1", setup.ports.https.port());
    // 20 requests at once from 127.0.0.1 (curl --parallel): some are over the rate.
    let mut args = vec![
        "-k",
        "--parallel",
        "--parallel-max",
        "20",
        "--resolve",
        &resolve,
    ];
    args.extend(std::iter::repeat_n(url.as_str(), 20));
    args.extend(["-o", "/dev/null", "-w", "%{http_code}\n"]);
    let (headers, codes) = curl(&args);
    let limited = codes.lines().filter(|c| *c == "429").count();
    assert!(limited >= 1, "{codes}");
    assert!(codes.lines().any(|c| c == "200"), "{codes}");
    assert!(
        headers.contains("retry-after: ") || headers.contains("Retry-After: "),
        "{headers}"
    );
    // Another client address is not affected.
    let (headers, body) = curl(&[
        "-k",
        "--interface",
        "127.0.0.2",
        "--resolve",
        &resolve,
        &url,
    ]);
    assert!(headers.contains(" 200"), "{headers}");
    assert_eq!(body, "ok\n");
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let _server = setup.serve().unwrap();
    let out = tests::imap::run(
        r#"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
start = time.time()
data = s.recv(4096)
while data and not data.startswith(b"HTTP/1.1 408"):
    data = s.recv(4096)
took = time.time() - start
assert 25 < took < 45, took
print("cut off after %.0f s" % took)
"#,
        &[&setup.ports.http.port().to_string()],
    );
    assert!(out.contains("cut off after"), "{out}");
}

/// Opens connections to the HTTPS port from SOURCE: `hold` TLS sessions that then send
/// nothing, and reports how many the server refused at once, whether a connection from
/// another address and SMTP are still served, and when the server closed the idle ones.
const IDLE: &str = r#"
import select, smtplib, socket, ssl, sys, time
https, smtp, hold = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
def tls(source):
    s = socket.create_connection(("127.0.0.1", https), timeout=5, source_address=(source, 0))
    return ctx.wrap_socket(s, server_hostname="mail.example.test")
held, refused = [], 0
for _ in range(hold):
    try:
        held.append(tls("127.0.0.1"))
    except (ssl.SSLError, OSError):
        refused += 1
print("held", len(held), "refused", refused)
# A raw TCP connection that never starts its handshake.
raw = socket.create_connection(("127.0.0.1", https), timeout=5, source_address=("127.0.0.3", 0))
other = tls("127.0.0.2")
other.sendall(b"GET /healthz HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n")
print("other", other.recv(100).split(b"\r\n")[0].decode())
s = smtplib.SMTP("127.0.0.1", smtp, timeout=5); print("smtp", s.noop()[0]); s.quit()
start = time.time()
socks = held + [raw]
for s in socks:
    s.setblocking(False)
open_ = set(socks)
while open_ and time.time() - start < 15:
    ready, _, _ = select.select(list(open_), [], [], 0.5)
    for s in ready:
        try:
            if not s.recv(1):
                open_.discard(s)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError):
            open_.discard(s)
print("closed", len(socks) - len(open_), "of", len(socks), "within", round(time.time() - start))
again = tls("127.0.0.1")
again.sendall(b"GET /healthz HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n")
print("again", again.recv(100).split(b"\r\n")[0].decode())
"#;

#[test]
fn idle_web_connections_are_capped_per_address_and_closed_from_accept() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replacen(
            "[http]\n",
            "[http]\nconnections_per_ip = 20\nrequest_timeout_seconds = 3\n",
            1,
        ),
    )
    .unwrap();
    let server = setup.serve().unwrap();
    let pid = server.pid().unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds();
    let out = tests::imap::run(
        IDLE,
        &[
            &setup.ports.https.port().to_string(),
            &setup.ports.smtp.port().to_string(),
            "40",
        ],
    );
    // 20 held, the other 20 closed at accept; another address and SMTP are served; the
    // idle ones (and the one that never sent a byte) are closed a few seconds after
    // they were accepted, and their slots come back.
    assert!(out.contains("held 20 refused 20"), "{out}");
    assert!(out.contains("other HTTP/1.1 200"), "{out}");
    assert!(out.contains("smtp 250"), "{out}");
    assert!(out.contains("closed 21 of 21 within"), "{out}");
    assert!(out.contains("again HTTP/1.1 200"), "{out}");
    let after = fds();
    assert!(
        after <= before + 5,
        "{before} file descriptors before, {after} after"
    );
}

#[test]
fn a_global_connection_cap_hsts_subdomains_and_the_admin_host_follow_the_configuration() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let config = std::fs::read_to_string(&setup.config).unwrap();
    let config = config
        .replacen("[http]\n", "[http]\nmax_connections = 10\n", 1)
        .replacen("[https]\n", "[https]\nhsts_include_subdomains = true\n", 1);
    std::fs::write(
        &setup.config,
        format!("{config}\n[admin]\nhost = \"admin.example.test\"\n"),
    )
    .unwrap();
    let _server = setup.serve().unwrap();
    let out = tests::imap::run(
        r#"
import socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
held, refused = [], 0
for i in range(16):
    src = "127.0.0.%d" % (10 + i)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
        held.append(ctx.wrap_socket(s, server_hostname="mail.example.test"))
    except (ssl.SSLError, OSError):
        refused += 1
print("held", len(held), "refused", refused)
"#,
        &[&setup.ports.https.port().to_string()],
    );
    assert!(out.contains("held 10 refused 6"), "{out}");

    // HSTS covers subdomains because the operator said so; the admin headers and CSP
    // are on `[admin] host`, and `my.` is nothing special any more.
    let (headers, _) = https(&setup, "admin.example.test", "/", &[]);
    assert_eq!(
        header(&headers, "Strict-Transport-Security"),
        Some("max-age=63072000; includeSubDomains"),
        "{headers}"
    );
    assert_eq!(
        header(&headers, "X-Frame-Options"),
        Some("DENY"),
        "{headers}"
    );
    assert!(
        header(&headers, "Content-Security-Policy").is_some(),
        "{headers}"
    );
    let (headers, _) = https(&setup, "my.example.test", "/", &[]);
    assert_eq!(
        header(&headers, "X-Frame-Options"),
        Some("SAMEORIGIN"),
        "{headers}"
    );
    assert_eq!(
        header(&headers, "Content-Security-Policy"),
        None,
        "{headers}"
    );
}

#[test]
fn app_names_and_hosts_that_would_shadow_our_own_are_refused() {
    let setup = Setup::quickstart(
        "admin@example.test",
        "[admin]\nhost = \"console.example.test\"\n",
    )
    .unwrap();
    let _server = setup.serve().unwrap();
    let upstream = "127.0.0.1:9";
    // Names whose default host (NAME.example.test) is one of ours, and hosts that are.
    for name in [
        "my",
        "mta-sts",
        "autoconfig",
        "autodiscover",
        "mail",
        "console",
        "MY",
    ] {
        let out = setup
            .cli(&["app", "add", name, "--upstream", upstream], None)
            .unwrap();
        assert!(!out.status.success(), "app {name} was added");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("reserved"), "{name}: {err}");
    }
    for host in [
        "mail.example.test",
        "console.example.test",
        "mta-sts.example.test",
        "autoconfig.example.test",
        "example.test",
        "Example.Test.",
    ] {
        let out = setup
            .cli(
                &["app", "add", "blog", "--upstream", upstream, "--host", host],
                None,
            )
            .unwrap();
        assert!(!out.status.success(), "an app on {host} was added");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("reserved"), "{host}: {err}");
    }
    let list = setup.cli_ok(&["app", "list"], None).unwrap();
    assert_eq!(list, "");
    // An ordinary app is fine; its host cannot be moved onto one of ours.
    setup
        .cli_ok(&["app", "add", "blog", "--upstream", upstream], None)
        .unwrap();
    let port = setup.ports.https.port();
    let curl_api = |method: &str, path: &str, token: Option<&str>, body: &str| -> String {
        let mut args = vec![
            "-X".to_string(),
            method.to_string(),
            "-H".to_string(),
            "Content-Type: application/json".to_string(),
            "--data".to_string(),
            body.to_string(),
            "-w".to_string(),
            "\n%{http_code}".to_string(),
        ];
        if let Some(t) = token {
            args.extend(["-H".to_string(), format!("Authorization: Bearer {t}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        https(&setup, "console.example.test", path, &args).1
    };
    let _ = port;
    let login = curl_api(
        "POST",
        "/api/v1/login",
        None,
        &format!(
            r#"{{"email": "admin@example.test", "password": "{}"}}"#,
            setup.password
        ),
    );
    let token: serde_json::Value =
        serde_json::from_str(login.rsplit_once('\n').unwrap().0).unwrap();
    let token = token["token"].as_str().unwrap();
    let out = curl_api(
        "POST",
        "/api/v1/apps",
        Some(token),
        r#"{"name": "autodiscover", "upstream": "127.0.0.1:9"}"#,
    );
    assert!(out.ends_with("\n422") && out.contains("reserved"), "{out}");
    let out = curl_api(
        "PATCH",
        "/api/v1/apps/blog",
        Some(token),
        r#"{"host": "console.example.test"}"#,
    );
    assert!(out.ends_with("\n422") && out.contains("reserved"), "{out}");
}
