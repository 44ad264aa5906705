//! DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030): receiving the message, and the end of
//! the transaction: checks, the Received header, durable delivery, then `250`.

use smtp_proto::request::receiver::{BdatReceiver, DataReceiver};

use super::{Input, Session, Transaction, queue_id, reply, spool};
use crate::delivery;
use crate::inbound::auth_results::DmarcAction;

impl Session {
    /// DATA: after 354 the message follows, ending with CRLF.CRLF.
    pub(super) fn handle_data(&mut self) -> Vec<u8> {
        match &self.transaction {
            None => reply(503, "5.5.1", "Send MAIL first"),
            Some(t) if t.recipients.is_empty() => reply(554, "5.5.1", "No valid recipients"),
            Some(t) if t.spool.len(&t.body) > 0 => {
                reply(503, "5.5.1", "BDAT in progress: finish it with BDAT LAST")
            }
            Some(_) => {
                self.start_data_clock();
                self.input = Input::Data(data_receiver());
                reply(354, "2.0.0", "Send the message, end with <CRLF>.<CRLF>")
            }
        }
    }

    /// BDAT n [LAST]: the chunk is read whatever happens (RFC 3030 §3), and answered
    /// once it has arrived.
    pub(super) fn handle_bdat(&mut self, chunk_size: usize, is_last: bool) -> Vec<u8> {
        self.bdat_refusal = match &mut self.transaction {
            None => Some(reply(503, "5.5.1", "Send MAIL first")),
            Some(t) if t.recipients.is_empty() => Some(reply(554, "5.5.1", "No valid recipients")),
            Some(t) if t.bdat_failed => {
                Some(reply(503, "5.5.1", "An earlier BDAT failed: send RSET"))
            }
            Some(_) => None,
        };
        self.start_data_clock();
        self.input = Input::Bdat(BdatReceiver::new(chunk_size, is_last));
        Vec::new()
    }

    /// A message starts arriving: it has `[smtp] max_data_seconds` (the first BDAT
    /// chunk starts the clock for all of them).
    fn start_data_clock(&mut self) {
        if self.data_ends_at.is_none() {
            self.data_ends_at = Some(
                tokio::time::Instant::now()
                    + std::time::Duration::from_secs(self.context.config.max_data_seconds.max(1)),
            );
        }
    }

    /// A BDAT chunk that is not the last one has arrived.
    pub(super) fn chunk_received(&mut self) -> Vec<u8> {
        if let Some(refusal) = self.bdat_refusal.take() {
            return self.refuse_chunk(refusal);
        }
        match &self.transaction {
            Some(t) if t.too_big => {
                let max = self.context.config.max_message_size;
                self.refuse_chunk(reply(
                    552,
                    "5.3.4",
                    &format!("Message size exceeds the limit of {max} bytes"),
                ))
            }
            Some(t) => reply(
                250,
                "2.0.0",
                &format!("{} octets received", t.spool.len(&t.body)),
            ),
            None => reply(503, "5.5.1", "Send MAIL first"),
        }
    }

    fn refuse_chunk(&mut self, refusal: Vec<u8>) -> Vec<u8> {
        if let Some(t) = &mut self.transaction {
            t.bdat_failed = true;
            t.body.clear();
            t.spool.discard();
        }
        refusal
    }

    /// The message is complete (end of DATA or BDAT LAST). In stages, each refusing
    /// with its own reply: [`Session::received`] (size, line ends, spooling), then
    /// [`Session::submitted`] (the sender's identity, MSA fields, DKIM signing) or
    /// [`Session::verified`] (SPF, DKIM, ARC, DMARC, the spam milter), then
    /// [`Session::commit`]: every copy and queue entry durable in one commit before
    /// the `250`.
    pub(super) async fn finish_message(&mut self) -> Vec<u8> {
        if let Some(refusal) = self.bdat_refusal.take() {
            // A refused BDAT LAST ends the transaction (RFC 3030 §2).
            self.transaction = None;
            return refusal;
        }
        let Some(mut txn) = self.transaction.take() else {
            return reply(503, "5.5.1", "Send MAIL first");
        };
        let message = match self.received(&mut txn).await {
            Ok(m) => m,
            Err(refusal) => return refusal,
        };
        let id = queue_id();
        let checked = match self.mode {
            super::Mode::Submission => self.submitted(&txn, message, &id).await,
            super::Mode::Mx => self.verified(&txn, message, &id).await,
        };
        match checked {
            Ok(checked) => self.commit(txn, checked, &id).await,
            Err(refusal) => refusal,
        }
    }

