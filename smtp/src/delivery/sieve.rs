//! Delivery through each account's active Sieve script: the `sieve` crate runs the
//! script and returns actions; this module applies them durably.
//!
//! - **keep** stores the message in INBOX, or in Junk when it is spam (the scanner's
//!   verdict or a DMARC quarantine); **fileinto** in the named mailbox (its special use
//!   first, created with `:create`, else INBOX); each mailbox gets the message once.
//! - **redirect** to a local address delivers at once through that account's script; to
//!   a remote address it goes through the outbound queue. The envelope sender is kept
//!   when it is null or in one of our domains (our SPF covers us); any other sender is
//!   rewritten to the account's address, since our server is not in that sender's SPF
//!   record. Each redirected copy carries `Delivered-To: <account>`: a copy that comes
//!   back to an account it already passed, or has made `[sieve] max_redirect_hops`
//!   hops, is not redirected again but kept.
//! - **reject** refuses the message in the SMTP reply when every recipient's script
//!   rejects it; otherwise a rejection notice goes to the sender ([`super::notice`]).
//! - **vacation** replies go from the null sender, DKIM-signed, and only with a From
//!   the account may use.
//! - A script that fails, or a store failure while applying it, never loses the
//!   message: it is kept in INBOX and the error logged.

use std::time::{Duration, SystemTime};

use sieve::run::{Action, Delivery, Host, Outcome, Spam};
use store::{AccountId, Role, Store};

use super::{Error, Resolution, resolve, role_mailbox, target_role};

/// One local recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The account.
    pub account: AccountId,
    /// The account's address.
    pub email: String,
    /// The recipient address as the client gave it (with any `+detail`).
    pub address: String,
}

/// An account as delivery needs it: its id and address.
#[derive(Debug, Clone)]
struct Account {
    id: AccountId,
    email: String,
}

/// The message being delivered and what is known about it.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// The message as it will be stored (trace and result headers added).
    pub message: &'a [u8],
    /// The envelope sender (`""` for the null sender).
    pub envelope_from: &'a str,
    /// The spam scanner's verdict, for `spamtest`.
    pub spam: Spam,
    /// Whether an implicit keep goes to Junk (spam verdict, DMARC quarantine).
    pub junk: bool,
    /// This server's name (rejection notices).
    pub hostname: &'a str,
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Stored (and anything the scripts sent queued); `queued` when the outbound
    /// queue has new work.
    Stored {
        /// The outbound queue has new messages.
        queued: bool,
    },
    /// Every recipient's script rejected the message: refuse it with this reason.
    Refused(String),
}

/// Delivers `incoming` to each recipient through its account's script. With
/// `may_refuse`, a message every script rejects is not stored and the reason comes
/// back for the SMTP reply (RFC 5429 §2.1: refusing in the dialogue is preferred).
pub fn deliver(
    store: &Store,
    engine: &sieve::Engine,
    recipients: &[Recipient],
    incoming: &Incoming<'_>,
    may_refuse: bool,
) -> Result<Delivered, Error> {
    let mut plans = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let account = Account {
            id: recipient.account,
            email: recipient.email.clone(),
        };
        let outcome = evaluate(store, engine, &account, &recipient.address, incoming);
        plans.push((account, outcome));
    }
    if may_refuse && !plans.is_empty() {
        let reasons: Vec<&str> = plans
            .iter()
            .filter_map(|(_, o)| o.as_ref().and_then(reject_reason))
            .collect();
        if reasons.len() == plans.len() {
            return Ok(Delivered::Refused(reasons[0].to_string()));
        }
    }
    let mut queued = false;
    for (account, outcome) in plans {
        queued |= apply(store, engine, &account, incoming, outcome, 0)?;
    }
    Ok(Delivered::Stored { queued })
}

/// The reason of the script's `reject`, if it took one.
fn reject_reason(outcome: &Outcome) -> Option<&str> {
    outcome.actions.iter().find_map(|a| match a {
        Action::Reject { reason, .. } => Some(reason.as_str()),
        _ => None,
    })
}

