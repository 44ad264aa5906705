//! The admin API (`/api/v1`, JSON), served on the admin host only.
//!
//! Authentication is a layer over every route that denies by default: a route is
//! public only by being listed in [`PUBLIC`] (the login and the OpenAPI document);
//! every other one needs `Authorization: Bearer TOKEN` of an account that, at that
//! request, still exists, is an administrator and has the password it logged in with.
//! `POST /api/v1/login` with `{"email", "password"}` of an administrator answers
//! `{"token", "expires_at"}` (a wrong password and a non-administrator get the same
//! `401`); tokens are stored as SHA-256 digests, survive a restart and end at
//! `POST /api/v1/logout`, on a password change, a demotion or a deletion. Login
//! attempts are limited per client IP (a bucket of 10 refilled at 10 a second,
//! `[admin] login_attempts_per_second`) on top of the failed-login limiter every
//! protocol shares. Errors are `{"code", "message"}` with a stable code. Every change
//! goes to the activity log with the administrator and the client's address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::web::{Web, client_ip};

mod directory;
mod mail;
pub mod metrics;
mod openapi;
mod system;

/// `[admin]`: the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The host name the admin API is served on (and the one host with the admin
    /// security headers). Empty: `my.<domain>` of each of our domains.
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

/// The routes anyone may call (method, path under `/api/v1`); every other route,
/// and any path that matches none, needs an administrator's token.
pub const PUBLIC: &[(&str, &str)] = &[("POST", "/login"), ("GET", "/openapi.json")];

/// The admin API's state: the login limiter and the token lifetime (the tokens are in
/// the store).
pub struct Api {
    login_limiter: common::rate::KeyedBuckets<IpAddr>,
    token_life: Duration,
    auth: Arc<store::login::Authenticator>,
}

impl Api {
    /// The API with the `[admin]` settings, checking passwords with `auth`.
    pub fn new(config: &AdminConfig, auth: Arc<store::login::Authenticator>) -> Api {
        let rate = config.login_attempts_per_second.max(1);
        Api {
            login_limiter: common::rate::KeyedBuckets::new(rate, rate),
            token_life: Duration::from_secs(config.token_hours.max(1) * 3600),
            auth,
        }
    }
}

/// An API error: status, stable code, message.
pub(crate) struct ApiError(pub StatusCode, pub &'static str, pub String);

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

pub(crate) type ApiResult = Result<Response, ApiError>;

/// The `/api/v1` routes.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route(
            "/users",
            get(directory::list_users).post(directory::create_user),
        )
        .route(
            "/users/{email}",
            delete(directory::delete_user).patch(directory::update_user),
        )
        .route(
            "/domains",
            get(directory::list_domains).post(directory::create_domain),
        )
        .route("/domains/{name}", delete(directory::delete_domain))
        .route(
            "/aliases",
            get(directory::list_aliases).post(directory::create_alias),
        )
        .route(
            "/aliases/{address}",
            delete(directory::delete_alias).put(directory::replace_alias),
        )
        .route("/domains/{name}/dkim", get(mail::list_dkim))
        .route("/domains/{name}/dkim/rotate", post(mail::rotate_dkim))
        .route("/domains/{name}/dkim/{selector}", delete(mail::retire_dkim))
        .route(
            "/domains/{name}/dkim/{selector}/activate",
            post(mail::activate_dkim),
        )
        .route("/domains/{name}/dns", get(system::check_dns))
        .route("/queue", get(mail::list_queue))
        .route("/queue/{id}", delete(mail::drop_queued))
        .route("/queue/{id}/retry", post(mail::retry_queued))
        .route("/apps", get(system::list_apps).post(system::create_app))
        .route(
            "/apps/{name}",
            delete(system::delete_app).patch(system::update_app),
        )
        .route("/log", get(system::activity_log))
        .route("/config", get(system::effective_config))
        .route("/certificates", get(metrics::list_certificates))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .with_state(web.clone())
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            |state, request, next| require_admin(state, request, next, PUBLIC),
        ))
        .layer(axum::middleware::from_fn_with_state(web, only_admin_host))
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "not_found", "No such route".into())
}

/// The API answers only on the admin host ([`Web::is_admin_host`]).
pub(crate) async fn only_admin_host(
    State(web): State<Arc<Web>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if web.is_admin_host(&crate::web::host_of(&request)).await {
        next.run(request).await
    } else {
        not_found().await.into_response()
    }
}

/// Runs store work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
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