    /// Stage 1: the message as received, or the refusal of what cannot be accepted
    /// whatever it says (too big, a bare CR or LF, a spool that failed).
    async fn received(&self, txn: &mut Transaction) -> Result<store::Body<'static>, Vec<u8>> {
        if txn.bdat_failed {
            return Err(reply(
                503,
                "5.5.1",
                "An earlier BDAT failed: the message was not accepted",
            ));
        }
        if txn.too_big {
            let max = self.context.config.max_message_size;
            let detail = format!("message over the size limit of {max} bytes");
            self.log_rejection(Some(&txn.mail_from), "smtp-too-big", detail)
                .await;
            return Err(reply(
                552,
                "5.3.4",
                &format!("Message size exceeds the limit of {max} bytes"),
            ));
        }
        let temporary = || reply(451, "4.3.0", "Cannot take the message now, try again later");
        if txn.spool_failed {
            return Err(temporary());
        }
        let buffer = std::mem::take(&mut txn.body);
        let (received, bare) = match std::mem::take(&mut txn.spool).finish(buffer) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot spool a message");
                return Err(temporary());
            }
        };
        if let Some(offset) = bare {
            // SMTP smuggling defence: a bare LF or CR could make another server see a
            // different end of data (RFC 5321 §2.3.8). We refuse the message.
            let detail = format!("bare CR or LF at octet {offset}");
            self.log_rejection(Some(&txn.mail_from), "smtp-bare-line-ending", detail)
                .await;
            return Err(reply(
                554,
                "5.6.0",
                "Message contains a bare CR or LF (RFC 5321 section 2.3.8)",
            ));
        }
        let message = match received {
            spool::Received::Bytes(b) => store::Body::from(b),
            spool::Received::File { file, len, ascii } => {
                store::Body::Spooled(std::sync::Arc::new(store::Spooled {
                    head: Vec::new(),
                    file,
                    offset: 0,
                    len,
                    ascii,
                }))
            }
        };
        if let store::Body::Spooled(_) = &message
            && message.header().len() >= spool::MAX_HEADER
        {
            let detail = format!("header over {} bytes", spool::MAX_HEADER);
            self.log_rejection(Some(&txn.mail_from), "smtp-header-too-big", detail)
                .await;
            return Err(reply(
                552,
                "5.3.4",
                &format!("The header is over {} bytes", spool::MAX_HEADER),
            ));
        }
        Ok(message)
    }

    /// Stage 2 on submission: the From: and Sender: fields are the user's, the MSA's
    /// fields are added (RFC 6409 §8), the message is DKIM-signed. Submitted mail is
    /// read into memory (an authenticated user's, within the size limit).
    async fn submitted(
        &self,
        txn: &Transaction,
        message: store::Body<'static>,
        id: &str,
    ) -> Result<Checked, Vec<u8>> {
        let Some(account) = self.user.clone() else {
            return Err(reply(530, "5.7.0", "Authentication required"));
        };
        let mut bytes = whole(&message)?;
        drop(message);
        if let Some(refusal) = self.check_originator(account, txn, &bytes).await {
            return Err(refusal);
        }
        let added = crate::identity::missing_msa_fields(&bytes, &self.context.hostname);
        if !added.is_empty() {
            bytes.splice(0..0, added.into_bytes());
        }
        let signatures = match sign(&self.context.store, &bytes).await {
            Ok(headers) => headers,
            Err(e) => {
                tracing::error!(id, error = %e, "DKIM signing failed: message refused for now");
                let detail = format!("not signed: {e}");
                self.log_rejection(Some(&txn.mail_from), "submission-unsigned", detail)
                    .await;
                return Err(match e {
                    crate::identity::SigningError::NoActiveKey(domain) => reply(
                        451,
                        "4.7.0",
                        &format!(
                            "No DKIM key is active for {domain}: the administrator must activate one"
                        ),
                    ),
                    _ => reply(451, "4.3.0", "Signing failed, try again later"),
                });
            }
        };
        let prefix = [self.received_header(txn, id), signatures].concat();
        Ok(Checked {
            message: store::Body::from(bytes).with_prefix(prefix.as_bytes()),
            ..Checked::default()
        })
    }

    /// Stage 2 on the MX: SPF, DKIM, ARC and DMARC, recorded in Authentication-Results
    /// (any that claims to be ours is forged and removed first); DMARC's p=reject
    /// refuses; then the spam milter. A spooled message stays in its file: only its
    /// header is read, and the body hashes are computed a chunk at a time.
    async fn verified(
        &self,
        txn: &Transaction,
        message: store::Body<'static>,
        id: &str,
    ) -> Result<Checked, Vec<u8>> {
        let mut checked = Checked::default();
        let mut message = message;
        let mut auth_results = String::new();
        if let Some(verifier) = &self.context.verifier {
            let header = message.header().into_owned();
            let stripped =
                crate::inbound::auth_results::strip_our_results(&header, &self.context.hostname);
            message = replace_header(&message, header.len(), stripped);
            let helo = self.helo.clone().unwrap_or_default();
            // A copy we forward to another server carries our ARC seal, made with the
            // forwarding domain's key, so the next hop can trust what we verified.
            let seal = match txn.forwards.first() {
                Some((_, domain)) => seal_key(&self.context.store, domain).await,
                None => None,
            };
            let (whole, rest);
            let input = match &message {
                store::Body::Bytes(b) => {
                    whole = b.clone();
                    crate::inbound::auth_results::Input {
                        seal: seal.as_ref(),
                        client_ip: self.info.peer.ip(),
                        helo: &helo,
                        mail_from: &txn.mail_from,
                        message: &whole,
                        body: None,
                    }
                }
                store::Body::Spooled(s) => {
                    rest = replace_header(&message, s.head.len(), Vec::new());
                    crate::inbound::auth_results::Input {
                        seal: seal.as_ref(),
                        client_ip: self.info.peer.ip(),
                        helo: &helo,
                        mail_from: &txn.mail_from,
                        message: &s.head,
                        body: Some(&rest),
                    }
                }
            };
            let report = verifier.verify(&input).await;
            match report.dmarc {
                DmarcAction::Reject => {
                    let detail = format!("DMARC p=reject of {}", report.from_domain);
                    self.log_rejection(Some(&txn.mail_from), "smtp-dmarc-reject", detail)
                        .await;
                    return Err(reply(
                        550,
                        "5.7.1",
                        &format!(
                            "Message rejected: it fails the DMARC policy of {}",
                            report.from_domain
                        ),
                    ));
                }
                DmarcAction::Quarantine => checked.spam = true,
                DmarcAction::None => {}
            }
            // The envelope sender is unproven: SPF did not pass and DMARC failed. No
            // failure report may go to it (backscatter), no copy is forwarded.
            checked.unproven_sender = report.dmarc_outcome.result
                == crate::inbound::auth_results::AuthResult::Fail
                && report.spf.result != crate::inbound::auth_results::AuthResult::Pass;
            auth_results = report.header;
            checked.arc_set = report.arc_set.unwrap_or_default();
        }
        let prefix = [self.received_header(txn, id), auth_results].concat();
        message = message.with_prefix(prefix.as_bytes());
        if let Some((milter, fail_open)) = &self.context.milter {
            // The milter protocol sends the whole message: it is read into memory.
            let bytes = whole(&message)?;
            match self.scan(milter, *fail_open, txn, id, bytes).await {
                Scanned::Deliver(scanned, flagged) => {
                    checked.verdict = spam_verdict(&scanned, flagged);
                    checked.spam |= flagged;
                    message = store::Body::from(scanned);
                }
                Scanned::Reply(reply) => return Err(reply),
            }
        }
        checked.message = message;
        Ok(checked)
    }

    /// Stage 3: every local copy (through each account's Sieve script), everything
    /// the scripts send and every queue entry, in one commit, durable before the 250.
    async fn commit(&self, mut txn: Transaction, checked: Checked, id: &str) -> Vec<u8> {
        let Checked {
            message,
            spam,
            verdict,
            unproven_sender,
            arc_set,
        } = checked;
        let store = self.context.store.clone();
        let engine = self.context.sieve.clone();
        let hostname = self.context.hostname.clone();
        let envelope_from = txn.mail_from.clone();
        let accounts = std::mem::take(&mut txn.accounts);
        // A script's reject can be the SMTP reply only when nobody else gets the message.
        let may_refuse = txn.remote.is_empty() && txn.forwards.is_empty();
        let queued = |recipients: Vec<store::QueuedRecipient>| store::NewQueued {
            sender: txn.mail_from.clone(),
            account: self.user.as_ref().map(|u| u.id),
            recipients,
            require_tls: txn.require_tls,
            smtputf8: txn.smtputf8,
            env_id: txn.env_id.clone(),
            ret_full: txn.ret_full,
            no_reports: unproven_sender,
        };
        let outbound = (!txn.remote.is_empty()).then(|| queued(std::mem::take(&mut txn.remote)));
        let forwards = std::mem::take(&mut txn.forwards);
        let mut forward: Vec<store::NewQueued> = Vec::new();
        if !forwards.is_empty() && (unproven_sender || spam) {
            // A message that failed DMARC or was scored as spam is not sent on to
            // another server under our name.
            tracing::info!(id, peer = %self.info.peer, "not forwarded: it failed DMARC or is spam");
        } else {
            // One entry per forwarding domain: its SRS address is the envelope sender
            // when the original sender is not ours (SPF at the next hop checks us).
            let mut by_domain: Vec<(String, Vec<store::QueuedRecipient>)> = Vec::new();
            for (recipient, domain) in forwards {
                match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                    Some((_, list)) => list.push(recipient),
                    None => by_domain.push((domain, vec![recipient])),
                }
            }
            for (domain, recipients) in by_domain {
                let mut new = queued(recipients);
                new.sender = forward_sender(
                    &self.context.store,
                    &self.context.srs,
                    &txn.mail_from,
                    &domain,
                );
                forward.push(new);
            }
        }
        let env_id = txn.env_id.clone();
        let ret_full = txn.ret_full;
        let srs = self.context.srs.clone();
        let delivered = tokio::task::spawn_blocking(move || {
            let mut planner = delivery::Planner::new(&store, &engine, &hostname, &srs);
            let incoming = delivery::Incoming {
                message: message.clone(),
                envelope_from: &envelope_from,
                spam: verdict,
                junk: spam,
                hostname: &hostname,
                env_id: env_id.as_deref(),
                ret_full,
                unproven_sender,
            };
            if !accounts.is_empty()
                && let delivery::Planned::Refused(reason) =
                    planner.deliver(&accounts, &incoming, may_refuse)?
            {
                return Ok((Some(reason), false));
            }
            if let Some(new) = outbound {
                planner.batch.enqueue(new, message.clone());
            }
            let sealed = message.with_prefix(arc_set.as_bytes());
            for new in forward {
                planner.batch.enqueue(new, sealed.clone());
            }
            let committed = store.commit(planner.batch)?;
            Ok::<_, delivery::Error>((None, committed.queued_any()))
        })
        .await;
        match delivered {
            Ok(Ok((Some(reason), _))) => {
                tracing::info!(id, peer = %self.info.peer, from = %txn.mail_from, "message refused by the recipient's Sieve script");
                self.log_rejection(Some(&txn.mail_from), "smtp-sieve-reject", reason.clone())
                    .await;
                // RFC 5429 §2.1.1: the reason goes in the reply, on one line.
                let reason: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(400)
                    .collect();
                reply(
                    550,
                    "5.7.1",
                    &format!("Rejected by the recipient: {reason}"),
                )
            }
            Ok(Ok((None, queued))) => {
                if queued && let Some(queue) = &self.context.queue {
                    queue.wake();
                }
                self.context.stats.accepted();
                tracing::info!(id, peer = %self.info.peer, from = %txn.mail_from, rcpts = txn.recipients.len(), "message accepted");
                reply(250, "2.0.0", &format!("Message accepted as {id}"))
            }
            Ok(Err(e)) => {
                tracing::error!(id, error = %e, "delivery failed: nothing was stored");
                reply(451, "4.3.0", "Local delivery failed, try again later")
            }
            Err(e) => {
                tracing::error!(id, error = %e, "delivery task failed");
                reply(451, "4.3.0", "Local delivery failed, try again later")
            }
        }
    }

    /// Submission: the From: and Sender: fields must be the user's (see
    /// [`crate::identity::check_originator`]); a refusal names the rule broken.
    async fn check_originator(
        &self,
        account: store::Account,
        txn: &Transaction,
        message: &[u8],
    ) -> Option<Vec<u8>> {
        let store = self.context.store.clone();
        let message = message.to_vec();
        let checked = tokio::task::spawn_blocking(move || {
            crate::identity::check_originator(&store, &account, &message)
        })
        .await;
        match checked {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(refusal))) => {
                let text = refusal.text();
                self.log_rejection(Some(&txn.mail_from), "submission-identity", text.clone())
                    .await;
                Some(reply(550, "5.7.1", &text))
            }
            _ => Some(reply(
                451,
                "4.3.0",
                "Temporary lookup failure, try again later",
            )),
        }
    }

    /// Asks the spam milter about the message: its refusals become our replies, its
    /// header changes are applied, and `X-Spam-Flag: YES` files the message as spam.
    async fn scan(
        &self,
        milter: &crate::inbound::milter::MilterConfig,
        fail_open: bool,
        txn: &Transaction,
        id: &str,
        message: Vec<u8>,
    ) -> Scanned {
        use crate::inbound::milter::{self, Action};
        let helo = self.helo.clone().unwrap_or_default();
        let client_name = format!("[{}]", self.info.peer.ip());
        let envelope = milter::Envelope {
            our_hostname: &self.context.hostname,
            client_ip: self.info.peer.ip(),
            client_port: self.info.peer.port(),
            client_name: &client_name,
            helo: &helo,
            mail_from: &txn.mail_from,
            rcpt_to: &txn.recipients,
            queue_id: id,
            tls_version: None,
        };
        match milter::check(milter, &envelope, &message).await {
            Ok(verdict) => match verdict.action {
                Action::Accept => {
                    let scanned = milter::apply(&message, &verdict.header_changes);
                    let flagged = is_flagged_spam(&scanned);
                    Scanned::Deliver(scanned, flagged)
                }
                Action::Reject {
                    code,
                    enhanced,
                    text,
                } => {
                    let detail = format!("{code} {enhanced} {text}");
                    self.log_rejection(None, "smtp-spam-reject", detail).await;
                    Scanned::Reply(reply(code, &enhanced, &text))
                }
                Action::TempFail {
                    code,
                    enhanced,
                    text,
                } => Scanned::Reply(reply(code, &enhanced, &text)),
                Action::Discard => {
                    tracing::info!(id, peer = %self.info.peer, "the milter discarded the message");
                    self.log_rejection(None, "smtp-spam-discard", id.to_string())
                        .await;
                    Scanned::Reply(reply(250, "2.0.0", &format!("Message accepted as {id}")))
                }
            },
            Err(e) if fail_open => {
                tracing::warn!(id, error = %e, "spam milter failed: delivering unscanned (milter_fail_open)");
                Scanned::Deliver(message, false)
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "spam milter failed: try later");
                Scanned::Reply(reply(
                    451,
                    "4.7.1",
                    "Spam scanning is unavailable, try again later",
                ))
            }
        }
    }

    /// RFC 5321 §4.4 trace header; RFC 3848 / RFC 6531 §3.7.3 protocol names.
    fn received_header(&self, txn: &Transaction, id: &str) -> String {
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let ip = self.info.peer.ip();
        let literal = if ip.is_ipv6() {
            format!("IPv6:{ip}")
        } else {
            ip.to_string()
        };
        let protocol = match (txn.smtputf8, self.esmtp, self.tls) {
            (true, _, true) => "UTF8SMTPS",
            (true, _, false) => "UTF8SMTP",
            (false, true, true) => "ESMTPS",
            (false, true, false) => "ESMTP",
            (false, false, _) => "SMTP",
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
            .unwrap_or(0);
        let date = mail_parser::DateTime::from_timestamp(now).to_rfc822();
        // Name the recipient only when there is one (others' addresses stay private).
        let for_clause = match txn.recipients.as_slice() {
            [one] => format!("\r\n\tfor <{one}>"),
            _ => String::new(),
        };
        format!(
            "Received: from {helo} ([{literal}])\r\n\tby {} (Postern) with {protocol} id {id}{for_clause};\r\n\t{date}\r\n",
            self.context.hostname
        )
    }
}

