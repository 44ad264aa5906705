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
            web.clone(),
            |state, request, next| super::require_admin(state, request, next, &[]),
        ))
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
                cert.info.not_after
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

/// One certificate the listeners serve: its file's name and path, and what it says.
struct Served {
    name: String,
    path: PathBuf,
    info: crate::certs::CertInfo,
}

/// Each certificate the listeners serve (the default and the SNI ones); files that
/// cannot be read or parsed are left out.
fn certificates(config: &crate::config::Config) -> Vec<Served> {
    crate::certs::files(config)
        .into_iter()
        .filter_map(|(name, path)| {
            let info = crate::certs::read(&path)?;
            Some(Served { name, path, info })
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
                "names": c.info.names,
                "issuer": c.info.issuer,
                "not_before": time(c.info.not_before),
                "not_after": time(c.info.not_after),
            })
        })
        .collect()
}
