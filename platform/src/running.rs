//! What the running server lends the administrative requests it executes (from the
//! control socket and the admin API): its listeners' deny list and certificates, and
//! its way to privileged work (the helper).

use std::sync::Arc;

use crate::config::Config;

/// The running server's shared state for administrative requests.
pub struct Running {
    /// The listeners' blocks and bans.
    pub deny: Arc<common::deny::DenyList>,
    /// The listeners' certificates.
    pub tls: common::tls::Tls,
    /// Firewall and containers: the privileged helper, or this process.
    pub privileged: crate::privsep::Privileged,
}

impl Running {
    /// After the names we serve changed (a domain or an app added or removed): the
    /// self-signed default certificate is made again to name them all.
    pub fn names_changed(&self, config: &Config, store: &store::Store) {
        match crate::certs::cover_served_names(config, store, &self.tls) {
            Ok(true) => tracing::info!("self-signed certificate renewed for the names served"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = e, "could not renew the self-signed certificate"),
        }
    }
}
