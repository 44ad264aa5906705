//! SMTP: the MX on port 25 and submission on 587/465. This crate owns the `[smtp]`,
//! `[submission]` and `[spam]` configuration sections and the SMTP session.
#![forbid(unsafe_code)]

pub mod config;
pub mod delivery;
pub mod identity;
pub mod inbound;
pub mod queue;
pub mod session;
pub mod srs;

pub use config::{Config, QueueConfig, SpamConfig, SubmissionConfig};
