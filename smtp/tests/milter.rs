//! The milter client from the outside: first against a fake milter that plays every
//! reply the protocol has (the mfdef.h letters and bits are written out here, not taken
//! from the code under test), then against Debian's spamd + spamass-milter run as
//! PEERS.md §3 says.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smtp::inbound::milter::{
    Action, Envelope, Error, HeaderChange, MilterConfig, Verdict, apply, check,
};
use tests::harness::{ensure_package, ensure_tool, free_port};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// A fake milter.

type Seen = Vec<(u8, Vec<u8>)>;

fn packet(command: u8, data: &[u8]) -> Vec<u8> {
    let mut p = u32::try_from(data.len() + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    p.push(command);
    p.extend_from_slice(data);
    p
}

fn cstrs(parts: &[&str]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| [p.as_bytes(), b"\0"].concat())
        .collect()
}

/// OPTNEG reply: version 6, actions, protocol steps, v6 macro lists.
fn optneg(actions: u32, protocol: u32, macros: &[(u32, &str)]) -> Vec<u8> {
    let mut data: Vec<u8> = [6, actions, protocol]
        .iter()
        .flat_map(|w: &u32| w.to_be_bytes())
        .collect();
    for (stage, names) in macros {
        data.extend_from_slice(&stage.to_be_bytes());
        data.extend(cstrs(&[names]));
    }
    data
}

/// An answer with spamass-milter's actions (ADDHDRS|CHGBODY|CHGHDRS), every stage wanted.
fn plain() -> Vec<u8> {
    optneg(0x13, 0, &[])
}

/// A header change with an index (CHGHEADER 'm', INSHEADER 'i').
fn indexed(reply: u8, index: u32, name: &str, value: &str) -> Vec<u8> {
    packet(
        reply,
        &[index.to_be_bytes().to_vec(), cstrs(&[name, value])].concat(),
    )
}

fn cont() -> Vec<u8> {
    packet(b'c', &[])
}

/// What the fake does on a stage command.
enum Answer {
    Say(Vec<u8>),
    /// Each packet after a pause (milliseconds).
    Slowly(Vec<(u64, Vec<u8>)>),
    Silent,
    Close,
    /// Say this, then hang up.
    Last(Vec<u8>),
}

/// Speaks the milter side: answers OPTNEG with `optneg` (empty: hangs up), stays quiet
/// after MACRO 'D' and ABORT 'A', stops at QUIT 'Q', answers the rest with `answer`;
/// returns every packet received.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    optneg: Vec<u8>,
    mut answer: impl FnMut(u8, &[u8]) -> Answer,
) -> Seen {
    let mut seen = Seen::new();
    loop {
        let Ok(len) = s.read_u32().await else {
            return seen;
        };
        let mut buf = vec![0; len as usize];
        if s.read_exact(&mut buf).await.is_err() {
            return seen;
        }
        let (command, data) = (buf[0], buf[1..].to_vec());
        seen.push((command, data.clone()));
        let reply = match command {
            b'O' if optneg.is_empty() => Answer::Close,
            b'O' => Answer::Say(packet(b'O', &optneg)),
            b'D' | b'A' => Answer::Silent,
            b'Q' => return seen,
            _ => answer(command, &data),
        };
        let packets = match reply {
            Answer::Say(bytes) => vec![(0, bytes)],
            Answer::Slowly(packets) => packets,
            Answer::Silent => vec![],
            Answer::Close => return seen,
            Answer::Last(bytes) => {
                let _ = s.write_all(&bytes).await;
                return seen;
            }
        };
        for (pause, bytes) in packets {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if s.write_all(&bytes).await.is_err() {
                return seen;
            }
        }
    }
}

const MESSAGE: &[u8] = b"Subject: hello\r\nX-Fold: one\r\n two\r\n\r\nbody\r\n";

