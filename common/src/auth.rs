//! Accounts' secrets: the password policy, salted slow hashing (argon2id in PHC
//! strings; pbkdf2-sha256 PHC strings of imported accounts verified too), SASL PLAIN
//! decoding and the per-client-IP failed-login limiter.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rate::KeyedBuckets;

/// `[auth]`: login protection shared by every protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Failed logins allowed per client IP per second, across SMTP AUTH, IMAP,
    /// ManageSieve and the admin API (a bucket of this many, refilled at this rate).
    /// Past it, logins from that IP are refused without checking the password until
    /// the bucket refills.
    pub attempts_per_second: u32,
    /// For how long a successful login is remembered, in seconds, so that the same
    /// user with the same password logs in again without a new argon2 computation (a
    /// client reconnecting for every check, as many do). Only a keyed digest of the
    /// password hash and the password is kept, in memory; a password change ends it at
    /// once, and failures are never remembered. 0: check every login.
    pub login_cache_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            attempts_per_second: 10,
            login_cache_seconds: 300,
        }
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The password breaks the policy; the text names the rule.
    #[error("password refused: it needs {0}")]
    Policy(&'static str),
    /// Hashing failed (the random source or the hasher).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A SASL response that does not decode.
    #[error("malformed SASL response: {0}")]
    Sasl(&'static str),
}

/// The password policy: at least 8 characters, one uppercase letter, one digit and one
/// symbol. The error names the first rule broken, in those words.
pub fn check_policy(password: &str) -> Result<(), Error> {
    if password.chars().count() < 8 {
        return Err(Error::Policy("at least 8 characters"));
    }
    if !password.chars().any(char::is_uppercase) {
        return Err(Error::Policy("at least one uppercase letter"));
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err(Error::Policy("at least one digit"));
    }
    if !password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control())
    {
        return Err(Error::Policy("at least one symbol"));
    }
    Ok(())
}

/// Hashes `password` with argon2id (default parameters: 19 MiB, 2 passes) and a fresh
/// random 16-byte salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let password = password.to_string();
    on_hashing_thread(move || {
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Hash(e.to_string()))
    })
    .unwrap_or_else(|| Err(Error::Hash("the hashing thread failed".into())))
}

/// Runs `job` on one of the password-hashing threads (one per CPU) and waits for it.
/// Each argon2 computation takes 19 MiB and a whole CPU: running more at once only
/// adds memory without finishing any sooner. Keeping them on a few threads of their
/// own matters as much: the allocator keeps a freed 19 MiB block in the arena of the
/// thread that used it, so hashing on any of the many blocking threads left 19 MiB
/// behind in each (20 simultaneous logins grew the server to 330 MB). `None` if the
/// job panicked.
fn on_hashing_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    type Job = Box<dyn FnOnce() + Send>;
    static POOL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(e) => e.into_inner().recv(),
                        };
                        match job {
                            // A panicking job must not take the thread with it.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-hashing thread");
            }
        }
        std::sync::Mutex::new(tx)
    });
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done.send(job());
    });
    let sent = pool.lock().unwrap_or_else(|e| e.into_inner()).send(job);
    if let Err(std::sync::mpsc::SendError(job)) = sent {
        // No hashing thread could be started: hash here rather than not at all.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
    result.recv().ok()
}

/// Checks `password` against a stored PHC string: `$argon2id$`, `$argon2i$`,
/// `$argon2d$` or `$pbkdf2-sha256$` / `$pbkdf2-sha512$`. An unparsable hash never
/// verifies.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let (password, phc) = (password.to_string(), phc.to_string());
    on_hashing_thread(move || verify_here(&password, &phc)).unwrap_or(false)
}

fn verify_here(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let id = hash.algorithm.as_str();
    if id.starts_with("argon2") {
        argon2_verify(password.as_bytes(), &hash)
    } else if id.starts_with("pbkdf2") {
        pbkdf2::Pbkdf2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    } else {
        false
    }
}

