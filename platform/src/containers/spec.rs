//! What a container is, as text: the OCI runtime spec (`config.json`) runc runs an app
//! from, its seccomp filter and its AppArmor profile. No side effects.

use serde_json::{Value, json};

/// What the spec is made from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The app's name (the container's host name).
    pub name: &'a str,
    /// The read-only root filesystem (absolute).
    pub rootfs: &'a str,
    /// The writable data volume on the host (absolute), mounted at `/data`.
    pub data_dir: &'a str,
    /// The program and its arguments.
    pub command: &'a [String],
    /// `KEY=VALUE` environment entries (the app's own, then ours).
    pub env: Vec<String>,
    /// The non-root uid (and gid) it runs as.
    pub uid: u32,
    /// Memory limit, bytes.
    pub memory_bytes: u64,
    /// Most processes and threads.
    pub pids: u32,
    /// The network namespace to join (`/run/netns/NAME`).
    pub netns: &'a str,
    /// The AppArmor profile to confine it with, where the kernel has AppArmor.
    pub apparmor: Option<&'a str>,
}

/// Syscalls the filter refuses with EPERM: those that change the system or escape a
/// container (mounts, kernel modules and kexec, BPF, tracing, keyrings, namespaces,
/// clocks, swap, reboot, raw I/O ports). Everything else is allowed.
pub const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "vhangup",
];

/// The OCI runtime spec.
pub fn config(i: &Inputs<'_>) -> Value {
    let no_caps: Vec<String> = Vec::new();
    let mut process = json!({
        "terminal": false,
        "user": {"uid": i.uid, "gid": i.uid, "additionalGids": []},
        "args": i.command,
        "env": i.env,
        "cwd": "/",
        "capabilities": {
            "bounding": no_caps, "effective": no_caps, "inheritable": no_caps,
            "permitted": no_caps, "ambient": no_caps
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
        "noNewPrivileges": true
    });
    if let Some(profile) = i.apparmor {
        process["apparmorProfile"] = json!(profile);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": i.rootfs, "readonly": true},
        "hostname": i.name,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=65536k"]},
            {"destination": "/data", "type": "bind", "source": i.data_dir,
             "options": ["rbind", "rw", "nosuid", "nodev"]}
        ],
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": i.memory_bytes, "swap": i.memory_bytes},
                "pids": {"limit": i.pids}
            },
            "cgroupsPath": format!("/postern/{}", i.name),
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": i.netns},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/proc/kallsyms", "/sys/firmware",
                "/sys/kernel", "/sys/fs/selinux"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{
                    "names": DENIED_SYSCALLS,
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1
                }]
            }
        }
    })
}

/// The AppArmor profile named `profile` for an app whose root filesystem is
/// `rootfs` and data volume `data_dir`: reads anywhere it can see, writes only to
/// `/data`, `/tmp` and `/dev/shm`; no mounts, no raw sockets, no ptrace, nothing in
/// `/proc/sys` or `/sys`.
pub fn apparmor(profile: &str) -> String {
    format!(
        r#"#include <tunables/global>

profile {profile} flags=(attach_disconnected,mediate_deleted) {{
  #include <abstractions/base>

  network inet stream,
  network inet6 stream,
  network inet dgram,
  network inet6 dgram,
  network unix,
  deny network raw,
  deny network packet,

  file,
  deny /** w,
  /data/** rwlk,
  /data/ rw,
  /tmp/** rwlk,
  /tmp/ rw,
  /dev/shm/** rwlk,
  /dev/null rw,
  /dev/zero rw,
  /dev/urandom r,
  /dev/random r,
  /dev/pts/* rw,

  deny mount,
  deny umount,
  deny pivot_root,
  deny ptrace,
  deny @{{PROC}}/sys/** wklx,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/kcore rwklx,
  deny /sys/** wklx,
  deny capability,
}}
"#
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn inputs() -> Inputs<'static> {
        static COMMAND: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec!["/start".to_string()]);
        Inputs {
            name: "blog",
            rootfs: "/srv/blog/rootfs",
            data_dir: "/var/lib/postern/apps/blog/data",
            command: &COMMAND,
            env: vec![
                "PATH=/bin".into(),
                "POSTERN_SMTP_USER=blog@example.org".into(),
            ],
            uid: 20001,
            memory_bytes: 256 << 20,
            pids: 128,
            netns: "/run/netns/postern-app-blog",
            apparmor: None,
        }
    }

    #[test]
    fn the_spec_confines_the_app() {
        let c = config(&inputs());
        assert_eq!(c["root"]["readonly"], true);
        assert_eq!(c["process"]["user"]["uid"], 20001);
        assert_eq!(c["process"]["noNewPrivileges"], true);
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            assert_eq!(c["process"]["capabilities"][set], json!([]), "{set}");
        }
        assert!(c["process"].get("apparmorProfile").is_none());
        let writable: Vec<&str> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                !m["options"].as_array().unwrap().iter().any(|o| o == "ro") && m["type"] == "bind"
            })
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(writable, ["/data"], "one writable volume");
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 256u64 << 20);
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 128);
        let netns = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .unwrap();
        assert_eq!(netns["path"], "/run/netns/postern-app-blog");
        let denied = &c["linux"]["seccomp"]["syscalls"][0]["names"];
        for call in ["mount", "kexec_load", "bpf", "ptrace", "keyctl"] {
            assert!(
                denied.as_array().unwrap().iter().any(|n| n == call),
                "{call}"
            );
        }
        assert!(
            c["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/proc/kcore")
        );
        assert!(
            c["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/proc/sys")
        );
        let mut with = inputs();
        with.apparmor = Some("postern-app-blog");
        assert_eq!(
            config(&with)["process"]["apparmorProfile"],
            "postern-app-blog"
        );
    }

    #[test]
    fn the_apparmor_profile_names_itself_and_denies_mounts() {
        let p = apparmor("postern-app-blog");
        assert!(p.contains("profile postern-app-blog flags="));
        assert!(p.contains("deny mount,"));
        assert!(p.contains("/data/** rwlk,"));
    }
}
