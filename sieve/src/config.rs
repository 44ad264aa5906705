//! The `[sieve]` section: limits on users' scripts and on what a script may do when it
//! runs at delivery.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[sieve]`: filtering at delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SieveConfig {
    /// Largest script accepted, in bytes (PUTSCRIPT answers `NO (QUOTA/MAXSIZE)`).
    pub max_script_bytes: usize,
    /// Scripts one account may keep (PUTSCRIPT of a new name answers
    /// `NO (QUOTA/MAXSCRIPTS)`).
    pub max_scripts: usize,
    /// Instructions one run may execute; a script that loops longer is stopped and the
    /// message kept in INBOX.
    pub max_instructions: usize,
    /// `redirect` actions one run may take (RFC 5228 §4.2 asks for a limit).
    pub max_redirects: usize,
    /// Nested `include`s (RFC 6609) one run may follow.
    pub max_includes: usize,
    /// Messages one run may send: redirects, vacation replies and rejections together.
    pub max_messages_out: usize,
    /// Local redirect hops a message may make (counted by its `Delivered-To:` headers)
    /// before it is kept where it is instead: the loop breaker.
    pub max_redirect_hops: usize,
    /// Redirects one incoming message may cause in all, across every script it passes
    /// through (the count travels in the copies' `Postern-Redirects:` field); further
    /// redirects keep the message instead.
    pub max_redirects_per_message: usize,
    /// Messages one account's scripts may send per hour (redirects, vacation replies,
    /// rejection notices); beyond it they are not sent (a redirect keeps the message).
    pub max_generated_per_hour: u32,
    /// The shortest period between two vacation replies to one sender, in seconds
    /// (RFC 5230 §4.1 asks for at least a day; `:seconds` below it is raised to it).
    pub vacation_min_seconds: u64,
}

impl Default for SieveConfig {
    fn default() -> Self {
        SieveConfig {
            max_script_bytes: 64 * 1024,
            max_scripts: 16,
            max_instructions: 10_000,
            max_redirects: 4,
            max_includes: 3,
            max_messages_out: 5,
            max_redirect_hops: 8,
            max_redirects_per_message: 8,
            max_generated_per_hour: 100,
            vacation_min_seconds: 86_400,
        }
    }
}
