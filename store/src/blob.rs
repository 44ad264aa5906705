//! Message bodies: one file each under `blobs/<2 hex>/<32 hex>`, written through `blobs/tmp/`.
//!
//! A body is written in `tmp/` and renamed into its fan-out directory (`blobs/` is
//! fsynced when a fan-out directory is new); [`BlobDir::sync_fan_outs`] then makes a
//! whole batch of bodies durable with one `syncfs(2)`, before the index commit that
//! references them.
//!
//! While a backup reads the bodies of its snapshot it holds the directory
//! ([`BlobDir::hold`]): removals are then deferred until the last hold ends, so a
//! body expunged after the snapshot was taken is still there for the backup to read.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::Error;

/// Length of a blob id in hex digits (128 random bits).
const ID_LEN: usize = 32;

/// The blob directory of a store.
#[derive(Debug)]
pub(crate) struct BlobDir {
    root: PathBuf,
    /// The blob directory, open since the store opened: `syncfs(2)` reports a
    /// write-back error only to descriptors opened before it happened, so a
    /// descriptor opened for each sync could miss the failure of a body it flushes.
    root_dir: File,
    tmp: PathBuf,
    holds: Mutex<Holds>,
}

/// The backups reading bodies now, and the removals waiting for them to finish.
#[derive(Debug, Default)]
struct Holds {
    readers: usize,
    deferred: Vec<String>,
}

/// Defers every body removal while it lives (see [`BlobDir::hold`]).
#[derive(Debug)]
pub(crate) struct BlobHold<'a> {
    dir: &'a BlobDir,
}

impl Drop for BlobHold<'_> {
    fn drop(&mut self) {
        let deferred = {
            let mut holds = self.dir.lock_holds();
            holds.readers = holds.readers.saturating_sub(1);
            if holds.readers > 0 {
                return;
            }
            std::mem::take(&mut holds.deferred)
        };
        if !deferred.is_empty() {
            tracing::debug!(
                bodies = deferred.len(),
                "removing the message bodies whose removal waited for a backup"
            );
        }
        for id in deferred {
            if let Err(e) = self.dir.unlink(&id) {
                tracing::warn!(blob = %id, error = %e, "could not remove a message body");
            }
        }
    }
}

impl BlobDir {
    /// Opens (creating if needed) the blob directory at `root` and empties its `tmp/`.
    ///
    /// Must only be called while holding the index lock: another process's writes in flight
    /// would be lost otherwise.
    pub(crate) fn open(root: &Path) -> Result<BlobDir, Error> {
        let tmp = root.join("tmp");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        for entry in fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
            let path = entry.map_err(|e| Error::io(&tmp, e))?.path();
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(path = %path.display(), "removed an unfinished body"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        let root_dir = File::open(root).map_err(|e| Error::io(root, e))?;
        Ok(BlobDir {
            root: root.to_path_buf(),
            root_dir,
            tmp,
            holds: Mutex::new(Holds::default()),
        })
    }

    fn lock_holds(&self) -> MutexGuard<'_, Holds> {
        self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps every body file in place until the returned hold is dropped: removals
    /// asked for meanwhile ([`BlobDir::remove`]) are carried out when the last hold
    /// ends. Taken by a backup *before* it opens its read transaction, so every body
    /// its snapshot references stays readable, while appends and expunges go on.
    pub(crate) fn hold(&self) -> BlobHold<'_> {
        self.lock_holds().readers += 1;
        BlobHold { dir: self }
    }

