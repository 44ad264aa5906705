//! MAIL FROM (RFC 5321 §4.1.1.2): starts a transaction.

use smtp_proto::{MAIL_SMTPUTF8, MailFrom};

use super::{Mode, Session, Transaction, reply};

impl Session {
    /// MAIL FROM:<reverse-path> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8].
    pub(super) fn handle_mail(&mut self, from: MailFrom<String>) -> Vec<u8> {
        if self.mode == Mode::Submission {
            return reply(
                451,
                "4.3.2",
                "Submission is not available yet, try again later",
            );
        }
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
        self.transaction = Some(Transaction {
            mail_from: from.address,
            smtputf8,
            ..Transaction::default()
        });
        reply(250, "2.1.0", "Sender OK")
    }
}
