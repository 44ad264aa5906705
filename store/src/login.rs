//! Logins for every protocol: the failed-login limiter, the password check against
//! the account store and an activity-log entry for each success, failure and refusal.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::auth::{self, FailedLogins};

use crate::{Account, AuditEvent, Store};

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many failed logins from this IP: try again after the duration.
    #[error("too many failed logins from this address, try again later")]
    Limited(Duration),
    /// Unknown account or wrong password (deliberately the same answer).
    #[error("invalid credentials")]
    Failed,
    /// The store could not be read.
    #[error("login temporarily unavailable: {0}")]
    Unavailable(String),
}

/// Checks credentials for SMTP AUTH, IMAP, ManageSieve and the admin API.
#[derive(Debug)]
pub struct Authenticator {
    store: Arc<Store>,
    limiter: FailedLogins,
}

impl Authenticator {
    /// An authenticator over `store` with the `[auth]` limits.
    pub fn new(store: Arc<Store>, config: &auth::Config) -> Self {
        Authenticator {
            store,
            limiter: FailedLogins::new(config),
        }
    }

    /// Checks `user`'s `password` for a login from `ip` to `service` (`imap`,
    /// `submission`...). Slow on purpose (argon2): call it from a blocking thread.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        service: &str,
    ) -> Result<Account, LoginError> {
        let user = user.trim().to_ascii_lowercase();
        let log = |action: &str| {
            let event = AuditEvent {
                actor: user.clone(),
                action: action.to_string(),
                ip: Some(ip),
                detail: service.to_string(),
            };
            if let Err(e) = self.store.log_event(&event) {
                tracing::error!(error = %e, "could not write the activity log");
            }
        };
        if let Err(wait) = self.limiter.check(ip) {
            log("login-limited");
            return Err(LoginError::Limited(wait));
        }
        let account = match self.store.account(&user) {
            Ok(account) => account,
            // Not an address at all: no such account, the same answer as a wrong password.
            Err(crate::Error::InvalidAddress(_)) => None,
            Err(e) => return Err(LoginError::Unavailable(e.to_string())),
        };
        let ok = match &account {
            Some(a) => auth::verify_password(password, &a.password_hash),
            None => {
                auth::verify_dummy(password);
                false
            }
        };
        match account {
            Some(account) if ok => {
                log("login");
                Ok(account)
            }
            _ => {
                self.limiter.record_failure(ip);
                log("login-failed");
                Err(LoginError::Failed)
            }
        }
    }
}
