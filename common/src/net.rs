//! The network driver: the one accept loop every listener runs. It owns the sockets,
//! TLS (implicit or a STARTTLS upgrade), the per-client-IP caps, idle timeouts and
//! graceful shutdown; protocol code only sees bytes in and replies out (a [`Session`]).
//!
//! Output is bounded: a session answers with at most a chunk at a time
//! ([`OUTPUT_CHUNK`] is the size to aim for) and says [`Action::More`] when the answer
//! goes on; the driver writes the chunk, waits until the socket took it, and only then
//! asks for the next ([`Session::resume`]). A client that reads slowly thus slows its
//! session down instead of making the server buffer the answer, and a session never
//! holds more than about one chunk of output, whatever it is answering (a mailbox's
//! worth of FETCH, a long pipeline).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::rate::{KeyedBuckets, LogOnce};
use crate::tls::Tls;

/// `[net]`: per-client-IP caps on every mail listener (SMTP, submission, IMAP,
/// ManageSieve).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// New connections accepted per client IP per second (a bucket of this many,
    /// refilled at this rate). A client over it gets the protocol's "try later" reply
    /// (SMTP `421 4.7.0`, IMAP `* BYE`) and is disconnected.
    pub connections_per_second: u32,
    /// Connections one client IP may hold open at once, across all listeners.
    pub connections_per_ip: u32,
    /// Connections one listener holds open at once, from all clients together; past
    /// it new clients get the "try later" reply (the process's file descriptors are
    /// not all spent on one port).
    pub connections_per_listener: u32,
    /// The IPv6 prefix length that counts as one client for the per-IP caps and rates
    /// (a host usually has a whole /64 to pick addresses from).
    pub ipv6_client_prefix: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connections_per_second: 50,
            connections_per_ip: 50,
            connections_per_listener: 10_000,
            ipv6_client_prefix: 64,
        }
    }
}

/// The key a client's caps are counted under: its IPv4 address, or its IPv6 address
/// cut to `prefix` bits.
pub fn client_key(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let prefix = u32::from(prefix.min(128));
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (ports 465, 993; RFC 8314).
    Implicit,
    /// Plain text until the session asks for an upgrade ([`Action::StartTls`]).
    StartTls,
    /// Plain text only.
    Plain,
}

/// What a session knows about its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
    /// The listener's name (`smtp`, `submission`, `imaps`...).
    pub listener: &'static str,
    /// Whether the connection is already under TLS.
    pub tls: bool,
    /// Whether a STARTTLS upgrade is possible.
    pub starttls: bool,
}

/// The output a session aims to hand the driver at once; [`Action::More`] says the
/// rest follows.
pub const OUTPUT_CHUNK: usize = 256 * 1024;

/// What the driver does after writing a session's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep reading.
    Continue,
    /// Start a TLS handshake on this connection, then keep reading.
    StartTls,
    /// Close the connection.
    Close,
    /// The answer goes on: once the reply is written, call [`Session::resume`] for
    /// the next part (and read nothing meanwhile).
    More,
}

/// A session's answer to some input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Bytes to send, possibly empty.
    pub reply: Vec<u8>,
    /// What to do next.
    pub action: Action,
}

impl Output {
    /// Send `reply` and keep reading.
    pub fn reply(reply: impl Into<Vec<u8>>) -> Self {
        Output {
            reply: reply.into(),
            action: Action::Continue,
        }
    }

    /// Send `reply`, then close.
    pub fn close(reply: impl Into<Vec<u8>>) -> Self {
        Output {
            reply: reply.into(),
            action: Action::Close,
        }
    }

    /// Send `reply`, then ask for more ([`Session::resume`]).
    pub fn more(reply: impl Into<Vec<u8>>) -> Self {
        Output {
            reply: reply.into(),
            action: Action::More,
        }
    }
}

