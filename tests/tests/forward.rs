//! Forwarding, black-box: an alias with two local targets and one on another server
//! (Debian's Postfix on loopback, delivering into maildirs). The local copies land in
//! INBOX; the remote copy leaves from an SRS address of ours with an ARC set that
//! dkimpy's ARC verifier accepts; a bounce to the SRS address reaches the original
//! sender through us; a forged SRS address is refused.
#![allow(clippy::unwrap_used)] // test: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use tests::dns::{TestDns, standard_zones};
use tests::harness::{Setup, ensure_package, ensure_postfix, free_port, python};

/// Waits for a file in a maildir's `new/`; returns its content.
fn wait_maildir(
    dir: &Path,
    postfix: &tests::postfix::Postfix,
    server: &tests::harness::Server,
) -> String {
    let new = dir.join("new");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(entries) = std::fs::read_dir(&new)
            && let Some(entry) = entries.flatten().next()
        {
            return std::fs::read_to_string(entry.path()).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "nothing in {}:\n{}\n{}",
            new.display(),
            postfix.log(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks the ARC chain of `message` with dkimpy (`dkim.arc_verify`), its keys
/// looked up in `records` (zone-file lines of `postern dns records`).
const ARC_VERIFY: &str = r#"
import sys, re, dkim
records = open(sys.argv[2]).read().splitlines()
keys = {}
for line in records:
    m = re.match(r'(\S+)\.\s+\d+\s+IN\s+TXT\s+(.*)$', line)
    if m and "_domainkey" in m.group(1):
        keys[m.group(1).lower()] = "".join(re.findall(r'"([^"]*)"', m.group(2))).encode()
def dnsfunc(name, timeout=5):
    return keys.get(name.decode().rstrip(".").lower())
message = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
cv, results, comment = dkim.arc_verify(message, dnsfunc=dnsfunc)
print("cv", cv, comment)
sys.exit(0 if cv == b"pass" else 1)
"#;

#[test]
fn an_alias_forwards_with_srs_and_an_arc_seal_and_bounces_come_back() {
    ensure_postfix().unwrap();
    ensure_package("python3-dkim").unwrap();
    let mut setup = Setup::quickstart("admin@example.test", "").unwrap();
    setup.add_user("bob@example.test", "Bob-Pass-1!").unwrap();
    setup
        .cli_ok(
            &[
                "alias",
                "add",
                "team@example.test",
                "admin@example.test",
                "bob@example.test",
                "carol@remote.test",
            ],
            None,
        )
        .unwrap();
    // remote.test's MX is the Postfix below; Postern's queue reaches it on its port.
    let pf_dir = tempfile::tempdir().unwrap();
    let pf_port = free_port().unwrap();
    let mut zones = standard_zones();
    let test = zones
        .remove(0)
        .record("remote 300 IN MX 10 mx.remote.test.")
        .record("mx.remote 300 IN A 127.0.0.1");
    zones.insert(0, test);
    let dns = TestDns::start(&zones).unwrap();
    setup
        .write_config(&format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 1\n[queue]\nmx_port = {pf_port}\nretry_first_seconds = 1\n",
            dns.addr()
        ))
        .unwrap();
    let server = setup.serve().unwrap();
    let mail = pf_dir.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    std::os::unix::fs::chown(&mail, Some(65534), Some(65534)).unwrap();
    let postfix = tests::postfix::start(
        pf_dir.path(),
        pf_port,
        setup.ports.smtp.port(),
        &format!(
            "myhostname = mx.remote.test
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = remote.test
virtual_mailbox_base = {}
virtual_mailbox_maps = inline:{{carol@remote.test=carol/,dave@remote.test=dave/}}
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100",
            mail.display()
        ),
    );

    // dave@remote.test writes to the team through our MX.
    let send = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.sendmail("dave@remote.test", ["team@example.test"],
           b"From: Dave <dave@remote.test>\r\nTo: team@example.test\r\nSubject: for the team\r\nMessage-ID: <t1@remote.test>\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\nHello team.\r\n")
s.quit()
"#;
    let out = python(send, &[&setup.ports.smtp.port().to_string()]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(setup.mail_count("admin@example.test", "INBOX").unwrap(), 1);
    assert_eq!(setup.mail_count("bob@example.test", "INBOX").unwrap(), 1);

    let forwarded = wait_maildir(&mail.join("carol"), &postfix, &server);
    let return_path = forwarded
        .lines()
        .find_map(|l| l.strip_prefix("Return-Path: <"))
        .map(|l| l.trim_end_matches('>').to_string())
        .unwrap_or_else(|| panic!("{forwarded}"));
    assert!(
        return_path.starts_with("SRS0=") && return_path.ends_with("=remote.test=dave@example.test"),
        "{return_path}"
    );
    assert!(forwarded.contains("ARC-Seal: i=1;"), "{forwarded}");
    let file = pf_dir.path().join("forwarded.eml");
    std::fs::write(&file, &forwarded).unwrap();
    let records = pf_dir.path().join("records.txt");
    std::fs::write(
        &records,
        setup
            .cli_ok(&["dns", "records", "example.test"], None)
            .unwrap(),
    )
    .unwrap();
    let verified = std::process::Command::new("/usr/bin/python3")
        .args(["-c", ARC_VERIFY])
        .arg(&file)
        .arg(&records)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "ARC: {text}\n{forwarded}");
    println!("dkimpy: {text}");

    // Carol's server bounces it: the bounce to the SRS address reaches dave; a forged
    // SRS address is refused.
    let bounce = r#"
import smtplib, sys
port = int(sys.argv[1]); srs = sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
s.ehlo("mx.remote.test")
assert s.mail("")[0] == 250
# The same address with another hash: not made here.
code, text = s.rcpt("SRS0=aaaaaaaa" + srs[13:])
assert code == 550, (code, text)
code, text = s.rcpt(srs)
assert code == 250, (code, text)
code, text = s.data(b"From: MAILER-DAEMON@mx.remote.test\r\nTo: " + srs.encode() + b"\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\r\ncarol is gone\r\n")
assert code == 250, (code, text)
s.quit()
"#;
    let out = python(
        bounce,
        &[&setup.ports.smtp.port().to_string(), &return_path],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bounced = wait_maildir(&mail.join("dave"), &postfix, &server);
    assert!(
        bounced.contains("Subject: Undelivered Mail Returned to Sender"),
        "{bounced}"
    );
    assert!(bounced.contains("Return-Path: <>"), "{bounced}");
    let log = setup.cli_ok(&["log", "--limit", "20"], None).unwrap();
    assert!(log.contains("smtp-srs-refused"), "{log}");
}
