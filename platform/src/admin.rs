//! Administrative requests (users, aliases, domains, DNS records, the activity log):
//! one type for what the CLI asks, executed against the store either in the CLI
//! process or, while `serve` runs, in the server through the control socket.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use store::{AuditEvent, DkimKey, Store};

use crate::config::Config;

/// One administrative request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create an account; no password: generate one and print it.
    UserAdd {
        email: String,
        password: Option<common::secret::Secret>,
    },
    /// List accounts.
    UserList,
    /// Set an account's password; no password: generate one and print it.
    UserPasswd {
        email: String,
        password: Option<common::secret::Secret>,
    },
    /// Delete an account and its mail.
    UserDel { email: String },
    /// Set an account's quota in bytes (0: unlimited).
    UserQuota { email: String, bytes: u64 },
    /// Create an alias (`@domain`: catch-all).
    AliasAdd {
        address: String,
        targets: Vec<String>,
    },
    /// List aliases.
    AliasList,
    /// Delete an alias.
    AliasDel { address: String },
    /// Add a domain and generate its DKIM keys.
    DomainAdd { name: String },
    /// List domains.
    DomainList,
    /// Delete a domain (refused while it has accounts or aliases).
    DomainDel { name: String },
    /// A web application behind the HTTPS front; `host` defaults to
    /// `NAME.<first domain>`.
    AppAdd {
        name: String,
        upstream: String,
        host: Option<String>,
    },
    /// A web application run in a container from a root filesystem.
    ContainerAdd {
        name: String,
        rootfs: String,
        port: u16,
        env: Vec<String>,
        command: Vec<String>,
        host: Option<String>,
    },
    /// Start a container app.
    AppStart { name: String },
    /// Stop a container app.
    AppStop { name: String },
    /// The web applications.
    AppList,
    /// Remove a web application.
    AppDel { name: String },
    /// The DNS records of a domain.
    DnsRecords { domain: String },
    /// The activity log: entries at or after `since_ms` (Unix ms), the newest `limit`.
    Log { since_ms: Option<u64>, limit: usize },
    /// The messages of an account's mailbox (default INBOX).
    MailList {
        email: String,
        mailbox: Option<String>,
    },
    /// One raw message.
    MailShow {
        email: String,
        uid: u32,
        mailbox: Option<String>,
    },
    /// The DKIM keys of a domain.
    DkimList { domain: String },
    /// New (inactive) DKIM keys for a domain, to publish before activating them.
    DkimRotate { domain: String },
    /// Sign with this key from now on, instead of the active key of its algorithm.
    DkimActivate { domain: String, selector: String },
    /// Delete an inactive key.
    DkimRetire { domain: String, selector: String },
    /// SHA-256 digests (hex) of the messages in a mailbox, one per line, so that an
    /// import can skip what is already there. The mailbox is created if missing.
    MailboxDigests { email: String, mailbox: String },
    /// Messages for a mailbox from `postern import`.
    ImportBatch {
        email: String,
        mailbox: String,
        messages: Vec<ImportedMessage>,
    },
    /// The outbound queue.
    QueueList,
    /// Make a queued message due now.
    QueueRetry { id: u64 },
    /// Remove a message from the queue without delivering it or telling its sender.
    QueueDrop { id: u64 },
    /// Order certificates now (empty: every name served): those due, or all with
    /// `force`. Only the running server does it.
    AcmeRenew { names: Vec<String>, force: bool },
    /// Each served name's certificate and the last ACME failure.
    AcmeStatus,
    /// The firewall: show, apply, blocks, block lists.
    Firewall(crate::firewall::Request),
    /// Admin accounts whose password hash is legacy or weak: `email: why` lines.
    WeakAdminHashes,
    /// Write a backup into `to` (an absolute path, missing or empty), encrypted when a
    /// passphrase is given. The running server streams its progress first (see
    /// `control`).
    BackupCreate {
        to: std::path::PathBuf,
        passphrase: Option<crate::backup::Passphrase>,
    },
}

