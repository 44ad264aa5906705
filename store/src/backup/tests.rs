use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::test_util;
use crate::{AuditEvent, NewQueued, QueuedRecipient, Uid};

/// Cheap argon2id costs: these tests are about what is backed up, not the KDF.
const CHEAP: KdfParams = KdfParams {
    m_cost_kib: 64,
    t_cost: 1,
    p_cost: 1,
};

fn options(passphrase: Option<&[u8]>) -> BackupOptions {
    BackupOptions {
        passphrase: passphrase.map(<[u8]>::to_vec),
        files: vec!["postern.toml".into(), "tls".into(), "acme".into()],
        kdf: CHEAP,
    }
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

/// A store with two accounts, messages in two mailboxes (one expunged), a queued
/// message, a Sieve script, DKIM keys, activity, and configuration and TLS files.
fn populated() -> (tempfile::TempDir, Store) {
    let (dir, store, alice) = test_util::store_with_alice();
    let bob = store.add_account("bob@example.org", "$bobhash").unwrap();
    let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
    let date = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    for i in 0..20u32 {
        let body = format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(i as usize * 100));
        store
            .append(inbox.id, body.as_bytes(), &["\\Seen".into()], date)
            .unwrap();
    }
    store.expunge(inbox.id, &[3]).unwrap();
    let archive = store
        .create_mailbox(bob.id, "Archive/2025 \"old\"", None)
        .unwrap_or_else(|_| store.mailbox(bob.id, "Archive").unwrap().unwrap());
    store
        .append(archive.id, &[0u8, 1, 2, 255, b'\r', b'\n'], &[], date)
        .unwrap();
    store
        .enqueue(
            NewQueued {
                sender: "alice@example.org".into(),
                recipients: vec![QueuedRecipient::new("x@remote.example")],
                ..NewQueued::default()
            },
            b"queued body",
        )
        .unwrap();
    store
        .add_dkim_key(&test_util::dkim_key("example.org", "ed1"))
        .unwrap();
    store
        .log_event(&AuditEvent {
            actor: "test".into(),
            action: "something".into(),
            ip: None,
            detail: "detail".into(),
        })
        .unwrap();
    let data = store.data_dir().to_path_buf();
    fs::write(
        data.join("postern.toml"),
        "hostname = \"mail.example.org\"\n",
    )
    .unwrap();
    fs::create_dir_all(data.join("tls/sni")).unwrap();
    fs::write(data.join("tls/cert.pem"), "CERT").unwrap();
    fs::write(data.join("tls/key.pem"), "KEY").unwrap();
    fs::set_permissions(data.join("tls/key.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(data.join("tls/sni/my.example.org.pem"), "SNI").unwrap();
    (dir, store)
}

/// Each table's name and rows.
type Rows = Vec<(String, Vec<Vec<u8>>)>;
/// Each body's id and bytes.
type Bodies = Vec<(String, Vec<u8>)>;

/// Everything a restored store must have the same: every table's rows and every body.
fn fingerprint(store: &Store) -> (Rows, Bodies) {
    let txn = store.db.begin_read().unwrap();
    let mut tables = Vec::new();
    for t in TABLES {
        let mut rows = Vec::new();
        t.dump(&txn, &mut |row| {
            rows.push(row.to_vec());
            Ok(())
        })
        .unwrap();
        tables.push((t.name().to_string(), rows));
    }
    let mut bodies = Vec::new();
    for entry in txn.open_table(MESSAGES).unwrap().iter().unwrap() {
        let (_, v) = entry.unwrap();
        let meta: MessageMeta = decode("a message", v.value()).unwrap();
        bodies.push((meta.blob.clone(), store.read_body(&meta).unwrap()));
    }
    for q in store.queued().unwrap() {
        bodies.push((q.blob.clone(), store.read_queued_body(&q).unwrap()));
    }
    (tables, bodies)
}

fn siblings(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn encrypted_round_trip_restores_everything() {
    let (dir, store) = populated();
    let before = fingerprint(&store);
    let backup = dir.path().join("backups/one");
    let written = store
        .backup_to_dir(
            &backup,
            &options(Some(b"correct horse")),
            &mut no_progress(),
        )
        .unwrap();
    assert!(written.encrypted);
    assert_eq!(
        (written.accounts, written.messages, written.queued),
        (2, 20, 1)
    );
    assert_eq!(written.bodies, 21);
    assert_eq!(written.files, 4);
    assert_eq!(
        fs::read_dir(&backup).unwrap().count(),
        1,
        "one archive file and nothing else"
    );
    let archive = fs::read(backup.join(ARCHIVE_FILE)).unwrap();
    assert_eq!(archive.len() as u64, written.archive_bytes);
    assert!(
        !archive.windows(9).any(|w| w == b"Subject: "),
        "plaintext in an encrypted backup"
    );

    let checked = verify(&backup, Some(b"correct horse"), &mut no_progress()).unwrap();
    assert_eq!(checked, written);

    let target = dir.path().join("restored");
    let mut last = (0, 0);
    let restored = restore(&backup, &target, Some(b"correct horse"), &mut |d, t| {
        last = (d, t)
    })
    .unwrap();
    assert_eq!(restored, written);
    assert_eq!(last.0, last.1);
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(
        fs::read_to_string(target.join("tls/sni/my.example.org.pem")).unwrap(),
        "SNI"
    );
    let key_mode = fs::metadata(target.join("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(target.join("postern.toml").is_file());
    let index_mode = fs::metadata(target.join(INDEX_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(index_mode & 0o777, 0o600);

    let again = Store::open(&target).unwrap();
    assert_eq!(fingerprint(&again), before);
    // The restored store works: ids and UIDs continue where the original's were.
    let alice = again.account("alice@example.org").unwrap().unwrap();
    let inbox = again.mailbox(alice.id, "INBOX").unwrap().unwrap();
    let next = again
        .append(inbox.id, b"after", &[], SystemTime::now())
        .unwrap();
    assert_eq!(next.uid, 21);
    assert_eq!(again.sweep_orphan_blobs().unwrap(), 0);
    assert!(siblings(&target).iter().all(|n| !n.starts_with('.')));
}

#[test]
fn unencrypted_round_trip_and_counts() {
    let (dir, store) = populated();
    let before = fingerprint(&store);
    let backup = dir.path().join("plain");
    let written = store
        .backup_to_dir(&backup, &options(None), &mut no_progress())
        .unwrap();
    assert!(!written.encrypted);
    let archive = fs::read(backup.join(ARCHIVE_FILE)).unwrap();
    assert!(archive.windows(9).any(|w| w == b"Subject: "));
    // A passphrase given for an unencrypted backup is not needed, and harmless.
    assert_eq!(
        verify(&backup, Some(b"x"), &mut no_progress()).unwrap(),
        written
    );
    let target = dir.path().join("restored");
    fs::create_dir(&target).unwrap();
    restore(
        &backup.join(ARCHIVE_FILE),
        &target,
        None,
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(fingerprint(&Store::open(&target).unwrap()), before);
}

#[test]
fn the_snapshot_keeps_bodies_expunged_during_the_backup_and_skips_later_ones() {
    let (dir, store) = populated();
    let before = fingerprint(&store);
    let alice = store.account("alice@example.org").unwrap().unwrap();
    let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
    let uids: Vec<Uid> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    let queued = store.queued().unwrap()[0].id;
    let backup = dir.path().join("b");
    let mut meddled = false;
    // The first progress report comes after the snapshot, before any body is copied.
    let written = store
        .backup_to_dir(&backup, &options(Some(b"k")), &mut |_, _| {
            if !meddled {
                meddled = true;
                store.expunge(inbox.id, &uids).unwrap();
                store.delete_account("bob@example.org").unwrap();
                store.remove_queued(queued).unwrap();
                store
                    .append(inbox.id, b"later", &[], SystemTime::now())
                    .unwrap();
                assert_eq!(store.sweep_orphan_blobs().unwrap(), 21);
            }
        })
        .unwrap();
    assert!(meddled);
    assert_eq!(written.messages, 20);
    // Once the backup is done the deferred removals happened.
    let on_disk = store.blobs.list().unwrap();
    assert_eq!(on_disk.len(), 1, "only the later message's body is left");
    let target = dir.path().join("restored");
    restore(&backup, &target, Some(b"k"), &mut no_progress()).unwrap();
    assert_eq!(fingerprint(&Store::open(&target).unwrap()), before);
}

/// A restore that fails leaves the target as it was and nothing beside it.
fn assert_refused(backup: &Path, passphrase: Option<&[u8]>, expect: &str) {
    let parent = backup.parent().unwrap().join("targets");
    fs::create_dir_all(&parent).unwrap();
    let missing = parent.join("missing");
    let empty = parent.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let listing = siblings(&missing);
    for target in [&missing, &empty] {
        let err = restore(backup, target, passphrase, &mut no_progress()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expect), "{text}");
        assert!(text.contains(ARCHIVE_FILE), "the archive is named: {text}");
        assert!(!text.contains('\n'));
        assert_eq!(
            siblings(&missing),
            listing,
            "a temporary directory was left"
        );
    }
    assert!(!missing.exists());
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    let err = verify(backup, passphrase, &mut no_progress()).unwrap_err();
    assert!(err.to_string().contains(expect), "{err}");
}

#[test]
fn damaged_backups_are_refused_and_touch_nothing() {
    let (dir, store) = populated();
    // Enough body bytes for several chunks.
    let alice = store.account("alice@example.org").unwrap().unwrap();
    let inbox = store.mailbox(alice.id, "INBOX").unwrap().unwrap();
    let big: Vec<u8> = (0..2_300_000u32).map(|i| (i % 253) as u8).collect();
    store
        .append(inbox.id, &big, &[], SystemTime::now())
        .unwrap();
    for (name, passphrase, failure) in [
        ("enc", Some(&b"pass"[..]), "failed authentication"),
        ("plain", None, "failed its checksum"),
    ] {
        let backup = dir.path().join(name);
        store
            .backup_to_dir(&backup, &options(passphrase), &mut no_progress())
            .unwrap();
        let archive = backup.join(ARCHIVE_FILE);
        let good = fs::read(&archive).unwrap();
        assert!(good.len() > 2 * CHUNK_SIZE as usize);

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x20;
        fs::write(&archive, &flipped).unwrap();
        assert_refused(&archive, passphrase, failure);

        fs::write(&archive, &good[..good.len() / 2]).unwrap();
        assert_refused(&archive, passphrase, "backup is truncated");

        fs::write(&archive, &good[..good.len() - 1]).unwrap();
        assert_refused(&archive, passphrase, "backup is truncated");

        let mut longer = good.clone();
        longer.extend_from_slice(b"x");
        fs::write(&archive, &longer).unwrap();
        assert_refused(&archive, passphrase, "after its final chunk");

        fs::write(&archive, &good).unwrap();
        verify(&archive, passphrase, &mut no_progress()).unwrap();
    }
    let enc = dir.path().join("enc");
    assert_refused(&enc, Some(b"Pass"), "wrong passphrase or damaged header");
    assert_refused(&enc, None, "the backup is encrypted: give its passphrase");
    fs::write(enc.join(ARCHIVE_FILE), b"From alice Mon Jan 1\n").unwrap();
    assert_refused(&enc, None, "not a Postern backup");
}

#[test]
fn targets_must_be_missing_or_empty() {
    let (dir, store) = populated();
    let backup = dir.path().join("b");
    fs::create_dir(&backup).unwrap();
    fs::write(backup.join("keep"), "mine").unwrap();
    let err = store
        .backup_to_dir(&backup, &options(None), &mut no_progress())
        .unwrap_err();
    assert!(matches!(err, Error::NotEmpty(_)), "{err}");
    assert_eq!(fs::read_to_string(backup.join("keep")).unwrap(), "mine");
    fs::remove_file(backup.join("keep")).unwrap();
    store
        .backup_to_dir(&backup, &options(None), &mut no_progress())
        .unwrap();

    // Restoring over a data directory in use is refused before anything is read.
    let err = restore(&backup, store.data_dir(), None, &mut no_progress()).unwrap_err();
    assert!(matches!(err, Error::NotEmpty(_)), "{err}");
    assert!(err.to_string().contains("missing or empty"), "{err}");
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    assert!(matches!(
        restore(&backup, &file, None, &mut no_progress()),
        Err(Error::Exists(_))
    ));
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn only_files_of_the_data_directory_can_be_included() {
    let (dir, store) = populated();
    for bad in [
        "../etc",
        "/etc/passwd",
        "blobs",
        "store.redb",
        "tls/../../x",
    ] {
        let opts = BackupOptions {
            files: vec![bad.into()],
            ..options(None)
        };
        let target = dir.path().join("b");
        let err = store
            .backup_to_dir(&target, &opts, &mut no_progress())
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{bad}: {err}");
        assert!(!target.exists());
        assert!(siblings(&target).iter().all(|n| !n.starts_with('.')));
    }
    assert!(safe_relative_path("tls/sni/a.pem").is_some());
    assert!(safe_relative_path("control.sock").is_none());
}

#[test]
fn blob_keys_are_hex_ids_only() {
    assert_eq!(
        blob_key("000102030405060708090a0b0c0d0e0f"),
        Some([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
    );
    assert_eq!(blob_key("000102030405060708090A0B0C0D0E0F"), None);
    assert_eq!(blob_key("../../etc/passwd"), None);
}