fn envelope(rcpts: &[String]) -> Envelope<'_> {
    Envelope {
        our_hostname: "mx.example.test",
        client_ip: "192.0.2.1".parse().unwrap(),
        client_port: 4000,
        client_name: "[192.0.2.1]",
        helo: "client.test",
        mail_from: "a@remote.test",
        rcpt_to: rcpts,
        queue_id: "Q1",
        tls_version: None,
    }
}

/// One check against a fake on 127.0.0.1: the result, the commands the fake received
/// as letters, and the packets.
async fn run(
    optneg: Vec<u8>,
    timeout_ms: u64,
    message: &[u8],
    answer: impl FnMut(u8, &[u8]) -> Answer + Send + 'static,
) -> (Result<Verdict, Error>, String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let fake: JoinHandle<Seen> = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, optneg, answer).await
    });
    let config = MilterConfig {
        address,
        timeout: Duration::from_millis(timeout_ms),
    };
    let rcpts = vec!["b@example.test".to_string(), "c@example.test".to_string()];
    let result = check(&config, &envelope(&rcpts), message).await;
    let seen = fake.await.unwrap();
    let letters = seen.iter().map(|(c, _)| char::from(*c)).collect();
    (result, letters, seen)
}

/// Answers `command` once with `reply`, everything else with CONTINUE.
fn on(command: u8, reply: Vec<u8>) -> impl FnMut(u8, &[u8]) -> Answer + Send + 'static {
    let mut reply = Some(reply);
    move |c, _| {
        Answer::Say(
            c.eq(&command)
                .then(|| reply.take())
                .flatten()
                .unwrap_or_else(cont),
        )
    }
}

fn data_of(seen: &Seen, command: u8, n: usize) -> Vec<u8> {
    seen.iter()
        .filter(|(c, _)| *c == command)
        .nth(n)
        .unwrap()
        .1
        .clone()
}

#[tokio::test]
async fn conversation_in_protocol_order_with_default_macros() {
    let eob = [
        packet(b'h', &cstrs(&["X-Spam-Status", "No, score=0.1"])),
        cont(),
    ]
    .concat();
    let (result, letters, seen) = run(plain(), 2000, MESSAGE, on(b'E', eob)).await;
    let verdict = result.unwrap();
    assert_eq!(verdict.action, Action::Accept);
    assert_eq!(verdict.header_changes.len(), 1);
    assert_eq!(letters, "ODCDHDMDRDRDTLLDNBDEQ");
    assert_eq!(
        &seen[0].1,
        &[0, 0, 0, 6, 0, 0, 1, 0x13, 0, 0x1f, 0xf7, 0xff]
    );
    assert_eq!(
        data_of(&seen, b'C', 0),
        b"[192.0.2.1]\x004\x0f\xa0192.0.2.1\0"
    );
    assert_eq!(data_of(&seen, b'H', 0), b"client.test\0");
    assert_eq!(data_of(&seen, b'M', 0), b"<a@remote.test>\0");
    assert_eq!(data_of(&seen, b'R', 1), b"<c@example.test>\0");
    assert_eq!(data_of(&seen, b'L', 0), cstrs(&["Subject", "hello"]));
    assert_eq!(data_of(&seen, b'L', 1), cstrs(&["X-Fold", "one\n two"]));
    assert_eq!(data_of(&seen, b'B', 0), b"body\r\n");
    let connect = String::from_utf8(data_of(&seen, b'D', 0)).unwrap();
    assert!(connect.starts_with('C'), "{connect:?}");
    for expected in [
        "j\0mx.example.test\0",
        "_\0[192.0.2.1]\0",
        "{client_addr}\x00192.0.2.1\0",
        "{client_port}\x004000\0",
        "{daemon_name}\0postern\0",
    ] {
        assert!(connect.contains(expected), "{connect:?}");
    }
    assert_eq!(
        data_of(&seen, b'D', 2),
        cstrs(&["Mi", "Q1", "r", "ESMTP", "{mail_addr}", "a@remote.test"])
    );
    assert_eq!(
        data_of(&seen, b'D', 3),
        cstrs(&["R{rcpt_addr}", "b@example.test"])
    );
    assert_eq!(data_of(&seen, b'D', 7), cstrs(&["Ei", "Q1"]));
    let all: Vec<u8> = seen.iter().flat_map(|(_, d)| d.clone()).collect();
    assert!(
        !all.windows(6).any(|w| w == b"{auth_"),
        "no auth macros unauthenticated"
    );
}

