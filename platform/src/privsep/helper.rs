//! The helper process, `postern privileged-helper`: started by `serve` as root with a
//! socket as its standard input; answers one request line with one reply line until
//! the socket closes (the server stopped), then exits. It dies with the server too
//! (parent-death signal).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail};

use super::{Reply, Request};
use crate::config::Config;

/// Largest request line (a block list of a country's networks is a few MiB).
const MAX_REQUEST: u64 = 64 << 20;

/// Runs the helper until its socket closes.
pub fn run(config: &Config) -> Result<()> {
    use nix::sys::prctl;
    prctl::set_name(c"postern-helper").context("naming the helper")?;
    prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGTERM))
        .context("the helper's parent-death signal")?;
    if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
        bail!("the server that started the helper is gone");
    }
    let stdin = nix::sys::stat::fstat(std::io::stdin().as_fd()).context("the helper's socket")?;
    if nix::sys::stat::SFlag::from_bits_truncate(stdin.st_mode) & nix::sys::stat::SFlag::S_IFMT
        != nix::sys::stat::SFlag::S_IFSOCK
    {
        bail!(
            "the privileged helper is started by `postern serve`, with a socket as its standard input"
        );
    }
    let socket: UnixStream = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("the helper's socket")?
        .into();
    let mut writer = socket.try_clone().context("the helper's socket")?;
    let mut reader = BufReader::new(socket);
    tracing::info!(pid = std::process::id(), "privileged helper running");
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(MAX_REQUEST)
            .read_until(b'\n', &mut line)
            .context("reading a request")?;
        if n == 0 {
            tracing::info!("privileged helper stopping: the server closed its socket");
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            bail!("a request longer than {MAX_REQUEST} bytes");
        }
        let reply = match serde_json::from_slice::<Request>(&line) {
            Ok(request) => {
                let what = request.kind();
                let reply = super::handle(config, request);
                if let Reply::Refused(why) = &reply {
                    tracing::warn!(request = what, why, "privileged request refused or failed");
                }
                reply
            }
            Err(e) => {
                tracing::warn!(error = %e, "malformed privileged request refused");
                Reply::Refused(format!("malformed request: {e}"))
            }
        };
        let mut out = serde_json::to_vec(&reply).context("encoding a reply")?;
        out.push(b'\n');
        writer.write_all(&out).context("writing a reply")?;
    }
}
