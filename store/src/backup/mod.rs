//! Backups: a point-in-time snapshot of the index and of every message body it
//! references, plus chosen files of the data directory (configuration, TLS keys), in
//! one archive file, optionally encrypted.
//!
//! A backup directory holds one file, [`ARCHIVE_FILE`]. Its framing (header, chunks,
//! encryption) is in `frame`, the records inside in `records`. Writing takes no
//! lock that deliveries wait for: one redb read transaction is the snapshot, and a
//! hold on the blob directory defers the removal of any body until the backup has
//! read it, so a message expunged meanwhile is still in the backup and a message
//! delivered meanwhile is simply not in it.
//!
//! Restoring reads and checks everything into a temporary directory beside the
//! target and renames it into place only when all of it was authentic and complete;
//! the target must be missing or empty, and is never written otherwise.

mod frame;
mod records;
mod sink;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

pub use frame::{CHUNK_SIZE, FORMAT_VERSION, KdfParams};

use crate::tables::{MESSAGES, META, QUEUE};
use crate::{
    Error, INDEX_FILE, MessageMeta, QueuedMessage, SCHEMA_KEY, SCHEMA_VERSION, Store, decode, to_ms,
};
use frame::{ChunkReader, ChunkWriter};
use records::{Counts, Manifest, TABLES};
use sink::{RestoreSink, Sink, VerifySink};

/// The archive's file name inside a backup directory.
pub const ARCHIVE_FILE: &str = "postern.backup";

/// Why an archive cannot be used. The texts are what the user reads after the
/// archive's path.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file does not start like a Postern backup.
    #[error("not a Postern backup")]
    NotABackup,
    /// The archive format is one this build does not read.
    #[error(
        "backup format {0} is not supported: this postern reads format {FORMAT_VERSION} (use the postern that wrote it, or a newer one)"
    )]
    Version(u16),
    /// The archive is encrypted and no passphrase was given.
    #[error("the backup is encrypted: give its passphrase with --passphrase-file")]
    NeedPassphrase,
    /// The header's tag did not verify: the passphrase is wrong or the header damaged.
    #[error("wrong passphrase or damaged header")]
    WrongPassphrase,
    /// The header is malformed; the text says how.
    #[error("the backup's header is damaged: {0}")]
    Header(String),
    /// An encrypted chunk failed authentication.
    #[error("backup is damaged or was tampered with: chunk {0} failed authentication")]
    ChunkAuth(u64),
    /// An unencrypted chunk's checksum did not match.
    #[error("backup is damaged: chunk {0} failed its checksum")]
    ChunkChecksum(u64),
    /// The archive ends before its final chunk.
    #[error("backup is truncated: it ends at chunk {0}, before its final chunk")]
    Truncated(u64),
    /// The archive is authentic but its contents make no sense (or it has extra
    /// bytes); the text says what.
    #[error("backup is damaged: {0}")]
    Damaged(String),
    /// The backup holds something this build cannot restore; the text says what.
    #[error("backup cannot be restored by this postern: {0}")]
    Incompatible(String),
    /// The system's random generator failed while writing.
    #[error("{0}")]
    Random(String),
}

/// An error while reading an archive: its contents, or the disk.
#[derive(Debug)]
pub(crate) enum ReadError {
    Backup(BackupError),
    Io(io::Error),
}

impl From<BackupError> for ReadError {
    fn from(e: BackupError) -> Self {
        ReadError::Backup(e)
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl ReadError {
    fn at(self, archive: &Path) -> Error {
        match self {
            ReadError::Backup(reason) => Error::Backup {
                path: archive.to_path_buf(),
                reason,
            },
            ReadError::Io(e) => Error::io(archive, e),
        }
    }
}

/// What to put in a backup and how.
#[derive(Clone, Default)]
pub struct BackupOptions {
    /// Encrypt with AES-256-GCM under a key derived from this passphrase; `None`:
    /// unencrypted (still checksummed).
    pub passphrase: Option<Vec<u8>>,
    /// Files or directories of the data directory to include, relative to it (missing
    /// ones are skipped): the configuration, TLS certificates and keys, the ACME
    /// account. Never `store.redb` or `blobs/`, which the snapshot covers.
    pub files: Vec<PathBuf>,
    /// The argon2id costs for the key.
    pub kdf: KdfParams,
}

impl std::fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupOptions")
            .field("encrypted", &self.passphrase.is_some())
            .field("files", &self.files)
            .field("kdf", &self.kdf)
            .finish()
    }
}

