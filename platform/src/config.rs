//! The one TOML configuration file: every crate's section assembled, loaded with
//! unknown keys refused, and printed with a comment on every key (the `///` docs below
//! and in each crate are the reference).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole configuration of a Postern server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This server's host name: the SMTP greeting and EHLO name, the MX target in the
    /// DNS records, the Authentication-Results authserv-id. Default: the system's.
    pub hostname: String,
    /// Directory holding the store, message bodies, TLS files and the control socket.
    /// A relative path is taken from the working directory.
    pub data_dir: PathBuf,
    /// How the server process runs.
    pub server: common::config::Server,
    /// The TLS certificate of every listener.
    pub tls: common::tls::Config,
    /// SMTP MX (receiving mail from the Internet).
    pub smtp: smtp::Config,
    /// SMTP submission (sending mail as one of our users).
    pub submission: smtp::SubmissionConfig,
    /// IMAP (reading mail).
    pub imap: imap::Config,
    /// ManageSieve (managing filters).
    pub managesieve: sieve::Config,
    /// Sieve filters at delivery: limits on scripts and what they may do.
    pub sieve: sieve::SieveConfig,
    /// Plain HTTP: redirects to HTTPS.
    pub http: crate::web::HttpConfig,
    /// HTTPS: MTA-STS policies, mail client autoconfiguration.
    pub https: crate::web::HttpsConfig,
    /// The admin API.
    pub admin: crate::api::AdminConfig,
    /// Certificates from an ACME CA (Let's Encrypt).
    pub acme: crate::acme::Config,
    /// The host firewall and automatic bans.
    pub firewall: crate::firewall::FirewallConfig,
    /// Apps run in containers.
    pub apps: crate::containers::AppsConfig,
    /// DNS lookups.
    pub dns: common::dns::Config,
    /// Spam checks on incoming mail.
    pub spam: smtp::SpamConfig,
    /// Delivery to other servers.
    pub queue: smtp::QueueConfig,
    /// Login protection.
    pub auth: common::auth::Config,
    /// Per-client caps on every mail listener.
    pub net: common::net::Config,
    /// Nightly backups (`postern backup` makes one at any time).
    pub backup: crate::backup::Config,
    /// The activity log.
    pub audit: store::AuditConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: system_hostname(),
            data_dir: PathBuf::from("postern-data"),
            server: Default::default(),
            tls: Default::default(),
            smtp: Default::default(),
            submission: Default::default(),
            imap: Default::default(),
            managesieve: Default::default(),
            sieve: Default::default(),
            http: Default::default(),
            https: Default::default(),
            admin: Default::default(),
            acme: Default::default(),
            firewall: Default::default(),
            apps: Default::default(),
            dns: Default::default(),
            spam: Default::default(),
            queue: Default::default(),
            auth: Default::default(),
            net: Default::default(),
            backup: Default::default(),
            audit: Default::default(),
        }
    }
}

impl Config {
    /// The same, with every secret (`[queue] relay_password`) replaced by
    /// `<redacted>` when set: for showing it.
    pub fn redacted(&self) -> Config {
        let mut config = self.clone();
        config.queue.relay_password = config.queue.relay_password.redacted();
        config
    }
}

fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The configuration file's name in a data directory (where quickstart writes it).
pub const FILE_NAME: &str = "postern.toml";

/// The default place of the configuration file.
pub const DEFAULT_PATH: &str = "postern-data/postern.toml";

/// Which file to read: `--config`, else `$POSTERN_CONFIG`, else the default path.
/// `explicit` is true when the user named it (then it must exist).
pub fn locate(flag: Option<&Path>) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    match std::env::var_os("POSTERN_CONFIG") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_PATH), false),
    }
}

/// Loads the configuration. With no file at the default path, the defaults apply.
pub fn load(flag: Option<&Path>) -> Result<Config> {
    let (path, explicit) = locate(flag);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).with_context(|| format!("configuration {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read configuration {}", path.display())),
    }
}

/// Parses and checks configuration text.
pub fn parse(text: &str) -> Result<Config> {
    let config: Config =
        toml::from_str(text).map_err(|e| anyhow::anyhow!(one_line(&e.to_string())))?;
    validate(&config)?;
    Ok(config)
}

/// toml's messages span lines with a source excerpt; keep them on one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

