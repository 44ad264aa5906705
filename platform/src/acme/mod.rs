//! ACME certificates (RFC 8555, instant-acme), on when `[acme] directory` is set.
//!
//! One certificate per host name we serve: the host name, the admin host, the
//! `mta-sts.` and `autoconfig.` hosts of every domain and every app's host. A name
//! is ordered when its certificate is missing, self-signed, does not name it, or
//! expires within `[acme] renew_days`; the CA validates it by HTTP-01 (our port 80
//! listeners answer `/.well-known/acme-challenge/`) or TLS-ALPN-01 (our port 443
//! listeners answer `acme-tls/1`). The new pair is written beside the others
//! (`DATA_DIR/tls/sni/NAME.pem` + `.key`; the host name's is the default pair unless
//! `[tls] cert` is set) and swapped into every listener: open connections keep their
//! session. A failed order keeps the old certificate, is retried with a growing
//! delay, and is reported in the activity log and by mail to every admin.

mod notice;
mod order;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::certs::CertInfo;

/// Let's Encrypt's production directory (`quickstart --acme-email`).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How often the certificates are looked at when nothing is pending.
const CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The first retry after a failure; each further failure doubles it, up to a day.
const FIRST_RETRY: Duration = Duration::from_secs(600);
const LAST_RETRY: Duration = Duration::from_secs(86_400);

/// A failure is mailed to the admins at most this often per host name.
const NOTICE_INTERVAL: Duration = Duration::from_secs(86_400);

/// `[acme]`: certificates from an ACME CA such as Let's Encrypt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CA's ACME directory URL. Empty (the default): no ACME; the listeners serve
    /// the self-signed certificate, `[tls]` and `DATA_DIR/tls/sni/`.
    /// `quickstart --acme-email` sets Let's Encrypt's.
    pub directory: String,
    /// The account's contact address: the CA writes to it about expiring
    /// certificates and policy changes.
    pub email: String,
    /// PEM file with the root certificate the ACME server's own HTTPS chains to, for a
    /// test CA (pebble); it replaces the system's roots for that connection. Empty:
    /// the system's roots.
    pub ca_file: PathBuf,
    /// How the CA checks we hold a name: `http-01` (port 80 must reach this server)
    /// or `tls-alpn-01` (port 443).
    pub challenge: Challenge,
    /// A certificate is renewed this many days before it expires.
    pub renew_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            directory: String::new(),
            email: String::new(),
            ca_file: PathBuf::new(),
            challenge: Challenge::Http01,
            renew_days: 30,
        }
    }
}

/// An ACME challenge type we answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Challenge {
    /// RFC 8555 §8.3: a file under `/.well-known/acme-challenge/` on port 80.
    #[serde(rename = "http-01")]
    Http01,
    /// RFC 8737: a special certificate on port 443 for ALPN `acme-tls/1`.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// HTTP-01 responses being validated: token → key authorization.
#[derive(Debug, Default)]
pub struct Http01 {
    tokens: RwLock<HashMap<String, String>>,
}

impl Http01 {
    /// The key authorization to serve for `token`, while its order is validated.
    pub fn get(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    fn insert(&self, token: &str, key_authorization: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
    }

    fn remove(&self, token: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
}

enum Command {
    Renew {
        names: Vec<String>,
        force: bool,
        actor: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Status {
        reply: oneshot::Sender<String>,
    },
}

/// The running certificate manager: renewals and status on request.
#[derive(Clone)]
pub struct Acme {
    commands: mpsc::Sender<Command>,
}

impl Acme {
    /// Orders certificates now for `names` (empty: every name we serve): those due,
    /// or all of them with `force`. Returns one line per name; an error names each
    /// that failed (their old certificates stay).
    pub async fn renew(
        &self,
        names: Vec<String>,
        force: bool,
        actor: String,
    ) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Renew {
                names,
                force,
                actor,
                reply,
            })
            .await
            .map_err(|_| "the certificate manager has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the certificate manager has stopped".to_string())?
    }

    /// Each name's certificate, its expiry and the last failure.
    pub async fn status(&self) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Status { reply })
            .await
            .map_err(|_| "the certificate manager has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the certificate manager has stopped".to_string())
    }
}