#[tokio::test]
async fn macro_lists_replace_the_defaults() {
    let lists = optneg(0x13, 0, &[(0, "j {client_addr} {nonexistent}"), (3, "")]);
    let (result, letters, seen) = run(lists, 2000, MESSAGE, |_, _| Answer::Say(cont())).await;
    assert_eq!(result.unwrap().action, Action::Accept);
    assert_eq!(
        letters, "ODCDHDMRRDTLLDNBDEQ",
        "an empty list: no macros before RCPT"
    );
    assert_eq!(
        seen[1].1,
        cstrs(&["Cj", "mx.example.test", "{client_addr}", "192.0.2.1"])
    );
    assert_eq!(
        seen[3].1,
        cstrs(&["Hs", "client.test"]),
        "no list for HELO: defaults"
    );
}

#[tokio::test]
async fn declined_stages_and_unanswered_replies() {
    // NOCONNECT, NOHELO, NR_MAIL, NR_RCPT, NODATA, NR_HDR, NOEOH, NR_BODY, HDR_LEADSPC.
    let protocol = 0x01 | 0x02 | 0x4000 | 0x8000 | 0x200 | 0x80 | 0x40 | 0x80000 | 0x100000;
    // Silent where no reply is due: waiting for one would time out.
    let answer = |c: u8, _: &[u8]| {
        if c == b'E' {
            Answer::Say(cont())
        } else {
            Answer::Silent
        }
    };
    let (result, letters, seen) = run(optneg(0x13, protocol, &[]), 300, MESSAGE, answer).await;
    assert_eq!(result.unwrap().action, Action::Accept);
    assert_eq!(letters, "ODMDRDRLLBDEQ");
    assert_eq!(
        data_of(&seen, b'L', 0),
        cstrs(&["Subject", " hello"]),
        "HDR_LEADSPC"
    );
}

#[tokio::test]
async fn final_replies_before_end_of_body() {
    let rejected = run(plain(), 2000, MESSAGE, on(b'M', packet(b'r', &[]))).await;
    assert_eq!(
        rejected.0.unwrap().action,
        Action::Reject {
            code: 550,
            enhanced: "5.7.1".into(),
            text: "Command rejected".into()
        }
    );
    assert_eq!(
        rejected.1, "ODCDHDMAQ",
        "stopped at MAIL, then ABORT and QUIT"
    );

    let tempfail = run(plain(), 2000, MESSAGE, on(b'T', packet(b't', &[]))).await;
    assert_eq!(
        tempfail.0.unwrap().action,
        Action::TempFail {
            code: 451,
            enhanced: "4.7.1".into(),
            text: "Try again later".into()
        }
    );

    let accepted = run(plain(), 2000, MESSAGE, on(b'R', packet(b'a', &[]))).await;
    let verdict = accepted.0.unwrap();
    assert_eq!(
        (verdict.action, verdict.header_changes),
        (Action::Accept, vec![])
    );
    assert_eq!(
        accepted.1, "ODCDHDMDRAQ",
        "ACCEPT at the first RCPT stops early"
    );

    let code = packet(b'y', b"554 5.7.0 Go away\0");
    let replied = run(plain(), 2000, MESSAGE, on(b'N', code)).await;
    assert_eq!(
        replied.0.unwrap().action,
        Action::Reject {
            code: 554,
            enhanced: "5.7.0".into(),
            text: "Go away".into()
        }
    );
    let code = packet(b'y', b"421 4.3.2 Busy\0");
    let replied = run(plain(), 2000, MESSAGE, on(b'H', code)).await;
    assert!(matches!(
        replied.0.unwrap().action,
        Action::TempFail { code: 421, .. }
    ));

    let discarded = run(plain(), 2000, MESSAGE, on(b'B', packet(b'd', &[]))).await;
    assert_eq!(discarded.0.unwrap().action, Action::Discard);

    let connect = run(plain(), 2000, MESSAGE, on(b'C', packet(b'a', &[]))).await;
    assert_eq!(connect.0.unwrap().action, Action::Accept);
    assert_eq!(connect.1, "ODCQ", "no ABORT outside a message");
}

