//! Sieve for Postern. This crate owns the `[managesieve]` section and the ManageSieve
//! session (RFC 5804).
#![forbid(unsafe_code)]

pub mod managesieve;

pub use managesieve::Config;
