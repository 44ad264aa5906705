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
        (
            "Strict-Transport-Security",
            "max-age=63072000; includeSubDomains",
        ),
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
