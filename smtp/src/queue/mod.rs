//! The outbound queue: messages for remote recipients, stored durably in the store and
//! delivered by a background worker. Each attempt resolves the recipients' domains
//! ([`route`]), talks SMTP to their hosts ([`client`]), and records what became of
//! every recipient before anything else happens, so a crash never makes us forget a
//! delivery. Temporary failures are retried with exponential backoff up to
//! `[queue] max_age_seconds`; permanent failures and expiry produce one RFC 3464
//! report ([`dsn`]) to the sender. Domains that publish an MTA-STS policy
//! ([`mta_sts`]) get their mail only over verified TLS to the hosts they name.

pub mod client;
pub mod dsn;
pub mod mta_sts;
pub mod route;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use hickory_resolver::TokioResolver;
use store::{Change, QueueId, QueuedMessage, RecipientState, Store};
use tokio::sync::{Notify, Semaphore};

use crate::config::QueueConfig;
use client::{Attempt, HostError, Outcome, TlsPolicy};
use route::Destination;

/// The longest the worker sleeps before looking at the queue again.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// The outbound queue's worker.
pub struct Queue {
    store: Arc<Store>,
    config: QueueConfig,
    hostname: String,
    resolver: TokioResolver,
    wake: Notify,
    busy: Mutex<HashSet<QueueId>>,
    slots: Semaphore,
    /// Verifies certificates where they must be valid (MTA-STS, REQUIRETLS, the relay).
    verified: tokio_rustls::TlsConnector,
    sts: mta_sts::Sts,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("hostname", &self.hostname)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What became of one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Result1 {
    Delivered(String),
    Temporary(String),
    Permanent {
        status: String,
        reply: String,
        remote: Option<String>,
    },
}

impl Queue {
    /// A worker for `store`'s queue; `resolver` answers MX, address and MTA-STS
    /// lookups. Fails when `[queue] ca_file` cannot be read.
    pub fn new(
        store: Arc<Store>,
        config: QueueConfig,
        hostname: String,
        resolver: TokioResolver,
    ) -> Result<Arc<Queue>, String> {
        let slots = Semaphore::new(config.concurrency.max(1));
        let verified = client::verifying_connector(&config.ca_file)?;
        let sts = mta_sts::Sts::new(store.clone(), resolver.clone(), verified.clone());
        Ok(Arc::new(Queue {
            store,
            config,
            hostname,
            resolver,
            wake: Notify::new(),
            busy: Mutex::new(HashSet::new()),
            slots,
            verified,
            sts,
        }))
    }

    /// Makes the worker look at the queue now (a message was queued or retried).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the worker until `stop` completes. Deliveries in flight are simply
    /// abandoned at shutdown: their state is on disk and they are retried at the next
    /// start.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut changes = self.store.subscribe();
        loop {
            let next = self.dispatch().await;
            let idle = next
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .map_or(MAX_IDLE, |d| d.min(MAX_IDLE));
            tokio::select! {
                () = tokio::time::sleep(idle) => {}
                () = self.wake.notified() => {}
                change = changes.recv() => {
                    // Another process (the CLI) queued or retried something; a lag
                    // means we missed some changes: look anyway.
                    if matches!(change, Ok(ref c) if *c != Change::Queue) {
                        continue;
                    }
                }
                () = &mut stop => break,
            }
        }
    }