#[tokio::test]
async fn end_of_body_modifications() {
    let eob = [
        packet(b'p', &[]),
        packet(b'h', &cstrs(&["X-Spam-Flag", "YES"])),
        indexed(b'm', 1, "Subject", "[SPAM] hello"),
        indexed(b'i', 0, "X-First", "1"),
        indexed(b'm', 1, "X-Fold", ""),
        packet(b'+', b"<spam@example.test>\0"),
        packet(b'q', b"why\0"),
        packet(b'b', b"wrapped body\r\n"),
        indexed(b'm', 1, "Content-Type", "multipart/mixed"),
        packet(b'c', &[]),
    ]
    .concat();
    let (result, _, _) = run(plain(), 2000, MESSAGE, on(b'E', eob)).await;
    let verdict = result.unwrap();
    assert_eq!(verdict.action, Action::Accept);
    assert_eq!(
        verdict.header_changes,
        [
            HeaderChange::Add {
                name: "X-Spam-Flag".into(),
                value: "YES".into()
            },
            HeaderChange::Change {
                index: 1,
                name: "Subject".into(),
                value: "[SPAM] hello".into()
            },
            HeaderChange::Insert {
                index: 0,
                name: "X-First".into(),
                value: "1".into()
            },
            HeaderChange::Change {
                index: 1,
                name: "X-Fold".into(),
                value: String::new()
            },
        ],
        "ADDRCPT, QUARANTINE and the body replacement (with its Content-Type) are ignored"
    );
    assert_eq!(
        apply(MESSAGE, &verdict.header_changes),
        b"X-First: 1\r\nSubject: [SPAM] hello\r\nX-Spam-Flag: YES\r\n\r\nbody\r\n"
    );
}

