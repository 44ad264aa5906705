//! Apps in containers: `postern app add NAME --rootfs DIR --port N [--env K=V]...`
//! runs the app under runc from a spec we render ([`spec`]): read-only root, one
//! writable volume at `/data`, its own non-root uid, no capabilities,
//! `noNewPrivileges`, a seccomp filter against the dangerous syscalls, masked and
//! read-only `/proc` and `/sys` paths, memory and pids limits, and its own network
//! namespace on a point-to-point link to the host, so only the proxy reaches it (on its
//! own subdomain, like any app). Each app gets a mail-relay account of its own
//! (`NAME@<first domain>`, a random 128-character password, given to it in its
//! environment) that can only send as itself.
//!
//! This half runs in the unprivileged server (or the CLI): it keeps the apps in the
//! store and asks [`crate::privsep::Privileged`] to start, stop and remove
//! containers; [`privileged`] is what the helper does for it.

pub mod privileged;
pub mod runtime;
pub mod spec;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::Store;

use crate::admin::Refusal;
use crate::config::Config;
use crate::privsep::{AppStart, Privileged};

/// `[apps]`: containers for apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// Private IPv4 network the apps' links are carved from (a /30 each).
    #[schemars(with = "String")]
    pub subnet: Ipv4Net,
    /// Memory limit of each app, MiB.
    pub memory_mb: u32,
    /// Most processes and threads in each app.
    pub pids: u32,
    /// App N runs as uid (and gid) `first_uid + N`: no two apps share one, none is 0.
    pub first_uid: u32,
    /// New connections one app may open per second to the mail listeners (its relay).
    pub mail_connections_per_second: u32,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 16).unwrap_or_default(),
            memory_mb: 256,
            pids: 256,
            first_uid: 20_000,
            mail_connections_per_second: 500,
        }
    }
}

/// App slot `index`'s host address and app address: the 2nd and 3rd of the index-th /30.
fn addresses(subnet: Ipv4Net, index: u32) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let base = u32::from(subnet.network()).checked_add(index.checked_mul(4)?)?;
    let last = base.checked_add(3)?;
    if !subnet.contains(&Ipv4Addr::from(last)) {
        return None;
    }
    Some((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2)))
}

/// Checks an app slot: 1 and up, and inside `[apps] subnet`.
pub fn check_index(config: &Config, index: u32) -> Result<(), String> {
    if index == 0 || addresses(config.apps.subnet, index).is_none() {
        return Err(format!("slot {index} is not in [apps] subnet"));
    }
    Ok(())
}

fn app_dir(config: &Config, name: &str) -> PathBuf {
    config.data_dir.join("apps").join(name)
}

/// Where an app's relay password is kept (mode 0600): the server puts it in the
/// app's environment at every start.
fn relay_password_path(config: &Config, name: &str) -> PathBuf {
    app_dir(config, name).join("relay-password")
}

/// What `app add --rootfs` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewContainer {
    pub name: String,
    pub host: String,
    pub rootfs: String,
    pub port: u16,
    pub env: Vec<String>,
    pub command: Vec<String>,
}