/// Why an ACME request is refused when the running server has no ACME manager.
pub const ACME_OFF: &str = "ACME is off: set `[acme] directory` (and `email`) in the configuration and restart `postern serve`";

impl Request {
    /// Whether the request changes anything (and so goes to the activity log).
    fn action(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Request::UserAdd { email, .. } => ("user-add", email.clone()),
            Request::UserPasswd { email, .. } => ("user-passwd", email.clone()),
            Request::UserDel { email } => ("user-del", email.clone()),
            Request::UserQuota { email, bytes } => ("user-quota", format!("{email} {bytes}")),
            Request::AliasAdd { address, targets } => {
                ("alias-add", format!("{address} -> {}", targets.join(", ")))
            }
            Request::AliasDel { address } => ("alias-del", address.clone()),
            Request::DomainAdd { name } => ("domain-add", name.clone()),
            Request::DomainDel { name } => ("domain-del", name.clone()),
            Request::AppAdd { name, upstream, .. } => ("app-add", format!("{name} -> {upstream}")),
            Request::AppDel { name } => ("app-del", name.clone()),
            Request::ContainerAdd {
                name, rootfs, port, ..
            } => (
                "app-add",
                format!("{name} -> container {rootfs} port {port}"),
            ),
            Request::AppStart { name } => ("app-start", name.clone()),
            Request::AppStop { name } => ("app-stop", name.clone()),
            Request::DkimRotate { domain } => ("dkim-rotate", domain.clone()),
            Request::DkimActivate { domain, selector } => {
                ("dkim-activate", format!("{selector}._domainkey.{domain}"))
            }
            Request::DkimRetire { domain, selector } => {
                ("dkim-retire", format!("{selector}._domainkey.{domain}"))
            }
            Request::QueueRetry { id } => ("queue-retry", id.to_string()),
            Request::QueueDrop { id } => ("queue-drop", id.to_string()),
            Request::ImportBatch {
                email,
                mailbox,
                messages,
            } => (
                "import",
                format!("{} messages to {email} {mailbox}", messages.len()),
            ),
            Request::DkimList { .. } | Request::QueueList | Request::MailboxDigests { .. } => {
                return None;
            }
            // The certificate manager logs each order's outcome itself, and a backup
            // logs `backup-created` or `backup-failed`.
            Request::AcmeRenew { .. } | Request::AcmeStatus | Request::BackupCreate { .. } => {
                return None;
            }
            Request::Firewall(r) => return r.action(),
            Request::WeakAdminHashes => return None,
            Request::UserList
            | Request::AliasList
            | Request::DomainList
            | Request::AppList
            | Request::DnsRecords { .. }
            | Request::Log { .. }
            | Request::MailList { .. }
            | Request::MailShow { .. } => {
                return None;
            }
        })
    }
}

/// One message of an import batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedMessage {
    /// The message, base64 (the control socket speaks JSON lines).
    pub body_b64: String,
    /// Its flags.
    pub flags: Vec<String>,
    /// Its internal date, Unix milliseconds.
    pub internal_date_ms: u64,
}

/// A request refused or failed: one line for the user.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl From<store::Error> for Refusal {
    fn from(e: store::Error) -> Self {
        Refusal(e.to_string())
    }
}

impl From<common::auth::Error> for Refusal {
    fn from(e: common::auth::Error) -> Self {
        Refusal(e.to_string())
    }
}

/// Runs `request` against `store`; `actor` names who asked, for the activity log.
/// Returns the text to print.
pub fn execute(
    store: &Store,
    config: &Config,
    request: &Request,
    actor: &str,
) -> Result<String, Refusal> {
    execute_from(store, config, request, actor, None)
}

