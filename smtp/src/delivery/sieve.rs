//! Delivery through each account's active Sieve script: the `sieve` crate runs the
//! script and returns actions; this module plans what they do as one
//! [`store::Batch`], which the caller commits with everything else the message makes.
//! Nothing is stored before that commit, and all of it is stored by it, so a
//! message is never delivered twice to anyone.
//!
//! - **keep** stores the message in INBOX, or in Junk when it is spam (the scanner's
//!   verdict or a DMARC quarantine); **fileinto** in the named mailbox (its special use
//!   first, created with `:create`, else INBOX); each mailbox gets the message once. A
//!   copy for an account that is over quota at the commit goes to the queue as a local
//!   delivery, retried and finally reported to the sender.
//! - **redirect** to a local address is planned at once through that account's script;
//!   to a remote address it goes through the outbound queue. The envelope sender is kept
//!   when it is null or in one of our domains (our SPF covers us); any other sender is
//!   rewritten to its SRS address in the account's domain ([`crate::srs`]), so SPF
//!   passes at the next hop and a bounce still reaches the original sender. Each redirected copy carries `Delivered-To: <account>`: a copy that comes
//!   back to an account it already passed, or has made `[sieve] max_redirect_hops`
//!   hops, is not redirected again but kept.
//! - **reject** refuses the message in the SMTP reply when every recipient's script
//!   rejects it; otherwise a rejection notice goes to the sender ([`super::notice`]).
//! - **vacation** replies go from the null sender, DKIM-signed, and only with a From
//!   the account may use; the reply and the record that it was sent commit together,
//!   so concurrent messages from one sender get one reply.
//! - A script that fails never loses the message: it is kept in INBOX and the error
//!   logged.

use std::time::{Duration, SystemTime};

use sieve::run::{Action, Delivery, Host, Outcome, Spam};
use store::{AccountId, Batch, Body, Role, Store};

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
    /// The message as it will be stored (trace and result headers added), in memory
    /// or spooled.
    pub message: Body<'a>,
    /// The envelope sender (`""` for the null sender).
    pub envelope_from: &'a str,
    /// The spam scanner's verdict, for `spamtest`.
    pub spam: Spam,
    /// Whether an implicit keep goes to Junk (spam verdict, DMARC quarantine).
    pub junk: bool,
    /// This server's name (rejection notices).
    pub hostname: &'a str,
    /// RFC 3461 ENVID and RET=FULL, for the report on a deferred local copy.
    pub env_id: Option<&'a str>,
    /// RFC 3461 RET=FULL.
    pub ret_full: bool,
    /// The sender is unproven (SPF did not pass, DMARC failed): nothing automatic goes
    /// back to it (no vacation reply, no rejection notice).
    pub unproven_sender: bool,
}

/// A message on its way through the plan: the delivered one, or a redirected copy.
#[derive(Debug, Clone)]
struct Msg<'m> {
    body: Body<'m>,
    envelope_from: String,
    spam: Spam,
    junk: bool,
    unproven: bool,
}

/// What the plan says of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Its copies and what the scripts send are in the batch.
    Deliver,
    /// Every recipient's script rejected the message: refuse it with this reason (the
    /// batch holds nothing of it).
    Refused(String),
}

/// Plans the delivery of one message into a [`Batch`].
pub struct Planner<'s, 'm> {
    store: &'s Store,
    engine: &'s sieve::Engine,
    hostname: &'s str,
    srs: &'s crate::srs::Srs,
    /// Redirects this message has caused so far, across hops.
    redirects: usize,
    env_id: Option<String>,
    ret_full: bool,
    now: SystemTime,
    /// What the message makes, committed by the caller.
    pub batch: Batch<'m>,
}

impl<'s, 'm> Planner<'s, 'm> {
    /// A planner writing into an empty batch.
    pub fn new(
        store: &'s Store,
        engine: &'s sieve::Engine,
        hostname: &'s str,
        srs: &'s crate::srs::Srs,
    ) -> Self {
        Planner {
            store,
            engine,
            hostname,
            srs,
            redirects: 0,
            env_id: None,
            ret_full: false,
            now: SystemTime::now(),
            batch: Batch::new(),
        }
    }