/// Adds a container app, its relay account and its files, and starts it.
pub fn add(
    store: &Store,
    config: &Config,
    privileged: &Privileged,
    new: &NewContainer,
) -> Result<String, Refusal> {
    let rootfs = std::fs::canonicalize(&new.rootfs)
        .map_err(|e| Refusal(format!("--rootfs {}: {e}", new.rootfs)))?;
    if !rootfs.is_dir() {
        return Err(Refusal(format!(
            "--rootfs {}: not a directory",
            rootfs.display()
        )));
    }
    if new.port == 0 {
        return Err(Refusal("--port must be 1-65535".into()));
    }
    for entry in &new.env {
        if !entry
            .split_once('=')
            .is_some_and(|(k, _)| !k.is_empty() && !k.starts_with("POSTERN_"))
        {
            return Err(Refusal(format!(
                "--env {entry:?}: give KEY=VALUE (POSTERN_* keys are ours)"
            )));
        }
    }
    let command = if new.command.is_empty() {
        vec!["/start".to_string()]
    } else {
        new.command.clone()
    };
    let name = new.name.to_ascii_lowercase();
    let domain = store.domains()?.into_iter().next().ok_or_else(|| {
        Refusal("there is no domain for the app's mail address: add one first".into())
    })?;
    let apps = store.apps()?;
    let index = (1..)
        .find(|i| {
            !apps
                .iter()
                .any(|a| a.container.as_ref().is_some_and(|c| c.index == *i))
        })
        .unwrap_or(1);
    let (gateway, address) = addresses(config.apps.subnet, index).ok_or_else(|| {
        Refusal(format!(
            "[apps] subnet {} has no room for another app",
            config.apps.subnet
        ))
    })?;
    let relay = format!("{name}@{}", domain.name);
    let password = common::auth::generate_password_of(128)?;
    store.add_account(&relay, &common::auth::hash_password(&password)?)?;
    let container = store::Container {
        rootfs: rootfs.to_string_lossy().into_owned(),
        port: new.port,
        command,
        env: new.env.clone(),
        index,
        address: address.to_string(),
        gateway: gateway.to_string(),
        relay_account: relay.clone(),
        enabled: true,
    };
    let app = match store.add_container_app(&name, &new.host, container) {
        Ok(app) => app,
        Err(e) => {
            let _ = store.delete_account(&relay);
            return Err(e.into());
        }
    };
    let dir = app_dir(config, &app.name);
    let written = write_files(config, &app, &password);
    let started = written.and_then(|()| start_app(config, privileged, &app));
    let mut out = format!(
        "Added app {} on https://{}/ -> container {} (uid {}, {} MiB, /data in {})\nMail relay: {} (password in the app's environment, POSTERN_SMTP_*)\n",
        app.name,
        app.host,
        app.upstream,
        config.apps.first_uid + index,
        config.apps.memory_mb,
        dir.join("data").display(),
        relay
    );
    match started {
        Ok(()) => out.push_str("Started\n"),
        Err(e) => {
            let _ = writeln!(
                out,
                "Not started: {e}\n(`postern app start {}` tries again)",
                app.name
            );
        }
    }
    Ok(out)
}

/// Writes the app's directory: its relay password (mode 0600) and, for reading, the
/// AppArmor profile the helper loads where the kernel has AppArmor.
fn write_files(config: &Config, app: &store::App, password: &str) -> Result<(), Refusal> {
    let dir = app_dir(config, &app.name);
    let io = |what: &str, e: std::io::Error| Refusal(format!("{what}: {e}"));
    std::fs::create_dir_all(&dir).map_err(|e| io("creating the app's directory", e))?;
    let profile = spec::apparmor(&format!("postern-app-{}", app.name));
    std::fs::write(dir.join("apparmor.profile"), profile)
        .map_err(|e| io("writing the AppArmor profile", e))?;
    let path = relay_password_path(config, &app.name);
    let _ = std::fs::remove_file(&path);
    common::tls::write_private(&path, password.as_bytes()).map_err(|e| Refusal(e.to_string()))
}

/// The app's relay password: its file, or (an app added before it existed) the
/// environment of its old bundle.
fn relay_password(config: &Config, name: &str) -> Result<String, Refusal> {
    if let Ok(p) = std::fs::read_to_string(relay_password_path(config, name)) {
        return Ok(p);
    }
    let old = app_dir(config, name).join("bundle/config.json");
    let spec: serde_json::Value = std::fs::read(&old)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            Refusal(format!(
                "the app {name}'s relay password is missing: remove and add it again"
            ))
        })?;
    spec["process"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .find_map(|e| e.strip_prefix("POSTERN_SMTP_PASSWORD="))
        .map(str::to_string)
        .ok_or_else(|| Refusal(format!("the app {name}'s relay password is missing")))
}

