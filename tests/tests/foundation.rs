//! The foundation, black-box: quickstart, serve with TLS and signals, the CLI while the
//! server runs, the password policy, logins in the activity log.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use tests::dns::{TestDns, Zone};
use tests::harness::{Setup, ensure_tool, postern, python};

const ADMIN: &str = "admin@example.test";

#[test]
fn quickstart_prints_password_and_zone_file_records_then_refuses_a_second_run() {
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    let out = &setup.quickstart_output;
    let password = &setup.password;
    assert!(password.len() >= 16, "{password}");
    assert!(
        !password.contains(|c: char| c.is_whitespace() || c == '"' || c == '\''),
        "{password}"
    );

    // Every record line is zone-file syntax: FQDN owner, TTL, class, type, data.
    let records: Vec<&str> = out.lines().filter(|l| l.contains(" IN ")).collect();
    for line in &records {
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        assert_eq!(f.len(), 5, "{line}");
        assert!(f[0].ends_with('.'), "owner not fully qualified: {line}");
        assert!(f[1].parse::<u32>().is_ok(), "TTL: {line}");
        assert_eq!(f[2], "IN");
        assert!(["MX", "TXT", "CNAME", "SRV"].contains(&f[3]), "{line}");
        if f[3] == "TXT" {
            assert!(
                !f[4].contains('(') && f[4].starts_with('"') && f[4].ends_with('"'),
                "{line}"
            );
            for s in f[4].trim_matches('"').split("\" \"") {
                assert!(s.len() <= 255, "TXT string over 255 bytes: {line}");
            }
        }
    }
    let has = |prefix: &str| records.iter().any(|l| l.starts_with(prefix));
    assert!(has("example.test. 3600 IN MX 10 mail.example.test."));
    assert!(has("example.test. 3600 IN TXT \"v=spf1 mx -all\""));
    assert!(has("_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=reject"));
    assert!(has("_mta-sts.example.test. 3600 IN TXT \"v=STSv1; id="));
    assert!(has("_smtp._tls.example.test. 3600 IN TXT \"v=TLSRPTv1;"));
    assert!(has(
        "autoconfig.example.test. 3600 IN CNAME mail.example.test."
    ));
    assert!(has(
        "autodiscover.example.test. 3600 IN CNAME mail.example.test."
    ));
    assert!(has("_submissions._tcp.example.test. 3600 IN SRV 0 1 "));
    assert!(has("_submission._tcp.example.test. 3600 IN SRV 0 1 "));
    assert!(has(
        "_imaps._tcp.example.test. 3600 IN SRV 0 1 993 mail.example.test."
    ));
    let dkim: Vec<&&str> = records
        .iter()
        .filter(|l| l.contains("._domainkey.example.test."))
        .collect();
    assert_eq!(dkim.len(), 2, "{dkim:?}");
    assert!(
        dkim.iter().any(|l| l.contains("k=ed25519"))
            && dkim.iter().any(|l| l.contains("k=rsa; p=MIIBIjAN"))
    );

    // A real zone-file parser and DNS server take the lines as they are, and serve
    // the DKIM key back whole.
    let mut zone = Zone::new("test.");
    for line in &records {
        zone = zone.record(line);
    }
    let dns = TestDns::start(&[zone]).unwrap();
    let rsa_line = dkim.iter().find(|l| l.contains("k=rsa")).unwrap();
    let owner = rsa_line.split(' ').next().unwrap();
    let expected: String = rsa_line
        .splitn(5, ' ')
        .nth(4)
        .unwrap()
        .trim_matches('"')
        .split("\" \"")
        .collect();
    let dig = ensure_tool("dig", "bind9-dnsutils").unwrap();
    let answer = std::process::Command::new(dig)
        .args([
            "+short",
            "+time=2",
            "+tries=1",
            "-p",
            &dns.addr().port().to_string(),
            "@127.0.0.1",
            owner,
            "TXT",
        ])
        .output()
        .unwrap();
    let answer = String::from_utf8(answer.stdout).unwrap();
    let served: String = answer.trim().trim_matches('"').split("\" \"").collect();
    assert_eq!(served, expected);

    // The same records from `dns records`.
    let again = setup
        .cli_ok(&["dns", "records", "example.test"], None)
        .unwrap();
    // SRV ports follow the configuration the CLI is given (loopback ports here).
    let imaps = format!(
        "_imaps._tcp.example.test. 3600 IN SRV 0 1 {} mail.example.test.",
        setup.ports.imaps.port()
    );
    assert!(again.lines().any(|l| l == imaps), "{again}");
    let not_srv = |l: &&str| !l.contains(" SRV ");
    assert_eq!(
        again.lines().filter(not_srv).collect::<Vec<_>>(),
        records.iter().copied().filter(not_srv).collect::<Vec<_>>()
    );

    // A second quickstart on the same directory is refused, in one line.
    let second = postern(
        &[
            "quickstart",
            ADMIN,
            "--data-dir",
            &setup.data_dir.to_string_lossy(),
        ],
        None,
    )
    .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn serve_speaks_tls_1_2_and_1_3_only_and_exits_0_on_sigterm() {
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    let mut server = setup.serve().unwrap();
    let log = server.log();
    for name in ["smtp", "submission", "submissions", "imaps", "managesieve"] {
        assert!(
            log.contains(&format!("listening: {name} on 127.0.0.1:")),
            "{log}"
        );
    }
    let script = r#"
import socket, ssl, sys
port, version = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
v = getattr(ssl.TLSVersion, version)
if version in ("TLSv1", "TLSv1_1"):
    ctx.set_ciphers("ALL:@SECLEVEL=0")
ctx.minimum_version = v
ctx.maximum_version = v
try:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            print("OK", t.version(), t.cipher()[0], t.recv(100).decode().strip())
except ssl.SSLError as e:
    print("FAIL", e)
"#;
    let port = setup.ports.imaps.port().to_string();
    let run = |v: &str| String::from_utf8(python(script, &[&port, v]).unwrap().stdout).unwrap();
    let t12 = run("TLSv1_2");
    assert!(
        t12.starts_with("OK TLSv1.2 ECDHE-") && t12.contains("* OK"),
        "{t12}"
    );
    assert!(
        t12.contains("GCM") || t12.contains("CHACHA20"),
        "AEAD only: {t12}"
    );
    let t13 = run("TLSv1_3");
    assert!(t13.starts_with("OK TLSv1.3"), "{t13}");
    for old in ["TLSv1_1", "TLSv1"] {
        let r = run(old);
        assert!(r.starts_with("FAIL"), "{old} must be refused: {r}");
    }
    let status = server.stop(Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn sigterm_waits_for_open_sessions_then_says_bye() {
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    let mut server = setup.serve().unwrap();
    // An IMAP client in the middle of a command (half a line sent): it gets the grace
    // period, 2 s in the test config. (A client between commands or in IDLE is told at
    // once: imap.rs tests that.)
    let script = r#"
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
m.send(b"a1 NOO")
print("CONNECTED", flush=True)
t = time.time()
line = m.readline()
print("GOT", line.decode().strip(), round(time.time() - t, 1), flush=True)
"#;
    let port = setup.ports.imaps.port().to_string();
    let client = std::thread::spawn(move || python(script, &[&port]).unwrap());
    std::thread::sleep(Duration::from_millis(800));
    let started = std::time::Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = server.wait(Duration::from_secs(15)).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        elapsed >= Duration::from_millis(1800),
        "exited before the grace period: {elapsed:?}"
    );
    let out = client.join().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("GOT * BYE [UNAVAILABLE] Server shutting down"),
        "{out}"
    );
}

#[test]
fn weak_passwords_are_refused_naming_the_rule() {
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    for (password, rule) in [
        ("Sh0rt!", "at least 8 characters"),
        ("lowercase-only-1", "uppercase"),
        ("No-Digits-Here", "digit"),
        ("NoSymbols123", "symbol"),
    ] {
        let out = setup
            .cli(
                &["user", "add", "bob@example.test", "--password-stdin"],
                Some(&format!("{password}\n")),
            )
            .unwrap();
        assert!(!out.status.success(), "{password} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(rule), "{password}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    assert!(
        !setup
            .cli_ok(&["user", "list"], None)
            .unwrap()
            .contains("bob@")
    );
}

#[test]
fn cli_works_while_serve_runs_and_logins_reach_the_activity_log() {
    let setup = Setup::quickstart(ADMIN, "[auth]\nattempts_per_second = 1\n").unwrap();
    let mut server = setup.serve().unwrap();
    // The server holds the store: these go through the control socket.
    let out = setup
        .cli_ok(
            &["user", "add", "carol@example.test", "--password-stdin"],
            Some("Carol-Pass-1\n"),
        )
        .unwrap();
    assert!(out.contains("Created account carol@example.test"), "{out}");
    let out = setup
        .cli_ok(
            &[
                "alias",
                "add",
                "sales@example.test",
                "carol@example.test",
                ADMIN,
            ],
            None,
        )
        .unwrap();
    assert!(
        out.contains("sales@example.test -> carol@example.test, admin@example.test"),
        "{out}"
    );
    let out = setup
        .cli_ok(&["alias", "add", "@example.test", ADMIN], None)
        .unwrap();
    assert!(out.contains("@example.test -> admin@example.test"), "{out}");
    let users = setup.cli_ok(&["user", "list"], None).unwrap();
    assert!(
        users.contains("carol@example.test") && users.contains(ADMIN),
        "{users}"
    );
    let aliases = setup.cli_ok(&["alias", "list"], None).unwrap();
    assert!(aliases.contains("sales@example.test"), "{aliases}");
    assert!(
        setup
            .cli_ok(&["user", "quota", "carol@example.test", "1G"], None)
            .unwrap()
            .contains("1.0 GiB")
    );
    let dup = setup
        .cli(&["alias", "add", "carol@example.test", ADMIN], None)
        .unwrap();
    assert!(!dup.status.success());

    // The running server sees the new account at once: IMAP LOGIN with imaplib. Each
    // run logs in once per (user, password) pair, on a new connection each time.
    let script = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
port, pairs = int(sys.argv[1]), sys.argv[2:]
for user, pw in zip(pairs[::2], pairs[1::2]):
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
    try:
        print(m.login(user, pw)[0], flush=True)
        m.logout()
    except imaplib.IMAP4.error as e:
        print("NO", e, flush=True)
"#;
    let port = setup.ports.imaps.port().to_string();
    let logins = |pairs: &[&str]| -> Vec<String> {
        let mut args = vec![port.as_str()];
        args.extend_from_slice(pairs);
        let out = python(script, &args).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let carol = "carol@example.test";
    assert_eq!(
        logins(&[carol, "Carol-Pass-1", ADMIN, &setup.password]),
        ["OK", "OK"]
    );
    // attempts_per_second = 1: one failure uses up the bucket; until it refills every
    // login from this IP is refused unchecked, even with the right password.
    let r = logins(&[
        carol,
        "Wrong-Pass-1",
        carol,
        "Wrong-Pass-2",
        carol,
        "Carol-Pass-1",
    ]);
    assert!(r[0].contains("AUTHENTICATIONFAILED"), "{r:?}");
    assert!(r[1].contains("Too many failed logins"), "{r:?}");
    assert!(r[2].contains("Too many failed logins"), "{r:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        logins(&[carol, "Carol-Pass-1"]),
        ["OK"],
        "the limit refills"
    );
    // Not an address at all: a failed login like any other.
    std::thread::sleep(Duration::from_millis(1100));
    let r = logins(&["not-an-address", "x"]);
    assert!(r[0].contains("AUTHENTICATIONFAILED"), "{r:?}");

    let log = setup.cli_ok(&["log", "--since", "1h"], None).unwrap();
    for needle in [
        "127.0.0.1 carol@example.test login imap",
        "127.0.0.1 carol@example.test login-failed imap",
        "127.0.0.1 carol@example.test login-limited imap",
        "user-add carol@example.test",
        "alias-add sales@example.test",
    ] {
        assert!(log.contains(needle), "{needle:?} missing from:\n{log}");
    }
    assert_eq!(
        setup
            .cli_ok(&["log", "--limit", "2"], None)
            .unwrap()
            .lines()
            .count(),
        2
    );

    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    // With the server stopped, the CLI opens the store itself and sees the same data.
    assert!(
        setup
            .cli_ok(&["alias", "list"], None)
            .unwrap()
            .contains("sales@example.test")
    );
}

#[test]
fn bad_configuration_is_one_line_naming_the_key() {
    let mut setup = Setup::quickstart(ADMIN, "").unwrap();
    setup
        .write_config("[net]\nconections_per_ip = 5\n")
        .unwrap();
    let out = setup.cli(&["user", "list"], None).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conections_per_ip"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // A listener that cannot bind is fatal and names the address.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap();
    setup.write_config("").unwrap();
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        &format!("listen_tls = [\"{}\"]", setup.ports.imaps),
        &format!("listen_tls = [\"{taken}\"]"),
    );
    std::fs::write(&setup.config, text).unwrap();
    let out = setup.cli(&["serve"], None).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&taken.to_string()), "{err}");
}

#[test]
fn config_defaults_documents_every_key() {
    let out = postern(&["config", "defaults"], None).unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut last_was_comment = false;
    for line in text.lines() {
        if line.contains(" = ") {
            assert!(last_was_comment, "key without a comment: {line}");
        }
        last_was_comment = line.starts_with('#') || (line.starts_with('[') && last_was_comment);
    }
    assert!(
        text.contains("[net]\n# New connections accepted per client IP per second"),
        "{text}"
    );
}

#[test]
fn usage_errors_are_one_line_and_help_works_everywhere() {
    let out = postern(&["user", "add"], None).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("<EMAIL>"), "{err}");
    for cmd in [
        &["--help"][..],
        &["quickstart", "--help"],
        &["serve", "--help"],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["user", "quota", "--help"],
        &["alias", "add", "--help"],
        &["domain", "del", "--help"],
        &["dns", "records", "--help"],
        &["log", "--help"],
        &["config", "defaults", "--help"],
    ] {
        let out = postern(cmd, None).unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: postern"),
            "{cmd:?}"
        );
    }
}

