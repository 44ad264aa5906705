//! Sieve scripts per account (RFC 5804 §1.1: several named scripts, at most one
//! active), and the ids a script has asked to remember: vacation replies already sent
//! (RFC 5230 §4.2) and the `duplicate` test (RFC 7352).
//!
//! Script text is stored as uploaded; compiling and checking it belongs to the `sieve`
//! crate. Limits on size and count are the caller's to pass in.

use std::time::SystemTime;

use redb::{ReadableTable, WriteTransaction};

use crate::tables::{SIEVE_ACTIVE, SIEVE_SCRIPTS, SIEVE_SEEN};
use crate::{AccountId, Error, Store, to_ms};

/// One stored script, as LISTSCRIPTS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveScript {
    /// The script's name (RFC 5804 §1.6: any UTF-8 without controls).
    pub name: String,
    /// Whether it is the account's active script.
    pub active: bool,
    /// The script's size in bytes.
    pub size: usize,
}

impl Store {
    /// The account's scripts, by name.
    pub fn sieve_scripts(&self, account: AccountId) -> Result<Vec<SieveScript>, Error> {
        self.read(|txn| {
            let active = txn
                .open_table(SIEVE_ACTIVE)?
                .get(account)?
                .map(|v| v.value().to_string());
            let table = txn.open_table(SIEVE_SCRIPTS)?;
            let mut out = Vec::new();
            for row in table.range((account, "")..)? {
                let (key, value) = row?;
                let (owner, name) = key.value();
                if owner != account {
                    break;
                }
                out.push(SieveScript {
                    name: name.to_string(),
                    active: active.as_deref() == Some(name),
                    size: value.value().len(),
                });
            }
            Ok(out)
        })
    }

