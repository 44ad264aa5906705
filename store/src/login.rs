//! Logins for every protocol: the failed-login limiter, the password check against
//! the account store and an activity-log entry for each success, failure and refusal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Called when an address is banned, with when the ban ends (the firewall adds it to
/// its ban set).
pub type OnBan = Box<dyn Fn(IpAddr, std::time::SystemTime) + Send + Sync>;

/// Checks credentials for SMTP AUTH, IMAP, ManageSieve and the admin API.
pub struct Authenticator {
    store: Arc<Store>,
    limiter: FailedLogins,
    cache: LoginCache,
    deny: Arc<common::deny::DenyList>,
    on_ban: Option<OnBan>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// Recently successful logins: user -> HMAC(process key, password hash NUL password)
/// and until when it counts. The key is random per process and never leaves memory.
struct LoginCache {
    key: ring::hmac::Key,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

/// Entries kept at most; past it, the expired go, then everything.
const LOGIN_CACHE_MAX: usize = 10_000;

impl LoginCache {
    fn new(ttl: Duration) -> LoginCache {
        let rng = ring::rand::SystemRandom::new();
        // A key that cannot be made leaves the cache off: every login is checked.
        let (key, ttl) = match ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng) {
            Ok(key) => (key, ttl),
            Err(_) => (
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[]),
                Duration::ZERO,
            ),
        };
        LoginCache {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn message(hash: &str, password: &str) -> Vec<u8> {
        [hash.as_bytes(), b"\0", password.as_bytes()].concat()
    }

    fn hit(&self, user: &str, hash: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(user) {
            Some((tag, until)) if *until > Instant::now() => {
                ring::hmac::verify(&self.key, &Self::message(hash, password), tag).is_ok()
            }
            _ => false,
        }
    }

    fn remember(&self, user: &str, hash: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let tag = ring::hmac::sign(&self.key, &Self::message(hash, password));
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= LOGIN_CACHE_MAX {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= LOGIN_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(
            user.to_string(),
            (tag.as_ref().to_vec(), Instant::now() + self.ttl),
        );
    }

    fn forget(&self, user: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }
}

impl Authenticator {
    /// An authenticator over `store` with the `[auth]` limits.
    pub fn new(store: Arc<Store>, config: &auth::Config) -> Self {
        Authenticator {
            store,
            limiter: FailedLogins::new(config),
            cache: LoginCache::new(Duration::from_secs(config.login_cache_seconds)),
            deny: Arc::new(common::deny::DenyList::disabled()),
            on_ban: None,
        }
    }

    /// Counts failed logins in `deny`, which bans an address past its threshold; each
    /// ban is recorded in the store (so a restart keeps it), logged in the activity log
    /// (`ip-banned`) and passed to `on_ban`.
    #[must_use]
    pub fn with_bans(mut self, deny: Arc<common::deny::DenyList>, on_ban: Option<OnBan>) -> Self {
        self.deny = deny;
        self.on_ban = on_ban;
        self
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
            common::metrics::inc("postern_logins_limited_total", Some(("service", service)));
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
            Some(a) if self.cache.hit(&user, &a.password_hash, password) => true,
            Some(a) => {
                let ok = auth::verify_password(password, &a.password_hash);
                if ok {
                    self.cache.remember(&user, &a.password_hash, password);
                } else {
                    self.cache.forget(&user);
                }
                ok
            }
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
                common::metrics::inc("postern_login_failures_total", Some(("service", service)));
                log("login-failed");
                if let Some(until) = self.deny.record_failure(ip) {
                    self.banned(ip, until);
                }
                Err(LoginError::Failed)
            }
        }
    }
}

impl Authenticator {
    fn banned(&self, ip: IpAddr, until: std::time::SystemTime) {
        let reason = "too many failed logins in a day";
        tracing::warn!(%ip, until = %humantime_rfc3339(until), "{reason}: address banned");
        if let Err(e) = self.store.add_ban(ip, until, reason) {
            tracing::error!(error = %e, "could not record the ban");
        }
        let event = AuditEvent {
            actor: "system".into(),
            action: "ip-banned".into(),
            ip: Some(ip),
            detail: format!("{reason}; until {}", humantime_rfc3339(until)),
        };
        if let Err(e) = self.store.log_event(&event) {
            tracing::error!(error = %e, "could not write the activity log");
        }
        if let Some(hook) = &self.on_ban {
            hook(ip, until);
        }
    }
}

fn humantime_rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_util;

    #[test]
    fn a_remembered_login_ends_with_a_password_change_and_failures_are_not_remembered() {
        let (_dir, store, _alice) = test_util::store_with_alice();
        let hash = auth::hash_password("Old-Pass-1").unwrap();
        store.set_password("alice@example.org", &hash).unwrap();
        let store = Arc::new(store);
        let config = auth::Config {
            attempts_per_second: 1000,
            login_cache_seconds: 300,
        };
        let a = Authenticator::new(store.clone(), &config);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(
            a.login("alice@example.org", "Old-Pass-1", ip, "imap")
                .is_ok()
        );
        // Remembered: the same credentials pass, others do not.
        assert!(a.cache.hit("alice@example.org", &hash, "Old-Pass-1"));
        assert!(!a.cache.hit("alice@example.org", &hash, "Old-Pass-2"));
        assert!(
            a.login("alice@example.org", "Old-Pass-1", ip, "imap")
                .is_ok()
        );
        assert!(matches!(
            a.login("alice@example.org", "Wrong-Pass-1", ip, "imap"),
            Err(LoginError::Failed)
        ));
        // A failure forgets the user; the next success is checked again.
        assert!(!a.cache.hit("alice@example.org", &hash, "Old-Pass-1"));
        assert!(
            a.login("alice@example.org", "Old-Pass-1", ip, "imap")
                .is_ok()
        );
        // A new password: the old one stops working at once.
        let new = auth::hash_password("New-Pass-1").unwrap();
        store.set_password("alice@example.org", &new).unwrap();
        assert!(matches!(
            a.login("alice@example.org", "Old-Pass-1", ip, "imap"),
            Err(LoginError::Failed)
        ));
        assert!(
            a.login("alice@example.org", "New-Pass-1", ip, "imap")
                .is_ok()
        );
        // Off: nothing remembered.
        let off = Authenticator::new(
            store,
            &auth::Config {
                attempts_per_second: 1000,
                login_cache_seconds: 0,
            },
        );
        assert!(
            off.login("alice@example.org", "New-Pass-1", ip, "imap")
                .is_ok()
        );
        assert!(!off.cache.hit("alice@example.org", &new, "New-Pass-1"));
    }
}
