//! DKIM keys and the outbound queue.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::{ApiError, ApiResult, blocking, caller};
use crate::admin::{self, Request as Command};
use crate::web::Web;

fn time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A domain's keys with their DNS records.
fn keys_json(store: &store::Store, domain: &str) -> Result<serde_json::Value, ApiError> {
    if store.domain(domain)?.is_none() {
        return Err(store::Error::NotFound(format!("the domain {domain}")).into());
    }
    let keys: Vec<_> = store
        .dkim_keys(domain)?
        .into_iter()
        .map(|k| {
            let record = dkim::keys::Algorithm::from_key_type(&k.algorithm).map(|algorithm| {
                dkim::records::dkim_text(&dkim::records::DkimRecordKey {
                    selector: k.selector.clone(),
                    algorithm,
                    public_key_b64: k.public_key_b64.clone(),
                })
            });
            json!({
                "selector": k.selector,
                "algorithm": k.algorithm,
                "active": k.active,
                "created": time(k.created),
                "record_name": format!("{}._domainkey.{}", k.selector, k.domain),
                "record": record,
            })
        })
        .collect();
    Ok(json!(keys))
}

pub(super) async fn list_dkim(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let keys = blocking(move || keys_json(&store, &name.to_ascii_lowercase())).await?;
    Ok(Json(keys).into_response())
}

/// Runs an admin command as the caller and answers with the domain's keys.
async fn dkim_command(
    web: Arc<Web>,
    request: Request,
    domain: String,
    make: impl FnOnce(String) -> Command + Send + 'static,
    status: StatusCode,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let store = web.store.clone();
    let config = web.config.clone();
    let keys = blocking(move || {
        let domain = domain.to_ascii_lowercase();
        if store.domain(&domain)?.is_none() {
            return Err(store::Error::NotFound(format!("the domain {domain}")).into());
        }
        admin::execute_from(
            &store,
            &config,
            &make(domain.clone()),
            &caller.email,
            caller.ip,
        )?;
        keys_json(&store, &domain)
    })
    .await?;
    Ok((status, Json(keys)).into_response())
}

pub(super) async fn rotate_dkim(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    dkim_command(
        web,
        request,
        name,
        |domain| Command::DkimRotate { domain },
        StatusCode::CREATED,
    )
    .await
}

pub(super) async fn activate_dkim(
    State(web): State<Arc<Web>>,
    Path((name, selector)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    dkim_command(
        web,
        request,
        name,
        move |domain| Command::DkimActivate { domain, selector },
        StatusCode::OK,
    )
    .await
}

pub(super) async fn retire_dkim(
    State(web): State<Arc<Web>>,
    Path((name, selector)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    dkim_command(
        web,
        request,
        name,
        move |domain| Command::DkimRetire { domain, selector },
        StatusCode::OK,
    )
    .await
}

fn queued_json(m: &store::QueuedMessage) -> serde_json::Value {
    json!({
        "id": m.id,
        "sender": m.sender,
        "size": m.size,
        "created": time(m.created),
        "next_attempt": time(m.next_attempt),
        "attempts": m.attempts,
        "recipients": m.recipients.iter().map(|r| {
            let (state, detail) = match &r.state {
                store::RecipientState::Pending => ("pending", r.last_error.clone()),
                store::RecipientState::Delivered { reply } => ("delivered", Some(reply.clone())),
                store::RecipientState::Failed { status, reply, .. } => {
                    ("failed", Some(format!("{status} {reply}")))
                }
            };
            json!({"address": r.address, "state": state, "detail": detail})
        }).collect::<Vec<_>>(),
    })
}

pub(super) async fn list_queue(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let queued = blocking(move || Ok(store.queued()?)).await?;
    Ok(Json(queued.iter().map(queued_json).collect::<Vec<_>>()).into_response())
}

pub(super) async fn retry_queued(
    State(web): State<Arc<Web>>,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let Path(id) =
        id.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let store = web.store.clone();
    let message = blocking(move || {
        let m = store.retry_queued(id)?;
        caller.log(&store, "queue-retry", id.to_string());
        Ok(m)
    })
    .await?;
    Ok(Json(queued_json(&message)).into_response())
}

pub(super) async fn drop_queued(
    State(web): State<Arc<Web>>,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let Path(id) =
        id.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let store = web.store.clone();
    blocking(move || {
        store.remove_queued(id)?;
        caller.log(&store, "queue-drop", id.to_string());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
