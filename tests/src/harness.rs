//! Runs the real `postern` binary: built once with `$CARGO build --bin postern`,
//! started on free loopback ports with a temporary data directory and a configuration
//! written here, driven over sockets and through its CLI.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `postern` binary, built on first use.
pub fn postern_bin() -> Result<&'static Path> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| anyhow::anyhow!("building postern failed: {e}"))
}

fn build() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            "platform",
            "--bin",
            "postern",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build --bin postern failed");
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "postern"
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo build did not report the postern executable")
}

/// A free TCP port on 127.0.0.1 for a listener of ours. Ports come from a counter
/// below the kernel's ephemeral range (32768+), so neither another test's port nor an
/// outgoing connection's source port can take one between this check and the bind;
/// each test binary starts at its own offset.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 120) as u16 * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..1000 {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        if port >= 32_000 {
            NEXT.store(20_000, Ordering::SeqCst);
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port found in 20000-32000")
}

/// Runs `postern ARGS` with `stdin` and returns its output.
pub fn postern(args: &[&str], stdin: Option<&str>) -> Result<Output> {
    use std::io::Write;
    let mut child = Command::new(postern_bin()?)
        .args(args)
        .env_remove("POSTERN_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning postern")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Loopback addresses of one server's listeners.
#[derive(Debug, Clone)]
pub struct Ports {
    /// SMTP MX.
    pub smtp: SocketAddr,
    /// Submission, STARTTLS.
    pub submission: SocketAddr,
    /// Submission, implicit TLS.
    pub submissions: SocketAddr,
    /// IMAPS.
    pub imaps: SocketAddr,
    /// ManageSieve.
    pub managesieve: SocketAddr,
    /// Plain HTTP (redirects).
    pub http: SocketAddr,
    /// HTTPS.
    pub https: SocketAddr,
}

impl Ports {
    fn new() -> Result<Ports> {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Ok(Ports {
            smtp: a(free_port()?),
            submission: a(free_port()?),
            submissions: a(free_port()?),
            imaps: a(free_port()?),
            managesieve: a(free_port()?),
            http: a(free_port()?),
            https: a(free_port()?),
        })
    }
}

/// A data directory made by `postern quickstart`, with a loopback configuration.
#[derive(Debug)]
pub struct Setup {
    /// Holds everything; removed on drop.
    pub dir: tempfile::TempDir,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration file the tests use.
    pub config: PathBuf,
    /// The listeners.
    pub ports: Ports,
    /// The admin's address.
    pub admin: String,
    /// The admin's generated password.
    pub password: String,
    /// What quickstart printed.
    pub quickstart_output: String,
    /// The loopback DNS server the configuration points at (standard test zones),
    /// unless a test brings its own `[dns]`.
    pub dns: crate::dns::TestDns,
}

impl Setup {
    /// Runs quickstart for `admin` (domain example.test by convention), then writes a
    /// configuration on loopback ports with `extra` TOML appended to it.
    pub fn quickstart(admin: &str, extra: &str) -> Result<Setup> {
        let dir = tempfile::tempdir()?;
        // `serve`, started as root by the tests, runs as the `postern` user: it must
        // be able to reach the data directory inside (and files tests put beside it).
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )?;
        let data_dir = dir.path().join("data");
        let hostname = hostname_for(admin);
        let out = postern(
            &[
                "quickstart",
                admin,
                "--data-dir",
                &data_dir.to_string_lossy(),
                "--hostname",
                &hostname,
            ],
            None,
        )?;
        if !out.status.success() {
            bail!(
                "quickstart failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8(out.stdout)?;
        let password = text
            .lines()
            .find_map(|l| l.strip_prefix("Password: "))
            .context("quickstart printed no password")?
            .to_string();
        let ports = Ports::new()?;
        let config = dir.path().join("test.toml");
        let mut setup = Setup {
            dir,
            data_dir,
            config,
            ports,
            admin: admin.to_string(),
            password,
            quickstart_output: text,
            dns: crate::dns::TestDns::start(&crate::dns::standard_zones())?,
        };
        setup.write_config(extra)?;
        Ok(setup)
    }

    /// (Re)writes the test configuration with `extra` appended.
    pub fn write_config(&mut self, extra: &str) -> Result<()> {
        let p = &self.ports;
        let text = format!(
            r#"hostname = "{hostname}"
data_dir = "{data}"

[server]
shutdown_grace_seconds = 2

[smtp]
listen = ["{smtp}"]

[submission]
listen = ["{submission}"]
listen_tls = ["{submissions}"]

[imap]
listen_tls = ["{imaps}"]

[managesieve]
listen = ["{managesieve}"]

[http]
listen = ["{http}"]

[https]
listen = ["{https}"]

{dns}
{extra}
"#,
            hostname = hostname_for(&self.admin),
            data = self.data_dir.display(),
            smtp = p.smtp,
            submission = p.submission,
            submissions = p.submissions,
            imaps = p.imaps,
            managesieve = p.managesieve,
            http = p.http,
            https = p.https,
            // Never the host's resolver (it is off this machine): our loopback test
            // DNS, unless the test brings its own.
            dns = if extra.contains("[dns]") {
                String::new()
            } else {
                format!(
                    "[dns]\nnameservers = [\"{}\"]\ntimeout_seconds = 1\n",
                    self.dns.addr()
                )
            },
        );
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    /// Runs `postern --config <test config> ARGS`.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let config = self.config.to_string_lossy().into_owned();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        postern(&all, stdin)
    }

    /// Like [`Setup::cli`], failing unless the command succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let out = self.cli(args, stdin)?;
        if !out.status.success() {
            bail!(
                "postern {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Adds the account `email` with `password`.
    pub fn add_user(&self, email: &str, password: &str) -> Result<()> {
        self.cli_ok(
            &["user", "add", email, "--password-stdin"],
            Some(&format!("{password}\n")),
        )?;
        Ok(())
    }

    /// How many messages `postern mail list` shows in `email`'s `mailbox`.
    pub fn mail_count(&self, email: &str, mailbox: &str) -> Result<usize> {
        Ok(self
            .cli_ok(&["mail", "list", email, "--mailbox", mailbox], None)?
            .lines()
            .filter(|l| {
                l.trim_start()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
            .count())
    }

    /// Starts `postern serve` and waits until it is running.
    pub fn serve(&self) -> Result<Server> {
        Server::start(&self.config)
    }
}

/// The test host name of the server of `admin`'s domain: `mail.<domain>`.
pub fn hostname_for(admin: &str) -> String {
    let domain = admin.rsplit_once('@').map_or("example.test", |(_, d)| d);
    format!("mail.{domain}")
}

/// A running `postern serve`.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `postern serve --config CONFIG`; returns once it logs that it runs.
    pub fn start(config: &Path) -> Result<Server> {
        Self::start_with(config, &[])
    }

    /// Like [`Server::start`], the command run through `prefix` (e.g. `ip netns exec
    /// NS`, which execs it: the process is still postern's).
    pub fn start_with(config: &Path, prefix: &[&str]) -> Result<Server> {
        let bin = postern_bin()?.to_string_lossy().into_owned();
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.push(&bin);
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .args(["serve", "--config", &config.to_string_lossy()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning postern serve")?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("no stderr")?;
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Server {
            child: Some(child),
            log,
        };
        server.wait_for_log("postern is running", Duration::from_secs(30))?;
        Ok(server)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the log contains `needle`; fails if the server exits first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "postern serve exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "postern serve did not log {needle:?} within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid().context("server already reaped")?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit status.
    pub fn stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        self.wait(timeout)
    }

    /// Waits for the server to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("server already reaped")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "postern serve did not exit within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Makes sure `program` is on PATH, installing Debian `package` if it is missing.
/// Fails loudly (never skips) when that is not possible.
pub fn ensure_tool(program: &str, package: &str) -> Result<PathBuf> {
    if let Some(p) = which(program) {
        return Ok(p);
    }
    apt_install(package).with_context(|| format!("{program} is missing"))?;
    which(program).with_context(|| format!("{package} installed but {program} is not on PATH"))
}

/// Makes sure Debian `package` is installed (for libraries a tool needs, such as
/// swaks' TLS modules), installing it if not. Fails loudly when that is not possible.
pub fn ensure_package(package: &str) -> Result<()> {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false);
    if installed {
        Ok(())
    } else {
        apt_install(package)
    }
}

/// Makes sure Postfix is installed, preseeding debconf so the install asks nothing
/// (PEERS.md §1: "Local only").
pub fn ensure_postfix() -> Result<PathBuf> {
    if let Some(p) = which("postfix") {
        return Ok(p);
    }
    use std::io::Write;
    let mut preseed = Command::new("debconf-set-selections")
        .stdin(Stdio::piped())
        .spawn()?;
    preseed
        .stdin
        .take()
        .context("debconf-set-selections stdin")?
        .write_all(b"postfix postfix/main_mailer_type select Local only\npostfix postfix/mailname string postern.test\n")?;
    if !preseed.wait()?.success() {
        bail!("debconf-set-selections failed");
    }
    ensure_tool("postfix", "postfix")
}

/// `apt-get install` one package (refreshing the package lists once if needed), one
/// install at a time.
fn apt_install(package: &str) -> Result<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let install = || apt(&["install", "-y", "--no-install-recommends", package]);
    if matches!(install(), Ok(s) if s.success()) {
        return Ok(());
    }
    let updated = apt(&["update"]);
    if !matches!(updated, Ok(s) if s.success()) {
        bail!("`apt-get update` failed: {updated:?}");
    }
    let status = install();
    if !matches!(status, Ok(s) if s.success()) {
        bail!("installing {package} failed: {status:?}");
    }
    Ok(())
}

/// `program`'s path on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs `python3 -c SCRIPT ARGS...` and returns its output.
pub fn python(script: &str, args: &[&str]) -> Result<Output> {
    let python = ensure_tool("python3", "python3")?;
    Ok(Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}