/// Like [`execute`], recording the client's address (the admin API).
pub fn execute_from(
    store: &Store,
    config: &Config,
    request: &Request,
    actor: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<String, Refusal> {
    execute_in(store, config, request, actor, ip, None)
}

/// Like [`execute_from`], in the running server: firewall changes also reach its
/// listeners' deny list, and a change of the names served renews the self-signed
/// certificate.
pub fn execute_in(
    store: &Store,
    config: &Config,
    request: &Request,
    actor: &str,
    ip: Option<std::net::IpAddr>,
    running: Option<&crate::running::Running>,
) -> Result<String, Refusal> {
    let privileged = match running {
        Some(r) => r.privileged.clone(),
        None => crate::privsep::Privileged::Direct(std::sync::Arc::new(config.clone())),
    };
    let out = match request {
        Request::Firewall(r) => crate::firewall::execute(
            store,
            config,
            running.map(|r| &*r.deny),
            &privileged,
            r,
            actor,
        )?,
        _ => run(store, config, &privileged, request, actor)?,
    };
    if let Some((action, detail)) = request.action() {
        let event = AuditEvent {
            actor: actor.to_string(),
            action: action.to_string(),
            ip,
            detail,
        };
        store.log_event(&event)?;
    }
    let names_changed = matches!(
        request,
        Request::DomainAdd { .. }
            | Request::DomainDel { .. }
            | Request::AppAdd { .. }
            | Request::ContainerAdd { .. }
            | Request::AppDel { .. }
    );
    if let (true, Some(running)) = (names_changed, running) {
        running.names_changed(config, store);
    }
    Ok(out)
}

/// The host an app is served on: the one given, or `NAME.<first domain>`.
fn app_host(store: &Store, name: &str, host: &Option<String>) -> Result<String, Refusal> {
    match host {
        Some(h) => Ok(h.clone()),
        None => {
            let Some(first) = store.domains()?.into_iter().next() else {
                return Err(Refusal(
                    "there is no domain to put the app under: give --host".into(),
                ));
            };
            Ok(format!("{}.{}", name.to_ascii_lowercase(), first.name))
        }
    }
}

/// [`run`] never sees a firewall request: [`execute_in`] takes it first.
fn unreachable_firewall() -> Result<String, Refusal> {
    Err(Refusal(
        "internal error: a firewall request reached the wrong handler".into(),
    ))
}

fn password_or_generated(
    password: &Option<common::secret::Secret>,
) -> Result<(String, bool), Refusal> {
    match password {
        Some(p) => {
            common::auth::check_policy(p.expose())?;
            Ok((p.expose().to_string(), false))
        }
        None => Ok((common::auth::generate_password()?, true)),
    }
}

fn run(
    store: &Store,
    config: &Config,
    privileged: &crate::privsep::Privileged,
    request: &Request,
    actor: &str,
) -> Result<String, Refusal> {
    Ok(match request {
        Request::UserAdd { email, password } => {
            let (password, generated) = password_or_generated(password)?;
            let account = store.add_account(email, &common::auth::hash_password(&password)?)?;
            let mut out = format!("Created account {}\n", account.email);
            if generated {
                let _ = writeln!(out, "Password: {password}");
            }
            out
        }
        Request::UserPasswd { email, password } => {
            let (password, generated) = password_or_generated(password)?;
            store.set_password(email, &common::auth::hash_password(&password)?)?;
            crate::api::revoke_tokens(store, email);
            let mut out = format!("Password changed for {}\n", email.to_ascii_lowercase());
            if generated {
                let _ = writeln!(out, "Password: {password}");
            }
            out
        }
        Request::UserList => {
            let mut out = String::new();
            for a in store.accounts()? {
                let quota = if a.quota_bytes == 0 {
                    "unlimited".to_string()
                } else {
                    format_size(a.quota_bytes)
                };
                let _ = writeln!(
                    out,
                    "{}\tquota {}\tused {}",
                    a.email,
                    quota,
                    format_size(a.used_bytes)
                );
            }
            out
        }
        Request::UserDel { email } => {
            store.delete_account(email)?;
            crate::api::revoke_tokens(store, email);
            format!(
                "Deleted account {} and its mail\n",
                email.to_ascii_lowercase()
            )
        }
        Request::UserQuota { email, bytes } => {
            store.set_quota(email, *bytes)?;
            let q = if *bytes == 0 {
                "unlimited".to_string()
            } else {
                format_size(*bytes)
            };
            format!("Quota of {} set to {q}\n", email.to_ascii_lowercase())
        }
        Request::AliasAdd { address, targets } => {
            let alias = store.add_alias(address, targets)?;
            format!(
                "Created alias {} -> {}\n",
                alias.address,
                alias.targets.join(", ")
            )
        }
        Request::AliasList => {
            let mut out = String::new();
            for a in store.aliases()? {
                let _ = writeln!(out, "{} -> {}", a.address, a.targets.join(", "));
            }
            out
        }
        Request::AliasDel { address } => {
            store.delete_alias(address)?;
            format!("Deleted alias {}\n", address.to_ascii_lowercase())
        }
        Request::DomainAdd { name } => {
            let domain = store.add_domain(name)?;
            let keys = generate_dkim_keys(store, &domain.name, true)?;
            let mut out = format!(
                "Created domain {} with DKIM selectors {}\nPublish these DNS records:\n",
                domain.name,
                keys.join(", ")
            );
            out.push_str(&dns_records(store, config, &domain.name)?);
            out
        }
        Request::DomainList => store
            .domains()?
            .iter()
            .map(|d| format!("{}\n", d.name))
            .collect(),
        Request::DomainDel { name } => {
            store.delete_domain(name)?;
            format!("Deleted domain {}\n", name.to_ascii_lowercase())
        }
        Request::DnsRecords { domain } => dns_records(store, config, domain)?,
        Request::AppAdd {
            name,
            upstream,
            host,
        } => {
            let host = app_host(store, name, host)?;
            crate::web::reserved::check_app(config, store, Some(name), &host)?;
            let app = store.add_app(name, &host, upstream)?;
            format!(
                "Added app {} on https://{}/ -> http://{}/ (point {} at this server)\n",
                app.name, app.host, app.upstream, app.host
            )
        }
        Request::ContainerAdd {
            name,
            rootfs,
            port,
            env,
            command,
            host,
        } => {
            let host = app_host(store, name, host)?;
            crate::web::reserved::check_app(config, store, Some(name), &host)?;
            let new = crate::containers::NewContainer {
                host,
                name: name.clone(),
                rootfs: rootfs.clone(),
                port: *port,
                env: env.clone(),
                command: command.clone(),
            };
            crate::containers::add(store, config, privileged, &new)?
        }
        Request::AppStart { name } => crate::containers::start(store, config, privileged, name)?,
        Request::AppStop { name } => crate::containers::stop(store, privileged, name)?,
        Request::AppList => store
            .apps()?
            .iter()
            .map(|a| {
                format!(
                    "{}\t{}\t{}\t{}\n",
                    a.name,
                    a.host,
                    a.upstream,
                    crate::containers::status(privileged, a)
                )
            })
            .collect(),
        Request::AppDel { name } => {
            let name = name.to_ascii_lowercase();
            let existing = store.apps()?.into_iter().find(|a| a.name == name);
            let Some(existing) = existing else {
                return Err(Refusal(format!("no app named {name}")));
            };
            let cleanup = crate::containers::remove(config, store, privileged, &existing)?;
            let app = store.remove_app(&name)?;
            format!("Removed app {} ({})\n{cleanup}", app.name, app.host)
        }
        Request::DkimList { domain } => {
            let keys = domain_keys(store, domain)?;
            let mut out = String::new();
            for k in keys {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\tcreated {}",
                    k.selector,
                    k.algorithm,
                    if k.active { "active" } else { "inactive" },
                    humantime::format_rfc3339_seconds(k.created)
                );
            }
            out
        }
        Request::DkimRotate { domain } => {
            domain_keys(store, domain)?;
            let selectors = generate_dkim_keys(store, domain, false)?;
            let mut out = format!(
                "New DKIM selectors {} for {domain} (inactive: mail is still signed with the current keys).\n\
                 Publish these records, wait for them to be visible (a day or the TTL), then run\n\
                 `postern dkim activate {domain} SELECTOR` for each new selector:\n",
                selectors.join(" and ")
            );
            for line in dns_records(store, config, domain)?.lines() {
                if selectors
                    .iter()
                    .any(|s| line.starts_with(&format!("{s}._domainkey.")))
                {
                    let _ = writeln!(out, "{line}");
                }
            }
            out
        }
        Request::DkimActivate { domain, selector } => {
            let keys = domain_keys(store, domain)?;
            let selector = selector.to_ascii_lowercase();
            let Some(key) = keys.iter().find(|k| k.selector == selector) else {
                return Err(Refusal(format!(
                    "{domain} has no DKIM selector {selector} (see `postern dkim list {domain}`)"
                )));
            };
            // One active key per algorithm, swapped in one commit: the one it
            // replaces stays published (inactive) until it is retired.
            let replaced = store.activate_dkim_key(domain, &key.selector)?;
            let mut out = format!("Mail from {domain} is now signed with {selector}\n");
            for old in replaced {
                let _ = writeln!(
                    out,
                    "{old} is inactive; keep its record published for a few days, then run `postern dkim retire {domain} {old}`"
                );
            }
            out
        }
        Request::DkimRetire { domain, selector } => {
            let keys = domain_keys(store, domain)?;
            let selector = selector.to_ascii_lowercase();
            match keys.iter().find(|k| k.selector == selector) {
                None => {
                    return Err(Refusal(format!("{domain} has no DKIM selector {selector}")));
                }
                Some(k) if k.active => {
                    return Err(Refusal(format!(
                        "{selector} is the active {} key of {domain}: activate another one first",
                        k.algorithm
                    )));
                }
                Some(_) => {}
            }
            store.delete_dkim_key(domain, &selector)?;
            format!("Retired {selector}._domainkey.{domain}: remove its TXT record from the DNS\n")
        }
        Request::QueueList => {
            let mut out = String::new();
            for m in store.queued()? {
                let due = humantime::format_rfc3339_seconds(m.next_attempt);
                let _ = writeln!(
                    out,
                    "{}\t<{}>\t{}\tattempts {}\tnext {}",
                    m.id,
                    m.sender,
                    format_size(m.size),
                    m.attempts,
                    due
                );
                for r in &m.recipients {
                    let state = match &r.state {
                        store::RecipientState::Pending => match &r.last_error {
                            Some(e) => format!("pending: {e}"),
                            None => "pending".to_string(),
                        },
                        store::RecipientState::Delivered { reply } => format!("delivered: {reply}"),
                        store::RecipientState::Failed { status, reply, .. } => {
                            format!("failed {status}: {reply}")
                        }
                    };
                    let _ = writeln!(out, "\t<{}>\t{state}", r.address);
                }
            }
            if out.is_empty() {
                out.push_str("The queue is empty\n");
            }
            out
        }
        Request::QueueRetry { id } => {
            store.retry_queued(*id)?;
            format!("Queued message {id} is due now\n")
        }
        Request::QueueDrop { id } => {
            let m = store.remove_queued(*id)?;
            format!(
                "Dropped queued message {id} from <{}> ({} recipients); its sender is not told\n",
                m.sender,
                m.recipients.len()
            )
        }
        Request::MailList { email, mailbox } => mail_list(store, email, mailbox.as_deref())?,
        Request::Firewall(_) => unreachable_firewall()?,
        Request::WeakAdminHashes => store
            .accounts()?
            .iter()
            .filter(|a| a.admin)
            .filter_map(|a| {
                crate::security::weak_hash(&a.password_hash)
                    .map(|why| format!("{}: {why}\n", a.email))
            })
            .collect(),
        Request::BackupCreate { to, passphrase } => {
            crate::backup::create(store, to, passphrase.as_ref(), actor, &mut |_, _| {})?
        }
        Request::AcmeRenew { .. } | Request::AcmeStatus => {
            return Err(Refusal(
                "certificates are ordered by the running server (its listeners answer the CA): start `postern serve` first".into(),
            ));
        }
        Request::MailboxDigests { email, mailbox } => {
            let target = import_target(store, email, mailbox)?;
            let mut out = String::new();
            for meta in store.messages(target.id)? {
                let body = store.read_body(&meta)?;
                out.push_str(&digest(&body));
                out.push('\n');
            }
            out
        }
        Request::ImportBatch {
            email,
            mailbox,
            messages,
        } => {
            use base64::Engine;
            let target = import_target(store, email, mailbox)?;
            let mut added = 0;
            for m in messages {
                let body = base64::engine::general_purpose::STANDARD
                    .decode(&m.body_b64)
                    .map_err(|e| Refusal(format!("an import message is not base64: {e}")))?;
                let date =
                    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(m.internal_date_ms);
                store.append(target.id, &body, &m.flags, date)?;
                added += 1;
            }
            format!("{added}\n")
        }
        Request::MailShow {
            email,
            uid,
            mailbox,
        } => {
            let mailbox = find_mailbox(store, email, mailbox.as_deref())?;
            let Some(meta) = store
                .messages(mailbox.id)?
                .into_iter()
                .find(|m| m.uid == *uid)
            else {
                return Err(Refusal(format!(
                    "no message with UID {uid} in {}",
                    mailbox.name
                )));
            };
            String::from_utf8_lossy(&store.read_body(&meta)?).into_owned()
        }
        Request::Log { since_ms, limit } => {
            let since = since_ms.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
            let mut out = String::new();
            for e in store.events(since, *limit)? {
                let ip = e
                    .event
                    .ip
                    .map_or_else(|| "-".to_string(), |ip| ip.to_string());
                let _ = writeln!(
                    out,
                    "{} {} {} {} {}",
                    humantime::format_rfc3339_seconds(e.time),
                    ip,
                    e.event.actor,
                    e.event.action,
                    e.event.detail
                );
            }
            out
        }
    })
}

