//! What a container is, as text: the OCI runtime spec (`config.json`) runc runs an app
//! from, its seccomp filter (an allowlist) and its AppArmor profile. No side effects.

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

/// Syscalls the filter allows (its default action refuses every other one with
/// EPERM): the set a typical web app needs, after the default profiles of Docker and
/// Podman, without those that change the system or escape a container. Not allowed,
/// among others: `mount`, `umount2`, `pivot_root`, `unshare`, `setns` (namespaces),
/// `io_uring_setup`/`_enter`/`_register`, `keyctl`/`add_key`/`request_key`, `bpf`,
/// `ptrace`, `process_vm_readv`/`writev`, `perf_event_open`, `userfaultfd`, kernel
/// modules, `kexec_*`, `reboot`, `swapon`, `acct`, clocks, `syslog`, `open_by_handle_at`.
/// `clone` is allowed only without namespace flags (below), `clone3` (whose flags a
/// filter cannot see) answers ENOSYS so libc falls back to `clone`.
#[rustfmt::skip]
pub const ALLOWED_SYSCALLS: &[&str] = &[
    "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve",
    "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
    "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futex", "futex_time64", "futex_waitv", "futimesat", "get_robust_list",
    "get_thread_area", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage",
    "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32",
    "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "ipc", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "membarrier", "memfd_create", "mincore", "mkdir", "mkdirat", "mknod", "mknodat",
    "mlock", "mlock2", "mlockall", "mmap", "mmap2", "modify_ldt", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "poll", "ppoll", "ppoll_time64", "prctl",
    "pread64", "preadv", "preadv2", "prlimit64", "pselect6", "pselect6_time64", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv",
    "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "set_robust_list", "set_thread_area", "set_tid_address",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socket", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid",
    "write", "writev",
];

/// The errno of a refused syscall: EPERM.
pub const REFUSED_ERRNO: u32 = 1;

/// The `clone` flags that create namespaces (CLONE_NEWNS, CLONE_NEWCGROUP,
/// CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET).
const NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The seccomp filter: an allowlist, everything else EPERM.
fn seccomp() -> Value {
    let personality = |value: u64| {
        json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]})
    };
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": REFUSED_ERRNO,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ALLOWED_SYSCALLS, "action": "SCMP_ACT_ALLOW"},
            // clone(2) without namespace flags: threads and processes, not namespaces.
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            // ENOSYS, not EPERM: glibc then falls back to clone(2), which is checked.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            personality(0),
            personality(8),
            personality(0x20000),
            personality(0x20008),
            personality(0xffff_ffff)
        ]
    })
}

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
            "seccomp": seccomp()
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
        let seccomp = &c["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(seccomp["defaultErrnoRet"], 1);
        let allowed: Vec<&str> = seccomp["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        for call in [
            "read", "write", "openat", "execve", "socket", "accept4", "futex", "mmap",
        ] {
            assert!(allowed.contains(&call), "{call}");
        }
        for call in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "keyctl",
            "add_key",
            "bpf",
            "ptrace",
            "kexec_load",
            "init_module",
            "perf_event_open",
            "userfaultfd",
            "process_vm_readv",
            "pivot_root",
            "open_by_handle_at",
        ] {
            assert!(
                !allowed.contains(&call),
                "{call} is allowed without condition"
            );
        }
        let clone = &seccomp["syscalls"][1];
        assert_eq!(clone["names"], json!(["clone"]));
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
        assert_eq!(seccomp["syscalls"][2]["names"], json!(["clone3"]));
        assert_eq!(seccomp["syscalls"][2]["errnoRet"], 38);
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
