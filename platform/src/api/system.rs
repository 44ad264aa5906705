//! Apps, the activity log, the effective configuration and the DNS check.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, blocking, caller, json_body};
use crate::admin::{self, Request as Command};
use crate::web::Web;

fn app_json(a: &store::App) -> serde_json::Value {
    json!({"name": a.name, "host": a.host, "upstream": a.upstream})
}

pub(super) async fn list_apps(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let apps = blocking(move || Ok(store.apps()?)).await?;
    Ok(Json(apps.iter().map(app_json).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    name: String,
    upstream: String,
    #[serde(default)]
    host: Option<String>,
}

pub(super) async fn create_app(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let caller = caller(&web, &request)?;
    let new: NewApp = json_body(request).await?;
    let store = web.store.clone();
    let config = web.config.clone();
    let running = web.running.clone();
    let app = blocking(move || {
        let name = new.name.to_ascii_lowercase();
        if store.apps()?.iter().any(|a| a.name == name) {
            return Err(store::Error::Exists(format!("an app named {name}")).into());
        }
        let command = Command::AppAdd {
            name: name.clone(),
            upstream: new.upstream,
            host: new.host,
        };
        admin::execute_in(
            &store,
            &config,
            &command,
            &caller.email,
            caller.ip,
            Some(&running),
        )?;
        store
            .apps()?
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| store::Error::NotFound(format!("the app {name}")).into())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(app_json(&app))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppChange {
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    host: Option<String>,
}

/// Changes an app's upstream or host, in one commit.
pub(super) async fn update_app(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let change: AppChange = json_body(request).await?;
    let (store, config) = (web.store.clone(), web.config.clone());
    let running = web.running.clone();
    let app = blocking(move || {
        let name = name.to_ascii_lowercase();
        let Some(old) = store.apps()?.into_iter().find(|a| a.name == name) else {
            return Err(store::Error::NotFound(format!("the app {name}")).into());
        };
        if let Some(host) = &change.host {
            crate::web::reserved::check_app(&config, &store, None, host)?;
        }
        let host = change.host.unwrap_or(old.host);
        let upstream = change.upstream.unwrap_or(old.upstream);
        let app = store.update_app(&name, &host, &upstream)?;
        caller.log(
            &store,
            "app-update",
            format!("{} {} -> {}", app.name, app.host, app.upstream),
        );
        running.names_changed(&config, &store);
        Ok(app)
    })
    .await?;
    Ok(Json(app_json(&app)).into_response())
}

pub(super) async fn delete_app(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let (store, config) = (web.store.clone(), web.config.clone());
    let running = web.running.clone();
    blocking(move || {
        let name = name.to_ascii_lowercase();
        if !store.apps()?.iter().any(|a| a.name == name) {
            return Err(store::Error::NotFound(format!("the app {name}")).into());
        }
        // The one removal path: a container app's container, network and relay
        // account go with it.
        let command = Command::AppDel { name };
        admin::execute_in(
            &store,
            &config,
            &command,
            &caller.email,
            caller.ip,
            Some(&running),
        )?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Filters of the activity log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    /// Entries at or after this time (RFC 3339).
    since: Option<String>,
    /// Entries before this time (RFC 3339): the next page of older entries.
    until: Option<String>,
    /// Only this actor (an address, `cli:root`...).
    actor: Option<String>,
    /// Only this action (`login-failed`, `user-add`...).
    action: Option<String>,
    /// Only from this client address.
    ip: Option<IpAddr>,
    /// At most this many, the newest (default 100, at most 1000).
    limit: Option<usize>,
}

fn parse_time(what: &str, value: &Option<String>) -> Result<Option<SystemTime>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            humantime::parse_rfc3339_weak(v).map_err(|e| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("{what} must be an RFC 3339 time: {e}"),
                )
            })
        })
        .transpose()
}

pub(super) async fn activity_log(
    State(web): State<Arc<Web>>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> ApiResult {
    caller(&web, &request)?;
    let Query(q) =
        query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let since = parse_time("since", &q.since)?;
    let until = parse_time("until", &q.until)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = web.store.clone();
    let entries = blocking(move || {
        // The filters run over a bounded window of the newest entries.
        let all = store.events(since, 100_000)?;
        let mut out: Vec<_> = all
            .into_iter()
            .filter(|e| until.is_none_or(|u| e.time < u))
            .filter(|e| {
                q.actor
                    .as_ref()
                    .is_none_or(|a| e.event.actor.eq_ignore_ascii_case(a))
            })
            .filter(|e| q.action.as_ref().is_none_or(|a| &e.event.action == a))
            .filter(|e| q.ip.is_none_or(|ip| e.event.ip == Some(ip)))
            .collect();
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    })
    .await?;
    Ok(Json(
        entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "time": humantime::format_rfc3339_millis(e.time).to_string(),
                    "actor": e.event.actor,
                    "action": e.event.action,
                    "ip": e.event.ip.map(|ip| ip.to_string()),
                    "detail": e.event.detail,
                })
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// The configuration in effect, read-only (the TOML file is the one place to change
/// it), its secrets shown as `<redacted>`.
pub(super) async fn effective_config(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let value = serde_json::to_value(web.config.redacted())
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(value).into_response())
}

/// `postern dns check` for a domain: each record it needs, with the live verdict.
pub(super) async fn check_dns(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let config = web.config.clone();
    let text = blocking(move || Ok(admin::dns_records(&store, &config, &name)?)).await?;
    let expected: Vec<_> = text
        .lines()
        .filter_map(crate::dnssetup::parse_record)
        .collect();
    let resolver = common::dns::resolver(&web.config.dns).map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let checks = crate::dnssetup::check(&resolver, &expected).await;
    Ok(Json(
        checks
            .iter()
            .map(|c| {
                let (verdict, found) = match &c.verdict {
                    crate::dnssetup::Verdict::Ok => ("ok", None),
                    crate::dnssetup::Verdict::Missing => ("missing", None),
                    crate::dnssetup::Verdict::Wrong(found) => ("wrong", Some(found.clone())),
                    crate::dnssetup::Verdict::Failed(e) => ("unknown", Some(vec![e.clone()])),
                };
                json!({
                    "name": c.record.name,
                    "type": c.record.rtype,
                    "expected": c.record.data,
                    "verdict": verdict,
                    "found": found,
                })
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}