fn find_mailbox(store: &Store, email: &str, name: Option<&str>) -> Result<store::Mailbox, Refusal> {
    let Some(account) = store.account(email)? else {
        return Err(Refusal(format!(
            "no account {}",
            email.to_ascii_lowercase()
        )));
    };
    let name = name.unwrap_or("INBOX");
    store
        .mailbox(account.id, name)?
        .ok_or_else(|| Refusal(format!("{} has no mailbox {name:?}", account.email)))
}

/// The mailbox an import goes to, created when missing.
fn import_target(store: &Store, email: &str, name: &str) -> Result<store::Mailbox, Refusal> {
    let Some(account) = store.account(email)? else {
        return Err(Refusal(format!(
            "no account {}",
            email.to_ascii_lowercase()
        )));
    };
    match store.mailbox(account.id, name)? {
        Some(m) => Ok(m),
        None => Ok(store.create_mailbox(account.id, name, None)?),
    }
}

/// SHA-256 of a message, hex: how an import recognises what it already brought in.
pub fn digest(body: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One line per message: UID, internal date, size, From and Subject.
fn mail_list(store: &Store, email: &str, name: Option<&str>) -> Result<String, Refusal> {
    let mailbox = find_mailbox(store, email, name)?;
    let mut out = String::new();
    for meta in store.messages(mailbox.id)? {
        let body = store.read_body(&meta)?;
        let parsed = mail_parser::MessageParser::default().parse_headers(&body[..]);
        let from = parsed
            .as_ref()
            .and_then(|m| m.from())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or("-")
            .to_string();
        let subject = parsed
            .as_ref()
            .and_then(|m| m.subject())
            .unwrap_or("")
            .to_string();
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{from}\t{subject}",
            meta.uid,
            humantime::format_rfc3339_seconds(meta.internal_date),
            format_size(meta.size),
        );
    }
    Ok(out)
}