/// Runs the account's active script; None when it has none. A script that no longer
/// compiles (limits lowered since) keeps the message, logged.
fn evaluate(
    store: &Store,
    engine: &sieve::Engine,
    account: &Account,
    envelope_to: &str,
    incoming: &Incoming<'_>,
) -> Option<Outcome> {
    let (name, text) = match store.active_sieve_script(account.id) {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(account = %account.email, error = %e, "cannot read the Sieve script: keeping the message");
            return None;
        }
    };
    let script = match engine.compile(&text) {
        Ok(script) => script,
        Err(e) => {
            tracing::warn!(account = %account.email, script = %name, error = %e, "the active Sieve script does not compile: keeping the message");
            return None;
        }
    };
    let host = StoreHost {
        store,
        account: account.id,
        now: SystemTime::now(),
    };
    let delivery = Delivery {
        message: incoming.message,
        envelope_from: incoming.envelope_from,
        envelope_to,
        user_address: &account.email,
        spam: incoming.spam,
    };
    let outcome = engine.run(&name, script, &delivery, &host);
    if let Some(error) = &outcome.error {
        tracing::warn!(account = %account.email, script = %name, %error, "Sieve script failed: the message is kept in INBOX");
        let event = store::AuditEvent {
            actor: account.email.clone(),
            action: "sieve-error".into(),
            ip: None,
            detail: format!("script {name:?}: {error}; the message was kept in INBOX"),
        };
        if let Err(e) = store.log_event(&event) {
            tracing::error!(error = %e, "could not write a Sieve error to the activity log");
        }
    }
    Some(outcome)
}

/// The account's data as the script may see it.
struct StoreHost<'a> {
    store: &'a Store,
    account: AccountId,
    now: SystemTime,
}

impl Host for StoreHost<'_> {
    fn script(&self, name: &str, global: bool) -> Option<String> {
        if global {
            return None;
        }
        self.store.sieve_script(self.account, name).ok().flatten()
    }

    fn mailbox_exists(&self, name: &str) -> bool {
        self.store
            .mailbox(self.account, name)
            .ok()
            .flatten()
            .is_some()
    }

    fn special_use_exists(&self, special_use: &str) -> bool {
        role_of(special_use).is_some_and(|role| {
            self.store
                .mailbox_by_role(self.account, role)
                .ok()
                .flatten()
                .is_some()
        })
    }

    fn seen(&self, id: &str) -> bool {
        self.store
            .sieve_seen(self.account, id, self.now)
            .unwrap_or(false)
    }
}

/// The role of a special-use attribute (`\Junk`, RFC 6154).
fn role_of(special_use: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| {
        r.special_use()
            .is_some_and(|u| u.eq_ignore_ascii_case(special_use))
    })
}

/// Where one copy goes: a mailbox and flags.
struct Copy {
    mailbox: store::Mailbox,
    flags: Vec<String>,
    message: usize,
}

