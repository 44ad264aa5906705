//! Backups, black-box: `postern backup create` while smtplib delivers to the MX (and
//! while messages of the snapshot are expunged over IMAP), a restore into an empty
//! directory, and a server started on the restored directory serves every message of
//! the snapshot byte for byte (compared by SHA-256 over IMAP). A flipped byte, a truncated archive or a wrong passphrase makes restore fail
//! with one clear line and leaves the target untouched.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::harness::{Server, Setup, ensure_tool};
use tests::imap::{PRELUDE, run};

const ADMIN: &str = "admin@example.test";
const PASSPHRASE: &str = "correct horse battery staple";

/// Delivers messages to the MX in one SMTP session until the stop file appears (or
/// `limit` is reached), printing `acked N` as soon as each got its 250. Sizes vary
/// from a few hundred bytes to half a megabyte.
const DELIVER: &str = r#"
import smtplib, sys, os
port, stop, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sizes = [300, 4000, 40000, 500000, 1200, 90000]
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
s.ehlo("client.remote.test")
for i in range(limit):
    if os.path.exists(stop):
        break
    hexed = os.urandom(sizes[i % len(sizes)] // 2).hex()
    lines = "\r\n".join(hexed[j:j + 76] for j in range(0, len(hexed), 76))
    msg = ("From: Sender <sender@remote.test>\r\nTo: admin@example.test\r\n"
           "Subject: message %d\r\nMessage-ID: <m%d@remote.test>\r\n\r\n%s\r\n" % (i, i, lines))
    s.sendmail("sender@remote.test", ["admin@example.test"], msg.encode())
    print("acked", i, flush=True)
s.quit()
"#;

/// Every message of the admin's INBOX: `UID SHA-256 MESSAGE-ID` per line.
const DIGESTS: &str = r#"
import hashlib
m = connect()
ok(m.select("INBOX", readonly=True))
typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
assert typ == "OK", data
for d in data:
    if isinstance(d, tuple):
        uid = re.search(rb"UID (\d+)", d[0]).group(1).decode()
        mid = re.search(rb"Message-ID: <([^>]+)>", d[1])
        print(uid, hashlib.sha256(d[1]).hexdigest(), mid.group(1).decode() if mid else "-")
m.logout()
"#;

/// Expunges the UIDs of the fourth argument (a UID set) from the admin's INBOX.
const EXPUNGE: &str = r#"
m = connect()
ok(m.select("INBOX"))
ok(m.uid("STORE", sys.argv[4], "+FLAGS.SILENT", "(\\Deleted)"))
ok(m.expunge())
m.logout()
"#;

/// A message's UID -> (SHA-256, Message-ID), as the server at `setup`'s ports serves it.
fn digests(setup: &Setup) -> BTreeMap<u32, (String, String)> {
    let script = format!("{PRELUDE}{DIGESTS}");
    let out = run(
        &script,
        &[
            &setup.ports.imaps.port().to_string(),
            ADMIN,
            &setup.password,
        ],
    );
    out.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let uid = f.next()?.parse().ok()?;
            Some((uid, (f.next()?.to_string(), f.next()?.to_string())))
        })
        .collect()
}

