//! Postern's store: the one owner of the disk format.
//!
//! Layout under a data directory `D`:
//!
//! - `D/store.redb`: the redb index (directory, mailboxes, message metadata, activity log,
//!   DKIM keys, the outbound queue), every value a JSON document;
//! - `D/blobs/<2 hex>/<32 hex>`: one file per message body, named by a random id;
//! - `D/blobs/tmp/`: bodies being written, emptied at open.
//!
//! [`backup`] writes and restores consistent snapshots of all of it.
//!
//! A body is written to `blobs/tmp/` and renamed into place; then one `syncfs(2)` makes
//! every body of a group commit durable (contents and renames) before the index commit
//! that references them, so an acknowledged commit never points at a missing body. redb
//! commits are durable (fsynced) before they return.
//!
//! Every method takes `&self` and blocks on disk I/O: async callers use `spawn_blocking`.
#![forbid(unsafe_code)]

mod apps;
mod audit;
pub mod backup;
mod batch;
mod blob;
mod body;
mod changes;
mod copy;
mod directory;
pub mod firewall;
mod flags;
mod imap_ops;
mod keys;
mod limbo;
pub mod login;
mod mailbox;
mod message;
mod queue;
mod sieve;
mod sts;
mod subscriptions;
mod tokens;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

pub use apps::{App, Container};
pub use audit::{AuditConfig, AuditEntry, AuditEvent};
pub use batch::{Appended, Batch, Committed, Once};
pub use body::{Body, Spooled};
pub use changes::Change;
pub use directory::{Account, Alias, Domain, normalize_address, normalize_domain};
pub use flags::{FlagChange, FlagsOutcome};
pub use keys::DkimKey;
pub use limbo::ExpungeHold;
pub use mailbox::{DELIMITER, INBOX, Mailbox, Role, normalize_mailbox_name};
pub use message::{MessageMeta, header_block, normalize_flags};
pub use queue::{LocalTarget, NewQueued, QueueId, QueuedMessage, QueuedRecipient, RecipientState};
pub use sieve::SieveScript;
pub use sts::StsPolicy;
pub use tokens::AdminToken;

/// Identifies an account; allocated from a counter, never reused.
pub type AccountId = u64;
/// Identifies a mailbox across all accounts; allocated from a counter, never reused.
pub type MailboxId = u64;
/// An IMAP unique identifier (RFC 3501 §2.3.1.1), strictly ascending within a mailbox.
pub type Uid = u32;
/// A CONDSTORE modification sequence (RFC 7162 §3.1.1), strictly ascending within a mailbox.
pub type ModSeq = u64;

/// The schema version this build reads and writes, kept in the `meta` table.
pub const SCHEMA_VERSION: u64 = 3;

/// The file name of the redb index inside the data directory.
pub const INDEX_FILE: &str = "store.redb";

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the store could not be read or written.
    #[error("the store could not access {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The redb index reported an error.
    #[error("the store's index failed: {0}")]
    Db(String),
    /// A stored value could not be decoded, or stored data contradicts itself.
    #[error("the store holds damaged data: {0}")]
    Corrupt(String),
    /// The thing to create already exists; the text names it.
    #[error("{0} already exists")]
    Exists(String),
    /// The thing asked for does not exist; the text names it.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The address names a domain this server does not host.
    #[error("the domain {0} is not a local domain")]
    NoSuchDomain(String),
    /// The thing to delete still holds other things; the text says what.
    #[error("{0}")]
    NotEmpty(String),
    /// An address or domain is malformed; the text names the value and why.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// A mailbox name, flag, selector or other value is malformed; the text says which and why.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// Storing a message would take the account over its quota.
    #[error(
        "the account {account} is over quota: {used} of {quota} bytes are used and the message takes {size} more"
    )]
    OverQuota {
        /// The account's address.
        account: String,
        /// The account's quota in bytes.
        quota: u64,
        /// The bytes already used.
        used: u64,
        /// The size of the message refused.
        size: u64,
    },
    /// A counter ran out (UIDs of a mailbox, UIDVALIDITY values); the text says which.
    #[error("{0} is exhausted")]
    Exhausted(String),
    /// Messages an operation names were expunged meanwhile; nothing was done. The text
    /// names them.
    #[error("{0} no longer exist")]
    Expunged(String),
    /// The store was written by a newer Postern.
    #[error(
        "store schema version {found} is newer than this postern supports ({supported}): upgrade postern"
    )]
    SchemaTooNew {
        /// The version found in the store.
        found: u64,
        /// The newest version this build supports.
        supported: u64,
    },
    /// The thing cannot be removed while it is in use; the text says what.
    #[error("{0}")]
    InUse(String),
    /// A backup cannot be used: not a backup, damaged, tampered with, truncated, or the
    /// passphrase is wrong or missing.
    #[error("{}: {reason}", path.display())]
    Backup {
        /// The archive file.
        path: PathBuf,
        /// What is wrong with it (part of this error's text, so not its `source`).
        reason: backup::BackupError,
    },
    /// Another process (or another `Store` in this one) has the index open.
    #[error("the store in {} is in use by another process", .0.display())]
    Locked(PathBuf),
}

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Db(e.to_string())
            }
        }
    )*};
}
db_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The redb tables. Every JSON value tolerates missing optional fields (`#[serde(default)]`),
/// so adding a field does not need a schema bump.
pub(crate) mod tables {
    use redb::TableDefinition;

