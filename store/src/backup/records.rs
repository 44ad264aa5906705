//! The plaintext inside the chunks: a stream of records.
//!
//! ```text
//! 'H' len u32 · JSON Manifest          first: what the backup holds, and the tables' types
//! 'T' len u8  · table name             the rows that follow belong to this table
//! 'R' len u32 · key fields · value fields
//! 'B' id [32 hex] · len u64 · bytes    one message body
//! 'F' len u16 · path · mode u32 · len u64 · bytes
//!                                      a file of the data directory (configuration, TLS)
//! 'E' len u32 · JSON Counts            last: how many of each, checked by the reader
//! ```
//!
//! Fields: u8, u32 and u64 little-endian; strings and byte strings as a u32 length
//! then the bytes; tuples as their fields in order. Every row's value is therefore
//! the same JSON document (or number, or text) the index holds, so the format does
//! not depend on redb's own encoding.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::BackupError;
use crate::{Error, tables};

/// Record kinds.
pub(crate) const HEADER: u8 = b'H';
pub(crate) const TABLE: u8 = b'T';
pub(crate) const ROW: u8 = b'R';
pub(crate) const BODY: u8 = b'B';
pub(crate) const FILE: u8 = b'F';
pub(crate) const END: u8 = b'E';

/// The largest row a reader accepts: far above any row the store writes (a header
/// block is at most 64 KiB, a Sieve script far less), and bounded so a forged length
/// cannot make it allocate without limit.
pub(crate) const MAX_ROW: u32 = 16 << 20;
/// The largest manifest or counts record a reader accepts.
pub(crate) const MAX_JSON: u32 = 1 << 20;
/// The longest file path a reader accepts.
pub(crate) const MAX_PATH: u16 = 4096;

/// The first record: what wrote the backup, when, and the tables it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The archive format (also in the framing header).
    pub format: u16,
    /// The store schema the rows follow.
    pub schema_version: u64,
    /// When the snapshot was taken, Unix milliseconds.
    pub created_ms: u64,
    /// The postern version that wrote it.
    pub postern: String,
    /// Each table: its name and its key and value types.
    pub tables: Vec<TableInfo>,
}

/// A table's name and types, as redb names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableInfo {
    pub name: String,
    pub key: String,
    pub value: String,
}

/// The last record: how many of each thing the writer put in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Message and queue bodies.
    pub bodies: u64,
    /// Their bytes.
    pub body_bytes: u64,
    /// Files of the data directory.
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
}

/// A key or value type of an index table, as it is written in a backup.
pub(crate) trait Field: redb::Value + Sync + 'static {
    /// Appends `value`'s backup form to `out`.
    fn put(value: &Self::SelfType<'_>, out: &mut Vec<u8>);
    /// Takes a value from the front of `input`; `None` if it is malformed.
    fn take<'a>(input: &mut &'a [u8]) -> Option<Self::SelfType<'a>>;
}

fn split<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn take_len(input: &mut &[u8]) -> Option<usize> {
    let b = split(input, 4)?;
    usize::try_from(u32::from_le_bytes(b.try_into().ok()?)).ok()
}

fn put_len(len: usize, out: &mut Vec<u8>) {
    // Rows are bounded far below 4 GiB by redb and by MAX_ROW.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
}

impl Field for u8 {
    fn put(value: &u8, out: &mut Vec<u8>) {
        out.push(*value);
    }
    fn take(input: &mut &[u8]) -> Option<u8> {
        split(input, 1).map(|b| b[0])
    }
}

impl Field for u32 {
    fn put(value: &u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_le_bytes());
    }
    fn take(input: &mut &[u8]) -> Option<u32> {
        Some(u32::from_le_bytes(split(input, 4)?.try_into().ok()?))
    }
}

impl Field for u64 {
    fn put(value: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_le_bytes());
    }
    fn take(input: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(split(input, 8)?.try_into().ok()?))
    }
}

