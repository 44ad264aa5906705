//! The `[server]` section and helpers shared by every crate's configuration section.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[server]`: how the `postern serve` process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// The user everything that reads the network runs as. `serve` started as root
    /// binds its ports, loads its certificates, gives the data directory to this user
    /// (creating it as a system user if missing), starts a small privileged helper for
    /// the firewall and the app containers, and then becomes this user. Empty or
    /// `root`: no privilege separation, every parser runs as root (`security check`
    /// warns). Started as another user, postern stays that user (this key must then
    /// be empty, `postern` or that user).
    pub run_as: String,
    /// On SIGTERM or SIGINT postern stops accepting connections and lets open sessions
    /// finish for this many seconds; sessions still open then are told so (SMTP `421`,
    /// IMAP `* BYE`) and closed.
    pub shutdown_grace_seconds: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            run_as: "postern".into(),
            shutdown_grace_seconds: 10,
        }
    }
}