    /// `schema_version` and the id counters. Its type never changes, so any version can read it.
    pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    /// Domain name (lower case) -> JSON [`crate::Domain`].
    pub const DOMAINS: TableDefinition<&str, &[u8]> = TableDefinition::new("domains");
    /// Account id -> JSON [`crate::Account`].
    pub const ACCOUNTS: TableDefinition<u64, &[u8]> = TableDefinition::new("accounts");
    /// Account address (lower case) -> account id.
    pub const ACCOUNT_EMAILS: TableDefinition<&str, u64> = TableDefinition::new("account_emails");
    /// Alias address (lower case, `@domain` for a catch-all) -> JSON [`crate::Alias`].
    pub const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
    /// Mailbox id -> JSON [`crate::Mailbox`].
    pub const MAILBOXES: TableDefinition<u64, &[u8]> = TableDefinition::new("mailboxes");
    /// (account id, mailbox name) -> mailbox id.
    pub const MAILBOX_NAMES: TableDefinition<(u64, &str), u64> =
        TableDefinition::new("mailbox_names");
    /// (mailbox id, UID) -> JSON [`crate::MessageMeta`].
    pub const MESSAGES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("messages");
    /// (mailbox id, UID) -> MODSEQ of the expunge, for QRESYNC (RFC 7162 §3.2.10).
    pub const EXPUNGED: TableDefinition<(u64, u32), u64> = TableDefinition::new("expunged");
    /// (unix milliseconds, entry id) -> JSON [`crate::AuditEvent`].
    pub const AUDIT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit");
    /// (domain, selector) -> JSON [`crate::DkimKey`].
    pub const DKIM_KEYS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dkim_keys");
    /// Queue id -> JSON [`crate::QueuedMessage`].
    pub const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
    /// (mailbox id, MODSEQ, UID) -> 0 for a message's latest change (append or flags),
    /// 1 for its expunge: what changed in a mailbox since a MODSEQ, without reading
    /// every message (IMAP sessions catching up, CONDSTORE). Added in schema 2.
    pub const CHANGES: TableDefinition<(u64, u64, u32), u8> = TableDefinition::new("changes");
    /// (mailbox id, UID) -> the message's header block, kept beside its body so that
    /// header searches and header fetches read no body file. Messages stored before it
    /// existed have no row: readers fall back to the body.
    pub const HEADERS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("headers");
    /// Remote domain (lower case) -> JSON [`crate::StsPolicy`], the MTA-STS policy cache.
    pub const MTA_STS: TableDefinition<&str, &[u8]> = TableDefinition::new("mta_sts");
    /// (account id, script name) -> the Sieve script's text (RFC 5804 scripts).
    pub const SIEVE_SCRIPTS: TableDefinition<(u64, &str), &[u8]> =
        TableDefinition::new("sieve_scripts");
    /// Account id -> the name of its active Sieve script.
    pub const SIEVE_ACTIVE: TableDefinition<u64, &str> = TableDefinition::new("sieve_active");
    /// (account id, id) -> unix milliseconds when it expires: the vacation replies sent
    /// (RFC 5230 §4.2) and the `duplicate` ids (RFC 7352) of the account's scripts.
    pub const SIEVE_SEEN: TableDefinition<(u64, &str), u64> = TableDefinition::new("sieve_seen");
    /// (account id, mailbox name) -> 0: the account's subscriptions (RFC 3501 §6.3.6),
    /// which may name mailboxes that no longer exist. Added in schema 3 (from the
    /// mailboxes' former `subscribed` field).
    pub const SUBSCRIPTIONS: TableDefinition<(u64, &str), u8> =
        TableDefinition::new("subscriptions");
    /// App name -> JSON [`crate::App`], the web applications behind the HTTPS front.
    pub const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
    /// Network (CIDR text) -> JSON [`crate::firewall::Block`], the admin's blocks.
    pub const FW_BLOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("fw_blocks");
    /// List name -> JSON [`crate::firewall::BlockList`], the named block lists.
    pub const FW_LISTS: TableDefinition<&str, &[u8]> = TableDefinition::new("fw_lists");
    /// Address -> JSON [`crate::firewall::Ban`], the automatic bans.
    pub const FW_BANS: TableDefinition<&str, &[u8]> = TableDefinition::new("fw_bans");
    /// Name -> random bytes made once (`srs`: the key of SRS addresses).
    pub const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
    /// Hex SHA-256 of an admin API token -> JSON [`crate::AdminToken`].
    pub const ADMIN_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("admin_tokens");
}

