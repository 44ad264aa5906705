//! Privilege separation, black-box: `serve` started as root (as the harness starts it)
//! runs every listener as the `postern` user, without capabilities, beside a
//! `postern-helper` that alone keeps root; the firewall is applied at start, an
//! automatic ban reaches the kernel's ban set and a block is applied, all through the
//! helper, inside a network namespace the test makes. The control socket serves root
//! and the service user only and logs the uid the kernel reports; `security check`
//! has no privilege warning for the default install and warns for `run_as = "root"`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use tests::harness::{Server, Setup, ensure_tool, free_port};
use tests::netns::NetnsPair;

/// `KEY: value` of `/proc/PID/status`.
fn status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// `ps -o user=,comm=` of `pid`.
fn ps(pid: u32) -> String {
    let out = Command::new("ps")
        .args(["-o", "user=,comm=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The helper: the child of `server` named `postern-helper`.
fn helper_of(server: u32) -> u32 {
    let out = Command::new("ps")
        .args(["-o", "pid=,comm=", "--ppid", &server.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.contains("postern-helper"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no postern-helper child of {server}: {text}"))
}

/// For each `SRC:PORT`, connects from SRC to the server: open, refused or timeout.
const PROBE: &str = r#"
import socket, sys
server = sys.argv[1]
for spec in sys.argv[2:]:
    src, port = spec.rsplit(":", 1)
    try:
        socket.create_connection((server, int(port)), timeout=1, source_address=(src, 0)).close()
        print("open")
    except socket.timeout:
        print("timeout")
    except OSError:
        print("refused")
"#;

/// IMAPS logins from SRC, one connection per password: `no`, `ok` or `closed`.
const LOGINS: &str = r#"
import imaplib, socket, ssl, sys
server, port, src, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class I(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        s = socket.create_connection((self.host, self.port), 3, source_address=(src, 0))
        return self.ssl_context.wrap_socket(s, server_hostname="mail.example.test")
for password in sys.argv[5:]:
    try:
        m = I(server, port, ssl_context=ctx)
    except (OSError, imaplib.IMAP4.abort):
        print("closed"); continue
    try:
        m.login(user, password); print("ok"); m.logout()
    except imaplib.IMAP4.error:
        print("no")
"#;

fn python_in(ns: &str, script: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    let out = NetnsPair::exec(ns, "python3", &all).unwrap();
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
}

#[test]
fn the_protocols_run_as_postern_and_the_firewall_bans_and_blocks_go_through_the_helper() {
    for (tool, package) in [
        ("iptables-restore", "iptables"),
        ("ipset", "ipset"),
        ("python3", "python3"),
        ("ss", "iproute2"),
    ] {
        ensure_tool(tool, package).unwrap();
    }
    let ssh = free_port().unwrap();
    let mut setup = Setup::quickstart(
        "admin@example.test",
        &format!(
            "[firewall]\nmanage = true\nssh_port = {ssh}\nban_after_failed_logins = 3\nban_hours = 1\n\n[auth]\nattempts_per_second = 1000\n"
        ),
    )
    .unwrap();
    assert!(
        setup
            .quickstart_output
            .contains("The server runs as the system user postern"),
        "{}",
        setup.quickstart_output
    );
    let pair = NetnsPair::new(3).unwrap();
    let imaps = std::net::SocketAddr::new(pair.server.parse().unwrap(), setup.ports.imaps.port());
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace(&setup.ports.imaps.to_string(), &imaps.to_string()),
    )
    .unwrap();
    setup.ports.imaps = imaps;
    let server = Server::start_with(&setup.config, &["ip", "netns", "exec", &pair.b]).unwrap();
    assert!(
        server.log().contains("privileges dropped"),
        "{}",
        server.log()
    );

    // Who runs what: the server as postern with no capabilities, no way back to root
    // and a private umask; the helper as root.
    let main = server.pid().unwrap();
    let helper = helper_of(main);
    assert_eq!(ps(main), "postern postern");
    assert_eq!(ps(helper), "root postern-helper");
    let uid = nix::unistd::User::from_name("postern")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(status(main, "Uid"), format!("{uid}\t{uid}\t{uid}\t{uid}"));
    assert_eq!(status(main, "CapEff"), "0000000000000000");
    assert_eq!(status(main, "CapPrm"), "0000000000000000");
    assert_eq!(status(main, "NoNewPrivs"), "1");
    assert_eq!(status(main, "Umask"), "0077");
    assert_eq!(status(helper, "Uid"), "0\t0\t0\t0");
    // Every listening socket is the server's; the helper holds none.
    let out = NetnsPair::exec(&pair.b, "ss", &["-ltnpH"]).unwrap();
    let sockets = String::from_utf8_lossy(&out.stdout).into_owned();
    for port in [
        setup.ports.smtp.port(),
        setup.ports.imaps.port(),
        setup.ports.https.port(),
        setup.ports.http.port(),
    ] {
        let line = sockets
            .lines()
            .find(|l| l.contains(&format!(":{port} ")))
            .unwrap_or_else(|| panic!("nothing listens on {port}:\n{sockets}"));
        assert!(line.contains(&format!("pid={main},")), "{line}");
    }
    assert!(!sockets.contains(&format!("pid={helper},")), "{sockets}");
    // The data directory is postern's, the configuration root's.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&setup.data_dir).unwrap().uid(), uid);
    assert_eq!(
        std::fs::metadata(setup.data_dir.join("store.redb"))
            .unwrap()
            .uid(),
        uid
    );
    assert_eq!(
        std::fs::metadata(setup.data_dir.join("postern.toml"))
            .unwrap()
            .uid(),
        0
    );

    // The firewall was applied at start, through the helper.
    let show = setup.cli_ok(&["firewall", "show"], None).unwrap();
    assert!(
        show.starts_with("# firewall: applied and current"),
        "{show}"
    );
    let (c1, c2) = (pair.client.as_str(), pair.client2.as_str());
    let port = imaps.port().to_string();
    let probe = |specs: &[&str]| {
        let mut args = vec![pair.server.as_str()];
        args.extend_from_slice(specs);
        python_in(&pair.a, PROBE, &args)
    };
    let open = format!("{c1}:{port}");
    assert_eq!(probe(&[&open]), ["open"]);

    // An automatic ban goes into the kernel's ban set: the address is dropped by the
    // firewall (a timeout), not only closed at accept.
    let logins = python_in(
        &pair.a,
        LOGINS,
        &[
            &pair.server,
            &port,
            c1,
            "admin@example.test",
            "bad1",
            "bad2",
            "bad3",
        ],
    );
    assert_eq!(logins, ["no", "no", "no"]);
    let out = NetnsPair::exec(&pair.b, "ipset", &["list", "postern_ban4"]).unwrap();
    let set = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(set.contains(c1), "{set}");
    assert_eq!(
        probe(&[&open, &format!("{c2}:{port}")]),
        ["timeout", "open"]
    );

    // A block through the control socket is applied by the helper; unblocked, open.
    let out = setup.cli_ok(&["firewall", "block", c2], None).unwrap();
    assert!(out.contains("re-applied"), "{out}");
    assert_eq!(probe(&[&format!("{c2}:{port}")]), ["timeout"]);
    setup.cli_ok(&["firewall", "unblock", c2], None).unwrap();
    setup.cli_ok(&["firewall", "unblock", c1], None).unwrap();
    assert_eq!(probe(&[&open, &format!("{c2}:{port}")]), ["open", "open"]);
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(log.contains("ip-banned"), "{log}");
    drop(server);
}

/// Sends one envelope to the control socket at `argv[1]` as uid/gid `argv[2]` (or as
/// the caller with `-`), prints the reply line.
const CONTROL: &str = r#"
import os, socket, sys
path, uid, envelope = sys.argv[1], sys.argv[2], sys.argv[3]
if uid != "-":
    os.setgroups([]); os.setgid(int(uid)); os.setuid(int(uid))
s = socket.socket(socket.AF_UNIX); s.connect(path)
s.sendall(envelope.encode() + b"\n")
print(s.makefile().readline().strip())
"#;

#[test]
fn the_control_socket_serves_root_and_the_service_user_only_and_logs_the_kernels_uid() {
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let server = setup.serve().unwrap();
    let pid = server.pid().unwrap();
    // Created under a umask of 077: never open to others, not even for a moment.
    assert_eq!(status(pid, "Umask"), "0077");
    let socket = setup.data_dir.join("control.sock");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let postern = nix::unistd::User::from_name("postern").unwrap().unwrap();
    assert_eq!(meta.uid(), postern.uid.as_raw());
    let send = |uid: &str, envelope: &str| -> String {
        tests::imap::run(CONTROL, &[&socket.to_string_lossy(), uid, envelope])
    };

    // Another user, let through the file modes on purpose: refused by its uid.
    std::fs::set_permissions(&setup.data_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let nobody = send("65534", r#"{"request": "UserList", "actor": "cli:root"}"#);
    assert!(
        nobody.contains("serves root and the user the server runs as only"),
        "{nobody}"
    );
    // The service user is served.
    let own = send(
        &postern.uid.as_raw().to_string(),
        r#"{"request": "DomainList", "actor": "cli:root"}"#,
    );
    assert!(own.contains("example.test"), "{own}");
    // Root is served, and logged as root whatever it claims to be.
    let reply = send(
        "-",
        r#"{"request": {"AliasAdd": {"address": "team@example.test", "targets": ["admin@example.test"]}}, "actor": "cli:mallory"}"#,
    );
    assert!(reply.contains("Created alias"), "{reply}");
    let log = setup.cli_ok(&["log"], None).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("alias-add team@example.test"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(" cli:root "), "{line}");
    assert!(!log.contains("mallory"), "{log}");
    drop(server);
}

#[test]
fn security_check_finds_no_privilege_problem_in_the_default_install() {
    let mut setup = Setup::quickstart("admin@example.test", "[spam]\ndnsbl = []\n").unwrap();
    let sshd = setup.dir.path().join("sshd_config");
    std::fs::write(&sshd, "PasswordAuthentication no\n").unwrap();
    let check = |setup: &Setup| -> String {
        let report = setup
            .cli_ok(
                &["security", "check", "--sshd-config", sshd.to_str().unwrap()],
                None,
            )
            .unwrap();
        report
            .lines()
            .find(|l| l.contains("privileges:"))
            .unwrap_or_else(|| panic!("no privileges line in\n{report}"))
            .to_string()
    };
    // Stopped, then running as installed (started as root).
    assert!(check(&setup).starts_with("ok"), "{}", check(&setup));
    let server = setup.serve().unwrap();
    let line = check(&setup);
    assert!(line.starts_with("ok"), "{line}");
    assert!(
        line.contains(&format!("pid {}", server.pid().unwrap())),
        "{line}"
    );
    drop(server);
    // Told to stay root: warned, running or not.
    setup
        .write_config("[spam]\ndnsbl = []\n\n[server]\nrun_as = \"root\"\n")
        .unwrap();
    let config = std::fs::read_to_string(&setup.config).unwrap();
    // The harness writes its own [server] table: keep one.
    let config = config.replacen("[server]\nshutdown_grace_seconds = 2\n", "", 1);
    let config = config.replacen(
        "[server]\nrun_as = \"root\"\n",
        "[server]\nrun_as = \"root\"\nshutdown_grace_seconds = 2\n",
        1,
    );
    std::fs::write(&setup.config, config).unwrap();
    assert!(check(&setup).starts_with("warn"), "{}", check(&setup));
    let server = setup.serve().unwrap();
    let line = check(&setup);
    assert!(
        line.starts_with("warn") && line.contains("runs as root"),
        "{line}"
    );
    drop(server);
}
