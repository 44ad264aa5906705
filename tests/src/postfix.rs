//! A Postfix of our own on loopback (PEERS.md §1): the reference MTA, relaying to
//! Postern or receiving from it.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Postfix of our own (PEERS.md §1), stopped on drop.
pub struct Postfix {
    /// Its configuration directory.
    pub conf: PathBuf,
    /// Where it logs.
    pub log: PathBuf,
    child: Child,
}

impl Postfix {
    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Postfix on 127.0.0.1:`port` in `dir`, relaying everything to `relay_port` by
/// IP (no DNS) with opportunistic TLS, unless `extra` main.cf lines (which win over
/// the defaults before them) say otherwise. Its `virtual` transport can deliver into
/// maildirs under `dir`.
pub fn start(dir: &Path, port: u16, relay_port: u16, extra: &str) -> Postfix {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.join("pf/conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(dir.join("pf/spool")).unwrap();
    let d = dir.display();
    std::fs::write(
        conf.join("main.cf"),
        format!(
            "compatibility_level = 3.6
queue_directory = {d}/pf/spool
data_directory = {d}/pf/data
myhostname = mta.postern.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
relayhost = [127.0.0.1]:{relay_port}
smtp_dns_support_level = disabled
smtp_tls_security_level = may
{extra}
"
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("master.cf"),
        format!(
            "127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
showq unix n - n - - showq
scache unix - - n - 1 scache
anvil unix - - n - 1 anvil
tlsmgr unix - - n 1000? 1 tlsmgr
postlog unix-dgram n - n - 1 postlogd
virtual unix - n n - - virtual
"
        ),
    )
    .unwrap();
    let check = Command::new("postfix")
        .arg("-c")
        .arg(&conf)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "postfix check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("postfix")
        .arg("-c")
        .arg(&conf)
        .arg("start-fg")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.join("postfix.log");
    let postfix = Postfix { conf, log, child };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "postfix did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    postfix
}
