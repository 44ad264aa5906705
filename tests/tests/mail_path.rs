//! The mail path as a sender and an attacker meet it, black-box with smtplib: who a
//! message is from (one From: field, Sender:, DMARC over every From: domain), what the
//! MSA adds, signing never silently off, DSN parameters, refused recipients counting
//! as errors, and RFC 5321 §4.5.2's dot rules at the start of DATA.
#![allow(clippy::unwrap_used)] // test: a failed unwrap is a failed test

use tests::harness::python;
use tests::imap::{PRELUDE, PW, setup};

/// Runs `script` (after the IMAP prelude) with the server's ports; returns its output,
/// failing the test with the server's log unless it printed `done`.
fn drive(setup: &tests::harness::Setup, server: &tests::harness::Server, script: &str) -> String {
    drive_with(setup, server, script, &[])
}

/// Like [`drive`], with more arguments for the script (`sys.argv[6]` on).
fn drive_with(
    setup: &tests::harness::Setup,
    server: &tests::harness::Server,
    script: &str,
    more: &[&str],
) -> String {
    let mut args = vec![
        setup.ports.imaps.port().to_string(),
        "alice@example.test".to_string(),
        PW.to_string(),
        setup.ports.smtp.port().to_string(),
        setup.ports.submission.port().to_string(),
    ];
    args.extend(more.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(&format!("{PRELUDE}{script}"), &args).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("done"),
        "{text}\n{}",
        server.log()
    );
    text
}

const SMTP_PRELUDE: &str = r#"
import smtplib
mx_port = int(sys.argv[4]); sub_port = int(sys.argv[5])
def send(port, raw, frm, to, login):
    s = smtplib.SMTP("127.0.0.1", port)
    if login:
        s.starttls(context=ctx); s.login(user, pw)
    try:
        s.sendmail(frm, list(to), raw.encode())
        return 250, ""
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()
    finally:
        s.quit()
def submit(raw, frm="alice@example.test", to=("alice@example.test",)):
    return send(sub_port, raw, frm, to, True)
def mx(raw, frm="someone@other.test", to=("alice@example.test",)):
    return send(mx_port, raw, frm, to, False)
def inbox():
    m = connect(); ok(m.select("INBOX"))
    n = int(ok(m.search(None, "ALL"))[0].split()[-1]) if ok(m.search(None, "ALL"))[0] else 0
    msgs = [ok(m.fetch(str(i), "(BODY.PEEK[])"))[0][1] for i in range(1, n + 1)]
    m.logout()
    return msgs
"#;

#[test]
fn a_second_from_field_forges_nothing() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
# Submission: two From: fields, the first someone else's, are refused by rule.
code, text = submit("From: CEO <ceo@bank.test>\r\nFrom: alice@example.test\r\nSubject: wire\r\n\r\nPay.\r\n")
assert code == 550 and "exactly one" in text, (code, text)
code, text = submit("Subject: no from\r\n\r\nx\r\n")
assert code == 550 and "no From" in text, (code, text)
# Several authors need a Sender: that is the user's.
code, text = submit("From: alice@example.test, bob@example.test\r\nSubject: two\r\n\r\nx\r\n")
assert code == 550 and "bob@example.test" in text, (code, text)
code, text = submit("From: alice@example.test, alice+x@example.test\r\nSubject: two\r\n\r\nx\r\n")
assert code == 550 and "Sender" in text, (code, text)
code, text = submit("From: alice@example.test, alice+x@example.test\r\nSender: alice@example.test\r\nSubject: two\r\n\r\nx\r\n")
assert code == 250, (code, text)
code, text = submit("From: alice@example.test\r\nSender: admin@example.test\r\nSubject: s\r\n\r\nx\r\n")
assert code == 550 and "admin@example.test" in text, (code, text)
# The MX: two From: domains are both judged by DMARC; example.test's p=reject fails.
code, text = mx("From: CEO <ceo@bank.test>\r\nFrom: admin@example.test\r\nSubject: wire\r\n\r\nPay.\r\n")
assert code == 550 and "example.test" in text, (code, text)
assert not any(b"Subject: wire" in m for m in inbox())
print("done")
"#
        ),
    );
    let log = setup.cli_ok(&["log", "--limit", "50"], None).unwrap();
    assert!(log.contains("submission-identity"), "{log}");
    assert!(log.contains("alice@example.test"), "{log}");
    assert!(log.contains("smtp-dmarc-reject"), "{log}");
}

