//! Where the records of an archive go while it is read: nowhere (verify), or into
//! a new data directory (restore).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, Durability};

use super::records;
use crate::{Error, INDEX_FILE};

/// Where the records of an archive go.
pub(super) trait Sink {
    fn row(&mut self, table: &'static dyn records::AnyTable, row: &[u8]) -> Result<(), Error>;
    fn begin_body(&mut self, id: &str) -> Result<(), Error>;
    fn begin_file(&mut self, path: &Path, mode: u32) -> Result<(), Error>;
    fn data(&mut self, bytes: &[u8]) -> Result<(), Error>;
    fn end_item(&mut self) -> Result<(), Error>;
}

/// Checks only.
pub(super) struct VerifySink;

impl Sink for VerifySink {
    fn row(&mut self, _: &'static dyn records::AnyTable, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn begin_body(&mut self, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn begin_file(&mut self, _: &Path, _: u32) -> Result<(), Error> {
        Ok(())
    }
    fn data(&mut self, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn end_item(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Rows inserted per write transaction while restoring.
const ROWS_PER_COMMIT: usize = 20_000;

/// Builds a data directory: a fresh redb index, the body files, the other files.
pub(super) struct RestoreSink {
    dir: PathBuf,
    db: Option<Database>,
    table: Option<&'static dyn records::AnyTable>,
    pending: Vec<Vec<u8>>,
    open: Option<(File, PathBuf)>,
}

impl RestoreSink {
    pub(super) fn new(dir: &Path) -> Result<Self, Error> {
        let index = dir.join(INDEX_FILE);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&index)
            .map_err(|e| Error::io(&index, e))?;
        let db = Database::create(&index)
            .map_err(|e| Error::Db(format!("could not create {}: {e}", index.display())))?;
        Ok(RestoreSink {
            dir: dir.to_path_buf(),
            db: Some(db),
            table: None,
            pending: Vec::new(),
            open: None,
        })
    }

    fn db(&self) -> Result<&Database, Error> {
        self.db
            .as_ref()
            .ok_or_else(|| Error::Db("the restored index is already closed".into()))
    }

    /// Commits the pending rows; not durable until [`RestoreSink::finish`].
    fn flush(&mut self) -> Result<(), Error> {
        let Some(table) = self.table else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut txn = self.db()?.begin_write()?;
        txn.set_durability(Durability::None)
            .map_err(|e| Error::Db(e.to_string()))?;
        table.insert(&txn, &self.pending)?;
        txn.commit()?;
        self.pending.clear();
        Ok(())
    }

    /// Commits the last rows durably and closes the index.
    pub(super) fn finish(mut self) -> Result<(), Error> {
        self.flush()?;
        // An immediate commit makes the earlier non-durable ones durable too.
        let txn = self.db()?.begin_write()?;
        txn.commit()?;
        self.db = None;
        Ok(())
    }
}

impl Sink for RestoreSink {
    fn row(&mut self, table: &'static dyn records::AnyTable, row: &[u8]) -> Result<(), Error> {
        if self.table.map(|t| t.name()) != Some(table.name()) {
            self.flush()?;
            self.table = Some(table);
        }
        self.pending.push(row.to_vec());
        if self.pending.len() >= ROWS_PER_COMMIT {
            self.flush()?;
        }
        Ok(())
    }

    fn begin_body(&mut self, id: &str) -> Result<(), Error> {
        self.flush()?;
        let fan_out = self.dir.join("blobs").join(&id[..2]);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&fan_out)
            .map_err(|e| Error::io(&fan_out, e))?;
        self.create(fan_out.join(id), 0o600)
    }

    fn begin_file(&mut self, path: &Path, mode: u32) -> Result<(), Error> {
        let dest = self.dir.join(path);
        if let Some(parent) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::io(parent, e))?;
        }
        self.create(dest, mode & 0o777)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match &mut self.open {
            Some((file, path)) => file.write_all(bytes).map_err(|e| Error::io(path, e)),
            None => Err(Error::Db("restored data with no file open".into())),
        }
    }

    fn end_item(&mut self) -> Result<(), Error> {
        self.open = None;
        Ok(())
    }
}

impl RestoreSink {
    fn create(&mut self, path: PathBuf, mode: u32) -> Result<(), Error> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // The umask may have narrowed the mode; the backup's is the one wanted.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(&path, e))?;
        self.open = Some((file, path));
        Ok(())
    }
}