/// What a backup holds, counted while it was written or read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// When the snapshot was taken, Unix milliseconds.
    pub created_ms: u64,
    /// Whether the archive is encrypted.
    pub encrypted: bool,
    /// The store schema of its rows.
    pub schema_version: u64,
    /// Mail domains.
    pub domains: u64,
    /// Accounts.
    pub accounts: u64,
    /// Mailboxes.
    pub mailboxes: u64,
    /// Messages in mailboxes.
    pub messages: u64,
    /// Messages in the outbound queue.
    pub queued: u64,
    /// Bodies (messages and queued).
    pub bodies: u64,
    /// Their bytes.
    pub body_bytes: u64,
    /// Files of the data directory.
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
    /// Index rows, all tables.
    pub rows: u64,
    /// The archive's size in bytes.
    pub archive_bytes: u64,
}

impl Summary {
    fn new(manifest: &Manifest, counts: &Counts, encrypted: bool, archive_bytes: u64) -> Self {
        let rows = |t: &str| counts.rows.get(t).copied().unwrap_or(0);
        Summary {
            created_ms: manifest.created_ms,
            encrypted,
            schema_version: manifest.schema_version,
            domains: rows("domains"),
            accounts: rows("accounts"),
            mailboxes: rows("mailboxes"),
            messages: rows("messages"),
            queued: rows("queue"),
            bodies: counts.bodies,
            body_bytes: counts.body_bytes,
            files: counts.files,
            file_bytes: counts.file_bytes,
            rows: counts.rows.values().sum(),
            archive_bytes,
        }
    }
}

/// Called with (bytes done, bytes in all) as a backup, restore or verify goes on.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Bytes copied per read when streaming a body or file.
const COPY_BUF: usize = 64 * 1024;

impl Store {
    /// Writes a backup into `dir`, which must be missing or empty: the archive is
    /// written in a temporary directory beside it, fsynced, and renamed into place, so
    /// `dir` never holds a partial backup.
    pub fn backup_to_dir(
        &self,
        dir: &Path,
        options: &BackupOptions,
        progress: Progress<'_>,
    ) -> Result<Summary, Error> {
        check_target(
            dir,
            "a backup is written only into a new or empty directory",
        )?;
        let staging = Staging::new(dir, "partial")?;
        let path = staging.tmp.join(ARCHIVE_FILE);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let (out, summary) = self.backup(
            BufWriter::with_capacity(1 << 20, file),
            &path,
            options,
            progress,
        )?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        drop(file);
        sync_dir(&staging.tmp)?;
        staging.commit()?;
        Ok(summary)
    }

