//! The directory: local domains, accounts and aliases, and address validation.
//!
//! Addresses and domains are stored lower-cased, so every lookup is case-insensitive.

use std::time::SystemTime;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::mailbox::{self, Role};
use crate::tables::{ACCOUNT_EMAILS, ACCOUNTS, ALIASES, DKIM_KEYS, DOMAINS};
use crate::{AccountId, Change, Error, Store, decode, decode_opt, encode, next_counter, now};

/// A domain this server receives mail for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The domain name, lower case.
    pub name: String,
    /// When the domain was added.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub created: SystemTime,
}

/// A mail account: an address with a password and mailboxes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account's id, never reused.
    pub id: AccountId,
    /// The account's address, lower case.
    pub email: String,
    /// The password hash in PHC string format (hashing belongs to `common::auth`).
    #[serde(default)]
    pub password_hash: String,
    /// The quota in bytes of message bodies; 0 means unlimited.
    #[serde(default)]
    pub quota_bytes: u64,
    /// The bytes of message bodies stored in the account's mailboxes.
    #[serde(default)]
    pub used_bytes: u64,
    /// When the account was added.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub created: SystemTime,
    /// An administrator: may use the admin API.
    #[serde(default)]
    pub admin: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("quota_bytes", &self.quota_bytes)
            .field("used_bytes", &self.used_bytes)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// An alias: mail to `address` is delivered to each of `targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// `user@domain`, or `@domain` for a catch-all; lower case.
    pub address: String,
    /// The addresses mail is forwarded to, local or remote; lower case.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// Characters allowed in a Dot-string atom besides letters and digits (RFC 5322 §3.2.3 atext).
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// Validates a domain name and returns it lower-cased.
///
/// RFC 5321 §4.1.2: a Domain is dot-separated sub-domains, each an Ldh-str (letters, digits
/// and hyphens, starting and ending with a letter or digit); RFC 5321 §4.5.3.1.2: at most 255
/// octets; RFC 1035 §2.3.4: labels of at most 63 octets. Address literals are refused.
pub fn normalize_domain(domain: &str) -> Result<String, Error> {
    let bad = |why: &str| {
        Err(Error::InvalidAddress(format!(
            "the domain {domain:?} {why}"
        )))
    };
    if domain.is_empty() {
        return bad("is empty");
    }
    if domain.len() > 255 {
        return bad("is longer than 255 octets (RFC 5321 §4.5.3.1.2)");
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return bad("has an empty label");
        }
        if label.len() > 63 {
            return bad("has a label longer than 63 octets (RFC 1035 §2.3.4)");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("may only hold letters, digits, hyphens and dots (RFC 5321 §4.1.2)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("has a label starting or ending with a hyphen (RFC 5321 §4.1.2)");
        }
    }
    Ok(domain.to_ascii_lowercase())
}

/// Validates a `local@domain` address and returns it lower-cased.
///
/// The local part is a Dot-string (RFC 5321 §4.1.2; UTF-8 allowed per RFC 6531 §3.3) of at
/// most 64 octets (RFC 5321 §4.5.3.1.1); quoted local parts are refused. The domain is checked
/// by [`normalize_domain`].
pub fn normalize_address(address: &str) -> Result<String, Error> {
    let bad = |why: &str| Err(Error::InvalidAddress(format!("{address:?} {why}")));
    let Some((local, domain)) = address.rsplit_once('@') else {
        return bad("has no @");
    };
    if local.is_empty() {
        return bad("has an empty local part");
    }
    if local.len() > 64 {
        return bad("has a local part longer than 64 octets (RFC 5321 §4.5.3.1.1)");
    }
    if let Some(c) = local.chars().find(|&c| {
        !(c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c) || c == '.')
            && (c.is_ascii() || c.is_control() || c.is_whitespace())
    }) {
        return bad(&format!(
            "has the character {c:?} in its local part (RFC 5321 §4.1.2)"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return bad("has a local part with a leading, trailing or double dot (RFC 5321 §4.1.2)");
    }
    let domain =
        normalize_domain(domain).map_err(|e| Error::InvalidAddress(format!("{address:?}: {e}")))?;
    Ok(format!("{}@{domain}", local.to_lowercase()))
}

/// Validates an alias address: `user@domain`, or `@domain` for a catch-all.
fn normalize_alias_address(address: &str) -> Result<String, Error> {
    match address.strip_prefix('@') {
        Some(domain) => Ok(format!("@{}", normalize_domain(domain)?)),
        None => normalize_address(address),
    }
}

/// The domain part of a normalised address (or of `@domain`).
pub(crate) fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d)
}