fn start_app(config: &Config, privileged: &Privileged, app: &store::App) -> Result<(), Refusal> {
    let Some(c) = &app.container else {
        return Err(Refusal(format!(
            "the app {} runs elsewhere (--upstream): start it there",
            app.name
        )));
    };
    let submission = config.submission.listen.first().map_or(587, |a| a.port());
    let mut env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    env.extend(c.env.iter().cloned());
    env.extend([
        format!("POSTERN_APP={}", app.name),
        format!("POSTERN_APP_URL=https://{}/", app.host),
        format!("POSTERN_SMTP_HOST={}", c.gateway),
        format!("POSTERN_SMTP_PORT={submission}"),
        format!("POSTERN_SMTP_USER={}", c.relay_account),
        format!(
            "POSTERN_SMTP_PASSWORD={}",
            relay_password(config, &app.name)?
        ),
    ]);
    privileged
        .start_app(AppStart {
            name: app.name.clone(),
            index: c.index,
            rootfs: PathBuf::from(&c.rootfs),
            command: c.command.clone(),
            env,
        })
        .map_err(Refusal)
}

/// `app start NAME`: runs it now and at every `serve` start.
pub fn start(
    store: &Store,
    config: &Config,
    privileged: &Privileged,
    name: &str,
) -> Result<String, Refusal> {
    let app = store.set_app_enabled(name, true)?;
    start_app(config, privileged, &app)?;
    Ok(format!("Started app {}\n", app.name))
}

/// `app stop NAME`: stops it, and it stays stopped across restarts.
pub fn stop(store: &Store, privileged: &Privileged, name: &str) -> Result<String, Refusal> {
    let app = store.set_app_enabled(name, false)?;
    privileged.stop_app(&app.name).map_err(Refusal)?;
    Ok(format!("Stopped app {}\n", app.name))
}

/// Stops and removes a container app's container, network and relay account (its
/// data volume stays: nothing is lost by a mistyped name).
pub fn remove(
    config: &Config,
    store: &Store,
    privileged: &Privileged,
    app: &store::App,
) -> Result<String, Refusal> {
    let Some(c) = &app.container else {
        return Ok(String::new());
    };
    privileged.remove_app(&app.name, c.index).map_err(Refusal)?;
    if let Err(e) = store.delete_account(&c.relay_account) {
        tracing::warn!(error = %e, account = c.relay_account, "could not delete the app's relay account");
    }
    Ok(format!(
        "Its container and relay account {} are gone; its data stays in {}\n",
        c.relay_account,
        app_dir(config, &app.name).join("data").display()
    ))
}

/// The status word of a container app for `app list`.
pub fn status(privileged: &Privileged, app: &store::App) -> String {
    match &app.container {
        None => "external".into(),
        Some(c) => {
            let state = privileged
                .app_status(&app.name)
                .unwrap_or_else(|| "stopped".into());
            if c.enabled {
                state
            } else {
                format!("{state} (disabled)")
            }
        }
    }
}

/// At `serve` start: every enabled container app that is not running is started.
pub fn boot(config: &Config, store: &Store, privileged: &Privileged) {
    let apps = match store.apps() {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!(error = %e, "reading the apps");
            return;
        }
    };
    for app in apps {
        let enabled = app.container.as_ref().is_some_and(|c| c.enabled);
        if !enabled || privileged.app_status(&app.name).as_deref() == Some("running") {
            continue;
        }
        match start_app(config, privileged, &app) {
            Ok(()) => tracing::info!(app = app.name, "app container started"),
            Err(e) => tracing::error!(app = app.name, error = e.0, "app container did not start"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slot_is_its_own_slash_30() {
        let subnet: Ipv4Net = "10.77.0.0/16".parse().unwrap_or_default();
        assert_eq!(
            addresses(subnet, 1),
            Some((Ipv4Addr::new(10, 77, 0, 5), Ipv4Addr::new(10, 77, 0, 6)))
        );
        assert_eq!(
            addresses(subnet, 64),
            Some((Ipv4Addr::new(10, 77, 1, 1), Ipv4Addr::new(10, 77, 1, 2)))
        );
        assert_eq!(addresses(subnet, 16_384), None);
        let small: Ipv4Net = "10.1.0.0/29".parse().unwrap_or_default();
        assert!(addresses(small, 1).is_some());
        assert_eq!(addresses(small, 2), None);
    }
}
