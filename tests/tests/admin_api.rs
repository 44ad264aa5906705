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

    // Login: a wrong password, and the right password of a user who is no
    // administrator, get the same answer (no oracle for passwords); the admin a token.
    let (code, wrong) = login(&setup, "admin@example.test", "Wrong-Pass-1!");
    assert_eq!(code, 401, "{wrong}");
    assert!(wrong.contains(r#""code":"invalid_credentials""#), "{wrong}");
    let (code, body) = login(&setup, "bob@example.test", "Bob-Pass-1!");
    assert_eq!((code, body.as_str()), (401, wrong.as_str()));
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

    // Aliases: create, replace the targets, delete.
    let (code, body) = api(
        &setup,
        ADMIN,
        "POST",
        "/aliases",
        t,
        Some(r#"{"address": "team@example.test", "targets": ["bob@example.test"]}"#),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = api(
        &setup,
        ADMIN,
        "PUT",
        "/aliases/team@example.test",
        t,
        Some(r#"{"targets": ["bob@example.test", "admin@example.test"]}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""targets":["bob@example.test","admin@example.test"]"#),
        "{body}"
    );
    assert_eq!(
        api(
            &setup,
            ADMIN,
            "DELETE",
            "/aliases/team@example.test",
            t,
            None
        )
        .0,
        204
    );

    // DKIM: rotation adds two inactive keys; activating one retires its predecessor
    // from signing.
    let (code, body) = api(
        &setup,
        ADMIN,
        "POST",
        "/domains/example.test/dkim/rotate",
        t,
        None,
    );
    assert_eq!(code, 201, "{body}");
    let keys: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 4, "{body}");
    let new = keys.iter().find(|k| k["active"] == false).unwrap();
    let selector = new["selector"].as_str().unwrap();
    let (code, body) = api(
        &setup,
        ADMIN,
        "POST",
        &format!("/domains/example.test/dkim/{selector}/activate"),
        t,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let keys: serde_json::Value = serde_json::from_str(&body).unwrap();
    let active: Vec<_> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["active"] == true)
        .map(|k| k["selector"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(active.len(), 2, "{body}");
    assert!(active.iter().any(|s| s == selector), "{body}");

    // Read-only views: the queue, the configuration, the DNS check, the log filtered.
    let (code, body) = api(&setup, ADMIN, "GET", "/queue", t, None);
    assert_eq!((code, body.as_str()), (200, "[]"));
    let (code, body) = api(&setup, ADMIN, "GET", "/certificates", t, None);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""name":"default""#) && body.contains(r#""not_after":"#),
        "{body}"
    );
    assert!(body.contains("mail.example.test"), "{body}");
    let (code, body) = api(&setup, ADMIN, "GET", "/config", t, None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""hostname":"mail.example.test""#), "{body}");
    let (code, body) = api(&setup, ADMIN, "GET", "/domains/example.test/dns", t, None);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""verdict":"ok""#) && body.contains(r#""verdict":"wrong""#),
        "{body}"
    );
    let (code, body) = api(
        &setup,
        ADMIN,
        "GET",
        "/log?action=user-add&limit=5",
        t,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let entries: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entries = entries.as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["action"] == "user-add"), "{body}");
    let (code, body) = api(&setup, ADMIN, "GET", "/log?since=yesterday", t, None);
    assert_eq!(code, 400, "{body}");

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

/// Installs schemathesis (PyPI) in a venv of its own once; fails loudly if it cannot.
fn schemathesis() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = std::path::PathBuf::from(home).join(".cache/postern-schemathesis");
    let bin = venv.join("bin/schemathesis");
    if !bin.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "schemathesis==4.32.5"])
            .status()
            .unwrap();
        assert!(status.success(), "pip install schemathesis failed");
    }
    bin
}

