//! The outbound queue, black-box: mail submitted with python's smtplib goes through the
//! MX found in the test DNS to a second Postern playing the remote domain, signed so
//! that two independent verifiers (dkimpy's `dkimverify` and OpenDKIM in test mode)
//! pass both signatures; failures come back as exactly one DSN;
//! a remote MX that is down is retried; SIGKILL never loses a message nor sends one
//! twice.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::ca::TestCa;
use tests::dns::{TestDns, Zone, standard_zones};
use tests::harness::{Server, Setup, ensure_package, ensure_tool, free_port, python};

const ALICE_PW: &str = "Alice-Pass-1";

/// The standard zones plus the remote domain, a null-MX domain and `extra` lines.
fn zones(extra: &[String]) -> Vec<Zone> {
    let mut zones = standard_zones();
    let mut test = zones
        .remove(0)
        .record("remote 300 IN MX 10 mx.remote.test.")
        .record("mx.remote 300 IN A 127.0.0.1")
        .record("nullmx 300 IN MX 0 .")
        .record("nullmx 300 IN A 127.0.0.1");
    for line in extra {
        test = test.record(line);
    }
    zones.insert(0, test);
    zones
}

fn dns_section(dns: &TestDns) -> String {
    format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 1\n",
        dns.addr()
    )
}

