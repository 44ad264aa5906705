//! DKIM keys of local domains, stored opaquely: the `dkim` crate generates and parses them.

use std::time::SystemTime;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::tables::{DKIM_KEYS, DOMAINS};
use crate::{Change, Error, Store, decode, decode_opt, encode, normalize_domain};

/// A DKIM signing key (RFC 6376) of a local domain, published at
/// `<selector>._domainkey.<domain>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKey {
    /// The signing domain (`d=`), lower case.
    pub domain: String,
    /// The selector (`s=`, RFC 6376 §3.1), lower case.
    pub selector: String,
    /// `ed25519` (RFC 8463) or `rsa`.
    pub algorithm: String,
    /// The private key, PKCS#8 PEM.
    #[serde(default)]
    pub private_key_pem: String,
    /// The public key as published in the `p=` tag, base64.
    #[serde(default)]
    pub public_key_b64: String,
    /// Whether mail is signed with this key.
    #[serde(default)]
    pub active: bool,
    /// When the key was made.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub created: SystemTime,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// The algorithms accepted.
const ALGORITHMS: [&str; 2] = ["ed25519", "rsa"];

/// Validates a selector (RFC 6376 §3.1: dot-separated sub-domains) and lower-cases it.
fn normalize_selector(selector: &str, domain: &str) -> Result<String, Error> {
    let selector = normalize_domain(selector).map_err(|_| {
        Error::Invalid(format!(
            "the DKIM selector {selector:?} is not dot-separated letters, digits and hyphens (RFC 6376 §3.1)"
        ))
    })?;
    if selector.len() + "._domainkey.".len() + domain.len() > 255 {
        return Err(Error::Invalid(format!(
            "the DKIM selector {selector:?} makes the record name longer than 255 octets"
        )));
    }
    Ok(selector)
}

fn key_name(domain: &str, selector: &str) -> String {
    format!("the DKIM key {selector}._domainkey.{domain}")
}