    /// Writes a backup archive to `out` (`path` names it in errors) and returns `out`.
    ///
    /// The snapshot is one read transaction; the blob directory is held meanwhile so
    /// that no body the snapshot references is removed before it is copied.
    pub fn backup<W: Write>(
        &self,
        out: W,
        path: &Path,
        options: &BackupOptions,
        progress: Progress<'_>,
    ) -> Result<(W, Summary), Error> {
        let io = |e: io::Error| Error::io(path, e);
        // The hold comes first: a body whose removal is asked for after this point
        // stays until the backup is done, and the snapshot below is taken after it.
        let _hold = self.blobs.hold();
        let txn = self.db.begin_read()?;
        tracing::info!(archive = %path.display(), "backup: snapshot taken");
        {
            use redb::TableHandle;
            for handle in txn.list_tables()? {
                if records::table(handle.name()).is_none() {
                    return Err(Error::Corrupt(format!(
                        "the index has a table {:?} that backups do not cover; refusing to write an incomplete backup",
                        handle.name()
                    )));
                }
            }
        }
        let schema_version = txn
            .open_table(META)?
            .get(SCHEMA_KEY)?
            .map_or(0, |v| v.value());
        let manifest = Manifest {
            format: FORMAT_VERSION,
            schema_version,
            created_ms: to_ms(SystemTime::now()),
            postern: env!("CARGO_PKG_VERSION").to_string(),
            tables: TABLES.iter().map(|t| t.info()).collect(),
        };
        let mut w = ChunkWriter::new(out, options.passphrase.as_deref(), options.kdf, CHUNK_SIZE)
            .map_err(io)?;
        let encrypted = w.encrypted();
        write_json(&mut w, records::HEADER, &manifest).map_err(io)?;

        let mut counts = Counts::default();
        let mut total = 0u64;
        for table in TABLES {
            let name = table.name();
            w.write_all(&[records::TABLE, name.len() as u8])
                .and_then(|()| w.write_all(name.as_bytes()))
                .map_err(io)?;
            let n = table.dump(&txn, &mut |row| {
                if let Ok(Some((_, size))) = records::referenced_blob(name, row) {
                    total = total.saturating_add(size);
                }
                let len = u32::try_from(row.len())
                    .ok()
                    .filter(|&l| l <= records::MAX_ROW)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "a row of the table {name} is too large to back up ({} bytes)",
                            row.len()
                        ))
                    })?;
                w.write_all(&[records::ROW])
                    .and_then(|()| w.write_all(&len.to_le_bytes()))
                    .and_then(|()| w.write_all(row))
                    .map_err(io)
            })?;
            counts.rows.insert(name.to_string(), n);
        }

        let mut done = 0u64;
        progress(0, total);
        let mut buf = vec![0u8; COPY_BUF];
        let mut copy_body = |blob: &str, whose: &dyn Fn() -> String| -> Result<(), Error> {
            let Some((file, body_path)) = self.blobs.open_body(blob)? else {
                return Err(Error::Corrupt(format!(
                    "the body of {} ({blob}) is missing from the blob directory",
                    whose()
                )));
            };
            let len = file.metadata().map_err(|e| Error::io(&body_path, e))?.len();
            w.write_all(&[records::BODY])
                .and_then(|()| w.write_all(blob.as_bytes()))
                .and_then(|()| w.write_all(&len.to_le_bytes()))
                .map_err(io)?;
            copy_exact(file, &body_path, len, &mut w, path, &mut buf)?;
            counts.bodies += 1;
            counts.body_bytes += len;
            done = done.saturating_add(len);
            progress(done.min(total), total);
            Ok(())
        };
        for entry in txn.open_table(MESSAGES)?.iter()? {
            let (_, v) = entry?;
            let meta: MessageMeta = decode("a message", v.value())?;
            copy_body(&meta.blob, &|| {
                format!("message UID {} of mailbox {}", meta.uid, meta.mailbox)
            })?;
        }
        for entry in txn.open_table(QUEUE)?.iter()? {
            let (_, v) = entry?;
            let queued: QueuedMessage = decode("a queued message", v.value())?;
            copy_body(&queued.blob, &|| format!("queued message {}", queued.id))?;
        }
        drop(txn);

        for rel in &options.files {
            backup_files(&self.dir, rel, &mut w, path, &mut counts, &mut buf)?;
        }
        write_json(&mut w, records::END, &counts).map_err(io)?;
        let (out, archive_bytes) = w.finish().map_err(io)?;
        progress(total, total);
        tracing::info!(
            archive = %path.display(),
            bodies = counts.bodies,
            bytes = archive_bytes,
            encrypted,
            "backup: written"
        );
        Ok((
            out,
            Summary::new(&manifest, &counts, encrypted, archive_bytes),
        ))
    }
}