#[tokio::test]
async fn progress_restarts_the_timeout() {
    let p = || packet(b'p', &[]);
    let mut slow = Some(vec![(200, p()), (200, p()), (200, p()), (200, cont())]);
    let answer = move |c: u8, _: &[u8]| match c.eq(&b'E').then(|| slow.take()).flatten() {
        Some(packets) => Answer::Slowly(packets),
        None => Answer::Say(cont()),
    };
    let start = Instant::now();
    let (result, _, _) = run(plain(), 300, MESSAGE, answer).await;
    assert_eq!(result.unwrap().action, Action::Accept);
    assert!(start.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn skip_ends_the_body() {
    let chunk = 65535;
    let message = [b"Subject: big\r\n\r\n".to_vec(), vec![b'x'; 3 * chunk + 10]].concat();
    let skip = optneg(0x13, 0x400, &[]);
    let (result, letters, seen) = run(skip, 2000, &message, on(b'B', packet(b's', &[]))).await;
    assert_eq!(result.unwrap().action, Action::Accept);
    assert!(letters.ends_with("NBDEQ"), "{letters}");
    assert_eq!(data_of(&seen, b'B', 0).len(), chunk);
    let (_, letters, seen) = run(plain(), 2000, &message, |_, _| Answer::Say(cont())).await;
    assert!(letters.ends_with("NBBBBDEQ"), "{letters}");
    assert_eq!(data_of(&seen, b'B', 3).len(), 10);
}

#[tokio::test]
async fn failures() {
    let start = Instant::now();
    let silent = |c: u8, _: &[u8]| {
        if c == b'H' {
            Answer::Silent
        } else {
            Answer::Say(cont())
        }
    };
    let (result, _, _) = run(plain(), 300, MESSAGE, silent).await;
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    let close = |c: u8, _: &[u8]| {
        if c == b'R' {
            Answer::Close
        } else {
            Answer::Say(cont())
        }
    };
    let (result, _, _) = run(plain(), 2000, MESSAGE, close).await;
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");

    for len in [u32::MAX, (64 << 20) + 1] {
        let huge = [len.to_be_bytes().as_slice(), b"c"].concat();
        let (result, _, _) = run(plain(), 2000, MESSAGE, on(b'H', huge)).await;
        assert!(
            matches!(result, Err(Error::TooLarge(l)) if l == len),
            "{result:?}"
        );
    }
    // Within the limit but never sent: nothing is allocated up front, the hang-up shows.
    let (result, _, _) = run(plain(), 2000, MESSAGE, |c, _| match c {
        b'H' => Answer::Last([(60u32 << 20).to_be_bytes().as_slice(), b"c"].concat()),
        _ => Answer::Say(cont()),
    })
    .await;
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");

    let (result, _, _) = run(plain(), 2000, MESSAGE, on(b'H', packet(b'z', &[]))).await;
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
    let early_change = indexed(b'm', 1, "Subject", "x");
    let (result, _, _) = run(plain(), 2000, MESSAGE, on(b'M', early_change)).await;
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
    let (result, _, _) = run(plain(), 2000, MESSAGE, on(b'H', vec![0, 0, 0, 0])).await;
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");

    let (result, letters, _) = run(Vec::new(), 2000, MESSAGE, |_, _| Answer::Say(cont())).await;
    assert!(
        matches!(&result, Err(Error::Protocol(m)) if m.contains("option negotiation")),
        "{result:?}"
    );
    assert_eq!(letters, "O");

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let config = MilterConfig {
        address,
        timeout: Duration::from_millis(300),
    };
    let result = check(&config, &envelope(&[]), MESSAGE).await;
    assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");
}

#[tokio::test]
async fn unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("milter.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, plain(), |_, _| Answer::Say(cont())).await
    });
    let config = MilterConfig {
        address: format!("unix:{}", path.display()),
        timeout: Duration::from_secs(2),
    };
    let verdict = check(&config, &envelope(&[]), MESSAGE).await.unwrap();
    assert_eq!(verdict.action, Action::Accept);
    assert!(fake.await.unwrap().len() > 10);
}

// ---------------------------------------------------------------------------------------
// Debian's spamd + spamass-milter (PEERS.md §3).

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A daemon in the foreground, stopped with SIGTERM (SIGKILL would orphan spamd's
/// children) to the pid in its pidfile, then reaped.
struct Daemon {
    name: &'static str,
    child: Child,
    pidfile: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, dir: &Path, command: &mut Command) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            name,
            child,
            pidfile: dir.join(format!("{name}.pid")),
            log,
        }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
            panic!("{} exited ({status}): {err}", self.name);
        }
    }
}

