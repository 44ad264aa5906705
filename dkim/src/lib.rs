//! DKIM keys (Ed25519, RFC 8463, and RSA-2048) and the DNS records a mail domain
//! publishes: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, client autoconfiguration and the
//! SRV records of RFC 6186.
#![forbid(unsafe_code)]

pub mod keys;
pub mod records;
pub mod sign;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Key generation or encoding failed.
    #[error("DKIM key generation failed: {0}")]
    Key(String),
}