/// Generates and stores an Ed25519 and an RSA-2048 key for `domain`, both active.
/// Returns the selectors.
pub fn generate_dkim_keys(
    store: &Store,
    domain: &str,
    active: bool,
) -> Result<Vec<String>, Refusal> {
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let date: String = date.chars().take(10).filter(char::is_ascii_digit).collect();
    let existing: Vec<String> = store
        .dkim_keys(domain)?
        .into_iter()
        .map(|k| k.selector)
        .collect();
    let mut selectors = Vec::new();
    for (prefix, algorithm) in [
        ("ed", dkim::keys::Algorithm::Ed25519),
        ("rsa", dkim::keys::Algorithm::Rsa2048),
    ] {
        let mut selector = format!("{prefix}{date}");
        let mut n = 1;
        while existing.contains(&selector) {
            n += 1;
            selector = format!("{prefix}{date}n{n}");
        }
        let key = dkim::keys::generate(algorithm).map_err(|e| Refusal(e.to_string()))?;
        store.add_dkim_key(&DkimKey {
            domain: domain.to_ascii_lowercase(),
            selector: selector.clone(),
            algorithm: algorithm.key_type().to_string(),
            private_key_pem: key.private_key_pem,
            public_key_b64: key.public_key_b64,
            active,
            created: SystemTime::now(),
        })?;
        selectors.push(selector);
    }
    Ok(selectors)
}