const SCHEMA_KEY: &str = "schema_version";
const CHANGE_CAPACITY: usize = 1024;

/// The store: one per data directory, shared by every listener (`Send + Sync`).
pub struct Store {
    dir: PathBuf,
    db: Database,
    blobs: blob::BlobDir,
    changes: broadcast::Sender<Change>,
    /// Held shared from a body's write to its index commit, exclusively by the orphan sweep,
    /// so the sweep never removes a body about to be committed.
    blob_gate: RwLock<()>,
    /// Batches waiting for the next group commit.
    commit_queue: std::sync::Mutex<Vec<batch::Pending>>,
    /// Refusals of unauthenticated clients being counted ([`Store::log_refusal`]).
    refusals: audit::Refusals,
    /// Held by the commit that commits the queued ones (the group-commit leader).
    commit_lock: std::sync::Mutex<()>,
    /// Messages removed while IMAP sessions may still show them (RFC 2180 §4.1.1).
    limbo: limbo::Limbo,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens or creates the store in `data_dir` (creates the dir with mode 0700 if missing).
    ///
    /// Fails with [`Error::Locked`] if another process has it open and with
    /// [`Error::SchemaTooNew`] if a newer Postern wrote it.
    pub fn open(data_dir: &Path) -> Result<Store, Error> {
        create_private_dir(data_dir)?;
        let index = data_dir.join(INDEX_FILE);
        // Created 0600 before redb opens it: the index holds password hashes and DKIM keys.
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&index)
            .map_err(|e| Error::io(&index, e))?;
        let db = match Database::create(&index) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Error::Locked(data_dir.to_path_buf()));
            }
            Err(e) => {
                return Err(Error::Db(format!(
                    "could not open {}: {e}",
                    index.display()
                )));
            }
        };
        init_schema(&db)?;
        // Only now, holding the index lock, is it safe to empty blobs/tmp.
        let blobs = blob::BlobDir::open(&data_dir.join("blobs"))?;
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        Ok(Store {
            dir: data_dir.to_path_buf(),
            db,
            blobs,
            changes,
            blob_gate: RwLock::new(()),
            commit_queue: std::sync::Mutex::new(Vec::new()),
            refusals: audit::Refusals::default(),
            commit_lock: std::sync::Mutex::new(()),
            limbo: limbo::Limbo::default(),
        })
    }

    /// The data directory this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u64, Error> {
        self.read(|txn| {
            let meta = txn.open_table(tables::META)?;
            Ok(meta.get(SCHEMA_KEY)?.map(|v| v.value()).unwrap_or(0))
        })
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Runs `f` in a write transaction and commits it if `f` succeeds; an error aborts it.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let txn = self.db.begin_write()?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn init_schema(db: &Database) -> Result<(), Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(tables::META)?;
        let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
        match found {
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(0) => {
                return Err(Error::Corrupt("the schema version is 0".into()));
            }
            Some(v) if v < SCHEMA_VERSION => {
                // Each upgrade in the same transaction that records the new version.
                drop(meta);
                if v < 2 {
                    // Schema 2 adds the CHANGES index, from the messages and expunges.
                    build_changes_index(&txn)?;
                }
                if v < 3 {
                    // Schema 3 keeps subscriptions apart from the mailboxes.
                    move_subscriptions(&txn)?;
                }
                txn.open_table(tables::META)?
                    .insert(SCHEMA_KEY, SCHEMA_VERSION)?;
            }
            Some(_) => {}
        }
    }
    // Created here so that read transactions never meet a missing table.
    txn.open_table(tables::DOMAINS)?;
    txn.open_table(tables::ACCOUNTS)?;
    txn.open_table(tables::ACCOUNT_EMAILS)?;
    txn.open_table(tables::ALIASES)?;
    txn.open_table(tables::MAILBOXES)?;
    txn.open_table(tables::MAILBOX_NAMES)?;
    txn.open_table(tables::MESSAGES)?;
    txn.open_table(tables::EXPUNGED)?;
    txn.open_table(tables::AUDIT)?;
    txn.open_table(tables::DKIM_KEYS)?;
    txn.open_table(tables::QUEUE)?;
    txn.open_table(tables::MTA_STS)?;
    txn.open_table(tables::CHANGES)?;
    txn.open_table(tables::HEADERS)?;
    txn.open_table(tables::SIEVE_SCRIPTS)?;
    txn.open_table(tables::SIEVE_ACTIVE)?;
    txn.open_table(tables::SIEVE_SEEN)?;
    txn.open_table(tables::SUBSCRIPTIONS)?;
    txn.open_table(tables::APPS)?;
    txn.open_table(tables::FW_BLOCKS)?;
    txn.open_table(tables::FW_LISTS)?;
    txn.open_table(tables::FW_BANS)?;
    txn.open_table(tables::SECRETS)?;
    txn.open_table(tables::ADMIN_TOKENS)?;
    txn.commit()?;
    Ok(())
}

