//! The MX, black-box: other people's SMTP clients deliver to local users over plain
//! text and STARTTLS; the message reads back intact; SIGKILL never loses a message
//! that got its 250, nor leaves half of one.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use tests::harness::{Setup, ensure_package, ensure_tool, python};

const ADMIN: &str = "admin@example.test";

fn setup_with_alice() -> Setup {
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    setup
        .cli_ok(
            &["user", "add", "alice@example.test", "--password-stdin"],
            Some("Alice-Pass-1\n"),
        )
        .unwrap();
    setup
}

#[test]
fn smtplib_delivers_over_plain_and_starttls_and_the_message_reads_back_intact() {
    let setup = setup_with_alice();
    let mut server = setup.serve().unwrap();
    let script = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
port = int(sys.argv[1])
for tls in (False, True):
    m = EmailMessage()
    m["From"] = "Sender <sender@remote.test>"
    m["To"] = "alice@example.test"
    m["Subject"] = "hello over " + ("starttls" if tls else "plain")
    m["Message-ID"] = "<%s@remote.test>" % ("tls" if tls else "plain")
    m.set_content("Line one\n.Line starting with a dot\nLast line\n")
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo("client.remote.test")
    if tls:
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx); s.ehlo("client.remote.test")
    refused = s.send_message(m)
    print("sent", tls, refused)
    s.quit()