/// Looks up an account id by normalised address inside a write transaction.
pub(crate) fn account_id(txn: &WriteTransaction, email: &str) -> Result<AccountId, Error> {
    txn.open_table(ACCOUNT_EMAILS)?
        .get(email)?
        .map(|v| v.value())
        .ok_or_else(|| Error::NotFound(format!("the account {email}")))
}

/// Loads an account inside a write transaction.
pub(crate) fn load_account(txn: &WriteTransaction, id: AccountId) -> Result<Account, Error> {
    let accounts = txn.open_table(ACCOUNTS)?;
    decode_opt("an account", accounts.get(id)?)?
        .ok_or_else(|| Error::Corrupt(format!("the account with id {id} is missing")))
}

/// Stores an account inside a write transaction.
pub(crate) fn save_account(txn: &WriteTransaction, account: &Account) -> Result<(), Error> {
    txn.open_table(ACCOUNTS)?
        .insert(account.id, encode("an account", account)?.as_slice())?;
    Ok(())
}

fn require_domain(txn: &WriteTransaction, domain: &str) -> Result<(), Error> {
    if txn.open_table(DOMAINS)?.get(domain)?.is_none() {
        return Err(Error::NoSuchDomain(domain.to_string()));
    }
    Ok(())
}

impl Store {
    /// Adds a local domain. [`Error::Exists`] if it is already there.
    pub fn add_domain(&self, name: &str) -> Result<Domain, Error> {
        let name = normalize_domain(name)?;
        let domain = Domain {
            name: name.clone(),
            created: now(),
        };
        self.write(|txn| {
            let mut domains = txn.open_table(DOMAINS)?;
            if domains.get(name.as_str())?.is_some() {
                return Err(Error::Exists(format!("the domain {name}")));
            }
            domains.insert(name.as_str(), encode("a domain", &domain)?.as_slice())?;
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(domain)
    }

    /// Every local domain, sorted by name.
    pub fn domains(&self) -> Result<Vec<Domain>, Error> {
        self.read(|txn| {
            let domains = txn.open_table(DOMAINS)?;
            let mut out = Vec::new();
            for entry in domains.iter()? {
                let (_, v) = entry?;
                out.push(decode("a domain", v.value())?);
            }
            Ok(out)
        })
    }

    /// The local domain `name`, if there is one.
    pub fn domain(&self, name: &str) -> Result<Option<Domain>, Error> {
        let name = normalize_domain(name)?;
        self.read(|txn| decode_opt("a domain", txn.open_table(DOMAINS)?.get(name.as_str())?))
    }

    /// Deletes a local domain and its DKIM keys.
    ///
    /// [`Error::NotEmpty`] if accounts or aliases remain in it; [`Error::NoSuchDomain`] if it
    /// is not a local domain.
    pub fn delete_domain(&self, name: &str) -> Result<(), Error> {
        let name = normalize_domain(name)?;
        self.write(|txn| {
            require_domain(txn, &name)?;
            let accounts: Vec<String> = {
                let emails = txn.open_table(ACCOUNT_EMAILS)?;
                let mut found = Vec::new();
                for entry in emails.iter()? {
                    let (k, _) = entry?;
                    if domain_of(k.value()) == name {
                        found.push(k.value().to_string());
                    }
                }
                found
            };
            if !accounts.is_empty() {
                return Err(Error::NotEmpty(format!(
                    "the domain {name} still has accounts ({}): delete them first",
                    accounts.join(", ")
                )));
            }
            let aliases: Vec<String> = {
                let table = txn.open_table(ALIASES)?;
                let mut found = Vec::new();
                for entry in table.iter()? {
                    let (k, _) = entry?;
                    if domain_of(k.value()) == name {
                        found.push(k.value().to_string());
                    }
                }
                found
            };
            if !aliases.is_empty() {
                return Err(Error::NotEmpty(format!(
                    "the domain {name} still has aliases ({}): delete them first",
                    aliases.join(", ")
                )));
            }
            let mut keys = txn.open_table(DKIM_KEYS)?;
            let mut selectors = Vec::new();
            for entry in keys.range((name.as_str(), "")..)? {
                let (k, _) = entry?;
                let (domain, selector) = k.value();
                if domain != name {
                    break;
                }
                selectors.push(selector.to_string());
            }
            for selector in &selectors {
                keys.remove((name.as_str(), selector.as_str()))?;
            }
            txn.open_table(DOMAINS)?.remove(name.as_str())?;
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(())
    }

    /// Adds an account, with the mailboxes INBOX, Sent, Drafts, Trash, Junk and Archive
    /// carrying their SPECIAL-USE roles (RFC 6154), in one commit.
    ///
    /// [`Error::NoSuchDomain`] if the domain is not local; [`Error::Exists`] if an account or
    /// an alias already has the address.
    pub fn add_account(&self, email: &str, password_hash: &str) -> Result<Account, Error> {
        let email = normalize_address(email)?;
        let account = self.write(|txn| {
            require_domain(txn, domain_of(&email))?;
            if txn
                .open_table(ACCOUNT_EMAILS)?
                .get(email.as_str())?
                .is_some()
            {
                return Err(Error::Exists(format!("the account {email}")));
            }
            if txn.open_table(ALIASES)?.get(email.as_str())?.is_some() {
                return Err(Error::Exists(format!("an alias with the address {email}")));
            }
            let account = Account {
                id: next_counter(txn, "next_account_id", 1)?,
                email: email.clone(),
                password_hash: password_hash.to_string(),
                quota_bytes: 0,
                used_bytes: 0,
                created: now(),
                admin: false,
            };
            save_account(txn, &account)?;
            txn.open_table(ACCOUNT_EMAILS)?
                .insert(email.as_str(), account.id)?;
            for role in Role::ALL {
                mailbox::insert_mailbox(txn, account.id, role.default_name(), Some(role))?;
            }
            Ok(account)
        })?;
        self.notify(Change::Directory);
        Ok(account)
    }

    /// The account with address `email`, if there is one.
    pub fn account(&self, email: &str) -> Result<Option<Account>, Error> {
        let email = normalize_address(email)?;
        self.read(|txn| {
            let Some(id) = txn.open_table(ACCOUNT_EMAILS)?.get(email.as_str())? else {
                return Ok(None);
            };
            decode_opt("an account", txn.open_table(ACCOUNTS)?.get(id.value())?)
        })
    }

    /// The account with id `id`, if there is one.
    pub fn account_by_id(&self, id: AccountId) -> Result<Option<Account>, Error> {
        self.read(|txn| decode_opt("an account", txn.open_table(ACCOUNTS)?.get(id)?))
    }

    /// Every account, sorted by address.
    pub fn accounts(&self) -> Result<Vec<Account>, Error> {
        self.read(|txn| {
            let emails = txn.open_table(ACCOUNT_EMAILS)?;
            let accounts = txn.open_table(ACCOUNTS)?;
            let mut out = Vec::new();
            for entry in emails.iter()? {
                let (k, id) = entry?;
                let account =
                    decode_opt("an account", accounts.get(id.value())?)?.ok_or_else(|| {
                        Error::Corrupt(format!("the account {} has no record", k.value()))
                    })?;
                out.push(account);
            }
            Ok(out)
        })
    }

    /// Replaces an account's password hash. [`Error::NotFound`] if there is no such account.
    pub fn set_password(&self, email: &str, password_hash: &str) -> Result<(), Error> {
        self.update_account(email, |a| a.password_hash = password_hash.to_string())
    }

    /// Sets an account's quota in bytes (0 = unlimited). Messages already stored stay.
    pub fn set_quota(&self, email: &str, quota_bytes: u64) -> Result<(), Error> {
        self.update_account(email, |a| a.quota_bytes = quota_bytes)
    }

    /// Makes an account an administrator (or not).
    pub fn set_admin(&self, email: &str, admin: bool) -> Result<(), Error> {
        self.update_account(email, |a| a.admin = admin)
    }

    fn update_account(&self, email: &str, change: impl FnOnce(&mut Account)) -> Result<(), Error> {
        let email = normalize_address(email)?;
        self.write(|txn| {
            let mut account = load_account(txn, account_id(txn, &email)?)?;
            change(&mut account);
            save_account(txn, &account)
        })?;
        self.notify(Change::Directory);
        Ok(())
    }

    /// Deletes an account: its mailboxes and message index in one commit, then the bodies.
    ///
    /// Aliases that point at the address are left alone.
    pub fn delete_account(&self, email: &str) -> Result<(), Error> {
        let email = normalize_address(email)?;
        let removed = self.write(|txn| {
            let id = account_id(txn, &email)?;
            txn.open_table(ACCOUNT_EMAILS)?.remove(email.as_str())?;
            txn.open_table(ACCOUNTS)?.remove(id)?;
            crate::sieve::remove_account(txn, id)?;
            let mut removed = Vec::new();
            for mailbox in mailbox::account_mailbox_ids(txn, id)? {
                removed.push((mailbox, mailbox::remove_mailbox(txn, mailbox)?.metas));
            }
            crate::subscriptions::remove_account(txn, id)?;
            Ok(removed)
        })?;
        for (mailbox, metas) in removed {
            let unlink = self.limbo.retire(mailbox, crate::ModSeq::MAX, metas, true);
            self.blobs.remove_all(&unlink);
        }
        self.notify(Change::Directory);
        Ok(())
    }

    /// Adds an alias. `address` is `user@domain` or `@domain` (a catch-all) in a local domain;
    /// `targets` are addresses, local or remote.
    ///
    /// [`Error::Exists`] if an account or an alias already has the address (targets are not
    /// merged); [`Error::NoSuchDomain`] if the domain is not local.
    pub fn add_alias(&self, address: &str, targets: &[String]) -> Result<Alias, Error> {
        let address = normalize_alias_address(address)?;
        let alias = Alias {
            address: address.clone(),
            targets: normalize_targets(&address, targets)?,
        };
        self.write(|txn| {
            require_domain(txn, domain_of(&address))?;
            if txn
                .open_table(ACCOUNT_EMAILS)?
                .get(address.as_str())?
                .is_some()
            {
                return Err(Error::Exists(format!(
                    "an account with the address {address}"
                )));
            }
            let mut aliases = txn.open_table(ALIASES)?;
            if aliases.get(address.as_str())?.is_some() {
                return Err(Error::Exists(format!("the alias {address}")));
            }
            aliases.insert(address.as_str(), encode("an alias", &alias)?.as_slice())?;
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(alias)
    }

    /// Replaces an alias's targets in one commit. [`Error::NotFound`] if there is no
    /// alias with that address.
    pub fn set_alias_targets(&self, address: &str, targets: &[String]) -> Result<Alias, Error> {
        let address = normalize_alias_address(address)?;
        let alias = Alias {
            address: address.clone(),
            targets: normalize_targets(&address, targets)?,
        };
        self.write(|txn| {
            let mut aliases = txn.open_table(ALIASES)?;
            if aliases.get(address.as_str())?.is_none() {
                return Err(Error::NotFound(format!("the alias {address}")));
            }
            aliases.insert(address.as_str(), encode("an alias", &alias)?.as_slice())?;
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(alias)
    }

    /// The alias with exactly this address (`user@domain` or `@domain`), if there is one.
    pub fn alias(&self, address: &str) -> Result<Option<Alias>, Error> {
        let address = normalize_alias_address(address)?;
        self.read(|txn| decode_opt("an alias", txn.open_table(ALIASES)?.get(address.as_str())?))
    }

    /// Every alias, sorted by address.
    pub fn aliases(&self) -> Result<Vec<Alias>, Error> {
        self.read(|txn| {
            let aliases = txn.open_table(ALIASES)?;
            let mut out = Vec::new();
            for entry in aliases.iter()? {
                let (_, v) = entry?;
                out.push(decode("an alias", v.value())?);
            }
            Ok(out)
        })
    }

    /// Deletes an alias. [`Error::NotFound`] if there is none with that address.
    pub fn delete_alias(&self, address: &str) -> Result<(), Error> {
        let address = normalize_alias_address(address)?;
        self.write(|txn| {
            if txn.open_table(ALIASES)?.remove(address.as_str())?.is_none() {
                return Err(Error::NotFound(format!("the alias {address}")));
            }
            Ok(())
        })?;
        self.notify(Change::Directory);
        Ok(())
    }
}

/// Alias targets normalised and de-duplicated; at least one.
fn normalize_targets(address: &str, targets: &[String]) -> Result<Vec<String>, Error> {
    let mut normalized: Vec<String> = Vec::with_capacity(targets.len());
    for target in targets {
        let target = normalize_address(target)?;
        if !normalized.contains(&target) {
            normalized.push(target);
        }
    }
    if normalized.is_empty() {
        return Err(Error::InvalidAddress(format!(
            "the alias {address} has no targets"
        )));
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;

    #[test]
    fn alias_targets_are_replaced_in_one_step() {
        let (_dir, store) = test_util::store();
        store.add_domain("example.org").unwrap();
        assert!(matches!(
            store.set_alias_targets("team@example.org", &["a@example.net".into()]),
            Err(Error::NotFound(_))
        ));
        store
            .add_alias("team@example.org", &["a@example.net".into()])
            .unwrap();
        let alias = store
            .set_alias_targets(
                "Team@example.org",
                &["B@example.net".into(), "b@example.net".into()],
            )
            .unwrap();
        assert_eq!(alias.targets, vec!["b@example.net".to_string()]);
        // An empty list is refused and changes nothing.
        assert!(store.set_alias_targets("team@example.org", &[]).is_err());
        assert_eq!(
            store.alias("team@example.org").unwrap().unwrap().targets,
            vec!["b@example.net".to_string()]
        );
    }
    #[test]
    fn addresses_are_validated_and_lowered() {
        assert_eq!(
            normalize_address("Alice.B+tag@Example.ORG").unwrap(),
            "alice.b+tag@example.org"
        );
        assert_eq!(
            normalize_address("jörg@example.org").unwrap(),
            "jörg@example.org"
        );
        let long_local = format!("{}@example.org", "a".repeat(65));
        let long_label = format!("a@{}.org", "b".repeat(64));
        let long_domain = format!("a@{}org", "abcdefghi.".repeat(26));
        for bad in [
            "",
            "alice",
            "@example.org",
            "alice@",
            "al ice@example.org",
            "<alice@example.org>",
            "alice\u{7}@example.org",
            "al@ice@example.org",
            ".alice@example.org",
            "al..ice@example.org",
            "alice@exa mple.org",
            "alice@example..org",
            "alice@-example.org",
            "alice@example_org.org",
            "alice@[192.0.2.1]",
            long_local.as_str(),
            long_label.as_str(),
            long_domain.as_str(),
        ] {
            match normalize_address(bad) {
                Err(Error::InvalidAddress(why)) => {
                    assert!(why.contains(&format!("{bad:?}")), "{why}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert_eq!(
            normalize_address(&format!("{}@example.org", "a".repeat(64)))
                .unwrap()
                .len(),
            76
        );
    }

    #[test]
    fn domains_crud() {
        let (_dir, store) = test_util::store();
        let d = store.add_domain("Example.ORG").unwrap();
        assert_eq!(d.name, "example.org");
        store.add_domain("a.example").unwrap();
        assert!(matches!(
            store.add_domain("example.org"),
            Err(Error::Exists(_))
        ));
        let names: Vec<_> = store
            .domains()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["a.example", "example.org"]);
        assert_eq!(store.domain("EXAMPLE.org").unwrap().unwrap(), d);
        assert!(store.domain("nope.example").unwrap().is_none());
        store.delete_domain("a.example").unwrap();
        assert!(matches!(
            store.delete_domain("a.example"),
            Err(Error::NoSuchDomain(_))
        ));
        assert!(matches!(
            store.add_domain("bad domain"),
            Err(Error::InvalidAddress(_))
        ));
    }

    #[test]
    fn accounts_crud() {
        let (_dir, store) = test_util::store();
        assert!(matches!(
            store.add_account("alice@example.org", "h"),
            Err(Error::NoSuchDomain(d)) if d == "example.org"
        ));
        store.add_domain("example.org").unwrap();
        let bob = store.add_account("Bob@example.org", "h1").unwrap();
        let alice = store.add_account("alice@example.org", "h2").unwrap();
        assert_ne!(alice.id, bob.id);
        assert_eq!(bob.email, "bob@example.org");
        assert!(matches!(
            store.add_account("BOB@example.org", "x"),
            Err(Error::Exists(_))
        ));
        assert_eq!(store.account("BOB@EXAMPLE.ORG").unwrap().unwrap(), bob);
        assert_eq!(store.account_by_id(alice.id).unwrap().unwrap(), alice);
        let emails: Vec<_> = store
            .accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.email)
            .collect();
        assert_eq!(emails, ["alice@example.org", "bob@example.org"]);

        store.set_password("bob@example.org", "h3").unwrap();
        store.set_quota("bob@example.org", 1000).unwrap();
        let bob2 = store.account("bob@example.org").unwrap().unwrap();
        assert_eq!(
            (bob2.password_hash.as_str(), bob2.quota_bytes),
            ("h3", 1000)
        );
        assert!(matches!(
            store.set_password("carol@example.org", "h"),
            Err(Error::NotFound(_))
        ));

        assert!(matches!(
            store.delete_domain("example.org"),
            Err(Error::NotEmpty(_))
        ));
        store.delete_account("bob@example.org").unwrap();
        store.delete_account("alice@example.org").unwrap();
        assert!(matches!(
            store.delete_account("bob@example.org"),
            Err(Error::NotFound(_))
        ));
        assert!(store.account_by_id(bob.id).unwrap().is_none());
        assert!(store.mailboxes(bob.id).unwrap().is_empty());
        store.delete_domain("example.org").unwrap();
    }

    #[test]
    fn account_ids_are_never_reused() {
        let (_dir, store, alice) = test_util::store_with_alice();
        store.delete_account(&alice.email).unwrap();
        let again = store.add_account(&alice.email, "h").unwrap();
        assert!(again.id > alice.id);
    }

    #[test]
    fn delete_account_removes_bodies() {
        let (dir, store, alice) = test_util::store_with_alice();
        let inbox = store.mailbox(alice.id, "inbox").unwrap().unwrap();
        let meta = store
            .append(inbox.id, b"body", &[], SystemTime::now())
            .unwrap();
        let path = dir
            .path()
            .join("data/blobs")
            .join(&meta.blob[..2])
            .join(&meta.blob);
        assert!(path.is_file());
        store.delete_account(&alice.email).unwrap();
        assert!(!path.exists());
        assert!(store.messages(inbox.id).is_err());
    }

    #[test]
    fn aliases_crud() {
        let (_dir, store, alice) = test_util::store_with_alice();
        let targets = vec![
            "Alice@example.org".to_string(),
            "x@remote.example".to_string(),
        ];
        let a = store.add_alias("Info@example.org", &targets).unwrap();
        assert_eq!(a.address, "info@example.org");
        assert_eq!(a.targets, ["alice@example.org", "x@remote.example"]);
        store
            .add_alias("@Example.org", std::slice::from_ref(&alice.email))
            .unwrap();
        assert!(matches!(
            store.add_alias("info@example.org", &targets),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            store.add_alias(&alice.email, &targets),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            store.add_account("info@example.org", "h"),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            store.add_alias("info@elsewhere.example", &targets),
            Err(Error::NoSuchDomain(_))
        ));
        assert!(matches!(
            store.add_alias("x@example.org", &["not an address".into()]),
            Err(Error::InvalidAddress(_))
        ));
        assert!(matches!(
            store.add_alias("y@example.org", &[]),
            Err(Error::InvalidAddress(_))
        ));
        let all: Vec<_> = store
            .aliases()
            .unwrap()
            .into_iter()
            .map(|a| a.address)
            .collect();
        assert_eq!(all, ["@example.org", "info@example.org"]);
        assert_eq!(store.alias("INFO@example.org").unwrap().unwrap(), a);
        store.delete_account(&alice.email).unwrap();
        assert!(matches!(
            store.delete_domain("example.org"),
            Err(Error::NotEmpty(_))
        ));
        store.delete_alias("info@example.org").unwrap();
        store.delete_alias("@example.org").unwrap();
        assert!(matches!(
            store.delete_alias("info@example.org"),
            Err(Error::NotFound(_))
        ));
        store.delete_domain("example.org").unwrap();
    }

    #[test]
    fn delete_domain_deletes_its_dkim_keys() {
        let (_dir, store) = test_util::store();
        store.add_domain("example.org").unwrap();
        store.add_domain("example.net").unwrap();
        for domain in ["example.org", "example.net"] {
            store
                .add_dkim_key(&test_util::dkim_key(domain, "s1"))
                .unwrap();
        }
        store.delete_domain("example.org").unwrap();
        assert!(store.dkim_keys("example.org").unwrap().is_empty());
        assert_eq!(store.dkim_keys("example.net").unwrap().len(), 1);
    }
}
