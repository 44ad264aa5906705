//! Privilege separation. `serve` started as root binds its ports, starts a small
//! privileged helper (this binary again, `postern privileged-helper`, before anything
//! reads the network) and then runs as the unprivileged `[server] run_as` user: every
//! parser of untrusted input (SMTP, IMAP, ManageSieve, HTTP, TLS, MIME, milter replies)
//! runs without privileges. The helper keeps root for what needs it and takes only
//! the typed [`Request`]s below, over a socketpair, one JSON line each way; it checks
//! every argument and computes everything privileged (ports and rates of the rules, an
//! app's uid, limits, network and data volume) from its own reading of the
//! configuration, never from the caller. It never parses mail or HTTP.
//!
//! Without separation (the CLI, or `serve` not started as root, or with `run_as` empty
//! or `root`) the same [`handle`] runs in the process itself ([`Privileged::Direct`]).

mod client;
pub mod helper;
pub mod user;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::Config;

pub use client::Client;

/// What the unprivileged server may ask of the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Request {
    /// Apply the firewall: the chains for the helper's `[firewall]` ports and rates,
    /// with these blocks, block lists (a list's sets are replaced whole: this also loads
    /// and drops block lists) and bans (ditto: this is how a ban is removed).
    ApplyFirewall {
        /// The admin's blocks.
        blocks: Vec<IpNet>,
        /// The named block lists.
        lists: Vec<(String, Vec<IpNet>)>,
        /// Banned addresses and the seconds left of each ban.
        bans: Vec<(IpAddr, u64)>,
    },
    /// Add one address to the ban set for `seconds`.
    AddBan {
        /// The address.
        ip: IpAddr,
        /// How long.
        seconds: u64,
    },
    /// Whether our chains are in the tables.
    FirewallPresent,
    /// Start (or restart) an app's container.
    StartApp(AppStart),
    /// Stop an app's container and delete it (its network stays).
    StopApp {
        /// The app's name.
        name: String,
    },
    /// Stop and delete an app's container, its network namespace and link, and its
    /// bundle.
    RemoveApp {
        /// The app's name.
        name: String,
        /// Its slot.
        index: u32,
    },
    /// The state of an app's container.
    AppStatus {
        /// The app's name.
        name: String,
    },
}

impl Request {
    /// The request's name, for logs (never its arguments: an app's environment holds
    /// its relay password).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::ApplyFirewall { .. } => "ApplyFirewall",
            Request::AddBan { .. } => "AddBan",
            Request::FirewallPresent => "FirewallPresent",
            Request::StartApp(_) => "StartApp",
            Request::StopApp { .. } => "StopApp",
            Request::RemoveApp { .. } => "RemoveApp",
            Request::AppStatus { .. } => "AppStatus",
        }
    }
}

/// What an app's container is started from. The helper adds the rest: its uid
/// (`[apps] first_uid` + index), memory and pids limits, its /30 from `[apps] subnet`,
/// its data volume `DATA_DIR/apps/NAME/data`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppStart {
    /// The app's name.
    pub name: String,
    /// Its slot (1 and up).
    pub index: u32,
    /// The root filesystem (absolute; read-only in the container).
    pub rootfs: PathBuf,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// `KEY=VALUE` environment entries.
    pub env: Vec<String>,
}

impl std::fmt::Debug for AppStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStart")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("rootfs", &self.rootfs)
            .finish_non_exhaustive()
    }
}

/// The helper's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done.
    Done,
    /// A yes or no.
    Present(bool),
    /// A container's status, if runc knows it.
    Status(Option<String>),
    /// Refused or failed: why.
    Refused(String),
}

/// Who does the privileged work: this process, or the helper.
#[derive(Clone)]
pub enum Privileged {
    /// This process, with the configuration it read.
    Direct(Arc<Config>),
    /// The privileged helper of the running server.
    Helper(Arc<Client>),
}

impl std::fmt::Debug for Privileged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Privileged::Direct(_) => f.write_str("Privileged::Direct"),
            Privileged::Helper(_) => f.write_str("Privileged::Helper"),
        }
    }
}

impl Privileged {
    /// Runs `request`: `Ok` with the reply, `Err` with why it was refused or failed.
    pub fn call(&self, request: Request) -> Result<Reply, String> {
        let reply = match self {
            Privileged::Direct(config) => handle(config, request),
            Privileged::Helper(client) => client.call(&request)?,
        };
        match reply {
            Reply::Refused(why) => Err(why),
            other => Ok(other),
        }
    }