/// Fills the CHANGES index from MESSAGES and EXPUNGED (migration to schema 2).
fn build_changes_index(txn: &WriteTransaction) -> Result<(), Error> {
    let mut changes = txn.open_table(tables::CHANGES)?;
    for entry in txn.open_table(tables::MESSAGES)?.iter()? {
        let (k, v) = entry?;
        let (mailbox, uid) = k.value();
        let meta: MessageMeta = decode("a message", v.value())?;
        changes.insert((mailbox, meta.modseq, uid), 0)?;
    }
    for entry in txn.open_table(tables::EXPUNGED)?.iter()? {
        let (k, v) = entry?;
        let (mailbox, uid) = k.value();
        changes.insert((mailbox, v.value(), uid), 1)?;
    }
    Ok(())
}

/// Fills SUBSCRIPTIONS from the mailboxes' `subscribed` field (migration to schema 3).
fn move_subscriptions(txn: &WriteTransaction) -> Result<(), Error> {
    let mut subscribed = Vec::new();
    for entry in txn.open_table(tables::MAILBOXES)?.iter()? {
        let (_, v) = entry?;
        let m: serde_json::Value = decode("a mailbox", v.value())?;
        if m["subscribed"].as_bool().unwrap_or(true)
            && let (Some(account), Some(name)) = (m["account"].as_u64(), m["name"].as_str())
        {
            subscribed.push((account, name.to_string()));
        }
    }
    let mut table = txn.open_table(tables::SUBSCRIPTIONS)?;
    for (account, name) in subscribed {
        table.insert((account, name.as_str()), 0)?;
    }
    Ok(())
}

/// Takes the next value of the counter `key` in `meta`, starting at `first`.
pub(crate) fn next_counter(txn: &WriteTransaction, key: &str, first: u64) -> Result<u64, Error> {
    let mut meta = txn.open_table(tables::META)?;
    let value = meta
        .get(key)?
        .map(|v| v.value())
        .unwrap_or(first)
        .max(first);
    let next = value
        .checked_add(1)
        .ok_or_else(|| Error::Exhausted(format!("the counter {key}")))?;
    meta.insert(key, next)?;
    Ok(value)
}

/// Encodes a value as JSON for the index.
pub(crate) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Db(format!("could not encode {what}: {e}")))
}

/// Decodes a JSON value from the index.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what} is undecodable: {e}")))
}

impl Store {
    /// The secret called `name`: `len` random bytes made the first time it is asked
    /// for and kept in the store (and its backups) from then on.
    pub fn secret(&self, name: &str, len: usize) -> Result<Vec<u8>, Error> {
        let found = self.read(|txn| {
            Ok(txn
                .open_table(tables::SECRETS)?
                .get(name)?
                .map(|v| v.value().to_vec()))
        })?;
        if let Some(secret) = found {
            return Ok(secret);
        }
        self.write(|txn| {
            let mut table = txn.open_table(tables::SECRETS)?;
            if let Some(v) = table.get(name)? {
                return Ok(v.value().to_vec());
            }
            let mut secret = vec![0u8; len];
            getrandom::fill(&mut secret)
                .map_err(|e| Error::Db(format!("no random bytes for the secret {name}: {e}")))?;
            table.insert(name, secret.as_slice())?;
            Ok(secret)
        })
    }

