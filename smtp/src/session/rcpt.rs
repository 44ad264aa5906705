//! RCPT TO (RFC 5321 §4.1.1.3): which recipients we take. Only local domains,
//! accounts and aliases; never relay for an unauthenticated client.

use smtp_proto::{
    RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, RcptTo,
};

use super::{Session, reply};
use crate::delivery::{self, Resolution};

impl Session {
    /// RCPT TO:<forward-path>. The second value: the recipient was refused as not
    /// ours (relay denied, no such user), which counts as a bad command.
    pub(super) async fn handle_rcpt(&mut self, to: RcptTo<String>) -> (Vec<u8>, bool) {
        let Some(txn) = self.transaction.as_ref() else {
            return (reply(503, "5.5.1", "Send MAIL first"), false);
        };
        if txn.recipients.len() >= self.context.config.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452 lets the client send the rest later.
            return (reply(452, "4.5.3", "Too many recipients"), false);
        }
        if !txn.smtputf8 && !to.address.is_ascii() {
            return (
                reply(553, "5.6.7", "Non-ASCII address without SMTPUTF8"),
                false,
            );
        }
        if let Some(orcpt) = &to.orcpt
            && let Err(why) = super::mail::dsn_value(orcpt, 500)
        {
            let text = format!("Invalid ORCPT parameter: {why}");
            return (reply(501, "5.5.4", &text), true);
        }
        // A few reads of the index, whose pages redb keeps in memory once read: done
        // here rather than on a blocking thread, whose two context switches per
        // recipient cost more than the lookup (one message per connection is bound by
        // them).
        // A bounce to an SRS address of ours goes back to the sender it encodes; a
        // forged one is refused.
        let mut address = to.address.clone();
        if let Some((local, domain)) = to.address.rsplit_once('@')
            && matches!(
                self.context.store.domain(&domain.to_ascii_lowercase()),
                Ok(Some(_))
            )
        {
            match self.context.srs.reverse(local) {
                Ok(None) => {}
                Ok(Some(original)) => {
                    if !matches!(
                        delivery::resolve(&self.context.store, &original),
                        Ok(Resolution::Targets { .. })
                    ) {
                        tracing::info!(peer = %self.info.peer, srs = %to.address, to = %original, "bounce to an SRS address: sent back");
                        return (self.queue_remote(&to, &original), false);
                    }
                    address = original;
                }
                Err(e) => {
                    self.log_rejection(
                        None,
                        "smtp-srs-refused",
                        format!("to <{}>: {e}", to.address),
                    )
                    .await;
                    return (reply(550, "5.7.1", &format!("Invalid address: {e}")), true);
                }
            }
        }
        let resolution = match delivery::resolve(&self.context.store, &address) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                return (
                    reply(451, "4.3.0", "Temporary lookup failure, try again later"),
                    false,
                );
            }
        };
        let answer = match resolution {
            Resolution::Targets { local, remote } => {
                let Some(txn) = self.transaction.as_mut() else {
                    return (reply(503, "5.5.1", "Send MAIL first"), false);
                };
                for (id, email) in local {
                    if !txn.accounts.iter().any(|r| r.account == id) {
                        txn.accounts.push(delivery::Recipient {
                            account: id,
                            email,
                            address: to.address.clone(),
                        });
                    }
                }
                // RFC 3461 §4.2: the original recipient of a forwarded copy.
                let orcpt = to
                    .orcpt
                    .clone()
                    .unwrap_or_else(|| format!("rfc822;{}", to.address));
                let domain = to
                    .address
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default();
                for target in remote {
                    if !txn.forwards.iter().any(|(r, _)| r.address == target) {
                        txn.forwards.push((
                            store::QueuedRecipient {
                                orcpt: Some(orcpt.clone()),
                                notify: notify_text(to.flags),
                                ..store::QueuedRecipient::new(&target)
                            },
                            domain.clone(),
                        ));
                    }
                }
                txn.recipients.push(to.address);
                reply(250, "2.1.5", "Recipient OK")
            }
            // Authenticated: remote recipients go to the outbound queue.
            Resolution::NotLocal if self.user.is_some() => self.queue_remote(&to, &to.address),
            Resolution::NotLocal => {
                self.log_rejection(None, "smtp-relay-denied", format!("to <{}>", to.address))
                    .await;
                return (reply(554, "5.7.1", "Relay access denied"), true);
            }
            Resolution::UnknownUser => return (reply(550, "5.1.1", "No such user here"), true),
            // RFC 3463 §3.3: 4.2.2 mailbox full; temporary, so nothing is lost.
            Resolution::OverQuota(account) => {
                self.log_rejection(None, "smtp-over-quota", format!("{account} is full"))
                    .await;
                reply(452, "4.2.2", "Mailbox full, try again later")
            }
        };
        (answer, false)
    }

    /// Adds a recipient for the outbound queue, with its DSN parameters.
    fn queue_remote(&mut self, to: &RcptTo<String>, address: &str) -> Vec<u8> {
        let Some(txn) = self.transaction.as_mut() else {
            return reply(503, "5.5.1", "Send MAIL first");
        };
        if !txn.remote.iter().any(|r| r.address == address) {
            txn.remote.push(store::QueuedRecipient {
                notify: notify_text(to.flags),
                orcpt: to.orcpt.clone(),
                ..store::QueuedRecipient::new(address)
            });
        }
        txn.recipients.push(to.address.clone());
        reply(250, "2.1.5", "Recipient OK")
    }
}

/// RFC 3461 NOTIFY as the queue keeps it (`FAILURE,DELAY`); None for the default.
fn notify_text(flags: u64) -> Option<String> {
    let notify = [
        (RCPT_NOTIFY_NEVER, "NEVER"),
        (RCPT_NOTIFY_SUCCESS, "SUCCESS"),
        (RCPT_NOTIFY_FAILURE, "FAILURE"),
        (RCPT_NOTIFY_DELAY, "DELAY"),
    ]
    .iter()
    .filter(|(flag, _)| flags & flag != 0)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(",");
    (!notify.is_empty()).then_some(notify)
}
