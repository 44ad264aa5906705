//! The `[server]` section and helpers shared by every crate's configuration section.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[server]`: how the `postern serve` process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// User to run as after the listeners are bound (binding ports below 1024 needs
    /// root). Empty: stay the user that started postern. The data directory must be
    /// writable by this user.
    pub run_as: String,
    /// On SIGTERM or SIGINT postern stops accepting connections and lets open sessions
    /// finish for this many seconds; sessions still open then are told so (SMTP `421`,
    /// IMAP `* BYE`) and closed.
    pub shutdown_grace_seconds: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            run_as: String::new(),
            shutdown_grace_seconds: 10,
        }
    }
}