/// One protocol conversation, fed the bytes the client sends. Sans-socket: it buffers
/// partial input itself, and never touches the stream.
pub trait Session: Send + 'static {
    /// The first bytes sent on connect (after the TLS handshake on implicit TLS).
    fn greeting(&mut self) -> Vec<u8>;
    /// Bytes the client sent. On [`Action::StartTls`] the session must drop any input
    /// it buffered after the STARTTLS command (it came in the clear: RFC 3207 §4.2).
    /// The reply should stay near [`OUTPUT_CHUNK`]: a longer answer ends with
    /// [`Action::More`] and goes on in [`Session::resume`].
    fn receive(&mut self, input: &[u8]) -> impl Future<Output = Output> + Send;
    /// The next part of an answer that ended with [`Action::More`], asked for once the
    /// previous part is written. The default has nothing more.
    fn resume(&mut self) -> impl Future<Output = Output> + Send {
        std::future::ready(Output::reply(Vec::new()))
    }
    /// Whether the session is between commands with no input pending, so that at
    /// shutdown it can be told and closed at once instead of after the grace period
    /// (an IMAP client in IDLE). The default is no: the session gets the grace period.
    fn at_rest(&self) -> bool {
        false
    }
    /// The TLS handshake that a [`Action::StartTls`] asked for has completed.
    fn tls_started(&mut self);
    /// The last words when the server shuts down (SMTP `421`, IMAP `* BYE`).
    fn shutting_down(&mut self) -> Vec<u8>;
    /// The last words when the client was idle too long.
    fn timed_out(&mut self) -> Vec<u8>;
    /// When the session must end whatever the client does (an SMTP session's total
    /// time, a DATA transfer's); the driver then sends [`Session::timed_out`].
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }
    /// Bytes the session wants to send without waiting for input (IMAP IDLE updates).
    /// Polled beside the read and dropped when input arrives first, so it must be
    /// cancel-safe. The default never completes.
    fn unsolicited(&mut self) -> impl Future<Output = Vec<u8>> + Send {
        std::future::pending()
    }
}

/// A protocol served by listeners: makes sessions and knows its fixed replies.
pub trait Protocol: Send + Sync + 'static {
    /// The session type.
    type Session: Session;
    /// A new session for an accepted connection.
    fn open(&self, info: &ConnInfo) -> Self::Session;
    /// The "try later" reply sent to a client over a per-IP cap before closing.
    fn busy(&self) -> &'static [u8];
    /// How long a client may stay silent.
    fn idle_timeout(&self) -> Duration;
    /// How long the session may take to answer one input (its DNS, store and milter
    /// work included) before the connection is closed with [`Session::timed_out`].
    fn command_timeout(&self) -> Duration {
        Duration::from_secs(10 * 60)
    }
}

/// Binds a listening socket. `[::]` accepts IPv4 too (dual stack).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Stops listeners and sessions in two steps: stop accepting, then (after a grace
/// period) tell the sessions still open and close them.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    stop_accepting: CancellationToken,
    close_sessions: CancellationToken,
    listeners: TaskTracker,
    sessions: TaskTracker,
}

impl Shutdown {
    /// Runs the shutdown: returns when every session has ended, or a few seconds after
    /// `grace` for sessions that do not end when told.
    pub async fn run(&self, grace: Duration) {
        self.stop_accepting.cancel();
        self.listeners.close();
        self.listeners.wait().await;
        self.sessions.close();
        if tokio::time::timeout(grace, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::info!(
                open = self.sessions.len(),
                "grace period over: closing the remaining sessions"
            );
            self.close_sessions.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.sessions.wait()).await;
        }
    }

    /// Sessions still running.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// Shared state of all listeners: caps, TLS, shutdown.
#[derive(Debug)]
pub struct Driver {
    tls: Option<Tls>,
    per_second: KeyedBuckets<IpAddr>,
    per_ip_limit: u32,
    per_listener_limit: usize,
    ipv6_prefix: u8,
    open: Mutex<HashMap<IpAddr, u32>>,
    over_cap_log: LogOnce<IpAddr>,
    deny: Arc<crate::deny::DenyList>,
    denied_log: LogOnce<IpAddr>,
    /// Networks with a connection rate of their own instead of `per_second` (our
    /// app containers' relay logins: each app one address).
    rate_overrides: Vec<(ipnet::IpNet, KeyedBuckets<IpAddr>)>,
    shutdown: Shutdown,
}

impl Driver {
    /// A driver with the `[net]` caps; `tls` is needed by implicit-TLS and STARTTLS
    /// listeners.
    pub fn new(config: &Config, tls: Option<Tls>) -> Arc<Driver> {
        Self::with_deny_list(
            config,
            tls,
            Arc::new(crate::deny::DenyList::disabled()),
            Vec::new(),
        )
    }

    /// Like [`Driver::new`], closing at once every connection from an address `deny`
    /// refuses (banned or blocked), before a byte is read or written; an address in
    /// one of `rate_overrides`' networks gets that many new connections per second
    /// instead of `[net] connections_per_second`.
    pub fn with_deny_list(
        config: &Config,
        tls: Option<Tls>,
        deny: Arc<crate::deny::DenyList>,
        rate_overrides: Vec<(ipnet::IpNet, u32)>,
    ) -> Arc<Driver> {
        Arc::new(Driver {
            rate_overrides: rate_overrides
                .into_iter()
                .map(|(net, rate)| (net, KeyedBuckets::new(rate.max(1), rate.max(1))))
                .collect(),
            deny,
            denied_log: LogOnce::new(Duration::from_secs(60)),
            tls,
            per_second: KeyedBuckets::new(
                config.connections_per_second,
                config.connections_per_second,
            ),
            per_ip_limit: config.connections_per_ip.max(1),
            per_listener_limit: usize::try_from(config.connections_per_listener.max(1))
                .unwrap_or(usize::MAX),
            ipv6_prefix: config.ipv6_client_prefix,
            open: Mutex::new(HashMap::new()),
            over_cap_log: LogOnce::new(Duration::from_secs(60)),
            shutdown: Shutdown::default(),
        })
    }