    /// Every JSON value of a table keyed by text, in key order.
    pub(crate) fn all_values<T: DeserializeOwned>(
        &self,
        table: redb::TableDefinition<'static, &'static str, &'static [u8]>,
        what: &str,
    ) -> Result<Vec<T>, Error> {
        use redb::ReadableTable;
        self.read(|txn| {
            let table = txn.open_table(table)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (_, v) = row?;
                out.push(decode(what, v.value())?);
            }
            Ok(out)
        })
    }
}

/// Decodes the JSON value a table lookup found, if any.
pub(crate) fn decode_opt<T: DeserializeOwned>(
    what: &str,
    found: Option<redb::AccessGuard<'_, &'static [u8]>>,
) -> Result<Option<T>, Error> {
    found.map(|v| decode(what, v.value())).transpose()
}

/// Converts a time to unix milliseconds; times before 1970 become 0.
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Converts unix milliseconds to a time.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// The current time, truncated to what the disk keeps (milliseconds).
pub(crate) fn now() -> SystemTime {
    from_ms(to_ms(SystemTime::now()))
}

/// Serde for `SystemTime` as unix milliseconds, the on-disk form.
pub(crate) mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Serialises a time as unix milliseconds.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_ms(*t))
    }

    /// Deserialises unix milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        u64::deserialize(d).map(super::from_ms)
    }

    /// The default for a missing time: the epoch.
    pub fn epoch() -> SystemTime {
        UNIX_EPOCH
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// A store in a fresh temporary directory (kept alive by the returned guard).
    pub fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        (dir, store)
    }

    /// A store with the domain `example.org` and the account `alice@example.org`.
    pub fn store_with_alice() -> (tempfile::TempDir, Store, Account) {
        let (dir, store) = store();
        store.add_domain("example.org").unwrap();
        let alice = store.add_account("alice@example.org", "$hash").unwrap();
        (dir, store, alice)
    }

    /// An inactive Ed25519 key with dummy material.
    pub fn dkim_key(domain: &str, selector: &str) -> DkimKey {
        DkimKey {
            domain: domain.into(),
            selector: selector.into(),
            algorithm: "ed25519".into(),
            private_key_pem:
                "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
                    .into(),
            public_key_b64: "MCowBQYDK2VwAyEA".into(),
            active: false,
            created: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
    }

    #[test]
    fn open_creates_layout_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        let store = Store::open(&data).unwrap();
        assert_eq!(store.data_dir(), data);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let mode = fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(data.join(INDEX_FILE).is_file());
        assert!(data.join("blobs/tmp").is_dir());
        drop(store);
        let store = Store::open(&data).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn open_empties_tmp() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let stray = dir
            .path()
            .join("blobs/tmp/0123456789abcdef0123456789abcdef");
        fs::write(&stray, b"half a message").unwrap();
        drop(Store::open(dir.path()).unwrap());
        assert!(!stray.exists());
    }

    #[test]
    fn schema_too_new_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        {
            let db = Database::create(dir.path().join(INDEX_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(tables::META)
                .unwrap()
                .insert(SCHEMA_KEY, 7)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            Error::SchemaTooNew {
                found: 7,
                supported: SCHEMA_VERSION
            }
        ));
        assert_eq!(
            err.to_string(),
            format!(
                "store schema version 7 is newer than this postern supports ({SCHEMA_VERSION}): upgrade postern"
            )
        );
    }

    #[test]
    fn second_open_in_one_process_is_locked() {
        // redb 4.6 locks the whole file (ExclusiveWriter) with a lock that is per open file
        // description, so a second open fails even within one process.
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::Locked(ref p) if p == dir.path()),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the store in {} is in use by another process",
                dir.path().display()
            )
        );
        drop(first);
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn garbage_index_is_a_db_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(INDEX_FILE), b"not a database at all, sorry").unwrap();
        assert!(matches!(Store::open(dir.path()), Err(Error::Db(_))));
    }

    #[test]
    fn times_round_trip_in_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_ms(to_ms(t)), t);
        assert_eq!(to_ms(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[test]
    fn counters_count_from_first() {
        let (_dir, store) = test_util::store();
        let a = store.write(|txn| next_counter(txn, "c", 10)).unwrap();
        let b = store.write(|txn| next_counter(txn, "c", 10)).unwrap();
        assert_eq!((a, b), (10, 11));
    }
}