/// Restores the backup in `from` (a backup directory or its archive file) into the
/// data directory `to`, which must be missing or empty. Everything is read, checked
/// and written into a temporary directory beside `to` first; only a complete,
/// authentic backup is renamed into place. On any error `to` is left as it was and the
/// temporary directory is removed.
pub fn restore(
    from: &Path,
    to: &Path,
    passphrase: Option<&[u8]>,
    progress: Progress<'_>,
) -> Result<Summary, Error> {
    check_target(
        to,
        "restore writes only into a missing or empty directory (stop any server using it, and move it aside)",
    )?;
    let (reader, archive, total) = open_archive(from, passphrase)?;
    let staging = Staging::new(to, "restore")?;
    let mut sink = RestoreSink::new(&staging.tmp)?;
    let summary = read_archive(reader, &archive, total, &mut sink, progress)?;
    sink.finish()?;
    // Opened as the server will open it: a schema this build cannot read is refused
    // here, an older one migrated, and blobs/tmp made.
    drop(Store::open(&staging.tmp)?);
    let root = File::open(&staging.tmp).map_err(|e| Error::io(&staging.tmp, e))?;
    nix::unistd::syncfs(&root).map_err(|e| Error::io(&staging.tmp, io::Error::from(e)))?;
    staging.commit()?;
    Ok(summary)
}

/// Reads and checks the whole backup in `from` (a backup directory or its archive
/// file) without writing anything: every chunk authenticated (or checksummed), every
/// record well formed, every referenced body present.
pub fn verify(
    from: &Path,
    passphrase: Option<&[u8]>,
    progress: Progress<'_>,
) -> Result<Summary, Error> {
    let (reader, archive, total) = open_archive(from, passphrase)?;
    read_archive(reader, &archive, total, &mut VerifySink, progress)
}

/// The archive of a backup directory, or `from` itself when it is a file.
pub fn archive_path(from: &Path) -> PathBuf {
    if from.is_dir() {
        from.join(ARCHIVE_FILE)
    } else {
        from.to_path_buf()
    }
}

type Reader = ChunkReader<BufReader<File>>;

fn open_archive(from: &Path, passphrase: Option<&[u8]>) -> Result<(Reader, PathBuf, u64), Error> {
    let archive = archive_path(from);
    let file = File::open(&archive).map_err(|e| Error::io(&archive, e))?;
    let total = file.metadata().map_err(|e| Error::io(&archive, e))?.len();
    let reader = ChunkReader::open(BufReader::with_capacity(1 << 20, file), passphrase)
        .map_err(|e| e.at(&archive))?;
    Ok((reader, archive, total))
}