/// Applies a script's outcome for one account (None: no script, implicit keep).
/// `hops` counts local redirects so far. Returns whether the queue has new work.
fn apply(
    store: &Store,
    engine: &sieve::Engine,
    account: &Account,
    incoming: &Incoming<'_>,
    outcome: Option<Outcome>,
    hops: usize,
) -> Result<bool, Error> {
    let keep = || Outcome {
        actions: vec![Action::Keep {
            flags: Vec::new(),
            message: 0,
        }],
        ..Outcome::default()
    };
    let mut outcome = outcome.unwrap_or_else(keep);
    let looping = is_loop(
        incoming.message,
        &account.email,
        engine.config().max_redirect_hops,
    );
    if looping
        && outcome
            .actions
            .iter()
            .any(|a| matches!(a, Action::Redirect { .. }))
    {
        tracing::warn!(account = %account.email, "redirect loop: the message is kept instead of redirected");
        outcome
            .actions
            .retain(|a| !matches!(a, Action::Redirect { .. }));
        if !outcome
            .actions
            .iter()
            .any(|a| matches!(a, Action::Keep { .. } | Action::FileInto { .. }))
        {
            outcome.actions.push(Action::Keep {
                flags: Vec::new(),
                message: 0,
            });
        }
    }

    // Stores first: the copies the account keeps.
    let mut copies: Vec<Copy> = Vec::new();
    for action in &outcome.actions {
        let (mailbox, flags, message) = match action {
            Action::Keep { flags, message } => (
                role_mailbox(store, account.id, target_role(incoming.junk))?,
                flags,
                *message,
            ),
            Action::FileInto {
                mailbox,
                special_use,
                create,
                flags,
                message,
            } => (
                fileinto_target(store, account, mailbox, special_use.as_deref(), *create)?,
                flags,
                *message,
            ),
            _ => continue,
        };
        // RFC 5228 §2.10.3: the same message in the same mailbox is stored once.
        if let Some(existing) = copies
            .iter_mut()
            .find(|c| c.mailbox.id == mailbox.id && c.message == message)
        {
            for flag in flags {
                if !existing.flags.contains(flag) {
                    existing.flags.push(flag.clone());
                }
            }
            continue;
        }
        copies.push(Copy {
            mailbox,
            flags: flags.clone(),
            message,
        });
    }
    let now = SystemTime::now();
    for copy in &copies {
        let body = outcome.message(copy.message, incoming.message);
        let flags = store::normalize_flags(&copy.flags).unwrap_or_else(|e| {
            tracing::warn!(account = %account.email, error = %e, "Sieve flags dropped");
            Vec::new()
        });
        store.append(copy.mailbox.id, body, &flags, now)?;
    }

    // Then what goes out: redirects, replies, rejection notices.
    let mut queued = false;
    let mut remember = Vec::new();
    for action in &outcome.actions {
        // What fails to go out is logged; the message itself is already safe (and a
        // redirect that fails is kept instead).
        match action {
            Action::Redirect { address, message } => {
                let body = outcome.message(*message, incoming.message);
                match redirect(store, engine, account, incoming, address, body, hops) {
                    Ok(q) => queued |= q,
                    Err(e) => {
                        tracing::error!(account = %account.email, to = %address, error = %e, "Sieve redirect failed: kept in INBOX");
                        let inbox = role_mailbox(store, account.id, Role::Inbox)?;
                        store.append(inbox.id, body, &[], now)?;
                    }
                }
            }
            Action::Reply { to, message } => {
                let body = outcome.message(*message, incoming.message);
                match reply(store, engine, account, incoming, to, body, hops) {
                    Ok(q) => queued |= q,
                    Err(e) => {
                        tracing::error!(account = %account.email, %to, error = %e, "vacation reply failed")
                    }
                }
            }
            Action::Reject { reason, .. } => match reject(store, account, incoming, reason) {
                Ok(q) => queued |= q,
                Err(e) => {
                    tracing::error!(account = %account.email, error = %e, "rejection notice failed")
                }
            },
            Action::Remember { id, seconds } => {
                remember.push((id.clone(), now + Duration::from_secs(*seconds)));
            }
            Action::Keep { .. } | Action::FileInto { .. } => {}
        }
    }
    if let Err(e) = store.remember_sieve_ids(account.id, &remember, now) {
        tracing::error!(account = %account.email, error = %e, "cannot record Sieve vacation/duplicate ids");
    }
    Ok(queued)
}