    /// The shutdown handle.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Starts accepting on `listener` (from [`bind`]) in a background task. Must run
    /// inside a tokio runtime.
    pub fn serve<P: Protocol>(
        self: &Arc<Self>,
        listener: std::net::TcpListener,
        name: &'static str,
        mode: TlsMode,
        protocol: Arc<P>,
    ) -> io::Result<()> {
        if mode != TlsMode::Plain && self.tls.is_none() {
            return Err(io::Error::other(format!(
                "listener {name} needs TLS but no certificate is loaded"
            )));
        }
        let listener = TcpListener::from_std(listener)?;
        let driver = self.clone();
        self.shutdown.listeners.spawn(async move {
            driver.accept_loop(listener, name, mode, protocol).await;
        });
        Ok(())
    }

    async fn accept_loop<P: Protocol>(
        self: Arc<Self>,
        listener: TcpListener,
        name: &'static str,
        mode: TlsMode,
        protocol: Arc<P>,
    ) {
        // Sessions of this listener now open (each holds a clone until it ends).
        let open_here = Arc::new(());
        loop {
            let accepted = tokio::select! {
                biased;
                _ = self.shutdown.stop_accepting.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // On a dual-stack `[::]` listener IPv4 clients arrive as ::ffff:a.b.c.d: use
            // the IPv4 form, so caps, logs and network lists see one address per client.
            let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
            if self.deny.denies(peer.ip()) {
                if self.denied_log.should_log(&peer.ip()) {
                    tracing::warn!(listener = name, ip = %peer.ip(), "connection from a banned or blocked address closed (logged once a minute per IP)");
                }
                crate::metrics::inc("postern_connections_denied_total", Some(("listener", name)));
                drop(stream);
                continue;
            }
            let local = stream.local_addr().unwrap_or(peer);
            let local = SocketAddr::new(local.ip().to_canonical(), local.port());
            let _ = stream.set_nodelay(true);
            let info = ConnInfo {
                peer,
                local,
                listener: name,
                tls: mode == TlsMode::Implicit,
                starttls: mode == TlsMode::StartTls,
            };
            crate::metrics::inc("postern_connections_total", Some(("listener", name)));
            let slot = if Arc::strong_count(&open_here) > self.per_listener_limit {
                if self.over_cap_log.should_log(&peer.ip()) {
                    tracing::warn!(
                        listener = name,
                        limit = self.per_listener_limit,
                        "listener at its connection cap: new clients told to try later"
                    );
                }
                None
            } else {
                self.admit(peer.ip(), name)
                    .map(|slot| (slot, open_here.clone()))
            };
            let driver = self.clone();
            let protocol = protocol.clone();
            self.shutdown.sessions.spawn(async move {
                let result = match slot {
                    Some((slot, _open)) => {
                        driver.run_session(stream, info, mode, &*protocol, slot).await
                    }
                    None => driver.refuse(stream, mode, protocol.busy()).await,
                };
                if let Err(e) = result {
                    tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                }
            });
        }
    }

    /// Takes a connection slot for `ip`, or `None` when it is over a cap (logged once
    /// per IP per minute).
    fn admit(self: &Arc<Self>, ip: IpAddr, listener: &'static str) -> Option<Slot> {
        let ip = client_key(ip, self.ipv6_prefix);
        let bucket = self
            .rate_overrides
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map_or(&self.per_second, |(_, b)| b);
        let over = if bucket.acquire(&ip).is_err() {
            Some("connections per second")
        } else {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(ip).or_insert(0);
            if *count >= self.per_ip_limit {
                Some("concurrent connections")
            } else {
                *count += 1;
                None
            }
        };
        match over {
            None => Some(Slot {
                driver: self.clone(),
                ip,
            }),
            Some(cap) => {
                if self.over_cap_log.should_log(&ip) {
                    tracing::warn!(%ip, listener, cap, "client over its connection cap: told to try later (logged once a minute per IP)");
                }
                None
            }
        }
    }

    async fn refuse(&self, tcp: TcpStream, mode: TlsMode, busy: &[u8]) -> io::Result<()> {
        let mut stream = match mode {
            TlsMode::Implicit => self.handshake(tcp).await?,
            _ => Stream::Plain(tcp),
        };
        write_all(&mut stream, busy).await?;
        stream.shutdown().await
    }

    async fn handshake(&self, tcp: TcpStream) -> io::Result<Stream> {
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| io::Error::other("no TLS configured"))?;
        let accept = tls.acceptor().accept(tcp);
        let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(stream) => stream.map(|s| Stream::Tls(Box::new(s))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        crate::metrics::inc("postern_tls_handshakes_total", Some(("result", outcome)));
        result
    }

    async fn run_session<P: Protocol>(
        &self,
        tcp: TcpStream,
        info: ConnInfo,
        mode: TlsMode,
        protocol: &P,
        _slot: Slot,
    ) -> io::Result<()> {
        let mut stream = match mode {
            TlsMode::Implicit => self.handshake(tcp).await?,
            _ => Stream::Plain(tcp),
        };
        let mut session = protocol.open(&info);
        write_all(&mut stream, &session.greeting()).await?;
        let idle = protocol.idle_timeout();
        let command_timeout = protocol.command_timeout();
        let mut buf = vec![0u8; 16 * 1024];
        'session: loop {
            // The idle timeout, or less when the session has a deadline sooner; past
            // the deadline, no more input is read however fast it comes.
            let wait = match session.deadline() {
                Some(at) => {
                    let left = at.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        let _ = write_all(&mut stream, &session.timed_out()).await;
                        break;
                    }
                    idle.min(left)
                }
                None => idle,
            };
            let read = tokio::select! {
                biased;
                _ = self.shutdown.close_sessions.cancelled() => {
                    let _ = write_all(&mut stream, &session.shutting_down()).await;
                    break;
                }
                // At rest (IDLE, between commands): no need to wait out the grace period.
                _ = self.shutdown.stop_accepting.cancelled(), if session.at_rest() => {
                    let _ = write_all(&mut stream, &session.shutting_down()).await;
                    break;
                }
                read = tokio::time::timeout(wait, stream.read(&mut buf)) => read,
                pushed = session.unsolicited() => {
                    write_all(&mut stream, &pushed).await?;
                    continue;
                }
            };
            let n = match read {
                Err(_) => {
                    let _ = write_all(&mut stream, &session.timed_out()).await;
                    break;
                }
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e),
            };
            let mut out = match tokio::time::timeout(command_timeout, session.receive(&buf[..n]))
                .await
            {
                Ok(out) => out,
                Err(_) => {
                    tracing::warn!(listener = info.listener, peer = %info.peer, "a command took too long: closing");
                    let _ = write_all(&mut stream, &session.timed_out()).await;
                    break;
                }
            };
            // A long answer part by part, each written before the next is made.
            while out.action == Action::More {
                write_all(&mut stream, &out.reply).await?;
                out = match tokio::time::timeout(command_timeout, session.resume()).await {
                    Ok(out) => out,
                    Err(_) => {
                        tracing::warn!(listener = info.listener, peer = %info.peer, "a command took too long: closing");
                        let _ = write_all(&mut stream, &session.timed_out()).await;
                        break 'session;
                    }
                };
            }
            write_all(&mut stream, &out.reply).await?;
            match out.action {
                Action::Continue | Action::More => {}
                Action::Close => break,
                Action::StartTls => {
                    stream = match stream {
                        Stream::Plain(tcp) if mode == TlsMode::StartTls => {
                            self.handshake(tcp).await?
                        }
                        other => {
                            // The session asked for TLS it did not offer: a bug, not
                            // client input. Close rather than continue in an odd state.
                            tracing::error!(
                                listener = info.listener,
                                "session asked for STARTTLS where it is not possible"
                            );
                            let mut other = other;
                            let _ = other.shutdown().await;
                            return Ok(());
                        }
                    };
                    session.tls_started();
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
        Ok(())
    }
}

/// Runs `f` on the session state held in `slot` on a blocking thread (store and
/// password work must not stall the async workers), then puts the state back. `None`,
/// with the slot left empty, if `f` panicked (logged, naming `protocol`) or the slot
/// was already empty.
pub async fn run_blocking<S, T>(
    slot: &mut Option<S>,
    protocol: &'static str,
    f: impl FnOnce(&mut S) -> T + Send + 'static,
) -> Option<T>
where
    S: Send + 'static,
    T: Send + 'static,
{
    let mut state = slot.take()?;
    let joined = tokio::task::spawn_blocking(move || {
        let out = f(&mut state);
        (state, out)
    })
    .await;
    match joined {
        Ok((state, out)) => {
            *slot = Some(state);
            Some(out)
        }
        Err(e) => {
            tracing::error!(error = %e, protocol, "a command failed");
            None
        }
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

async fn write_all(stream: &mut Stream, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

/// A held per-IP connection slot, released on drop.
#[derive(Debug)]
struct Slot {
    driver: Arc<Driver>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.driver.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A client connection, before or after TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