/// The DKIM-Signature headers for a submitted message: one per active key of the
/// domain of its (already checked) From: address.
async fn sign(
    store: &std::sync::Arc<store::Store>,
    message: &[u8],
) -> Result<String, crate::identity::SigningError> {
    let store = store.clone();
    let message = message.to_vec();
    tokio::task::spawn_blocking(move || crate::identity::dkim_signatures(&store, &message))
        .await
        .map_err(|e| crate::identity::SigningError::Sign(e.to_string()))?
}

/// The key that seals forwarded mail of `domain`: its active RSA key (the algorithm
/// every ARC verifier knows), else its Ed25519 key; None without one.
async fn seal_key(
    store: &std::sync::Arc<store::Store>,
    domain: &str,
) -> Option<dkim::sign::SigningKey> {
    let store = store.clone();
    let domain = domain.to_string();
    let keys = tokio::task::spawn_blocking(move || store.dkim_keys(&domain))
        .await
        .ok()?
        .ok()?;
    let mut active: Vec<_> = keys.into_iter().filter(|k| k.active).collect();
    active.sort_by_key(|k| k.algorithm != "rsa");
    active.into_iter().find_map(|k| {
        Some(dkim::sign::SigningKey {
            algorithm: dkim::keys::Algorithm::from_key_type(&k.algorithm)?,
            domain: k.domain,
            selector: k.selector,
            private_key_pem: k.private_key_pem,
        })
    })
}

