//! `postern`: the all-in-one mail server. Wiring only: the CLI, and which crate does
//! what.
#![deny(unsafe_code)]
// The OpenAPI document is one serde_json::json! literal.
#![recursion_limit = "512"]

mod acme;
mod admin;
mod api;
mod backup;
mod certs;
mod config;
mod containers;
mod control;
mod dnssetup;
mod firewall;
mod import;
mod privsep;
mod proxy;
mod quickstart;
mod running;
mod security;
mod serve;
mod tool;
mod web;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use admin::Request;

/// Postern: a secure-by-default, all-in-one mail server.
#[derive(Debug, Parser)]
#[command(name = "postern", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file [default: $POSTERN_CONFIG, else ./postern-data/postern.toml;
    /// with neither, the built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set up a new server: data directory, configuration, admin account, DKIM keys,
    /// self-signed certificate; prints the password and the DNS records to publish.
    Quickstart {
        /// The admin's address; its domain becomes the first mail domain.
        admin_email: String,
        /// Where to create the data directory.
        #[arg(long, value_name = "DIR", default_value = "postern-data")]
        data_dir: PathBuf,
        /// The server's host name [default: mail.<domain>].
        #[arg(long, value_name = "HOST")]
        hostname: Option<String>,
        /// Get certificates from Let's Encrypt, with this contact address (sets
        /// `[acme]`); without it the certificate is self-signed.
        #[arg(long, value_name = "ADDR")]
        acme_email: Option<String>,
    },
    /// Run the server: every configured listener, until SIGTERM or SIGINT.
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Manage mail domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Web applications behind the HTTPS front, each on its own host name.
    #[command(subcommand)]
    App(AppCommand),
    /// DNS records.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Show the activity log (logins, administrative changes), oldest first.
    Log {
        /// Only entries at or after TIME: RFC 3339 (2026-11-27T10:00:00Z) or a
        /// duration ago (90m, 2h, 7days).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// At most N entries (the newest).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
    /// Import an mbox file or a Maildir into an account's mailbox; run it again to
    /// resume an interrupted import (messages already there are skipped).
    Import {
        /// The source format.
        kind: import::Kind,
        /// The account's address.
        email: String,
        /// The mbox file or Maildir directory.
        path: PathBuf,
        /// The target mailbox, created if missing.
        #[arg(long, value_name = "NAME", default_value = "INBOX")]
        mailbox: String,
    },
    /// Inspect mailboxes.
    #[command(subcommand)]
    Mail(MailCommand),
    /// DKIM signing keys: list, rotate, activate, retire.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// The outbound queue: list, retry, drop.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Security checks: one report, each line ok or warn with the fix.
    #[command(subcommand)]
    Security(SecurityCommand),
    /// Certificates from the ACME CA (`[acme]`): status and renewal now.
    #[command(subcommand)]
    Acme(AcmeCommand),
    /// The host firewall (iptables chains POSTERN and POSTERN_RATELIMIT, ipsets),
    /// blocks, block lists and bans.
    #[command(subcommand)]
    Firewall(FirewallCommand),
    /// Backups: a consistent snapshot of the store, the message bodies, the
    /// configuration and the TLS files, optionally encrypted (AES-256-GCM).
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The privileged helper `serve` starts for itself (firewall, containers), talking
    /// over the socket on its standard input; not for use by hand.
    #[command(hide = true)]
    PrivilegedHelper,
}

