//! Apps in containers, for real with Debian's runc: a busybox root filesystem runs as
//! an app; from inside it, `/` is read-only, its uid is not 0, `mount` is refused, the
//! syscalls its seccomp allowlist leaves out (io_uring, keyctl, ptrace, namespaces)
//! fail with EPERM where the host lets an unprivileged process make them, and it has
//! no route out; its memory limit is set; it answers only through the proxy on
//! its own subdomain; its AppArmor profile parses; stop and del clean up.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tests::harness::{Setup, ensure_package, ensure_tool};

const START: &str = r#"#!/bin/sh
{ touch /written 2>/dev/null && echo writable || echo read-only; } > /data/root
id -u > /data/uid.tmp
mount -t tmpfs none /mnt > /data/mount.out 2>&1; echo $? > /data/mount.rc
ip route > /data/routes 2>&1
/usr/bin/perl -e "$SYSCALLS" > /data/syscalls 2>&1
mkdir -p /data/www
echo "hello from $POSTERN_APP as $POSTERN_SMTP_USER" > /data/www/index.html
mv /data/uid.tmp /data/uid
exec httpd -f -p 8080 -h /data/www
"#;

/// Syscalls a process without privileges or capabilities may make, each tried once
/// (perl's `syscall`, x86_64 numbers): `ok`, or the errno it failed with.
const SYSCALLS: &str = r#"
sub try { my ($name, $r) = @_; print "$name ", ($r < 0 ? "errno " . ($! + 0) : "ok"), "\n"; }
my $params = "\0" x 120;
try("io_uring_setup", syscall(425, 1, $params));
try("keyctl", syscall(250, 0, -3, 0));
try("ptrace", syscall(101, 0, 0, 0, 0));
my $pid = syscall(56, 0x10000000 | 17, 0, 0, 0, 0);
exit 0 if $pid == 0;
try("clone_newuser", $pid);
try("unshare_newuser", syscall(272, 0x10000000));
"#;

/// Copies `program` and the shared libraries it loads into the root filesystem.
fn copy_with_libraries(program: &str, rootfs: &Path) {
    let out = Command::new("ldd").arg(program).output().unwrap();
    let mut files = vec![program.to_string()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(path.to_string());
        }
    }
    for file in files {
        let to = rootfs.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
}