#[test]
fn the_msa_adds_date_and_message_id() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
code, text = submit("From: alice@example.test\r\nTo: alice@example.test\r\nSubject: bare\r\n\r\nhello\r\n")
assert code == 250, (code, text)
got = [m for m in inbox() if b"Subject: bare" in m]
assert len(got) == 1, got
head = got[0].split(b"\r\n\r\n", 1)[0]
assert re.search(rb"\r\nDate: \w{3}, \d{1,2} \w{3} \d{4} ", head), head
assert re.search(rb"\r\nMessage-ID: <[^>]+@mail\.example\.test>", head), head
# Date and Message-ID come before the signature's fields, so they are signed.
assert head.index(b"DKIM-Signature") < head.index(b"Message-ID"), head
print("done")
"#
        ),
    );
}

#[test]
fn dsn_parameters_with_line_breaks_are_refused() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
s = smtplib.SMTP("127.0.0.1", sub_port)
s.starttls(context=ctx); s.login(user, pw)
# ENVID=x<CR><LF>Bcc: ... in xtext: a field injected into our own failure report.
code, text = s.mail("alice@example.test", ["RET=HDRS", "ENVID=x+0D+0ABcc:+20victim@remote.test"])
assert code == 501 and b"5.5.4" in text and b"ENVID" in text, (code, text)
code, text = s.mail("alice@example.test", ["ENVID=" + "A" * 101])
assert code == 501, (code, text)
code, text = s.mail("alice@example.test", ["ENVID=ok+2Bid"])
assert code == 250, (code, text)
code, text = s.rcpt("someone@remote.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;a+0D+0AX-Evil:+20yes@remote.test"])
assert code == 501 and b"ORCPT" in text, (code, text)
code, text = s.rcpt("someone@remote.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;someone@remote.test"])
assert code == 250, (code, text)
s.rset(); s.quit()
print("done")
"#
        ),
    );
}

#[test]
fn refused_recipients_count_as_errors() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
s = smtplib.SMTP("127.0.0.1", mx_port)
s.ehlo("probe.test")
assert s.mail("a@other.test")[0] == 250
closed = None
for i in range(40):
    try:
        code, text = s.rcpt("victim%d@remote.test" % i)
    except smtplib.SMTPServerDisconnected:
        closed = i
        break
    if code == 421:
        closed = i
        break
    assert code == 554, (i, code, text)
assert closed is not None and closed <= 20, closed
print("done after", closed)
"#
        ),
    );
}

#[test]
fn data_that_starts_with_a_dot() {
    let (setup, server) = setup();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
def raw_data(payload):
    sock = socket.create_connection(("127.0.0.1", mx_port))
    f = sock.makefile("rb")
    def expect(prefix):
        while True:
            line = f.readline().decode()
            if line[3:4] != "-":
                assert line.startswith(prefix), (prefix, line)
                return line
    expect("220")
    sock.sendall(b"EHLO c.test\r\n"); expect("250")
    sock.sendall(b"MAIL FROM:<a@other.test>\r\n"); expect("250")
    sock.sendall(b"RCPT TO:<alice@example.test>\r\n"); expect("250")
    sock.sendall(b"DATA\r\n"); expect("354")
    sock.sendall(payload)
    line = expect("250")
    # The connection is in command state again: nothing of the payload is left over.
    sock.sendall(b"NOOP\r\n"); expect("250")
    sock.sendall(b"QUIT\r\n"); expect("221")
    return line
raw_data(b".\r\n")
raw_data(b"..leading dot\r\nSubject: dotted\r\n\r\nbody\r\n.\r\n")
msgs = inbox()
assert len(msgs) == 2, msgs
# The empty message: only our trace fields.
assert msgs[0].split(b"\r\n\r\n", 1)[0].startswith(b"Received: "), msgs[0]
assert b"\r\n.leading dot\r\n" in msgs[1], msgs[1]
assert b"..leading" not in msgs[1], msgs[1]
print("done")
"#
        ),
    );
}

/// The users the next tests deliver to, with the test password.
fn add_users(setup: &tests::harness::Setup, users: &[&str]) {
    for user in users {
        setup.add_user(&format!("{user}@example.test"), PW).unwrap();
    }
}

/// How many messages a user's INBOX holds.
fn inbox_count(setup: &tests::harness::Setup, user: &str) -> usize {
    setup
        .mail_count(&format!("{user}@example.test"), "INBOX")
        .unwrap()
}

