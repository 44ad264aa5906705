//! The admin API end to end with curl: login and tokens, users and domains, JSON
//! errors with stable codes, the activity log, the login rate limit per client IP.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use tests::harness::{Setup, ensure_tool};

/// A request to the API on `host`: returns (status, body).
fn api(
    setup: &Setup,
    host: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let curl = ensure_tool("curl", "curl").unwrap();
    let port = setup.ports.https.port();
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "-k", "--max-time", "20", "-X", method])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    cmd.arg(format!("https://{host}:{port}/api/v1{path}"));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

const ADMIN: &str = "my.example.test";

fn login(setup: &Setup, email: &str, password: &str) -> (u16, String) {
    api(
        setup,
        ADMIN,
        "POST",
        "/login",
        None,
        Some(&format!(
            r#"{{"email": "{email}", "password": "{password}"}}"#
        )),
    )
}

#[test]
fn admin_api_users_and_domains() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    setup
        .cli_ok(
            &["user", "add", "bob@example.test", "--password-stdin"],
            Some("Bob-Pass-1!\n"),
        )
        .unwrap();
    let _server = setup.serve().unwrap();

    // Login: wrong password 401, a user who is no administrator 403, the admin a token.
    let (code, body) = login(&setup, "admin@example.test", "Wrong-Pass-1!");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""code":"invalid_credentials""#), "{body}");
    let (code, body) = login(&setup, "bob@example.test", "Bob-Pass-1!");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#""code":"not_admin""#), "{body}");
    let (code, body) = login(&setup, "admin@example.test", &setup.password);
    assert_eq!(code, 200, "{body}");
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = parsed["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert!(
        parsed["expires_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );

    // No token, a wrong token: 401. Not on the admin host: 404.
    let (code, body) = api(&setup, ADMIN, "GET", "/users", None, None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""code":"unauthorized""#), "{body}");
    assert_eq!(api(&setup, ADMIN, "GET", "/users", Some("00"), None).0, 401);
    let (code, _) = api(
        &setup,
        "mail.example.test",
        "GET",
        "/users",
        Some(&token),
        None,
    );
    assert_eq!(code, 404);

    let t = Some(token.as_str());
    let (code, body) = api(&setup, ADMIN, "GET", "/users", t, None);
    assert_eq!(code, 200, "{body}");
    let users: serde_json::Value = serde_json::from_str(&body).unwrap();
    let admin = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "admin@example.test")
        .unwrap();
    assert_eq!(admin["admin"], true);

    // Users: create, refuse a duplicate and a weak password, change, delete.
    let carol =
        r#"{"email": "carol@example.test", "password": "Carol-Pass-1!", "quota_bytes": 1048576}"#;
    let (code, body) = api(&setup, ADMIN, "POST", "/users", t, Some(carol));
    assert_eq!(code, 201, "{body}");
    assert!(body.contains(r#""quota_bytes":1048576"#), "{body}");
    let (code, body) = api(&setup, ADMIN, "POST", "/users", t, Some(carol));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains(r#""code":"exists""#), "{body}");
    let (code, body) = api(
        &setup,
        ADMIN,
        "POST",
        "/users",
        t,
        Some(r#"{"email": "dave@example.test", "password": "short"}"#),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains(r#""code":"weak_password""#), "{body}");
    let (code, body) = api(
        &setup,
        ADMIN,
        "POST",
        "/users",
        t,
        Some(r#"{"nonsense": 1}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#""code":"bad_request""#), "{body}");
    let (code, body) = api(
        &setup,
        ADMIN,
        "PATCH",
        "/users/carol@example.test",
        t,
        Some(r#"{"quota_bytes": 2048}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""quota_bytes":2048"#), "{body}");
    let (code, _) = api(
        &setup,
        ADMIN,
        "DELETE",
        "/users/carol@example.test",
        t,
        None,
    );
    assert_eq!(code, 204);
    let (code, body) = api(
        &setup,
        ADMIN,
        "DELETE",
        "/users/carol@example.test",
        t,
        None,
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains(r#""code":"not_found""#), "{body}");

    // Domains.
    let (code, body) = api(
        &setup,
        ADMIN,
        "POST",
        "/domains",
        t,
        Some(r#"{"name": "other.test"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let (_, body) = api(&setup, ADMIN, "GET", "/domains", t, None);
    assert!(body.contains(r#"{"name":"other.test"}"#), "{body}");
    let (code, _) = api(&setup, ADMIN, "DELETE", "/domains/other.test", t, None);
    assert_eq!(code, 204);

    // Every change is in the activity log with who and from where.
    let log = setup.cli_ok(&["log"], None).unwrap();
    for action in [
        "user-add",
        "user-quota",
        "user-del",
        "domain-add",
        "domain-del",
    ] {
        assert!(
            log.lines().any(|l| l.contains(action)
                && l.contains("admin@example.test")
                && l.contains("127.0.0.1")),
            "{action} not logged:\n{log}"
        );
    }
}

#[test]
fn login_attempts_are_rate_limited_per_client_address() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let _server = setup.serve().unwrap();
    let curl = ensure_tool("curl", "curl").unwrap();
    let port = setup.ports.https.port();
    let url = format!("https://{ADMIN}:{port}/api/v1/login");
    let resolve = format!("{ADMIN}:{port}:127.0.0.1");
    let body = r#"{"email": "admin@example.test", "password": "Wrong-Pass-1!"}"#;
    // 20 concurrent attempts from 127.0.0.1.
    let mut cmd = Command::new(&curl);
    cmd.args([
        "-sS",
        "-k",
        "--parallel",
        "--parallel-max",
        "20",
        "--resolve",
        &resolve,
    ]);
    for _ in 0..20 {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            &url,
        ]);
    }
    let out = cmd.output().unwrap();
    let codes = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(codes.lines().count(), 20, "{codes}");
    assert!(codes.lines().any(|c| c == "429"), "{codes}");
    // Another address logs in at once.
    let out = Command::new(&curl)
        .args([
            "-sS",
            "-k",
            "--interface",
            "127.0.0.2",
            "--resolve",
            &resolve,
        ])
        .args(["-H", "Content-Type: application/json", "--data"])
        .arg(format!(
            r#"{{"email": "admin@example.test", "password": "{}"}}"#,
            setup.password
        ))
        .args(["-w", "\n%{http_code}", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("\n200"), "{text}");
    assert!(text.contains("\"token\""), "{text}");
}
