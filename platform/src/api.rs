//! The admin API (`/api/v1`, JSON), served on the admin host only.
//!
//! `POST /api/v1/login` with `{"email", "password"}` of an administrator answers
//! `{"token", "expires_at"}`; every other route needs `Authorization: Bearer TOKEN`.
//! Login attempts are limited per client IP (a bucket of 10 refilled at 10 a second,
//! `[admin] login_attempts_per_second`) on top of the failed-login limiter every
//! protocol shares. Errors are `{"code", "message"}` with a stable code. Every change
//! goes to the activity log with the administrator and the client's address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::web::{Web, client_ip};

/// `[admin]`: the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The host name the admin API is served on. Empty: `my.<first domain>`.
    pub host: String,
    /// Login attempts one client IP may make per second (a bucket of this size,
    /// refilled at this rate); more get `429`.
    pub login_attempts_per_second: u32,
    /// How long a login token is valid, in hours.
    pub token_hours: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            host: String::new(),
            login_attempts_per_second: 10,
            token_hours: 12,
        }
    }
}

/// A token handed out at login.
#[derive(Debug, Clone)]
struct Grant {
    email: String,
    expires: SystemTime,
}

/// The admin API's state: tokens (in memory: a restart logs everybody out) and the
/// login limiter.
pub struct Api {
    tokens: Mutex<HashMap<String, Grant>>,
    login_limiter: common::rate::KeyedBuckets<IpAddr>,
    token_life: Duration,
    auth: Arc<store::login::Authenticator>,
}

impl Api {
    /// The API with the `[admin]` settings, checking passwords with `auth`.
    pub fn new(config: &AdminConfig, auth: Arc<store::login::Authenticator>) -> Api {
        let rate = config.login_attempts_per_second.max(1);
        Api {
            tokens: Mutex::new(HashMap::new()),
            login_limiter: common::rate::KeyedBuckets::new(rate, rate),
            token_life: Duration::from_secs(config.token_hours.max(1) * 3600),
            auth,
        }
    }
}

/// An API error: status, stable code, message.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"code": self.1, "message": self.2}))).into_response()
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        let (status, code) = match &e {
            store::Error::Exists(_) => (StatusCode::CONFLICT, "exists"),
            store::Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            store::Error::NoSuchDomain(_) => (StatusCode::UNPROCESSABLE_ENTITY, "no_such_domain"),
            store::Error::NotEmpty(_) => (StatusCode::CONFLICT, "not_empty"),
            store::Error::InvalidAddress(_) | store::Error::Invalid(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
            }
            _ => {
                tracing::error!(error = %e, "admin API: store failure");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        ApiError(status, code, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

/// The `/api/v1` routes.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{email}", delete(delete_user).patch(update_user))
        .route("/domains", get(list_domains).post(create_domain))
        .route("/domains/{name}", delete(delete_domain))
        .fallback(not_found)
        .with_state(web.clone())
        .layer(axum::middleware::from_fn_with_state(web, only_admin_host))
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "not_found", "No such route".into())
}

/// The API answers only on the admin host: `[admin] host`, or `my.<domain>` for one
/// of our domains when that is empty.
async fn only_admin_host(
    State(web): State<Arc<Web>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let host = crate::web::host_of(&request);
    let allowed = if web.admin_host.is_empty() {
        match host.strip_prefix("my.") {
            Some(domain) => {
                let store = web.store.clone();
                let domain = domain.to_string();
                tokio::task::spawn_blocking(move || store.domain(&domain).ok().flatten().is_some())
                    .await
                    .unwrap_or(false)
            }
            None => false,
        }
    } else {
        host == web.admin_host
    };
    if allowed {
        next.run(request).await
    } else {
        not_found().await.into_response()
    }
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed".into(),
        ))
    })
}

#[derive(Deserialize)]
struct Login {
    email: String,
    password: String,
}

async fn login(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let ip = client_ip(&request).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Err(wait) = web.api.login_limiter.acquire(&ip) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds.max(1).to_string())],
            Json(json!({"code": "rate_limited", "message": "Too many login attempts, try again later"})),
        )
            .into_response());
    }
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "unreadable body".into(),
            )
        })?;
    let Login { email, password } = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected {{\"email\", \"password\"}}: {e}"),
        )
    })?;
    let auth = web.api.auth.clone();
    let account = blocking(
        move || match auth.login(&email, &password, ip, "admin-api") {
            Ok(account) => Ok(account),
            Err(store::login::LoginError::Limited(_)) => Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many failed logins from this address, try again later".into(),
            )),
            Err(store::login::LoginError::Failed) => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Wrong email or password".into(),
            )),
            Err(store::login::LoginError::Unavailable(e)) => {
                Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))
            }
        },
    )
    .await?;
    if !account.admin {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "not_admin",
            format!("{} is not an administrator", account.email),
        ));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let expires = SystemTime::now() + web.api.token_life;
    {
        let mut tokens = web.api.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        tokens.retain(|_, g| g.expires > now);
        tokens.insert(
            token.clone(),
            Grant {
                email: account.email.clone(),
                expires,
            },
        );
    }
    Ok(Json(json!({
        "token": token,
        "expires_at": humantime::format_rfc3339_seconds(expires).to_string(),
    }))
    .into_response())
}