impl Store {
    /// Stores a DKIM key for a local domain. [`Error::Exists`] for the same (domain, selector);
    /// [`Error::NoSuchDomain`] if the domain is not local.
    pub fn add_dkim_key(&self, key: &DkimKey) -> Result<(), Error> {
        let mut key = key.clone();
        key.domain = normalize_domain(&key.domain)?;
        key.selector = normalize_selector(&key.selector, &key.domain)?;
        key.algorithm = key.algorithm.to_ascii_lowercase();
        if !ALGORITHMS.contains(&key.algorithm.as_str()) {
            return Err(Error::Invalid(format!(
                "the DKIM algorithm {:?} is not one of {}",
                key.algorithm,
                ALGORITHMS.join(", ")
            )));
        }
        let value = encode("a DKIM key", &key)?;
        self.write(|txn| {
            if txn.open_table(DOMAINS)?.get(key.domain.as_str())?.is_none() {
                return Err(Error::NoSuchDomain(key.domain.clone()));
            }
            let mut keys = txn.open_table(DKIM_KEYS)?;
            let id = (key.domain.as_str(), key.selector.as_str());
            if keys.get(id)?.is_some() {
                return Err(Error::Exists(key_name(&key.domain, &key.selector)));
            }
            keys.insert(id, value.as_slice())?;
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(())
    }

    /// A domain's DKIM keys, sorted by selector.
    pub fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKey>, Error> {
        let domain = normalize_domain(domain)?;
        self.read(|txn| {
            let keys = txn.open_table(DKIM_KEYS)?;
            let mut out = Vec::new();
            for entry in keys.range((domain.as_str(), "")..)? {
                let (k, v) = entry?;
                if k.value().0 != domain {
                    break;
                }
                out.push(decode("a DKIM key", v.value())?);
            }
            Ok(out)
        })
    }

    /// Turns signing with a key on or off. [`Error::NotFound`] if there is no such key.
    pub fn set_dkim_active(&self, domain: &str, selector: &str, active: bool) -> Result<(), Error> {
        let domain = normalize_domain(domain)?;
        let selector = normalize_selector(selector, &domain)?;
        self.write(|txn| {
            let mut keys = txn.open_table(DKIM_KEYS)?;
            let id = (domain.as_str(), selector.as_str());
            let mut key: DkimKey = decode_opt("a DKIM key", keys.get(id)?)?
                .ok_or_else(|| Error::NotFound(key_name(&domain, &selector)))?;
            key.active = active;
            keys.insert(id, encode("a DKIM key", &key)?.as_slice())?;
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(())
    }

    /// Makes a key the one that signs for its algorithm, in one commit: the key of
    /// the same algorithm it replaces becomes inactive in the same transaction, so no
    /// message is ever signed with neither. Returns the selectors it replaced.
    /// [`Error::NotFound`] if there is no such key.
    pub fn activate_dkim_key(&self, domain: &str, selector: &str) -> Result<Vec<String>, Error> {
        let domain = normalize_domain(domain)?;
        let selector = normalize_selector(selector, &domain)?;
        let replaced = self.write(|txn| {
            let mut keys = txn.open_table(DKIM_KEYS)?;
            let id = (domain.as_str(), selector.as_str());
            let mut key: DkimKey = decode_opt("a DKIM key", keys.get(id)?)?
                .ok_or_else(|| Error::NotFound(key_name(&domain, &selector)))?;
            let mut others: Vec<DkimKey> = Vec::new();
            for row in keys.range((domain.as_str(), "")..)? {
                let (k, v) = row?;
                if k.value().0 != domain {
                    break;
                }
                let other: DkimKey = decode("a DKIM key", v.value())?;
                if other.selector != selector && other.active && other.algorithm == key.algorithm {
                    others.push(other);
                }
            }
            let mut replaced = Vec::new();
            for mut other in others {
                other.active = false;
                let other_id = (domain.as_str(), other.selector.as_str());
                keys.insert(other_id, encode("a DKIM key", &other)?.as_slice())?;
                replaced.push(other.selector);
            }
            key.active = true;
            keys.insert(id, encode("a DKIM key", &key)?.as_slice())?;
            Ok(replaced)
        })?;
        self.notify(Change::Directory);
        Ok(replaced)
    }

    /// Deletes a key. [`Error::NotFound`] if there is no such key.
    pub fn delete_dkim_key(&self, domain: &str, selector: &str) -> Result<(), Error> {
        let domain = normalize_domain(domain)?;
        let selector = normalize_selector(selector, &domain)?;
        self.write(|txn| {
            let mut keys = txn.open_table(DKIM_KEYS)?;
            if keys.remove((domain.as_str(), selector.as_str()))?.is_none() {
                return Err(Error::NotFound(key_name(&domain, &selector)));
            }
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{self, dkim_key};

    #[test]
    fn activation_swaps_the_key_of_one_algorithm_in_one_commit() {
        let (_dir, store) = test_util::store();
        store.add_domain("example.org").unwrap();
        store.add_domain("example.org.uk").unwrap();
        for s in ["s1", "s2"] {
            store.add_dkim_key(&dkim_key("example.org", s)).unwrap();
        }
        let mut rsa = dkim_key("example.org", "r1");
        rsa.algorithm = "rsa".into();
        store.add_dkim_key(&rsa).unwrap();
        store
            .add_dkim_key(&dkim_key("example.org.uk", "s1"))
            .unwrap();
        assert!(
            store
                .activate_dkim_key("example.org", "r1")
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .activate_dkim_key("example.org.uk", "s1")
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .activate_dkim_key("example.org", "s1")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.activate_dkim_key("example.org", "s2").unwrap(),
            ["s1"]
        );
        let active: Vec<String> = store
            .dkim_keys("example.org")
            .unwrap()
            .into_iter()
            .filter(|k| k.active)
            .map(|k| k.selector)
            .collect();
        assert_eq!(active, ["r1", "s2"]);
        // Another domain whose name extends this one is untouched.
        assert!(store.dkim_keys("example.org.uk").unwrap()[0].active);
        assert!(matches!(
            store.activate_dkim_key("example.org", "s9"),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn dkim_key_crud() {
        let (_dir, store) = test_util::store();
        assert!(matches!(
            store.add_dkim_key(&dkim_key("example.org", "s1")),
            Err(Error::NoSuchDomain(_))
        ));
        store.add_domain("example.org").unwrap();
        store.add_domain("example.org.uk").unwrap();
        store.add_dkim_key(&dkim_key("Example.org", "S2")).unwrap();
        store.add_dkim_key(&dkim_key("example.org", "s1")).unwrap();
        store
            .add_dkim_key(&dkim_key("example.org.uk", "s1"))
            .unwrap();
        let err = store
            .add_dkim_key(&dkim_key("example.org", "s1"))
            .unwrap_err();
        assert!(matches!(err, Error::Exists(_)));
        assert_eq!(
            err.to_string(),
            "the DKIM key s1._domainkey.example.org already exists"
        );

        let keys = store.dkim_keys("example.org").unwrap();
        let selectors: Vec<_> = keys.iter().map(|k| k.selector.as_str()).collect();
        assert_eq!(selectors, ["s1", "s2"]);
        assert_eq!(keys[0], dkim_key("example.org", "s1"));

        store.set_dkim_active("example.org", "s1", true).unwrap();
        assert!(store.dkim_keys("example.org").unwrap()[0].active);
        assert!(matches!(
            store.set_dkim_active("example.org", "s9", true),
            Err(Error::NotFound(_))
        ));
        store.delete_dkim_key("example.org", "s1").unwrap();
        assert!(matches!(
            store.delete_dkim_key("example.org", "s1"),
            Err(Error::NotFound(_))
        ));
        assert_eq!(store.dkim_keys("example.org").unwrap().len(), 1);
        assert_eq!(store.dkim_keys("example.org.uk").unwrap().len(), 1);
    }

    #[test]
    fn dkim_key_validation() {
        let (_dir, store) = test_util::store();
        store.add_domain("example.org").unwrap();
        let mut bad = dkim_key("example.org", "s 1");
        assert!(matches!(store.add_dkim_key(&bad), Err(Error::Invalid(_))));
        bad.selector = "s1".into();
        bad.algorithm = "dsa".into();
        assert!(matches!(store.add_dkim_key(&bad), Err(Error::Invalid(_))));
    }
}