/// The most memory a stored argon2 hash may ask for (1 GiB in 1 KiB blocks): an
/// imported hash with absurd parameters fails instead of exhausting memory.
const MAX_ARGON2_BLOCKS: usize = 1 << 20;

/// Verifies an argon2 PHC hash in memory this thread keeps from one hash to the next
/// (what `PasswordVerifier` does, minus allocating and freeing 19 MiB each time,
/// which left each freed block stranded in the allocator). Constant-time comparison.
fn argon2_verify(password: &[u8], hash: &PasswordHash) -> bool {
    use argon2::password_hash::phc::Output;
    use argon2::{Algorithm, Block, Params, Version};
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let blocks_needed = params.block_count();
    if blocks_needed > MAX_ARGON2_BLOCKS {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let computed = BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < blocks_needed {
            blocks.resize(blocks_needed, Block::default());
        }
        argon2::Argon2::new(algorithm, version.unwrap_or_default(), params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..blocks_needed])
            .is_ok()
    });
    computed && Output::new(&out).is_ok_and(|o| o == *expected)
}

/// A hash that never matches, verified when the account does not exist so that a
/// failed login costs the same time whether or not the account exists.
pub fn verify_dummy(password: &str) {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$lDEjoeBkqhlSUzIwiEFmpdsw5zZ7wOfDuLvrIqSx7jI";
    let _ = verify_password(password, DUMMY);
}

/// A random 20-character password that meets the policy, with no whitespace, quotes
/// or backslashes (safe to paste into a shell or a TOML file).
pub fn generate_password() -> Result<String, Error> {
    generate_password_of(20)
}

/// A random password of `len` characters (at least 4) that meets the policy, from the
/// same alphabet as [`generate_password`]: for machine credentials (an app's mail
/// relay login is 128).
pub fn generate_password_of(len: usize) -> Result<String, Error> {
    let len = len.max(4);
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"-_.+=@%";
    let all: Vec<u8> = [LOWER, UPPER, DIGIT, SYMBOL].concat();
    let mut random = vec![0u8; 2 * len];
    getrandom::fill(&mut random).map_err(|e| Error::Hash(e.to_string()))?;
    let pick = |set: &[u8], r: u8| char::from(set[usize::from(r) % set.len()]);
    let mut out: Vec<char> = vec![
        pick(UPPER, random[0]),
        pick(DIGIT, random[1]),
        pick(SYMBOL, random[2]),
        pick(LOWER, random[3]),
    ];
    out.extend(random[4..len].iter().map(|r| pick(&all, *r)));
    // Fisher-Yates with the remaining random bytes, so the required classes are not
    // always at the front.
    for i in (1..out.len()).rev() {
        let j = usize::from(random[len + i]) % (i + 1);
        out.swap(i, j);
    }
    Ok(out.into_iter().collect())
}

/// The parts of a SASL PLAIN response (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Identity to act as; empty when the client sent none.
    pub authzid: String,
    /// The identity whose password is given.
    pub authcid: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .finish_non_exhaustive()
    }
}

/// Decodes a SASL PLAIN message (already base64-decoded).
pub fn decode_plain(message: &[u8]) -> Result<PlainCredentials, Error> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Sasl(
            "PLAIN needs exactly three NUL-separated fields",
        ));
    };
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| Error::Sasl("PLAIN fields must be UTF-8"))
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(Error::Sasl("PLAIN needs a user name and a password"));
    }
    Ok(PlainCredentials {
        authzid: text(authzid)?,
        authcid: text(authcid)?,
        password: text(password)?,
    })
}

/// The per-client-IP failed-login limiter: each failed login takes a token; with none
/// left, logins from that IP are refused before any password is checked.
#[derive(Debug)]
pub struct FailedLogins {
    buckets: KeyedBuckets<IpAddr>,
}

impl FailedLogins {
    /// A limiter from the `[auth]` section.
    pub fn new(config: &Config) -> Self {
        FailedLogins {
            buckets: KeyedBuckets::new(config.attempts_per_second, config.attempts_per_second),
        }
    }