/// Reads every record of an archive into `sink`, checking as it goes; returns what
/// the backup holds.
fn read_archive(
    mut r: Reader,
    archive: &Path,
    total: u64,
    sink: &mut dyn Sink,
    progress: Progress<'_>,
) -> Result<Summary, Error> {
    let at = |e: ReadError| e.at(archive);
    let damaged = |what: String| ReadError::from(BackupError::Damaged(what)).at(archive);

    let manifest: Manifest = match read_record_kind(&mut r).map_err(at)? {
        records::HEADER => read_json(&mut r, "manifest").map_err(at)?,
        _ => return Err(damaged("it does not start with its manifest".into())),
    };
    if manifest.format != FORMAT_VERSION {
        return Err(damaged(format!(
            "its manifest says format {}, its header {FORMAT_VERSION}",
            manifest.format
        )));
    }
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: manifest.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    for info in &manifest.tables {
        let known = records::table(&info.name).map(|t| t.info());
        if known.as_ref() != Some(info) {
            return Err(ReadError::from(BackupError::Incompatible(format!(
                "its table {:?} ({} -> {}) is not one this postern knows",
                info.name, info.key, info.value
            )))
            .at(archive));
        }
    }

    // Every body a row references -> whether it has been read.
    let mut referenced: HashMap<[u8; 16], bool> = HashMap::new();
    let mut counts = Counts::default();
    let mut table: Option<&'static dyn records::AnyTable> = None;
    let mut in_bodies = false;
    let mut buf = vec![0u8; COPY_BUF];
    let expected: Counts = loop {
        match read_record_kind(&mut r).map_err(at)? {
            records::TABLE => {
                if in_bodies {
                    return Err(damaged("a table follows the message bodies".into()));
                }
                let mut len = [0u8; 1];
                r.read_exact(&mut len).map_err(at)?;
                let mut name = vec![0u8; usize::from(len[0])];
                r.read_exact(&mut name).map_err(at)?;
                let name = String::from_utf8_lossy(&name).into_owned();
                if !manifest.tables.iter().any(|t| t.name == name) {
                    return Err(damaged(format!(
                        "its table {name:?} is not in its manifest"
                    )));
                }
                if counts.rows.insert(name.clone(), 0).is_some() {
                    return Err(damaged(format!("its table {name:?} appears twice")));
                }
                table = records::table(&name);
            }
            records::ROW => {
                let Some(t) = table.filter(|_| !in_bodies) else {
                    return Err(damaged("a row outside any table".into()));
                };
                let len = read_u32(&mut r).map_err(at)?;
                if len > records::MAX_ROW {
                    return Err(damaged(format!("a row claims {len} bytes")));
                }
                let mut row = vec![0u8; len as usize];
                r.read_exact(&mut row).map_err(at)?;
                t.check(&row).map_err(|e| ReadError::from(e).at(archive))?;
                if let Some((blob, _)) = records::referenced_blob(t.name(), &row)
                    .map_err(|e| ReadError::from(e).at(archive))?
                {
                    let id = blob_key(&blob).ok_or_else(|| {
                        damaged(format!("a row of {} names the body {blob:?}", t.name()))
                    })?;
                    referenced.insert(id, false);
                }
                sink.row(t, &row)?;
                let n = counts.rows.entry(t.name().to_string()).or_default();
                *n += 1;
                if *n % 1000 == 0 {
                    progress(r.consumed(), total);
                }
            }
            records::BODY => {
                in_bodies = true;
                let mut id = [0u8; 32];
                r.read_exact(&mut id).map_err(at)?;
                let id = String::from_utf8_lossy(&id).into_owned();
                let key = blob_key(&id)
                    .ok_or_else(|| damaged(format!("a body has the malformed id {id:?}")))?;
                let len = read_u64(&mut r).map_err(at)?;
                let seen = match referenced.get_mut(&key) {
                    None => {
                        return Err(damaged(format!(
                            "it holds a body ({id}) that nothing references"
                        )));
                    }
                    Some(seen) => std::mem::replace(seen, true),
                };
                // A body named twice is read (and checked) but written once.
                let mut skip = VerifySink;
                let target: &mut dyn Sink = if seen { &mut skip } else { &mut *sink };
                target.begin_body(&id)?;
                stream(&mut r, len, target, &mut buf, archive)?;
                target.end_item()?;
                if !seen {
                    counts.bodies += 1;
                    counts.body_bytes += len;
                }
                progress(r.consumed(), total);
            }
            records::FILE => {
                in_bodies = true;
                let mut len = [0u8; 2];
                r.read_exact(&mut len).map_err(at)?;
                let len = u16::from_le_bytes(len);
                if len > records::MAX_PATH {
                    return Err(damaged(format!("a file path claims {len} bytes")));
                }
                let mut name = vec![0u8; usize::from(len)];
                r.read_exact(&mut name).map_err(at)?;
                let name = String::from_utf8(name)
                    .map_err(|_| damaged("a file path is not UTF-8".into()))?;
                let path = safe_relative_path(&name).ok_or_else(|| {
                    damaged(format!("it holds a file with the unsafe path {name:?}"))
                })?;
                let mode = read_u32(&mut r).map_err(at)?;
                let size = read_u64(&mut r).map_err(at)?;
                sink.begin_file(&path, mode)?;
                stream(&mut r, size, sink, &mut buf, archive)?;
                sink.end_item()?;
                counts.files += 1;
                counts.file_bytes += size;
                progress(r.consumed(), total);
            }
            records::END => break read_json(&mut r, "end record").map_err(at)?,
            other => {
                return Err(damaged(format!("it has a record of unknown kind {other}")));
            }
        }
    };
    let encrypted = r.encrypted();
    let archive_bytes = r.finish().map_err(at)?;
    if expected != counts {
        return Err(damaged(format!(
            "its end record lists {} rows, {} bodies and {} files; {} rows, {} bodies and {} files were read",
            expected.rows.values().sum::<u64>(),
            expected.bodies,
            expected.files,
            counts.rows.values().sum::<u64>(),
            counts.bodies,
            counts.files
        )));
    }
    let missing = referenced.values().filter(|seen| !**seen).count();
    if missing > 0 {
        return Err(damaged(format!(
            "{missing} messages reference bodies that are not in it"
        )));
    }
    progress(total, total);
    Ok(Summary::new(&manifest, &counts, encrypted, archive_bytes))
}