/// The envelope sender of mail forwarded from `domain`: the sender itself when it is
/// null or ours (our SPF covers it), else its SRS address in `domain`.
fn forward_sender(
    store: &store::Store,
    srs: &crate::srs::Srs,
    sender: &str,
    domain: &str,
) -> String {
    let ours = sender.rsplit_once('@').is_some_and(|(_, d)| {
        store
            .domain(&d.to_ascii_lowercase())
            .ok()
            .flatten()
            .is_some()
    });
    if sender.is_empty() || ours {
        sender.to_string()
    } else {
        srs.forward(sender, domain)
    }
}

/// What the checks of stage 2 leave for the commit.
#[derive(Debug)]
struct Checked {
    /// The message as it will be stored: trace, signature and result fields added.
    message: store::Body<'static>,
    /// Spam (the milter's verdict or a DMARC quarantine): to Junk, never forwarded.
    spam: bool,
    /// The scanner's verdict, for Sieve's spamtest.
    verdict: sieve::run::Spam,
    /// SPF did not pass and DMARC failed.
    unproven_sender: bool,
    /// The ARC set for forwarded copies.
    arc_set: String,
}

impl Default for Checked {
    fn default() -> Self {
        Checked {
            message: store::Body::from(Vec::new()),
            spam: false,
            verdict: sieve::run::Spam::Unknown,
            unproven_sender: false,
            arc_set: String::new(),
        }
    }
}

