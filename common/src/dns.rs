//! The `[dns]` section and the resolver built from it. Every component that looks
//! anything up (DNSBL, SPF/DKIM/DMARC, MX) uses this resolver, so tests and operators
//! can point all of them at one server.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[dns]`: where and how long Postern looks things up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Recursive resolvers to ask, as `"ip:port"` (UDP, with TCP for truncated
    /// answers). Empty: the system's resolvers from /etc/resolv.conf. Spamhaus refuses
    /// queries that come through large public resolvers: use a local one.
    pub nameservers: Vec<SocketAddr>,
    /// Time allowed for one query, in seconds.
    pub timeout_seconds: u64,
    /// Time allowed for all the lookups made for one message (DNSBL, SPF, DKIM, DMARC,
    /// ARC), in seconds. Past it the checks count as temporary errors and the message
    /// is accepted.
    pub budget_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nameservers: Vec::new(),
            timeout_seconds: 3,
            budget_seconds: 10,
        }
    }
}

impl Config {
    /// The per-message time budget.
    pub fn budget(&self) -> Duration {
        Duration::from_secs(self.budget_seconds)
    }
}

/// Errors building the resolver.
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver setup failed: {0}")]
pub struct Error(String);

/// The hickory resolver configuration `[dns]` describes (for components, like
/// mail-auth, that build their own resolver from it).
pub fn resolver_config(config: &Config) -> Result<(ResolverConfig, ResolverOpts), Error> {
    let (resolver_config, mut options) = if config.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().map_err(|e| Error(e.to_string()))?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                server
            })
            .collect();
        (
            ResolverConfig::from_name_servers(servers),
            ResolverOpts::default(),
        )
    };
    options.timeout = Duration::from_secs(config.timeout_seconds.max(1));
    options.attempts = 2;
    Ok((resolver_config, options))
}

/// Builds the resolver `[dns]` describes.
pub fn resolver(config: &Config) -> Result<TokioResolver, Error> {
    let (resolver_config, options) = resolver_config(config)?;
    TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|e| Error(e.to_string()))
}