#[test]
fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!("{config}\n[admin]\nhost = \"127.0.0.1\"\nlogin_attempts_per_second = 1000\n"),
    )
    .unwrap();
    let _server = setup.serve().unwrap();
    let (code, body) = api(
        &setup,
        "127.0.0.1",
        "POST",
        "/login",
        None,
        Some(&format!(
            r#"{{"email": "admin@example.test", "password": "{}"}}"#,
            setup.password
        )),
    );
    assert_eq!(code, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let port = setup.ports.https.port();
    let out = Command::new(schemathesis())
        .args(["run", &format!("https://127.0.0.1:{port}/api/v1/openapi.json")])
        .args(["--url", &format!("https://127.0.0.1:{port}/api/v1")])
        .args(["--tls-verify", "false"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--request-timeout", "20"])
        // Logging in with generated credentials would only trip the failed-login limiter.
        .args(["--exclude-operation-id", "login"])
        // Logging out would end the token the run uses.
        .args(["--exclude-operation-id", "logout"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // Every operation but login and logout was exercised, and every generated case
    // passed.
    assert!(text.contains("Tested: 26"), "{text}");
    assert!(!text.contains(" failed"), "{text}");
}

/// `GET https://my.example.test/metrics` with `token`: (status, body).
fn metrics(setup: &Setup, token: Option<&str>) -> (u16, String) {
    let curl = ensure_tool("curl", "curl").unwrap();
    let port = setup.ports.https.port();
    let mut cmd = Command::new(curl);
    cmd.args([
        "-sS",
        "-k",
        "--resolve",
        &format!("{ADMIN}:{port}:127.0.0.1"),
    ])
    .args(["-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .arg(format!("https://{ADMIN}:{port}/metrics"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

#[test]
fn metrics_count_deliveries_and_failed_logins() {
    let setup = Setup::quickstart("admin@example.test", "[spam]\ndnsbl = []\n").unwrap();
    let _server = setup.serve().unwrap();
    let (code, body) = login(&setup, "admin@example.test", &setup.password);
    assert_eq!(code, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    assert_eq!(metrics(&setup, None).0, 401);
    let (code, before) = metrics(&setup, Some(&token));
    assert_eq!(code, 200, "{before}");
    assert!(
        !before.contains("postern_messages_accepted_total"),
        "{before}"
    );
    assert!(
        !before.contains("postern_login_failures_total{service=\"admin-api\"}"),
        "{before}"
    );

    // One delivery and one failed login.
    let out = tests::imap::run(
        r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as s:
    s.sendmail("ann@remote.test", ["admin@example.test"], b"Subject: metrics\r\n\r\nhi\r\n")
print("sent")
"#,
        &[&setup.ports.smtp.port().to_string()],
    );
    assert!(out.contains("sent"), "{out}");
    assert_eq!(login(&setup, "admin@example.test", "Wrong-Pass-1!").0, 401);

    let (code, after) = metrics(&setup, Some(&token));
    assert_eq!(code, 200, "{after}");
    for line in [
        "# TYPE postern_messages_accepted_total counter\npostern_messages_accepted_total 1\n",
        "postern_login_failures_total{service=\"admin-api\"} 1\n",
        "postern_connections_total{listener=\"smtp\"} 1\n",
        "postern_queue_messages 0\n",
    ] {
        assert!(after.contains(line), "{line:?} not in\n{after}");
    }
    assert!(
        after.contains("postern_tls_handshakes_total{result=\"ok\"}"),
        "{after}"
    );
    let expiry: i64 = after
        .lines()
        .find_map(|l| {
            l.strip_prefix("postern_certificate_expiry_timestamp_seconds{name=\"default\"} ")
        })
        .unwrap_or_else(|| panic!("{after}"))
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(expiry > now, "{expiry} <= {now}");
}

/// Every operation of the OpenAPI document (and /metrics), called with `token`: the
/// status of each, as "METHOD /path STATUS" lines.
fn sweep(setup: &Setup, token: Option<&str>) -> Vec<(String, bool, u16)> {
    let (code, doc) = api(setup, ADMIN, "GET", "/openapi.json", None, None);
    assert_eq!(code, 200, "{doc}");
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let public = op.get("security") == Some(&serde_json::json!([]));
            let concrete = path
                .replace("{email}", "admin@example.test")
                .replace("{name}", "example.test")
                .replace("{address}", "postmaster@example.test")
                .replace("{selector}", "nosuch")
                .replace("{id}", "1");
            let method = method.to_ascii_uppercase();
            let (code, body) = api(setup, ADMIN, &method, &concrete, token, None);
            if !public {
                assert!(
                    body.contains(r#""code":"unauthorized""#),
                    "{method} {path}: {body}"
                );
            }
            out.push((format!("{method} {path}"), public, code));
        }
    }
    let (code, _) = metrics(setup, token);
    out.push(("GET /metrics".into(), false, code));
    out
}

#[test]
fn every_route_but_the_public_ones_needs_a_live_admin_token() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let mut server = setup.serve().unwrap();
    let token_of = |body: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["token"].as_str().unwrap().to_string()
    };

    // Without a token, and with a logged-out one: 401 everywhere but login and the
    // document itself.
    let (code, body) = login(&setup, "admin@example.test", &setup.password);
    assert_eq!(code, 200, "{body}");
    let revoked = token_of(&body);
    assert_eq!(
        api(&setup, ADMIN, "GET", "/users", Some(&revoked), None).0,
        200
    );
    let (code, body) = api(&setup, ADMIN, "POST", "/logout", Some(&revoked), None);
    assert_eq!(code, 204, "{body}");
    for token in [None, Some(revoked.as_str()), Some("0123456789abcdef")] {
        let results = sweep(&setup, token);
        assert!(results.len() >= 28, "{results:?}");
        for (route, public, code) in &results {
            if *public {
                assert_ne!(*code, 401, "{route} is public");
            } else {
                assert_eq!(*code, 401, "{route} with {token:?}");
            }
        }
        let public: Vec<&str> = results
            .iter()
            .filter(|r| r.1)
            .map(|r| r.0.as_str())
            .collect();
        assert_eq!(public, ["POST /login", "GET /openapi.json"]);
    }

    // Tokens are stored as digests only, and survive a restart.
    let (_, body) = login(&setup, "admin@example.test", &setup.password);
    let admin = token_of(&body);
    let index = std::fs::read(setup.data_dir.join("store.redb")).unwrap();
    assert!(
        !index.windows(admin.len()).any(|w| w == admin.as_bytes()),
        "the token is stored in the clear"
    );
    server.stop(std::time::Duration::from_secs(20)).unwrap();
    let _server = setup.serve().unwrap();
    let a = Some(admin.as_str());
    assert_eq!(api(&setup, ADMIN, "GET", "/users", a, None).0, 200);

    // A second administrator's token ends when the account is deleted (it could go
    // on creating administrators before), when it is demoted, and when its password
    // changes, through the API or the CLI.
    let second = |name: &str| -> String {
        let (code, body) = api(
            &setup,
            ADMIN,
            "POST",
            "/users",
            a,
            Some(&format!(
                r#"{{"email": "{name}@example.test", "password": "Second-Pass-1!", "admin": true}}"#
            )),
        );
        assert_eq!(code, 201, "{body}");
        let (code, body) = login(&setup, &format!("{name}@example.test"), "Second-Pass-1!");
        assert_eq!(code, 200, "{body}");
        token_of(&body)
    };
    let make_admin = r#"{"email": "eve@example.test", "password": "Eve-Pass-1!!", "admin": true}"#;
    let deleted = second("deleted");
    assert_eq!(
        api(
            &setup,
            ADMIN,
            "DELETE",
            "/users/deleted@example.test",
            a,
            None
        )
        .0,
        204
    );
    let (code, body) = api(
        &setup,
        ADMIN,
        "POST",
        "/users",
        Some(&deleted),
        Some(make_admin),
    );
    assert_eq!(code, 401, "{body}");
    let demoted = second("demoted");
    let (code, _) = api(
        &setup,
        ADMIN,
        "PATCH",
        "/users/demoted@example.test",
        a,
        Some(r#"{"admin": false}"#),
    );
    assert_eq!(code, 200);
    let (code, _) = api(
        &setup,
        ADMIN,
        "PATCH",
        "/users/demoted@example.test",
        a,
        Some(r#"{"admin": true}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(
        api(&setup, ADMIN, "GET", "/users", Some(&demoted), None).0,
        401
    );
    let renamed = second("renamed");
    let (code, _) = api(
        &setup,
        ADMIN,
        "PATCH",
        "/users/renamed@example.test",
        a,
        Some(r#"{"password": "Other-Pass-2!"}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(
        api(&setup, ADMIN, "GET", "/users", Some(&renamed), None).0,
        401
    );
    let cli = second("cli");
    setup
        .cli_ok(
            &["user", "passwd", "cli@example.test", "--password-stdin"],
            Some("Third-Pass-3!\n"),
        )
        .unwrap();
    assert_eq!(api(&setup, ADMIN, "GET", "/users", Some(&cli), None).0, 401);
    // The first administrator's token was never touched. Changing one's own password
    // keeps the token of that request (every other one of the account ends); one's
    // own admin right cannot be taken away.
    assert_eq!(api(&setup, ADMIN, "GET", "/users", a, None).0, 200);
    let (_, body) = login(&setup, "admin@example.test", &setup.password);
    let other_session = token_of(&body);
    let (code, body) = api(
        &setup,
        ADMIN,
        "PATCH",
        "/users/admin@example.test",
        a,
        Some(r#"{"password": "Admin-Pass-9!"}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(api(&setup, ADMIN, "GET", "/users", a, None).0, 200);
    assert_eq!(
        api(&setup, ADMIN, "GET", "/users", Some(&other_session), None).0,
        401
    );
    let (code, body) = api(
        &setup,
        ADMIN,
        "PATCH",
        "/users/admin@example.test",
        a,
        Some(r#"{"admin": false}"#),
    );
    assert_eq!(code, 409, "{body}");
    let users = api(&setup, ADMIN, "GET", "/users", a, None).1;
    assert!(!users.contains("eve@example.test"), "{users}");
}

#[test]
fn the_configuration_and_the_log_keep_secrets() {
    let setup = Setup::quickstart(
        "admin@example.test",
        "[queue]\nrelay = \"127.0.0.1:9\"\nrelay_username = \"relayuser\"\nrelay_password = \"Relay-Secret-42\"\n",
    )
    .unwrap();
    let server = setup.serve().unwrap();
    let (_, body) = login(&setup, "admin@example.test", &setup.password);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let (code, body) = api(&setup, ADMIN, "GET", "/config", Some(&token), None);
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("Relay-Secret-42"), "{body}");
    assert!(body.contains(r#""relay_password":"<redacted>""#), "{body}");
    assert!(body.contains(r#""relay_username":"relayuser""#), "{body}");
    assert!(
        !server.log().contains("Relay-Secret-42"),
        "{}",
        server.log()
    );
}
