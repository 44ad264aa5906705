//! The web front: plain HTTP (`[http] listen`, port 80) answers every request with a
//! `301` to the same host, path and query on HTTPS; HTTPS (`[https] listen`, port 443,
//! the certificate chosen by SNI, HTTP/1.1 and HTTP/2) serves, by host name:
//!
//! - `mta-sts.<domain>`: the MTA-STS policy (RFC 8461 §3.2, mode enforce, our MX);
//! - `autoconfig.<domain>` (and `<domain>` itself): Thunderbird's autoconfiguration
//!   (`/mail/config-v1.1.xml`, `/.well-known/autoconfig/mail/config-v1.1.xml`);
//! - `/healthz` on any other host: `200` once every listener is up, `503` while
//!   starting and once shutdown has begun.
//!
//! Every HTTPS response carries the security headers of [`security_headers`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[http]`: plain HTTP, which only redirects to HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Addresses for plain HTTP (port 80): every request is redirected to HTTPS.
    /// Empty: none.
    pub listen: Vec<SocketAddr>,
    /// Requests one client IP may make per second over HTTP and HTTPS together (a
    /// token bucket of this size, refilled at this rate; loopback is not exempt). Over
    /// it: `429` with `Retry-After`.
    pub requests_per_second: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: vec![SocketAddr::from(([0u16; 8], 80))],
            requests_per_second: 5000,
        }
    }
}

/// `[https]`: the HTTPS front (MTA-STS policies, client autoconfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsConfig {
    /// Addresses for HTTPS (port 443). Empty: none.
    pub listen: Vec<SocketAddr>,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        HttpsConfig {
            listen: vec![SocketAddr::from(([0u16; 8], 443))],
        }
    }
}

/// What the handlers need.
pub struct Web {
    /// The configuration in effect.
    pub config: Arc<crate::config::Config>,
    /// The admin API's tokens and login limiter.
    pub api: crate::api::Api,
    /// `[admin] host` (empty: `my.<domain>` of any of our domains).
    pub admin_host: String,
    /// Every listener is up (false while starting and once shutdown begins).
    pub ready: std::sync::atomic::AtomicBool,
    /// Per-IP request buckets (`[http] requests_per_second`).
    pub limiter: common::rate::KeyedBuckets<IpAddr>,
    /// Logs a client over its rate once a minute.
    pub over_limit_log: common::rate::LogOnce<IpAddr>,
    /// The store (which domains are ours).
    pub store: Arc<store::Store>,
    /// Our host name: the MX of the MTA-STS policy, the server of autoconfiguration.
    pub hostname: String,
    /// The HTTPS port redirects point at (443 is left out of the URL).
    pub https_port: u16,
    /// Submission with implicit TLS, for autoconfiguration (None: not offered).
    pub submissions_port: Option<u16>,
    /// Submission with STARTTLS.
    pub submission_port: Option<u16>,
    /// IMAP with implicit TLS.
    pub imaps_port: Option<u16>,
    /// ACME HTTP-01 responses, served on plain HTTP while an order is validated.
    pub http01: Arc<crate::acme::Http01>,
    /// Banned and blocked addresses: their connections are closed at accept.
    pub deny: Arc<common::deny::DenyList>,
}

/// Serves plain HTTP on `listener` until the process ends.
pub fn serve_http(listener: std::net::TcpListener, web: Arc<Web>) -> std::io::Result<()> {
    let router = Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(acme_challenge),
        )
        .fallback(redirect)
        .with_state(web.clone())
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            rate_limit,
        ));
    accept_loop(listener, router, None, web.deny.clone())
}

/// Serves HTTPS on `listener` with the listeners' certificates (SNI), offering
/// HTTP/2 and HTTP/1.1 by ALPN, until the process ends.
pub fn serve_https(
    listener: std::net::TcpListener,
    web: Arc<Web>,
    tls: &common::tls::Tls,
) -> std::io::Result<()> {
    let mut config = (*tls.server_config()).clone();
    config.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        common::tls::ACME_TLS_ALPN.to_vec(),
    ];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let router = Router::new()
        .fallback(https)
        .with_state(web.clone())
        .nest("/api/v1", crate::api::router(web.clone()))
        .merge(crate::api::metrics::router(web.clone()))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            rate_limit,
        ));
    accept_loop(listener, router, Some(acceptor), web.deny.clone())
}

