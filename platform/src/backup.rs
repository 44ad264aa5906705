//! Backups from the host's side: the `[backup]` section, `postern backup create |
//! restore | verify`, and the nightly backup `serve` writes. The archive itself (its
//! snapshot, format and encryption) is the store's: see `store::backup`.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use store::Store;
use store::backup::{BackupOptions, Summary};
use tokio_util::sync::CancellationToken;

use crate::admin::{Refusal, format_size};
use crate::config::Config as ServerConfig;

/// `[backup]`: the nightly backup `postern serve` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory the nightly backups go in, one subdirectory per backup named by its
    /// UTC time (`20260115T030000Z`). Empty (the default): no nightly backup. The
    /// server's user (`server.run_as`) must be able to write it.
    pub dir: PathBuf,
    /// File holding the passphrase the nightly backups are encrypted with (AES-256-GCM,
    /// key derived by argon2id); one trailing newline is ignored. Empty: the backups
    /// are NOT encrypted (only checksummed). Read at each backup, by the server's user.
    pub passphrase_file: PathBuf,
    /// The hour of the day, in UTC (0-23), at which the nightly backup starts.
    pub hour: u8,
    /// How many nightly backups to keep; older ones are deleted after a new one is
    /// written.
    pub keep: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::new(),
            passphrase_file: PathBuf::new(),
            hour: 3,
            keep: 7,
        }
    }
}

impl Config {
    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if self.hour > 23 {
            bail!(
                "key `backup.hour`: {} is not an hour of the day (0-23, UTC)",
                self.hour
            );
        }
        if self.keep == 0 {
            bail!("key `backup.keep`: must be at least 1");
        }
        if self.dir.as_os_str().is_empty() {
            if !self.passphrase_file.as_os_str().is_empty() {
                bail!(
                    "key `backup.passphrase_file`: set `backup.dir` too, or there is no nightly backup to encrypt"
                );
            }
            return Ok(());
        }
        if !self.passphrase_file.as_os_str().is_empty() && !self.passphrase_file.is_file() {
            bail!(
                "key `backup.passphrase_file`: {} is not a readable file",
                self.passphrase_file.display()
            );
        }
        Ok(())
    }
}

/// The files and directories of the data directory a backup carries besides the
/// store: the configuration, certificates and keys (`tls/`, with `tls/sni/`) and the
/// ACME account. DKIM keys are in the store.
pub const DATA_FILES: [&str; 3] = ["postern.toml", "tls", "acme"];

/// [`DATA_FILES`] and each container app's directory (its data volume, bundle and
/// profile; not runc's runtime state).
fn data_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = DATA_FILES.iter().map(PathBuf::from).collect();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("apps")) {
        let mut apps: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name() != "runc" && e.path().is_dir())
            .map(|e| Path::new("apps").join(e.file_name()))
            .collect();
        apps.sort();
        files.extend(apps);
    }
    files
}

/// A passphrase: kept out of `Debug` output, sent over the control socket as base64.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(pub Vec<u8>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Serialize for Passphrase {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Passphrase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Passphrase)
            .map_err(serde::de::Error::custom)
    }
}

/// Reads a passphrase file: one trailing `\n` or `\r\n` is stripped; an empty
/// passphrase is refused.
pub fn read_passphrase(path: &Path) -> Result<Passphrase> {
    let mut bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        bail!(
            "the passphrase file {} is empty: a backup needs a passphrase to be encrypted",
            path.display()
        );
    }
    Ok(Passphrase(bytes))
}

/// Writes a backup of `store` into `to` (missing or empty) and records it in the
/// activity log as `backup-created` or `backup-failed`. Returns the text to print.
pub fn create(
    store: &Store,
    to: &Path,
    passphrase: Option<&Passphrase>,
    actor: &str,
    progress: store::backup::Progress<'_>,
) -> Result<String, Refusal> {
    let options = BackupOptions {
        passphrase: passphrase.map(|p| p.0.clone()),
        files: data_files(store.data_dir()),
        ..BackupOptions::default()
    };
    let started = Instant::now();
    let result = store.backup_to_dir(to, &options, progress);
    let (action, detail) = match &result {
        Ok(s) => (
            "backup-created",
            format!(
                "{}: {} messages, {}, {}",
                to.display(),
                s.messages,
                format_size(s.archive_bytes),
                if s.encrypted {
                    "encrypted"
                } else {
                    "NOT encrypted"
                }
            ),
        ),
        Err(e) => ("backup-failed", format!("{}: {e}", to.display())),
    };
    let event = store::AuditEvent {
        actor: actor.to_string(),
        action: action.to_string(),
        ip: None,
        detail,
    };
    if let Err(e) = store.log_event(&event) {
        tracing::error!(error = %e, action, "could not write the activity log");
    }
    let summary = result?;
    let mut out = format!(
        "Backup written to {} ({}, {}) in {:.1} s\n",
        to.display(),
        store::backup::ARCHIVE_FILE,
        format_size(summary.archive_bytes),
        started.elapsed().as_secs_f64()
    );
    out.push_str(&contents(&summary));
    out.push_str(&encryption(&summary));
    Ok(out)
}