/// The mailbox `fileinto` names: the special use first (RFC 8579), then the name,
/// created if `:create` (RFC 5490 §3.2) with missing parents; INBOX otherwise.
fn fileinto_target(
    store: &Store,
    account: &Account,
    name: &str,
    special_use: Option<&str>,
    create: bool,
) -> Result<store::Mailbox, Error> {
    if let Some(role) = special_use.and_then(role_of)
        && let Some(mailbox) = store.mailbox_by_role(account.id, role)?
    {
        return Ok(mailbox);
    }
    match store.mailbox(account.id, name) {
        Ok(Some(mailbox)) => return Ok(mailbox),
        Ok(None) if create => {
            let mut path = String::new();
            for part in name.split(store::DELIMITER) {
                if !path.is_empty() {
                    path.push(store::DELIMITER);
                }
                path.push_str(part);
                match store.create_mailbox(account.id, &path, None) {
                    Ok(_) | Err(store::Error::Exists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(mailbox) = store.mailbox(account.id, name)? {
                return Ok(mailbox);
            }
        }
        Ok(None) => {
            tracing::info!(account = %account.email, mailbox = %name, "fileinto a missing mailbox: kept in INBOX");
        }
        Err(e) => {
            tracing::info!(account = %account.email, mailbox = %name, error = %e, "fileinto an invalid mailbox name: kept in INBOX");
        }
    }
    role_mailbox(store, account.id, Role::Inbox)
}

/// Whether a message has come round: it already passed `account`, or made too many
/// local redirect hops (its `Delivered-To:` fields, RFC 9228).
fn is_loop(message: &[u8], account: &str, max_hops: usize) -> bool {
    let delivered_to = delivered_to(message);
    delivered_to.len() >= max_hops || delivered_to.iter().any(|a| a == account)
}

/// The addresses of a message's `Delivered-To:` fields, lower case.
fn delivered_to(message: &[u8]) -> Vec<String> {
    message::header::values(message, "Delivered-To")
        .into_iter()
        .map(|v| {
            v.trim_start_matches('<')
                .trim_end_matches('>')
                .to_ascii_lowercase()
        })
        .collect()
}

/// Sends a redirected copy on: locally through the target's own script, or through
/// the queue. A target that cannot take it keeps the message with the account.
fn redirect(
    store: &Store,
    engine: &sieve::Engine,
    account: &Account,
    incoming: &Incoming<'_>,
    address: &str,
    body: &[u8],
    hops: usize,
) -> Result<bool, Error> {
    let copy = [
        format!("Delivered-To: {}\r\n", account.email).into_bytes(),
        body.to_vec(),
    ]
    .concat();
    let sender = redirect_sender(store, incoming.envelope_from, account)?;
    let sent = send(store, engine, incoming, &sender, address, &copy, hops)?;
    match sent {
        Some(queued) => {
            tracing::info!(account = %account.email, to = %address, "Sieve redirect");
            Ok(queued)
        }
        None => {
            tracing::warn!(account = %account.email, to = %address, "Sieve redirect to an address that takes no mail: kept in INBOX");
            let inbox = role_mailbox(store, account.id, Role::Inbox)?;
            store.append(inbox.id, body, &[], SystemTime::now())?;
            Ok(false)
        }
    }
}

/// The envelope sender of a redirected copy (see the module docs).
fn redirect_sender(store: &Store, from: &str, account: &Account) -> Result<String, Error> {
    if from.is_empty() {
        return Ok(String::new());
    }
    let local = from
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .map(|d| store.domain(&d))
        .transpose()?
        .flatten()
        .is_some();
    Ok(if local {
        from.to_string()
    } else {
        account.email.clone()
    })
}

/// A vacation reply (RFC 5230 §5): only with a From: the account may use, signed,
/// from the null sender (§5.1 asks that replies not be answered automatically).
fn reply(
    store: &Store,
    engine: &sieve::Engine,
    account: &Account,
    incoming: &Incoming<'_>,
    to: &str,
    body: &[u8],
    hops: usize,
) -> Result<bool, Error> {
    let from: Vec<String> = message::author(body)
        .from
        .into_iter()
        .map(|m| m.address)
        .collect();
    let Some(full) = store.account_by_id(account.id)? else {
        return Ok(false);
    };
    for address in &from {
        if !crate::identity::may_send_as(store, &full, address)? {
            tracing::warn!(account = %account.email, from = %address, "vacation reply with a From: the account may not use: not sent");
            return Ok(false);
        }
    }
    let signatures =
        crate::identity::dkim_signatures(store, body).map_err(|e| Error::Signing(e.to_string()))?;
    let signed = [signatures.into_bytes(), body.to_vec()].concat();
    match send(store, engine, incoming, "", to, &signed, hops)? {
        Some(queued) => {
            tracing::info!(account = %account.email, %to, "vacation reply sent");
            Ok(queued)
        }
        None => {
            tracing::info!(account = %account.email, %to, "vacation reply to an address that takes no mail: not sent");
            Ok(false)
        }
    }
}

/// A `reject` that could not be refused in the dialogue: a notice to the sender.
fn reject(
    store: &Store,
    account: &Account,
    incoming: &Incoming<'_>,
    reason: &str,
) -> Result<bool, Error> {
    tracing::info!(account = %account.email, from = %incoming.envelope_from, "Sieve reject");
    let Some(notice) = super::notice::rejection(
        incoming.hostname,
        incoming.envelope_from,
        &account.email,
        reason,
        incoming.message,
    ) else {
        return Ok(false);
    };
    let signatures = crate::identity::report_signatures(store, &notice)
        .map_err(|e| Error::Signing(e.to_string()))?;
    let notice = [signatures.into_bytes(), notice].concat();
    match resolve(store, incoming.envelope_from)? {
        Resolution::Local(accounts) => {
            let ids: Vec<_> = accounts.into_iter().map(|(id, _)| id).collect();
            super::deliver_plain(store, &ids, &notice, false)?;
            Ok(false)
        }
        Resolution::NotLocal => {
            store.enqueue(
                store::NewQueued {
                    sender: String::new(),
                    recipients: vec![store::QueuedRecipient::new(incoming.envelope_from)],
                    ..store::NewQueued::default()
                },
                &notice,
            )?;
            Ok(true)
        }
        other => {
            tracing::info!(to = %incoming.envelope_from, ?other, "the rejection notice has nowhere to go");
            Ok(false)
        }
    }
}

/// Sends `body` from `sender` to `address`: local accounts get it through their
/// scripts at once; a remote address through the queue. None when the address takes
/// no mail; Some(queued) otherwise.
fn send(
    store: &Store,
    engine: &sieve::Engine,
    incoming: &Incoming<'_>,
    sender: &str,
    address: &str,
    body: &[u8],
    hops: usize,
) -> Result<Option<bool>, Error> {
    match resolve(store, address)? {
        Resolution::Local(accounts) => {
            let next = Incoming {
                message: body,
                envelope_from: sender,
                spam: incoming.spam,
                junk: incoming.junk,
                hostname: incoming.hostname,
            };
            let mut queued = false;
            for (id, email) in accounts {
                let target = Account { id, email };
                let outcome = if hops < engine.config().max_redirect_hops {
                    evaluate(store, engine, &target, address, &next)
                } else {
                    None
                };
                queued |= apply(store, engine, &target, &next, outcome, hops + 1)?;
            }
            Ok(Some(queued))
        }
        resolution @ (Resolution::NotLocal | Resolution::Forwarding(_)) => {
            let target = match resolution {
                Resolution::Forwarding(target) => target,
                _ => address.to_string(),
            };
            store.enqueue(
                store::NewQueued {
                    sender: sender.to_string(),
                    recipients: vec![store::QueuedRecipient::new(&target)],
                    smtputf8: !body.is_ascii() || !target.is_ascii(),
                    ..store::NewQueued::default()
                },
                body,
            )?;
            Ok(Some(true))
        }
        Resolution::UnknownUser | Resolution::OverQuota(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_are_seen_by_delivered_to() {
        let m = b"Delivered-To: a@example.org\r\nDelivered-To: <B@example.org>\r\nSubject: x\r\n\r\nx\r\n";
        assert_eq!(delivered_to(m), vec!["a@example.org", "b@example.org"]);
        assert!(is_loop(m, "b@example.org", 8));
        assert!(!is_loop(m, "c@example.org", 8));
        assert!(is_loop(m, "c@example.org", 2));
    }

    #[test]
    fn special_uses_map_to_roles() {
        assert_eq!(role_of("\\Junk"), Some(Role::Junk));
        assert_eq!(role_of("\\junk"), Some(Role::Junk));
        assert_eq!(role_of("\\Inbox"), None);
    }
}
