//! The black-box test harness: the real binary, a loopback DNS server, and helpers
//! for other people's clients.
#![forbid(unsafe_code)]
pub mod ca;
pub mod dns;
pub mod harness;
pub mod imap;
pub mod imap_stress;
pub mod imap_wire;
pub mod netns;
pub mod postfix;
pub mod sieve;