    /// Opens the body `id` for reading; `Ok(None)` if there is no such file.
    pub(crate) fn open_body(&self, id: &str) -> Result<Option<(File, PathBuf)>, Error> {
        let path = self.path(id)?;
        match File::open(&path) {
            Ok(file) => Ok(Some((file, path))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Writes `body` durably and returns its new id.
    #[cfg(test)]
    pub(crate) fn write(&self, body: &[u8]) -> Result<String, Error> {
        let id = self.write_unsynced(body)?;
        self.sync_fan_outs(&[id.as_str()])?;
        Ok(id)
    }

    /// Like [`BlobDir::write`] but without the final fsync of the body's directory:
    /// the body is not durable until [`BlobDir::sync_fan_outs`] ran for it. Lets a group
    /// commit sync each directory once for many bodies.
    pub(crate) fn write_unsynced(&self, body: &[u8]) -> Result<String, Error> {
        self.write_body_unsynced(&crate::Body::from(body))
    }

    /// Like [`BlobDir::write_unsynced`] for a body that may be spooled in a file.
    pub(crate) fn write_body_unsynced(&self, body: &crate::Body<'_>) -> Result<String, Error> {
        let id = new_id()?;
        let tmp = self.tmp.join(&id);
        let result = self.write_at(&id, &tmp, body);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| id)
    }

    fn write_at(&self, id: &str, tmp: &Path, body: &crate::Body<'_>) -> Result<(), Error> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(|e| Error::io(tmp, e))?;
        body.write_to(&mut file).map_err(|e| Error::io(tmp, e))?;
        drop(file);

        let fan_out = self.root.join(&id[..2]);
        let dest = fan_out.join(id);
        // The fan-out directory nearly always exists: try the rename first, and make
        // the directory only when it is missing.
        match fs::rename(tmp, &dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other.map_err(|e| Error::io(&dest, e)),
        }
        match fs::DirBuilder::new().mode(0o700).create(&fan_out) {
            Ok(()) => sync_dir(&self.root)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&fan_out, e)),
        }
        fs::rename(tmp, &dest).map_err(|e| Error::io(&dest, e))
    }

    /// A new body file with the contents of `id`, as a hard link to it (the files are
    /// never written after they are made, so the two names stay equal): a copy costs
    /// no data. Not durable until [`BlobDir::sync_fan_outs`] ran for it. `Ok(None)` if
    /// `id` does not exist.
    pub(crate) fn link(&self, id: &str) -> Result<Option<String>, Error> {
        let source = self.path(id)?;
        let new = new_id()?;
        let fan_out = self.root.join(&new[..2]);
        let dest = fan_out.join(&new);
        for attempt in 0..2 {
            match fs::hard_link(&source, &dest) {
                Ok(()) => return Ok(Some(new)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !source.exists() {
                        return Ok(None);
                    }
                    if attempt == 0 {
                        match fs::DirBuilder::new().mode(0o700).create(&fan_out) {
                            Ok(()) => sync_dir(&self.root)?,
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(Error::io(&fan_out, e)),
                        }
                    }
                }
                Err(e) => return Err(Error::io(&dest, e)),
            }
        }
        Err(Error::io(
            &dest,
            io::Error::other("the fan-out directory vanished while linking"),
        ))
    }

    /// Makes the bodies `ids` durable, their contents and their renames: one
    /// `syncfs(2)` of the store's file system for all of them, instead of an fsync of
    /// each file and of each directory. A group commit of many messages thus costs one
    /// flush of the disk for their bodies. (Linux reports write-back errors through
    /// syncfs since 5.8.)
    pub(crate) fn sync_fan_outs(&self, ids: &[&str]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        nix::unistd::syncfs(&self.root_dir).map_err(|e| Error::io(&self.root, io::Error::from(e)))
    }

