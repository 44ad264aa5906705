//! What every Postern listener shares and nothing protocol-specific: the `[server]`
//! section, TLS, authentication (password policy, hashing, SASL, failed-login limiter),
//! the DNS resolver settings and the network driver every listener runs on.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod deny;
pub mod dns;
pub mod metrics;
pub mod net;
pub mod rate;
pub mod secret;
pub mod tls;

/// Installs ring as rustls' process-wide crypto provider. Call once at start; later
/// calls are harmless.
pub fn install_crypto_provider() {
    // A second install returns Err with the provider already there: nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
