//! Apps in containers: `postern app add NAME --rootfs DIR --port N [--env K=V]...`
//! runs the app under runc from a spec we render ([`spec`]): read-only root, one
//! writable volume at `/data`, its own non-root uid, no capabilities,
//! `noNewPrivileges`, a seccomp filter against the dangerous syscalls, masked and
//! read-only `/proc` and `/sys` paths, memory and pids limits, and its own network
//! namespace on a point-to-point link to the host, so only the proxy reaches it (on its
//! own subdomain, like any app). Each app gets a mail-relay account of its own
//! (`NAME@<first domain>`, a random 128-character password, given to it in its
//! environment) that can only send as itself.

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

fn app_dir(config: &Config, name: &str) -> PathBuf {
    config.data_dir.join("apps").join(name)
}

fn runc(config: &Config) -> runtime::Runc {
    runtime::Runc::new(config.data_dir.join("apps/runc"))
}

fn container_id(name: &str) -> String {
    format!("postern-{name}")
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
pub fn add(store: &Store, config: &Config, new: &NewContainer) -> Result<String, Refusal> {
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
    let written = write_bundle(config, &app, &password);
    let started = written.and_then(|()| start_app(config, &app));
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

/// Writes the app's bundle (spec with its environment, mode 0600), its data volume
/// (owned by its uid) and its AppArmor profile.
fn write_bundle(config: &Config, app: &store::App, password: &str) -> Result<(), Refusal> {
    let Some(c) = &app.container else {
        return Err(Refusal(format!("the app {} is not a container", app.name)));
    };
    let dir = app_dir(config, &app.name);
    let io = |what: &str, e: std::io::Error| Refusal(format!("{what}: {e}"));
    let data = dir.join("data");
    std::fs::create_dir_all(dir.join("bundle"))
        .map_err(|e| io("creating the app's directory", e))?;
    std::fs::create_dir_all(&data).map_err(|e| io("creating the app's data volume", e))?;
    let uid = config.apps.first_uid + c.index;
    nix::unistd::chown(&data, Some(uid.into()), Some(uid.into()))
        .map_err(|e| Refusal(format!("{}: chown to {uid}: {e}", data.display())))?;
    let profile_name = format!("postern-app-{}", app.name);
    let profile = spec::apparmor(&profile_name);
    let profile_file = dir.join("apparmor.profile");
    std::fs::write(&profile_file, &profile).map_err(|e| io("writing the AppArmor profile", e))?;
    let confined = runtime::apparmor_enabled();
    if confined {
        runtime::load_apparmor(&profile_file).map_err(Refusal)?;
    }
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
        format!("POSTERN_SMTP_PASSWORD={password}"),
    ]);
    let data_text = data.to_string_lossy().into_owned();
    let netns = runtime::netns_path(&app.name);
    let inputs = spec::Inputs {
        name: &app.name,
        rootfs: &c.rootfs,
        data_dir: &data_text,
        command: &c.command,
        env,
        uid,
        memory_bytes: u64::from(config.apps.memory_mb) << 20,
        pids: config.apps.pids,
        netns: &netns,
        apparmor: confined.then_some(profile_name.as_str()),
    };
    let text =
        serde_json::to_vec_pretty(&spec::config(&inputs)).map_err(|e| Refusal(e.to_string()))?;
    let path = dir.join("bundle/config.json");
    let _ = std::fs::remove_file(&path);
    common::tls::write_private(&path, &text).map_err(|e| Refusal(e.to_string()))
}

/// Gives the data volume to the app's uid when it is not its own (a restored backup
/// is owned by whoever restored it).
fn own_volume(data: &std::path::Path, uid: u32) -> Result<(), Refusal> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(data)
        .map_err(|e| Refusal(format!("{}: {e}", data.display())))?
        .uid();
    if owner == uid {
        return Ok(());
    }
    fn walk(path: &std::path::Path, uid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
        if std::fs::symlink_metadata(path)?.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), uid)?;
            }
        }
        Ok(())
    }
    walk(data, uid).map_err(|e| Refusal(format!("{}: chown to {uid}: {e}", data.display())))
}

fn start_app(config: &Config, app: &store::App) -> Result<(), Refusal> {
    let Some(c) = &app.container else {
        return Err(Refusal(format!(
            "the app {} runs elsewhere (--upstream): start it there",
            app.name
        )));
    };
    runtime::ensure_network(&app.name, c.index, &c.address, &c.gateway).map_err(Refusal)?;
    let dir = app_dir(config, &app.name);
    own_volume(&dir.join("data"), config.apps.first_uid + c.index)?;
    runc(config)
        .start(
            &container_id(&app.name),
            &dir.join("bundle"),
            &dir.join("app.log"),
        )
        .map_err(Refusal)
}

/// `app start NAME`: runs it now and at every `serve` start.
pub fn start(store: &Store, config: &Config, name: &str) -> Result<String, Refusal> {
    let app = store.set_app_enabled(name, true)?;
    if !config
        .data_dir
        .join("apps")
        .join(&app.name)
        .join("bundle/config.json")
        .exists()
    {
        return Err(Refusal(format!(
            "the app {}'s bundle is missing: remove and add it again",
            app.name
        )));
    }
    start_app(config, &app)?;
    Ok(format!("Started app {}\n", app.name))
}

/// `app stop NAME`: stops it, and it stays stopped across restarts.
pub fn stop(store: &Store, config: &Config, name: &str) -> Result<String, Refusal> {
    let app = store.set_app_enabled(name, false)?;
    runc(config)
        .remove(&container_id(&app.name))
        .map_err(Refusal)?;
    Ok(format!("Stopped app {}\n", app.name))
}

/// Stops and removes a container app's container, network and relay account (its
/// data volume stays: nothing is lost by a mistyped name).
pub fn remove(config: &Config, store: &Store, app: &store::App) -> Result<String, Refusal> {
    let Some(c) = &app.container else {
        return Ok(String::new());
    };
    runc(config)
        .remove(&container_id(&app.name))
        .map_err(Refusal)?;
    runtime::remove_network(&app.name, c.index);
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
pub fn status(config: &Config, app: &store::App) -> String {
    match &app.container {
        None => "external".into(),
        Some(c) => {
            let state = runc(config)
                .status(&container_id(&app.name))
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
pub fn boot(config: &Config, store: &Store) {
    let apps = match store.apps() {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!(error = %e, "reading the apps");
            return;
        }
    };
    for app in apps {
        let enabled = app.container.as_ref().is_some_and(|c| c.enabled);
        if !enabled || runc(config).status(&container_id(&app.name)).as_deref() == Some("running") {
            continue;
        }
        match start_app(config, &app) {
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
