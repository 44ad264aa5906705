//! The `[smtp]`, `[submission]` and `[spam]` sections.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[smtp]`: the MX, receiving mail from other servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses the MX listens on (port 25, STARTTLS offered). `[::]` accepts IPv4
    /// too. Empty: no MX.
    pub listen: Vec<SocketAddr>,
    /// Largest message accepted, in bytes (advertised as SIZE, RFC 1870; checked at
    /// MAIL FROM and while the message arrives).
    pub max_message_size: u64,
    /// Recipients accepted per message; more get `452 4.5.3` (RFC 5321 §4.5.3.1.8
    /// asks for at least 100).
    pub max_recipients: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0u16; 8], 25))],
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
        }
    }
}

/// `[submission]`: mail from our own users' clients (AUTH over TLS only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionConfig {
    /// Addresses for submission with STARTTLS (port 587). Empty: none.
    pub listen: Vec<SocketAddr>,
    /// Addresses for submission with implicit TLS (port 465, RFC 8314). Empty: none.
    pub listen_tls: Vec<SocketAddr>,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listen: vec![SocketAddr::from(([0u16; 8], 587))],
            listen_tls: vec![SocketAddr::from(([0u16; 8], 465))],
        }
    }
}

/// `[spam]`: what the MX checks before accepting mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpamConfig {
    /// DNS block lists queried for each connecting client's IP; a listing refuses the
    /// mail with `554 5.7.1`. Empty: no DNSBL check.
    pub dnsbl: Vec<String>,
    /// Client networks (CIDR) exempt from the DNSBL check.
    #[schemars(with = "Vec<String>")]
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// The SpamAssassin milter (spamass-milter) as `"host:port"`, or `"unix:/path"`.
    /// Empty: no spam scanning. A message the milter rejects gets its reply; one it
    /// flags (`X-Spam-Flag: YES`) goes to the recipient's Junk.
    pub milter: String,
    /// Time allowed for each answer of the milter, in seconds.
    pub milter_timeout_seconds: u64,
    /// When the milter cannot be reached or breaks the protocol: true accepts the
    /// message unscanned (logged), false answers `451 4.7.1` so the sender retries.
    pub milter_fail_open: bool,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            dnsbl: vec!["zen.spamhaus.org".into()],
            trusted_networks: vec![
                ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
                ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            milter: String::new(),
            milter_timeout_seconds: 30,
            milter_fail_open: true,
        }
    }
}
