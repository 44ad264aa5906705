//! SpamAssassin through the milter protocol, black-box: Debian's spamd and
//! spamass-milter on loopback; GTUBE is refused (or filed to Junk when the milter only
//! marks), a clean message arrives with X-Spam-Status, a dead milter fails open.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::harness::{Setup, ensure_package, ensure_tool, free_port, python};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A child stopped with SIGTERM (never SIGKILL: spamd's children would be orphaned).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_spamd(dir: &Path) -> (Daemon, u16) {
    let port = free_port().unwrap();
    let child = Command::new("spamd")
        .args([
            "-L",
            &format!("--listen=127.0.0.1:{port}"),
            "-u",
            "debian-spamd",
            "--syslog=stderr",
            "--max-children=2",
        ])
        .arg(format!("--pidfile={}", dir.join("spamd.pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    // PEERS.md: spamd is ready when spamc -K answers.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ok = Command::new("spamc")
            .args(["-d", "127.0.0.1", "-p", &port.to_string(), "-K"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "spamd did not start");
        std::thread::sleep(Duration::from_millis(300));
    }
    (daemon, port)
}

fn start_milter(dir: &Path, spamd_port: u16, reject: bool) -> (Daemon, u16) {
    let port = free_port().unwrap();
    let mut cmd = Command::new("spamass-milter");
    cmd.args(["-p", &format!("inet:{port}@127.0.0.1")])
        .arg("-P")
        .arg(dir.join(format!("milter-{port}.pid")));
    if reject {
        cmd.args(["-r", "15"]);
    }
    cmd.args(["--", "-d", "127.0.0.1", "-p", &spamd_port.to_string()]);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_for_port(port, "spamass-milter");
    (daemon, port)
}

const SEND: &str = r#"
import smtplib, sys
port, subject, body = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
s.ehlo("client.remote.test")
msg = "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <%s@remote.test>\r\nDate: Fri, 27 Nov 2026 00:00:00 +0000\r\n\r\n%s\r\n" % (subject, subject.replace(" ", "-"), body)
try:
    s.sendmail("sender@remote.test", ["alice@example.test"], msg)
    print("250")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
"#;

#[test]
fn spamassassin_through_the_milter_rejects_or_files_spam_and_passes_ham() {
    ensure_package("spamassassin").unwrap();
    ensure_package("spamd").unwrap();
    ensure_package("spamass-milter").unwrap();
    ensure_tool("spamd", "spamd").unwrap();
    let work = tempfile::tempdir().unwrap();
    let (_spamd, spamd_port) = start_spamd(work.path());
    let (rejecting, milter_port) = start_milter(work.path(), spamd_port, true);

    let mut setup = Setup::quickstart("admin@example.test", "").unwrap();
    setup
        .cli_ok(
            &["user", "add", "alice@example.test", "--password-stdin"],
            Some("Alice-Pass-1\n"),
        )
        .unwrap();
    let spam_config =
        |port: u16| format!("[spam]\nmilter = \"127.0.0.1:{port}\"\nmilter_timeout_seconds = 60\n");
    setup.write_config(&spam_config(milter_port)).unwrap();
    let mut server = setup.serve().unwrap();
    let smtp_port = setup.ports.smtp.port().to_string();
    let send = |subject: &str, body: &str| {
        let out = python(SEND, &[&smtp_port, subject, body]).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let refused = send("gtube", GTUBE);
    assert!(
        refused.starts_with("550 5.7.1") && refused.contains("Blocked by SpamAssassin"),
        "{refused}"
    );
    assert_eq!(send("ham", "Hello Alice, lunch tomorrow at noon?"), "250");
    let inbox = setup
        .cli_ok(&["mail", "list", "alice@example.test"], None)
        .unwrap();
    assert!(
        inbox.contains("\tham") && !inbox.contains("gtube"),
        "{inbox}"
    );
    let ham = setup
        .cli_ok(&["mail", "show", "alice@example.test", "1"], None)
        .unwrap();
    assert!(ham.contains("\r\nX-Spam-Status: No"), "{ham}");
    assert!(
        ham.contains("\r\nX-Spam-Checker-Version: SpamAssassin"),
        "{ham}"
    );
    assert!(
        !ham.contains("\n\t") || !ham.replace("\r\n", "").contains('\n'),
        "bare LF folds were normalised"
    );
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(log.contains("smtp-spam-reject 550 5.7.1"), "{log}");
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );

    // A milter that only marks: GTUBE is delivered, to Junk.
    drop(rejecting);
    let (marking, marking_port) = start_milter(work.path(), spamd_port, false);
    setup.write_config(&spam_config(marking_port)).unwrap();
    let mut server = setup.serve().unwrap();
    assert_eq!(send("gtube marked", GTUBE), "250");
    let junk = setup
        .cli_ok(
            &["mail", "list", "alice@example.test", "--mailbox", "Junk"],
            None,
        )
        .unwrap();
    assert!(junk.contains("gtube marked"), "{junk}");
    let flagged = setup
        .cli_ok(
            &[
                "mail",
                "show",
                "alice@example.test",
                "1",
                "--mailbox",
                "Junk",
            ],
            None,
        )
        .unwrap();
    assert!(flagged.contains("\r\nX-Spam-Flag: YES\r\n"), "{flagged}");
    // Sieve's spamtest reads SpamAssassin's score (RFC 5235): GTUBE is 10 (100 %),
    // ham is low; the script files both.
    tests::sieve::put_script(
        &setup,
        "Alice-Pass-1",
        "alice@example.test",
        "spam",
        "require [\"spamtestplus\", \"relational\", \"comparator-i;ascii-numeric\", \"fileinto\", \"mailbox\"];\n\
         if spamtest :percent :value \"eq\" :comparator \"i;ascii-numeric\" \"100\" { fileinto :create \"Certain\"; }\n\
         elsif spamtest :value \"le\" :comparator \"i;ascii-numeric\" \"3\" { fileinto :create \"Clean\"; }\n",
    );
    assert_eq!(send("gtube sieve", GTUBE), "250");
    assert_eq!(
        send("ham sieve", "Hello Alice, lunch tomorrow at noon?"),
        "250"
    );
    let list = |mailbox: &str| {
        setup
            .cli_ok(
                &["mail", "list", "alice@example.test", "--mailbox", mailbox],
                None,
            )
            .unwrap()
    };
    assert!(
        list("Certain").contains("gtube sieve"),
        "{}",
        list("Certain")
    );
    assert!(list("Clean").contains("ham sieve"), "{}", list("Clean"));
    assert!(!list("Junk").contains("sieve"), "{}", list("Junk"));
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );

    // The milter gone: mail is accepted unscanned (fail open, the default)...
    drop(marking);
    let mut server = setup.serve().unwrap();
    assert_eq!(send("unscanned", "no milter"), "250");
    assert!(
        server
            .log()
            .contains("spam milter failed: delivering unscanned"),
        "{}",
        server.log()
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    // ...or deferred, when configured to fail closed.
    setup
        .write_config(&format!(
            "{}milter_fail_open = false\n",
            spam_config(marking_port)
        ))
        .unwrap();
    let mut server = setup.serve().unwrap();
    assert!(send("deferred", "no milter").starts_with("451 4.7.1"));
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