/// Deliveries running in the background: the Message-IDs acknowledged so far, each
/// with when its acknowledgement was read.
struct Deliveries {
    child: std::process::Child,
    stop: PathBuf,
    acked: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Deliveries {
    fn start(setup: &Setup, limit: usize) -> Deliveries {
        let python = ensure_tool("python3", "python3").unwrap();
        let stop = setup.dir.path().join("stop-deliveries");
        let mut child = Command::new(python)
            .arg("-c")
            .arg(DELIVER)
            .args([
                &setup.ports.smtp.port().to_string(),
                &stop.to_string_lossy().into_owned(),
                &limit.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let sink = acked.clone();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("acked ") {
                    sink.lock()
                        .unwrap()
                        .push((Instant::now(), format!("m{n}@remote.test")));
                }
            }
        });
        Deliveries {
            child,
            stop,
            acked,
            reader: Some(reader),
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} deliveries",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the deliveries; returns every acknowledgement.
    fn finish(mut self) -> Vec<(Instant, String)> {
        std::fs::write(&self.stop, "").unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the delivering client failed: {status}");
        self.reader.take().unwrap().join().unwrap();
        self.acked.lock().unwrap().clone()
    }
}

/// Writes the passphrase file (with a trailing newline, which is not part of it).
fn passphrase_file(setup: &Setup, name: &str, passphrase: &str) -> PathBuf {
    let path = setup.dir.path().join(name);
    std::fs::write(&path, format!("{passphrase}\n")).unwrap();
    path
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts a server on the restored data directory `restored`, on `setup`'s ports
/// (the original server must be stopped).
fn serve_restored(setup: &mut Setup, restored: &Path) -> Server {
    setup.data_dir = restored.to_path_buf();
    setup.write_config("").unwrap();
    setup.serve().unwrap()
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn backup_during_deliveries_restores_every_message_byte_for_byte() {
    let mut setup = Setup::quickstart(ADMIN, "").unwrap();
    let mut server = setup.serve().unwrap();
    let pass = passphrase_file(&setup, "pass", PASSPHRASE);
    let backup = setup.dir.path().join("backups/during");

    let deliveries = Deliveries::start(&setup, 5000);
    deliveries.wait_for(60);
    let acked_before: Vec<String> = deliveries
        .acked
        .lock()
        .unwrap()
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    // The messages as they are before some are expunged below: the last ten
    // acknowledged before the backup starts are in its snapshot, and their bodies are
    // the last it copies.
    let early = digests(&setup);
    let doomed: Vec<u32> = early
        .iter()
        .filter(|(_, (_, id))| acked_before.contains(id))
        .map(|(uid, _)| *uid)
        .rev()
        .take(10)
        .collect();
    assert_eq!(doomed.len(), 10);
    let doomed_set = doomed
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let started = Instant::now();
    let args: Vec<String> = [
        "--config",
        &setup.config.to_string_lossy(),
        "backup",
        "create",
        "--to",
        &backup.to_string_lossy(),
        "--passphrase-file",
        &pass.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let create = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tests::harness::postern(&args, None).unwrap();
        (out, Instant::now())
    });
    // Once the server has its snapshot, those ten are expunged while it copies the
    // bodies before theirs: the backup must still hold them.
    server
        .wait_for_log("backup: snapshot taken", Duration::from_secs(60))
        .unwrap();
    run(
        &format!("{PRELUDE}{EXPUNGE}"),
        &[
            &setup.ports.imaps.port().to_string(),
            ADMIN,
            &setup.password,
            &doomed_set,
        ],
    );
    let expunged_at = Instant::now();
    let (out, ended) = create.join().unwrap();
    let took = ended - started;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Encrypted with AES-256-GCM"), "{stdout}");
    assert!(
        expunged_at < ended,
        "the expunge ended after the backup: nothing was proved about it"
    );
    // Deliveries went on while the backup was written, and after.
    let after = deliveries.count() + 5;
    deliveries.wait_for(after);
    let acked = deliveries.finish();
    let during = acked
        .iter()
        .filter(|(t, _)| *t >= started && *t <= ended)
        .count();
    assert!(
        during > 0,
        "no delivery was acknowledged while the backup ran"
    );

    // The backup was written by the running server and logged by it.
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(log.contains("backup-created"), "{log}");
    // Restoring over the running server's data directory is refused.
    let out = setup
        .cli(
            &["backup", "restore", "--from", &backup.to_string_lossy()],
            None,
        )
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("a server is running on"), "{stderr}");

    // Every message the server ever held: the ones there now, and the expunged ones
    // as they were before.
    let now = digests(&setup);
    assert_eq!(
        now.len() + 10,
        acked.len(),
        "every acknowledged message is stored"
    );
    assert!(doomed.iter().all(|uid| !now.contains_key(uid)));
    let mut original = now.clone();
    for uid in &doomed {
        original.insert(*uid, early[uid].clone());
    }
    server.stop(Duration::from_secs(10)).unwrap();

    let verified = setup
        .cli_ok(
            &[
                "backup",
                "verify",
                "--from",
                &backup.to_string_lossy(),
                "--passphrase-file",
                &pass.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    assert!(verified.contains("is complete and authentic"), "{verified}");

    let restored_dir = setup.dir.path().join("restored");
    let started = Instant::now();
    let restored_out = setup
        .cli_ok(
            &[
                "backup",
                "restore",
                "--from",
                &backup.to_string_lossy(),
                "--to",
                &restored_dir.to_string_lossy(),
                "--passphrase-file",
                &pass.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    let restore_took = started.elapsed();
    assert!(restored_out.contains("Restored "), "{restored_out}");
    assert!(
        names_in(setup.dir.path())
            .iter()
            .all(|n| !n.starts_with('.')),
        "a temporary directory was left: {:?}",
        names_in(setup.dir.path())
    );

    let mut restored_server = serve_restored(&mut setup, &restored_dir);
    let restored = digests(&setup);
    restored_server.stop(Duration::from_secs(10)).unwrap();

    // Every message in the backup is byte-identical to the original with its UID,
    // the ten expunged during the backup included.
    for (uid, (hash, id)) in &restored {
        assert_eq!(
            original.get(uid),
            Some(&(hash.clone(), id.clone())),
            "UID {uid} differs"
        );
    }
    assert!(doomed.iter().all(|uid| restored.contains_key(uid)));
    // A point in time: the restored UIDs are a prefix of the original's...
    let k = restored.len();
    assert!(original.keys().take(k).eq(restored.keys()));
    // ...holding at least every message acknowledged before the backup started.
    let restored_ids: Vec<&String> = restored.values().map(|(_, id)| id).collect();
    for id in &acked_before {
        assert!(
            restored_ids.contains(&id),
            "{id} was acknowledged before the backup but is missing"
        );
    }
    assert!(k >= acked_before.len());

    let archive = backup.join("postern.backup");
    let verified_line = verified.lines().nth(1).unwrap_or_default();
    println!(
        "backup while delivering: {} messages seen acknowledged before the backup started, {during} while it ran, \
         {} in the snapshot ({verified_line}); archive {} bytes; create took {:.2} s, restore {:.2} s",
        acked_before.len(),
        k,
        size_of(&archive),
        took.as_secs_f64(),
        restore_took.as_secs_f64()
    );
}

/// A server with a few delivered messages, stopped; returns the setup.
fn setup_with_mail(count: usize) -> Setup {
    let setup = Setup::quickstart(ADMIN, "").unwrap();
    let mut server = setup.serve().unwrap();
    let deliveries = Deliveries::start(&setup, count);
    deliveries.wait_for(count);
    deliveries.finish();
    server.stop(Duration::from_secs(10)).unwrap();
    setup
}

/// Runs `backup restore` that must fail: one line on stderr containing `expect`, and
/// the target (missing, or an empty directory) left as it was with nothing beside it.
fn assert_restore_refused(setup: &Setup, from: &Path, passphrase: Option<&Path>, expect: &str) {
    let parent = setup.dir.path().join("targets");
    std::fs::create_dir_all(parent.join("empty")).unwrap();
    let listing = names_in(&parent);
    for target in ["missing", "empty"] {
        let target = parent.join(target);
        let mut args = vec![
            "backup".to_string(),
            "restore".into(),
            "--from".into(),
            from.to_string_lossy().into_owned(),
            "--to".into(),
            target.to_string_lossy().into_owned(),
        ];
        if let Some(p) = passphrase {
            args.extend(["--passphrase-file".into(), p.to_string_lossy().into_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = setup.cli(&args, None).unwrap();
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "restore accepted it: {stdout}");
        assert!(stderr.contains(expect), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("postern.backup"),
            "the archive is named: {stderr}"
        );
        assert_eq!(
            names_in(&parent),
            listing,
            "something was left beside the target"
        );
        assert_eq!(names_in(&parent.join("empty")), Vec::<String>::new());
        assert!(!parent.join("missing").exists());
    }
    // verify reads it the same way.
    let mut args = vec![
        "backup".to_string(),
        "verify".into(),
        "--from".into(),
        from.to_string_lossy().into_owned(),
    ];
    if let Some(p) = passphrase {
        args.extend(["--passphrase-file".into(), p.to_string_lossy().into_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = setup.cli(&args, None).unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains(expect), "{}", text(&out).1);
}

#[test]
fn a_flipped_byte_a_truncation_or_a_wrong_passphrase_is_refused_and_touches_nothing() {
    let setup = setup_with_mail(12);
    let pass = passphrase_file(&setup, "pass", PASSPHRASE);
    let wrong = passphrase_file(&setup, "wrong", "correct horse battery stapler");
    let empty = setup.dir.path().join("empty-pass");
    std::fs::write(&empty, "\n").unwrap();
    let backup = setup.dir.path().join("b");
    // No server runs: the CLI opens the store itself.
    let created = setup
        .cli_ok(
            &[
                "backup",
                "create",
                "--to",
                &backup.to_string_lossy(),
                "--passphrase-file",
                &pass.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    assert!(created.contains("12 messages"), "{created}");
    let archive = backup.join("postern.backup");
    let good = std::fs::read(&archive).unwrap();
    assert!(good.len() > 1 << 20, "the archive spans several chunks");

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x04;
    std::fs::write(&archive, &flipped).unwrap();
    assert_restore_refused(
        &setup,
        &backup,
        Some(&pass),
        "backup is damaged or was tampered with: chunk 0 failed authentication",
    );

    std::fs::write(&archive, &good[..good.len() * 2 / 3]).unwrap();
    assert_restore_refused(&setup, &backup, Some(&pass), "backup is truncated");

    std::fs::write(&archive, &good).unwrap();
    assert_restore_refused(
        &setup,
        &backup,
        Some(&wrong),
        "wrong passphrase or damaged header",
    );
    assert_restore_refused(&setup, &backup, None, "the backup is encrypted");
    let out = setup
        .cli(
            &[
                "backup",
                "verify",
                "--from",
                &backup.to_string_lossy(),
                "--passphrase-file",
                &empty.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("is empty"), "{}", text(&out).1);

    // The good archive still restores; a second backup into the same directory is
    // refused and leaves the first as it was.
    let out = setup
        .cli(
            &[
                "backup",
                "create",
                "--to",
                &backup.to_string_lossy(),
                "--passphrase-file",
                &pass.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("is not empty"), "{}", text(&out).1);
    assert_eq!(std::fs::read(&archive).unwrap(), good);
    let target = setup.dir.path().join("targets/ok");
    setup
        .cli_ok(
            &[
                "backup",
                "restore",
                "--from",
                &backup.to_string_lossy(),
                "--to",
                &target.to_string_lossy(),
                "--passphrase-file",
                &pass.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    assert!(target.join("store.redb").is_file());
}

#[test]
fn an_unencrypted_backup_round_trips_and_still_detects_damage() {
    let mut setup = setup_with_mail(8);
    let mut server = setup.serve().unwrap();
    let original = digests(&setup);
    assert_eq!(original.len(), 8);
    let backup = setup.dir.path().join("plain");
    let created = setup
        .cli_ok(
            &["backup", "create", "--to", &backup.to_string_lossy()],
            None,
        )
        .unwrap();
    assert!(created.contains("NOT encrypted"), "{created}");
    server.stop(Duration::from_secs(10)).unwrap();

    let verified = setup
        .cli_ok(
            &["backup", "verify", "--from", &backup.to_string_lossy()],
            None,
        )
        .unwrap();
    assert!(verified.contains("complete and undamaged"), "{verified}");
    assert!(verified.contains("8 messages"), "{verified}");

    let archive = backup.join("postern.backup");
    let good = std::fs::read(&archive).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    std::fs::write(&archive, &flipped).unwrap();
    assert_restore_refused(&setup, &backup, None, "failed its checksum");
    std::fs::write(&archive, &good[..good.len() - 3]).unwrap();
    assert_restore_refused(&setup, &backup, None, "backup is truncated");
    std::fs::write(&archive, &good).unwrap();

    // Restored into an existing empty directory.
    let restored_dir = setup.dir.path().join("restored");
    std::fs::create_dir(&restored_dir).unwrap();
    setup
        .cli_ok(
            &[
                "backup",
                "restore",
                "--from",
                &backup.to_string_lossy(),
                "--to",
                &restored_dir.to_string_lossy(),
            ],
            None,
        )
        .unwrap();
    assert!(restored_dir.join("tls/cert.pem").is_file());
    assert!(restored_dir.join("postern.toml").is_file());
    let mut restored_server = serve_restored(&mut setup, &restored_dir);
    assert_eq!(digests(&setup), original);
    restored_server.stop(Duration::from_secs(10)).unwrap();
}