#[test]
fn an_alias_with_a_remote_target_keeps_its_local_copies() {
    let (setup, server) = setup();
    add_users(&setup, &["bob"]);
    setup
        .cli_ok(
            &[
                "alias",
                "add",
                "team@example.test",
                "alice@example.test",
                "bob@remote.test",
                "bob@example.test",
            ],
            None,
        )
        .unwrap();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
code, text = mx("From: ann@other.test\r\nTo: team@example.test\r\nSubject: to the team\r\n\r\nhello team\r\n", to=("team@example.test",))
assert code == 250, (code, text)
print("done")
"#
        ),
    );
    assert_eq!(inbox_count(&setup, "alice"), 1);
    assert_eq!(inbox_count(&setup, "bob"), 1);
    // The remote copy went to the queue (remote.test has no MX here: it fails there).
    let log = server.log();
    assert!(log.contains("to=bob@remote.test"), "{log}");
}

#[test]
fn a_full_mailbox_never_makes_the_others_receive_a_message_twice() {
    let (setup, server) = setup();
    add_users(&setup, &["bob", "carol"]);
    // 1 KiB: empty now (RCPT takes it), too small for the 5 KiB message (the commit
    // does not).
    setup
        .cli_ok(&["user", "quota", "alice@example.test", "1024"], None)
        .unwrap();
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
raw = "From: ann@other.test\r\nTo: alice@example.test, bob@example.test, carol@example.test\r\nSubject: big\r\n\r\n" + ("x" * 76 + "\r\n") * 64
codes = []
# A client retries a temporary failure; five tries at most.
for attempt in range(5):
    code, text = mx(raw, to=("alice@example.test", "bob@example.test", "carol@example.test"))
    codes.append(code)
    if code == 250:
        break
    assert 400 <= code < 500, (code, text)
print("done", codes)
"#
        ),
    );
    assert_eq!(inbox_count(&setup, "bob"), 1);
    assert_eq!(inbox_count(&setup, "carol"), 1);
    assert_eq!(inbox_count(&setup, "alice"), 0);
    // Alice's copy waits in the queue; once she has room it is delivered, once.
    let queue = setup.cli_ok(&["queue", "list"], None).unwrap();
    assert!(queue.contains("<alice@example.test>"), "{queue}");
    assert!(queue.contains("full"), "{queue}");
    let id = queue
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|w| w.parse::<u64>().ok())
        })
        .unwrap();
    setup
        .cli_ok(&["user", "quota", "alice@example.test", "0"], None)
        .unwrap();
    setup
        .cli_ok(&["queue", "retry", &id.to_string()], None)
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while inbox_count(&setup, "alice") == 0 {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(inbox_count(&setup, "alice"), 1);
    assert_eq!(inbox_count(&setup, "bob"), 1);
    let queue = setup.cli_ok(&["queue", "list"], None).unwrap();
    assert!(!queue.contains("alice@example.test"), "{queue}");
}

#[test]
fn a_40_mib_message_costs_the_mx_little_memory() {
    let (setup, server) = setup();
    let pid = server.pid().unwrap();
    let out = drive_with(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
import threading
pid = int(sys.argv[6])
def rss():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
# Warm up: a small message through the same path.
assert mx("From: ann@other.test\r\nSubject: warm\r\n\r\nx\r\n")[0] == 250
time.sleep(0.5)
before = rss()
peak = [before]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
t = threading.Thread(target=sample); t.start()
line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
body = b"From: ann@other.test\r\nTo: alice@example.test\r\nSubject: forty\r\n\r\n" + line * (40 * 1024 * 1024 // len(line))
s = smtplib.SMTP("127.0.0.1", mx_port, timeout=120)
s.sendmail("ann@other.test", ["alice@example.test"], body)
s.quit()
done.set(); t.join()
grown = (peak[0] - before) / 1024
print("message %.1f MiB; server RSS before %.1f MiB, peak %.1f MiB, grown %.1f MiB" % (len(body) / 1048576, before / 1024, peak[0] / 1024, grown))
m = connect(); ok(m.select("INBOX"))
size = ok(m.fetch("2", "(RFC822.SIZE)"))[0]
m.logout()
print("stored", size)
assert grown < 8, grown
print("done")
"#
        ),
        &[&pid.to_string()],
    );
    println!("{out}");
}

/// How long the relay flood below runs: `POSTERN_FLOOD_SECONDS`, else 5 s (the issue's
/// figure, 30 s, is run by hand and in the closing note).
fn flood_seconds() -> String {
    std::env::var("POSTERN_FLOOD_SECONDS").unwrap_or_else(|_| "5".into())
}

