//! Sieve for Postern: users' filter scripts checked with sieve-rs ([`script`]), run at
//! delivery to produce actions ([`run`], pure: the `smtp` crate applies them), and the
//! ManageSieve server through which clients manage them ([`managesieve`], RFC 5804).
#![forbid(unsafe_code)]

pub mod config;
pub mod lint;
pub mod managesieve;
pub mod run;
pub mod script;

pub use config::SieveConfig;
pub use managesieve::Config;
pub use script::{CheckError, Engine};