/// The administrator a request's bearer token belongs to, with the client's address.
fn authorize(
    web: &Web,
    request_headers: &axum::http::HeaderMap,
    ip: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send Authorization: Bearer TOKEN from POST /api/v1/login".into(),
        )
    };
    let token = request_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let tokens = web.api.tokens.lock().unwrap_or_else(|e| e.into_inner());
    match tokens.get(token.trim()) {
        Some(grant) if grant.expires > SystemTime::now() => Ok(Caller {
            email: grant.email.clone(),
            ip,
        }),
        _ => Err(unauthorized()),
    }
}

/// Who is calling.
struct Caller {
    email: String,
    ip: Option<IpAddr>,
}

impl Caller {
    /// Records a change in the activity log.
    fn log(&self, store: &store::Store, action: &str, detail: String) {
        let event = store::AuditEvent {
            actor: self.email.clone(),
            action: action.to_string(),
            ip: self.ip,
            detail,
        };
        if let Err(e) = store.log_event(&event) {
            tracing::error!(error = %e, "could not write the activity log");
        }
    }
}

/// Extracts the caller from the request parts.
macro_rules! caller {
    ($web:expr, $request:expr) => {
        authorize(&$web, $request.headers(), client_ip(&$request))?
    };
}

fn user_json(a: &store::Account) -> serde_json::Value {
    json!({
        "email": a.email,
        "quota_bytes": a.quota_bytes,
        "used_bytes": a.used_bytes,
        "admin": a.admin,
    })
}

async fn list_users(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller!(web, request);
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

/// Reads a JSON body of type `T`, answering `400 bad_request` with the reason.
async fn json_body<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "unreadable body".into(),
            )
        })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
}

async fn create_user(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let caller = caller!(web, request);
    let new: NewUser = json_body(request).await?;
    let store = web.store.clone();
    let (account, generated) = blocking(move || {
        let (password, generated) = match new.password {
            Some(p) => {
                common::auth::check_policy(&p).map_err(|e| {
                    ApiError(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "weak_password",
                        e.to_string(),
                    )
                })?;
                (p, None)
            }
            None => {
                let p = common::auth::generate_password().map_err(|e| {
                    ApiError(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        e.to_string(),
                    )
                })?;
                (p.clone(), Some(p))
            }
        };
        let hash = common::auth::hash_password(&password).map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        })?;
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

async fn update_user(
    State(web): State<Arc<Web>>,
    Path(email): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller!(web, request);
    let change: UserChange = json_body(request).await?;
    let store = web.store.clone();
    let account = blocking(move || {
        if store.account(&email)?.is_none() {
            return Err(store::Error::NotFound(format!("the account {email}")).into());
        }
        if let Some(p) = &change.password {
            common::auth::check_policy(p).map_err(|e| {
                ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "weak_password",
                    e.to_string(),
                )
            })?;
            let hash = common::auth::hash_password(p).map_err(|e| {
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            })?;
            store.set_password(&email, &hash)?;
            caller.log(&store, "user-passwd", email.clone());
        }
        if let Some(q) = change.quota_bytes {
            store.set_quota(&email, q)?;
            caller.log(&store, "user-quota", format!("{email} {q}"));
        }
        if let Some(a) = change.admin {
            store.set_admin(&email, a)?;
            caller.log(&store, "user-admin", format!("{email} {a}"));
        }
        store
            .account(&email)?
            .ok_or_else(|| store::Error::NotFound(format!("the account {email}")).into())
    })
    .await?;
    Ok(Json(user_json(&account)).into_response())
}

async fn delete_user(
    State(web): State<Arc<Web>>,
    Path(email): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller!(web, request);
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
        caller.log(&store, "user-del", email.to_ascii_lowercase());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_domains(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    caller!(web, request);
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

async fn create_domain(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let caller = caller!(web, request);
    let new: NewDomain = json_body(request).await?;
    let store = web.store.clone();
    let domain = blocking(move || {
        let domain = store.add_domain(&new.name)?;
        crate::admin::generate_dkim_keys(&store, &domain.name, true)
            .map_err(|r| ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", r.0))?;
        caller.log(&store, "domain-add", domain.name.clone());
        Ok(domain)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"name": domain.name}))).into_response())
}

async fn delete_domain(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let caller = caller!(web, request);
    let store = web.store.clone();
    blocking(move || {
        store.delete_domain(&name)?;
        caller.log(&store, "domain-del", name.to_ascii_lowercase());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
