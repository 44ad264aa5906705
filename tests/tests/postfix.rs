//! Interop with the reference MTA: Debian's Postfix, started here on loopback with its
//! own configuration and queue, relays mail to Postern (over STARTTLS when offered).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::harness::{Setup, ensure_postfix, free_port, python};

struct Postfix {
    conf: PathBuf,
    child: Child,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PEERS.md §1: a Postfix of our own, on 127.0.0.1:port, relaying everything to
/// `relay_port` by IP (no DNS), with opportunistic TLS to it.
fn start_postfix(dir: &Path, port: u16, relay_port: u16) -> Postfix {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.join("pf/conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(dir.join("pf/spool")).unwrap();
    let d = dir.display();
    std::fs::write(
        conf.join("main.cf"),
        format!(
            "compatibility_level = 3.6
queue_directory = {d}/pf/spool
data_directory = {d}/pf/data
myhostname = mta.postern.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
relayhost = [127.0.0.1]:{relay_port}
smtp_dns_support_level = disabled
smtp_tls_security_level = may
"
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("master.cf"),
        format!(
            "127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
showq unix n - n - - showq
scache unix - - n - 1 scache
anvil unix - - n - 1 anvil
tlsmgr unix - - n 1000? 1 tlsmgr
postlog unix-dgram n - n - 1 postlogd
"
        ),
    )
    .unwrap();
    let check = Command::new("postfix")
        .arg("-c")
        .arg(&conf)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "postfix check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("postfix")
        .arg("-c")
        .arg(&conf)
        .arg("start-fg")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let postfix = Postfix { conf, child };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "postfix did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    postfix
}

#[test]
fn postfix_relays_to_postern_over_starttls() {
    ensure_postfix().unwrap();
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    setup
        .cli_ok(
            &["user", "add", "alice@example.test", "--password-stdin"],
            Some("Alice-Pass-1\n"),
        )
        .unwrap();
    let mut server = setup.serve().unwrap();
    let pf_dir = tempfile::tempdir().unwrap();
    let pf_port = free_port().unwrap();
    let _postfix = start_postfix(pf_dir.path(), pf_port, setup.ports.smtp.port());

    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.sendmail("sender@remote.test", ["alice@example.test"],
           "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: through postfix\r\n\r\nRelayed by Postfix.\r\n")
s.quit()
"#;
    let out = python(script, &[&pf_port.to_string()]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let list = loop {
        let list = setup
            .cli_ok(&["mail", "list", "alice@example.test"], None)
            .unwrap();
        if list.contains("through postfix") {
            break list;
        }
        let log = std::fs::read_to_string(pf_dir.path().join("postfix.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "postfix did not deliver within 60 s:\n{log}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let uid = list
        .lines()
        .find(|l| l.contains("through postfix"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    let msg = setup
        .cli_ok(&["mail", "show", "alice@example.test", &uid], None)
        .unwrap();
    assert!(msg.starts_with("Received: from mta.postern.test ([127.0.0.1])\r\n\tby mail.example.test (Postern) with ESMTPS id "), "{msg}");
    assert!(
        msg.contains("by mta.postern.test (Postfix) with ESMTP"),
        "Postfix's own Received is kept: {msg}"
    );
    assert!(msg.ends_with("\r\n\r\nRelayed by Postfix.\r\n"), "{msg:?}");
    let log = std::fs::read_to_string(pf_dir.path().join("postfix.log")).unwrap_or_default();
    assert!(
        log.contains("status=sent (250 2.0.0 Message accepted as "),
        "{log}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