impl Daemon {
    /// SIGTERM without waiting (spamass-milter takes ~3 s to exit: stop them together).
    fn terminate(&self) {
        let pid = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .unwrap_or(self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} ignored SIGTERM for 15 s: SIGKILL", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_spamd(dir: &Path) -> (Daemon, u16) {
    let port = free_port().unwrap();
    let mut spamd = Daemon::spawn(
        "spamd",
        dir,
        Command::new("spamd")
            .arg("-L")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .args(["-u", "debian-spamd", "--syslog=stderr", "--max-children=2"])
            .arg(format!("--pidfile={}", dir.join("spamd.pid").display())),
    );
    // Ready when `spamc -K` answers "SPAMD/1.5 0" (PEERS.md §3); it is slow to start.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new("spamc")
            .args(["-d", "127.0.0.1", "-p", &port.to_string(), "-K"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return (spamd, port);
        }
        spamd.assert_running();
        assert!(
            Instant::now() < deadline,
            "spamd did not answer spamc -K within 60 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// spamass-milter on a free port; arguments after `--` go to spamc.
fn start_milter(dir: &Path, name: &'static str, spamd_port: u16, extra: &[&str]) -> (Daemon, u16) {
    let port = free_port().unwrap();
    let mut milter = Daemon::spawn(
        name,
        dir,
        Command::new("spamass-milter")
            .arg("-p")
            .arg(format!("inet:{port}@127.0.0.1"))
            .arg("-P")
            .arg(dir.join(format!("{name}.pid")))
            .args(extra)
            .args(["--", "-d", "127.0.0.1", "-p", &spamd_port.to_string()]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        milter.assert_running();
        assert!(
            Instant::now() < deadline,
            "spamass-milter did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (milter, port)
}

/// The milter's OPTNEG answer to an offer: (actions, protocol, rest), or None if it hung up.
fn probe_optneg(port: u16, actions: u32, protocol: u32) -> Option<(u32, u32, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let offer: Vec<u8> = [6, actions, protocol]
        .iter()
        .flat_map(|w: &u32| w.to_be_bytes())
        .collect();
    s.write_all(&packet(b'O', &offer)).unwrap();
    let mut len = [0; 4];
    s.read_exact(&mut len).ok()?;
    let mut reply = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], b'O');
    let word = |i: usize| u32::from_be_bytes(reply[i..i + 4].try_into().unwrap());
    Some((word(5), word(9), reply[13..].to_vec()))
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    let date = Command::new("date").arg("-R").output().unwrap().stdout;
    let date = String::from_utf8(date).unwrap();
    format!(
        "From: Alice Example <alice@example.test>\r\nTo: Bob <bob@postern.test>\r\n\
         Subject: {subject}\r\nDate: {}\r\nMessage-ID: <{}.milter@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n",
        date.trim(),
        std::process::id()
    )
    .into_bytes()
}

fn value_of<'a>(changes: &'a [HeaderChange], wanted: &str) -> Option<&'a str> {
    changes.iter().find_map(|c| match c {
        HeaderChange::Add { name, value }
        | HeaderChange::Change { name, value, .. }
        | HeaderChange::Insert { name, value, .. } => {
            name.eq_ignore_ascii_case(wanted).then_some(value.as_str())
        }
    })
}

/// The header section of `message`, checked to use CRLF only.
fn crlf_header(message: &[u8]) -> String {
    let text = String::from_utf8(message.to_vec()).unwrap();
    let (header, _) = text.split_once("\r\n\r\n").unwrap();
    let bytes = header.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        assert!(
            *b != b'\n' || (i > 0 && bytes[i - 1] == b'\r'),
            "bare LF in {header:?}"
        );
        assert!(
            *b != b'\r' || bytes.get(i + 1) == Some(&b'\n'),
            "bare CR in {header:?}"
        );
    }
    header.to_string()
}

#[test]
fn spamass_milter_and_spamd() {
    let start = Instant::now();
    ensure_package("spamassassin").unwrap();
    ensure_tool("spamd", "spamd").unwrap();
    ensure_tool("spamc", "spamc").unwrap();
    ensure_tool("spamass-milter", "spamass-milter").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_spamd, spamd_port) = start_spamd(dir.path());
    eprintln!("spamd ready after {:?}", start.elapsed());
    let (rejecting_milter, rejecting) =
        start_milter(dir.path(), "reject", spamd_port, &["-r", "15"]);
    let (marking_milter, marking) = start_milter(dir.path(), "mark", spamd_port, &[]);

    // libmilter hangs up unless the MTA offers every action the filter registered for:
    // spamass-milter registers CHGBODY, which is why the client offers it.
    let (actions, protocol, lists) = probe_optneg(rejecting, 0x113, 0x1f_f7ff).unwrap();
    eprintln!(
        "spamass-milter negotiated actions {actions:#x}, protocol {protocol:#x}, macro lists {lists:?}"
    );
    assert_eq!(actions & 0x02, 0x02, "CHGBODY");
    assert!(
        probe_optneg(rejecting, 0x111, 0x1f_f7ff).is_none(),
        "refused without CHGBODY"
    );

    let rcpts = vec!["bob@postern.test".to_string()];
    let envelope = Envelope {
        our_hostname: "mx.postern.test",
        client_ip: "127.0.0.1".parse().unwrap(),
        client_port: 40000,
        client_name: "localhost",
        helo: "client.example.test",
        mail_from: "alice@example.test",
        rcpt_to: &rcpts,
        queue_id: "4A1B2C3D",
        tls_version: None,
    };
    let config = |port: u16| MilterConfig {
        address: format!("127.0.0.1:{port}"),
        timeout: Duration::from_secs(30),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let spam = message("Limited offer", &format!("Buy now.\r\n{GTUBE}\r\n"));
    let asked = Instant::now();
    let verdict = runtime
        .block_on(check(&config(rejecting), &envelope, &spam))
        .unwrap();
    eprintln!(
        "GTUBE, -r 15: {:?} in {:?}",
        verdict.action,
        asked.elapsed()
    );
    match &verdict.action {
        Action::Reject {
            code,
            enhanced,
            text,
        } => {
            assert_eq!((*code, enhanced.as_str()), (550, "5.7.1"));
            assert!(text.contains("Blocked by SpamAssassin"), "{text}");
        }
        other => panic!("GTUBE not rejected: {other:?}"),
    }

    let ham = message(
        "Minutes of Tuesday's meeting",
        "Hi Bob,\r\n\r\nattached are the notes from Tuesday. See you next week.\r\n\r\nAlice",
    );
    let asked = Instant::now();
    let verdict = runtime
        .block_on(check(&config(rejecting), &envelope, &ham))
        .unwrap();
    eprintln!(
        "ham: {:?} in {:?}: {:#?}",
        verdict.action,
        asked.elapsed(),
        verdict.header_changes
    );
    assert_eq!(verdict.action, Action::Accept);
    let status = value_of(&verdict.header_changes, "X-Spam-Status").unwrap();
    assert!(status.starts_with("No,"), "{status}");
    assert!(value_of(&verdict.header_changes, "X-Spam-Checker-Version").is_some());
    let scanned = apply(&ham, &verdict.header_changes);
    let header = crlf_header(&scanned);
    assert!(header.contains("\r\nX-Spam-Status: No,") || header.starts_with("X-Spam-Status: No,"));
    assert!(
        header.contains("X-Spam-Checker-Version: SpamAssassin"),
        "{header}"
    );
    assert!(scanned.ends_with(b"\r\n\r\nAlice\r\n"));

    // Marking only: spam is wrapped by SpamAssassin (report_safe 1), a body replacement
    // the client does not apply, so the Content-Type that describes it goes too.
    let asked = Instant::now();
    let verdict = runtime
        .block_on(check(&config(marking), &envelope, &spam))
        .unwrap();
    eprintln!(
        "GTUBE, marking: {:?} in {:?}: {:#?}",
        verdict.action,
        asked.elapsed(),
        verdict.header_changes
    );
    assert_eq!(verdict.action, Action::Accept);
    assert_eq!(
        value_of(&verdict.header_changes, "X-Spam-Flag").map(str::trim),
        Some("YES")
    );
    assert!(value_of(&verdict.header_changes, "Content-Type").is_none());
    let marked = apply(&spam, &verdict.header_changes);
    let header = crlf_header(&marked);
    assert!(
        header.contains("\r\nContent-Type: text/plain; charset=us-ascii"),
        "{header}"
    );
    let body = |m: &[u8]| m[m.windows(4).position(|w| w == b"\r\n\r\n").unwrap()..].to_vec();
    assert_eq!(body(&marked), body(&spam));
    eprintln!("total {:?}", start.elapsed());
    rejecting_milter.terminate();
    marking_milter.terminate();
}
