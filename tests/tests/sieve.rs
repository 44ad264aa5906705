//! Sieve at delivery, black-box: scripts uploaded over ManageSieve (python, by hand),
//! mail sent to the MX with python's smtplib, results read over IMAP and with
//! `postern mail list/show`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tests::harness::{Server, Setup};
use tests::imap::{PRELUDE, run};
use tests::sieve::put_script as upload;

const PW: &str = "Sieve-User-1!";
const USERS: [&str; 3] = [
    "alice@example.test",
    "bob@example.test",
    "carol@example.test",
];

/// A server with alice, bob and carol, and `extra` TOML.
fn setup(extra: &str) -> (Setup, Server) {
    let setup = Setup::quickstart("admin@example.test", extra).unwrap();
    for user in USERS {
        setup
            .cli_ok(
                &["user", "add", user, "--password-stdin"],
                Some(&format!("{PW}\n")),
            )
            .unwrap();
    }
    let server = setup.serve().unwrap();
    (setup, server)
}

/// Sends messages to the MX with smtplib: each `(from, to, message)`; prints one
/// line per message, `OK` or the refusal's code and text.
fn send(setup: &Setup, messages: &[(&str, &str, &str)]) -> Vec<String> {
    const SENDER: &str = r#"
import smtplib, sys, json
port = int(sys.argv[1])
for (sender, rcpt, msg) in json.loads(sys.argv[2]):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.sendmail(sender, rcpt.split(","), msg.encode())
        print("OK")
    except smtplib.SMTPDataError as e:
        print("REFUSED %d %s" % (e.smtp_code, e.smtp_error.decode()))
"#;
    let json = format!(
        "[{}]",
        messages
            .iter()
            .map(|(f, t, m)| format!(
                "[{}, {}, {}]",
                quote(f),
                quote(t),
                quote(&m.replace('\n', "\r\n"))
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = run(SENDER, &[&setup.ports.smtp.port().to_string(), &json]);
    out.lines()
        .filter(|l| l.starts_with("OK") || l.starts_with("REFUSED"))
        .map(str::to_string)
        .collect()
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `postern mail list` of a user's mailbox.
fn list(setup: &Setup, user: &str, mailbox: &str) -> String {
    setup
        .cli_ok(&["mail", "list", user, "--mailbox", mailbox], None)
        .unwrap()
}

/// The number of messages `postern mail list` shows (one line per message after the
/// header line).
fn count(setup: &Setup, user: &str, mailbox: &str) -> usize {
    list(setup, user, mailbox)
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .count()
}

/// Waits until `user`'s `mailbox` holds `n` messages.
fn wait_count(setup: &Setup, user: &str, mailbox: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(setup, user, mailbox) != n {
        assert!(
            Instant::now() < deadline,
            "{user} {mailbox} never had {n}:\n{}",
            list(setup, user, mailbox)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const FILTER: &str = r#"require ["fileinto", "imap4flags", "mailbox", "reject", "envelope", "subaddress"];
# Lists go to their own folder, made on first use.
if header :contains "List-Id" "<news.remote.test>" {
    fileinto :create "Lists/News";
    stop;
}
if header :contains "Subject" "urgent" {
    addflag "\\Flagged";
    keep;
    stop;
}
if envelope :is "from" "pest@remote.test" {
    reject "I do not take mail from you.";
    stop;
}
if envelope :detail "to" "later" {
    fileinto :flags "$Later" "Archive";
}
"#;

const CHECK_IMAP: &str = r#"
m = connect()
typ, data = m.list()
names = b"\n".join(data)
assert b'"Lists/News"' in names or b"Lists/News" in names, names
ok(m.select('"Lists/News"'))
typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT LIST-ID)])")
text = flat(data)
assert b"weekly news" in text and b"news.remote.test" in text, text
ok(m.select("INBOX"))
typ, data = m.search(None, "FLAGGED")
flagged = data[0].split()
assert len(flagged) == 1, data
typ, data = m.fetch(flagged[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert b"urgent" in flat(data), data
ok(m.select("Archive"))
typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
text = flat(data)
assert b"$Later" in text and b"read later" in text, text
print("imap ok")
"#;

#[test]
fn a_script_files_flags_and_rejects() {
    let (setup, _server) = setup("[spam]\ndnsbl = []\n");
    upload(&setup, PW, "bob@example.test", "filter", FILTER);
    let replies = send(
        &setup,
        &[
            (
                "news@remote.test",
                "bob@example.test",
                "From: news@remote.test\nTo: bob@example.test\nList-Id: News <news.remote.test>\nSubject: weekly news\n\nnews\n",
            ),
            (
                "ann@remote.test",
                "bob@example.test",
                "From: ann@remote.test\nTo: bob@example.test\nSubject: urgent: call me\n\nplease\n",
            ),
            (
                "pest@remote.test",
                "bob@example.test",
                "From: pest@remote.test\nTo: bob@example.test\nSubject: buy\n\nnow\n",
            ),
            (
                "ann@remote.test",
                "bob+later@example.test",
                "From: ann@remote.test\nTo: bob+later@example.test\nSubject: read later\n\nlong\n",
            ),
            (
                "ann@remote.test",
                "bob@example.test",
                "From: ann@remote.test\nTo: bob@example.test\nSubject: plain\n\nhello\n",
            ),
        ],
    );
    assert_eq!(replies[0], "OK");
    assert_eq!(replies[1], "OK");
    // The only recipient rejects: refused in the SMTP reply, with the script's reason.
    assert!(
        replies[2].starts_with("REFUSED 550 5.7.1")
            && replies[2].contains("I do not take mail from you."),
        "{replies:?}"
    );
    assert_eq!(replies[3], "OK");
    assert_eq!(replies[4], "OK");
    assert_eq!(count(&setup, "bob@example.test", "Lists/News"), 1);
    assert_eq!(count(&setup, "bob@example.test", "INBOX"), 2);
    assert_eq!(count(&setup, "bob@example.test", "Archive"), 1);
    let out = run(
        &format!("{PRELUDE}{CHECK_IMAP}"),
        &[
            &setup.ports.imaps.port().to_string(),
            "bob@example.test",
            PW,
        ],
    );
    assert!(out.contains("imap ok"), "{out}");

    // With a second recipient who keeps it, the pest's message is accepted: bob's
    // copy is refused with a notice to the sender (a local account here).
    upload(
        &setup,
        PW,
        "carol@example.test",
        "reject-all",
        "require \"reject\";\nreject \"Not today.\";\n",
    );
    let replies = send(
        &setup,
        &[(
            "alice@example.test",
            "bob@example.test,carol@example.test",
            "From: alice@example.test\nTo: bob@example.test, carol@example.test\nSubject: both\nMessage-ID: <both@example.test>\n\nhi\n",
        )],
    );
    assert_eq!(replies, vec!["OK"]);
    assert_eq!(count(&setup, "bob@example.test", "INBOX"), 3);
    assert_eq!(count(&setup, "carol@example.test", "INBOX"), 0);
    wait_count(&setup, "alice@example.test", "INBOX", 1);
    let notice = setup
        .cli_ok(&["mail", "show", "alice@example.test", "1"], None)
        .unwrap();
    assert!(notice.contains("Subject: Rejected: both"), "{notice}");
    assert!(notice.contains("Not today."), "{notice}");
    assert!(
        notice.contains("Disposition: automatic-action/MDN-sent-automatically; deleted"),
        "{notice}"
    );
    assert!(
        notice.contains("Final-Recipient: rfc822; carol@example.test"),
        "{notice}"
    );
}

const VACATION: &str = r#"require ["vacation"];
vacation :days 7 :subject "Away until Monday" "I am away; I will answer when I am back.";
"#;

#[test]
fn vacation_answers_once_and_never_automatic_mail() {
    let (setup, _server) = setup("[spam]\ndnsbl = []\n");
    upload(&setup, PW, "bob@example.test", "away", VACATION);
    let msg = |subject: &str, extra: &str| {
        format!(
            "From: Carol <carol@example.test>\nTo: bob@example.test\nSubject: {subject}\nMessage-ID: <{}@example.test>\n{extra}\nhello\n",
            subject.replace(' ', "-")
        )
    };
    let first = msg("first", "");
    let replies = send(
        &setup,
        &[("carol@example.test", "bob@example.test", &first)],
    );
    assert_eq!(replies, vec!["OK"]);
    wait_count(&setup, "carol@example.test", "INBOX", 1);
    let reply = setup
        .cli_ok(&["mail", "show", "carol@example.test", "1"], None)
        .unwrap();
    assert!(reply.contains("Subject: Away until Monday"), "{reply}");
    assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(
        reply.contains("In-Reply-To: <first@example.test>"),
        "{reply}"
    );
    assert!(reply.contains("I am away"), "{reply}");
    assert!(
        reply.contains("From: bob@example.test") || reply.contains("From: <bob@example.test>"),
        "{reply}"
    );
    // Signed with example.test's keys.
    assert!(
        reply.contains("DKIM-Signature:") && reply.contains("d=example.test"),
        "{reply}"
    );

    let second = msg("second", "");
    let automatic = msg("robot", "Auto-Submitted: auto-generated\n");
    let list = msg("list", "List-Id: <chat.example.test>\n");
    let replies = send(
        &setup,
        &[
            ("carol@example.test", "bob@example.test", &second),
            ("carol@example.test", "bob@example.test", &automatic),
            ("carol@example.test", "bob@example.test", &list),
        ],
    );
    assert_eq!(replies, vec!["OK", "OK", "OK"]);
    // Every message is kept; the sender got one reply only.
    assert_eq!(count(&setup, "bob@example.test", "INBOX"), 4);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&setup, "carol@example.test", "INBOX"), 1);

    // Another sender gets their own reply; automatic mail from them does not.
    let from_alice = |subject: &str, extra: &str| {
        format!("From: alice@example.test\nTo: bob@example.test\nSubject: {subject}\n{extra}\nhi\n")
    };
    let auto_alice = from_alice("auto", "Auto-Submitted: auto-generated\n");
    let list_alice = from_alice("listed", "List-Id: <chat.example.test>\n");
    let plain_alice = from_alice("plain", "");
    let replies = send(
        &setup,
        &[
            ("alice@example.test", "bob@example.test", &auto_alice),
            ("alice@example.test", "bob@example.test", &list_alice),
            ("alice@example.test", "bob@example.test", &plain_alice),
        ],
    );
    assert_eq!(replies, vec!["OK", "OK", "OK"]);
    wait_count(&setup, "alice@example.test", "INBOX", 1);
    let reply = setup
        .cli_ok(&["mail", "show", "alice@example.test", "1"], None)
        .unwrap();
    assert!(reply.contains("Subject: Away until Monday"), "{reply}");
}

#[test]
fn a_redirect_loop_stops_and_keeps_the_message() {
    let (setup, _server) = setup("[spam]\ndnsbl = []\n");
    upload(
        &setup,
        PW,
        "alice@example.test",
        "fwd",
        "redirect \"bob@example.test\";\n",
    );
    upload(
        &setup,
        PW,
        "bob@example.test",
        "fwd",
        "redirect \"alice@example.test\";\n",
    );
    let replies = send(
        &setup,
        &[(
            "ann@remote.test",
            "alice@example.test",
            "From: ann@remote.test\nTo: alice@example.test\nSubject: round and round\n\nhi\n",
        )],
    );
    assert_eq!(replies, vec!["OK"]);
    // alice -> bob -> alice: the copy that comes back to alice is kept there.
    assert_eq!(count(&setup, "alice@example.test", "INBOX"), 1);
    assert_eq!(count(&setup, "bob@example.test", "INBOX"), 0);
    let kept = setup
        .cli_ok(&["mail", "show", "alice@example.test", "1"], None)
        .unwrap();
    assert!(kept.contains("Delivered-To: alice@example.test"), "{kept}");
    assert!(kept.contains("Delivered-To: bob@example.test"), "{kept}");
    assert!(kept.contains("Subject: round and round"), "{kept}");

    // A plain redirect to a local account delivers there and not here.
    upload(&setup, PW, "bob@example.test", "fwd", "keep;\n");
    let replies = send(
        &setup,
        &[(
            "ann@remote.test",
            "alice@example.test",
            "From: ann@remote.test\nTo: alice@example.test\nSubject: for bob\n\nhi\n",
        )],
    );
    assert_eq!(replies, vec!["OK"]);
    assert_eq!(count(&setup, "alice@example.test", "INBOX"), 1);
    assert_eq!(count(&setup, "bob@example.test", "INBOX"), 1);
}

#[test]
fn a_failing_script_still_delivers_to_inbox() {
    let (setup, _server) = setup("[spam]\ndnsbl = []\n");
    // fileinto first, then a runtime error (a missing included script): the message
    // must end in INBOX, not in Trash.
    upload(
        &setup,
        PW,
        "bob@example.test",
        "broken",
        "require [\"fileinto\", \"include\"];\nfileinto \"Trash\";\ninclude :personal \"does-not-exist\";\n",
    );
    let replies = send(
        &setup,
        &[(
            "ann@remote.test",
            "bob@example.test",
            "From: ann@remote.test\nTo: bob@example.test\nSubject: still here\n\nhi\n",
        )],
    );
    assert_eq!(replies, vec!["OK"]);
    assert_eq!(count(&setup, "bob@example.test", "INBOX"), 1);
    assert_eq!(count(&setup, "bob@example.test", "Trash"), 0);
    // The failure is in the activity log, naming the account, script and error.
    let log = setup.cli_ok(&["log"], None).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("sieve-error"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("bob@example.test")
            && line.contains("broken")
            && line.contains("does-not-exist"),
        "{line}"
    );
}

/// The sink process, killed when dropped (also when a test fails).
struct Sink(std::process::Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal remote MX (python, plaintext SMTP) that writes each message it receives
/// as one JSON line: `{"from", "to", "data"}`. Returns it and its port.
fn start_sink(dir: &std::path::Path) -> (Sink, u16, std::path::PathBuf) {
    const SINK: &str = r#"
import socket, sys, threading, json
port_file, out = sys.argv[1], sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(16)
def handle(c):
    f = c.makefile("rb")
    def w(s): c.sendall(s.encode() + b"\r\n")
    w("220 sink.test ESMTP")
    env = {}
    while True:
        l = f.readline()
        if not l:
            return
        cmd = l.decode("utf-8", "replace").strip(); u = cmd.upper()
        if u.startswith("EHLO") or u.startswith("HELO"):
            w("250-sink.test"); w("250-8BITMIME"); w("250 SMTPUTF8")
        elif u.startswith("MAIL FROM:"):
            env = {"from": cmd[10:].split(" ")[0], "to": []}; w("250 2.1.0 ok")
        elif u.startswith("RCPT TO:"):
            env["to"].append(cmd[8:].split(" ")[0]); w("250 2.1.5 ok")
        elif u == "DATA":
            w("354 go on"); data = b""
            while True:
                l = f.readline()
                if l in (b".\r\n", b""):
                    break
                data += l[1:] if l.startswith(b".") else l
            env["data"] = data.decode("utf-8", "replace")
            with open(out, "a") as o:
                o.write(json.dumps(env) + "\n")
            w("250 2.0.0 queued")
        elif u == "QUIT":
            w("221 2.0.0 bye"); c.close(); return
        else:
            w("250 2.0.0 ok")
open(port_file + ".tmp", "w").write(str(srv.getsockname()[1]))
import os; os.rename(port_file + ".tmp", port_file)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;
    let port_file = dir.join("sink.port");
    let out = dir.join("sink.jsonl");
    let child = std::process::Command::new("python3")
        .args(["-c", SINK])
        .arg(&port_file)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Sink(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            break p.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the sink did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    (child, port, out)
}

/// The messages the sink has received, once there are `n` (fails after 20 s).
fn sink_messages(out: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "the sink has {lines:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn remote_redirects_and_replies_go_through_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, port, out) = start_sink(dir.path());
    // The test zones plus remote.test, whose MX is the sink.
    let mut zones = tests::dns::standard_zones();
    let test = zones
        .remove(0)
        .record("remote 300 IN MX 10 mx.remote.test.")
        .record("mx.remote 300 IN A 127.0.0.1");
    zones.insert(0, test);
    let dns = tests::dns::TestDns::start(&zones).unwrap();
    let (setup, _server) = setup(&format!(
        "[spam]\ndnsbl = []\n[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 1\n[queue]\nmx_port = {port}\nretry_first_seconds = 1\nretry_max_seconds = 2\n",
        dns.addr()
    ));
    upload(
        &setup,
        PW,
        "alice@example.test",
        "fwd",
        "redirect \"friend@remote.test\";\n",
    );
    upload(&setup, PW, "bob@example.test", "away", VACATION);
    // A vacation :from the account may not use is never sent.
    upload(
        &setup,
        PW,
        "carol@example.test",
        "forged",
        "require \"vacation\";\nvacation :from \"boss@elsewhere.test\" \"Gone.\";\n",
    );
    let remote = "ann@remote.test";
    let replies = send(
        &setup,
        &[
            (
                remote,
                "alice@example.test",
                "From: ann@remote.test\nTo: alice@example.test\nSubject: from afar\n\nhi\n",
            ),
            (
                "carol@example.test",
                "alice@example.test",
                "From: carol@example.test\nTo: alice@example.test\nSubject: from carol\n\nhi\n",
            ),
            (
                remote,
                "bob@example.test",
                "From: ann@remote.test\nTo: bob@example.test\nSubject: are you there\nMessage-ID: <q1@remote>\n\nhi\n",
            ),
            (
                remote,
                "carol@example.test",
                "From: ann@remote.test\nTo: carol@example.test\nSubject: and you\n\nhi\n",
            ),
        ],
    );
    assert_eq!(replies, vec!["OK", "OK", "OK", "OK"]);
    let got = sink_messages(&out, 3);
    std::thread::sleep(Duration::from_secs(2));
    let got_later = sink_messages(&out, 3);
    drop(sink);
    assert_eq!(got_later.len(), 3, "{got_later:#?}");
    let find = |needle: &str| {
        got.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {got:#?}"))
            .clone()
    };
    // Redirected from a remote sender: the envelope sender is ann's SRS address in
    // alice's domain (our SPF covers it; a bounce still reaches ann), and the copy
    // says where it came through.
    let afar = find("from afar");
    assert!(
        afar.contains(r#""from": "<SRS0="#) && afar.contains(r#"=remote.test=ann@example.test>""#),
        "{afar}"
    );
    assert!(afar.contains(r#""to": ["<friend@remote.test>"]"#), "{afar}");
    assert!(afar.contains("Delivered-To: alice@example.test"), "{afar}");
    // From one of our own domains the sender is kept.
    let carol = find("from carol");
    assert!(
        carol.contains(r#""from": "<carol@example.test>""#),
        "{carol}"
    );
    // The vacation reply: null sender, to the envelope sender, signed.
    let reply = find("Away until Monday");
    assert!(reply.contains(r#""from": "<>""#), "{reply}");
    assert!(reply.contains(r#""to": ["<ann@remote.test>"]"#), "{reply}");
    assert!(
        reply.contains("DKIM-Signature:") && reply.contains("d=example.test"),
        "{reply}"
    );
    assert!(reply.contains("In-Reply-To: <q1@remote>"), "{reply}");
    assert!(!got.iter().any(|l| l.contains("Gone.")), "{got:#?}");
    // Nothing stayed behind at alice's (redirect without keep).
    assert_eq!(count(&setup, "alice@example.test", "INBOX"), 0);
}

/// Finding 8 of the mail-path issue: mail a script generates obeys the rules
/// submitted mail does.
#[test]
fn generated_mail_obeys_the_identity_rules() {
    let (setup, server) = setup("[spam]\ndnsbl = []\n");
    for user in ["dave", "erin"] {
        setup
            .cli_ok(
                &[
                    "user",
                    "add",
                    &format!("{user}@example.test"),
                    "--password-stdin",
                ],
                Some(&format!("{PW}\n")),
            )
            .unwrap();
    }
    // Values with line breaks and backtracking patterns are refused at upload.
    let refusal = tests::sieve::try_put_script(
        &setup,
        PW,
        "alice@example.test",
        "inject",
        "require \"vacation\";\nvacation :subject \"Away\r\nContent-Type: text/html\" \"<b>x</b>\";\n",
    )
    .unwrap_err();
    assert!(
        refusal.contains(":subject") && refusal.contains("one line"),
        "{refusal}"
    );
    let refusal = tests::sieve::try_put_script(
        &setup,
        PW,
        "alice@example.test",
        "slow",
        "require \"regex\";\nif header :regex \"subject\" \"^(a+)+\\\\1$\" { discard; }\n",
    )
    .unwrap_err();
    assert!(refusal.contains("back-references"), "{refusal}");

    // A redirected copy may not be made to come from someone else.
    upload(
        &setup,
        PW,
        "alice@example.test",
        "forge",
        "require [\"editheader\"];\ndeleteheader \"From\";\naddheader \"From\" \"Admin <admin@example.test>\";\nredirect \"victim@remote.test\";\n",
    );
    let replies = send(
        &setup,
        &[(
            "ann@other.test",
            "alice@example.test",
            "From: ann@other.test\nTo: alice@example.test\nSubject: forge me\n\nx\n",
        )],
    );
    assert_eq!(replies, vec!["OK"]);
    assert_eq!(count(&setup, "alice@example.test", "INBOX"), 1);
    let log = setup.cli_ok(&["log", "--limit", "50"], None).unwrap();
    assert!(log.contains("sieve-redirect-refused"), "{log}");
    assert!(
        !server.log().contains("to=victim@remote.test"),
        "{}",
        server.log()
    );

    // One message, four accounts redirecting to four addresses each: the redirects it
    // causes in all stop at [sieve] max_redirects_per_message (8).
    upload(
        &setup,
        PW,
        "alice@example.test",
        "fan",
        "redirect \"bob@example.test\";\nredirect \"carol@example.test\";\nredirect \"dave@example.test\";\nredirect \"erin@example.test\";\n",
    );
    for user in ["bob", "carol", "dave", "erin"] {
        upload(
            &setup,
            PW,
            &format!("{user}@example.test"),
            "fan",
            &(1..=4)
                .map(|i| format!("redirect \"{user}{i}@remote.test\";\n"))
                .collect::<String>(),
        );
    }
    let before = server.log().matches("Sieve redirect\"").count()
        + server.log().matches("Sieve redirect ").count();
    let replies = send(
        &setup,
        &[(
            "ann@other.test",
            "alice@example.test",
            "From: ann@other.test\nTo: alice@example.test\nSubject: fan out\n\nx\n",
        )],
    );
    assert_eq!(replies, vec!["OK"]);
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log();
    let redirects = log
        .lines()
        .filter(|l| l.contains("Sieve redirect") && !l.contains("refused"))
        .count()
        - before;
    assert_eq!(redirects, 8, "{log}");
    let refused = setup
        .cli_ok(&["log", "--limit", "200"], None)
        .unwrap()
        .matches("already caused 8 redirects")
        .count();
    // Depth first: alice->bob, bob's four, alice->carol, two of carol's; the other
    // two of carol's and alice's to dave and erin are refused.
    assert_eq!(
        refused,
        4,
        "{}",
        setup.cli_ok(&["log", "--limit", "200"], None).unwrap()
    );

    // `:seconds 0` is raised to a day: one reply for two messages.
    upload(
        &setup,
        PW,
        "erin@example.test",
        "away",
        "require [\"vacation\", \"vacation-seconds\"];\nvacation :seconds 0 :subject \"Away\" \"I am away.\";\n",
    );
    let msg = |n: u32| {
        format!(
            "From: alice@example.test\nTo: erin@example.test\nSubject: n{n}\nMessage-ID: <n{n}@example.test>\n\nhi\n"
        )
    };
    let replies = send(
        &setup,
        &[
            ("alice@example.test", "erin@example.test", &msg(1)),
            ("alice@example.test", "erin@example.test", &msg(2)),
        ],
    );
    assert_eq!(replies, vec!["OK", "OK"]);
    std::thread::sleep(Duration::from_millis(500));
    let alice = setup
        .cli_ok(&["mail", "list", "alice@example.test"], None)
        .unwrap();
    assert_eq!(alice.matches("Away").count(), 1, "{alice}");
}
