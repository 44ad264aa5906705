//! The server's end of the helper: starting it, and one request at a time over the
//! socketpair.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Reply, Request};

/// Largest reply line read from the helper.
const MAX_REPLY: u64 = 1 << 20;

/// How long one request may take (a container stop waits up to 10 s, then runc).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// The running helper and the server's end of its socket.
pub struct Client {
    socket: Mutex<Option<(BufReader<UnixStream>, UnixStream)>>,
    child: Mutex<Option<Child>>,
}

impl Client {
    /// Starts `postern [--config CONFIG] privileged-helper` (this very binary, through
    /// `/proc/self/exe`) with one end of a socketpair as its standard input, in its
    /// own process group (a terminal's Ctrl-C goes to the server, which stops it by
    /// closing the socket).
    pub fn start(config_flag: Option<&Path>) -> Result<Client> {
        use std::os::unix::process::CommandExt;
        let (ours, theirs) = UnixStream::pair().context("socketpair for the helper")?;
        let mut command = Command::new("/proc/self/exe");
        if let Some(flag) = config_flag {
            command.arg("--config").arg(
                std::path::absolute(flag)
                    .with_context(|| format!("resolving {}", flag.display()))?,
            );
        }
        let child = command
            .arg("privileged-helper")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .context("starting the privileged helper")?;
        ours.set_read_timeout(Some(REPLY_TIMEOUT))
            .context("the helper's socket")?;
        let reader = BufReader::new(ours.try_clone().context("the helper's socket")?);
        Ok(Client {
            socket: Mutex::new(Some((reader, ours))),
            child: Mutex::new(Some(child)),
        })
    }

    /// The helper's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Sends `request` and waits for the reply.
    pub fn call(&self, request: &Request) -> Result<Reply, String> {
        let gone = |e: &dyn std::fmt::Display| format!("the privileged helper is gone ({e})");
        let mut socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        let Some((reader, writer)) = socket.as_mut() else {
            return Err("the privileged helper has stopped".into());
        };
        let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        if let Err(e) = writer.write_all(&line) {
            *socket = None;
            return Err(gone(&e));
        }
        let mut reply = String::new();
        match reader.by_ref().take(MAX_REPLY).read_line(&mut reply) {
            Ok(0) => {
                *socket = None;
                Err(gone(&"it closed its socket"))
            }
            Ok(_) => serde_json::from_str(&reply).map_err(|e| format!("the helper's reply: {e}")),
            Err(e) => {
                *socket = None;
                Err(gone(&e))
            }
        }
    }

    /// Closes the socket (the helper then exits) and waits for the helper.
    pub fn stop(&self) {
        self.socket.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.wait();
        }
    }
}