    /// The text of one script.
    pub fn sieve_script(&self, account: AccountId, name: &str) -> Result<Option<String>, Error> {
        self.read(|txn| {
            let table = txn.open_table(SIEVE_SCRIPTS)?;
            Ok(table
                .get((account, name))?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
        })
    }

    /// The active script's name and text, if the account has one.
    pub fn active_sieve_script(
        &self,
        account: AccountId,
    ) -> Result<Option<(String, String)>, Error> {
        self.read(|txn| {
            let Some(name) = txn
                .open_table(SIEVE_ACTIVE)?
                .get(account)?
                .map(|v| v.value().to_string())
            else {
                return Ok(None);
            };
            let table = txn.open_table(SIEVE_SCRIPTS)?;
            Ok(table.get((account, name.as_str()))?.map(|v| {
                (
                    name.clone(),
                    String::from_utf8_lossy(v.value()).into_owned(),
                )
            }))
        })
    }

    /// Stores a script under `name`, replacing one of that name (RFC 5804 §2.6: an
    /// active script stays active). A new name is refused with [`Error::Exhausted`]
    /// when the account already has `max_scripts`.
    pub fn put_sieve_script(
        &self,
        account: AccountId,
        name: &str,
        text: &str,
        max_scripts: usize,
    ) -> Result<(), Error> {
        self.write(|txn| {
            let mut table = txn.open_table(SIEVE_SCRIPTS)?;
            if table.get((account, name))?.is_none() {
                let count = count_scripts(&table, account)?;
                if count >= max_scripts {
                    return Err(Error::Exhausted(format!(
                        "the limit of {max_scripts} scripts"
                    )));
                }
            }
            table.insert((account, name), text.as_bytes())?;
            Ok(())
        })
    }

    /// Deletes a script. [`Error::NotFound`] if there is none of that name,
    /// [`Error::InUse`] if it is the active one (RFC 5804 §2.10).
    pub fn delete_sieve_script(&self, account: AccountId, name: &str) -> Result<(), Error> {
        self.write(|txn| {
            let active = txn
                .open_table(SIEVE_ACTIVE)?
                .get(account)?
                .map(|v| v.value() == name);
            if active == Some(true) {
                return Err(Error::InUse(format!("the script {name:?} is active")));
            }
            match txn.open_table(SIEVE_SCRIPTS)?.remove((account, name))? {
                Some(_) => Ok(()),
                None => Err(Error::NotFound(format!("the script {name:?}"))),
            }
        })
    }

    /// Renames a script, keeping it active if it was (RFC 5804 §2.11.1).
    /// [`Error::NotFound`] for an unknown `old`, [`Error::Exists`] for a taken `new`.
    pub fn rename_sieve_script(
        &self,
        account: AccountId,
        old: &str,
        new: &str,
    ) -> Result<(), Error> {
        self.write(|txn| {
            let mut table = txn.open_table(SIEVE_SCRIPTS)?;
            if table.get((account, new))?.is_some() {
                return Err(Error::Exists(format!("the script {new:?}")));
            }
            let text = match table.remove((account, old))? {
                Some(v) => v.value().to_vec(),
                None => return Err(Error::NotFound(format!("the script {old:?}"))),
            };
            table.insert((account, new), text.as_slice())?;
            let mut active = txn.open_table(SIEVE_ACTIVE)?;
            let was_active = active.get(account)?.is_some_and(|v| v.value() == old);
            if was_active {
                active.insert(account, new)?;
            }
            Ok(())
        })
    }

    /// Makes `name` the active script, or deactivates every script with `None`
    /// (RFC 5804 §2.8: SETACTIVE ""). [`Error::NotFound`] for an unknown name.
    pub fn set_active_sieve_script(
        &self,
        account: AccountId,
        name: Option<&str>,
    ) -> Result<(), Error> {
        self.write(|txn| {
            let mut active = txn.open_table(SIEVE_ACTIVE)?;
            match name {
                None => {
                    active.remove(account)?;
                }
                Some(name) => {
                    if txn
                        .open_table(SIEVE_SCRIPTS)?
                        .get((account, name))?
                        .is_none()
                    {
                        return Err(Error::NotFound(format!("the script {name:?}")));
                    }
                    active.insert(account, name)?;
                }
            }
            Ok(())
        })
    }

    /// Whether the account's scripts have recorded `id` and it has not expired yet.
    pub fn sieve_seen(&self, account: AccountId, id: &str, now: SystemTime) -> Result<bool, Error> {
        self.read(|txn| {
            let table = txn.open_table(SIEVE_SEEN)?;
            Ok(table
                .get((account, id))?
                .is_some_and(|expires| expires.value() > to_ms(now)))
        })
    }

    /// Records `id` for the account until `expires`, dropping the account's expired
    /// ids on the way.
    pub fn remember_sieve_ids(
        &self,
        account: AccountId,
        ids: &[(String, SystemTime)],
        now: SystemTime,
    ) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(SIEVE_SEEN)?;
            let now = to_ms(now);
            let mut expired = Vec::new();
            for row in table.range((account, "")..)? {
                let (key, value) = row?;
                let (owner, id) = key.value();
                if owner != account {
                    break;
                }
                if value.value() <= now {
                    expired.push(id.to_string());
                }
            }
            for id in &expired {
                table.remove((account, id.as_str()))?;
            }
            for (id, expires) in ids {
                table.insert((account, id.as_str()), to_ms(*expires))?;
            }
            Ok(())
        })
    }
}

fn count_scripts(
    table: &redb::Table<'_, (u64, &'static str), &'static [u8]>,
    account: AccountId,
) -> Result<usize, Error> {
    let mut count = 0;
    for row in table.range((account, "")..)? {
        let (key, _) = row?;
        if key.value().0 != account {
            break;
        }
        count += 1;
    }
    Ok(count)
}

/// Removes every script, the active mark and the remembered ids of an account (the
/// account is being deleted).
pub(crate) fn remove_account(txn: &WriteTransaction, account: AccountId) -> Result<(), Error> {
    txn.open_table(SIEVE_ACTIVE)?.remove(account)?;
    remove_rows(&mut txn.open_table(SIEVE_SCRIPTS)?, account)?;
    remove_rows(&mut txn.open_table(SIEVE_SEEN)?, account)?;
    Ok(())
}

