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

mod accept;
pub mod reserved;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use accept::Caps;

/// `[http]`: plain HTTP, which only redirects to HTTPS, and what HTTP and HTTPS share.
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
    /// Connections one client IP may hold open to HTTP and HTTPS together; more are
    /// closed at accept.
    pub connections_per_ip: u32,
    /// Connections HTTP and HTTPS may hold open in all (never more than a quarter of
    /// the process's open-file limit, so the mail listeners always have room); more
    /// are closed at accept.
    pub max_connections: u32,
    /// A connection must finish its TLS handshake and send its first request head
    /// within this many seconds of being accepted, and each later request head within
    /// as many seconds; else it is closed.
    pub request_timeout_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: vec![SocketAddr::from(([0u16; 8], 80))],
            requests_per_second: 5000,
            connections_per_ip: 64,
            max_connections: 4096,
            request_timeout_seconds: 30,
        }
    }
}

/// `[https]`: the HTTPS front (MTA-STS policies, client autoconfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsConfig {
    /// Addresses for HTTPS (port 443). Empty: none.
    pub listen: Vec<SocketAddr>,
    /// Add `includeSubDomains` to `Strict-Transport-Security`: browsers then refuse
    /// plain HTTP on every subdomain of the names we serve, including hosts that are
    /// not ours. Turn it on only when all of them serve HTTPS.
    pub hsts_include_subdomains: bool,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        HttpsConfig {
            listen: vec![SocketAddr::from(([0u16; 8], 443))],
            hsts_include_subdomains: false,
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
    /// Open connections to HTTP and HTTPS, per address and in all.
    pub caps: Arc<Caps>,
    /// What administrative requests need of the running server.
    pub running: Arc<crate::running::Running>,
}

impl Web {
    fn listener(&self, router: Router, tls: Option<tokio_rustls::TlsAcceptor>) -> accept::Listener {
        accept::Listener {
            router,
            tls,
            deny: self.deny.clone(),
            caps: self.caps.clone(),
            request_timeout: Duration::from_secs(self.config.http.request_timeout_seconds.max(1)),
        }
    }

    /// Whether `host` (lower case, no port) is the admin host: `[admin] host`, or
    /// `my.<domain>` of one of our domains when that is empty.
    pub async fn is_admin_host(&self, host: &str) -> bool {
        if !self.admin_host.is_empty() {
            return host == self.admin_host;
        }
        match host.strip_prefix("my.") {
            Some(domain) => self.is_our_domain(domain).await,
            None => false,
        }
    }

    /// Whether `domain` is one of our mail domains.
    pub async fn is_our_domain(&self, domain: &str) -> bool {
        let store = self.store.clone();
        let domain = domain.to_string();
        tokio::task::spawn_blocking(move || store.domain(&domain).ok().flatten().is_some())
            .await
            .unwrap_or(false)
    }
}

/// The connection caps for `[http]`: `max_connections`, but never more than a quarter
/// of the open-file limit.
pub fn caps(config: &HttpConfig) -> Arc<Caps> {
    let files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let total = u64::from(config.max_connections).min(files / 4);
    Arc::new(Caps::new(
        config.connections_per_ip,
        usize::try_from(total).unwrap_or(usize::MAX),
    ))
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
    accept::run(listener, web.listener(router, None))
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
    accept::run(listener, web.listener(router, Some(acceptor)))
}

/// The client's address, put in every request's extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
struct Client(IpAddr);

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

/// Plain HTTP: `301` to HTTPS, same path and query, on the same host when it is one
/// of the names we serve, else on our host name: a `Host` header is never reflected.
async fn redirect(State(web): State<Arc<Web>>, request: Request) -> Response {
    let asked = host_of(&request);
    let host = {
        let (config, store) = (web.config.clone(), web.store.clone());
        let asked = asked.clone();
        tokio::task::spawn_blocking(move || {
            let ours = crate::certs::served_names(&config, &store);
            ours.into_iter()
                .find(|n| *n == asked)
                .unwrap_or_else(|| config.hostname.trim_end_matches('.').to_ascii_lowercase())
        })
        .await
        .unwrap_or_else(|_| web.hostname.clone())
    };
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
/// two years (with subdomains only when `[https] hsts_include_subdomains` says so), no
/// MIME sniffing, the XSS filter, no download opening, no cross-domain policies, the
/// referrer policy; framing only by the same origin, and on the admin host
/// ([`Web::is_admin_host`]) no framing at all and a strict CSP.
async fn security_headers(
    State(web): State<Arc<Web>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let admin = web.is_admin_host(&host_of(&request)).await;
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
        if web.config.https.hsts_include_subdomains {
            "max-age=63072000; includeSubDomains"
        } else {
            "max-age=63072000"
        },
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
            caps: Arc::new(Caps::new(1, 1)),
            running: Arc::new(crate::running::Running {
                deny: Arc::new(common::deny::DenyList::disabled()),
                tls: {
                    common::tls::write_self_signed(
                        &dir.path().join("tls"),
                        &["mail.example.test".into()],
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                    common::tls::Tls::load(&Default::default(), dir.path())
                        .unwrap_or_else(|e| panic!("{e}"))
                },
                privileged: crate::privsep::Privileged::Direct(Arc::new(
                    crate::config::Config::default(),
                )),
            }),
        };
        let xml = autoconfig(&web, "example.test");
        assert!(xml.contains("<port>993</port>\n      <socketType>SSL</socketType>"));
        assert!(xml.contains("<port>465</port>\n      <socketType>SSL</socketType>"));
        assert!(xml.contains("<port>587</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(xml.contains("<hostname>mail.example.test</hostname>"));
    }
}
