//! MAIL FROM (RFC 5321 §4.1.1.2): starts a transaction.

use smtp_proto::{MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_SMTPUTF8, MailFrom};

use super::{Mode, Session, Transaction, reply};
use crate::inbound::dnsbl::Listing;

/// RFC 3461 §4.2, §4.4: the decoded value of ENVID and ORCPT must be printable
/// US-ASCII (they are copied into the reports we send, so CR or LF would forge fields
/// there), at most `max` characters.
pub(super) fn dsn_value(value: &str, max: usize) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    if value.len() > max {
        return Err("too long");
    }
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("not printable US-ASCII");
    }
    Ok(())
}

impl Session {
    /// MAIL FROM:<reverse-path> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8].
    pub(super) async fn handle_mail(&mut self, from: MailFrom<String>) -> Vec<u8> {
        if self.helo.is_none() {
            return reply(503, "5.5.1", "Send EHLO or HELO first");
        }
        if self.transaction.is_some() {
            return reply(503, "5.5.1", "Nested MAIL command");
        }
        let max = self.context.config.max_message_size;
        // RFC 1870 §6.1: a declared size over the limit is refused up front.
        if u64::try_from(from.size).unwrap_or(u64::MAX) > max {
            return reply(
                552,
                "5.3.4",
                &format!("Message size exceeds the limit of {max} bytes"),
            );
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if smtputf8 && !self.esmtp {
            return reply(503, "5.5.1", "SMTPUTF8 needs EHLO");
        }
        // RFC 6531 §3.4: a non-ASCII address needs SMTPUTF8.
        if !smtputf8 && !from.address.is_ascii() {
            return reply(553, "5.6.7", "Non-ASCII address without SMTPUTF8");
        }
        if let Some(envid) = &from.env_id
            && let Err(why) = dsn_value(envid, 100)
        {
            return reply(501, "5.5.4", &format!("Invalid ENVID parameter: {why}"));
        }
        let require_tls = from.flags & MAIL_REQUIRETLS != 0;
        if require_tls && !(self.mode == Mode::Submission && self.tls) {
            // RFC 8689 §4.1: only on a TLS session, where it is offered.
            return reply(
                530,
                "5.7.10",
                "REQUIRETLS needs a TLS session on the submission port",
            );
        }
        if self.mode == Mode::Submission
            && let Some(refusal) = self.check_sender(&from.address).await
        {
            return refusal;
        }
        if self.mode == Mode::Submission
            && let Some(user) = &self.user
            && let Err(which) = self.context.limits.take(user.id, self.info.peer.ip())
        {
            let detail = format!(
                "{} over the hourly message limit of its {which}",
                user.email
            );
            tracing::info!(peer = %self.info.peer, "{detail}");
            self.log_rejection(Some(&from.address), "smtp-rate-limited", detail)
                .await;
            return reply(
                450,
                "4.7.1",
                &format!("Too many messages from your {which} this hour, try again later"),
            );
        }
        if self.mode == Mode::Mx
            && let Some(refusal) = self.check_dnsbl(&from.address).await
        {
            return refusal;
        }
        self.transaction = Some(Transaction {
            mail_from: from.address,
            smtputf8,
            require_tls,
            env_id: from.env_id.clone(),
            ret_full: from.flags & MAIL_RET_FULL != 0,
            ..Transaction::default()
        });
        reply(250, "2.1.0", "Sender OK")
    }

    /// Submission: the session must be authenticated, and the envelope sender must be
    /// the user's own (RFC 6409 §6.1; nobody sends as anybody else).
    async fn check_sender(&self, address: &str) -> Option<Vec<u8>> {
        let Some(account) = self.user.clone() else {
            return Some(reply(530, "5.7.0", "Authentication required"));
        };
        if address.is_empty() {
            return Some(reply(550, "5.7.1", "The null sender is not yours to use"));
        }
        let store = self.context.store.clone();
        let owned = address.to_string();
        let result = tokio::task::spawn_blocking(move || {
            crate::identity::may_send_as(&store, &account, &owned)
        })
        .await;
        match result {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some(reply(
                550,
                "5.7.1",
                &format!("Sender address <{address}> is not yours"),
            )),
            _ => Some(reply(
                451,
                "4.3.0",
                "Temporary lookup failure, try again later",
            )),
        }
    }

    /// The MX refuses clients listed by a DNS block list, naming the list, before any
    /// mail is accepted; the lookup is made once per session.
    async fn check_dnsbl(&mut self, sender: &str) -> Option<Vec<u8>> {
        let dnsbl = self.context.dnsbl.as_ref()?;
        let ip = self.info.peer.ip();
        let listing = match &self.dnsbl {
            Some(l) => l.clone(),
            None => {
                let l = dnsbl.check(ip).await;
                self.dnsbl = Some(l.clone());
                if let Listing::Listed { zone, code, .. } = &l {
                    tracing::info!(%ip, zone, %code, "client listed by a DNSBL: refused");
                    self.log_rejection(
                        Some(sender),
                        "smtp-dnsbl",
                        format!("listed by {zone} ({code})"),
                    )
                    .await;
                }
                l
            }
        };
        match listing {
            Listing::Listed { zone, reason, .. } => {
                let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
                Some(reply(
                    554,
                    "5.7.1",
                    &format!("Service unavailable; client [{ip}] blocked using {zone}{reason}"),
                ))
            }
            Listing::NotListed => None,
        }
    }
}
