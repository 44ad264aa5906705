//! Passing an app's HTTPS requests to its upstream over HTTP/1.1: the client's address
//! in `X-Forwarded-For` and `X-Real-IP` (replacing whatever the client sent, so the
//! app's logs and brute-force checks see the true address), `X-Forwarded-Proto:
//! https`, hop-by-hop headers dropped (RFC 9110 §7.6.1), WebSocket upgrades spliced
//! through. HTTP/2 requests go upstream as HTTP/1.1.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use crate::web::client_ip;

/// How long the upstream may take to accept the connection and answer the headers.
const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Hop-by-hop fields, never passed on (RFC 9110 §7.6.1), plus `Proxy-*`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forwards `request` (for `host`) to the app's upstream and returns its response.
pub async fn forward(app: &store::App, host: String, mut request: Request) -> Response {
    let client = client_ip(&request);
    let upgrade = wants_upgrade(request.headers());
    // The client's side of an upgrade, taken before the request is passed on.
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    let headers = &mut parts.headers;
    for name in [
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        headers.remove(name);
    }
    if let Some(ip) = client.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), ip.clone());
        headers.insert(HeaderName::from_static("x-real-ip"), ip);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    if let Ok(h) = HeaderValue::from_str(&host) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), h.clone());
        // HTTP/2 carries the host in :authority; HTTP/1.1 needs Host.
        headers.insert(header::HOST, h);
    }
    if let Some(protocol) = protocol.filter(|_| upgrade) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return (StatusCode::BAD_REQUEST, "Bad request target\n").into_response(),
    };
    parts.version = Version::HTTP_11;
    let outgoing = hyper::Request::from_parts(parts, body);

    let connect = async {
        let tcp = tokio::net::TcpStream::connect(&app.upstream).await?;
        let _ = tcp.set_nodelay(true);
        hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)
    };
    let (mut sender, connection) = match tokio::time::timeout(UPSTREAM_TIMEOUT, connect).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return bad_gateway(app, &e.to_string()),
        Err(_) => return bad_gateway(app, "connect timed out"),
    };
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut response =
        match tokio::time::timeout(UPSTREAM_TIMEOUT, sender.send_request(outgoing)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return bad_gateway(app, &e.to_string()),
            Err(_) => return bad_gateway(app, "no answer in time"),
        };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

fn bad_gateway(app: &store::App, error: &str) -> Response {
    tracing::warn!(app = %app.name, upstream = %app.upstream, %error, "app upstream failed");
    (
        StatusCode::BAD_GATEWAY,
        "The application is not answering\n",
    )
        .into_response()
}

/// Whether the request asks for a protocol upgrade (WebSocket).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes the hop-by-hop fields, and any field the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        assert!(!wants_upgrade(&h));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        let mut u = HeaderMap::new();
        u.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        u.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&u));
    }
}