fn validate(c: &Config) -> Result<()> {
    if c.hostname.trim().is_empty() || c.hostname.contains(char::is_whitespace) {
        bail!("key `hostname`: {:?} is not a host name", c.hostname);
    }
    if c.data_dir.as_os_str().is_empty() {
        bail!("key `data_dir`: must not be empty");
    }
    if c.auth.attempts_per_second == 0 {
        bail!("key `auth.attempts_per_second`: must be at least 1");
    }
    if c.net.connections_per_second == 0 || c.net.connections_per_ip == 0 {
        bail!("keys `net.connections_per_second` and `net.connections_per_ip`: must be at least 1");
    }
    if c.dns.timeout_seconds == 0 || c.dns.budget_seconds == 0 {
        bail!("keys `dns.timeout_seconds` and `dns.budget_seconds`: must be at least 1");
    }
    if !c.spam.milter.is_empty()
        && !c.spam.milter.starts_with("unix:")
        && c.spam.milter.parse::<std::net::SocketAddr>().is_err()
    {
        bail!(
            "key `spam.milter`: {:?} is neither \"ip:port\" nor \"unix:/path\"",
            c.spam.milter
        );
    }
    if !c.acme.directory.is_empty() && !c.acme.directory.starts_with("https://") {
        bail!(
            "key `acme.directory`: {:?} is not an https:// URL",
            c.acme.directory
        );
    }
    if !c.acme.ca_file.as_os_str().is_empty() && !c.acme.ca_file.is_file() {
        bail!(
            "key `acme.ca_file`: {} is not a readable file",
            c.acme.ca_file.display()
        );
    }
    let fw = &c.firewall;
    if fw.ssh_port == 0 {
        bail!("key `firewall.ssh_port`: must be a port (1-65535)");
    }
    if fw.ssh_connections_per_10s == 0
        || fw.mail_connections_per_second == 0
        || fw.http_connections_per_second == 0
        || fw.http_burst < fw.http_connections_per_second
    {
        bail!(
            "keys `firewall.*_connections_*`: must be at least 1, and `http_burst` at least `http_connections_per_second`"
        );
    }
    if fw.ssh_connections_per_10s >= 20 {
        // xt_recent remembers at most 20 packets per address by default.
        bail!("key `firewall.ssh_connections_per_10s`: at most 19");
    }
    if fw.ban_after_failed_logins > 0 && fw.ban_hours == 0 {
        bail!("key `firewall.ban_hours`: must be at least 1 when bans are on");
    }
    if c.apps.subnet.prefix_len() > 29
        || c.apps.memory_mb < 16
        || c.apps.pids < 8
        || c.apps.first_uid == 0
        || c.apps.mail_connections_per_second == 0
    {
        bail!(
            "keys `apps.*`: subnet at most a /29, memory_mb at least 16, pids at least 8, first_uid and mail_connections_per_second at least 1"
        );
    }
    if c.acme.renew_days == 0 || c.acme.renew_days > 60 {
        bail!("key `acme.renew_days`: must be between 1 and 60");
    }
    c.backup.validate()?;
    Ok(())
}

/// `config` as a TOML document with every key's documentation as comments.
pub fn render(config: &Config) -> Result<String> {
    let schema = schemars::schema_for!(Config);
    let schema = schema.as_value();
    let value = toml::Table::try_from(config).context("serialising the configuration")?;
    let mut out = String::from(
        "# Postern configuration. Every key is optional: a missing key takes the\n# default shown here. Unknown keys are an error.\n",
    );
    let props = &schema["properties"];
    // Top-level scalars first (TOML requires them before any [table]).
    for (key, v) in &value {
        if !v.is_table() {
            out.push('\n');
            comment(&mut out, props[key]["description"].as_str());
            out.push_str(&key_value(key, v)?);
        }
    }
    for (key, v) in &value {
        let Some(table) = v.as_table() else { continue };
        out.push('\n');
        comment(&mut out, props[key]["description"].as_str());
        let _ = writeln!(out, "[{key}]");
        let def = props[key]["$ref"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or("");
        let fields = &schema["$defs"][def]["properties"];
        for (k, fv) in table {
            comment(&mut out, fields[k]["description"].as_str());
            out.push_str(&key_value(k, fv)?);
        }
    }
    Ok(out)
}

fn comment(out: &mut String, text: Option<&str>) {
    for line in text.unwrap_or("(undocumented)").lines() {
        let _ = writeln!(out, "# {line}").map(|_| ());
    }
}

fn key_value(key: &str, v: &toml::Value) -> Result<String> {
    let mut t = toml::Table::new();
    t.insert(key.to_string(), v.clone());
    toml::to_string(&t).context("serialising a key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_round_trips_with_every_key_documented() {
        let text = render(&Config::default()).unwrap();
        assert!(!text.contains("(undocumented)"), "{text}");
        assert_eq!(parse(&text).unwrap(), Config::default());
        for key in [
            "[server]",
            "run_as",
            "shutdown_grace_seconds",
            "[tls]",
            "[smtp]",
            "[submission]",
            "listen_tls",
            "[imap]",
            "[managesieve]",
            "[sieve]",
            "[http]",
            "[https]",
            "[admin]",
            "login_attempts_per_second",
            "max_script_bytes",
            "[dns]",
            "nameservers",
            "timeout_seconds",
            "budget_seconds",
            "[spam]",
            "dnsbl",
            "trusted_networks",
            "milter",
            "[auth]",
            "attempts_per_second",
            "[net]",
            "connections_per_second",
            "connections_per_ip",
            "[backup]",
            "passphrase_file",
            "keep",
        ] {
            assert!(text.contains(key), "missing {key}");
        }
        assert!(text.contains("dnsbl = [\"zen.spamhaus.org\"]"));
        assert!(
            text.contains("trusted_networks = [\"127.0.0.0/8\", \"::1/128\"]"),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let e = parse("[smtp]\nlisten = []\nlisen = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = parse("[net]\nconnections_per_ip = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("connections_per_ip"), "{e}");
        let e = parse("[spam]\ntrusted_networks = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trusted_networks"), "{e}");
        let e = parse("[backup]\ndir = \"/b\"\nhour = 25\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("backup.hour"), "{e}");
        let e = parse("[spam]\nmilter = \"nonsense\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("spam.milter"), "{e}");
        assert!(!e.contains('\n'));
    }
}