impl Field for &'static str {
    fn put(value: &&str, out: &mut Vec<u8>) {
        put_len(value.len(), out);
        out.extend_from_slice(value.as_bytes());
    }
    fn take<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
        let len = take_len(input)?;
        std::str::from_utf8(split(input, len)?).ok()
    }
}

impl Field for &'static [u8] {
    fn put(value: &&[u8], out: &mut Vec<u8>) {
        put_len(value.len(), out);
        out.extend_from_slice(value);
    }
    fn take<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = take_len(input)?;
        split(input, len)
    }
}

impl<A: Field, B: Field> Field for (A, B) {
    fn put(value: &Self::SelfType<'_>, out: &mut Vec<u8>) {
        A::put(&value.0, out);
        B::put(&value.1, out);
    }
    fn take<'a>(input: &mut &'a [u8]) -> Option<Self::SelfType<'a>> {
        Some((A::take(input)?, B::take(input)?))
    }
}

impl<A: Field, B: Field, C: Field> Field for (A, B, C) {
    fn put(value: &Self::SelfType<'_>, out: &mut Vec<u8>) {
        A::put(&value.0, out);
        B::put(&value.1, out);
        C::put(&value.2, out);
    }
    fn take<'a>(input: &mut &'a [u8]) -> Option<Self::SelfType<'a>> {
        Some((A::take(input)?, B::take(input)?, C::take(input)?))
    }
}

/// One index table, whatever its types.
pub(crate) trait AnyTable: Sync {
    /// Its name.
    fn name(&self) -> &str;
    /// Its name and types.
    fn info(&self) -> TableInfo;
    /// Writes each row (key then value fields) through `row`; returns how many.
    fn dump(
        &self,
        txn: &ReadTransaction,
        row: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<u64, Error>;
    /// Checks that `row` decodes as this table's key and value, nothing left over.
    fn check(&self, row: &[u8]) -> Result<(), BackupError>;
    /// Inserts rows into the table in `txn`.
    fn insert(&self, txn: &WriteTransaction, rows: &[Vec<u8>]) -> Result<(), Error>;
}

struct Typed<K: Field + redb::Key, V: Field>(TableDefinition<'static, K, V>);

fn decode_row<'a, K: Field, V: Field>(
    name: &str,
    mut row: &'a [u8],
) -> Result<(K::SelfType<'a>, V::SelfType<'a>), BackupError> {
    let key = K::take(&mut row);
    let value = V::take(&mut row);
    match (key, value) {
        (Some(k), Some(v)) if row.is_empty() => Ok((k, v)),
        _ => Err(BackupError::Damaged(format!(
            "a row of the table {name} is malformed"
        ))),
    }
}

impl<K: Field + redb::Key, V: Field> AnyTable for Typed<K, V> {
    fn name(&self) -> &str {
        use redb::TableHandle;
        self.0.name()
    }

    fn info(&self) -> TableInfo {
        use redb::TableHandle;
        TableInfo {
            name: self.0.name().to_string(),
            key: K::type_name().name().to_string(),
            value: V::type_name().name().to_string(),
        }
    }

    fn dump(
        &self,
        txn: &ReadTransaction,
        row: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let table = txn.open_table(self.0)?;
        let mut buf = Vec::new();
        let mut n = 0;
        for entry in table.iter()? {
            let (k, v) = entry?;
            buf.clear();
            K::put(&k.value(), &mut buf);
            V::put(&v.value(), &mut buf);
            row(&buf)?;
            n += 1;
        }
        Ok(n)
    }

    fn check(&self, row: &[u8]) -> Result<(), BackupError> {
        use redb::TableHandle;
        decode_row::<K, V>(self.0.name(), row).map(|_| ())
    }

