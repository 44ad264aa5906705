//! The control socket: while `serve` runs it owns the store (redb allows one process
//! per file), so the CLI sends its requests here. One JSON request line, one JSON reply
//! line per connection. The socket is `DATA_DIR/control.sock`, mode 0600 (created under
//! `serve`'s umask 077, so never open to others even for a moment), in a data
//! directory of mode 0700. Whatever the file modes, the server reads each client's uid
//! from the kernel (`SO_PEERCRED`): only root and the user the server runs as are
//! served, and the activity log names that uid's user, never what the client claims.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Refusal, Request};
use crate::config::Config;

/// Largest request line accepted: most are small, but an import batch carries
/// messages (one of up to 50 MiB, base64).
const MAX_REQUEST: usize = 96 * 1024 * 1024;

/// The socket's path in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    request: Request,
    /// Who the CLI says it runs as. The server does not believe it: it logs the user of
    /// the uid the kernel reports.
    actor: String,
}

/// Whether a client of uid `peer` may use the control socket: root, or the user the
/// server runs as.
fn allowed(peer: u32) -> bool {
    peer == 0 || peer == nix::unistd::Uid::effective().as_raw()
}

/// The activity log's actor for a client of uid `peer`: `cli:NAME` (or `cli:uid N`).
fn actor_of(peer: u32) -> String {
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {peer}"), |u| u.name);
    format!("cli:{name}")
}

/// The reply: the text to print, or why not.
type Reply = Result<String, Refusal>;

/// A line the server may send before its reply to a long request (a backup).
#[derive(Debug, Serialize, Deserialize)]
enum Interim {
    /// Bytes done and bytes in all.
    Progress(u64, u64),
}

/// The uid and gid of the running server's control socket (the user the server runs
/// as), if there is one.
pub fn server_owner(data_dir: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let path = socket_path(data_dir);
    UnixStream::connect(&path).ok()?;
    std::fs::metadata(&path).ok().map(|m| (m.uid(), m.gid()))
}

/// The process id of the server listening on the control socket of `data_dir`, as
/// the kernel reports it (`SO_PEERCRED`).
pub fn server_pid(data_dir: &Path) -> Option<u32> {
    let stream = UnixStream::connect(socket_path(data_dir)).ok()?;
    let cred =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    u32::try_from(cred.pid()).ok()
}

/// Whether a server is listening on the control socket of `data_dir`.
pub fn is_running(data_dir: &Path) -> bool {
    UnixStream::connect(socket_path(data_dir)).is_ok()
}

/// Sends `request` to a running server. `Ok(None)`: no server is listening.
pub fn send(data_dir: &Path, request: &Request, actor: &str) -> Result<Option<Reply>> {
    send_with_progress(data_dir, request, actor, &mut |_, _| {})
}

/// Like [`send`], passing the progress the server reports to `progress`.
pub fn send_with_progress(
    data_dir: &Path,
    request: &Request,
    actor: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<Reply>> {
    let path = socket_path(data_dir);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", path.display())),
    };
    // DKIM key generation for a new domain takes a few seconds on a slow machine;
    // certificate orders wait for the CA to validate and issue, name after name.
    // A backup reports progress after each body; before the first one it writes the
    // index, which takes long only for a very large one.
    let timeout = match request {
        Request::AcmeRenew { .. } => 900,
        Request::BackupCreate { .. } => 3600,
        _ => 120,
    };
    stream.set_read_timeout(Some(Duration::from_secs(timeout)))?;
    let mut line = serde_json::to_string(&Envelope {
        request: request.clone(),
        actor: actor.to_string(),
    })?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .context("writing to the control socket")?;
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        stream
            .read_line(&mut line)
            .context("reading from the control socket")?;
        if let Ok(Interim::Progress(done, total)) = serde_json::from_str(&line) {
            progress(done, total);
            continue;
        }
        let reply: Reply = serde_json::from_str(&line)
            .context("the server's reply on the control socket is malformed")?;
        return Ok(Some(reply));
    }
}

/// Binds the control socket, replacing one left by a server that died.
pub fn bind(data_dir: &Path) -> Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            anyhow::bail!(
                "another postern serve is already running on {}",
                data_dir.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the control socket until `stop` is cancelled.
pub async fn serve(
    listener: UnixListener,
    config: Arc<Config>,
    store: Arc<store::Store>,
    acme: Option<crate::acme::Acme>,
    running: Arc<crate::running::Running>,
    stop: CancellationToken,
) -> Result<()> {
    let path = socket_path(&config.data_dir);
    tracing::info!(path = %path.display(), "control socket listening");
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let config = config.clone();
        let store = store.clone();
        let acme = acme.clone();
        let running = running.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, config, store, acme, running).await {
                tracing::warn!(error = %e, "control request failed");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn handle(
    stream: tokio::net::UnixStream,
    config: Arc<Config>,
    store: Arc<store::Store>,
    acme: Option<crate::acme::Acme>,
    running: Arc<crate::running::Running>,
) -> Result<()> {
    let peer = stream
        .peer_cred()
        .context("reading the client's uid")?
        .uid();
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    reader.read_until(b'\n', &mut line).await?;
    if !allowed(peer) {
        tracing::warn!(
            uid = peer,
            "control socket: a request from a uid that is neither root nor the server's refused"
        );
        let refused: Reply = Err(Refusal(
            "the control socket serves root and the user the server runs as only".into(),
        ));
        let mut out = serde_json::to_vec(&refused)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        return Ok(());
    }
    let envelope = serde_json::from_slice::<Envelope>(&line).map(|mut e| {
        e.actor = actor_of(peer);
        e
    });
    let reply: Reply = match envelope {
        // Certificates are the running server's business (its listeners answer the
        // CA's challenges).
        Ok(Envelope {
            request: Request::AcmeRenew { names, force },
            actor,
        }) => match acme {
            Some(acme) => acme.renew(names, force, actor).await.map_err(Refusal),
            None => Err(Refusal(admin::ACME_OFF.into())),
        },
        // A backup reports its progress while it runs.
        Ok(Envelope {
            request: Request::BackupCreate { to, passphrase },
            actor,
        }) => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let task = tokio::task::spawn_blocking(move || {
                let mut report = crate::backup::throttled(|done, total| {
                    let _ = tx.send((done, total));
                });
                crate::backup::create(&store, &to, passphrase.as_ref(), &actor, &mut report)
            });
            // Ends when the backup does (it drops the sender). A client that went
            // away does not stop the backup: its outcome is in the activity log.
            let mut client = true;
            while let Some((done, total)) = rx.recv().await {
                if client {
                    let mut line = serde_json::to_vec(&Interim::Progress(done, total))?;
                    line.push(b'\n');
                    client = write.write_all(&line).await.is_ok();
                }
            }
            task.await
                .unwrap_or_else(|e| Err(Refusal(format!("internal error: {e}"))))
        }
        Ok(Envelope {
            request: Request::AcmeStatus,
            ..
        }) => match acme {
            Some(acme) => acme.status().await.map_err(Refusal),
            None => Err(Refusal(admin::ACME_OFF.into())),
        },
        Ok(env) => tokio::task::spawn_blocking(move || {
            admin::execute_in(
                &store,
                &config,
                &env.request,
                &env.actor,
                None,
                Some(&running),
            )
        })
        .await
        .unwrap_or_else(|e| Err(Refusal(format!("internal error: {e}")))),
        Err(e) => Err(Refusal(format!("malformed control request: {e}"))),
    };
    let mut out = serde_json::to_vec(&reply)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

use tokio::io::AsyncReadExt as _;