    /// Plans `incoming` for each recipient through its account's script. With
    /// `may_refuse`, a message every script rejects is not planned and the reason
    /// comes back for the SMTP reply (RFC 5429 §2.1: refusing in the dialogue is
    /// preferred).
    pub fn deliver(
        &mut self,
        recipients: &[Recipient],
        incoming: &Incoming<'m>,
        may_refuse: bool,
    ) -> Result<Planned, Error> {
        self.env_id = incoming.env_id.map(str::to_string);
        self.ret_full = incoming.ret_full;
        let msg = Msg {
            body: incoming.message.clone(),
            envelope_from: incoming.envelope_from.to_string(),
            spam: incoming.spam,
            junk: incoming.junk,
            unproven: incoming.unproven_sender,
        };
        self.redirects = redirect_count(&incoming.message.header());
        let mut plans = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let account = Account {
                id: recipient.account,
                email: recipient.email.clone(),
            };
            let outcome = self.evaluate(&account, &recipient.address, &msg);
            plans.push((account, recipient.address.clone(), outcome));
        }
        if may_refuse && !plans.is_empty() {
            let reasons: Vec<&str> = plans
                .iter()
                .filter_map(|(_, _, o)| o.as_ref().and_then(reject_reason))
                .collect();
            if reasons.len() == plans.len() {
                return Ok(Planned::Refused(reasons[0].to_string()));
            }
        }
        for (account, address, outcome) in plans {
            self.apply(&account, &address, &msg, outcome, 0)?;
        }
        Ok(Planned::Deliver)
    }

    /// Runs the account's active script; None when it has none. A script that no longer
    /// compiles (limits lowered since) keeps the message, logged.
    fn evaluate(&self, account: &Account, envelope_to: &str, msg: &Msg<'_>) -> Option<Outcome> {
        let store = self.store;
        let (name, text) = match store.active_sieve_script(account.id) {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(account = %account.email, error = %e, "cannot read the Sieve script: keeping the message");
                return None;
            }
        };
        let script = match self.engine.compile(&text) {
            Ok(script) => script,
            Err(e) => {
                tracing::warn!(account = %account.email, script = %name, error = %e, "the active Sieve script does not compile: keeping the message");
                return None;
            }
        };
        let host = StoreHost {
            store,
            account: account.id,
            now: self.now,
        };
        // A script reads the whole message: a spooled one is read into memory here
        // (bounded by the size limit), and only for accounts that have a script.
        let bytes = match msg.body.bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(account = %account.email, error = %e, "cannot read the message for the Sieve script: keeping it");
                return None;
            }
        };
        // sieve-rs reads the message with mail-parser, whose tree of nested messages
        // is recursive to build and drop: a message nested deeper than the MIME
        // walker's limit is kept without running the script.
        if message::Mime::parse(&bytes).too_deep() {
            tracing::warn!(account = %account.email, script = %name, "MIME structure nested too deep for a Sieve script: the message is kept in INBOX");
            return None;
        }
        let delivery = Delivery {
            message: &bytes,
            envelope_from: &msg.envelope_from,
            envelope_to,
            user_address: &account.email,
            spam: msg.spam,
        };
        let outcome = self.engine.run(&name, script, &delivery, &host);
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

    /// Plans a script's outcome for one account (None: no script, implicit keep).
    /// `hops` counts local redirects so far.
    fn apply(
        &mut self,
        account: &Account,
        envelope_to: &str,
        msg: &Msg<'m>,
        outcome: Option<Outcome>,
        hops: usize,
    ) -> Result<(), Error> {
        let store = self.store;
        let keep = || Outcome {
            actions: vec![Action::Keep {
                flags: Vec::new(),
                message: 0,
            }],
            ..Outcome::default()
        };
        let mut outcome = outcome.unwrap_or_else(keep);
        let looping = is_loop(
            &msg.body.header(),
            &account.email,
            self.engine.config().max_redirect_hops,
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

        // The copies the account keeps.
        let mut copies: Vec<Copy> = Vec::new();
        for action in &outcome.actions {
            let (mailbox, flags, message) = match action {
                Action::Keep { flags, message } => (
                    role_mailbox(store, account.id, target_role(msg.junk))?,
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
        for copy in &copies {
            let body = body_of(&outcome, copy.message, &msg.body);
            let flags = store::normalize_flags(&copy.flags).unwrap_or_else(|e| {
                tracing::warn!(account = %account.email, error = %e, "Sieve flags dropped");
                Vec::new()
            });
            let defer = store::NewQueued {
                sender: msg.envelope_from.clone(),
                recipients: vec![store::QueuedRecipient {
                    local: Some(store::LocalTarget {
                        account: account.id,
                        mailbox: copy.mailbox.id,
                        flags: flags.clone(),
                    }),
                    ..store::QueuedRecipient::new(envelope_to)
                }],
                smtputf8: !body.is_ascii(),
                env_id: self.env_id.clone(),
                ret_full: self.ret_full,
                no_reports: msg.unproven,
                ..store::NewQueued::default()
            };
            self.batch
                .append_or_defer(copy.mailbox.id, body, &flags, self.now, defer);
        }

        // Then what goes out: redirects, replies, rejection notices. What may not go
        // out is logged, and a redirect that may not is kept instead.
        let mut kept = !copies.is_empty();
        let mut last_remembered: Option<(String, u64)> = None;
        for action in &outcome.actions {
            match action {
                Action::Redirect { address, message } => {
                    let body = body_of(&outcome, *message, &msg.body);
                    let refusal = if self.redirects
                        >= self.engine.config().max_redirects_per_message
                    {
                        Some(format!(
                            "the message already caused {} redirects",
                            self.redirects
                        ))
                    } else if let Some(field) =
                        changed_protected_field(&msg.body.header(), &body.header())
                    {
                        Some(format!(
                            "the script changed the {field} field of the copy (editheader may not change who a redirected message is from, nor a signed field)"
                        ))
                    } else if !self.engine.take_generated(account.id) {
                        Some("the account's hourly allowance of generated mail is used up".into())
                    } else {
                        None
                    };
                    match refusal {
                        Some(why) => {
                            self.refused(
                                account,
                                "sieve-redirect-refused",
                                &format!(
                                    "redirect to <{address}> not made: {why}; the message is kept"
                                ),
                            );
                            if !kept {
                                let inbox = role_mailbox(self.store, account.id, Role::Inbox)?;
                                self.batch.append(inbox.id, msg.body.clone(), &[], self.now);
                                kept = true;
                            }
                        }
                        None => {
                            self.redirects += 1;
                            self.redirect(account, msg, address, body, hops)?;
                        }
                    }
                }
                Action::Reply { to, message } => {
                    let body = body_of(&outcome, *message, &msg.body);
                    let key = last_remembered.take();
                    if msg.unproven {
                        tracing::info!(account = %account.email, %to, "no vacation reply: the sender failed SPF and DMARC");
                    } else if !self.engine.take_generated(account.id) {
                        self.refused(account, "sieve-reply-refused", &format!("vacation reply to <{to}> not sent: the hourly allowance of generated mail is used up"));
                    } else {
                        self.reply(account, msg, to, body, key, hops)?;
                    }
                }
                Action::Reject { reason, .. } => {
                    if msg.unproven {
                        tracing::info!(account = %account.email, "no rejection notice: the sender failed SPF and DMARC");
                    } else if self.engine.take_generated(account.id) {
                        self.reject(account, msg, reason)?;
                    } else {
                        self.refused(account, "sieve-reply-refused", "rejection notice not sent: the hourly allowance of generated mail is used up");
                    }
                }
                Action::Remember { id, seconds } => {
                    // The id a vacation reply follows is remembered with the reply;
                    // any other (duplicate, RFC 7352) on its own.
                    if let Some((id, seconds)) = last_remembered.replace((id.clone(), *seconds)) {
                        self.remember(account, id, seconds);
                    }
                }
                Action::Keep { .. } | Action::FileInto { .. } => {}
            }
        }
        if let Some((id, seconds)) = last_remembered {
            self.remember(account, id, seconds);
        }
        Ok(())
    }

    /// Logs, in the serve log and the activity log, something a script asked for and
    /// did not get.
    fn refused(&self, account: &Account, action: &str, detail: &str) {
        tracing::warn!(account = %account.email, action, detail, "Sieve action refused");
        let event = store::AuditEvent {
            actor: account.email.clone(),
            action: action.to_string(),
            ip: None,
            detail: detail.to_string(),
        };
        if let Err(e) = self.store.log_event(&event) {
            tracing::error!(error = %e, "could not write a refused Sieve action to the activity log");
        }
    }

    fn remember(&mut self, account: &Account, id: String, seconds: u64) {
        self.batch.remember(store::Once {
            account: account.id,
            id,
            until: self.now + Duration::from_secs(seconds),
        });
    }

    /// Sends a redirected copy on: locally through the target's own script, or through
    /// the queue. A target that takes no mail leaves the message with the account.
    fn redirect(
        &mut self,
        account: &Account,
        msg: &Msg<'m>,
        address: &str,
        body: Body<'m>,
        hops: usize,
    ) -> Result<(), Error> {
        let copy = body.with_prefix(
            format!(
                "{REDIRECTS_FIELD}: {}\r\nDelivered-To: {}\r\n",
                self.redirects, account.email
            )
            .as_bytes(),
        );
        let sender = redirect_sender(self.store, self.srs, &msg.envelope_from, account)?;
        let next = Msg {
            body: copy,
            envelope_from: sender,
            spam: msg.spam,
            junk: msg.junk,
            unproven: msg.unproven,
        };
        if self.send(&next, address, hops)? {
            tracing::info!(account = %account.email, to = %address, "Sieve redirect");
        } else {
            tracing::warn!(account = %account.email, to = %address, "Sieve redirect to an address that takes no mail: kept in INBOX");
            let inbox = role_mailbox(self.store, account.id, Role::Inbox)?;
            self.batch.append(inbox.id, body, &[], self.now);
        }
        Ok(())
    }

    /// A vacation reply (RFC 5230 §5): only with a From: the account may use, signed,
    /// from the null sender (§5.1 asks that replies not be answered automatically).
    /// `key` is the id the script remembers for it: the reply goes only if no other
    /// message sent it first, decided at the commit.
    fn reply(
        &mut self,
        account: &Account,
        msg: &Msg<'m>,
        to: &str,
        body: Body<'m>,
        key: Option<(String, u64)>,
        hops: usize,
    ) -> Result<(), Error> {
        let store = self.store;
        let Some(full) = store.account_by_id(account.id)? else {
            return Ok(());
        };
        let body = body
            .bytes()
            .map_err(|e| Error::Store(store::Error::Corrupt(e.to_string())))?;
        if let Err(refusal) = crate::identity::check_originator(store, &full, &body)? {
            self.refused(
                account,
                "sieve-reply-refused",
                &format!("vacation reply to <{to}> not sent: {}", refusal.text()),
            );
            return Ok(());
        }
        if let Err(why) = check_reply_header(&body) {
            self.refused(
                account,
                "sieve-reply-refused",
                &format!("vacation reply to <{to}> not sent: {why}"),
            );
            return Ok(());
        }
        let signatures = match crate::identity::dkim_signatures(store, &body) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(account = %account.email, error = %e, "vacation reply not signed: not sent");
                return Ok(());
            }
        };
        let signed = Msg {
            body: Body::from([signatures.into_bytes(), body.to_vec()].concat()),
            envelope_from: String::new(),
            spam: msg.spam,
            junk: false,
            unproven: false,
        };
        if let Some((id, seconds)) = key {
            let seconds = seconds.max(self.engine.config().vacation_min_seconds);
            self.batch.begin_once(store::Once {
                account: account.id,
                id,
                until: self.now + Duration::from_secs(seconds),
            });
        }
        let sent = self.send(&signed, to, hops);
        self.batch.end_once();
        if sent? {
            tracing::info!(account = %account.email, %to, "vacation reply");
        } else {
            tracing::info!(account = %account.email, %to, "vacation reply to an address that takes no mail: not sent");
        }
        Ok(())
    }

    /// A `reject` that could not be refused in the dialogue: a notice to the sender.
    fn reject(&mut self, account: &Account, msg: &Msg<'m>, reason: &str) -> Result<(), Error> {
        tracing::info!(account = %account.email, from = %msg.envelope_from, "Sieve reject");
        let Some(notice) = super::notice::rejection(
            self.hostname,
            &msg.envelope_from,
            &account.email,
            reason,
            &msg.body.header(),
        ) else {
            return Ok(());
        };
        let signatures = crate::identity::report_signatures(self.store, &notice)
            .map_err(|e| Error::Signing(e.to_string()))?;
        let notice: Body<'m> = Body::from([signatures.into_bytes(), notice].concat());
        match resolve(self.store, &msg.envelope_from)? {
            Resolution::Targets { local, remote } => {
                let ids: Vec<_> = local.into_iter().map(|(id, _)| id).collect();
                super::plan_plain(self.store, &mut self.batch, &ids, &notice, false)?;
                if !remote.is_empty() {
                    self.batch.enqueue(
                        store::NewQueued {
                            sender: String::new(),
                            recipients: remote
                                .iter()
                                .map(|r| store::QueuedRecipient::new(r))
                                .collect(),
                            ..store::NewQueued::default()
                        },
                        notice,
                    );
                }
            }
            Resolution::NotLocal => {
                self.batch.enqueue(
                    store::NewQueued {
                        sender: String::new(),
                        recipients: vec![store::QueuedRecipient::new(&msg.envelope_from)],
                        ..store::NewQueued::default()
                    },
                    notice,
                );
            }
            other => {
                tracing::info!(to = %msg.envelope_from, ?other, "the rejection notice has nowhere to go");
            }
        }
        Ok(())
    }

    /// Sends `msg` to `address`: local accounts get it through their scripts, a
    /// remote address through the queue. False when the address takes no mail.
    fn send(&mut self, msg: &Msg<'m>, address: &str, hops: usize) -> Result<bool, Error> {
        match resolve(self.store, address)? {
            Resolution::Targets { local, remote } => {
                for (id, email) in local {
                    let target = Account { id, email };
                    let outcome = if hops < self.engine.config().max_redirect_hops {
                        self.evaluate(&target, address, msg)
                    } else {
                        None
                    };
                    self.apply(&target, address, msg, outcome, hops + 1)?;
                }
                if !remote.is_empty() {
                    self.enqueue_to(msg, remote);
                }
                Ok(true)
            }
            Resolution::NotLocal => {
                self.enqueue_to(msg, vec![address.to_string()]);
                Ok(true)
            }
            Resolution::UnknownUser | Resolution::OverQuota(_) => Ok(false),
        }
    }

    fn enqueue_to(&mut self, msg: &Msg<'m>, recipients: Vec<String>) {
        let smtputf8 = !msg.body.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        self.batch.enqueue(
            store::NewQueued {
                no_reports: msg.unproven,
                sender: msg.envelope_from.clone(),
                recipients: recipients
                    .iter()
                    .map(|r| store::QueuedRecipient::new(r))
                    .collect(),
                smtputf8,
                ..store::NewQueued::default()
            },
            msg.body.clone(),
        );
    }
}

/// The field that counts the redirects one message caused, across hops.
const REDIRECTS_FIELD: &str = "Postern-Redirects";

/// The redirect count a message carries (the largest of its `Postern-Redirects:`).
fn redirect_count(message: &[u8]) -> usize {
    message::header::values(message, REDIRECTS_FIELD)
        .iter()
        .filter_map(|v| v.parse::<usize>().ok())
        .max()
        .unwrap_or(0)
}

/// The first field a script changed in a copy that it may not: who the message is
/// from (From, Sender, Reply-To) or any field the message's DKIM signatures cover.
fn changed_protected_field(original: &[u8], copy: &[u8]) -> Option<String> {
    let mut protected: Vec<String> = vec!["from".into(), "sender".into(), "reply-to".into()];
    for sig in message::header::values(original, "DKIM-Signature") {
        let Some(h) = sig
            .split(';')
            .map(str::trim)
            .find_map(|tag| tag.strip_prefix("h="))
        else {
            continue;
        };
        for name in h.split(':') {
            let name = name.trim().to_ascii_lowercase();
            if !name.is_empty() && !protected.contains(&name) {
                protected.push(name);
            }
        }
    }
    let fields = |m: &[u8], name: &str| -> Vec<Vec<u8>> {
        message::header::fields(m)
            .filter(|f| f.is(name))
            .map(|f| f.value.to_vec())
            .collect()
    };
    protected
        .into_iter()
        .find(|name| fields(original, name) != fields(copy, name))
}

/// A vacation reply's header holds only what sieve-rs writes there (RFC 5230 §5):
/// a value with a line break in it (from a variable, say) would have added fields or
/// started the body early.
fn check_reply_header(reply: &[u8]) -> Result<(), String> {
    const ONCE: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];
    const ALLOWED: [&str; 9] = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Auto-Submitted",
        "MIME-Version",
    ];
    let mut auto_submitted = 0;
    let mut content_type = 0;
    for span in message::header::spans(reply) {
        let Some(field) = span.field else {
            return Err("its header has a line that is not a field".into());
        };
        if field.is("Auto-Submitted") {
            auto_submitted += 1;
        }
        if field.is("Content-Type") {
            content_type += 1;
        }
        let name = String::from_utf8_lossy(field.name).into_owned();
        let content = name.to_ascii_lowercase().starts_with("content-");
        if !content && !ALLOWED.iter().any(|a| a.eq_ignore_ascii_case(&name)) {
            return Err(format!("its header has a {name}: field"));
        }
    }
    for name in ONCE {
        let n = message::header::fields(reply)
            .filter(|f| f.is(name))
            .count();
        if n != 1 {
            return Err(format!("its header has {n} {name}: fields"));
        }
    }
    if auto_submitted != 1 || content_type > 1 {
        return Err("its header was changed by a value with a line break".into());
    }
    Ok(())
}

