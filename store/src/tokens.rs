//! The admin API's login tokens, kept only as SHA-256 digests: a copy of the store
//! does not log anybody in. They outlive a restart and end at their expiry, at logout,
//! or when their account's password, admin right or existence changes.

use std::time::SystemTime;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::tables::ADMIN_TOKENS;
use crate::{Error, Store, decode, decode_opt, encode};

/// What a token grants.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminToken {
    /// The administrator's address, lower case.
    pub email: String,
    /// When it stops being valid.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub expires: SystemTime,
    /// A digest of the account's password hash when the token was made: a changed
    /// password ends the token whoever changed it.
    #[serde(default)]
    pub credential: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("email", &self.email)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Records a token by its digest (hex SHA-256 of the token).
    pub fn put_admin_token(&self, digest: &str, token: &AdminToken) -> Result<(), Error> {
        let value = encode("an admin token", token)?;
        self.write(|txn| {
            txn.open_table(ADMIN_TOKENS)?
                .insert(digest, value.as_slice())?;
            Ok(())
        })
    }

    /// The token with this digest, expired or not.
    pub fn admin_token(&self, digest: &str) -> Result<Option<AdminToken>, Error> {
        self.read(|txn| {
            let table = txn.open_table(ADMIN_TOKENS)?;
            decode_opt("an admin token", table.get(digest)?)
        })
    }

    /// Ends the token with this digest; true if there was one.
    pub fn remove_admin_token(&self, digest: &str) -> Result<bool, Error> {
        self.write(|txn| Ok(txn.open_table(ADMIN_TOKENS)?.remove(digest)?.is_some()))
    }

    /// Ends every token of `email` (None: of nobody in particular) and every token
    /// expired at `now`; returns how many went.
    pub fn remove_admin_tokens(
        &self,
        email: Option<&str>,
        now: SystemTime,
    ) -> Result<usize, Error> {
        let email = email.map(str::to_ascii_lowercase);
        self.write(|txn| {
            let mut table = txn.open_table(ADMIN_TOKENS)?;
            let mut gone = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                let token: AdminToken = decode("an admin token", v.value())?;
                if email.as_ref() == Some(&token.email) || token.expires <= now {
                    gone.push(k.value().to_string());
                }
            }
            for k in &gone {
                table.remove(k.as_str())?;
            }
            Ok(gone.len())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_survive_reopening_and_end_by_account_or_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let token = |email: &str, left: u64| AdminToken {
            email: email.into(),
            expires: now + Duration::from_secs(left),
            credential: "c".into(),
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_admin_token("a1", &token("a@x.test", 60)).unwrap();
            store.put_admin_token("a2", &token("a@x.test", 60)).unwrap();
            store.put_admin_token("b1", &token("b@x.test", 60)).unwrap();
            store.put_admin_token("b2", &token("b@x.test", 0)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.admin_token("a1").unwrap().unwrap().email, "a@x.test");
        assert!(!format!("{:?}", store.admin_token("a1").unwrap()).contains("credential"));
        assert_eq!(store.remove_admin_tokens(None, now).unwrap(), 1);
        assert_eq!(store.remove_admin_tokens(Some("A@x.test"), now).unwrap(), 2);
        assert_eq!(store.admin_token("a2").unwrap(), None);
        assert!(store.admin_token("b1").unwrap().is_some());
        assert!(store.remove_admin_token("b1").unwrap());
        assert!(!store.remove_admin_token("b1").unwrap());
    }
}
