//! The thin layer that runs containers: the app's network namespace and its veth
//! link (`ip`), AppArmor (`apparmor_parser`, where the kernel has it) and runc's
//! create/start/kill/delete/state. Everything it writes is rendered by [`super::spec`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    crate::tool::run(program, args, None)
}

/// The app's network namespace's name.
pub fn netns_name(app: &str) -> String {
    format!("postern-app-{app}")
}

/// The app's network namespace's path, for the spec.
pub fn netns_path(app: &str) -> String {
    format!("/run/netns/{}", netns_name(app))
}

/// The host and app ends of the app's link (interface names are at most 15 bytes).
fn links(index: u32) -> (String, String) {
    (format!("pstn{index}h"), format!("pstn{index}a"))
}

/// Creates the app's namespace and its point-to-point link, if missing: the host end
/// has `gateway`/30, the app's end `address`/30 and no default route, so the app
/// reaches the host (the proxy's requests, our mail relay) and nothing else.
pub fn ensure_network(app: &str, index: u32, address: &str, gateway: &str) -> Result<(), String> {
    let ns = netns_name(app);
    if !Path::new(&netns_path(app)).exists() {
        run("ip", &["netns", "add", &ns])?;
    }
    let (host, inner) = links(index);
    if run("ip", &["link", "show", &host]).is_err() {
        run(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &ns,
            ],
        )?;
        run(
            "ip",
            &["addr", "add", &format!("{gateway}/30"), "dev", &host],
        )?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/30"),
                "dev",
                &inner,
            ],
        )?;
    }
    run("ip", &["link", "set", &host, "up"])?;
    run("ip", &["-n", &ns, "link", "set", &inner, "up"])?;
    run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Removes the app's link and namespace.
pub fn remove_network(app: &str, index: u32) {
    let (host, _) = links(index);
    let _ = run("ip", &["link", "del", &host]);
    let _ = run("ip", &["netns", "del", &netns_name(app)]);
}

/// Whether the kernel enforces AppArmor.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Loads (or replaces) an AppArmor profile from `file`.
pub fn load_apparmor(file: &Path) -> Result<(), String> {
    run("apparmor_parser", &["-r", "-W", &file.to_string_lossy()]).map(|_| ())
}

/// runc, with its state under `root`.
pub struct Runc {
    root: PathBuf,
}

impl Runc {
    /// runc keeping container state in `root`.
    pub fn new(root: PathBuf) -> Runc {
        Runc { root }
    }

    fn runc(&self, args: &[&str]) -> Result<String, String> {
        let root = self.root.to_string_lossy().into_owned();
        let mut all = vec!["--root", root.as_str()];
        all.extend_from_slice(args);
        run("runc", &all)
    }

    /// The container's status (`running`, `stopped`, `created`...), None if runc
    /// does not know it.
    pub fn status(&self, id: &str) -> Option<String> {
        let out = self.runc(&["state", id]).ok()?;
        let state: serde_json::Value = serde_json::from_str(&out).ok()?;
        state["status"].as_str().map(str::to_string)
    }

    /// Creates and starts the container from `bundle`, its output appended to `log`.
    pub fn start(&self, id: &str, bundle: &Path, log: std::fs::File) -> Result<(), String> {
        if self.status(id).is_some() {
            self.remove(id)?;
        }
        let err_file = log.try_clone().map_err(|e| format!("the app's log: {e}"))?;
        let root = self.root.to_string_lossy().into_owned();
        let out = Command::new("runc")
            .args(["--root", &root, "run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_file)
            .status()
            .map_err(|e| format!("cannot run runc: {e}"))?;
        if !out.success() {
            return Err(format!(
                "runc could not start {id} (its words are in the app's app.log)"
            ));
        }
        Ok(())
    }

    /// Stops the container (SIGTERM, SIGKILL after `grace`) and deletes it.
    pub fn remove(&self, id: &str) -> Result<(), String> {
        if self.status(id).as_deref() == Some("running") {
            let _ = self.runc(&["kill", id, "TERM"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.status(id).as_deref() == Some("running") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if self.status(id).as_deref() == Some("running") {
                let _ = self.runc(&["kill", id, "KILL"]);
            }
        }
        if self.status(id).is_some() {
            self.runc(&["delete", "--force", id])?;
        }
        Ok(())
    }
}