#[test]
fn swaks_gets_starttls_on_the_mx_port() {
    let swaks = tests::harness::ensure_tool("swaks", "swaks").unwrap();
    // swaks' --tls needs these Perl modules (recommended, so not pulled in by
    // --no-install-recommends).
    tests::harness::ensure_package("libnet-ssleay-perl").unwrap();
    tests::harness::ensure_package("libio-socket-ssl-perl").unwrap();
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    let mut server = setup.serve().unwrap();
    let out = std::process::Command::new(swaks)
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &setup.ports.smtp.port().to_string(),
        ])
        .args([
            "--tls",
            "--quit-after",
            "EHLO",
            "--to",
            ADMIN,
            "--from",
            "someone@elsewhere.test",
            "--timeout",
            "10",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks rc {:?}:\n{text}",
        out.status.code()
    );
    assert!(
        text.contains("<-  220 2.0.0 Ready to start TLS")
            && text.contains("<~  250-ENHANCEDSTATUSCODES"),
        "{text}"
    );
    assert!(
        text.contains("=== TLS started with cipher TLSv1.3")
            || text.contains("=== TLS started with cipher TLSv1.2"),
        "{text}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn serve_drops_privileges_to_run_as() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root, as CI has: it checks the switch to another user"
    );
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    // The temporary directory is 0700 root: let nobody through to its data directory.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(setup.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("chown")
        .args([
            "-R",
            &format!("{}:{}", nobody.uid, nobody.gid),
            &setup.data_dir.to_string_lossy(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("[server]\n", "[server]\nrun_as = \"nobody\"\n");
    std::fs::write(&setup.config, text).unwrap();
    let mut server = setup.serve().unwrap();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.pid().unwrap())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == nobody.uid.to_string()),
        "{uid_line}"
    );
    // The CLI (root) still reaches the server through its control socket.
    assert!(
        setup
            .cli_ok(&["user", "list"], None)
            .unwrap()
            .contains(ADMIN)
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