    /// [`Request::ApplyFirewall`].
    pub fn apply_firewall(
        &self,
        blocks: Vec<IpNet>,
        lists: Vec<(String, Vec<IpNet>)>,
        bans: Vec<(IpAddr, u64)>,
    ) -> Result<(), String> {
        self.call(Request::ApplyFirewall {
            blocks,
            lists,
            bans,
        })
        .map(|_| ())
    }

    /// [`Request::AddBan`].
    pub fn add_ban(&self, ip: IpAddr, seconds: u64) -> Result<(), String> {
        self.call(Request::AddBan { ip, seconds }).map(|_| ())
    }

    /// [`Request::FirewallPresent`]; false when it cannot be known.
    pub fn firewall_present(&self) -> bool {
        matches!(
            self.call(Request::FirewallPresent),
            Ok(Reply::Present(true))
        )
    }

    /// [`Request::StartApp`].
    pub fn start_app(&self, app: AppStart) -> Result<(), String> {
        self.call(Request::StartApp(app)).map(|_| ())
    }

    /// [`Request::StopApp`].
    pub fn stop_app(&self, name: &str) -> Result<(), String> {
        self.call(Request::StopApp { name: name.into() })
            .map(|_| ())
    }

    /// [`Request::RemoveApp`].
    pub fn remove_app(&self, name: &str, index: u32) -> Result<(), String> {
        self.call(Request::RemoveApp {
            name: name.into(),
            index,
        })
        .map(|_| ())
    }

    /// [`Request::AppStatus`]: None when runc does not know it (or cannot be asked).
    pub fn app_status(&self, name: &str) -> Option<String> {
        match self.call(Request::AppStatus { name: name.into() }) {
            Ok(Reply::Status(status)) => status,
            _ => None,
        }
    }
}

/// Most networks in all the blocks and block lists of one request.
const MAX_NETS: usize = 2_000_000;
/// Most block lists.
const MAX_LISTS: usize = 256;
/// The longest ban: ten years.
const MAX_BAN_SECONDS: u64 = 10 * 365 * 86_400;

/// Checks `request` against `config` (the helper's own) and runs it.
pub fn handle(config: &Config, request: Request) -> Reply {
    let outcome = match check(config, &request) {
        Err(why) => Err(why),
        Ok(()) => execute(config, request),
    };
    outcome.unwrap_or_else(Reply::Refused)
}

/// Every argument of `request` checked: what the helper will not do whatever the
/// caller says.
fn check(config: &Config, request: &Request) -> Result<(), String> {
    match request {
        Request::ApplyFirewall {
            blocks,
            lists,
            bans,
        } => {
            if lists.len() > MAX_LISTS {
                return Err(format!("more than {MAX_LISTS} block lists"));
            }
            let nets = blocks.len() + lists.iter().map(|(_, n)| n.len()).sum::<usize>();
            if nets > MAX_NETS || bans.len() > MAX_NETS {
                return Err(format!("more than {MAX_NETS} networks"));
            }
            for (name, list) in lists {
                store::firewall::check_list_name(name).map_err(|e| e.to_string())?;
                check_nets(list)?;
            }
            check_nets(blocks)?;
            for (ip, seconds) in bans {
                check_ban(*ip, *seconds)?;
            }
            Ok(())
        }
        Request::AddBan { ip, seconds } => check_ban(*ip, *seconds),
        Request::FirewallPresent => Ok(()),
        Request::StartApp(app) => {
            check_app_name(&app.name)?;
            crate::containers::check_index(config, app.index)?;
            check_rootfs(config, &app.rootfs)?;
            if app.command.is_empty() || app.command.len() > 256 {
                return Err("an app's command must have 1 to 256 words".into());
            }
            if app.env.len() > 1024 {
                return Err("an app may have at most 1024 environment entries".into());
            }
            let size: usize = app.command.iter().chain(&app.env).map(String::len).sum();
            if size > 1 << 20 {
                return Err("an app's command and environment exceed 1 MiB".into());
            }
            if app.command.iter().chain(&app.env).any(|s| s.contains('\0')) {
                return Err("an app's command or environment holds a NUL".into());
            }
            if app
                .env
                .iter()
                .any(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty()))
            {
                return Err("an app's environment entries must be KEY=VALUE".into());
            }
            Ok(())
        }
        Request::StopApp { name } | Request::AppStatus { name } => check_app_name(name),
        Request::RemoveApp { name, index } => {
            check_app_name(name)?;
            crate::containers::check_index(config, *index)
        }
    }
}