/// The DKIM keys of a local domain (a clear refusal for any other).
fn domain_keys(store: &Store, domain: &str) -> Result<Vec<DkimKey>, Refusal> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if store.domain(&domain)?.is_none() {
        return Err(Refusal(format!(
            "{domain} is not a domain of this server (see `postern domain list`)"
        )));
    }
    Ok(store.dkim_keys(&domain)?)
}

/// The zone-file lines for `domain`.
pub fn dns_records(store: &Store, config: &Config, domain: &str) -> Result<String, Refusal> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let Some(d) = store.domain(&domain)? else {
        return Err(Refusal(format!(
            "{domain} is not a domain of this server (see `postern domain list`)"
        )));
    };
    let dkim = store
        .dkim_keys(&d.name)?
        .into_iter()
        .filter_map(|k| {
            Some(dkim::records::DkimRecordKey {
                algorithm: dkim::keys::Algorithm::from_key_type(&k.algorithm)?,
                selector: k.selector,
                public_key_b64: k.public_key_b64,
            })
        })
        .collect();
    let port = |v: &[std::net::SocketAddr]| v.first().map(|a| a.port());
    let created = d
        .created
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let setup = dkim::records::DomainSetup {
        domain: d.name.clone(),
        hostname: config.hostname.clone(),
        dkim,
        ports: dkim::records::ServicePorts {
            submission: port(&config.submission.listen),
            submissions: port(&config.submission.listen_tls),
            imaps: port(&config.imap.listen_tls),
            imap: port(&config.imap.listen),
        },
        mta_sts_id: created.to_string(),
    };
    Ok(dkim::records::records(&setup)
        .iter()
        .map(|r| format!("{r}\n"))
        .collect())
}

/// `1536` -> `1.5 KiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parses a size: `0`, `unlimited`, `1048576`, `500K`, `500M`, `2G`, `1T` (binary
/// multiples; an optional `B`/`iB` suffix).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    if t == "UNLIMITED" {
        return Ok(0);
    }
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (digits, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 0, 500M, 2G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("unlimited"), Ok(0));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(1536), "1.5 KiB");
    }
}