    /// Reads the body with id `id`; `Ok(None)` if there is no such file.
    pub(crate) fn read(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path(id)?;
        match fs::read(&path) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Removes the body with id `id`; a missing file is not an error. While a backup
    /// holds the directory the removal waits for it (see [`BlobDir::hold`]).
    pub(crate) fn remove(&self, id: &str) -> Result<(), Error> {
        self.path(id)?;
        {
            let mut holds = self.lock_holds();
            if holds.readers > 0 {
                holds.deferred.push(id.to_string());
                return Ok(());
            }
        }
        self.unlink(id)
    }

    fn unlink(&self, id: &str) -> Result<(), Error> {
        let path = self.path(id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Removes bodies after their index entries are gone, logging (not failing on) errors:
    /// the index commit has already happened and a leftover file is only wasted space.
    pub(crate) fn remove_all(&self, ids: &[String]) {
        for id in ids {
            if let Err(e) = self.remove(id) {
                tracing::warn!(blob = %id, error = %e, "could not remove a message body");
            }
        }
    }

    /// The ids of every body file present.
    pub(crate) fn list(&self) -> Result<HashSet<String>, Error> {
        let mut ids = HashSet::new();
        for entry in fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))? {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            let name = entry.file_name();
            let Some(prefix) = name.to_str() else {
                continue;
            };
            if prefix.len() != 2 || !is_lower_hex(prefix) {
                continue;
            }
            let dir = entry.path();
            for file in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let file = file.map_err(|e| Error::io(&dir, e))?;
                if let Some(id) = file.file_name().to_str()
                    && valid_id(id)
                    && id.starts_with(prefix)
                {
                    ids.insert(id.to_string());
                }
            }
        }
        Ok(ids)
    }

    /// Where the body `id` lives; refuses anything but 32 lower-case hex digits, so a forged
    /// id cannot name a path outside the blob directory.
    fn path(&self, id: &str) -> Result<PathBuf, Error> {
        if !valid_id(id) {
            return Err(Error::Invalid(format!(
                "the blob id {id:?} is not {ID_LEN} lower-case hex digits"
            )));
        }
        Ok(self.root.join(&id[..2]).join(id))
    }
}

/// Whether `id` is a blob id: 32 lower-case hex digits.
pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN && is_lower_hex(id)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn new_id() -> Result<String, Error> {
    let mut bytes = [0u8; ID_LEN / 2];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Db(format!("the system random generator failed: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Makes a directory's entries durable (a rename or creation in it).
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(&dir.path().join("blobs")).unwrap();
        let id = blobs.write(b"hello").unwrap();
        assert!(valid_id(&id));
        assert!(dir.path().join("blobs").join(&id[..2]).join(&id).is_file());
        assert_eq!(blobs.read(&id).unwrap().unwrap(), b"hello");
        assert_eq!(blobs.list().unwrap(), HashSet::from([id.clone()]));
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(),
            0
        );
        blobs.remove(&id).unwrap();
        blobs.remove(&id).unwrap();
        assert!(blobs.read(&id).unwrap().is_none());
        assert!(blobs.list().unwrap().is_empty());
    }

    #[test]
    fn ids_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let a = blobs.write(b"").unwrap();
        let b = blobs.write(b"").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn removals_wait_for_the_last_hold() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let a = blobs.write(b"a").unwrap();
        let b = blobs.write(b"b").unwrap();
        let first = blobs.hold();
        let second = blobs.hold();
        blobs.remove(&a).unwrap();
        blobs.remove_all(std::slice::from_ref(&b));
        drop(first);
        assert_eq!(blobs.read(&a).unwrap().unwrap(), b"a");
        assert_eq!(blobs.read(&b).unwrap().unwrap(), b"b");
        drop(second);
        assert!(blobs.read(&a).unwrap().is_none());
        assert!(blobs.read(&b).unwrap().is_none());
        // Without a hold a removal is immediate again.
        let c = blobs.write(b"c").unwrap();
        blobs.remove(&c).unwrap();
        assert!(blobs.read(&c).unwrap().is_none());
    }

    #[test]
    fn forged_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        for id in [
            "../../etc/passwd",
            "",
            "ABCDEF0123456789ABCDEF0123456789",
            "0a/b",
        ] {
            assert!(matches!(blobs.read(id), Err(Error::Invalid(_))), "{id}");
            assert!(matches!(blobs.remove(id), Err(Error::Invalid(_))), "{id}");
        }
    }
}