/// The 16 bytes of a 32-hex-digit blob id.
fn blob_key(id: &str) -> Option<[u8; 16]> {
    if !crate::blob::valid_id(id) {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, pair) in id.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        key[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(key)
}

/// A path inside the data directory that a backup may restore: relative, no `..`,
/// and nothing the store itself owns.
fn safe_relative_path(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(name);
    let mut parts = path.components();
    let first = match parts.next()? {
        Component::Normal(p) => p.to_str()?,
        _ => return None,
    };
    if [INDEX_FILE, "blobs", "control.sock"].contains(&first) {
        return None;
    }
    parts
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(path)
}

fn read_record_kind(r: &mut Reader) -> Result<u8, ReadError> {
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    Ok(kind[0])
}

fn read_u32(r: &mut Reader) -> Result<u32, ReadError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut Reader) -> Result<u64, ReadError> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_json<T: serde::de::DeserializeOwned>(r: &mut Reader, what: &str) -> Result<T, ReadError> {
    let len = read_u32(r)?;
    if len > records::MAX_JSON {
        return Err(BackupError::Damaged(format!("its {what} claims {len} bytes")).into());
    }
    let mut json = vec![0u8; len as usize];
    r.read_exact(&mut json)?;
    serde_json::from_slice(&json)
        .map_err(|e| BackupError::Damaged(format!("its {what} is malformed: {e}")).into())
}

fn write_json<W: Write, T: Serialize>(w: &mut W, kind: u8, value: &T) -> io::Result<()> {
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    let len = u32::try_from(json.len()).map_err(io::Error::other)?;
    w.write_all(&[kind])?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&json)
}