/// Hex SHA-256 of a token: what the store keeps.
fn token_digest(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// A digest of an account's password hash: a token made under one password is no good
/// under another.
fn credential(account: &store::Account) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, account.password_hash.as_bytes());
    hex(&digest.as_ref()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn login(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let ip = client_ip(&request).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Err(wait) = web.api.login_limiter.acquire(&ip) {
        return Ok(crate::web::too_many(
            wait,
            Json(
                json!({"code": "rate_limited", "message": "Too many login attempts, try again later"}),
            ),
        ));
    }
    let Login { email, password } = json_body(request).await?;
    let auth = web.api.auth.clone();
    // A wrong password and the right password of an account that is no administrator
    // get the same answer: the API must not confirm a password it does not accept.
    let refused = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Wrong email or password, or not an administrator".into(),
        )
    };
    let account = blocking(
        move || match auth.login(&email, &password, ip, "admin-api") {
            Ok(account) => Ok(account),
            Err(store::login::LoginError::Limited(_)) => Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many failed logins from this address, try again later".into(),
            )),
            Err(store::login::LoginError::Failed) => Err(refused()),
            Err(store::login::LoginError::Unavailable(e)) => {
                Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))
            }
        },
    )
    .await?;
    if !account.admin {
        return Err(refused());
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let token = hex(&bytes);
    let expires = SystemTime::now() + web.api.token_life;
    let grant = store::AdminToken {
        email: account.email.clone(),
        expires,
        credential: credential(&account),
    };
    let (store, digest) = (web.store.clone(), token_digest(&token));
    blocking(move || {
        store.remove_admin_tokens(None, SystemTime::now())?;
        store.put_admin_token(&digest, &grant)?;
        Ok(())
    })
    .await?;
    Ok(Json(json!({
        "token": token,
        "expires_at": humantime::format_rfc3339_seconds(expires).to_string(),
    }))
    .into_response())
}

/// `POST /api/v1/logout`: the token of this request ends.
async fn logout(State(web): State<Arc<Web>>, request: Request) -> ApiResult {
    let caller = caller(&web, &request)?;
    let store = web.store.clone();
    blocking(move || {
        store.remove_admin_token(&caller.token)?;
        caller.log(&store, "admin-logout", String::new());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Send Authorization: Bearer TOKEN from POST /api/v1/login".into(),
    )
}

/// The layer in front of every route: `public` routes pass; any other request needs
/// a valid administrator's token ([`authorize`]), and its handler finds the
/// [`Caller`] in the request's extensions.
pub(crate) async fn require_admin(
    State(web): State<Arc<Web>>,
    mut request: Request,
    next: axum::middleware::Next,
    public: &'static [(&'static str, &'static str)],
) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    if public
        .iter()
        .any(|(m, p)| Method::from_bytes(m.as_bytes()).is_ok_and(|m| m == method) && *p == path)
    {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let Some(token) = token else {
        return unauthorized().into_response();
    };
    let ip = client_ip(&request);
    let store = web.store.clone();
    match blocking(move || authorize(&store, &token, ip)).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// The administrator `token` belongs to, checked now: the token is known and
/// unexpired, and its account exists, is an administrator and has the password it
/// had at login. A token that fails any of it is removed.
fn authorize(store: &store::Store, token: &str, ip: Option<IpAddr>) -> Result<Caller, ApiError> {
    let digest = token_digest(token);
    let Some(grant) = store.admin_token(&digest)? else {
        return Err(unauthorized());
    };
    let valid = grant.expires > SystemTime::now()
        && store
            .account(&grant.email)?
            .is_some_and(|a| a.admin && credential(&a) == grant.credential);
    if !valid {
        store.remove_admin_token(&digest)?;
        return Err(unauthorized());
    }
    Ok(Caller {
        email: grant.email,
        ip,
        token: digest,
        expires: grant.expires,
    })
}

/// Who is calling: put in the request by [`require_admin`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub email: String,
    pub ip: Option<IpAddr>,
    /// The digest of the token the request came with.
    token: String,
    /// When that token expires.
    expires: SystemTime,
}

impl Caller {
    /// Records a change in the activity log.
    pub fn log(&self, store: &store::Store, action: &str, detail: String) {
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

/// The caller of a request, which [`require_admin`] let through; `401` otherwise.
pub(crate) fn caller(_web: &Web, request: &Request) -> Result<Caller, ApiError> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(unauthorized)
}

/// Records `caller`'s token again under its account's current password (after an
/// administrator changed their own password, which ended all their tokens), with the
/// expiry it had.
pub(crate) fn renew_token(store: &store::Store, caller: &Caller) -> Result<(), ApiError> {
    let Some(account) = store.account(&caller.email)? else {
        return Ok(());
    };
    let grant = store::AdminToken {
        email: account.email.clone(),
        expires: caller.expires,
        credential: credential(&account),
    };
    store.put_admin_token(&caller.token, &grant)?;
    Ok(())
}

/// Ends every token of `email` (its password, admin right or existence changed).
pub(crate) fn revoke_tokens(store: &store::Store, email: &str) {
    if let Err(e) = store.remove_admin_tokens(Some(email), SystemTime::now()) {
        tracing::error!(error = %e, email, "could not end the admin tokens");
    }
}

/// Reads a JSON body of type `T`, answering `400 bad_request` with the reason.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    request: Request,
) -> Result<T, ApiError> {
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

/// A refusal of the admin commands (`postern` CLI), as `422 refused`.
impl From<crate::admin::Refusal> for ApiError {
    fn from(r: crate::admin::Refusal) -> Self {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, "refused", r.0)
    }
}
