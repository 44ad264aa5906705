//! The network driver with a toy line protocol: caps, STARTTLS, timeouts, shutdown.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use common::net::{self, Action, ConnInfo, Driver, Output, Protocol, Session, TlsMode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Toy {
    idle: Duration,
}

const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

struct ToySession {
    buf: Vec<u8>,
    tls: bool,
    peer: std::net::IpAddr,
    /// STREAM n: chunks still to send, and how many were made (shared with the test).
    streaming: usize,
    made: Arc<std::sync::atomic::AtomicUsize>,
    /// REST: between commands this session may be closed at once at shutdown.
    restful: bool,
    /// Set by `DEADLINE`: the session ends 300 ms later whatever the client does.
    deadline: Option<tokio::time::Instant>,
}

/// Chunks made by STREAM sessions, across all of them.
static MADE: std::sync::OnceLock<Arc<std::sync::atomic::AtomicUsize>> = std::sync::OnceLock::new();

fn made() -> Arc<std::sync::atomic::AtomicUsize> {
    MADE.get_or_init(Default::default).clone()
}

const STREAM_CHUNK: usize = 64 * 1024;

impl Protocol for Toy {
    type Session = ToySession;
    fn open(&self, info: &ConnInfo) -> ToySession {
        ToySession {
            buf: Vec::new(),
            tls: info.tls,
            peer: info.peer.ip(),
            streaming: 0,
            made: made(),
            restful: false,
            deadline: None,
        }
    }
    fn busy(&self) -> &'static [u8] {
        b"BUSY\r\n"
    }
    fn idle_timeout(&self) -> Duration {
        self.idle
    }
    fn command_timeout(&self) -> Duration {
        COMMAND_TIMEOUT
    }
}

impl Session for ToySession {
    fn greeting(&mut self) -> Vec<u8> {
        b"HELLO\r\n".to_vec()
    }
    async fn receive(&mut self, input: &[u8]) -> Output {
        self.buf.extend_from_slice(input);
        let mut reply = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            match line.trim_ascii() {
                b"PING" => reply.extend_from_slice(if self.tls {
                    b"PONG TLS\r\n"
                } else {
                    b"PONG\r\n"
                }),
                b"STARTTLS" => {
                    self.buf.clear();
                    reply.extend_from_slice(b"GO\r\n");
                    return Output {
                        reply,
                        action: Action::StartTls,
                    };
                }
                b"QUIT" => return Output::close([reply, b"BYE\r\n".to_vec()].concat()),
                b"WHO" => reply.extend_from_slice(format!("{}\r\n", self.peer).as_bytes()),
                b"DEADLINE" => {
                    self.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(300));
                    reply.extend_from_slice(b"OK\r\n");
                }
                b"REST" => {
                    self.restful = true;
                    reply.extend_from_slice(b"RESTING\r\n");
                }
                l if l.starts_with(b"STREAM ") => {
                    self.streaming = String::from_utf8_lossy(&l[7..]).parse().unwrap();
                    return self.resume().await;
                }
                b"SLOW" => {
                    tokio::time::sleep(COMMAND_TIMEOUT * 10).await;
                    reply.extend_from_slice(b"DONE\r\n");
                }
                _ => reply.extend_from_slice(b"WHAT\r\n"),
            }
        }
        Output::reply(reply)
    }
    async fn resume(&mut self) -> Output {
        if self.streaming == 0 {
            return Output::reply(b"END\r\n".to_vec());
        }
        self.streaming -= 1;
        self.made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut chunk = vec![b'x'; STREAM_CHUNK - 2];
        chunk.extend_from_slice(b"\r\n");
        Output::more(chunk)
    }
    fn at_rest(&self) -> bool {
        self.restful && self.buf.is_empty() && self.streaming == 0
    }
    fn tls_started(&mut self) {
        self.tls = true;
    }
    fn shutting_down(&mut self) -> Vec<u8> {
        b"SHUTDOWN\r\n".to_vec()
    }
    fn timed_out(&mut self) -> Vec<u8> {
        b"TIMEOUT\r\n".to_vec()
    }
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }
}

fn start(
    config: net::Config,
    mode: TlsMode,
    idle: Duration,
    tls: Option<common::tls::Tls>,
) -> (Arc<Driver>, std::net::SocketAddr) {
    let listener = net::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let driver = Driver::new(&config, tls);
    driver
        .serve(listener, "toy", mode, Arc::new(Toy { idle }))
        .unwrap();
    (driver, addr)
}