/// Accepts connections (through TLS when `tls` is given) and serves `router` on each,
/// HTTP/1.1 or HTTP/2, with the client's address in every request.
fn accept_loop(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    deny: Arc<common::deny::DenyList>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if deny.denies(peer.ip()) {
                common::metrics::inc(
                    "postern_connections_denied_total",
                    Some(("listener", "web")),
                );
                continue;
            }
            let tls = tls.clone();
            let service = TowerToHyperService::new(with_client(router.clone(), peer));
            tokio::spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // A client gets HEADER_TIMEOUT to send each request's head (slowloris).
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                builder
                    .http2()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .keep_alive_interval(Some(HEADER_TIMEOUT));
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                            .await;
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                        let stream = handshake.await.ok().and_then(Result::ok);
                        common::metrics::inc(
                            "postern_tls_handshakes_total",
                            Some(("result", if stream.is_some() { "ok" } else { "failed" })),
                        );
                        // A TLS-ALPN-01 validation ends with the handshake (RFC 8737 §3).
                        let acme = stream.as_ref().is_some_and(|s| {
                            s.get_ref().1.alpn_protocol() == Some(common::tls::ACME_TLS_ALPN)
                        });
                        if let Some(s) = stream.as_ref().filter(|_| acme) {
                            tracing::info!(
                                name = s.get_ref().1.server_name().unwrap_or(""),
                                "ACME TLS-ALPN-01 challenge answered"
                            );
                        }
                        if let Some(stream) = stream.filter(|_| !acme) {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                }
            });
        }
    });
    Ok(())
}

/// How long a client may take over one request's head; also the HTTP/2 ping interval.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's address, put in every request's extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
struct Client(IpAddr);

/// The router with the connection's client address added to each request.
fn with_client(
    router: Router,
    peer: SocketAddr,
) -> impl tower::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    let client = Client(peer.ip().to_canonical());
    tower::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(client);
        let mut router = router.clone();
        async move {
            use tower::Service;
            router.call(request.map(Body::new)).await
        }
    })
}

/// The client's address of a request, when the accept loop recorded it.
pub fn client_ip(request: &Request) -> Option<IpAddr> {
    request.extensions().get::<Client>().map(|c| c.0)
}

/// `[http] requests_per_second` per client IP: `429` with `Retry-After` beyond it,
/// logged once a minute per IP.
async fn rate_limit(
    State(web): State<Arc<Web>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(Client(ip)) = request.extensions().get::<Client>().copied() else {
        return next.run(request).await;
    };
    match web.limiter.acquire(&ip) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            if web.over_limit_log.should_log(&ip) {
                tracing::warn!(%ip, "HTTP client over its request rate: 429 (logged once a minute per IP)");
            }
            too_many(wait, "Too many requests, try again later\n")
        }
    }
}

/// `429 Too Many Requests` with `Retry-After` in whole seconds (at least 1).
pub fn too_many(wait: Duration, body: impl IntoResponse) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.max(1).to_string())],
        body,
    )
        .into_response()
}