    /// Starts an attempt for every due message not already in flight; returns when the
    /// next one not yet due will be.
    async fn dispatch(self: &Arc<Self>) -> Option<SystemTime> {
        let store = self.store.clone();
        let queued = match tokio::task::spawn_blocking(move || store.queued()).await {
            Ok(Ok(q)) => q,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the queue");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "queue scan failed");
                return None;
            }
        };
        let now = SystemTime::now();
        let mut next: Option<SystemTime> = None;
        for message in queued {
            // Also for a message whose recipients are all final but whose report
            // could not be delivered yet: it waits for its time like any other.
            if message.next_attempt > now {
                next = Some(next.map_or(message.next_attempt, |n| n.min(message.next_attempt)));
                continue;
            }
            if !lock(&self.busy).insert(message.id) {
                continue;
            }
            let queue = self.clone();
            tokio::spawn(async move {
                let id = message.id;
                queue.attempt(id).await;
                lock(&queue.busy).remove(&id);
                // Its next attempt may be due before the worker's current sleep ends.
                queue.wake();
            });
        }
        next
    }

    /// One attempt at a queued message.
    async fn attempt(self: &Arc<Self>, id: QueueId) {
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let Some(message) = store.queued_message(id)? else {
                return Ok(None);
            };
            let body = store.read_queued_body(&message)?;
            Ok::<_, store::Error>(Some((message, body)))
        })
        .await;
        let (mut message, body) = match loaded {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::error!(id, error = %e, "cannot load a queued message");
                return;
            }
            Err(e) => {
                tracing::error!(id, error = %e, "loading a queued message failed");
                return;
            }
        };
        if message.is_pending() {
            // Local deliveries that waited for room in a mailbox: each stored and
            // marked delivered in one commit.
            for i in 0..message.recipients.len() {
                let r = &message.recipients[i];
                if r.state != RecipientState::Pending || r.local.is_none() {
                    continue;
                }
                match self.deliver_local(&message, &body, i).await {
                    Some(Result1::Delivered(reply)) => {
                        record(&mut message, i, Result1::Delivered(reply));
                    }
                    Some(result) => {
                        record(&mut message, i, result);
                        if !self.save(&message).await {
                            return;
                        }
                    }
                    None => return,
                }
            }
            for (domain, indices) in self.groups(&message) {
                let results = self.deliver_group(&message, &body, &domain, &indices).await;
                for (i, result) in indices.iter().zip(results) {
                    record(&mut message, *i, result);
                }
                // Saved before anything else, so a crash never repeats a delivery.
                if !self.save(&message).await {
                    return;
                }
            }
        }
        self.settle(message, body).await;
    }

    /// The pending recipients by destination: one group per domain, or one group in
    /// all through the relay.
    fn groups(&self, message: &QueuedMessage) -> BTreeMap<String, Vec<usize>> {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in message.recipients.iter().enumerate() {
            if r.state != RecipientState::Pending || r.local.is_some() {
                continue;
            }
            let key = if self.config.relay.is_empty() {
                r.address
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            groups.entry(key).or_default().push(i);
        }
        groups
    }

    /// Delivers to the recipients `indices` of `domain`, trying its hosts in order.
    async fn deliver_group(
        &self,
        message: &QueuedMessage,
        body: &[u8],
        domain: &str,
        indices: &[usize],
    ) -> Vec<Result1> {
        let all = |r: Result1| vec![r; indices.len()];
        let (hosts, port, tls, credentials) = if self.config.relay.is_empty() {
            let mut tls = TlsPolicy::Opportunistic;
            let hosts = match route::destination(&self.resolver, domain).await {
                Destination::Hosts(h) => match self.sts.policy(domain).await {
                    Some(policy) => match self.apply_sts(message.id, domain, &policy, h) {
                        Ok((hosts, enforced)) => {
                            if enforced {
                                tls = TlsPolicy::Verified;
                            }
                            hosts.into_iter().map(|h| (h, None)).collect()
                        }
                        Err(text) => return all(Result1::Temporary(text)),
                    },
                    None => h.into_iter().map(|h| (h, None)).collect(),
                },
                Destination::Literal(ip) => vec![(ip.to_string(), Some(ip))],
                Destination::Refused(status, reply) => {
                    return all(Result1::Permanent {
                        status: status.into(),
                        reply,
                        remote: None,
                    });
                }
                Destination::Failed(text) => return all(Result1::Temporary(text)),
            };
            (hosts, self.config.mx_port, tls, None)
        } else {
            let Some((host, port)) = parse_relay(&self.config.relay) else {
                return all(Result1::Temporary(format!(
                    "[queue] relay {:?} is not host:port",
                    self.config.relay
                )));
            };
            let literal = host.parse::<IpAddr>().ok();
            let tls = if self.config.relay_verify_certificate {
                TlsPolicy::Verified
            } else {
                TlsPolicy::Unverified
            };
            let credentials = (!self.config.relay_username.is_empty()).then_some((
                self.config.relay_username.as_str(),
                self.config.relay_password.expose(),
            ));
            (vec![(host, literal)], port, tls, credentials)
        };
        let recipients: Vec<(String, Option<String>, Option<String>)> = indices
            .iter()
            .map(|&i| {
                let r = &message.recipients[i];
                (r.address.clone(), r.notify.clone(), r.orcpt.clone())
            })
            .collect();
        let mut last_error = String::from("no host could be reached");
        let mut unsuitable: Option<(String, &'static str)> = None;
        let mut transient = false;
        for (host, literal) in &hosts {
            let addrs = match literal {
                Some(ip) => vec![*ip],
                None => match route::addresses(&self.resolver, host).await {
                    Ok(a) => a,
                    Err(e) => {
                        last_error = e;
                        transient = true;
                        continue;
                    }
                },
            };
            for ip in addrs {
                let attempt = Attempt {
                    hostname: &self.hostname,
                    host,
                    addr: SocketAddr::new(ip, port),
                    tls,
                    verified: &self.verified,
                    credentials,
                    timeout: Duration::from_secs(self.config.timeout_seconds.max(1)),
                    sender: &message.sender,
                    recipients: &recipients,
                    message: body,
                    require_tls: message.require_tls,
                    smtputf8: message.smtputf8,
                    env_id: message.env_id.as_deref(),
                    ret_full: message.ret_full,
                };
                let mut result = client::deliver(&attempt, false).await;
                if let Err(HostError::TlsFailed(e)) = &result {
                    tracing::info!(id = message.id, error = %e, "TLS failed: trying again without TLS");
                    result = client::deliver(&attempt, true).await;
                }
                match result {
                    Ok(outcomes) => {
                        return outcomes
                            .into_iter()
                            .map(|o| match o {
                                Outcome::Delivered(reply) => Result1::Delivered(reply),
                                Outcome::Temporary(text) => Result1::Temporary(text),
                                Outcome::Permanent(status, reply) => Result1::Permanent {
                                    status,
                                    reply,
                                    remote: Some(host.clone()),
                                },
                            })
                            .collect();
                    }
                    Err(HostError::Permanent(status, reply)) => {
                        return all(Result1::Permanent {
                            status,
                            reply,
                            remote: Some(host.clone()),
                        });
                    }
                    Err(HostError::Unsuitable(text, status)) => {
                        last_error = text.clone();
                        unsuitable = Some((text, status));
                        break;
                    }
                    Err(HostError::Next(text) | HostError::TlsFailed(text)) => {
                        last_error = text;
                        transient = true;
                    }
                }
            }
        }
        match unsuitable {
            // Every host was reached and none can take this message as it must be sent.
            Some((reply, status)) if !transient => all(Result1::Permanent {
                status: status.into(),
                reply,
                remote: None,
            }),
            _ => all(Result1::Temporary(last_error)),
        }
    }

    /// The MX hosts an MTA-STS policy lets us use, and whether TLS must be verified
    /// with them; an error text when it leaves none (RFC 8461 §5.1: try again later).
    fn apply_sts(
        &self,
        id: QueueId,
        domain: &str,
        policy: &mta_sts::Policy,
        hosts: Vec<String>,
    ) -> Result<(Vec<String>, bool), String> {
        match policy.mode {
            mta_sts::Mode::None => Ok((hosts, false)),
            mta_sts::Mode::Testing => {
                for host in hosts.iter().filter(|h| !policy.matches(h)) {
                    tracing::warn!(id, domain, host, patterns = ?policy.mx, "MTA-STS (testing): this MX host is not in the policy");
                }
                Ok((hosts, false))
            }
            mta_sts::Mode::Enforce => {
                let (allowed, refused): (Vec<String>, Vec<String>) =
                    hosts.into_iter().partition(|h| policy.matches(h));
                for host in &refused {
                    tracing::warn!(id, domain, host, patterns = ?policy.mx, "MTA-STS: skipping an MX host the policy does not name");
                }
                if allowed.is_empty() {
                    return Err(format!(
                        "MTA-STS: no MX host of {domain} ({}) matches its policy (mx: {})",
                        refused.join(", "),
                        policy.mx.join(", ")
                    ));
                }
                Ok((allowed, true))
            }
        }
    }

    /// Saves the message's state; false if it can no longer be saved (dropped).
    async fn save(&self, message: &QueuedMessage) -> bool {
        let store = self.store.clone();
        let copy = message.clone();
        match tokio::task::spawn_blocking(move || store.update_queued(&copy)).await {
            Ok(Ok(())) => true,
            Ok(Err(store::Error::NotFound(_))) => {
                tracing::info!(id = message.id, "queued message dropped during delivery");
                false
            }
            Ok(Err(e)) => {
                tracing::error!(id = message.id, error = %e, "cannot save a queued message's state");
                false
            }
            Err(e) => {
                tracing::error!(id = message.id, error = %e, "saving a queued message failed");
                false
            }
        }
    }

    /// After an attempt: schedule the next one, or expire the message, or, when
    /// nothing is pending any more, report failures to the sender and remove it.
    async fn settle(&self, mut message: QueuedMessage, body: Vec<u8>) {
        let now = SystemTime::now();
        if message.is_pending() {
            message.attempts = message.attempts.saturating_add(1);
            let age = now.duration_since(message.created).unwrap_or_default();
            if age < Duration::from_secs(self.config.max_age_seconds) {
                let delay = self.backoff(message.attempts);
                message.next_attempt = now + delay;
                tracing::info!(
                    id = message.id,
                    attempts = message.attempts,
                    retry_in_seconds = delay.as_secs(),
                    "delivery deferred"
                );
                self.save(&message).await;
                return;
            }
            for r in &mut message.recipients {
                if r.state == RecipientState::Pending {
                    let last = r.last_error.clone().unwrap_or_default();
                    r.state = RecipientState::Failed {
                        status: "4.4.7".into(),
                        reply: format!("delivery time expired; last error: {last}"),
                        remote: None,
                    };
                }
            }
            if !self.save(&message).await {
                return;
            }
        }
        // The report and the removal of the entry commit together: a crash between
        // them can neither lose the report nor send it twice.
        let report = if message.no_reports {
            tracing::info!(
                id = message.id,
                "no failure report: the sender failed SPF and DMARC"
            );
            None
        } else {
            dsn::build(&self.hostname, &message, &body)
        };
        let store = self.store.clone();
        let hostname = self.hostname.clone();
        let id = message.id;
        let sender = message.sender.clone();
        let had_report = report.is_some();
        let done = tokio::task::spawn_blocking(move || {
            let mut batch = store::Batch::new();
            let mut queued = false;
            if let Some(report) = report {
                queued = plan_report(&store, &mut batch, &hostname, &sender, report)
                    .map_err(|e| e.to_string())?;
            }
            batch.remove_queued(id);
            match store.commit(batch) {
                Ok(_) => Ok(Some(queued)),
                // Dropped by an admin meanwhile: nothing to report.
                Err(store::Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match done {
            Ok(Some(queued)) => {
                if had_report {
                    tracing::info!(id, to = %message.sender, "failure report sent");
                }
                if queued {
                    self.wake();
                }
                tracing::info!(id, "queued message done");
            }
            Ok(None) => {
                tracing::info!(id, "queued message dropped meanwhile: no report");
            }
            Err(e) => {
                // The message stays queued (all recipients final): the report is tried
                // again later rather than lost.
                tracing::error!(id, error = %e, "cannot deliver the failure report; keeping the message");
                message.next_attempt = now + self.backoff(1);
                self.save(&message).await;
            }
        }
    }

    /// Stores a waiting local copy in its mailbox (INBOX if that mailbox is gone) and
    /// marks its recipient delivered, in one commit. None when the entry was dropped
    /// or cannot be saved.
    async fn deliver_local(
        &self,
        message: &QueuedMessage,
        body: &[u8],
        i: usize,
    ) -> Option<Result1> {
        let store = self.store.clone();
        let mut done = message.clone();
        let body = body.to_vec();
        let result = tokio::task::spawn_blocking(move || {
            let r = done.recipients.get(i)?.clone();
            let target = r.local.clone()?;
            let mailbox = match store.mailbox_by_id(target.mailbox) {
                Ok(Some(m)) if m.account == target.account => m,
                Ok(_) => match store.mailbox_by_role(target.account, store::Role::Inbox) {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        return Some(Ok(Result1::Permanent {
                            status: "5.1.1".into(),
                            reply: format!("the account of <{}> no longer exists", r.address),
                            remote: None,
                        }));
                    }
                    Err(e) => return Some(Err(e)),
                },
                Err(e) => return Some(Err(e)),
            };
            let reply = format!("stored in {} of <{}>", mailbox.name, r.address);
            done.recipients[i].state = RecipientState::Delivered {
                reply: reply.clone(),
            };
            let mut batch = store::Batch::new();
            batch.append(mailbox.id, &body[..], &target.flags, SystemTime::now());
            batch.update_queued(done);
            Some(match store.commit(batch) {
                Ok(_) => Ok(Result1::Delivered(reply)),
                Err(store::Error::OverQuota { .. }) => Ok(Result1::Temporary(format!(
                    "4.2.2 the mailbox of <{}> is full",
                    r.address
                ))),
                Err(e) => Err(e),
            })
        })
        .await;
        match result {
            Ok(Some(Ok(r))) => Some(r),
            Ok(Some(Err(store::Error::NotFound(_)))) => {
                tracing::info!(id = message.id, "queued message dropped during delivery");
                None
            }
            Ok(Some(Err(e))) => Some(Result1::Temporary(format!("local delivery failed: {e}"))),
            Ok(None) => None,
            Err(e) => Some(Result1::Temporary(format!("local delivery failed: {e}"))),
        }
    }

    /// The wait before attempt `attempts + 1`: doubling from the first delay.
    fn backoff(&self, attempts: u32) -> Duration {
        let first = self.config.retry_first_seconds.max(1);
        let max = self.config.retry_max_seconds.max(first);
        let factor = 1u64 << attempts.saturating_sub(1).min(30);
        Duration::from_secs(first.saturating_mul(factor).min(max))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records one recipient's result.
fn record(message: &mut QueuedMessage, i: usize, result: Result1) {
    let id = message.id;
    let Some(r) = message.recipients.get_mut(i) else {
        return;
    };
    match result {
        Result1::Delivered(reply) => {
            common::metrics::inc("postern_deliveries_total", Some(("result", "delivered")));
            tracing::info!(id, to = %r.address, %reply, "delivered");
            r.state = RecipientState::Delivered { reply };
        }
        Result1::Temporary(text) => {
            common::metrics::inc("postern_deliveries_total", Some(("result", "deferred")));
            tracing::info!(id, to = %r.address, error = %text, "temporary failure");
            r.last_error = Some(text);
        }
        Result1::Permanent {
            status,
            reply,
            remote,
        } => {
            common::metrics::inc("postern_deliveries_total", Some(("result", "failed")));
            tracing::info!(id, to = %r.address, %status, %reply, "permanent failure");
            r.state = RecipientState::Failed {
                status,
                reply,
                remote,
            };
        }
    }
}

/// Plans a failure report to `sender`: into the local accounts it reaches, else to
/// the queue (from `<>`). Returns whether it went to the queue.
fn plan_report(
    store: &Store,
    batch: &mut store::Batch<'static>,
    hostname: &str,
    sender: &str,
    report: Vec<u8>,
) -> Result<bool, String> {
    match crate::delivery::resolve(store, sender).map_err(|e| e.to_string())? {
        crate::delivery::Resolution::Targets { local, remote } => {
            let ids: Vec<_> = local.into_iter().map(|(id, _)| id).collect();
            let full = [received(hostname).into_bytes(), report.clone()].concat();
            crate::delivery::plan_plain(store, batch, &ids, &full.into(), false)
                .map_err(|e| e.to_string())?;
            if remote.is_empty() {
                return Ok(false);
            }
            batch.enqueue(
                store::NewQueued {
                    recipients: remote
                        .iter()
                        .map(|r| store::QueuedRecipient::new(r))
                        .collect(),
                    ..store::NewQueued::default()
                },
                report,
            );
            Ok(true)
        }
        crate::delivery::Resolution::NotLocal => {
            batch.enqueue(
                store::NewQueued {
                    recipients: vec![store::QueuedRecipient::new(sender)],
                    ..store::NewQueued::default()
                },
                report,
            );
            Ok(true)
        }
        other => Err(format!("the sender <{sender}> cannot take mail: {other:?}")),
    }
}

/// `host:port`, `[v6]:port`; the port defaults to 25.
fn parse_relay(relay: &str) -> Option<(String, u16)> {
    let relay = relay.trim();
    if let Some(rest) = relay.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 25,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match relay.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None if !relay.is_empty() => Some((relay.to_string(), 25)),
        None => None,
    }
}

/// RFC 3461 §4 xtext: `+XX` for `+`, `=`, and anything outside `!`..`~`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The trace header of a report we make ourselves.
fn received(hostname: &str) -> String {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    format!(
        "Received: by {hostname} (Postern) id {};\r\n\t{}\r\n",
        crate::session::queue_id(),
        mail_parser::DateTime::from_timestamp(now).to_rfc822()
    )
}

#[cfg(test)]
mod tests {
    use super::{parse_relay, xtext};

    #[test]
    fn xtext_encodes() {
        assert_eq!(
            xtext("rfc822;a+b=c@x.example"),
            "rfc822;a+2Bb+3Dc@x.example"
        );
        assert_eq!(xtext("a b"), "a+20b");
    }

    #[test]
    fn relay_addresses() {
        assert_eq!(
            parse_relay("smtp.example:587"),
            Some(("smtp.example".into(), 587))
        );
        assert_eq!(
            parse_relay("smtp.example"),
            Some(("smtp.example".into(), 25))
        );
        assert_eq!(parse_relay("[::1]:2525"), Some(("::1".into(), 2525)));
        assert_eq!(parse_relay("127.0.0.1:25"), Some(("127.0.0.1".into(), 25)));
        assert_eq!(parse_relay("a:b"), None);
        assert_eq!(parse_relay(""), None);
    }
}
