//! IMAP for Postern. This crate owns the `[imap]` section and the IMAP session.
#![forbid(unsafe_code)]

pub mod config;
pub mod session;

pub use config::Config;
