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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_tls: vec![SocketAddr::from(([0u16; 8], 993))],
            listen: Vec::new(),
        }
    }
}