/// The body of message `index` of an outcome (0: the delivered one).
fn body_of<'m>(outcome: &Outcome, index: usize, original: &Body<'m>) -> Body<'m> {
    match outcome.messages.get(index) {
        Some(made) if index > 0 => Body::from(made.clone()),
        _ => original.clone(),
    }
}

/// The reason of the script's `reject`, if it took one.
fn reject_reason(outcome: &Outcome) -> Option<&str> {
    outcome.actions.iter().find_map(|a| match a {
        Action::Reject { reason, .. } => Some(reason.as_str()),
        _ => None,
    })
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

/// The envelope sender of a redirected copy (see the module docs).
fn redirect_sender(
    store: &Store,
    srs: &crate::srs::Srs,
    from: &str,
    account: &Account,
) -> Result<String, Error> {
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
    let domain = account.email.rsplit_once('@').map_or("", |(_, d)| d);
    Ok(if local {
        from.to_string()
    } else {
        srs.forward(from, domain)
    })
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
    fn who_a_redirected_copy_is_from_cannot_change() {
        let original = b"DKIM-Signature: v=1; d=a.test; h=From:Subject:To; b=x\r\nFrom: ann@a.test\r\nSubject: hi\r\nX-Note: 1\r\n\r\nbody\r\n";
        assert_eq!(changed_protected_field(original, original), None);
        let note = b"DKIM-Signature: v=1; d=a.test; h=From:Subject:To; b=x\r\nFrom: ann@a.test\r\nSubject: hi\r\nX-Note: 2\r\n\r\nbody\r\n";
        assert_eq!(changed_protected_field(original, note), None);
        let subject = b"DKIM-Signature: v=1; d=a.test; h=From:Subject:To; b=x\r\nFrom: ann@a.test\r\nSubject: changed\r\n\r\nbody\r\n";
        assert_eq!(
            changed_protected_field(original, subject).as_deref(),
            Some("subject")
        );
        // Adding a signed field that was absent (To) counts as a change too.
        let to = b"To: x@y\r\nDKIM-Signature: v=1; d=a.test; h=From:Subject:To; b=x\r\nFrom: ann@a.test\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(changed_protected_field(original, to).as_deref(), Some("to"));
        let reply_to = b"Reply-To: evil@x\r\nDKIM-Signature: v=1; d=a.test; h=From:Subject:To; b=x\r\nFrom: ann@a.test\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(
            changed_protected_field(original, reply_to).as_deref(),
            Some("reply-to")
        );
    }

    #[test]
    fn a_vacation_reply_header_is_what_sieve_rs_writes() {
        let good = b"From: bob@example.org\r\nTo: ann@remote.test\r\nSubject: Away\r\nIn-Reply-To: <1@r>\r\nReferences: <1@r>\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@h>\r\nAuto-Submitted: auto-replied\r\nContent-type: text/plain; charset=utf-8\r\n\r\nI am away.";
        assert_eq!(check_reply_header(good), Ok(()));
        let injected = b"From: bob@example.org\r\nTo: ann@remote.test\r\nSubject: Away\r\nBcc: victim@x\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@h>\r\nAuto-Submitted: auto-replied\r\n\r\nx";
        assert!(check_reply_header(injected).unwrap_err().contains("Bcc"));
        let html = b"From: bob@example.org\r\nTo: ann@remote.test\r\nSubject: Away\r\nContent-Type: text/html\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@h>\r\nAuto-Submitted: auto-replied\r\nContent-type: text/plain; charset=utf-8\r\n\r\nx";
        assert!(check_reply_header(html).is_err());
        let early_body = b"From: bob@example.org\r\nTo: ann@remote.test\r\nSubject: Away\r\n\r\n<html>\r\nDate: x\r\nAuto-Submitted: auto-replied\r\n\r\nx";
        assert!(check_reply_header(early_body).is_err());
        assert_eq!(
            redirect_count(b"Postern-Redirects: 3\r\nPostern-Redirects: 5\r\n\r\n"),
            5
        );
    }

    #[test]
    fn special_uses_map_to_roles() {
        assert_eq!(role_of("\\Junk"), Some(Role::Junk));
        assert_eq!(role_of("\\junk"), Some(Role::Junk));
        assert_eq!(role_of("\\Inbox"), None);
    }
}