/// One line: what a backup holds.
fn contents(s: &Summary) -> String {
    format!(
        "{} domains, {} accounts, {} mailboxes, {} messages and {} queued ({}), {} files of the data directory\n",
        s.domains,
        s.accounts,
        s.mailboxes,
        s.messages,
        s.queued,
        format_size(s.body_bytes),
        s.files
    )
}

fn encryption(s: &Summary) -> String {
    if s.encrypted {
        "Encrypted with AES-256-GCM (key derived from the passphrase by argon2id)\n".into()
    } else {
        "NOT encrypted (no passphrase): anyone who can read it can read the mail; its checksums detect damage, not tampering\n".into()
    }
}

/// A progress bar on standard error when it is a terminal; hidden otherwise.
pub fn progress_bar(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} [{elapsed}, {eta} left]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A progress callback that forwards to `f` at most every 100 ms, and always the last
/// report (done == total).
pub fn throttled(mut f: impl FnMut(u64, u64)) -> impl FnMut(u64, u64) {
    let mut last: Option<Instant> = None;
    move |done, total| {
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if due || done >= total {
            last = Some(Instant::now());
            f(done, total);
        }
    }
}

/// `postern backup restore`: restores into `to` (missing or empty, no server on it).
pub fn restore(from: &Path, to: &Path, passphrase: Option<&Passphrase>) -> Result<String> {
    if crate::control::is_running(to) {
        bail!(
            "a server is running on {}: stop it first (restore never writes into a data directory in use)",
            to.display()
        );
    }
    let bar = progress_bar("restoring");
    let mut report = throttled(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let result = store::backup::restore(from, to, passphrase.map(|p| p.0.as_slice()), &mut report);
    bar.finish_and_clear();
    // The store's error already names the file and the cause: one line, no chain.
    let summary = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = format!(
        "Restored {} into {}\n",
        store::backup::archive_path(from).display(),
        to.display()
    );
    out.push_str(&contents(&summary));
    if !summary.encrypted && passphrase.is_some() {
        out.push_str("(The backup was not encrypted: the passphrase was not needed.)\n");
    }
    // The configuration came back too; it still names the data directory it was
    // written for.
    let restored_config = to.join("postern.toml");
    if let Ok(text) = std::fs::read_to_string(&restored_config)
        && let Ok(config) = crate::config::parse(&text)
    {
        let same = match (config.data_dir.canonicalize(), to.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            let _ = writeln!(
                out,
                "Note: {} sets data_dir = {:?}; point it at {} before starting the server from this copy",
                restored_config.display(),
                config.data_dir.display().to_string(),
                to.display()
            );
        }
    }
    Ok(out)
}

/// `postern backup verify`: reads and checks everything, writes nothing.
pub fn verify(from: &Path, passphrase: Option<&Passphrase>) -> Result<String> {
    let bar = progress_bar("verifying");
    let mut report = throttled(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let result = store::backup::verify(from, passphrase.map(|p| p.0.as_slice()), &mut report);
    bar.finish_and_clear();
    let summary = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    let created = SystemTime::UNIX_EPOCH + Duration::from_millis(summary.created_ms);
    let mut out = format!(
        "{} is complete and {} (taken {}, {})\n",
        store::backup::archive_path(from).display(),
        if summary.encrypted {
            "authentic"
        } else {
            "undamaged"
        },
        humantime::format_rfc3339_seconds(created),
        format_size(summary.archive_bytes)
    );
    out.push_str(&contents(&summary));
    out.push_str(&encryption(&summary));
    Ok(out)
}

/// The activity log's actor for the nightly backups.
const NIGHTLY: &str = "backup";

/// Runs the nightly backup at `[backup] hour` UTC each day until `stop`. Waits in
/// steps of at most a minute, so a clock that jumps does not delay it by a day.
pub async fn nightly(config: Arc<ServerConfig>, store: Arc<Store>, stop: CancellationToken) {
    let mut due = next_run(SystemTime::now(), config.backup.hour);
    tracing::info!(
        dir = %config.backup.dir.display(),
        next = %humantime::format_rfc3339_seconds(due),
        encrypted = !config.backup.passphrase_file.as_os_str().is_empty(),
        "nightly backups on"
    );
    loop {
        let now = SystemTime::now();
        if now >= due {
            let (c, s) = (config.clone(), store.clone());
            match tokio::task::spawn_blocking(move || run_nightly(&c, &s, now)).await {
                Ok(Ok(text)) => tracing::info!("nightly backup: {}", text.trim_end()),
                Ok(Err(e)) => tracing::error!(error = %e, "nightly backup failed"),
                Err(e) => tracing::error!(error = %e, "nightly backup task failed"),
            }
            due = next_run(SystemTime::now(), config.backup.hour);
            continue;
        }
        let wait = due
            .duration_since(now)
            .unwrap_or_default()
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A backup that root asks of a server running as its own user (which cannot write
/// where root may): root makes a directory beside the target, owned by the server's
/// user, the server writes the backup in it, and root moves the backup to the target
/// and makes it root's (the server cannot change a backup once written).
#[derive(Debug)]
pub struct Handoff {
    staging: PathBuf,
    inner: PathBuf,
    to: PathBuf,
}

impl Handoff {
    /// Prepares the directory for a backup to `to` (missing or empty), written by
    /// `server`'s (uid, gid).
    pub fn prepare(to: &Path, server: (u32, u32)) -> Result<Handoff> {
        use std::os::unix::fs::DirBuilderExt;
        if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
            bail!(
                "{} is not empty: a backup goes into a new or empty directory",
                to.display()
            );
        }
        let (Some(parent), Some(name)) = (to.parent(), to.file_name()) else {
            bail!("{} does not name a directory", to.display());
        };
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let staging = parent.join(format!(
            ".{}.server-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        nix::unistd::chown(
            &staging,
            Some(nix::unistd::Uid::from_raw(server.0)),
            Some(nix::unistd::Gid::from_raw(server.1)),
        )
        .with_context(|| format!("giving {} to the server's user", staging.display()))?;
        Ok(Handoff {
            inner: staging.join(name),
            staging,
            to: to.to_path_buf(),
        })
    }

    /// Where the server writes the backup.
    pub fn target(&self) -> &Path {
        &self.inner
    }

    /// After the server's `outcome`: the backup moved to the target and made root's,
    /// the directory removed; the server's text names the target.
    pub fn finish(self, outcome: Result<String>) -> Result<String> {
        let moved = outcome.and_then(|text| {
            std::fs::rename(&self.inner, &self.to)
                .with_context(|| format!("moving the backup to {}", self.to.display()))?;
            chown_root(&self.to).with_context(|| format!("making {} root's", self.to.display()))?;
            Ok(text.replace(
                &self.inner.display().to_string(),
                &self.to.display().to_string(),
            ))
        });
        let _ = std::fs::remove_dir_all(&self.staging);
        moved
    }
}

/// Gives `path` and everything in it to root, links themselves not followed.
fn chown_root(path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(0), Some(0))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_root(&entry?.path())?;
        }
    }
    Ok(())
}

/// The next time after `now` that is `hour`:00:00 UTC.
pub fn next_run(now: SystemTime, hour: u8) -> SystemTime {
    const DAY: u64 = 86_400;
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut at = secs - secs % DAY + u64::from(hour.min(23)) * 3600;
    if at <= secs {
        at += DAY;
    }
    SystemTime::UNIX_EPOCH + Duration::from_secs(at)
}

/// A backup directory's name: its UTC time, `20260115T030000Z`.
pub fn backup_name(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

fn is_backup_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// One nightly backup into `[backup] dir`/`<time>`, then the old ones pruned.
pub fn run_nightly(config: &ServerConfig, store: &Store, now: SystemTime) -> Result<String> {
    let b = &config.backup;
    let to = b.dir.join(backup_name(now));
    let passphrase = if b.passphrase_file.as_os_str().is_empty() {
        None
    } else {
        match read_passphrase(&b.passphrase_file) {
            Ok(p) => Some(p),
            Err(e) => {
                let event = store::AuditEvent {
                    actor: NIGHTLY.into(),
                    action: "backup-failed".into(),
                    ip: None,
                    detail: format!("{}: {e:#}", to.display()),
                };
                if let Err(e) = store.log_event(&event) {
                    tracing::error!(error = %e, "could not write the activity log");
                }
                return Err(e);
            }
        }
    };
    let mut out = create(store, &to, passphrase.as_ref(), NIGHTLY, &mut |_, _| {})
        .map_err(|r| anyhow::anyhow!(r.0))?;
    let pruned = prune(&b.dir, b.keep as usize)?;
    if !pruned.is_empty() {
        let _ = writeln!(
            out,
            "Removed {} older backups: {}",
            pruned.len(),
            pruned.join(", ")
        );
    }
    Ok(out)
}

/// Deletes the oldest nightly backups in `dir` beyond `keep`, and the temporary
/// directories of nightly backups interrupted more than a day ago. Only names this
/// module writes are touched. Returns the backups removed.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<String>> {
    let mut backups = Vec::new();
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_backup_name(&name) {
            backups.push(name);
        } else if let Some(rest) = name.strip_prefix('.')
            && rest.get(..16).is_some_and(is_backup_name)
            && rest[16..].starts_with(".partial-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < day_ago)
        {
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    let old: Vec<String> = backups.into_iter().take(excess).collect();
    for name in &old {
        let path = dir.join(name);
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_run_is_the_next_occurrence_of_the_hour_in_utc() {
        let t = |s: &str| humantime::parse_rfc3339(s).unwrap();
        assert_eq!(
            next_run(t("2026-01-15T02:59:59Z"), 3),
            t("2026-01-15T03:00:00Z")
        );
        assert_eq!(
            next_run(t("2026-01-15T03:00:00Z"), 3),
            t("2026-01-16T03:00:00Z")
        );
        assert_eq!(
            next_run(t("2026-12-31T23:30:00Z"), 0),
            t("2027-01-01T00:00:00Z")
        );
        assert_eq!(backup_name(t("2026-01-15T03:00:07Z")), "20260115T030007Z");
        assert!(is_backup_name("20260115T030007Z"));
        assert!(!is_backup_name("20260115T030007"));
        assert!(!is_backup_name("notes.txt"));
    }

    #[test]
    fn passphrase_files_lose_one_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        for (content, want) in [
            (&b"secret\n"[..], &b"secret"[..]),
            (b"secret\r\n", b"secret"),
            (b"secret", b"secret"),
            (b"two\n\n", b"two\n"),
            (b" spaced \n", b" spaced "),
        ] {
            std::fs::write(&f, content).unwrap();
            assert_eq!(read_passphrase(&f).unwrap().0, want);
        }
        for empty in [&b""[..], b"\n", b"\r\n"] {
            std::fs::write(&f, empty).unwrap();
            let e = read_passphrase(&f).unwrap_err().to_string();
            assert!(e.contains("is empty"), "{e}");
        }
        let e = read_passphrase(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        assert_eq!(format!("{:?}", Passphrase(b"x".to_vec())), "Passphrase(..)");
    }

    #[test]
    fn config_values_are_checked() {
        let ok = Config {
            dir: "/var/backups/postern".into(),
            ..Config::default()
        };
        ok.validate().unwrap();
        Config::default().validate().unwrap();
        for (bad, key) in [
            (
                Config {
                    hour: 24,
                    ..ok.clone()
                },
                "backup.hour",
            ),
            (
                Config {
                    keep: 0,
                    ..ok.clone()
                },
                "backup.keep",
            ),
            (
                Config {
                    passphrase_file: "/nonexistent/pass".into(),
                    ..ok.clone()
                },
                "backup.passphrase_file",
            ),
            (
                Config {
                    dir: PathBuf::new(),
                    passphrase_file: "/etc/hostname".into(),
                    ..ok.clone()
                },
                "backup.passphrase_file",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn nightly_writes_a_backup_logs_it_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        store.add_domain("example.org").unwrap();
        store.add_account("alice@example.org", "$hash").unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "nightly secret\n").unwrap();
        let backups = dir.path().join("backups");
        let config = ServerConfig {
            backup: Config {
                dir: backups.clone(),
                passphrase_file: pass.clone(),
                hour: 3,
                keep: 2,
            },
            ..ServerConfig::default()
        };
        std::fs::create_dir_all(&backups).unwrap();
        std::fs::write(backups.join("notes.txt"), "kept").unwrap();
        let t0 = humantime::parse_rfc3339("2026-01-15T03:00:00Z").unwrap();
        for day in 0..3u64 {
            let out = run_nightly(&config, &store, t0 + Duration::from_secs(day * 86_400)).unwrap();
            assert!(out.contains("Encrypted with AES-256-GCM"), "{out}");
        }
        let mut names: Vec<String> = std::fs::read_dir(&backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["20260116T030000Z", "20260117T030000Z", "notes.txt"]);
        let summary = store::backup::verify(
            &backups.join("20260117T030000Z"),
            Some(b"nightly secret"),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(summary.accounts, 1);
        let events = store.events(None, 100).unwrap();
        let created = events
            .iter()
            .filter(|e| e.event.action == "backup-created" && e.event.actor == "backup")
            .count();
        assert_eq!(created, 3);
        // The same time again: the directory exists, the backup fails and says so.
        let e = run_nightly(&config, &store, t0 + Duration::from_secs(2 * 86_400)).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        std::fs::remove_file(&pass).unwrap();
        assert!(run_nightly(&config, &store, t0 + Duration::from_secs(9 * 86_400)).is_err());
        let failed = store
            .events(None, 100)
            .unwrap()
            .iter()
            .filter(|e| e.event.action == "backup-failed")
            .count();
        assert_eq!(failed, 2);
    }
}