/// The whole message in memory (read from its spool file when it is there), or the
/// temporary refusal when it cannot be read.
fn whole(message: &store::Body<'_>) -> Result<Vec<u8>, Vec<u8>> {
    message
        .bytes()
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read a spooled message");
            reply(451, "4.3.0", "Cannot take the message now, try again later")
        })
}

/// `body` with its first `header_len` octets replaced by `header`: a spooled body
/// keeps reading the rest from its file.
fn replace_header(
    body: &store::Body<'static>,
    header_len: usize,
    header: Vec<u8>,
) -> store::Body<'static> {
    match body {
        store::Body::Bytes(b) => {
            let rest = b.get(header_len..).unwrap_or_default();
            store::Body::from([header.as_slice(), rest].concat())
        }
        store::Body::Spooled(s) if header_len <= s.head.len() => {
            store::Body::Spooled(std::sync::Arc::new(store::Spooled {
                head: [header.as_slice(), &s.head[header_len..]].concat(),
                file: s.file.clone(),
                offset: s.offset,
                len: s.len,
                ascii: s.ascii,
            }))
        }
        store::Body::Spooled(s) => {
            let skip = (header_len - s.head.len()) as u64;
            store::Body::Spooled(std::sync::Arc::new(store::Spooled {
                head: header,
                file: s.file.clone(),
                offset: s.offset + skip,
                len: s.len.saturating_sub(skip),
                ascii: s.ascii,
            }))
        }
    }
}