async fn line(r: &mut (impl AsyncBufReadExt + Unpin)) -> String {
    let mut s = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut s))
        .await
        .unwrap()
        .unwrap();
    s
}

#[tokio::test]
async fn concurrent_cap_per_ip_gets_busy_reply() {
    let cfg = net::Config {
        connections_per_second: 100,
        connections_per_ip: 2,
        ..net::Config::default()
    };
    let (_d, addr) = start(cfg, TlsMode::Plain, Duration::from_secs(30), None);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(line(&mut c).await, "HELLO\r\n");
        held.push(c);
    }
    let mut third = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut third).await, "BUSY\r\n");
    assert_eq!(line(&mut third).await, "", "closed after the busy reply");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(
        line(&mut again).await,
        "HELLO\r\n",
        "a freed slot is reusable"
    );
}

#[tokio::test]
async fn connection_rate_per_ip_gets_busy_reply() {
    let cfg = net::Config {
        connections_per_second: 3,
        connections_per_ip: 100,
        ..net::Config::default()
    };
    let (_d, addr) = start(cfg, TlsMode::Plain, Duration::from_secs(30), None);
    let mut greetings = Vec::new();
    for _ in 0..5 {
        let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
        greetings.push(line(&mut c).await);
    }
    assert_eq!(
        greetings.iter().filter(|g| *g == "HELLO\r\n").count(),
        3,
        "{greetings:?}"
    );
    assert_eq!(
        greetings.iter().filter(|g| *g == "BUSY\r\n").count(),
        2,
        "{greetings:?}"
    );
}

#[tokio::test]
async fn idle_client_is_timed_out() {
    let (_d, addr) = start(
        net::Config::default(),
        TlsMode::Plain,
        Duration::from_millis(200),
        None,
    );
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    assert_eq!(line(&mut c).await, "TIMEOUT\r\n");
    assert_eq!(line(&mut c).await, "");
}