/// The request's host name: the Host header (HTTP/1.1) or the authority (HTTP/2),
/// lower case, without a port.
pub fn host_of(request: &Request) -> String {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal keeps its brackets.
        rest.split_once(']')
            .map_or(raw.clone(), |(ip, _)| format!("[{ip}]"))
    } else {
        raw.split(':').next().unwrap_or_default().to_string()
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Plain HTTP: `301` to HTTPS, same host, path and query.
async fn redirect(State(web): State<Arc<Web>>, request: Request) -> Response {
    let host = host_of(&request);
    if host.is_empty() {
        return (StatusCode::BAD_REQUEST, "A Host header is needed\n").into_response();
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let port = if web.https_port == 443 {
        String::new()
    } else {
        format!(":{}", web.https_port)
    };
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, format!("https://{host}{port}{path}"))
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// ACME HTTP-01 (RFC 8555 §8.3): the key authorization of a token being validated,
/// on any host; any other token is `404`. Never redirected: the CA asks over HTTP.
async fn acme_challenge(
    State(web): State<Arc<Web>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match web.http01.get(&token) {
        Some(key_authorization) => {
            tracing::info!(token, "ACME HTTP-01 challenge answered");
            (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                key_authorization,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "No such challenge\n").into_response(),
    }
}

/// HTTPS: by host and path.
async fn https(State(web): State<Arc<Web>>, request: Request) -> Response {
    let host = host_of(&request);
    let path = request.uri().path().to_string();
    let app = {
        let store = web.store.clone();
        let host = host.clone();
        tokio::task::spawn_blocking(move || store.app_by_host(&host))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    };
    if let Some(app) = app {
        return crate::proxy::forward(&app, host, request).await;
    }
    if path == "/healthz" {
        return if web.ready.load(std::sync::atomic::Ordering::Acquire) {
            (StatusCode::OK, "ok\n").into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
        };
    }
    let (label, domain) = host.split_once('.').unwrap_or(("", host.as_str()));
    let is_ours = |domain: &str| {
        let store = web.store.clone();
        let domain = domain.to_string();
        async move {
            tokio::task::spawn_blocking(move || store.domain(&domain).ok().flatten().is_some())
                .await
                .unwrap_or(false)
        }
    };
    if label == "mta-sts" && path == "/.well-known/mta-sts.txt" && is_ours(domain).await {
        // RFC 8461 §3.2: CRLF-separated key/value pairs; a week of max_age.
        let policy = format!(
            "version: STSv1\r\nmode: enforce\r\nmx: {}\r\nmax_age: 604800\r\n",
            web.hostname
        );
        return ([(header::CONTENT_TYPE, "text/plain")], policy).into_response();
    }
    let autoconfig_path =
        path == "/mail/config-v1.1.xml" || path == "/.well-known/autoconfig/mail/config-v1.1.xml";
    if autoconfig_path {
        let domain = if label == "autoconfig" {
            domain.to_string()
        } else {
            host.clone()
        };
        if is_ours(&domain).await {
            return (
                [(header::CONTENT_TYPE, "application/xml")],
                autoconfig(&web, &domain),
            )
                .into_response();
        }
    }
    (StatusCode::NOT_FOUND, "Not found\n").into_response()
}

/// Thunderbird's autoconfiguration file for `domain`: IMAP over TLS, submission over
/// TLS and with STARTTLS, the whole address as user name.
fn autoconfig(web: &Web, domain: &str) -> String {
    let host = xml_escape(&web.hostname);
    let domain = xml_escape(domain);
    let mut servers = String::new();
    if let Some(port) = web.imaps_port {
        servers.push_str(&server("incomingServer", "imap", &host, port, "SSL"));
    }
    if let Some(port) = web.submissions_port {
        servers.push_str(&server("outgoingServer", "smtp", &host, port, "SSL"));
    }
    if let Some(port) = web.submission_port {
        servers.push_str(&server("outgoingServer", "smtp", &host, port, "STARTTLS"));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    <displayName>{domain}</displayName>\n    <displayShortName>{domain}</displayShortName>\n{servers}  </emailProvider>\n</clientConfig>\n"
    )
}

fn server(kind: &str, protocol: &str, host: &str, port: u16, socket: &str) -> String {
    format!(
        "    <{kind} type=\"{protocol}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </{kind}>\n"
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The headers every HTTPS response carries (SPEC-security "HTTP Security"): HSTS for
/// two years with subdomains, no MIME sniffing, the XSS filter, no download opening,
/// no cross-domain policies, the referrer policy; framing only by the same origin, and
/// on the admin host (`my.<domain>`) no framing at all and a strict CSP.
async fn security_headers(
    State(_web): State<Arc<Web>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let admin = host_of(&request).starts_with("my.");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let own_referrer_policy = headers.contains_key(header::REFERRER_POLICY);
    let mut set = |name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    );
    set("x-content-type-options", "nosniff");
    set("x-xss-protection", "1; mode=block");
    set("x-download-options", "noopen");
    set("x-permitted-cross-domain-policies", "none");
    if admin {
        set("x-frame-options", "DENY");
        set(
            "content-security-policy",
            "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        );
        set("referrer-policy", "no-referrer-when-downgrade");
    } else {
        set("x-frame-options", "SAMEORIGIN");
        if !own_referrer_policy {
            set("referrer-policy", "no-referrer-when-downgrade");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str) -> Request {
        Request::builder()
            .uri("/x")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap_or_default()
    }

    #[test]
    fn hosts_lose_ports_and_case() {
        assert_eq!(
            host_of(&request("Mail.Example.TEST:8443")),
            "mail.example.test"
        );
        assert_eq!(host_of(&request("[::1]:443")), "[::1]");
        assert_eq!(host_of(&request("example.test.")), "example.test");
    }

    #[test]
    fn autoconfig_names_every_offered_service() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Arc::new(store::Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        let auth = Arc::new(store::login::Authenticator::new(
            store.clone(),
            &Default::default(),
        ));
        let web = Web {
            config: Arc::new(crate::config::Config::default()),
            api: crate::api::Api::new(&Default::default(), auth),
            admin_host: String::new(),
            ready: std::sync::atomic::AtomicBool::new(true),
            limiter: common::rate::KeyedBuckets::new(1, 1),
            over_limit_log: common::rate::LogOnce::new(Duration::from_secs(60)),
            store,
            hostname: "mail.example.test".into(),
            https_port: 443,
            submissions_port: Some(465),
            submission_port: Some(587),
            imaps_port: Some(993),
            http01: Default::default(),
            deny: Arc::new(common::deny::DenyList::disabled()),
        };
        let xml = autoconfig(&web, "example.test");
        assert!(xml.contains("<port>993</port>\n      <socketType>SSL</socketType>"));
        assert!(xml.contains("<port>465</port>\n      <socketType>SSL</socketType>"));
        assert!(xml.contains("<port>587</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(xml.contains("<hostname>mail.example.test</hostname>"));
    }
}