/// Starts the manager when `[acme] directory` is set: it looks at every certificate
/// at once, then hourly. Runs until the runtime ends.
pub fn start(
    config: Arc<crate::config::Config>,
    store: Arc<store::Store>,
    tls: common::tls::Tls,
    http01: Arc<Http01>,
) -> Option<Acme> {
    if config.acme.directory.is_empty() {
        return None;
    }
    let (commands, receiver) = mpsc::channel(16);
    let manager = Manager {
        config,
        store,
        tls,
        http01,
        account: None,
        failures: HashMap::new(),
    };
    tokio::spawn(manager.run(receiver));
    Some(Acme { commands })
}

struct Failure {
    count: u32,
    error: String,
    retry_at: Instant,
    notified: Option<Instant>,
}

struct Manager {
    config: Arc<crate::config::Config>,
    store: Arc<store::Store>,
    tls: common::tls::Tls,
    http01: Arc<Http01>,
    account: Option<instant_acme::Account>,
    failures: HashMap<String, Failure>,
}

impl Manager {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let now = Instant::now();
            for (name, reason) in self.due().await {
                if self.failures.get(&name).is_some_and(|f| f.retry_at > now) {
                    continue;
                }
                tracing::info!(name, reason, "ordering a certificate");
                let _ = self.renew(&name, "acme").await;
            }
            let wake =
                self.failures
                    .values()
                    .map(|f| f.retry_at)
                    .min()
                    .map_or(CHECK_INTERVAL, |at| {
                        at.saturating_duration_since(Instant::now())
                            .min(CHECK_INTERVAL)
                    });
            tokio::select! {
                _ = tokio::time::sleep(wake) => {}
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Status { reply }) => {
                        let _ = reply.send(self.status().await);
                    }
                    Some(Command::Renew { names, force, actor, reply }) => {
                        let _ = reply.send(self.renew_now(names, force, &actor).await);
                    }
                },
            }
        }
    }

    /// The names whose certificate is due, with why.
    async fn due(&self) -> Vec<(String, String)> {
        let config = self.config.clone();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let now = unix_now();
            wanted_names(&config, &store)
                .into_iter()
                .filter_map(|name| {
                    let reason = why_due(&config, &name, now)?;
                    Some((name, reason))
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    async fn renew_now(
        &mut self,
        names: Vec<String>,
        force: bool,
        actor: &str,
    ) -> Result<String, String> {
        let config = self.config.clone();
        let store = self.store.clone();
        let wanted = tokio::task::spawn_blocking(move || wanted_names(&config, &store))
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = if names.is_empty() {
            wanted
        } else {
            let names: Vec<String> = names
                .iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect();
            if let Some(unknown) = names.iter().find(|n| !wanted.contains(n)) {
                return Err(format!(
                    "{unknown} is not a name this server serves (see `postern acme status`)"
                ));
            }
            names
        };
        let now = unix_now();
        let mut lines = Vec::new();
        let mut failed = Vec::new();
        for name in names {
            let reason = why_due(&self.config, &name, now);
            if reason.is_none() && !force {
                lines.push(format!(
                    "{name}: not due ({})",
                    describe(&self.config, &name)
                ));
                continue;
            }
            match self.renew(&name, actor).await {
                Ok(info) => lines.push(format!(
                    "{name}: issued, expires {} ({})",
                    rfc3339(info.not_after),
                    info.issuer
                )),
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        if failed.is_empty() {
            Ok(lines.iter().map(|l| format!("{l}\n")).collect())
        } else {
            lines.extend(failed);
            Err(lines.join("; "))
        }
    }

    /// Orders and installs a certificate for `name`; on failure records it, logs
    /// it and tells the admins.
    async fn renew(&mut self, name: &str, actor: &str) -> Result<CertInfo, String> {
        match self.order(name).await {
            Ok(info) => {
                self.failures.remove(name);
                tracing::info!(name, expires = %rfc3339(info.not_after), "certificate installed");
                self.log(
                    actor,
                    "acme-issued",
                    format!("{name}, expires {}", rfc3339(info.not_after)),
                )
                .await;
                Ok(info)
            }
            Err(error) => {
                let failure = self.failures.entry(name.to_string()).or_insert(Failure {
                    count: 0,
                    error: String::new(),
                    retry_at: Instant::now(),
                    notified: None,
                });
                failure.count += 1;
                failure.error = error.clone();
                let delay = retry_delay(failure.count);
                failure.retry_at = Instant::now() + delay;
                let notify = failure
                    .notified
                    .is_none_or(|at| at.elapsed() >= NOTICE_INTERVAL);
                if notify {
                    failure.notified = Some(Instant::now());
                }
                tracing::error!(name, error, retry_in = %humantime::format_duration(delay), "certificate order failed; the old certificate stays");
                self.log(actor, "acme-failed", format!("{name}: {error}"))
                    .await;
                if notify {
                    self.notify(name, &error, delay).await;
                }
                Err(error)
            }
        }
    }

    async fn order(&mut self, name: &str) -> Result<CertInfo, String> {
        let account = match &self.account {
            Some(a) => a.clone(),
            None => {
                let a = order::account(&self.config.acme, &self.config.data_dir).await?;
                self.account = Some(a.clone());
                a
            }
        };
        let responders = order::Responders {
            http01: &self.http01,
            tls: &self.tls,
        };
        let issued = order::issue(&account, name, self.config.acme.challenge, &responders).await?;
        let config = self.config.clone();
        let tls = self.tls.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || install(&config, &tls, &name, &issued))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn log(&self, actor: &str, action: &str, detail: String) {
        let store = self.store.clone();
        let event = store::AuditEvent {
            actor: actor.to_string(),
            action: action.to_string(),
            ip: None,
            detail,
        };
        let logged = tokio::task::spawn_blocking(move || store.log_event(&event)).await;
        if !matches!(logged, Ok(Ok(()))) {
            tracing::error!(action, "could not write the activity log");
        }
    }

    /// A mail to each admin's INBOX naming the host and the error.
    async fn notify(&self, name: &str, error: &str, retry_in: Duration) {
        let store = self.store.clone();
        let config = self.config.clone();
        let (host, error) = (name.to_string(), error.to_string());
        let sent = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            let admins: Vec<store::Account> = store
                .accounts()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|a| a.admin)
                .collect();
            if admins.is_empty() {
                return Ok(0);
            }
            let current = crate::certs::read(&pair_paths(&config, &host).0);
            let emails: Vec<String> = admins.iter().map(|a| a.email.clone()).collect();
            let message = notice::failure(
                &config.hostname,
                &emails,
                &host,
                &error,
                current.as_ref(),
                retry_in,
            );
            let ids: Vec<store::AccountId> = admins.iter().map(|a| a.id).collect();
            smtp::delivery::deliver_plain(&store, &ids, &message, false)
                .map_err(|e| e.to_string())?;
            Ok(ids.len())
        })
        .await;
        match sent {
            Ok(Ok(n)) => {
                tracing::info!(name, admins = n, "certificate failure mailed to the admins")
            }
            Ok(Err(e)) => tracing::error!(
                error = e,
                "could not mail the certificate failure to the admins"
            ),
            Err(e) => {
                tracing::error!(error = %e, "could not mail the certificate failure to the admins")
            }
        }
    }

    async fn status(&self) -> String {
        let config = self.config.clone();
        let store = self.store.clone();
        let names = tokio::task::spawn_blocking(move || wanted_names(&config, &store))
            .await
            .unwrap_or_default();
        let mut out = format!(
            "ACME directory {} ({})\n",
            self.config.acme.directory,
            match self.config.acme.challenge {
                Challenge::Http01 => "http-01",
                Challenge::TlsAlpn01 => "tls-alpn-01",
            }
        );
        for name in names {
            out.push_str(&format!("{name}: {}", describe(&self.config, &name)));
            if let Some(f) = self.failures.get(&name) {
                out.push_str(&format!(
                    "; failed {} time(s), last: {}; next attempt in {}",
                    f.count,
                    f.error,
                    humantime::format_duration(Duration::from_secs(
                        f.retry_at
                            .saturating_duration_since(Instant::now())
                            .as_secs()
                    ))
                ));
            }
            out.push('\n');
        }
        out
    }
}

/// The delay before retrying after `failures` failures in a row.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_RETRY * 2u32.pow(doublings)).min(LAST_RETRY)
}