#[tokio::test]
async fn shutdown_lets_sessions_finish_then_closes_them() {
    let (driver, addr) = start(
        net::Config::default(),
        TlsMode::Plain,
        Duration::from_secs(30),
        None,
    );
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    let d = driver.clone();
    let shutdown = tokio::spawn(async move { d.shutdown().run(Duration::from_millis(500)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Within the grace period the session still works...
    c.get_mut().write_all(b"PING\r\n").await.unwrap();
    assert_eq!(line(&mut c).await, "PONG\r\n");
    // ...but no new connection is accepted.
    assert!(
        TcpStream::connect(addr).await.is_err() || {
            let mut n = TcpStream::connect(addr).await.unwrap();
            let mut b = [0u8; 1];
            matches!(
                tokio::time::timeout(Duration::from_millis(300), n.read(&mut b)).await,
                Err(_) | Ok(Ok(0)) | Ok(Err(_))
            )
        }
    );
    // After the grace period it is told and closed.
    assert_eq!(line(&mut c).await, "SHUTDOWN\r\n");
    assert_eq!(line(&mut c).await, "");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(driver.shutdown().open_sessions(), 0);
}

#[tokio::test]
async fn starttls_upgrades_and_drops_pipelined_plaintext() {
    common::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    common::tls::write_self_signed(&dir.path().join("tls"), &["localhost".into()]).unwrap();
    let tls = common::tls::Tls::load(&Default::default(), dir.path()).unwrap();
    let (_d, addr) = start(
        net::Config::default(),
        TlsMode::StartTls,
        Duration::from_secs(30),
        Some(tls),
    );

    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    // A command injected after STARTTLS in the same packet must not be executed.
    c.get_mut()
        .write_all(b"STARTTLS\r\nPING\r\n")
        .await
        .unwrap();
    assert_eq!(line(&mut c).await, "GO\r\n");

    let pem = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = c.into_inner();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut t = BufReader::new(tls);
    t.get_mut().write_all(b"PING\r\n").await.unwrap();
    assert_eq!(
        line(&mut t).await,
        "PONG TLS\r\n",
        "the injected PING was not answered"
    );
}

#[tokio::test]
async fn a_command_that_takes_too_long_closes_the_connection() {
    let (_d, addr) = start(
        net::Config::default(),
        TlsMode::Plain,
        Duration::from_secs(30),
        None,
    );
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    c.get_mut().write_all(b"SLOW\r\n").await.unwrap();
    assert_eq!(line(&mut c).await, "TIMEOUT\r\n");
    assert_eq!(line(&mut c).await, "");
}

#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_are_seen_as_ipv4() {
    // [::] with v6only off accepts 127.0.0.1; sessions, caps and logs see 127.0.0.1,
    // not ::ffff:127.0.0.1.
    let listener = match net::bind("[::]:0".parse().unwrap()) {
        Ok(l) => l,
        Err(e) => panic!("binding [::]:0 failed (no IPv6 on this machine?): {e}"),
    };
    let port = listener.local_addr().unwrap().port();
    let driver = Driver::new(&net::Config::default(), None);
    driver
        .serve(
            listener,
            "toy",
            TlsMode::Plain,
            Arc::new(Toy {
                idle: Duration::from_secs(30),
            }),
        )
        .unwrap();
    let mut c = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    c.get_mut().write_all(b"WHO\r\n").await.unwrap();
    assert_eq!(line(&mut c).await, "127.0.0.1\r\n");
}

#[tokio::test]
async fn a_long_answer_goes_out_at_the_readers_pace() {
    let (_d, addr) = start(
        net::Config::default(),
        TlsMode::Plain,
        Duration::from_secs(30),
        None,
    );
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    let before = made().load(std::sync::atomic::Ordering::SeqCst);
    // 256 MiB asked for, nothing read for a while: the session makes only what the
    // socket buffers take, not the whole answer.
    c.get_mut().write_all(b"STREAM 4096\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let made_while_blocked = made().load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        made_while_blocked < 400,
        "{made_while_blocked} chunks of 64 KiB made while the client read nothing"
    );
    let mut total = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        total += n;
        if chunk[..n].ends_with(b"END\r\n") {
            break;
        }
    }
    assert_eq!(total, 4096 * STREAM_CHUNK + 5);
}

#[tokio::test]
async fn at_shutdown_a_session_at_rest_is_told_at_once() {
    let (driver, addr) = start(
        net::Config::default(),
        TlsMode::Plain,
        Duration::from_secs(30),
        None,
    );
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    c.get_mut().write_all(b"REST\r\n").await.unwrap();
    assert_eq!(line(&mut c).await, "RESTING\r\n");
    // Half a command: not at rest, it gets the grace period.
    let mut busy = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut busy).await, "HELLO\r\n");
    busy.get_mut().write_all(b"REST\r\n").await.unwrap();
    assert_eq!(line(&mut busy).await, "RESTING\r\n");
    busy.get_mut().write_all(b"PI").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = driver.clone();
    let start = std::time::Instant::now();
    let shutdown = tokio::spawn(async move { d.shutdown().run(Duration::from_secs(3)).await });
    assert_eq!(line(&mut c).await, "SHUTDOWN\r\n");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    busy.get_mut().write_all(b"NG\r\n").await.unwrap();
    assert_eq!(line(&mut busy).await, "PONG\r\n");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_listener_holds_no_more_connections_than_its_cap() {
    let cfg = net::Config {
        connections_per_listener: 3,
        ..net::Config::default()
    };
    let (_d, addr) = start(cfg, TlsMode::Plain, Duration::from_secs(30), None);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(line(&mut c).await, "HELLO\r\n");
        held.push(c);
    }
    let mut fourth = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut fourth).await, "BUSY\r\n");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut again).await, "HELLO\r\n");
}

#[tokio::test]
async fn a_session_deadline_ends_even_a_busy_client() {
    let (_d, addr) = start(
        net::Config::default(),
        TlsMode::Plain,
        Duration::from_secs(30),
        None,
    );
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "HELLO\r\n");
    c.get_mut().write_all(b"DEADLINE\r\n").await.unwrap();
    assert_eq!(line(&mut c).await, "OK\r\n");
    // A client talking without pause is cut off at the deadline all the same.
    let started = std::time::Instant::now();
    loop {
        c.get_mut().write_all(b"PING\r\n").await.unwrap_or(());
        let l = line(&mut c).await;
        if l == "TIMEOUT\r\n" || l.is_empty() {
            break;
        }
        assert_eq!(l, "PONG\r\n");
        assert!(started.elapsed() < Duration::from_secs(5), "no deadline");
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn ipv6_clients_are_counted_by_their_64() {
    let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    let c: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(net::client_key(a, 64), net::client_key(b, 64));
    assert_ne!(net::client_key(a, 64), net::client_key(c, 64));
    assert_ne!(net::client_key(a, 128), net::client_key(b, 128));
    let v4: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(net::client_key(v4, 64), v4);
    assert_eq!(
        net::client_key(a, 0),
        "::".parse::<std::net::IpAddr>().unwrap()
    );
}
