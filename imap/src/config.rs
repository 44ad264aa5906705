//! The `[imap]` section.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[imap]`: mailbox access for mail clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses for IMAP over implicit TLS (IMAPS, port 993). Empty: none.
    pub listen_tls: Vec<SocketAddr>,
    /// Addresses for plaintext IMAP (port 143). Empty by default: mail is read over TLS
    /// only. Where set, STARTTLS is offered and LOGIN is disabled until TLS is on.
    pub listen: Vec<SocketAddr>,
    /// The largest message APPEND takes, in octets (APPENDLIMIT, RFC 7889).
    pub max_message_bytes: u32,
    /// Connections one account may have logged in at once.
    pub max_sessions_per_account: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_tls: vec![SocketAddr::from(([0u16; 8], 993))],
            listen: Vec::new(),
            max_message_bytes: 50 * 1024 * 1024,
            max_sessions_per_account: 20,
        }
    }
}
