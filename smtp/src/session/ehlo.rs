//! EHLO and HELO (RFC 5321 §4.1.1.1): greet, reset, and list the extensions.

use super::{Mode, Session, reply};

impl Session {
    /// EHLO (`esmtp`) or HELO: records the client's name and resets any transaction
    /// (RFC 5321 §4.1.4).
    pub(super) fn handle_ehlo(&mut self, host: &str, esmtp: bool) -> Vec<u8> {
        if host.trim().is_empty() {
            return reply(501, "5.5.4", "Syntax: EHLO domain");
        }
        self.helo = Some(host.to_string());
        self.esmtp = esmtp;
        self.transaction = None;
        let hostname = &self.context.hostname;
        if !esmtp {
            return format!("250 {hostname} Hello {host}\r\n").into_bytes();
        }
        let mut lines = vec![format!("{hostname} Hello {host}")];
        lines.push("PIPELINING".into()); // RFC 2920
        lines.push(format!("SIZE {}", self.context.config.max_message_size)); // RFC 1870
        lines.push("8BITMIME".into()); // RFC 6152
        lines.push("SMTPUTF8".into()); // RFC 6531
        lines.push("ENHANCEDSTATUSCODES".into()); // RFC 2034
        lines.push("CHUNKING".into()); // RFC 3030
        if self.info.starttls && !self.tls {
            lines.push("STARTTLS".into()); // RFC 3207
        }
        // RFC 4954: AUTH only where the password cannot be read off the wire.
        if self.mode == Mode::Submission && self.tls && self.user.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        if self.mode == Mode::Submission {
            lines.push("DSN".into()); // RFC 3461
            // RFC 8689 §4: offered only once the session is protected by TLS.
            if self.tls {
                lines.push("REQUIRETLS".into());
            }
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
            .collect::<String>()
            .into_bytes()
    }
}
