//! IMAP4rev1 (RFC 3501) for Postern on port 993: commands decoded by imap-codec,
//! mailboxes and messages in the store. `session` is the connection, `core` the
//! state machine, `op/` one file per command, `selected` the selected mailbox's view,
//! `fetch` message structure for FETCH.

pub mod config;
pub mod core;
pub mod fetch;
pub mod flags;
pub mod op;
pub mod resp;
pub mod selected;
pub mod session;
pub mod snapshot;
pub mod utf7;

pub use config::Config;