/// The outcome of the spam scan.
enum Scanned {
    /// Deliver this message; `true`: it is spam (to Junk).
    Deliver(Vec<u8>, bool),
    /// Answer this and deliver nothing.
    Reply(Vec<u8>),
}

/// SpamAssassin's score and threshold from `X-Spam-Status: Yes, score=7.2
/// required=5.0 ...`, for Sieve's `spamtest`; `flagged` is its verdict.
fn spam_verdict(message: &[u8], flagged: bool) -> sieve::run::Spam {
    let Some(status) = message::header::values(message, "X-Spam-Status")
        .into_iter()
        .next()
    else {
        return sieve::run::Spam::Unknown;
    };
    let value = |name: &str| {
        status
            .split(|c: char| c.is_whitespace() || c == ',')
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse::<f64>().ok())
    };
    match (value("score="), value("required=")) {
        (Some(score), Some(required)) => sieve::run::Spam::Scanned {
            score,
            required,
            spam: flagged,
        },
        _ => sieve::run::Spam::Unknown,
    }
}

/// Whether the header has `X-Spam-Flag: YES` (SpamAssassin's verdict).
fn is_flagged_spam(message: &[u8]) -> bool {
    message::header::values(message, "X-Spam-Flag")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("YES"))
}

/// A DATA receiver that knows the message starts at the beginning of a line (RFC 5321
/// §4.5.2): a first line `.` ends an empty message and a first line `..x` is
/// unstuffed. smtp-proto's receiver starts as if in mid-line, so it is first fed the
/// CRLF that ended the DATA command.
fn data_receiver() -> DataReceiver {
    let mut receiver = DataReceiver::new();
    let mut nothing = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut nothing);
    receiver
}

