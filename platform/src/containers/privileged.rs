//! The privileged half of the apps' containers, run by the helper (or by the CLI as
//! root): the app's network, its data volume (given to its uid), its OCI spec and
//! AppArmor profile rendered here from the helper's own configuration, and runc.
//!
//! What runc and the kernel act on lives in the helper's own directory,
//! `/run/postern/<digest of the data directory>/` (root only): runc's state, each app's
//! bundle, and its data volume bind-mounted there from a file descriptor opened
//! without following links, so the unprivileged server, which owns the data
//! directory, cannot swap a path under the helper.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use super::{runtime, spec};
use crate::config::Config;
use crate::privsep::AppStart;

/// The helper's directory for this data directory.
pub fn state_dir(config: &Config) -> PathBuf {
    let data = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let digest = ring::digest::digest(&ring::digest::SHA256, data.as_os_str().as_encoded_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    PathBuf::from("/run/postern").join(hex)
}

fn runc(config: &Config) -> runtime::Runc {
    runtime::Runc::new(state_dir(config).join("runc"))
}

fn container_id(name: &str) -> String {
    format!("postern-{name}")
}

/// A root-only directory (created 0700, or made so).
fn private_dir(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Starts (or restarts) the app's container.
pub fn start(config: &Config, app: &AppStart) -> Result<(), String> {
    let (gateway, address) = super::addresses(config.apps.subnet, app.index)
        .ok_or_else(|| format!("slot {} is outside [apps] subnet", app.index))?;
    runtime::ensure_network(
        &app.name,
        app.index,
        &address.to_string(),
        &gateway.to_string(),
    )?;
    let uid = config.apps.first_uid + app.index;
    let state = state_dir(config);
    private_dir(&state)?;
    let (volume, log) = mount_volume(config, &state, &app.name, uid)?;
    let bundle = state.join("bundles").join(&app.name);
    private_dir(&bundle)?;
    let profile_name = format!("postern-app-{}", app.name);
    let confined = runtime::apparmor_enabled();
    if confined {
        let profile = bundle.join("apparmor.profile");
        std::fs::write(&profile, spec::apparmor(&profile_name))
            .map_err(|e| format!("{}: {e}", profile.display()))?;
        runtime::load_apparmor(&profile)?;
    }
    let rootfs = app.rootfs.to_string_lossy().into_owned();
    let volume = volume.to_string_lossy().into_owned();
    let netns = runtime::netns_path(&app.name);
    let inputs = spec::Inputs {
        name: &app.name,
        rootfs: &rootfs,
        data_dir: &volume,
        command: &app.command,
        env: app.env.clone(),
        uid,
        memory_bytes: u64::from(config.apps.memory_mb) << 20,
        pids: config.apps.pids,
        netns: &netns,
        apparmor: confined.then_some(profile_name.as_str()),
    };
    let text = serde_json::to_vec_pretty(&spec::config(&inputs)).map_err(|e| e.to_string())?;
    let path = bundle.join("config.json");
    let _ = std::fs::remove_file(&path);
    common::tls::write_private(&path, &text).map_err(|e| e.to_string())?;
    runc(config).start(&container_id(&app.name), &bundle, log)
}

/// Opens `DATA_DIR/apps/NAME/data` without following a link at any step (creating
/// `data` if missing), gives it to `uid` when it is not its own, and bind-mounts it
/// on the helper's own `volumes/NAME`, which the spec names. Also opens the app's
/// log, `DATA_DIR/apps/NAME/app.log` (appended to, never through a link, owned by
/// the data directory's owner).
fn mount_volume(
    config: &Config,
    state: &std::path::Path,
    name: &str,
    uid: u32,
) -> Result<(PathBuf, std::fs::File), String> {
    use std::os::unix::fs::MetadataExt;
    let data_dir = std::fs::canonicalize(&config.data_dir)
        .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    let dir = |at: &dyn AsFd, part: &str, create: bool| -> Result<OwnedFd, String> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(at, part, flags, Mode::empty()) {
            Err(nix::errno::Errno::ENOENT) if create => {
                nix::sys::stat::mkdirat(at, part, Mode::from_bits_truncate(0o700))
                    .map_err(|e| format!("creating {part}: {e}"))?;
                openat(at, part, flags, Mode::empty()).map_err(|e| format!("{part}: {e}"))
            }
            other => other.map_err(|e| format!("{part}: {e} (a link is never followed)")),
        }
    };
    let root =
        std::fs::File::open(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let apps = dir(&root, "apps", false)?;
    let app = dir(&apps, name, false)?;
    let volume = dir(&app, "data", true)?;
    let log = openat(
        &app,
        "app.log",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| format!("{name}'s app.log: {e} (a link is never followed)"))?;
    let owner = std::fs::metadata(&data_dir).map_err(|e| e.to_string())?;
    nix::unistd::fchown(
        &log,
        Some(nix::unistd::Uid::from_raw(owner.uid())),
        Some(nix::unistd::Gid::from_raw(owner.gid())),
    )
    .map_err(|e| format!("{name}'s app.log: {e}"))?;
    let meta = std::fs::File::from(volume.try_clone().map_err(|e| e.to_string())?)
        .metadata()
        .map_err(|e| e.to_string())?;
    if meta.uid() != uid {
        // A restored backup is owned by whoever restored it.
        chown_tree(volume.try_clone().map_err(|e| e.to_string())?, uid)
            .map_err(|e| format!("giving {name}'s data volume to uid {uid}: {e}"))?;
    }
    let target = state.join("volumes").join(name);
    private_dir(&target)?;
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&volume));
    nix::mount::mount(
        Some(source.as_str()),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind-mounting {name}'s data volume: {e}"))?;
    Ok((target, std::fs::File::from(log)))
}

/// Gives the directory `dir` and everything in it to `uid` (and its group), through
/// file descriptors: links are changed themselves, never followed.
fn chown_tree(dir: OwnedFd, uid: u32) -> nix::Result<()> {
    use nix::unistd::{Gid, Uid};
    let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid)));
    nix::unistd::fchown(&dir, uid, gid)?;
    let mut entries =
        nix::dir::Dir::from_fd(dir.try_clone().map_err(|_| nix::errno::Errno::EBADF)?)?;
    let mut subdirs = Vec::new();
    for entry in entries.iter() {
        let entry = entry?;
        let name = entry.file_name().to_owned();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        if entry.file_type() == Some(nix::dir::Type::Directory) {
            subdirs.push(name);
        } else {
            nix::unistd::fchownat(
                &dir,
                name.as_c_str(),
                uid,
                gid,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
    }
    for name in subdirs {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let sub = openat(&dir, name.as_c_str(), flags, Mode::empty())?;
        chown_tree(sub, uid.map_or(0, Uid::as_raw))?;
    }
    Ok(())
}

/// Stops and deletes the app's container (its network and volume mount stay).
pub fn stop(config: &Config, name: &str) -> Result<(), String> {
    runc(config).remove(&container_id(name))?;
    let _ = nix::mount::umount2(
        &state_dir(config).join("volumes").join(name),
        nix::mount::MntFlags::MNT_DETACH,
    );
    Ok(())
}

/// Stops and deletes the app's container, network, bundle and volume mount.
pub fn remove(config: &Config, name: &str, index: u32) -> Result<(), String> {
    stop(config, name)?;
    runtime::remove_network(name, index);
    let state = state_dir(config);
    let _ = std::fs::remove_dir_all(state.join("bundles").join(name));
    let _ = std::fs::remove_dir(state.join("volumes").join(name));
    // Nothing left of the last app: nothing left here (each `remove_dir` only removes an
    // empty directory).
    for dir in ["bundles", "volumes", "runc", ""] {
        let _ = std::fs::remove_dir(state.join(dir));
    }
    Ok(())
}

/// The container's state, as runc tells it.
pub fn status(config: &Config, name: &str) -> Option<String> {
    runc(config).status(&container_id(name))
}