    fn insert(&self, txn: &WriteTransaction, rows: &[Vec<u8>]) -> Result<(), Error> {
        use redb::TableHandle;
        let mut table = txn.open_table(self.0)?;
        for row in rows {
            let (k, v) = decode_row::<K, V>(self.0.name(), row)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            table.insert(k, v)?;
        }
        Ok(())
    }
}

/// Every index table, in the order a backup writes them. A table missing here makes
/// every backup fail (see `Store::backup`), so it cannot be left out silently.
pub(crate) static TABLES: &[&dyn AnyTable] = &[
    &Typed(tables::META),
    &Typed(tables::DOMAINS),
    &Typed(tables::ACCOUNTS),
    &Typed(tables::ACCOUNT_EMAILS),
    &Typed(tables::ALIASES),
    &Typed(tables::MAILBOXES),
    &Typed(tables::MAILBOX_NAMES),
    &Typed(tables::MESSAGES),
    &Typed(tables::EXPUNGED),
    &Typed(tables::AUDIT),
    &Typed(tables::DKIM_KEYS),
    &Typed(tables::QUEUE),
    &Typed(tables::CHANGES),
    &Typed(tables::HEADERS),
    &Typed(tables::MTA_STS),
    &Typed(tables::SIEVE_SCRIPTS),
    &Typed(tables::SIEVE_ACTIVE),
    &Typed(tables::SIEVE_SEEN),
    &Typed(tables::SUBSCRIPTIONS),
    &Typed(tables::APPS),
    &Typed(tables::FW_BLOCKS),
    &Typed(tables::FW_LISTS),
    &Typed(tables::FW_BANS),
    &Typed(tables::SECRETS),
    &Typed(tables::ADMIN_TOKENS),
];

/// The table called `name`.
pub(crate) fn table(name: &str) -> Option<&'static dyn AnyTable> {
    TABLES.iter().copied().find(|t| t.name() == name)
}

/// The blob id and size a MESSAGES or QUEUE row's JSON value names; `None` for the
/// rows of other tables.
pub(crate) fn referenced_blob(
    table: &str,
    row: &[u8],
) -> Result<Option<(String, u64)>, BackupError> {
    #[derive(Deserialize)]
    struct BlobRef {
        blob: String,
        #[serde(default)]
        size: u64,
    }
    let damaged = || BackupError::Damaged(format!("a row of the table {table} is malformed"));
    let mut input = row;
    let value: &[u8] = match table {
        "messages" => {
            <(u64, u32) as Field>::take(&mut input).ok_or_else(damaged)?;
            <&[u8] as Field>::take(&mut input).ok_or_else(damaged)?
        }
        "queue" => {
            <u64 as Field>::take(&mut input).ok_or_else(damaged)?;
            <&[u8] as Field>::take(&mut input).ok_or_else(damaged)?
        }
        _ => return Ok(None),
    };
    let parsed: BlobRef = serde_json::from_slice(value).map_err(|_| damaged())?;
    Ok(Some((parsed.blob, parsed.size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_a_new_store_is_registered_once() {
        use redb::{ReadableDatabase, TableHandle};
        let (_dir, store) = crate::test_util::store();
        let txn = store.db.begin_read().unwrap();
        let mut present: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        present.sort();
        let mut registered: Vec<String> = TABLES.iter().map(|t| t.name().to_string()).collect();
        registered.sort();
        assert_eq!(present, registered);
    }

    #[test]
    fn fields_round_trip_and_refuse_garbage() {
        let mut out = Vec::new();
        <(u64, &str) as Field>::put(&(7, "INBOX/Ünïcode \"quoted\""), &mut out);
        let mut input = &out[..];
        assert_eq!(
            <(u64, &str) as Field>::take(&mut input),
            Some((7, "INBOX/Ünïcode \"quoted\""))
        );
        assert!(input.is_empty());
        for cut in 0..out.len() {
            let mut short = &out[..cut];
            assert_eq!(<(u64, &str) as Field>::take(&mut short), None, "{cut}");
        }
        let mut bad_utf8 = Vec::new();
        <&[u8] as Field>::put(&&[0xff, 0xfe][..], &mut bad_utf8);
        assert_eq!(<&str as Field>::take(&mut &bad_utf8[..]), None);
        let mut huge = &u32::MAX.to_le_bytes()[..];
        assert_eq!(<&[u8] as Field>::take(&mut huge), None);
    }
}
