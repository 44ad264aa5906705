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

pub use self::sieve::{Incoming, Recipient, deliver};

/// Where a recipient address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Local accounts (id and address), de-duplicated.
    Local(Vec<(AccountId, String)>),
    /// The domain is not ours.
    NotLocal,
    /// Our domain, but no account, alias or catch-all takes it.
    UnknownUser,
    /// A local account is at or over its quota.
    OverQuota(String),
    /// An alias forwards to a remote address, which needs the outbound queue.
    Forwarding(String),
}

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

/// Resolves `address` (already syntax-checked) to local accounts.
///
/// Order: an account, then an alias of that exact address, then the same two without
/// a `+tag` (subaddressing, RFC 5233), then the domain's catch-all `@domain`.
pub fn resolve(store: &Store, address: &str) -> Result<Resolution, Error> {
    let Ok(address) = store::normalize_address(address) else {
        return Ok(Resolution::UnknownUser);
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Ok(Resolution::UnknownUser);
    };
    if store.domain(domain)?.is_none() {
        return Ok(Resolution::NotLocal);
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
            if account.quota_bytes > 0 && account.used_bytes >= account.quota_bytes {
                return Ok(Resolution::OverQuota(account.email));
            }
            return Ok(Resolution::Local(vec![(account.id, account.email)]));
        }
        if let Some(alias) = store.alias(candidate)? {
            return expand(store, &alias.targets);
        }
    }
    Ok(Resolution::UnknownUser)
}

/// Expands alias targets one level deep into accounts (an alias of aliases works one
/// level further; deeper chains and loops are cut off).
fn expand(store: &Store, targets: &[String]) -> Result<Resolution, Error> {
    let mut accounts = Vec::new();
    let mut pending: Vec<(String, u8)> = targets.iter().map(|t| (t.clone(), 0)).collect();
    while let Some((target, depth)) = pending.pop() {
        if let Some(account) = store.account(&target)? {
            if !accounts.iter().any(|(id, _)| *id == account.id) {
                accounts.push((account.id, account.email));
            }
            continue;
        }
        match target.rsplit_once('@') {
            Some((_, domain)) if store.domain(domain)?.is_some() => {
                if let Some(alias) = store.alias(&target)?
                    && depth < 2
                {
                    pending.extend(alias.targets.iter().map(|t| (t.clone(), depth + 1)));
                } else {
                    tracing::warn!(%target, "alias target is neither an account nor an alias: skipped");
                }
            }
            _ => return Ok(Resolution::Forwarding(target)),
        }
    }
    if accounts.is_empty() {
        return Ok(Resolution::UnknownUser);
    }
    check_quota(accounts, store)
}

fn check_quota(accounts: Vec<(AccountId, String)>, store: &Store) -> Result<Resolution, Error> {
    for (id, email) in &accounts {
        if let Some(a) = store.account_by_id(*id)?
            && a.quota_bytes > 0
            && a.used_bytes >= a.quota_bytes
        {
            return Ok(Resolution::OverQuota(email.clone()));
        }
    }
    Ok(Resolution::Local(accounts))
}

/// The mailbox role a message kept without a Sieve decision goes to: Junk for spam
/// (SpamAssassin's verdict or a DMARC quarantine), INBOX otherwise.
pub fn target_role(spam: bool) -> Role {
    if spam { Role::Junk } else { Role::Inbox }
}

/// Stores `message` in each account's INBOX (or Junk) with no Sieve script run: for
/// reports Postern itself writes. Every body and index commit is fsynced before this
/// returns.
pub fn deliver_plain(
    store: &Store,
    accounts: &[AccountId],
    message: &[u8],
    spam: bool,
) -> Result<(), Error> {
    let now = SystemTime::now();
    for account in accounts {
        let mailbox = role_mailbox(store, *account, target_role(spam))?;
        store.append(mailbox.id, message, &[], now)?;
    }
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