fn rootfs(dir: &Path) {
    let busybox = ensure_tool("busybox", "busybox-static").unwrap();
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "data", "mnt"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(&busybox, dir.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "touch", "id", "mount", "echo", "ip", "mv", "httpd", "cat", "mkdir",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    copy_with_libraries("/usr/bin/perl", dir);
    std::fs::write(dir.join("start"), START).unwrap();
    std::fs::set_permissions(dir.join("start"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [dir, &dir.join("tmp")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Whatever a failed run leaves behind goes: the app's processes, network namespace,
/// link and cgroups (a passing run leaves nothing: `app del` removes them).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", "postern-app-blog"])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", "postern-app-blog"])
            .status();
        let _ = Command::new("ip").args(["link", "del", "pstn1h"]).status();
        // The helper's bind mount of the app's data volume.
        for line in std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
        {
            if let Some(target) = line.split_whitespace().nth(1)
                && target.starts_with("/run/postern/")
                && target.ends_with("/volumes/blog")
            {
                let _ = Command::new("umount").args(["-l", target]).status();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join("postern/blog"));
            }
        }
    }
}

fn curl_app(setup: &Setup) -> (u32, String) {
    let port = setup.ports.https.port();
    let out = Command::new(ensure_tool("curl", "curl").unwrap())
        .args([
            "-sk",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--resolve",
        ])
        .arg(format!("blog.example.test:{port}:127.0.0.1"))
        .arg(format!("https://blog.example.test:{port}/index.html"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_busybox_app_runs_confined_and_is_reached_only_through_the_proxy() {
    ensure_tool("runc", "runc").unwrap();
    ensure_tool("apparmor_parser", "apparmor").unwrap();
    ensure_package("iproute2").unwrap();
    let _cleanup = Cleanup;
    let setup = Setup::quickstart("admin@example.test", "").unwrap();
    let fs = setup.dir.path().join("rootfs");
    rootfs(&fs);
    let _server = setup.serve().unwrap();
    // The server runs as postern (started as root, as here): the container is run by
    // its privileged helper.
    assert!(
        _server.log().contains("privileges dropped"),
        "{}",
        _server.log()
    );
    let added = setup
        .cli_ok(
            &[
                "app",
                "add",
                "blog",
                "--rootfs",
                fs.to_str().unwrap(),
                "--port",
                "8080",
                "--env",
                &format!("SYSCALLS={SYSCALLS}"),
            ],
            None,
        )
        .unwrap();
    assert!(added.contains("Started"), "{added}");
    assert!(added.contains("Mail relay: blog@example.test"), "{added}");
    let data = setup.data_dir.join("apps/blog/data");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("uid").exists() {
        assert!(
            Instant::now() < deadline,
            "the app did not start: {}",
            std::fs::read_to_string(setup.data_dir.join("apps/blog/app.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = |f: &str| std::fs::read_to_string(data.join(f)).unwrap();
    assert_eq!(read("root").trim(), "read-only");
    let uid: u32 = read("uid").trim().parse().unwrap();
    assert_ne!(uid, 0);
    assert_ne!(read("mount.rc").trim(), "0");
    let mount = read("mount.out");
    assert!(
        mount.contains("ermission denied") || mount.contains("not permitted"),
        "mount said: {mount}"
    );
    // The seccomp filter is an allowlist: syscalls a process with no privileges and
    // no capabilities may make on the host (the same probe as uid 20001 there) fail
    // in the app with the filter's EPERM.
    let host = Command::new(ensure_tool("setpriv", "util-linux").unwrap())
        .args(["--reuid", "20001", "--regid", "20001", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .args(["/usr/bin/perl", "-e", SYSCALLS])
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    let inside = read("syscalls");
    for call in [
        "io_uring_setup",
        "keyctl",
        "ptrace",
        "clone_newuser",
        "unshare_newuser",
    ] {
        assert!(
            host.contains(&format!("{call} ok")),
            "{call} on the host:\n{host}"
        );
        assert!(
            inside.contains(&format!("{call} errno 1\n")),
            "{call} in the app:\n{inside}"
        );
    }
    let routes = read("routes");
    assert!(
        !routes.contains("default"),
        "the app has a way out: {routes}"
    );
    // The memory limit, as the kernel has it (cgroup v1 or v2).
    let limit = [
        "/sys/fs/cgroup/memory/postern/blog/memory.limit_in_bytes",
        "/sys/fs/cgroup/postern/blog/memory.max",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .expect("the app's memory cgroup");
    assert_eq!(limit.trim(), (256u64 << 20).to_string());

    // Through the proxy on its subdomain, and not on any of the host's addresses.
    let (code, body) = curl_app(&setup);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.trim(), "hello from blog as blog@example.test");
    assert!(std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err());
    let list = setup.cli_ok(&["app", "list"], None).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("blog\tblog.example.test\t10.77.0.6:8080\trunning")),
        "{list}"
    );
    let users = setup.cli_ok(&["user", "list"], None).unwrap();
    assert!(users.contains("blog@example.test"), "{users}");

    // Its relay login (handed to it in its environment) sends as the app, and as
    // nobody else.
    let environ = {
        let pid = Command::new("ip")
            .args(["netns", "pids", "postern-app-blog"])
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&pid.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        std::fs::read(format!("/proc/{pid}/environ")).unwrap()
    };
    let env: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    let password = env
        .iter()
        .find_map(|e| e.strip_prefix("POSTERN_SMTP_PASSWORD="))
        .unwrap()
        .to_string();
    assert_eq!(password.len(), 128);
    assert!(
        env.iter()
            .any(|e| e == "POSTERN_SMTP_USER=blog@example.test")
    );
    assert_eq!(
        std::fs::read_to_string(setup.data_dir.join("apps/blog/relay-password")).unwrap(),
        password
    );
    let out = tests::harness::python(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10); s.starttls(context=ctx)
s.login("blog@example.test", sys.argv[2])
for sender in ["blog@example.test", "admin@example.test"]:
    code, _ = s.mail(sender)
    print(sender, code)
    if code == 250:
        s.rcpt("admin@example.test")
        print("data", s.data(("From: %s\r\nSubject: from the app\r\n\r\nhi\r\n" % sender).encode())[0])
    else:
        s.rset()
"#,
        &[&setup.ports.submission.port().to_string(), &password],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("blog@example.test 250\ndata 250\nadmin@example.test 550"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Its AppArmor profile is valid (this kernel cannot enforce it).
    let profile = setup.data_dir.join("apps/blog/apparmor.profile");
    let parsed = Command::new("apparmor_parser")
        .args(["-Q", "-K", "-S"])
        .arg(&profile)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "apparmor_parser: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );

    // Stopped: the proxy has nothing to reach; started again: it answers.
    setup.cli_ok(&["app", "stop", "blog"], None).unwrap();
    assert_eq!(curl_app(&setup).0, 502);
    setup.cli_ok(&["app", "start", "blog"], None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl_app(&setup).0 != 200 {
        assert!(Instant::now() < deadline, "the app did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Deleted through the admin API (the CLI's `app del` takes the same path):
    // container, network and relay account gone, its data kept.
    let curl = ensure_tool("curl", "curl").unwrap();
    let port = setup.ports.https.port();
    let api = |method: &str, path: &str, args: &[&str]| -> String {
        let out = Command::new(&curl)
            .args([
                "-sS",
                "-k",
                "--max-time",
                "30",
                "-X",
                method,
                "-w",
                "\n%{http_code}",
            ])
            .args(["--resolve", &format!("my.example.test:{port}:127.0.0.1")])
            .args(args)
            .arg(format!("https://my.example.test:{port}/api/v1{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let login = api(
        "POST",
        "/login",
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!(
                r#"{{"email": "admin@example.test", "password": "{}"}}"#,
                setup.password
            ),
        ],
    );
    let token: serde_json::Value =
        serde_json::from_str(login.rsplit_once('\n').unwrap().0).unwrap();
    let bearer = format!("Authorization: Bearer {}", token["token"].as_str().unwrap());
    let deleted = api("DELETE", "/apps/blog", &["-H", &bearer]);
    assert!(deleted.ends_with("204"), "{deleted}");
    let log = setup.cli_ok(&["log"], None).unwrap();
    assert!(log.contains("app-del"), "{log}");
    assert!(!Path::new("/run/netns/postern-app-blog").exists());
    assert!(
        !setup
            .cli_ok(&["user", "list"], None)
            .unwrap()
            .contains("blog@example.test")
    );
    assert!(data.join("uid").exists());
}