/// Every host name we serve over TLS: the host name, the admin host (`[admin] host`,
/// or `my.` of each domain), `mta-sts.` and `autoconfig.` of each domain, and each
/// app's host. Names that cannot get a public certificate (no dot, IP literals) are
/// left out.
pub fn wanted_names(config: &crate::config::Config, store: &store::Store) -> Vec<String> {
    let mut names = vec![config.hostname.clone()];
    let admin_host = config.admin.host.trim_end_matches('.').to_ascii_lowercase();
    if !admin_host.is_empty() {
        names.push(admin_host.clone());
    }
    match store.domains() {
        Ok(domains) => {
            for domain in domains {
                if admin_host.is_empty() {
                    names.push(format!("my.{}", domain.name));
                }
                names.push(format!("mta-sts.{}", domain.name));
                names.push(format!("autoconfig.{}", domain.name));
            }
        }
        Err(e) => tracing::error!(error = %e, "reading the domains for certificates"),
    }
    match store.apps() {
        Ok(apps) => names.extend(apps.into_iter().map(|a| a.host)),
        Err(e) => tracing::error!(error = %e, "reading the apps for certificates"),
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let usable = name.contains('.') && name.parse::<std::net::IpAddr>().is_err();
        if usable && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Where `name`'s certificate and key live: the default pair for the host name
/// (unless `[tls] cert` names one of the admin's own), `tls/sni/NAME.pem` + `.key`
/// otherwise.
fn pair_paths(config: &crate::config::Config, name: &str) -> (PathBuf, PathBuf) {
    if name == config.hostname.to_ascii_lowercase() && config.tls.cert.as_os_str().is_empty() {
        let dir = config.data_dir.join("tls");
        (dir.join("cert.pem"), dir.join("key.pem"))
    } else {
        let dir = crate::certs::sni_dir(config);
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }
}

/// Why `name` needs a new certificate at `now` (Unix seconds), or None. A wildcard
/// pair the admin installed (`tls/sni/*.PARENT.pem`, say from DNS-01 elsewhere) that
/// covers the name and is not due serves it: no certificate of its own is ordered, so
/// the name stays out of the Certificate Transparency logs.
fn why_due(config: &crate::config::Config, name: &str, now: i64) -> Option<String> {
    let own = why_replace(config, name, now, &pair_paths(config, name).0)?;
    if let Some((_, parent)) = name.split_once('.') {
        let wildcard = crate::certs::sni_dir(config).join(format!("*.{parent}.pem"));
        if wildcard.exists() && why_replace(config, name, now, &wildcard).is_none() {
            return None;
        }
    }
    Some(own)
}

/// Why the certificate in `path` does not do for `name` at `now`, or None.
fn why_replace(
    config: &crate::config::Config,
    name: &str,
    now: i64,
    path: &std::path::Path,
) -> Option<String> {
    let Some(info) = crate::certs::read(path) else {
        return Some("no certificate".into());
    };
    if info.self_signed {
        return Some("self-signed".into());
    }
    if !info.covers(name) {
        return Some("the certificate does not name it".into());
    }
    let left = info.not_after - now;
    let window = i64::from(config.acme.renew_days) * 86_400;
    (left < window).then(|| format!("expires in {} days", left.max(0) / 86_400))
}

/// One line on `name`'s current certificate.
fn describe(config: &crate::config::Config, name: &str) -> String {
    match crate::certs::read(&pair_paths(config, name).0) {
        None => match name.split_once('.') {
            Some((_, parent))
                if crate::certs::sni_dir(config)
                    .join(format!("*.{parent}.pem"))
                    .exists() =>
            {
                format!("served by the wildcard *.{parent}")
            }
            _ => "no certificate".into(),
        },
        Some(info) if info.self_signed => {
            format!("self-signed, expires {}", rfc3339(info.not_after))
        }
        Some(info) => format!("expires {} ({})", rfc3339(info.not_after), info.issuer),
    }
}

/// Checks the issued chain names `name` and fits its key, writes the pair as one file
/// replaced by one rename (a crash never leaves a key that does not fit its
/// certificate) and swaps it into every listener.
fn install(
    config: &crate::config::Config,
    tls: &common::tls::Tls,
    name: &str,
    issued: &order::Issued,
) -> Result<CertInfo, String> {
    let info = crate::certs::parse(issued.chain_pem.as_bytes())
        .ok_or("the CA sent a certificate that does not parse")?;
    if !info.covers(name) {
        return Err(format!(
            "the CA sent a certificate for {:?}, not {name}",
            info.names
        ));
    }
    let (cert_path, key_path) = pair_paths(config, name);
    // The pair must load before anything is replaced (write_pair checks).
    common::tls::write_pair(
        &cert_path,
        issued.chain_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    // The old separate key file is read no more.
    let _ = std::fs::remove_file(&key_path);
    tls.reload()
        .map_err(|e| format!("the certificate was saved but not loaded: {e}"))?;
    Ok(info)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn rfc3339(unix: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(unix.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_ten_minutes_to_a_day() {
        assert_eq!(retry_delay(1), Duration::from_secs(600));
        assert_eq!(retry_delay(2), Duration::from_secs(1200));
        assert_eq!(retry_delay(4), Duration::from_secs(4800));
        assert_eq!(retry_delay(9), LAST_RETRY);
        assert_eq!(retry_delay(u32::MAX), LAST_RETRY);
    }

    #[test]
    fn a_self_signed_or_missing_certificate_is_due_a_fresh_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            hostname: "mail.example.test".into(),
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let now = unix_now();
        assert_eq!(
            why_due(&config, "mail.example.test", now).as_deref(),
            Some("no certificate")
        );
        common::tls::write_self_signed(&dir.path().join("tls"), &["mail.example.test".into()])
            .unwrap();
        assert_eq!(
            why_due(&config, "mail.example.test", now).as_deref(),
            Some("self-signed")
        );
        // A CA-issued certificate with 90 days left: due only within renew_days.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["my.example.test".into()]).unwrap();
        let start = SystemTime::now();
        leaf.not_before = start.into();
        leaf.not_after = (start + Duration::from_secs(90 * 86_400)).into();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let sni = crate::certs::sni_dir(&config);
        std::fs::create_dir_all(&sni).unwrap();
        std::fs::write(sni.join("my.example.test.pem"), cert.pem()).unwrap();
        assert_eq!(why_due(&config, "my.example.test", now), None);
        assert_eq!(
            why_due(&config, "my.example.test", now + 62 * 86_400).as_deref(),
            Some("expires in 28 days")
        );
        // The file of another name does not count for this one.
        std::fs::copy(
            sni.join("my.example.test.pem"),
            sni.join("autoconfig.example.test.pem"),
        )
        .unwrap();
        assert_eq!(
            why_due(&config, "autoconfig.example.test", now).as_deref(),
            Some("the certificate does not name it")
        );
        // An installed wildcard serves the names it covers while it is not due.
        let mut wildcard = rcgen::CertificateParams::new(vec!["*.example.test".into()]).unwrap();
        wildcard.not_before = start.into();
        wildcard.not_after = (start + Duration::from_secs(90 * 86_400)).into();
        let wildcard = wildcard.signed_by(&key, &issuer).unwrap();
        std::fs::write(sni.join("*.example.test.pem"), wildcard.pem()).unwrap();
        assert_eq!(why_due(&config, "autoconfig.example.test", now), None);
        assert_eq!(why_due(&config, "blog.example.test", now), None);
        assert!(why_due(&config, "blog.example.test", now + 80 * 86_400).is_some());
        assert!(why_due(&config, "a.b.example.test", now).is_some());
    }
}