#[derive(Debug, Subcommand)]
enum SecurityCommand {
    /// SSH (passwords, root login, port), the firewall, certificates, DNS records,
    /// DNSBL reachability, admin password hashes.
    Check {
        /// The SSH server's configuration.
        #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config")]
        sshd_config: PathBuf,
        /// Seconds all the DNS and DNSBL lookups together may take; a lookup not
        /// answered by then is reported as such.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum FirewallCommand {
    /// Print the rules and sets as they would be applied, and whether they are.
    Show,
    /// Apply the rules now, in this network namespace (needs root).
    Apply,
    /// Block an address or network (refused at accept, and dropped by the firewall).
    Block {
        /// ADDR or ADDR/LEN.
        net: String,
    },
    /// Lift a block, or an automatic ban.
    Unblock {
        /// ADDR (or the ADDR/LEN that was blocked).
        addr: String,
    },
    /// Named block lists loaded from files of CIDRs (e.g. a country's networks).
    #[command(subcommand)]
    Blocklist(BlocklistCommand),
}

#[derive(Debug, Subcommand)]
enum BlocklistCommand {
    /// Create or replace block list NAME from FILE: one address or CIDR per line,
    /// `#` comments.
    Load {
        /// 1 to 16 lower-case letters, digits and hyphens.
        name: String,
        /// The file.
        file: PathBuf,
    },
    /// Remove block list NAME.
    Drop {
        /// The list's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Write a backup into DIR (created; an existing one must be empty). While `serve`
    /// runs the server writes it, without stopping deliveries.
    Create {
        /// The backup directory.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Encrypt with the passphrase in FILE (one trailing newline is ignored).
        /// Without it the backup is NOT encrypted.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Restore a backup into a data directory that is missing or empty (no server
    /// may run on it). Nothing is written there unless the whole backup is authentic
    /// and complete.
    Restore {
        /// The backup directory (or its archive file).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The data directory to create [default: the configured `data_dir`].
        #[arg(long, value_name = "DATA_DIR")]
        to: Option<PathBuf>,
        /// The passphrase of an encrypted backup, in FILE.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Read and check a whole backup without writing anything; print what it holds.
    Verify {
        /// The backup directory (or its archive file).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The passphrase of an encrypted backup, in FILE.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AcmeCommand {
    /// Each name served over TLS: its certificate, expiry and last ACME failure.
    Status,
    /// Order certificates now for NAMEs (default: every name served) that are due
    /// (missing, self-signed, or within `[acme] renew_days` of expiry).
    Renew {
        /// Host names; none: all.
        names: Vec<String>,
        /// Order even certificates that are not due.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// List the messages of a mailbox: UID, date, size, from, subject.
    List {
        /// The account's address.
        email: String,
        /// The mailbox [default: INBOX].
        #[arg(long, value_name = "M")]
        mailbox: Option<String>,
    },
    /// Print one message, raw.
    Show {
        /// The account's address.
        email: String,
        /// The message's UID (see `mail list`).
        uid: u32,
        /// The mailbox [default: INBOX].
        #[arg(long, value_name = "M")]
        mailbox: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DkimCommand {
    /// List a domain's keys: selector, algorithm, active or not.
    List {
        /// The mail domain.
        domain: String,
    },
    /// Make new Ed25519 and RSA keys (inactive) and print their records to publish;
    /// mail stays signed with the current keys until `dkim activate`.
    Rotate {
        /// The mail domain.
        domain: String,
    },
    /// Sign with SELECTOR from now on, in place of the active key of its algorithm.
    Activate {
        /// The mail domain.
        domain: String,
        /// The selector to sign with.
        selector: String,
    },
    /// Delete an inactive key (then remove its record from the DNS).
    Retire {
        /// The mail domain.
        domain: String,
        /// The selector to delete.
        selector: String,
    },
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// List queued messages and the state of each recipient.
    List,
    /// Try a queued message again now.
    Retry {
        /// The queue id (see `queue list`).
        id: u64,
    },
    /// Remove a message from the queue without delivering it; its sender is not told.
    Drop {
        /// The queue id (see `queue list`).
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account (with INBOX, Sent, Drafts, Trash, Junk, Archive). Without
    /// --password-stdin a strong password is generated and printed.
    Add {
        /// The account's address; its domain must exist.
        email: String,
        /// Read the password from standard input (a trailing newline is stripped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts with quota and usage.
    List,
    /// Change an account's password. Without --password-stdin a strong password is
    /// generated and printed.
    Passwd {
        /// The account's address.
        email: String,
        /// Read the password from standard input (a trailing newline is stripped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account and all its mail.
    Del {
        /// The account's address.
        email: String,
    },
    /// Set an account's storage quota.
    Quota {
        /// The account's address.
        email: String,
        /// The quota: 500M, 2G, a number of bytes, or 0 / unlimited.
        size: String,
    },
}

#[derive(Debug, Subcommand)]
enum AliasCommand {
    /// Create an alias delivering to one or more addresses; `@domain` is a catch-all
    /// for that domain.
    Add {
        /// The alias address (or `@domain`).
        address: String,
        /// Where mail to it goes (local or remote addresses).
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// List aliases.
    List,
    /// Delete an alias.
    Del {
        /// The alias address.
        address: String,
    },
}

#[derive(Debug, Subcommand)]
enum DomainCommand {
    /// Add a mail domain and generate its DKIM keys (Ed25519 and RSA-2048); prints
    /// the DNS records to publish.
    Add {
        /// The domain.
        domain: String,
    },
    /// List mail domains.
    List,
    /// Delete a mail domain (refused while it has accounts or aliases).
    Del {
        /// The domain.
        domain: String,
    },
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Serve an application on its own host name: HTTPS requests to it are passed to
    /// the upstream over HTTP/1.1 with the client's address in X-Forwarded-For. The
    /// upstream is HOST:PORT (--upstream), or a container we run from a root
    /// filesystem (--rootfs and --port).
    #[command(group(clap::ArgGroup::new("where").required(true).args(["upstream", "rootfs"])))]
    Add {
        /// The app's name (lower-case letters, digits, hyphens).
        name: String,
        /// Where it listens: HOST:PORT.
        #[arg(long, conflicts_with_all = ["rootfs", "port", "env", "command"])]
        upstream: Option<String>,
        /// Run it in a container from this root filesystem (read-only).
        #[arg(long, value_name = "DIR", requires = "port")]
        rootfs: Option<String>,
        /// The port it listens on inside its container.
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// An environment variable for the container (repeatable).
        #[arg(long, value_name = "K=V")]
        env: Vec<String>,
        /// What the container runs (default: /start).
        #[arg(long, value_name = "PROGRAM", num_args = 1.., allow_hyphen_values = true)]
        command: Vec<String>,
        /// The host name to serve it on (default: NAME.<first domain>).
        #[arg(long)]
        host: Option<String>,
    },
    /// List the apps: name, host, upstream, state.
    List,
    /// Start a container app (and at every `serve` start from now on).
    Start {
        /// The app's name.
        name: String,
    },
    /// Stop a container app (it stays stopped across restarts).
    Stop {
        /// The app's name.
        name: String,
    },
    /// Stop serving an app (a container app's data volume is kept).
    Del {
        /// The app's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DnsCommand {
    /// Print the DNS records a domain needs, one per line in zone-file syntax.
    Records {
        /// The domain.
        domain: String,
    },
    /// Look each record the domain needs up in the live DNS (through `[dns]
    /// nameservers`) and say whether it is there: ok, missing, or wrong with what was
    /// found and what to publish.
    Check {
        /// The domain.
        domain: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the whole configuration file with its defaults and a comment on every key.
    Defaults,
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("postern: internal error: {info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("postern: {}", one_line_usage_error(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// clap's usage error on one line: the message without the usage block, and where to
/// look for help.
fn one_line_usage_error(rendered: &str) -> String {
    let message = rendered.split("\n\nUsage:").next().unwrap_or(rendered);
    let message = message.trim().trim_start_matches("error: ");
    let words: Vec<&str> = message.split_whitespace().collect();
    format!("{} (see --help)", words.join(" "))
}

fn run(cli: Cli) -> Result<()> {
    let flag = cli.config.as_deref();
    match cli.command {
        Command::Quickstart {
            admin_email,
            data_dir,
            hostname,
            acme_email,
        } => {
            print!(
                "{}",
                quickstart::run(
                    &admin_email,
                    Some(&data_dir),
                    hostname.as_deref(),
                    acme_email.as_deref()
                )?
            );
            Ok(())
        }
        Command::Serve => {
            let config = config::load(flag)?;
            init_logging();
            serve::run(config, flag)
        }
        Command::PrivilegedHelper => {
            let config = config::load(flag)?;
            init_logging();
            privsep::helper::run(&config)
        }
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", config::render(&config::Config::default())?);
            Ok(())
        }
        Command::User(c) => admin_request(flag, user_request(c)?),
        Command::Alias(c) => admin_request(
            flag,
            match c {
                AliasCommand::Add { address, targets } => Request::AliasAdd { address, targets },
                AliasCommand::List => Request::AliasList,
                AliasCommand::Del { address } => Request::AliasDel { address },
            },
        ),
        Command::Domain(c) => admin_request(
            flag,
            match c {
                DomainCommand::Add { domain } => Request::DomainAdd { name: domain },
                DomainCommand::List => Request::DomainList,
                DomainCommand::Del { domain } => Request::DomainDel { name: domain },
            },
        ),
        Command::App(c) => admin_request(
            flag,
            match c {
                AppCommand::Add {
                    name,
                    upstream: Some(upstream),
                    host,
                    ..
                } => Request::AppAdd {
                    name,
                    upstream,
                    host,
                },
                AppCommand::Add {
                    name,
                    rootfs,
                    port,
                    env,
                    command,
                    host,
                    ..
                } => Request::ContainerAdd {
                    name,
                    rootfs: rootfs.unwrap_or_default(),
                    port: port.unwrap_or_default(),
                    env,
                    command,
                    host,
                },
                AppCommand::Start { name } => Request::AppStart { name },
                AppCommand::Stop { name } => Request::AppStop { name },
                AppCommand::List => Request::AppList,
                AppCommand::Del { name } => Request::AppDel { name },
            },
        ),
        Command::Dns(DnsCommand::Records { domain }) => {
            admin_request(flag, Request::DnsRecords { domain })
        }
        Command::Dns(DnsCommand::Check { domain }) => dns_check(flag, domain),
        Command::Import {
            kind,
            email,
            path,
            mailbox,
        } => {
            let config = config::load(flag)?;
            let actor = format!("cli:{}", current_user());
            print!(
                "{}",
                import::run(&config, &actor, kind, &email, &path, &mailbox)?
            );
            Ok(())
        }
        Command::Mail(MailCommand::List { email, mailbox }) => {
            admin_request(flag, Request::MailList { email, mailbox })
        }
        Command::Mail(MailCommand::Show {
            email,
            uid,
            mailbox,
        }) => admin_request(
            flag,
            Request::MailShow {
                email,
                uid,
                mailbox,
            },
        ),
        Command::Dkim(c) => admin_request(
            flag,
            match c {
                DkimCommand::List { domain } => Request::DkimList { domain },
                DkimCommand::Rotate { domain } => Request::DkimRotate { domain },
                DkimCommand::Activate { domain, selector } => {
                    Request::DkimActivate { domain, selector }
                }
                DkimCommand::Retire { domain, selector } => {
                    Request::DkimRetire { domain, selector }
                }
            },
        ),
        Command::Queue(c) => admin_request(
            flag,
            match c {
                QueueCommand::List => Request::QueueList,
                QueueCommand::Retry { id } => Request::QueueRetry { id },
                QueueCommand::Drop { id } => Request::QueueDrop { id },
            },
        ),
        Command::Security(SecurityCommand::Check {
            sshd_config,
            timeout,
        }) => security_check(flag, &sshd_config, timeout),
        Command::Firewall(c) => admin_request(flag, Request::Firewall(firewall_request(c)?)),
        Command::Acme(c) => admin_request(
            flag,
            match c {
                AcmeCommand::Status => Request::AcmeStatus,
                AcmeCommand::Renew { names, force } => Request::AcmeRenew { names, force },
            },
        ),
        Command::Log { since, limit } => {
            let since_ms = since.as_deref().map(parse_since).transpose()?;
            admin_request(flag, Request::Log { since_ms, limit })
        }
        Command::Backup(c) => {
            let passphrase = |file: Option<PathBuf>| -> Result<_> {
                file.as_deref().map(backup::read_passphrase).transpose()
            };
            let text = match c {
                BackupCommand::Create {
                    to,
                    passphrase_file,
                } => backup_create(flag, &to, passphrase(passphrase_file)?)?,
                BackupCommand::Restore {
                    from,
                    to,
                    passphrase_file,
                } => {
                    let to = match to {
                        Some(to) => to,
                        None => config::load(flag)?.data_dir,
                    };
                    backup::restore(&from, &to, passphrase(passphrase_file)?.as_ref())?
                }
                BackupCommand::Verify {
                    from,
                    passphrase_file,
                } => backup::verify(&from, passphrase(passphrase_file)?.as_ref())?,
            };
            print!("{text}");
            Ok(())
        }
    }
}

fn firewall_request(c: FirewallCommand) -> Result<firewall::Request> {
    use firewall::Request as R;
    Ok(match c {
        FirewallCommand::Show => R::Show,
        FirewallCommand::Apply => R::Apply,
        FirewallCommand::Block { net } => R::Block { net },
        FirewallCommand::Unblock { addr } => R::Unblock { addr },
        FirewallCommand::Blocklist(BlocklistCommand::Load { name, file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let nets =
                firewall::parse_list(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            R::ListLoad {
                name,
                nets: nets.iter().map(ToString::to_string).collect(),
                source: file.display().to_string(),
            }
        }
        FirewallCommand::Blocklist(BlocklistCommand::Drop { name }) => R::ListDrop { name },
    })
}

/// `postern backup create`: through the running server, or on the store when none
/// runs.
fn backup_create(
    flag: Option<&Path>,
    to: &Path,
    passphrase: Option<backup::Passphrase>,
) -> Result<String> {
    let config = config::load(flag)?;
    let actor = format!("cli:{}", current_user());
    // The server resolves paths from its own working directory.
    let to = std::path::absolute(to).with_context(|| format!("resolving {}", to.display()))?;
    // A server that runs as its own user cannot write where root asks: it writes into
    // a directory root gives it beside the target, and root moves the result.
    let handoff = match control::server_owner(&config.data_dir) {
        Some(owner) if owner.0 != 0 && nix::unistd::Uid::effective().is_root() => {
            Some(backup::Handoff::prepare(&to, owner)?)
        }
        _ => None,
    };
    let written = handoff
        .as_ref()
        .map_or(to.clone(), |h| h.target().to_path_buf());
    let bar = backup::progress_bar("backing up");
    let mut report = backup::throttled(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let request = Request::BackupCreate {
        to: written,
        passphrase: passphrase.clone(),
    };
    let result = match control::send_with_progress(&config.data_dir, &request, &actor, &mut report)
    {
        Ok(Some(reply)) => reply.map_err(|r| anyhow!(r.0)),
        Ok(None) => (|| {
            if !config.data_dir.exists() {
                bail!(
                    "no data directory at {}: nothing to back up (point --config at your configuration)",
                    config.data_dir.display()
                );
            }
            let store = store::Store::open(&config.data_dir)?;
            backup::create(&store, &to, passphrase.as_ref(), &actor, &mut report)
                .map_err(|r| anyhow!(r.0))
        })(),
        Err(e) => Err(e),
    };
    bar.finish_and_clear();
    match handoff {
        Some(handoff) => handoff.finish(result),
        None => result,
    }
}

fn user_request(c: UserCommand) -> Result<Request> {
    Ok(match c {
        UserCommand::Add {
            email,
            password_stdin,
        } => Request::UserAdd {
            email,
            password: stdin_password(password_stdin)?,
        },
        UserCommand::List => Request::UserList,
        UserCommand::Passwd {
            email,
            password_stdin,
        } => Request::UserPasswd {
            email,
            password: stdin_password(password_stdin)?,
        },
        UserCommand::Del { email } => Request::UserDel { email },
        UserCommand::Quota { email, size } => Request::UserQuota {
            email,
            bytes: admin::parse_size(&size).map_err(|e| anyhow!(e))?,
        },
    })
}

/// The password from standard input, without its trailing newline.
fn stdin_password(enabled: bool) -> Result<Option<common::secret::Secret>> {
    if !enabled {
        return Ok(None);
    }
    if std::io::stdin().is_terminal() {
        eprint!("Password (then Enter and Ctrl-D): ");
    }
    let mut s = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let s = s
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&s)
        .to_string();
    if s.is_empty() {
        bail!("no password on standard input");
    }
    Ok(Some(s.into()))
}

fn parse_since(s: &str) -> Result<u64> {
    let time = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(s).map_err(|_| {
                anyhow!("--since {s:?}: give a time (2026-11-27T10:00:00Z) or a duration ago (2h)")
            })?;
            SystemTime::now()
                .checked_sub(ago)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }
    };
    Ok(time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64)
}

/// Runs an administrative request: through the running server's control socket, or
/// directly on the store when no server runs.
fn admin_request(flag: Option<&Path>, request: Request) -> Result<()> {
    print!("{}", admin_text(flag, request)?);
    Ok(())
}

/// `postern dns check`: the expected records from the server (or the store), each
/// looked up through `[dns] nameservers`.
fn dns_check(flag: Option<&Path>, domain: String) -> Result<()> {
    let config = config::load(flag)?;
    let text = admin_text(flag, Request::DnsRecords { domain })?;
    let expected: Vec<_> = text.lines().filter_map(dnssetup::parse_record).collect();
    let resolver = common::dns::resolver(&config.dns).context("the DNS resolver of [dns]")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let checks = runtime.block_on(dnssetup::check(&resolver, &expected));
    print!("{}", dnssetup::render(&checks));
    Ok(())
}

/// `postern security check`: the report, from the server (or the store), the files
/// here and `[dns] nameservers`, printed as it is known.
fn security_check(flag: Option<&Path>, sshd_config: &Path, timeout: u64) -> Result<()> {
    let config = config::load(flag)?;
    security::run::check(
        &config,
        sshd_config,
        Duration::from_secs(timeout.max(1)),
        &|request| admin_text(flag, request),
        &mut std::io::stdout(),
    )
}

/// Runs an admin request through the running server, or on the store when none runs;
/// returns its text.
fn admin_text(flag: Option<&Path>, request: Request) -> Result<String> {
    let config = config::load(flag)?;
    let actor = format!("cli:{}", current_user());
    let text = match control::send(&config.data_dir, &request, &actor)? {
        Some(reply) => reply.map_err(|r| anyhow!(r.0))?,
        None => {
            if !config.data_dir.exists() {
                bail!(
                    "no data directory at {}: run `postern quickstart ADMIN_EMAIL` first, or point --config at your configuration",
                    config.data_dir.display()
                );
            }
            let store = store::Store::open(&config.data_dir)?;
            admin::execute(&store, &config, &request, &actor).map_err(|r| anyhow!(r.0))?
        }
    };
    Ok(text)
}

fn current_user() -> String {
    let uid = nix::unistd::Uid::current();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