"#;
    let out = python(script, &[&setup.ports.smtp.port().to_string()]).unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let list = setup
        .cli_ok(&["mail", "list", "alice@example.test"], None)
        .unwrap();
    assert!(
        list.contains("sender@remote.test\thello over plain"),
        "{list}"
    );
    assert!(
        list.contains("sender@remote.test\thello over starttls"),
        "{list}"
    );
    let plain = setup
        .cli_ok(&["mail", "show", "alice@example.test", "1"], None)
        .unwrap();
    assert!(plain.starts_with("Received: from client.remote.test ([127.0.0.1])\r\n\tby mail.example.test (Postern) with ESMTP id "), "{plain}");
    assert!(plain.contains("From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\nSubject: hello over plain\r\nMessage-ID: <plain@remote.test>\r\n"), "{plain}");
    assert!(
        plain.ends_with("\r\n\r\nLine one\r\n.Line starting with a dot\r\nLast line\r\n"),
        "{plain:?}"
    );
    let tls = setup
        .cli_ok(&["mail", "show", "alice@example.test", "2"], None)
        .unwrap();
    assert!(tls.contains(" with ESMTPS id "), "{tls}");
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn swaks_delivers_and_is_refused_where_it_should_be() {
    let swaks = ensure_tool("swaks", "swaks").unwrap();
    ensure_package("libnet-ssleay-perl").unwrap();
    ensure_package("libio-socket-ssl-perl").unwrap();
    let setup = setup_with_alice();
    let mut server = setup.serve().unwrap();
    let port = setup.ports.smtp.port().to_string();
    let run = |to: &str, tls: bool| {
        let mut cmd = Command::new(&swaks);
        cmd.args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "someone@remote.test",
            "--to",
            to,
        ]);
        cmd.args([
            "--header",
            "Subject: via swaks",
            "--body",
            "swaks body",
            "--timeout",
            "10",
        ]);
        if tls {
            cmd.arg("--tls");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (rc, text) = run("alice@example.test", false);
    assert_eq!(rc, Some(0), "{text}");
    let (rc, text) = run("alice+tag@example.test", true);
    assert_eq!(rc, Some(0), "{text}");
    // swaks exits 24 when the recipient is refused.
    let (rc, text) = run("nobody@example.test", false);
    assert_eq!(rc, Some(24), "{text}");
    assert!(text.contains("550 5.1.1"), "{text}");
    let (rc, text) = run("victim@elsewhere.test", false);
    assert_eq!(rc, Some(24), "{text}");
    assert!(text.contains("554 5.7.1 Relay access denied"), "{text}");
    let list = setup
        .cli_ok(&["mail", "list", "alice@example.test"], None)
        .unwrap();
    assert_eq!(
        list.lines()
            .filter(|l| l.ends_with("someone@remote.test\tvia swaks"))
            .count(),
        2,
        "{list}"
    );
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(
        log.contains(
            "127.0.0.1 <someone@remote.test> smtp-relay-denied to <victim@elsewhere.test>"
        ),
        "{log}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

/// Senders keep delivering on several connections; each prints `ACK <id>` after a 250.
const SENDER: &str = r#"
import smtplib, sys, threading
port, prefix = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
def run(t):
    n = 0
    while True:
        mid = "%s-%d-%d" % (prefix, t, n)
        body = ("Subject: %s\r\nMessage-ID: <%s@remote.test>\r\n\r\n" % (mid, mid)) + ("x" * 2000 + "\r\n") * 8 + "END-OF-MESSAGE\r\n"
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=5)
            s.sendmail("s@remote.test", ["alice@example.test"], body)
        except Exception:
            return
        with lock:
            print("ACK", mid, flush=True)
        try:
            s.quit()
        except Exception:
            pass
        n += 1
threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
"#;

#[test]
fn sigkill_during_deliveries_loses_no_acknowledged_message_and_leaves_no_partial_one() {
    let setup = setup_with_alice();
    let python3 = ensure_tool("python3", "python3").unwrap();
    let mut acked: BTreeMap<String, u32> = BTreeMap::new();
    for round in 0..20 {
        let mut server = setup.serve().unwrap();
        let mut sender = Command::new(&python3)
            .args([
                "-c",
                SENDER,
                &setup.ports.smtp.port().to_string(),
                &format!("r{round}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = sender.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").map(str::to_string))
                .collect::<Vec<_>>()
        });
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_millis(200 + u64::from(nanos % 500)));
        server.kill().unwrap();
        sender.wait().unwrap();
        for id in reader.join().unwrap() {
            *acked.entry(id).or_default() += 1;
        }
    }
    // Server down: the CLI reads the store itself.
    let list = setup
        .cli_ok(&["mail", "list", "alice@example.test"], None)
        .unwrap();
    let mut stored: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in list.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        stored
            .entry(fields[4].to_string())
            .or_default()
            .push(fields[0].parse().unwrap());
    }
    for uid in stored.values().flatten() {
        let msg = setup
            .cli_ok(
                &["mail", "show", "alice@example.test", &uid.to_string()],
                None,
            )
            .unwrap();
        assert!(
            msg.ends_with("END-OF-MESSAGE\r\n"),
            "partial message UID {uid}"
        );
    }
    let lost: Vec<&String> = acked
        .keys()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    let duplicated: Vec<(&String, &Vec<u32>)> =
        stored.iter().filter(|(_, uids)| uids.len() > 1).collect();
    println!(
        "SMTP crash test: 20 SIGKILLs, {} messages acknowledged with 250, {} stored, {} lost, {} duplicated",
        acked.len(),
        stored.len(),
        lost.len(),
        duplicated.len()
    );
    assert!(acked.len() >= 20, "too few deliveries to prove anything");
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(duplicated.is_empty(), "stored twice: {duplicated:?}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn hostile_input_gets_clear_replies_or_a_clean_close_and_memory_stays_bounded() {
    let setup = setup_with_alice();
    let mut server = setup.serve().unwrap();
    let pid = server.pid().unwrap();
    let before = rss_kib(pid);
    let script = r#"
import socket, sys, time
port = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert s.recv(200).startswith(b"220")
    return s
def talk(s, data):
    if data:
        s.sendall(data)
    time.sleep(0.2)
    s.settimeout(5)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                out += b"<closed>"
                break
            out += chunk
            if out.endswith(b"\r\n"):
                s.settimeout(0.3)
    except socket.timeout:
        pass
    return out.decode("latin-1")
# 10 MB of garbage before EHLO, from 3 clients at once
clients = [conn() for _ in range(3)]
for c in clients:
    try:
        c.sendall(b"X" * (10 * 1024 * 1024))
    except OSError:
        pass
for c in clients:
    print("garbage:", talk(c, b"").replace("\r\n", " | "))
s = conn()
print("nul:", talk(s, b"EHLO a\r\nMA\x00IL FROM:<a@b.test>\r\n").splitlines()[-1])
print("badutf8:", talk(s, b"MAIL FROM:<\xff\xfe@b.test> SMTPUTF8\r\n").strip())
print("junk:", talk(s, b"RSET\r\n" + b"\x01\x02junk\r\n" * 3).strip().replace("\r\n", " | "))
print("long:", talk(s, b"NOOP " + b"A" * 5000 + b"\r\n").strip())
# An unterminated DATA, then the client goes away.
s = conn()
talk(s, b"EHLO a\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
s.sendall(b"Subject: never finished\r\n\r\nhalf a message\r\n")
s.close()
time.sleep(0.3)
# The server still serves others.
s = conn()
print("after:", talk(s, b"EHLO a\r\nQUIT\r\n").replace("\r\n", " | "))
"#;
    let out = python(script, &[&setup.ports.smtp.port().to_string()]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines().filter(|l| l.starts_with("garbage:")) {
        assert!(
            line.contains("500 5.5.6 Line too long") && line.contains("<closed>"),
            "{line}"
        );
    }
    assert!(
        text.contains("nul: 500 5.5.2 Command unrecognized"),
        "{text}"
    );
    assert!(
        text.contains("badutf8: 501 5.5.2 Invalid UTF-8 in command"),
        "{text}"
    );
    assert!(text.contains("junk: 250 2.0.0 OK | 500 5.5.2"), "{text}");
    assert!(text.contains("long: 500 5.5.6 Line too long"), "{text}");
    assert!(text.contains("| 221 2.0.0 Bye | <closed>"), "{text}");
    let list = setup
        .cli_ok(&["mail", "list", "alice@example.test"], None)
        .unwrap();
    assert!(
        !list.contains("never finished"),
        "a half-received message must never appear: {list}"
    );
    let after = rss_kib(pid);
    println!("server RSS: {before} KiB before, {after} KiB after 30 MB of garbage");
    assert!(
        after < before + 32 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn dnsbl_listed_clients_are_refused_naming_the_zone_and_refusal_codes_are_not_listings() {
    let dns = tests::dns::TestDns::start(&tests::dns::standard_zones()).unwrap();
    let extra = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 2\n\n[spam]\ndnsbl = [\"dnsbl.test\"]\ntrusted_networks = []\n",
        dns.addr()
    );
    let mut setup = Setup::quickstart(ADMIN, &extra).unwrap();
    setup
        .cli_ok(
            &["user", "add", "alice@example.test", "--password-stdin"],
            Some("Alice-Pass-1\n"),
        )
        .unwrap();
    let mut server = setup.serve().unwrap();
    let script = r#"
import smtplib, sys
port = int(sys.argv[1])
for source in sys.argv[2:]:
    s = smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0))
    s.ehlo("client.test")
    code, msg = s.mail("someone@remote.test")
    print(source, code, msg.decode())
    s.quit()
"#;
    let port = setup.ports.smtp.port().to_string();
    // 127.0.0.2: listed (127.0.0.2 + TXT); .10: answered 127.255.255.254 (a Spamhaus
    // refusal code, not a listing); .3: NXDOMAIN.
    let out = python(
        script,
        &[&port, "127.0.0.2", "127.0.0.10", "127.0.0.3", "127.0.0.2"],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "127.0.0.2 554 5.7.1 Service unavailable; client [127.0.0.2] blocked using dnsbl.test: listed: test"
    );
    assert_eq!(lines[1], "127.0.0.10 250 2.1.0 Sender OK");
    assert_eq!(lines[2], "127.0.0.3 250 2.1.0 Sender OK");
    assert!(lines[3].starts_with("127.0.0.2 554 5.7.1"), "{text}");
    let log = server.log();
    assert_eq!(
        log.matches("the block list refuses our queries").count(),
        1,
        "warned once:\n{log}"
    );
    let activity = setup.cli_ok(&["log"], None).unwrap();
    assert!(
        activity.contains(
            "127.0.0.2 <someone@remote.test> smtp-dnsbl listed by dnsbl.test (127.0.0.2)"
        ),
        "{activity}"
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );

    // The DNS server gone: lookups fail, and mail is accepted (fail open).
    drop(dns);
    let mut server = setup.serve().unwrap();
    let out = python(script, &[&port, "127.0.0.4"]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("127.0.0.4 250 2.1.0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );

    // Loopback is trusted by default: never looked up.
    setup.write_config("").unwrap();
    let mut server = setup.serve().unwrap();
    let out = python(script, &[&port, "127.0.0.2"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.2 250 2.1.0"));
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
