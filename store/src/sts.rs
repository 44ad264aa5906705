//! Cached MTA-STS policies of remote domains (RFC 8461 §5.1): kept across restarts so
//! that an attacker who strips the `_mta-sts` record or blocks the policy host after
//! a restart cannot downgrade delivery to a domain we already know enforces TLS.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::tables::MTA_STS;
use crate::{Error, Store, decode_opt, encode};

/// One remote domain's policy as last fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StsPolicy {
    /// The policy domain, lower case.
    pub domain: String,
    /// The `id` of the `_mta-sts` TXT record the policy was fetched under.
    #[serde(default)]
    pub id: String,
    /// The policy file as served (RFC 8461 §3.2), parsed again on use.
    #[serde(default)]
    pub policy: String,
    /// When it was fetched.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub fetched: SystemTime,
    /// When it stops being valid (fetch time plus its `max_age`).
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub expires: SystemTime,
}

impl Store {
    /// The cached policy of `domain` (lower case), expired or not.
    pub fn sts_policy(&self, domain: &str) -> Result<Option<StsPolicy>, Error> {
        self.read(|txn| {
            let table = txn.open_table(MTA_STS)?;
            decode_opt("an MTA-STS policy", table.get(domain)?)
        })
    }

    /// Caches a policy, replacing the domain's previous one.
    pub fn put_sts_policy(&self, policy: &StsPolicy) -> Result<(), Error> {
        let value = encode("an MTA-STS policy", policy)?;
        self.write(|txn| {
            txn.open_table(MTA_STS)?
                .insert(policy.domain.as_str(), value.as_slice())?;
            Ok(())
        })
    }

    /// Forgets the cached policy of `domain`; true if there was one.
    pub fn remove_sts_policy(&self, domain: &str) -> Result<bool, Error> {
        self.write(|txn| Ok(txn.open_table(MTA_STS)?.remove(domain)?.is_some()))
    }

    /// Every cached policy, by domain.
    pub fn sts_policies(&self) -> Result<Vec<StsPolicy>, Error> {
        self.all_values(MTA_STS, "an MTA-STS policy")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn policies_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let policy = StsPolicy {
            domain: "remote.test".into(),
            id: "20261127".into(),
            policy: "version: STSv1\nmode: enforce\nmx: mx.remote.test\nmax_age: 86400\n".into(),
            fetched: now,
            expires: now + Duration::from_secs(86400),
        };
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.sts_policy("remote.test").unwrap(), None);
            store.put_sts_policy(&policy).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.sts_policy("remote.test").unwrap(),
            Some(policy.clone())
        );
        assert_eq!(store.sts_policies().unwrap(), vec![policy]);
        assert!(store.remove_sts_policy("remote.test").unwrap());
        assert!(!store.remove_sts_policy("remote.test").unwrap());
    }
}
