//! The firewall's state: the admin's blocks, named block lists and the automatic bans.
//! Kept in the store so that `serve` (and `firewall apply`) re-apply them at every
//! start; the rules themselves are rendered from this and the configuration.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::tables::{FW_BANS, FW_BLOCKS, FW_LISTS};
use crate::{Error, Store, decode, encode, now, to_ms};

/// A blocked network (a single address is a /32 or /128).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The network.
    pub net: IpNet,
    /// Who blocked it.
    #[serde(default)]
    pub by: String,
    /// When.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub added: SystemTime,
}

/// A named block list, loaded from a file of CIDRs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    /// Its name (lower-case letters, digits, `-`; at most 16).
    pub name: String,
    /// Its networks.
    pub nets: Vec<IpNet>,
    /// Where it was loaded from.
    #[serde(default)]
    pub source: String,
    /// When.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub loaded: SystemTime,
}

/// An automatic ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The banned address.
    pub ip: IpAddr,
    /// When the ban ends.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub until: SystemTime,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// Checks a block list name: 1 to 16 of `a-z`, `0-9`, `-` (it becomes part of an
/// ipset name, which has at most 31 characters).
pub fn check_list_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 16
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "the block list name {name:?} must be 1 to 16 lower-case letters, digits and hyphens"
        )))
    }
}

impl Store {
    /// Blocks `net` (its host bits cleared). Returns false if it was already blocked.
    pub fn add_block(&self, net: IpNet, by: &str) -> Result<bool, Error> {
        let net = net.trunc();
        let key = net.to_string();
        self.write(|txn| {
            let mut table = txn.open_table(FW_BLOCKS)?;
            if table.get(key.as_str())?.is_some() {
                return Ok(false);
            }
            let block = Block {
                net,
                by: by.to_string(),
                added: now(),
            };
            table.insert(key.as_str(), encode("a block", &block)?.as_slice())?;
            Ok(true)
        })
    }

    /// Removes the block of `net`; whether there was one.
    pub fn remove_block(&self, net: IpNet) -> Result<bool, Error> {
        let key = net.trunc().to_string();
        self.write(|txn| {
            let mut table = txn.open_table(FW_BLOCKS)?;
            Ok(table.remove(key.as_str())?.is_some())
        })
    }

    /// Every block.
    pub fn blocks(&self) -> Result<Vec<Block>, Error> {
        self.all_values(FW_BLOCKS, "a block")
    }

    /// Creates or replaces the block list `name`. Returns the previous one, if any.
    pub fn set_block_list(
        &self,
        name: &str,
        nets: Vec<IpNet>,
        source: &str,
    ) -> Result<Option<BlockList>, Error> {
        check_list_name(name)?;
        let list = BlockList {
            name: name.to_string(),
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
            source: source.to_string(),
            loaded: now(),
        };
        self.write(|txn| {
            let mut table = txn.open_table(FW_LISTS)?;
            let old = table
                .insert(name, encode("a block list", &list)?.as_slice())?
                .map(|v| decode("a block list", v.value()))
                .transpose()?;
            Ok(old)
        })
    }

    /// Removes the block list `name`; [`Error::NotFound`] if there is none.
    pub fn remove_block_list(&self, name: &str) -> Result<BlockList, Error> {
        self.write(|txn| {
            let mut table = txn.open_table(FW_LISTS)?;
            let removed = table.remove(name)?;
            match removed {
                Some(v) => decode("a block list", v.value()),
                None => Err(Error::NotFound(format!("the block list {name}"))),
            }
        })
    }

    /// Every block list, by name.
    pub fn block_lists(&self) -> Result<Vec<BlockList>, Error> {
        self.all_values(FW_LISTS, "a block list")
    }

    /// Records a ban of `ip` until `until`.
    pub fn add_ban(&self, ip: IpAddr, until: SystemTime, reason: &str) -> Result<(), Error> {
        let ip = ip.to_canonical();
        let ban = Ban {
            ip,
            until,
            reason: reason.to_string(),
        };
        let key = ip.to_string();
        self.write(|txn| {
            let mut table = txn.open_table(FW_BANS)?;
            table.insert(key.as_str(), encode("a ban", &ban)?.as_slice())?;
            Ok(())
        })
    }

    /// Lifts the ban of `ip`; whether there was one (expired or not).
    pub fn remove_ban(&self, ip: IpAddr) -> Result<bool, Error> {
        let key = ip.to_canonical().to_string();
        self.write(|txn| {
            let mut table = txn.open_table(FW_BANS)?;
            Ok(table.remove(key.as_str())?.is_some())
        })
    }

    /// The bans still in force; expired ones are removed.
    pub fn bans(&self) -> Result<Vec<Ban>, Error> {
        let all: Vec<Ban> = self.all_values(FW_BANS, "a ban")?;
        let now_ms = to_ms(now());
        let (live, expired): (Vec<Ban>, Vec<Ban>) =
            all.into_iter().partition(|b| to_ms(b.until) > now_ms);
        if !expired.is_empty() {
            self.write(|txn| {
                let mut table = txn.open_table(FW_BANS)?;
                for ban in &expired {
                    // Re-check inside the write: a new ban may have replaced it.
                    let current: Option<Ban> = table
                        .get(ban.ip.to_string().as_str())?
                        .map(|v| decode("a ban", v.value()))
                        .transpose()?;
                    if current.is_some_and(|c| to_ms(c.until) <= now_ms) {
                        table.remove(ban.ip.to_string().as_str())?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    #[test]
    fn blocks_lists_and_bans_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(
            store
                .add_block("192.0.2.7/24".parse().unwrap(), "cli")
                .unwrap()
        );
        assert!(
            !store
                .add_block("192.0.2.0/24".parse().unwrap(), "cli")
                .unwrap()
        );
        assert_eq!(store.blocks().unwrap()[0].net.to_string(), "192.0.2.0/24");
        assert!(store.remove_block("192.0.2.0/24".parse().unwrap()).unwrap());
        assert!(store.blocks().unwrap().is_empty());

        let nets = vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(
            store
                .set_block_list("bad", nets.clone(), "f")
                .unwrap()
                .is_none()
        );
        assert!(store.set_block_list("bad", nets, "g").unwrap().is_some());
        assert!(store.set_block_list("Bad!", vec![], "").is_err());
        assert_eq!(store.block_lists().unwrap()[0].source, "g");
        store.remove_block_list("bad").unwrap();
        assert!(store.remove_block_list("bad").is_err());

        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        store
            .add_ban(ip, now() + Duration::from_secs(60), "failed logins")
            .unwrap();
        let old: IpAddr = "203.0.113.6".parse().unwrap();
        store
            .add_ban(old, now() - Duration::from_secs(1), "")
            .unwrap();
        let bans = store.bans().unwrap();
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].ip, ip);
        assert!(!store.remove_ban(old).unwrap(), "expired bans are pruned");
        assert!(store.remove_ban(ip).unwrap());
    }
}
