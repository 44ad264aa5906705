//! Local delivery: which accounts an address reaches (accounts, plus-addressing,
//! aliases, catch-alls), and putting a message into their mailboxes durably. The store
//! fsyncs each body and commit, so a `250` sent after [`deliver`] returns means the
//! message is on disk.
//!
//! Each account's active Sieve script decides where its copy goes ([`sieve`]): the
//! script runs in the `sieve` crate, which returns actions; they are applied here.

use std::time::SystemTime;

use store::{AccountId, Role, Store};

mod notice;
pub mod sieve;

pub use self::sieve::{Incoming, Planned, Planner, Recipient};

/// Where a recipient address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The local accounts (id and address, de-duplicated) and the remote addresses it
    /// reaches: one account, or an alias's whole expansion.
    Targets {
        /// Local accounts.
        local: Vec<(AccountId, String)>,
        /// Remote addresses an alias forwards to.
        remote: Vec<String>,
    },
    /// The domain is not ours.
    NotLocal,
    /// Our domain, but no account, alias or catch-all takes it (or an alias that
    /// reaches nobody).
    UnknownUser,
    /// The account the address names is at or over its quota.
    OverQuota(String),
}

/// How far aliases of aliases are followed.
const MAX_ALIAS_DEPTH: usize = 8;
/// The most addresses one recipient may expand to.
const MAX_EXPANSION: usize = 1000;

/// Errors of delivery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// An account has no mailbox for the role (a damaged store).
    #[error("account {0} has no INBOX")]
    NoMailbox(String),
    /// A message could not be DKIM-signed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// What one address is, one level deep.
enum Lookup {
    Account(store::Account),
    Alias(Vec<String>),
    NotLocal,
    Unknown,
}

/// Looks one address up: an account, then an alias of that exact address, then the
/// same two without a `+tag` (subaddressing, RFC 5233), then the domain's catch-all.
fn lookup(store: &Store, address: &str) -> Result<Lookup, Error> {
    let Ok(address) = store::normalize_address(address) else {
        return Ok(Lookup::Unknown);
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Ok(Lookup::Unknown);
    };
    if store.domain(domain)?.is_none() {
        return Ok(Lookup::NotLocal);
    }
    let mut candidates = vec![address.clone()];
    if let Some((base, _tag)) = local.split_once('+')
        && !base.is_empty()
    {
        candidates.push(format!("{base}@{domain}"));
    }
    candidates.push(format!("@{domain}"));
    for candidate in &candidates {
        if !candidate.starts_with('@')
            && let Some(account) = store.account(candidate)?
        {
            return Ok(Lookup::Account(account));
        }
        if let Some(alias) = store.alias(candidate)? {
            return Ok(Lookup::Alias(alias.targets));
        }
    }
    Ok(Lookup::Unknown)
}

/// Resolves `address` (already syntax-checked) to the accounts and remote addresses
/// it reaches. An alias is expanded to its full set of targets, local and remote,
/// following aliases of aliases up to [`MAX_ALIAS_DEPTH`] levels; an address met twice
/// (a loop) is taken once.
pub fn resolve(store: &Store, address: &str) -> Result<Resolution, Error> {
    let targets = match lookup(store, address)? {
        Lookup::NotLocal => return Ok(Resolution::NotLocal),
        Lookup::Unknown => return Ok(Resolution::UnknownUser),
        Lookup::Account(account) => {
            if account.quota_bytes > 0 && account.used_bytes >= account.quota_bytes {
                return Ok(Resolution::OverQuota(account.email));
            }
            return Ok(Resolution::Targets {
                local: vec![(account.id, account.email)],
                remote: Vec::new(),
            });
        }
        Lookup::Alias(targets) => targets,
    };
    let mut local: Vec<(AccountId, String)> = Vec::new();
    let mut remote: Vec<String> = Vec::new();
    let mut seen: Vec<String> = vec![address.to_ascii_lowercase()];
    let mut level: Vec<String> = targets;
    for _ in 0..MAX_ALIAS_DEPTH {
        let mut next = Vec::new();
        for target in level {
            let key = target.to_ascii_lowercase();
            if seen.contains(&key) {
                continue;
            }
            if seen.len() >= MAX_EXPANSION {
                tracing::warn!(%address, "alias expansion cut at {MAX_EXPANSION} addresses");
                break;
            }
            seen.push(key);
            match lookup(store, &target)? {
                Lookup::Account(account) => {
                    if !local.iter().any(|(id, _)| *id == account.id) {
                        local.push((account.id, account.email));
                    }
                }
                Lookup::Alias(targets) => next.extend(targets),
                Lookup::NotLocal => {
                    if let Ok(normalized) = store::normalize_address(&target)
                        && !remote.contains(&normalized)
                    {
                        remote.push(normalized);
                    }
                }
                Lookup::Unknown => {
                    tracing::warn!(%address, %target, "alias target is neither an account nor an alias: skipped");
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    if local.is_empty() && remote.is_empty() {
        return Ok(Resolution::UnknownUser);
    }
    Ok(Resolution::Targets { local, remote })
}

/// The mailbox role a message kept without a Sieve decision goes to: Junk for spam
/// (SpamAssassin's verdict or a DMARC quarantine), INBOX otherwise.
pub fn target_role(spam: bool) -> Role {
    if spam { Role::Junk } else { Role::Inbox }
}

/// Adds `message` to each account's INBOX (or Junk) with no Sieve script run: for
/// reports Postern itself writes. Nothing is stored before the batch commits.
pub fn plan_plain<'m>(
    store: &Store,
    batch: &mut store::Batch<'m>,
    accounts: &[AccountId],
    message: &store::Body<'m>,
    spam: bool,
) -> Result<(), Error> {
    let now = SystemTime::now();
    for account in accounts {
        let mailbox = role_mailbox(store, *account, target_role(spam))?;
        batch.append(mailbox.id, message.clone(), &[], now);
    }
    Ok(())
}

/// Stores `message` in each account's INBOX (or Junk) at once, in one commit, with no
/// Sieve script run: for reports Postern itself writes.
pub fn deliver_plain(
    store: &Store,
    accounts: &[AccountId],
    message: &[u8],
    spam: bool,
) -> Result<(), Error> {
    let mut batch = store::Batch::new();
    plan_plain(store, &mut batch, accounts, &message.into(), spam)?;
    store.commit(batch)?;
    Ok(())
}

/// The account's mailbox with `role`, or its INBOX if it has none.
pub(crate) fn role_mailbox(
    store: &Store,
    account: AccountId,
    role: Role,
) -> Result<store::Mailbox, Error> {
    match store.mailbox_by_role(account, role)? {
        Some(m) => Ok(m),
        None => store
            .mailbox_by_role(account, Role::Inbox)?
            .ok_or_else(|| Error::NoMailbox(account.to_string())),
    }
}