fn execute(config: &Config, request: Request) -> Result<Reply, String> {
    match request {
        Request::ApplyFirewall {
            blocks,
            lists,
            bans,
        } => {
            let plan = crate::firewall::plan_with(config, blocks, lists, bans);
            crate::firewall::exec::apply(&plan)?;
            Ok(Reply::Done)
        }
        Request::AddBan { ip, seconds } => {
            crate::firewall::exec::add_ban(ip, seconds)?;
            Ok(Reply::Done)
        }
        Request::FirewallPresent => Ok(Reply::Present(crate::firewall::exec::chains_present())),
        Request::StartApp(app) => {
            crate::containers::privileged::start(config, &app)?;
            Ok(Reply::Done)
        }
        Request::StopApp { name } => {
            crate::containers::privileged::stop(config, &name)?;
            Ok(Reply::Done)
        }
        Request::RemoveApp { name, index } => {
            crate::containers::privileged::remove(config, &name, index)?;
            Ok(Reply::Done)
        }
        Request::AppStatus { name } => Ok(Reply::Status(crate::containers::privileged::status(
            config, &name,
        ))),
    }
}

fn check_nets(nets: &[IpNet]) -> Result<(), String> {
    match nets.iter().find(|n| n.prefix_len() == 0) {
        Some(n) => Err(format!("{n} would block every address")),
        None => Ok(()),
    }
}

fn check_ban(ip: IpAddr, seconds: u64) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_loopback() {
        return Err(format!("{ip} cannot be banned"));
    }
    if seconds == 0 || seconds > MAX_BAN_SECONDS {
        return Err(format!("a ban of {seconds} seconds"));
    }
    Ok(())
}

/// An app name: what the store allows (1 to 63 of `a-z`, `0-9`, inner `-`).
fn check_app_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not an app name"))
    }
}

/// A root filesystem: an absolute, canonical directory that is neither `/` nor holds
/// or sits inside the data directory.
fn check_rootfs(config: &Config, rootfs: &std::path::Path) -> Result<(), String> {
    let canonical =
        std::fs::canonicalize(rootfs).map_err(|e| format!("{}: {e}", rootfs.display()))?;
    if canonical != rootfs || !canonical.is_dir() {
        return Err(format!(
            "{} is not an absolute, canonical directory",
            rootfs.display()
        ));
    }
    let data = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    if canonical == std::path::Path::new("/")
        || data.starts_with(&canonical)
        || canonical.starts_with(&data)
    {
        return Err(format!(
            "{} cannot be an app's root filesystem (the whole system, or the data directory)",
            rootfs.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            data_dir: PathBuf::from("/nonexistent/postern-data"),
            ..Config::default()
        }
    }

    #[test]
    fn the_helper_refuses_what_it_must_not_do() {
        let c = config();
        let refused = |r: Request| matches!(handle(&c, r), Reply::Refused(_));
        let everyone: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(refused(Request::ApplyFirewall {
            blocks: vec![everyone],
            lists: vec![],
            bans: vec![],
        }));
        assert!(refused(Request::ApplyFirewall {
            blocks: vec![],
            lists: vec![("../etc".into(), vec![])],
            bans: vec![],
        }));
        assert!(refused(Request::AddBan {
            ip: [127, 0, 0, 1].into(),
            seconds: 60
        }));
        assert!(refused(Request::AddBan {
            ip: [192, 0, 2, 1].into(),
            seconds: 0
        }));
        let app = |name: &str, index: u32, rootfs: &str| {
            Request::StartApp(AppStart {
                name: name.into(),
                index,
                rootfs: rootfs.into(),
                command: vec!["/start".into()],
                env: vec![],
            })
        };
        assert!(refused(app("../x", 1, "/tmp")));
        assert!(refused(app("blog", 0, "/tmp")));
        assert!(refused(app("blog", 1_000_000, "/tmp")));
        assert!(refused(app("blog", 1, "/")));
        assert!(refused(app("blog", 1, "/tmp/../tmp")));
        assert!(refused(app("blog", 1, "/nonexistent/postern-data/x")));
        assert!(refused(Request::StopApp {
            name: "Blog".into()
        }));
        // Unknown fields and requests do not even parse.
        assert!(serde_json::from_str::<Request>(r#"{"Exec": {"program": "sh"}}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(
                r#"{"AddBan": {"ip": "192.0.2.1", "seconds": 5, "uid": 0}}"#
            )
            .is_err()
        );
    }
}
