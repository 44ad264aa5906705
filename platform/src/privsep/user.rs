//! The service user: created when missing, given the data directory, and switched to.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::unistd::{Gid, Uid, User};

/// The default `[server] run_as`.
pub const DEFAULT_USER: &str = "postern";

/// How `serve` runs, from `[server] run_as` and who started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Started as root: bind, start the helper, become this user.
    Separate(String),
    /// Stay who we are: not root (nothing to drop), or `run_as` empty or `root`.
    Same,
}

/// The mode for `run_as`. Started by another user than root, `run_as` must be empty,
/// the default, or that user.
pub fn mode(run_as: &str) -> Result<Mode> {
    let root = Uid::effective().is_root();
    if run_as.is_empty() || run_as == "root" {
        return Ok(Mode::Same);
    }
    if root {
        return Ok(Mode::Separate(run_as.to_string()));
    }
    let me = User::from_uid(Uid::effective()).ok().flatten();
    if run_as == DEFAULT_USER || me.is_some_and(|u| u.name == run_as) {
        return Ok(Mode::Same);
    }
    bail!("key `server.run_as`: switching to {run_as:?} needs root");
}

/// The user `name`, created as a system user (own group, no home, no shell) with
/// `useradd` when it does not exist.
pub fn ensure(name: &str) -> Result<User> {
    if let Some(user) = User::from_name(name).with_context(|| format!("looking up user {name}"))? {
        return Ok(user);
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "Postern mail server",
            name,
        ])
        .output()
        .with_context(|| format!("running useradd to create the user {name}"))?;
    // Another postern may have created it meanwhile.
    match User::from_name(name).with_context(|| format!("looking up user {name}"))? {
        Some(user) => {
            if out.status.success() {
                tracing::info!(
                    user = name,
                    uid = user.uid.as_raw(),
                    "created the system user"
                );
            }
            Ok(user)
        }
        None => bail!(
            "cannot create the user {name}: useradd said {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Makes `data_dir` the user's: checks the user can reach it (every directory above
/// it searchable), then gives it everything inside that is not already theirs, except
/// `keep` (the configuration file, which the unprivileged server must not be able to
/// change) and the apps' data volumes (`apps/*/data`, owned by each app's uid).
pub fn own_data_dir(data_dir: &Path, user: &User, keep: &[PathBuf]) -> Result<()> {
    let dir = data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .with_context(|| format!("reading {}", ancestor.display()))?;
        let mode = meta.mode();
        let searchable = mode & 0o001 != 0
            || (meta.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == user.gid.as_raw() && mode & 0o010 != 0);
        if !searchable {
            bail!(
                "the data directory {} is out of reach of the user {}: {} (mode {:o}, owner uid {}) is not searchable by it; `chmod o+x {}`, or move the data directory",
                dir.display(),
                user.name,
                ancestor.display(),
                mode & 0o7777,
                meta.uid(),
                ancestor.display()
            );
        }
    }
    let keep: Vec<PathBuf> = keep.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut changed = 0usize;
    walk(&dir, &dir, user.uid, user.gid, &keep, &mut changed)
        .with_context(|| format!("giving {} to the user {}", dir.display(), user.name))?;
    if changed > 0 {
        tracing::info!(
            dir = %dir.display(),
            user = user.name,
            files = changed,
            "data directory given to the service user"
        );
    }
    Ok(())
}

fn walk(
    root: &Path,
    path: &Path,
    uid: Uid,
    gid: Gid,
    keep: &[PathBuf],
    changed: &mut usize,
) -> std::io::Result<()> {
    if keep.iter().any(|k| k == path) {
        return Ok(());
    }
    // The apps' data volumes belong to their own uids.
    if let Ok(rest) = path.strip_prefix(root) {
        let parts: Vec<_> = rest.components().collect();
        if parts.len() == 3 && parts[0].as_os_str() == "apps" && parts[2].as_os_str() == "data" {
            return Ok(());
        }
    }
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != uid.as_raw() || meta.gid() != gid.as_raw() {
        std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))?;
        *changed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            walk(root, &entry?.path(), uid, gid, keep, changed)?;
        }
    }
    Ok(())
}

/// Becomes `user` for good: its group only, then its uid (which drops every
/// capability), and no way back up through set-user-ID programs.
pub fn become_user(user: &User) -> Result<()> {
    use nix::unistd::{setgid, setgroups, setuid};
    setgroups(&[user.gid]).context("setgroups")?;
    setgid(user.gid).context("setgid")?;
    setuid(user.uid).context("setuid")?;
    if setuid(Uid::from_raw(0)).is_ok() {
        bail!("could regain root after dropping privileges");
    }
    nix::sys::prctl::set_no_new_privs().context("PR_SET_NO_NEW_PRIVS")?;
    Ok(())
}