/// Removes every row keyed `(account, _)` from `table`.
fn remove_rows<V: redb::Value + 'static>(
    table: &mut redb::Table<'_, (u64, &'static str), V>,
    account: AccountId,
) -> Result<(), Error> {
    let names: Vec<String> = table
        .range((account, "")..)?
        .map_while(|row| match row {
            Ok((key, _)) if key.value().0 == account => Some(Ok(key.value().1.to_string())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    for name in &names {
        table.remove((account, name.as_str()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_util::store_with_alice;
    use redb::ReadableTableMetadata;
    use std::time::Duration;

    #[test]
    fn scripts_are_listed_activated_renamed_and_deleted() {
        let (_dir, store, alice) = store_with_alice();
        let a = alice.id;
        assert!(store.sieve_scripts(a).unwrap().is_empty());
        assert_eq!(store.active_sieve_script(a).unwrap(), None);
        store.put_sieve_script(a, "one", "keep;", 2).unwrap();
        store.put_sieve_script(a, "two", "discard;", 2).unwrap();
        // A third name is over the limit; replacing an existing one is not.
        assert!(matches!(
            store.put_sieve_script(a, "three", "keep;", 2),
            Err(Error::Exhausted(_))
        ));
        store.put_sieve_script(a, "two", "stop;", 2).unwrap();
        assert_eq!(
            store.sieve_script(a, "two").unwrap().as_deref(),
            Some("stop;")
        );

        assert!(matches!(
            store.set_active_sieve_script(a, Some("nope")),
            Err(Error::NotFound(_))
        ));
        store.set_active_sieve_script(a, Some("two")).unwrap();
        assert_eq!(
            store.active_sieve_script(a).unwrap(),
            Some(("two".into(), "stop;".into()))
        );
        assert!(matches!(
            store.delete_sieve_script(a, "two"),
            Err(Error::InUse(_))
        ));
        assert!(matches!(
            store.rename_sieve_script(a, "two", "one"),
            Err(Error::Exists(_))
        ));
        store.rename_sieve_script(a, "two", "zwei").unwrap();
        let list = store.sieve_scripts(a).unwrap();
        assert_eq!(
            list,
            vec![
                SieveScript {
                    name: "one".into(),
                    active: false,
                    size: 5
                },
                SieveScript {
                    name: "zwei".into(),
                    active: true,
                    size: 5
                },
            ]
        );
        store.set_active_sieve_script(a, None).unwrap();
        store.delete_sieve_script(a, "zwei").unwrap();
        assert!(matches!(
            store.delete_sieve_script(a, "zwei"),
            Err(Error::NotFound(_))
        ));
        assert_eq!(store.sieve_scripts(a).unwrap().len(), 1);

        // Another account's scripts are apart, and go with the account.
        let bob = store.add_account("bob@example.org", "$hash").unwrap();
        assert!(store.sieve_scripts(bob.id).unwrap().is_empty());
        store.put_sieve_script(bob.id, "b", "keep;", 2).unwrap();
        store.set_active_sieve_script(bob.id, Some("b")).unwrap();
        store
            .remember_sieve_ids(
                bob.id,
                &[("x".into(), SystemTime::now() + Duration::from_secs(60))],
                SystemTime::now(),
            )
            .unwrap();
        store.delete_account("bob@example.org").unwrap();
        assert!(store.sieve_scripts(bob.id).unwrap().is_empty());
        assert!(!store.sieve_seen(bob.id, "x", SystemTime::now()).unwrap());
        assert_eq!(store.sieve_scripts(a).unwrap().len(), 1);
    }

    #[test]
    fn remembered_ids_expire() {
        let (_dir, store, alice) = store_with_alice();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = alice.id;
        assert!(!store.sieve_seen(a, "v1", t0).unwrap());
        store
            .remember_sieve_ids(a, &[("v1".into(), t0 + Duration::from_secs(86400))], t0)
            .unwrap();
        assert!(
            store
                .sieve_seen(a, "v1", t0 + Duration::from_secs(86399))
                .unwrap()
        );
        assert!(
            !store
                .sieve_seen(a, "v1", t0 + Duration::from_secs(86400))
                .unwrap()
        );
        // Expired ids are dropped by the next write.
        let later = t0 + Duration::from_secs(90000);
        store
            .remember_sieve_ids(a, &[("v2".into(), later + Duration::from_secs(10))], later)
            .unwrap();
        let count = store
            .read(|txn| Ok(txn.open_table(SIEVE_SEEN)?.len()?))
            .unwrap();
        assert_eq!(count, 1);
    }
}