fn add_user(setup: &Setup, email: &str, password: &str) {
    setup
        .cli_ok(
            &["user", "add", email, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
        .unwrap();
}

/// Sends one message with smtplib as alice: `mode` is `starttls` (587) or `ssl` (465).
/// Prints the refused recipients as a dict, or the SMTP error.
const SEND: &str = r#"
import smtplib, ssl, sys
mode, host, port, user, password, sender, rcpts, msgid, extra = sys.argv[1:10]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
msg = ("From: %s\r\nTo: %s\r\nSubject: queue test %s\r\nMessage-ID: <%s>\r\n\r\n"
       "Hello from the queue test.\r\n.A line that starts with a dot.\r\n" % (sender, rcpts, msgid, msgid))
opts = [o for o in extra.split(",") if o]
try:
    if mode == "ssl":
        s = smtplib.SMTP_SSL(host, int(port), context=ctx, timeout=20)
    else:
        s = smtplib.SMTP(host, int(port), timeout=20); s.starttls(context=ctx)
    s.login(user, password)
    print("refused:", s.sendmail(sender, rcpts.split(","), msg, mail_options=opts))
    s.quit()
except smtplib.SMTPException as e:
    print("error:", e); sys.exit(3)
"#;

#[allow(clippy::too_many_arguments)]
fn send(port: u16, mode: &str, to: &str, msgid: &str, options: &str) -> (bool, String) {
    let out = python(
        SEND,
        &[
            mode,
            "127.0.0.1",
            &port.to_string(),
            "alice@example.test",
            ALICE_PW,
            "alice@example.test",
            to,
            msgid,
            options,
        ],
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Sends like [`send`] and fails unless every recipient was accepted.
fn send_ok(port: u16, mode: &str, to: &str, msgid: &str) {
    let (ok, out) = send(port, mode, to, msgid, "");
    assert!(ok && out.contains("refused: {}"), "{out}");
}

/// `[dns]` and a `[queue]` that reaches the remote MX on `mx_port` and retries fast,
/// with `extra` lines.
fn fast_queue(dns: &TestDns, mx_port: u16, extra: &str) -> String {
    format!(
        "{}[queue]\nmx_port = {mx_port}\nretry_first_seconds = 1\nretry_max_seconds = 2\ntimeout_seconds = 10\n{extra}",
        dns_section(dns)
    )
}

/// Polls `postern mail list` until `pred` holds on it (or fails after `secs`).
fn wait_mail(setup: &Setup, email: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let list = setup.cli_ok(&["mail", "list", email], None).unwrap();
        if pred(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "timed out; {email} has:\n{list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_queue_empty(setup: &Setup, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let list = setup.cli_ok(&["queue", "list"], None).unwrap();
        if list.contains("The queue is empty") {
            return;
        }
        assert!(Instant::now() < deadline, "queue not empty:\n{list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The UID of the first message whose list line contains `needle`.
fn uid_of(list: &str, needle: &str) -> String {
    list.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in\n{list}"))
        .split('\t')
        .next()
        .unwrap()
        .to_string()
}

/// The message with only its `keep`-th DKIM-Signature header (folded lines included).
fn with_one_signature(message: &str, keep: usize) -> String {
    let (head, body) = message.split_once("\r\n\r\n").unwrap();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().unwrap();
            last.push_str("\r\n");
            last.push_str(line);
        } else {
            fields.push(line.to_string());
        }
    }
    let mut n = 0;
    let kept: Vec<String> = fields
        .into_iter()
        .filter(|f| {
            if f.to_ascii_lowercase().starts_with("dkim-signature:") {
                n += 1;
                n - 1 == keep
            } else {
                true
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", kept.join("\r\n"))
}

/// Runs dkimpy's `dkimverify` and OpenDKIM (`opendkim -t`) on each file, inside a network
/// and mount namespace where /etc/resolv.conf names a dnsmasq on 127.0.0.1:53 that
/// serves `txt` (name, value) records: both tools look keys up in "live" DNS, and the
/// host's resolver and /etc stay untouched. Returns dkimverify's "dkimverify FILE rc=N"
/// lines and OpenDKIM's "opendkim: FILE: verification (...) succeeded|failed" lines.
fn verify_in_netns(dir: &Path, files: &[&Path], txt: &[(String, String)]) -> String {
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let mut records = String::new();
    for (name, value) in txt {
        assert!(!value.contains('\''), "{value}");
        records.push_str(&format!(" '--txt-record={name},{value}'"));
    }
    // OpenDKIM's own verifier in test mode (`opendkim -t`): opendkim-testmsg of
    // Debian 12 (2.11.0~beta2) fails every input with "dkim_chunk(): Syntax error".
    let conf = dir.join("opendkim.conf");
    // Its resolver is libunbound, which ignores /etc/resolv.conf: the keys come from
    // its TestPublicKeys file instead (inside the namespace it reaches nothing else).
    let keys = dir.join("opendkim-keys.txt");
    let lines: String = txt
        .iter()
        .map(|(name, value)| format!("{name} {}\n", value.replace(',', "")))
        .collect();
    std::fs::write(&keys, lines).unwrap();
    std::fs::write(
        &conf,
        format!("Mode v\nSyslog no\nTestPublicKeys {}\n", keys.display()),
    )
    .unwrap();
    let mut checks = String::new();
    for f in files {
        let f = f.display();
        checks.push_str(&format!(
            "dkimverify < {f} 2>&1; echo \"dkimverify {f} rc=$?\"\n\
             opendkim -x {conf} -t {f} 2>&1\n",
            conf = conf.display()
        ));
    }
    let pid = dir.join("dk.pid");
    let script = format!(
        "set -u\nmount --bind {resolv} /etc/resolv.conf\nip link set lo up\n\
         dnsmasq --no-resolv --no-hosts --conf-file=/dev/null --listen-address=127.0.0.1 \
         --bind-interfaces --port=53 --user=root --pid-file={pid} --local=/test/{records}\n\
         for i in 1 2 3 4 5 6 7 8 9 10; do [ -s {pid} ] && break; sleep 0.2; done\n\
         {checks}kill $(cat {pid})\n",
        resolv = resolv.display(),
        pid = pid.display(),
    );
    let path = dir.join("verify.sh");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "-n", "sh"])
        .arg(&path)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn submitted_mail_reaches_a_remote_postern_by_mx_signed_for_two_verifiers() {
    ensure_package("python3-dkim").unwrap();
    ensure_package("python3-nacl").unwrap();
    ensure_tool("opendkim", "opendkim").unwrap();
    ensure_tool("dnsmasq", "dnsmasq-base").unwrap();
    let mut a = Setup::quickstart("admin@example.test", "").unwrap();
    let mut b = Setup::quickstart("admin@remote.test", "").unwrap();
    add_user(&a, "alice@example.test", ALICE_PW);
    add_user(&a, "bob@example.test", "Bob-Pass-1!");
    add_user(&b, "carol@remote.test", "Carol-Pass-1");
    // The keys A signs with, published in the DNS B checks.
    let records = a.cli_ok(&["dns", "records", "example.test"], None).unwrap();
    let dkim: Vec<String> = records
        .lines()
        .filter(|l| l.contains("._domainkey.") && l.contains(" TXT "))
        .map(String::from)
        .collect();
    assert_eq!(dkim.len(), 2, "{records}");
    let dns = TestDns::start(&zones(&dkim)).unwrap();
    a.write_config(&fast_queue(&dns, b.ports.smtp.port(), ""))
        .unwrap();
    b.write_config(&dns_section(&dns)).unwrap();
    let mut server_a = a.serve().unwrap();
    let mut server_b = b.serve().unwrap();

    // A local and a remote recipient over 587 (STARTTLS), a remote one over 465.
    send_ok(
        a.ports.submission.port(),
        "starttls",
        "bob@example.test,carol@remote.test",
        "one@example.test",
    );
    send_ok(
        a.ports.submissions.port(),
        "ssl",
        "carol@remote.test",
        "two@example.test",
    );
    wait_mail(&a, "bob@example.test", 10, |l| l.contains("queue test one"));
    let list = wait_mail(&b, "carol@remote.test", 20, |l| {
        l.contains("queue test one") && l.contains("queue test two")
    });
    assert_eq!(list.lines().count(), 2, "{list}");
    let uid = uid_of(&list, "queue test one");
    let received = b
        .cli_ok(&["mail", "show", "carol@remote.test", &uid], None)
        .unwrap();
    // B's own verdict (mail-auth), then two independent verifiers, per signature.
    assert!(
        received.contains("Authentication-Results: mail.remote.test"),
        "{received}"
    );
    assert_eq!(received.matches("dkim=pass").count(), 2, "{received}");
    assert!(received.contains("spf=pass"), "{received}");
    assert!(received.contains("dmarc=pass"), "{received}");
    assert!(
        received.contains("\r\n.A line that starts with a dot.\r\n"),
        "dot-stuffing kept the line: {received}"
    );
    let txt: Vec<(String, String)> = dkim
        .iter()
        .map(|l| {
            let name = l
                .split(' ')
                .next()
                .unwrap()
                .trim_end_matches('.')
                .to_string();
            let value = l
                .split('"')
                .skip(1)
                .step_by(2)
                .collect::<Vec<_>>()
                .join(",");
            // dnsmasq: a comma starts the next character-string of the TXT record.
            (name, value)
        })
        .collect();
    let dir = a.dir.path();
    let mut files = Vec::new();
    for (i, algo) in ["first", "second"].iter().enumerate() {
        let path = dir.join(format!("sig-{algo}.eml"));
        std::fs::write(&path, with_one_signature(&received, i)).unwrap();
        files.push(path);
    }
    let tampered = dir.join("sig-tampered.eml");
    std::fs::write(
        &tampered,
        with_one_signature(&received, 1)
            .replace("Hello from the queue test.", "Hello from the forger."),
    )
    .unwrap();
    let paths: Vec<&Path> = files
        .iter()
        .map(|p| p.as_path())
        .chain([tampered.as_path()])
        .collect();
    let verdicts = verify_in_netns(dir, &paths, &txt);
    for f in &files {
        let f = f.display();
        assert!(
            verdicts.contains(&format!("dkimverify {f} rc=0")),
            "dkimpy on {f}:\n{verdicts}"
        );
        assert!(
            verdicts.contains(&format!("opendkim: {f}: verification"))
                && verdicts.lines().any(
                    |l| l.starts_with(&format!("opendkim: {f}: ")) && l.ends_with(" succeeded")
                ),
            "opendkim on {f}:\n{verdicts}"
        );
    }
    let t = tampered.display();
    assert!(
        verdicts.contains(&format!("dkimverify {t} rc=1")),
        "{verdicts}"
    );
    assert!(
        verdicts
            .lines()
            .any(|l| l.starts_with(&format!("opendkim: {t}: ")) && l.contains(" failed")),
        "{verdicts}"
    );
    // Both algorithms were among the signatures checked.
    let sigs = received.matches("DKIM-Signature:").count();
    assert_eq!(sigs, 2, "{received}");
    assert!(received.contains("a=ed25519-sha256") && received.contains("a=rsa-sha256"));

    // A remote 550 and a null MX: the others still go, and exactly one DSN comes back
    // for each message, naming the failed recipient with its status.
    let (ok, out) = send(
        a.ports.submission.port(),
        "starttls",
        "carol@remote.test,nobody@remote.test",
        "three@example.test",
        "",
    );
    assert!(ok, "{out}");
    let (ok, out) = send(
        a.ports.submission.port(),
        "starttls",
        "someone@nullmx.test",
        "four@example.test",
        "",
    );
    assert!(ok, "{out}");
    wait_mail(&b, "carol@remote.test", 20, |l| {
        l.contains("queue test three")
    });
    let inbox = wait_mail(&a, "alice@example.test", 20, |l| {
        l.matches("Undelivered Mail Returned to Sender").count() >= 2
    });
    wait_queue_empty(&a, 20);
    std::thread::sleep(Duration::from_secs(3));
    let inbox2 = a
        .cli_ok(&["mail", "list", "alice@example.test"], None)
        .unwrap();
    assert_eq!(inbox, inbox2, "no further reports");
    assert_eq!(
        inbox.matches("Undelivered Mail Returned to Sender").count(),
        2,
        "{inbox}"
    );
    let mut reports = String::new();
    for line in inbox.lines() {
        let uid = line.split('\t').next().unwrap();
        reports.push_str(
            &a.cli_ok(&["mail", "show", "alice@example.test", uid], None)
                .unwrap(),
        );
    }
    assert!(reports.contains("multipart/report"), "{reports}");
    assert!(
        reports.contains("Final-Recipient: rfc822; nobody@remote.test"),
        "{reports}"
    );
    assert!(reports.contains("Status: 5.1.1"), "{reports}");
    assert!(reports.contains("550 5.1.1"), "{reports}");
    assert!(
        reports.contains("Final-Recipient: rfc822; someone@nullmx.test"),
        "{reports}"
    );
    assert!(reports.contains("Status: 5.1.10"), "{reports}");
    assert!(
        !reports.contains("Final-Recipient: rfc822; carol@remote.test"),
        "{reports}"
    );
    assert!(
        reports.contains("Message-ID: <three@example.test>"),
        "{reports}"
    );

    // REQUIRETLS: B's MX neither has a certificate we can verify nor offers
    // REQUIRETLS, so the message is returned rather than sent without the protection.
    let (ok, out) = send(
        a.ports.submission.port(),
        "starttls",
        "carol@remote.test",
        "five@example.test",
        "REQUIRETLS",
    );
    assert!(ok, "{out}");
    let inbox = wait_mail(&a, "alice@example.test", 20, |l| {
        l.matches("Undelivered Mail Returned to Sender").count() >= 3
    });
    let last = inbox
        .lines()
        .last()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    let report = a
        .cli_ok(&["mail", "show", "alice@example.test", &last], None)
        .unwrap();
    assert!(
        report.contains("Status: 5.7.10") || report.contains("Status: 5.7.30"),
        "{report}"
    );
    assert!(
        report.contains("Message-ID: <five@example.test>"),
        "{report}"
    );
    let carol = b
        .cli_ok(&["mail", "list", "carol@remote.test"], None)
        .unwrap();
    assert!(!carol.contains("queue test five"), "{carol}");

    // Nobody relays through A without logging in, not even with a null sender.
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.ehlo("client.test")
print(s.mail("<>"), s.rcpt("carol@remote.test"))
"#,
        &[&a.ports.smtp.port().to_string()],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(554, b'5.7.1 Relay access denied')"),
        "{text}"
    );

    // DKIM rotation: new keys are published first and signing moves only on activate.
    let rotated = a.cli_ok(&["dkim", "rotate", "example.test"], None).unwrap();
    assert!(rotated.contains("._domainkey.example.test."), "{rotated}");
    let keys = a.cli_ok(&["dkim", "list", "example.test"], None).unwrap();
    assert_eq!(keys.matches("\tinactive\t").count(), 2, "{keys}");
    let new: Vec<String> = keys
        .lines()
        .filter(|l| l.contains("\tinactive\t"))
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    let old: Vec<String> = keys
        .lines()
        .filter(|l| l.contains("\tactive\t"))
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    let retire = a
        .cli(&["dkim", "retire", "example.test", &old[0]], None)
        .unwrap();
    assert!(!retire.status.success(), "the active key cannot be retired");
    for s in &new {
        a.cli_ok(&["dkim", "activate", "example.test", s], None)
            .unwrap();
    }
    let (ok, out) = send(
        a.ports.submission.port(),
        "starttls",
        "bob@example.test",
        "six@example.test",
        "",
    );
    assert!(ok, "{out}");
    let list = wait_mail(&a, "bob@example.test", 10, |l| l.contains("queue test six"));
    let signed = a
        .cli_ok(
            &[
                "mail",
                "show",
                "bob@example.test",
                &uid_of(&list, "queue test six"),
            ],
            None,
        )
        .unwrap();
    for s in &new {
        assert!(
            signed.contains(&format!("s={s};")),
            "signed with {s}: {signed}"
        );
    }
    for s in &old {
        assert!(
            !signed.contains(&format!("s={s};")),
            "not with {s}: {signed}"
        );
        a.cli_ok(&["dkim", "retire", "example.test", s], None)
            .unwrap();
    }
    let keys = a.cli_ok(&["dkim", "list", "example.test"], None).unwrap();
    assert_eq!(keys.lines().count(), 2, "{keys}");

    assert_eq!(
        server_a.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    assert_eq!(
        server_b.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

/// A remote MX on loopback written for this test: no STARTTLS and no CHUNKING (so
/// the queue's plaintext DATA path is used), 550 for `nobody@`, and the message
/// stored (fsynced) only if the client is still there after `delay` seconds, just
/// before its 250. Logs "check-time reply-time file" per stored message.
const RECEIVER: &str = r#"
import os, select, socket, sys, threading, time
port, outdir, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
log = open(os.path.join(outdir, "log"), "a")
lock = threading.Lock()
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(64)
print("ready", flush=True)
def alive(c):
    r, _, _ = select.select([c], [], [], 0)
    return not r or c.recv(1, socket.MSG_PEEK) != b""
def handle(c):
    f = c.makefile("rb")
    w = lambda s: c.sendall(s.encode() + b"\r\n")
    w("220 mx.remote.test ESMTP test receiver")
    while True:
        line = f.readline()
        if not line:
            return
        u = line.decode("utf-8", "replace").strip().upper()
        if u.startswith("EHLO"):
            c.sendall(b"250-mx.remote.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif u.startswith("MAIL FROM:") or u in ("RSET", "NOOP"):
            w("250 2.0.0 OK")
        elif u.startswith("RCPT TO:"):
            w("550 5.1.1 No such user" if "NOBODY@" in u else "250 2.1.5 OK")
        elif u == "DATA":
            w("354 go ahead")
            lines = []
            while True:
                l = f.readline()
                if not l:
                    return
                if l == b".\r\n":
                    break
                lines.append(l[1:] if l.startswith(b".") else l)
            time.sleep(delay)
            t0 = time.time()
            if not alive(c):
                log.write("%.6f abandoned\n" % t0); log.flush()
                return
            with lock:
                name = os.path.join(outdir, "%.6f-%d.eml" % (t0, threading.get_ident()))
                with open(name + ".tmp", "wb") as o:
                    o.write(b"".join(lines)); o.flush(); os.fsync(o.fileno())
                os.rename(name + ".tmp", name)
            w("250 2.0.0 stored")
            log.write("%.6f %.6f %s\n" % (t0, time.time(), name)); log.flush()
        elif u == "QUIT":
            w("221 2.0.0 bye"); return
        else:
            w("502 5.5.1 not here")
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_receiver(port: u16, dir: &Path, delay: &str) -> Receiver {
    let python = ensure_tool("python3", "python3").unwrap();
    let mut child = Command::new(python)
        .args([
            "-c",
            RECEIVER,
            &port.to_string(),
            &dir.to_string_lossy(),
            delay,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Receiver(child)
}

/// When the receiver decided to take a copy, when it said 250, and its Message-ID.
type Reply = (f64, f64, String);

/// Message-IDs of what the receiver stored, with how often each came, and for each
/// stored copy when its 250 was decided and sent.
fn received_ids(dir: &Path) -> (HashMap<String, usize>, Vec<Reply>) {
    let mut counts = HashMap::new();
    let mut replies = Vec::new();
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    for line in log.lines().filter(|l| !l.ends_with(" abandoned")) {
        let mut f = line.split(' ');
        let t0: f64 = f.next().unwrap().parse().unwrap();
        let t1: f64 = f.next().unwrap().parse().unwrap();
        let file = f.next().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <"))
            .unwrap()
            .trim_end_matches('>')
            .to_string();
        *counts.entry(id.clone()).or_insert(0) += 1;
        replies.push((t0, t1, id));
    }
    (counts, replies)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_queue_retries_until_the_mx_returns_and_sigkill_loses_and_repeats_nothing() {
    let rx_port = free_port().unwrap();
    let dns = TestDns::start(&zones(&[])).unwrap();
    let mut a = Setup::quickstart("admin@example.test", "").unwrap();
    add_user(&a, "alice@example.test", ALICE_PW);
    a.write_config(&fast_queue(&dns, rx_port, "")).unwrap();
    let rx_dir = a.dir.path().join("received");
    std::fs::create_dir_all(&rx_dir).unwrap();
    let mut server = a.serve().unwrap();

    // The remote MX is down: the message waits in the queue, retried.
    let (ok, out) = send(
        a.ports.submission.port(),
        "starttls",
        "carol@remote.test",
        "down@example.test",
        "",
    );
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let list = loop {
        let list = a.cli_ok(&["queue", "list"], None).unwrap();
        if list.contains("attempts 2") {
            break list;
        }
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        list.contains("<carol@remote.test>\tpending: mx.remote.test [127.0.0.1]: connect"),
        "{list}"
    );
    // It comes back: the next retry delivers.
    let receiver = start_receiver(rx_port, &rx_dir, "0");
    wait_queue_empty(&a, 15);
    let (counts, _) = received_ids(&rx_dir);
    assert_eq!(counts.get("down@example.test"), Some(&1), "{counts:?}");
    // A restart with an empty queue sends nothing again.
    server.stop(Duration::from_secs(10)).unwrap();
    drop(receiver);

    // SIGKILL while messages are being delivered to a slow MX, again and again.
    let _receiver = start_receiver(rx_port, &rx_dir, "0.5");
    let mut server = a.serve().unwrap();
    let mut accepted = Vec::new();
    let mut kills = Vec::new();
    let mut seed = u64::from(std::process::id());
    for round in 0..8 {
        for i in 0..4 {
            let id = format!("kill-{round}-{i}@example.test");
            let (ok, out) = send(
                a.ports.submission.port(),
                "starttls",
                "carol@remote.test",
                &id,
                "",
            );
            assert!(ok, "{out}");
            accepted.push(id);
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(100 + (seed >> 33) % 400));
        kills.push(now());
        server.kill().unwrap();
        server = Server::start(&a.config).unwrap();
    }
    wait_queue_empty(&a, 60);
    let (counts, replies) = received_ids(&rx_dir);
    let mut in_window = 0;
    for id in &accepted {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "{id} was lost: {counts:?}");
        if n > 1 {
            // The one unavoidable case (RFC 5321 §6.1): the kill fell between the
            // receiver's 250 and our record of it.
            let unavoidable = replies.iter().any(|(t0, t1, rid)| {
                rid == id && kills.iter().any(|k| *k >= t0 - 0.01 && *k <= t1 + 0.3)
            });
            assert!(
                unavoidable && n == 2,
                "{id} came {n} times: {replies:?} kills {kills:?}"
            );
            in_window += 1;
        }
    }
    // The kills did land in the middle of deliveries: the receiver saw the
    // connection go away with a message read and not yet answered.
    let log = std::fs::read_to_string(rx_dir.join("log")).unwrap();
    let abandoned = log.lines().filter(|l| l.ends_with(" abandoned")).count();
    eprintln!(
        "{} messages, {} kills, {abandoned} deliveries cut off after the message was sent, {} duplicates inside the reply window",
        accepted.len(),
        kills.len(),
        in_window
    );
    assert!(abandoned > 0, "no kill fell during a delivery:\n{log}");
    assert_eq!(
        server.stop(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

/// A policy server for MTA-STS (RFC 8461 §3.3): HTTPS on ADDR:443 with CERT/KEY,
/// serving `/.well-known/mta-sts.txt` per Host from the files `DIR/<host>`, logging
/// every request to `DIR/requests`.
const POLICY_SERVER: &str = r#"
import http.server, os, ssl, sys
addr, cert, key, root = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        with open(os.path.join(root, "requests"), "a") as log:
            log.write("%s %s\n" % (host, self.path))
        path = os.path.join(root, host)
        if self.path != "/.well-known/mta-sts.txt" or not os.path.exists(path):
            self.send_error(404); return
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer((addr, 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"#;

fn start_policy_server(addr: &str, dir: &Path) -> Receiver {
    let python = ensure_tool("python3", "python3").unwrap();
    let mut child = Command::new(python)
        .args([
            "-c",
            POLICY_SERVER,
            addr,
            &dir.join("policy.pem").to_string_lossy(),
            &dir.join("policy.key").to_string_lossy(),
            &dir.to_string_lossy(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Receiver(child)
}

fn fetches(dir: &Path, host: &str) -> usize {
    std::fs::read_to_string(dir.join("requests"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{host} ")))
        .count()
}

/// RFC 8461 end to end: remote.test publishes an `enforce` policy naming its MX, and
/// other.test one naming a host its MX is not. Mail for remote.test waits while the
/// MX's certificate cannot be verified (where opportunistic TLS would have sent it),
/// and goes once the MX presents one from a CA in `[queue] ca_file`; mail for
/// other.test never goes to the unlisted MX. Policies are fetched once per record
/// id and stay in force from the store when the policy host is down, across a
/// restart.
#[test]
fn mta_sts_policies_are_fetched_cached_and_enforced() {
    let ca_dir = tempfile::tempdir().unwrap();
    let dir = ca_dir.path();
    let ca = TestCa::new(dir).unwrap();
    ca.issue(
        dir,
        "policy",
        &["mta-sts.remote.test", "mta-sts.other.test"],
    )
    .unwrap();
    ca.issue(dir, "mx", &["mx.remote.test"]).unwrap();
    std::fs::write(
        dir.join("mta-sts.remote.test"),
        "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("mta-sts.other.test"),
        "version: STSv1\nmode: enforce\nmx: *.other-provider.test\nmax_age: 86400\n",
    )
    .unwrap();
    // Port 443 as in production, on a loopback address of this run's own.
    let pid = std::process::id();
    let policy_ip = format!(
        "127.{}.{}.{}",
        100 + pid % 100,
        (pid / 100) % 250,
        2 + pid % 250
    );
    let dns = TestDns::start(&zones(&[
        "_mta-sts.remote 300 IN TXT \"v=STSv1; id=20261127T01;\"".into(),
        format!("mta-sts.remote 300 IN A {policy_ip}"),
        "other 300 IN MX 10 mx.remote.test.".into(),
        "_mta-sts.other 300 IN TXT \"v=STSv1; id=7\"".into(),
        format!("mta-sts.other 300 IN A {policy_ip}"),
    ]))
    .unwrap();
    let policy_server = start_policy_server(&policy_ip, dir);

    let mut a = Setup::quickstart("admin@example.test", "").unwrap();
    let mut b = Setup::quickstart("admin@remote.test", "").unwrap();
    add_user(&a, "alice@example.test", ALICE_PW);
    add_user(&b, "carol@remote.test", "Carol-Pass-1");
    b.cli_ok(&["domain", "add", "other.test"], None).unwrap();
    add_user(&b, "dave@other.test", "Dave-Pass-1");
    let ca_file = format!("ca_file = \"{}\"\n", dir.join("ca.pem").display());
    a.write_config(&fast_queue(&dns, b.ports.smtp.port(), &ca_file))
        .unwrap();
    // B starts with quickstart's self-signed certificate.
    b.write_config(&dns_section(&dns)).unwrap();
    let mut server_a = a.serve().unwrap();
    let mut server_b = b.serve().unwrap();

    send_ok(
        a.ports.submission.port(),
        "starttls",
        "carol@remote.test",
        "sts-one@example.test",
    );
    send_ok(
        a.ports.submission.port(),
        "starttls",
        "dave@other.test",
        "sts-two@example.test",
    );
    // Several attempts (retries after 1 s, then every 2 s), none delivered.
    std::thread::sleep(Duration::from_secs(6));
    let list = a.cli_ok(&["queue", "list"], None).unwrap();
    assert!(
        list.contains("<carol@remote.test>\tpending: mx.remote.test [127.0.0.1]: STARTTLS"),
        "{list}"
    );
    assert!(
        list.contains("<dave@other.test>\tpending: MTA-STS: no MX host of other.test"),
        "{list}"
    );
    let attempts: Vec<u32> = list
        .lines()
        .filter_map(|l| l.split("attempts ").nth(1))
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        attempts.len() == 2 && attempts.iter().all(|&n| n >= 3),
        "{list}"
    );
    assert_eq!(
        b.cli_ok(&["mail", "list", "carol@remote.test"], None)
            .unwrap(),
        ""
    );
    assert_eq!(
        b.cli_ok(&["mail", "list", "dave@other.test"], None)
            .unwrap(),
        ""
    );
    // One fetch per domain: later attempts use the cache while the id stays the same.
    assert_eq!(fetches(dir, "mta-sts.remote.test"), 1);
    assert_eq!(fetches(dir, "mta-sts.other.test"), 1);
    assert!(server_a.log().contains("MTA-STS policy fetched"));

    // The policy host goes away; B gets a certificate from the CA A trusts.
    drop(policy_server);
    server_b.stop(Duration::from_secs(10)).unwrap();
    b.write_config(&format!(
        "{}[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dns_section(&dns),
        dir.join("mx.pem").display(),
        dir.join("mx.key").display()
    ))
    .unwrap();
    let _server_b = b.serve().unwrap();
    let list = wait_mail(&b, "carol@remote.test", 20, |l| l.contains("sts-one"));
    let uid = uid_of(&list, "sts-one");
    let received = b
        .cli_ok(&["mail", "show", "carol@remote.test", &uid], None)
        .unwrap();
    assert!(received.contains("with ESMTPS"), "{received}");

    // other.test's cached policy still holds with its host down, and after a restart.
    std::thread::sleep(Duration::from_secs(3));
    server_a.stop(Duration::from_secs(10)).unwrap();
    let _server_a = a.serve().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        b.cli_ok(&["mail", "list", "dave@other.test"], None)
            .unwrap(),
        ""
    );
    let list = a.cli_ok(&["queue", "list"], None).unwrap();
    assert!(
        list.contains("<dave@other.test>\tpending: MTA-STS: no MX host of other.test")
            && !list.contains("carol@remote.test"),
        "{list}"
    );
}