    /// `Err(retry_after)` when `ip` has used up its failed logins for now.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.buckets.has_token(&ip) {
            Ok(())
        } else {
            Err(Duration::from_secs(1))
        }
    }

    /// Records one failed login from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let _ = self.buckets.acquire(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_each_rule() {
        let msg = |p: &str| check_policy(p).unwrap_err().to_string();
        assert!(msg("Ab1!").contains("at least 8 characters"));
        assert!(msg("abcdefg1!").contains("uppercase"));
        assert!(msg("Abcdefgh!").contains("digit"));
        assert!(msg("Abcdefgh1").contains("symbol"));
        assert!(check_policy("Abcdefg1!").is_ok());
        assert!(check_policy("Ünïcödé9€").is_ok());
    }

    #[test]
    fn argon2_round_trip_with_distinct_salts() {
        let a = hash_password("Secret-123").unwrap();
        let b = hash_password("Secret-123").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password("Secret-123", &a));
        assert!(!verify_password("Secret-124", &a));
        assert!(!verify_password("Secret-123", "not a hash"));
    }

    #[test]
    fn argon2_hashes_with_other_parameters_verify() {
        use argon2::password_hash::CustomizedPasswordHasher;
        // Hashes made by the argon2 crate's own hasher with other variants, versions
        // and costs (as imported accounts may have), checked by our reused-memory path;
        // a large one first so that a smaller one reuses a bigger buffer.
        for (alg, version, m, t, p) in [
            ("argon2id", 0x13, 65536, 1, 1),
            ("argon2i", 0x13, 64, 3, 1),
            ("argon2d", 0x10, 256, 1, 2),
            ("argon2id", 0x13, 19456, 2, 1),
        ] {
            let params = argon2::Params::new(m, t, p, None).unwrap();
            let phc = argon2::Argon2::default()
                .hash_password_customized(
                    b"Secret-123",
                    b"somesaltsomesalt",
                    Some(alg),
                    Some(version),
                    params,
                )
                .unwrap()
                .to_string();
            assert!(verify_password("Secret-123", &phc), "{phc}");
            assert!(!verify_password("Secret-12", &phc), "{phc}");
        }
        // Absurd memory cost: refused, not attempted.
        assert!(!verify_password(
            "x",
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$lDEjoeBkqhlSUzIwiEFmpdsw5zZ7wOfDuLvrIqSx7jI"
        ));
    }

    #[test]
    fn pbkdf2_sha256_phc_verifies() {
        use pbkdf2::password_hash::CustomizedPasswordHasher;
        let hash: PasswordHash = pbkdf2::Pbkdf2::default()
            .hash_password_customized(
                b"Imported-9",
                b"saltsaltsaltsalt",
                Some("pbkdf2-sha256"),
                None,
                pbkdf2::Params::default(),
            )
            .unwrap();
        let phc = hash.to_string();
        assert!(phc.starts_with("$pbkdf2-sha256$"), "{phc}");
        assert!(verify_password("Imported-9", &phc));
        assert!(!verify_password("Imported-8", &phc));
    }

    #[test]
    fn generated_passwords_meet_policy() {
        for _ in 0..200 {
            let p = generate_password().unwrap();
            assert_eq!(p.len(), 20);
            check_policy(&p).unwrap();
            assert!(!p.contains(|c: char| c.is_whitespace() || "'\"\\`".contains(c)));
        }
    }

    #[test]
    fn plain_decoding() {
        let c = decode_plain(b"\0alice@example.test\0pw").unwrap();
        assert_eq!(c.authcid, "alice@example.test");
        assert_eq!(c.password, "pw");
        assert!(decode_plain(b"alice\0pw").is_err());
        assert!(decode_plain(b"\0\0pw").is_err());
        assert!(decode_plain(b"a\0b\0c\0d").is_err());
    }

    #[test]
    fn failed_logins_limit_per_ip() {
        let l = FailedLogins::new(&Config {
            attempts_per_second: 3,
            ..Config::default()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(ip).is_ok());
            l.record_failure(ip);
        }
        assert!(l.check(ip).is_err());
        assert!(l.check("192.0.2.2".parse().unwrap()).is_ok());
    }
}
