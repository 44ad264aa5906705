//! The web listeners' accept loop: the connection caps (per client IP and in all, over
//! HTTP and HTTPS together), the deadline that starts at accept (TLS handshake and
//! first request head within `[http] request_timeout_seconds`), the TLS handshake
//! with ACME TLS-ALPN-01 answered, and hyper serving HTTP/1.1 or HTTP/2.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;

use super::Client;

/// Open web connections, per client address and in all.
#[derive(Debug)]
pub struct Caps {
    per_ip_limit: u32,
    total_limit: usize,
    open: Mutex<HashMap<IpAddr, u32>>,
    total: AtomicUsize,
    over_log: common::rate::LogOnce<IpAddr>,
}

impl Caps {
    /// At most `per_ip` connections per client address and `total` in all (each at
    /// least 1).
    pub fn new(per_ip: u32, total: usize) -> Caps {
        Caps {
            per_ip_limit: per_ip.max(1),
            total_limit: total.max(1),
            open: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            over_log: common::rate::LogOnce::new(Duration::from_secs(60)),
        }
    }

    /// A slot for a connection from `ip`, or None when a cap is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let over = if self.total.load(Ordering::Acquire) >= self.total_limit {
            Some("web connections in all")
        } else if open.get(&ip).copied().unwrap_or(0) >= self.per_ip_limit {
            Some("web connections per address")
        } else {
            None
        };
        if let Some(cap) = over {
            drop(open);
            if self.over_log.should_log(&ip) {
                tracing::warn!(%ip, cap, "web connection over its cap closed at accept (logged once a minute per IP)");
            }
            return None;
        }
        *open.entry(ip).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            caps: self.clone(),
            ip,
        })
    }
}

/// A held connection slot, given back on drop.
struct Slot {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
        self.caps.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a listener serves its connections.
#[derive(Clone)]
pub struct Listener {
    /// What answers the requests.
    pub router: Router,
    /// TLS for HTTPS, None for plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Banned and blocked addresses: closed at accept.
    pub deny: Arc<common::deny::DenyList>,
    /// The caps shared by every web listener.
    pub caps: Arc<Caps>,
    /// From accept to the first request head (TLS handshake included); also the time
    /// allowed for each further request head.
    pub request_timeout: Duration,
}

/// Accepts connections on `listener` until the process ends.
pub fn run(listener: std::net::TcpListener, serve: Listener) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = "web", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let accepted = Instant::now();
            let ip = peer.ip().to_canonical();
            if serve.deny.denies(ip) {
                common::metrics::inc(
                    "postern_connections_denied_total",
                    Some(("listener", "web")),
                );
                continue;
            }
            let Some(slot) = serve.caps.admit(ip) else {
                common::metrics::inc(
                    "postern_connections_over_cap_total",
                    Some(("listener", "web")),
                );
                continue;
            };
            let serve = serve.clone();
            tokio::spawn(async move {
                let deadline = accepted + serve.request_timeout;
                connection(tcp, peer, serve, deadline).await;
                drop(slot);
            });
        }
    });
    Ok(())
}

/// Serves one connection; it is closed if no request head has arrived by `deadline`.
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    serve: Listener,
    deadline: Instant,
) {
    let seen = Arc::new(AtomicBool::new(false));
    let service = TowerToHyperService::new(with_client(serve.router.clone(), peer, seen.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper arms this for each request head after the first (slowloris, idle
    // keep-alive connections); the first is bound by `deadline`.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(serve.request_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(serve.request_timeout));
    match serve.tls {
        None => {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            until_first_request(conn, &seen, deadline).await;
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
            let stream = handshake.await.ok().and_then(Result::ok);
            common::metrics::inc(
                "postern_tls_handshakes_total",
                Some(("result", if stream.is_some() { "ok" } else { "failed" })),
            );
            // A TLS-ALPN-01 validation ends with the handshake (RFC 8737 §3).
            let acme = stream
                .as_ref()
                .is_some_and(|s| s.get_ref().1.alpn_protocol() == Some(common::tls::ACME_TLS_ALPN));
            if let Some(s) = stream.as_ref().filter(|_| acme) {
                tracing::info!(
                    name = s.get_ref().1.server_name().unwrap_or(""),
                    "ACME TLS-ALPN-01 challenge answered"
                );
            }
            if let Some(stream) = stream.filter(|_| !acme) {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                until_first_request(conn, &seen, deadline).await;
            }
        }
    }
}

/// Drives `conn`; drops it (closing the connection) if no request head was seen by
/// `deadline`.
async fn until_first_request<F: std::future::Future>(
    conn: F,
    seen: &AtomicBool,
    deadline: Instant,
) {
    tokio::pin!(conn);
    tokio::select! {
        _ = &mut conn => {}
        _ = tokio::time::sleep_until(deadline) => {
            if seen.load(Ordering::Acquire) {
                let _ = conn.await;
            }
        }
    }
}

/// The router with the connection's client address added to each request, noting
/// that a request head arrived.
fn with_client(
    router: Router,
    peer: SocketAddr,
    seen: Arc<AtomicBool>,
) -> impl tower::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    let client = Client(peer.ip().to_canonical());
    tower::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::Release);
        request.extensions_mut().insert(client);
        let mut router = router.clone();
        async move {
            use tower::Service;
            router.call(request.map(Body::new)).await
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_address_and_in_all_and_come_back() {
        let caps = Arc::new(Caps::new(2, 3));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = caps.admit(a);
        let a2 = caps.admit(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(caps.admit(a).is_none(), "per address");
        let b1 = caps.admit(b);
        assert!(b1.is_some());
        assert!(caps.admit(b).is_none(), "in all");
        drop(a1);
        assert!(caps.admit(b).is_some());
    }
}