#[cfg(test)]
mod tests {
    use super::{data_receiver, spam_verdict};

    #[test]
    fn data_starts_at_the_beginning_of_a_line() {
        let mut body = Vec::new();
        assert!(data_receiver().ingest(&mut b".\r\nQUIT\r\n".iter(), &mut body));
        assert_eq!(body, b"");
        let mut body = Vec::new();
        assert!(data_receiver().ingest(&mut b"..x\r\n.y\r\n.\r\n".iter(), &mut body));
        assert_eq!(body, b".x\r\ny\r\n");
    }

    #[test]
    fn spamassassin_status_feeds_spamtest() {
        let message = b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE,\r\n\tNO_RECEIVED autolearn=no version=3.4.6\r\nSubject: x\r\n\r\nbody\r\n";
        assert_eq!(
            spam_verdict(message, true),
            sieve::run::Spam::Scanned {
                score: 1000.0,
                required: 5.0,
                spam: true
            }
        );
        let ham = b"X-Spam-Status: No, score=-0.1 required=5.0 tests=NONE\r\n\r\nx\r\n";
        assert!(matches!(
            spam_verdict(ham, false),
            sieve::run::Spam::Scanned { score, .. } if score < 0.0
        ));
        assert_eq!(
            spam_verdict(b"Subject: x\r\n\r\nx\r\n", false),
            sieve::run::Spam::Unknown
        );
    }
}
