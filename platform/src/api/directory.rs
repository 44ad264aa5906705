//! Users, domains and aliases.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, blocking, caller, json_body};
use crate::web::Web;

fn user_json(a: &store::Account) -> serde_json::Value {
    json!({
        "email": a.email,
        "quota_bytes": a.quota_bytes,
        "used_bytes": a.used_bytes,
        "admin": a.admin,
    })
}

pub(super) async fn list_users(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let users = blocking(move || Ok(store.accounts()?)).await?;
    Ok(Json(users.iter().map(user_json).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    quota_bytes: u64,
    #[serde(default)]
    admin: bool,
}

/// The password hashed, if it meets the policy (`422 weak_password` otherwise).
fn checked_hash(password: &str) -> Result<String, ApiError> {
    common::auth::check_policy(password).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            e.to_string(),
        )
    })?;
    common::auth::hash_password(password).map_err(unavailable)
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.to_string(),
    )
}

pub(super) async fn create_user(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let caller = caller(&web, &request)?;
    let new: NewUser = json_body(request).await?;
    let store = web.store.clone();
    let (account, generated) = blocking(move || {
        let (hash, generated) = match new.password {
            Some(p) => (checked_hash(&p)?, None),
            None => {
                let p = common::auth::generate_password().map_err(unavailable)?;
                (
                    common::auth::hash_password(&p).map_err(unavailable)?,
                    Some(p),
                )
            }
        };
        let account = store.add_account(&new.email, &hash)?;
        if new.quota_bytes > 0 {
            store.set_quota(&account.email, new.quota_bytes)?;
        }
        if new.admin {
            store.set_admin(&account.email, true)?;
        }
        caller.log(&store, "user-add", account.email.clone());
        let account = store.account(&account.email)?.unwrap_or(account);
        Ok((account, generated))
    })
    .await?;
    let mut body = user_json(&account);
    if let Some(p) = generated {
        body["password"] = json!(p);
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    quota_bytes: Option<u64>,
    #[serde(default)]
    admin: Option<bool>,
}

pub(super) async fn update_user(
    State(web): State<Arc<Web>>,
    Path(email): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let change: UserChange = json_body(request).await?;
    let own = caller.email.eq_ignore_ascii_case(&email);
    if own && change.admin == Some(false) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "self",
            "An administrator cannot take away their own admin right".into(),
        ));
    }
    let store = web.store.clone();
    let account = blocking(move || {
        if store.account(&email)?.is_none() {
            return Err(store::Error::NotFound(format!("the account {email}")).into());
        }
        if let Some(p) = &change.password {
            let hash = checked_hash(p)?;
            store.set_password(&email, &hash)?;
            // Every token of the account ends; one's own request keeps its token.
            super::revoke_tokens(&store, &email);
            if own {
                super::renew_token(&store, &caller)?;
            }
            caller.log(&store, "user-passwd", email.clone());
        }
        if let Some(q) = change.quota_bytes {
            store.set_quota(&email, q)?;
            caller.log(&store, "user-quota", format!("{email} {q}"));
        }
        if let Some(a) = change.admin {
            store.set_admin(&email, a)?;
            if !a {
                super::revoke_tokens(&store, &email);
            }
            caller.log(&store, "user-admin", format!("{email} {a}"));
        }
        store
            .account(&email)?
            .ok_or_else(|| store::Error::NotFound(format!("the account {email}")).into())
    })
    .await?;
    Ok(Json(user_json(&account)).into_response())
}

pub(super) async fn delete_user(
    State(web): State<Arc<Web>>,
    Path(email): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    if caller.email.eq_ignore_ascii_case(&email) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "self",
            "An administrator cannot delete their own account".into(),
        ));
    }
    let store = web.store.clone();
    blocking(move || {
        store.delete_account(&email)?;
        super::revoke_tokens(&store, &email);
        caller.log(&store, "user-del", email.to_ascii_lowercase());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_domains(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let domains = blocking(move || Ok(store.domains()?)).await?;
    Ok(Json(
        domains
            .iter()
            .map(|d| json!({"name": d.name}))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
}

pub(super) async fn create_domain(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let caller = caller(&web, &request)?;
    let new: NewDomain = json_body(request).await?;
    let (store, config, running) = (web.store.clone(), web.config.clone(), web.running.clone());
    let domain = blocking(move || {
        let domain = store.add_domain(&new.name)?;
        crate::admin::generate_dkim_keys(&store, &domain.name, true)
            .map_err(|r| ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", r.0))?;
        caller.log(&store, "domain-add", domain.name.clone());
        running.names_changed(&config, &store);
        Ok(domain)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"name": domain.name}))).into_response())
}

pub(super) async fn delete_domain(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let (store, config, running) = (web.store.clone(), web.config.clone(), web.running.clone());
    blocking(move || {
        store.delete_domain(&name)?;
        caller.log(&store, "domain-del", name.to_ascii_lowercase());
        running.names_changed(&config, &store);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn alias_json(a: &store::Alias) -> serde_json::Value {
    json!({"address": a.address, "targets": a.targets})
}

pub(super) async fn list_aliases(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller(&web, &request)?;
    let store = web.store.clone();
    let aliases = blocking(move || Ok(store.aliases()?)).await?;
    Ok(Json(aliases.iter().map(alias_json).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAlias {
    address: String,
    targets: Vec<String>,
}

pub(super) async fn create_alias(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let caller = caller(&web, &request)?;
    let new: NewAlias = json_body(request).await?;
    let store = web.store.clone();
    let alias = blocking(move || {
        let alias = store.add_alias(&new.address, &new.targets)?;
        caller.log(
            &store,
            "alias-add",
            format!("{} -> {}", alias.address, alias.targets.join(", ")),
        );
        Ok(alias)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(alias_json(&alias))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasTargets {
    targets: Vec<String>,
}

/// Replaces an alias's targets.
pub(super) async fn replace_alias(
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let change: AliasTargets = json_body(request).await?;
    let store = web.store.clone();
    let alias = blocking(move || {
        let alias = store.set_alias_targets(&address, &change.targets)?;
        caller.log(
            &store,
            "alias-update",
            format!("{} -> {}", alias.address, alias.targets.join(", ")),
        );
        Ok(alias)
    })
    .await?;
    Ok(Json(alias_json(&alias)).into_response())
}

pub(super) async fn delete_alias(
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller(&web, &request)?;
    let store = web.store.clone();
    blocking(move || {
        store.delete_alias(&address)?;
        caller.log(&store, "alias-del", address.to_ascii_lowercase());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
