//! Prometheus metrics at `/metrics` on the admin host (an admin token needed): the
//! process-wide counters (connections, TLS handshakes, messages accepted and rejected
//! by reason, deliveries, login failures) and gauges read at scrape time (the queue,
//! each certificate's expiry).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::{ApiResult, blocking, caller};
use crate::web::Web;

/// The `/metrics` route, on the admin host only.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(web.clone())
        .layer(axum::middleware::from_fn_with_state(
            web,
            super::only_admin_host,
        ))
}

async fn metrics(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let config = web.config.clone();
    let text = blocking(move || {
        let mut text = common::metrics::render();
        let queued = store.queued()?;
        let recipients: usize = queued
            .iter()
            .map(|m| m.recipients.iter().filter(|r| r.state == store::RecipientState::Pending).count())
            .sum();
        let _ = writeln!(
            text,
            "# TYPE postern_queue_messages gauge\npostern_queue_messages {}\n# TYPE postern_queue_recipients_pending gauge\npostern_queue_recipients_pending {recipients}",
            queued.len()
        );
        let _ = writeln!(text, "# TYPE postern_certificate_expiry_timestamp_seconds gauge");
        for cert in certificates(&config) {
            let _ = writeln!(
                text,
                "postern_certificate_expiry_timestamp_seconds{{name=\"{}\"}} {}",
                common::metrics::escape(&cert.name),
                cert.not_after
            );
        }
        Ok(text)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /api/v1/certificates`: each certificate the listeners serve, its names and
/// when it expires.
pub(super) async fn list_certificates(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let config = web.config.clone();
    let list = blocking(move || Ok(certificate_details(&config))).await?;
    Ok(axum::Json(list).into_response())
}

/// The certificate files: the default pair's and each SNI one, by name.
fn certificate_files(config: &crate::config::Config) -> Vec<(String, PathBuf)> {
    let tls_dir = config.data_dir.join("tls");
    let default = if config.tls.cert.as_os_str().is_empty() {
        tls_dir.join("cert.pem")
    } else {
        config.tls.cert.clone()
    };
    let mut files: Vec<(String, PathBuf)> = vec![("default".into(), default)];
    if let Ok(entries) = std::fs::read_dir(tls_dir.join("sni")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("pem")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                files.push((stem.to_string(), path));
            }
        }
    }
    files.sort();
    files
}

/// What the API and the metrics say of a certificate.
struct CertInfo {
    name: String,
    path: PathBuf,
    names: Vec<String>,
    issuer: String,
    not_before: i64,
    not_after: i64,
}

/// Each certificate the listeners serve (the default and the SNI ones); files that
/// cannot be read or parsed are left out.
fn certificates(config: &crate::config::Config) -> Vec<CertInfo> {
    certificate_files(config)
        .into_iter()
        .filter_map(|(name, path)| {
            let pem = std::fs::read(&path).ok()?;
            let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
            let cert = pem.parse_x509().ok()?;
            let names = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|san| {
                    san.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(CertInfo {
                names,
                issuer: cert.issuer().to_string(),
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                name,
                path,
            })
        })
        .collect()
}

fn certificate_details(config: &crate::config::Config) -> Vec<serde_json::Value> {
    let time = |t: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0).unsigned_abs());
        humantime::format_rfc3339_seconds(t).to_string()
    };
    certificates(config)
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "path": c.path.display().to_string(),
                "names": c.names,
                "issuer": c.issuer,
                "not_before": time(c.not_before),
                "not_after": time(c.not_after),
            })
        })
        .collect()
}