#[test]
fn a_relay_flood_from_200_addresses_leaves_the_log_and_memory_alone() {
    let (setup, server) = setup();
    let pid = server.pid().unwrap();
    let before = setup
        .cli_ok(&["log", "--limit", "100000"], None)
        .unwrap()
        .lines()
        .count();
    let out = drive_with(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
import asyncio, resource
pid = int(sys.argv[6]); seconds = float(sys.argv[7])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
stats = {"rcpt": 0, "conn": 0, "refused": 0, "other": 0}
async def client(ip, until):
    while time.time() < until:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", mx_port, local_addr=(ip, 0))
        except OSError:
            await asyncio.sleep(0.05); continue
        stats["conn"] += 1
        async def line():
            while True:
                l = await r.readline()
                if not l or l[3:4] != b"-":
                    return l
        try:
            greeting = await line()
            if not greeting.startswith(b"220"):
                stats["refused"] += 1; w.close(); await asyncio.sleep(0.05); continue
            w.write(b"EHLO flood.test\r\n"); await line()
            w.write(b"MAIL FROM:<x@flood.test>\r\n"); await line()
            n = 0
            while time.time() < until:
                w.write(b"RCPT TO:<victim%d@elsewhere.test>\r\n" % n); n += 1
                l = await line()
                if l.startswith(b"554"):
                    stats["rcpt"] += 1
                elif not l or l.startswith(b"421"):
                    break
                else:
                    stats["other"] += 1
        except (ConnectionError, OSError):
            pass
        w.close()
async def main():
    until = time.time() + seconds
    tasks = [client("127.0.%d.%d" % (1 + i // 250, 2 + i % 250), until) for i in range(200) for _ in range(10)]
    samples = []
    async def sampler():
        while time.time() < until:
            samples.append(rss()); await asyncio.sleep(1)
    await asyncio.gather(sampler(), *tasks)
    return samples
start = rss()
samples = asyncio.run(main())
print("flood: %d connections, %d relay-denied RCPTs, %d refused at connect, %d other; RSS MiB start %.1f, samples %s" % (stats["conn"], stats["rcpt"], stats["refused"], stats["other"], start, " ".join("%.1f" % x for x in samples)))
assert stats["rcpt"] > 1000, stats
assert stats["other"] == 0, stats
half = samples[len(samples) // 2:]
assert max(half) - min(half) < 8, samples
print("done")
"#
        ),
        &[&pid.to_string(), &flood_seconds()],
    );
    println!("{out}");
    let after = setup
        .cli_ok(&["log", "--limit", "100000"], None)
        .unwrap()
        .lines()
        .count();
    println!("activity log: {before} -> {after} lines");
    // One entry per address in the minute (the counts follow when the minute ends).
    assert!(after - before <= 400, "{before} -> {after}");
}

#[test]
fn nothing_automatic_goes_back_to_a_sender_that_failed_spf_and_dmarc() {
    // forged.test publishes SPF -all and DMARC p=none: its mail from here fails both
    // and is delivered; the sender it names did not send it.
    let mut zones = tests::dns::standard_zones();
    let test = zones
        .remove(0)
        .record("forged 300 IN TXT \"v=spf1 -all\"")
        .record("_dmarc.forged 300 IN TXT \"v=DMARC1; p=none\"");
    zones.insert(0, test);
    let dns = tests::dns::TestDns::start(&zones).unwrap();
    let mut setup = tests::harness::Setup::quickstart("admin@example.test", "").unwrap();
    setup
        .write_config(&format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 1\n[queue]\nretry_first_seconds = 1\nretry_max_seconds = 1\nmax_age_seconds = 2\n",
            dns.addr()
        ))
        .unwrap();
    add_users(&setup, &["alice", "bob"]);
    setup
        .cli_ok(&["user", "quota", "alice@example.test", "1024"], None)
        .unwrap();
    let server = setup.serve().unwrap();
    tests::sieve::put_script(
        &setup,
        PW,
        "bob@example.test",
        "away",
        "require \"vacation\";\nvacation :subject \"Away\" \"I am away.\";\n",
    );
    drive(
        &setup,
        &server,
        &format!(
            "{SMTP_PRELUDE}{}",
            r#"
big = "From: x@forged.test\r\nTo: alice@example.test, bob@example.test\r\nSubject: forged\r\n\r\n" + ("y" * 76 + "\r\n") * 64
code, text = mx(big, frm="x@forged.test", to=("alice@example.test", "bob@example.test"))
assert code == 250, (code, text)
print("done")
"#
        ),
    );
    // Alice's copy waits for room, expires, and is not reported to the forged sender;
    // bob's vacation script does not answer it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = server.log();
        if log.contains("no failure report: the sender failed SPF and DMARC") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = server.log();
    assert!(
        log.contains("no vacation reply: the sender failed SPF and DMARC"),
        "{log}"
    );
    assert!(!log.contains("failure report sent"), "{log}");
    assert_eq!(inbox_count(&setup, "bob"), 1);
    let queue = setup.cli_ok(&["queue", "list"], None).unwrap();
    assert!(queue.contains("The queue is empty"), "{queue}");
}