/// Passes `len` bytes of the archive to `sink`.
fn stream(
    r: &mut Reader,
    len: u64,
    sink: &mut dyn Sink,
    buf: &mut [u8],
    archive: &Path,
) -> Result<(), Error> {
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        r.read_exact(&mut buf[..n]).map_err(|e| e.at(archive))?;
        sink.data(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Copies exactly `len` bytes of `file` into the archive.
fn copy_exact<W: Write>(
    mut file: File,
    file_path: &Path,
    len: u64,
    w: &mut W,
    archive: &Path,
    buf: &mut [u8],
) -> Result<(), Error> {
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Error::Corrupt(format!(
                    "{} shrank while it was backed up",
                    file_path.display()
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(file_path, e)),
        };
        w.write_all(&buf[..n]).map_err(|e| Error::io(archive, e))?;
        left -= n as u64;
    }
    Ok(())
}

/// Adds the file or directory `rel` of the data directory `data_dir` (recursively;
/// symbolic links to files are followed, to directories not); a missing one is skipped.
fn backup_files<W: Write>(
    data_dir: &Path,
    rel: &Path,
    w: &mut W,
    archive: &Path,
    counts: &mut Counts,
    buf: &mut [u8],
) -> Result<(), Error> {
    let Some(name) = rel.to_str().and_then(safe_relative_path) else {
        return Err(Error::Invalid(format!(
            "{} cannot be backed up: only files of the data directory other than the store's own",
            rel.display()
        )));
    };
    let full = data_dir.join(&name);
    let meta = match fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&full, e)),
    };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&full)
            .map_err(|e| Error::io(&full, e))?
            .map(|e| e.map(|e| name.join(e.file_name())))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::io(&full, e))?;
        entries.sort();
        for entry in entries {
            backup_files(data_dir, &entry, w, archive, counts, buf)?;
        }
        return Ok(());
    }
    // Sockets, FIFOs and devices are not data (and opening a FIFO would block).
    if !meta.is_file() && !meta.file_type().is_symlink() {
        return Ok(());
    }
    let file = match File::open(&full) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&full, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(&full, e))?;
    if !meta.is_file() {
        return Ok(());
    }
    let path = name.to_str().unwrap_or_default();
    let io = |e: io::Error| Error::io(archive, e);
    let path_len = u16::try_from(path.len())
        .ok()
        .filter(|&l| l <= records::MAX_PATH)
        .ok_or_else(|| Error::Invalid(format!("the path {path} is too long to back up")))?;
    w.write_all(&[records::FILE])
        .and_then(|()| w.write_all(&path_len.to_le_bytes()))
        .and_then(|()| w.write_all(path.as_bytes()))
        .and_then(|()| w.write_all(&(meta.permissions().mode() & 0o777).to_le_bytes()))
        .and_then(|()| w.write_all(&meta.len().to_le_bytes()))
        .map_err(io)?;
    copy_exact(file, &full, meta.len(), w, archive, buf)?;
    counts.files += 1;
    counts.file_bytes += meta.len();
    Ok(())
}

/// Refuses a target that exists and is not an empty directory.
fn check_target(dir: &Path, rule: &str) -> Result<(), Error> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
        Ok(m) if !m.is_dir() => Err(Error::Exists(format!(
            "{} (a file, not a directory): {rule}",
            dir.display()
        ))),
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
            if entries.next().is_some() {
                Err(Error::NotEmpty(format!(
                    "{} is not empty: {rule}",
                    dir.display()
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// A temporary directory beside a target, renamed onto it when complete and
/// removed otherwise.
struct Staging {
    tmp: PathBuf,
    target: PathBuf,
    parent: PathBuf,
    committed: bool,
}

impl Staging {
    fn new(target: &Path, what: &str) -> Result<Self, Error> {
        let Some(name) = target.file_name() else {
            return Err(Error::Invalid(format!(
                "{} does not name a directory",
                target.display()
            )));
        };
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix)
            .map_err(|e| Error::Db(format!("the system random generator failed: {e}")))?;
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = parent.join(format!(".{}.{what}-{suffix}", name.to_string_lossy()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Staging {
            tmp,
            target: target.to_path_buf(),
            parent,
            committed: false,
        })
    }

    /// Renames the finished directory onto the target (an empty directory there is
    /// replaced; a non-empty one makes the rename fail) and makes that durable.
    fn commit(mut self) -> Result<(), Error> {
        match fs::rename(&self.tmp, &self.target) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                ) =>
            {
                return Err(Error::NotEmpty(format!(
                    "{} was filled by something else meanwhile: left as it is",
                    self.target.display()
                )));
            }
            Err(e) => return Err(Error::io(&self.target, e)),
        }
        self.committed = true;
        sync_dir(&self.parent)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = fs::remove_dir_all(&self.tmp)
        {
            tracing::warn!(path = %self.tmp.display(), error = %e, "could not remove a temporary directory");
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests;
