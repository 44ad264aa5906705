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
    /// The longest an SMTP session (MX or submission) may last, in seconds, however
    /// busy; then `421 4.4.2` and the connection closes.
    pub max_session_seconds: u64,
    /// The longest one message may take to arrive (DATA to its end, or the BDAT
    /// chunks), in seconds; then `421 4.4.2`.
    pub max_data_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0u16; 8], 25))],
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_session_seconds: 30 * 60,
            max_data_seconds: 10 * 60,
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
    /// Messages one account may send per hour (counted at MAIL FROM); more get
    /// `450 4.7.1`. 0: no limit.
    pub max_messages_per_hour: u32,
    /// Messages one client IP may send per hour, whatever account it logs in as.
    /// 0: no limit.
    pub max_messages_per_hour_per_ip: u32,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            listen: vec![SocketAddr::from(([0u16; 8], 587))],
            listen_tls: vec![SocketAddr::from(([0u16; 8], 465))],
            max_messages_per_hour: 500,
            max_messages_per_hour_per_ip: 1000,
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

/// `[queue]`: delivering mail to other servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// A smarthost that takes all outbound mail, as `"host:port"` (STARTTLS is then
    /// required). Empty: deliver directly to each domain's MX.
    pub relay: String,
    /// User name for AUTH at the relay. Empty: no AUTH.
    pub relay_username: String,
    /// Password for AUTH at the relay (shown as `<redacted>` by the admin API and in
    /// logs).
    pub relay_password: common::secret::Secret,
    /// Whether the relay's certificate must be valid for its name (against the system's
    /// trusted roots). Turn off only for a relay you reach over a network you trust.
    pub relay_verify_certificate: bool,
    /// PEM file of root certificates trusted, besides the system's, wherever a
    /// certificate must be valid: MX hosts of domains with an MTA-STS policy and their
    /// policy servers, REQUIRETLS mail, the relay. Empty: the system's roots only.
    pub ca_file: std::path::PathBuf,
    /// The port remote MX hosts are reached on. Only a test setup changes it.
    pub mx_port: u16,
    /// Delay before the first retry of a deferred message, in seconds; each further
    /// retry waits twice as long, up to `retry_max_seconds`.
    pub retry_first_seconds: u64,
    /// The longest wait between two attempts, in seconds.
    pub retry_max_seconds: u64,
    /// How long a message is retried before it is returned to its sender, in seconds
    /// (default 5 days, RFC 5321 §4.5.4.1).
    pub max_age_seconds: u64,
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// Time allowed to connect, and for each reply of a remote server, in seconds
    /// (RFC 5321 §4.5.3.2 asks for minutes; the DATA end gets 10 minutes).
    pub timeout_seconds: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            relay: String::new(),
            relay_username: String::new(),
            relay_password: Default::default(),
            relay_verify_certificate: true,
            ca_file: std::path::PathBuf::new(),
            mx_port: 25,
            retry_first_seconds: 300,
            retry_max_seconds: 4 * 3600,
            max_age_seconds: 5 * 24 * 3600,
            concurrency: 16,
            timeout_seconds: 300,
        }
    }
}
