//! MTA-STS (RFC 8461): a remote domain's published promise that its MX hosts take mail
//! over TLS with certificates valid for their names. Before delivering to a domain
//! the queue asks [`Sts::policy`]: it looks up `_mta-sts.<domain>` (TXT), fetches the
//! policy from `https://mta-sts.<domain>/.well-known/mta-sts.txt` when the record's
//! `id` is new to us, and caches it in the store for its `max_age`. In `enforce` mode
//! only MX hosts the policy names are used, and only over verified TLS; a host that
//! fails this is skipped and the message waits for its next attempt (RFC 8461 §5.1:
//! a policy failure is a temporary one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::mta_sts::MtaSts;
use store::{Store, StsPolicy};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest policy file we read (RFC 8461 §3.3 suggests 64 KiB).
const MAX_POLICY: usize = 64 * 1024;
/// The longest `max_age` honoured (RFC 8461 §3.2: 31557600 seconds, about a year).
const MAX_AGE: u64 = 31_557_600;
/// How long a policy fetch may take in all (RFC 8461 §3.3 suggests a minute at most).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A policy's mode (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to listed MX hosts over verified TLS.
    Enforce,
    /// Deliver as without a policy; report what would have failed.
    Testing,
    /// The domain withdrew its policy.
    None,
}

/// A parsed policy file (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What the policy asks for.
    pub mode: Mode,
    /// The MX host patterns (`mx.example.com` or `*.example.com`), lower case.
    pub mx: Vec<String>,
    /// How long the policy may be cached, in seconds.
    pub max_age: u64,
}

impl Policy {
    /// Parses a policy file: `key: value` lines (CRLF or LF); unknown keys are
    /// ignored; of a repeated key other than `mx` the first counts.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("the policy line {line:?} is not \"key: value\""));
            };
            let value = value.trim();
            match key.trim() {
                "version" => {
                    version.get_or_insert(value);
                }
                "mode" if mode.is_none() => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown policy mode {other:?}")),
                    });
                }
                "max_age" if max_age.is_none() => {
                    let age = (!value.is_empty()
                        && value.len() <= 10
                        && value.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| value.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| format!("max_age {value:?} is not a number of seconds"))?;
                    max_age = Some(age.min(MAX_AGE));
                }
                "mx" => {
                    let pattern = value.trim_end_matches('.').to_ascii_lowercase();
                    let host = pattern.strip_prefix("*.").unwrap_or(&pattern);
                    if host.is_empty() || host.contains('*') || !host.contains('.') {
                        return Err(format!("mx {value:?} is not a host name or *.domain"));
                    }
                    mx.push(pattern);
                }
                _ => {}
            }
        }
        if version != Some("STSv1") {
            return Err(format!(
                "the policy's version is {:?}, not STSv1",
                version.unwrap_or("missing")
            ));
        }
        let mode = mode.ok_or("the policy has no mode")?;
        let max_age = max_age.ok_or("the policy has no max_age")?;
        if mode != Mode::None && mx.is_empty() {
            return Err("the policy names no mx".into());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether `host` is one the policy allows (RFC 8461 §4.1): equal to an `mx`
    /// pattern, or one label more than a `*.` pattern's domain.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .and_then(|rest| rest.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.')),
                None => *pattern == host,
            })
    }
}

/// Looks up, fetches and caches policies.
pub struct Sts {
    store: Arc<Store>,
    resolver: TokioResolver,
    /// Verifies the policy host's certificate (system roots plus `[queue] ca_file`).
    tls: TlsConnector,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts").finish_non_exhaustive()
    }
}

impl Sts {
    /// A policy source using `resolver` for DNS and `tls` (a verifying connector) for
    /// the HTTPS fetch.
    pub fn new(store: Arc<Store>, resolver: TokioResolver, tls: TlsConnector) -> Sts {
        Sts {
            store,
            resolver,
            tls,
        }
    }

    /// The policy that applies to mail for `domain` now, if any: the cached one while
    /// the TXT record's id is unchanged, a freshly fetched one when it changed, the
    /// cached one again when the record or the policy host cannot be reached.
    pub async fn policy(&self, domain: &str) -> Option<Policy> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let now = SystemTime::now();
        let cached = self.cached(&domain).await.filter(|c| c.expires > now);
        let cached_policy = cached.as_ref().and_then(|c| Policy::parse(&c.policy).ok());
        let id = match self.record_id(&domain).await {
            Ok(Some(id)) => id,
            // No record (or not one usable record): a policy we hold stays in force
            // until it expires (RFC 8461 §3.1, §5.1).
            Ok(None) => return cached_policy,
            Err(e) => {
                tracing::info!(domain, error = %e, "MTA-STS record lookup failed");
                return cached_policy;
            }
        };
        if let (Some(c), Some(p)) = (&cached, &cached_policy)
            && c.id == id
        {
            return Some(p.clone());
        }
        match self.fetch(&domain).await {
            Ok((text, policy)) => {
                let entry = StsPolicy {
                    domain: domain.clone(),
                    id,
                    policy: text,
                    fetched: now,
                    expires: now + Duration::from_secs(policy.max_age),
                };
                let store = self.store.clone();
                match tokio::task::spawn_blocking(move || store.put_sts_policy(&entry)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(domain, error = %e, "could not cache an MTA-STS policy")
                    }
                    Err(e) => {
                        tracing::warn!(domain, error = %e, "could not cache an MTA-STS policy")
                    }
                }
                tracing::info!(domain, mode = ?policy.mode, mx = ?policy.mx, max_age = policy.max_age, "MTA-STS policy fetched");
                Some(policy)
            }
            Err(e) => {
                // RFC 8461 §3.3: without a policy (new or cached), deliver as though the
                // domain had none.
                tracing::warn!(domain, error = %e, "MTA-STS policy fetch failed");
                cached_policy
            }
        }
    }

    async fn cached(&self, domain: &str) -> Option<StsPolicy> {
        let store = self.store.clone();
        let key = domain.to_string();
        match tokio::task::spawn_blocking(move || store.sts_policy(&key)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(domain, error = %e, "could not read the MTA-STS cache");
                None
            }
            Err(_) => None,
        }
    }

    /// The `id` of the domain's one `v=STSv1` TXT record; `None` when there is no such
    /// record or not exactly one valid one (RFC 8461 §3.1).
    async fn record_id(&self, domain: &str) -> Result<Option<String>, String> {
        let name = format!("_mta-sts.{domain}.");
        let lookup = match self.resolver.txt_lookup(name.as_str()).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let records: Vec<Vec<u8>> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect(),
                ),
                _ => None,
            })
            .filter(|r: &Vec<u8>| r.starts_with(b"v=STSv1"))
            .collect();
        let [record] = records.as_slice() else {
            return Ok(None);
        };
        Ok(MtaSts::parse(record).ok().map(|r| r.id))
    }

    /// Fetches and parses `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    async fn fetch(&self, domain: &str) -> Result<(String, Policy), String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.fetch_inner(domain))
            .await
            .map_err(|_| "the policy host did not answer in time".to_string())?
    }

    async fn fetch_inner(&self, domain: &str) -> Result<(String, Policy), String> {
        let host = format!("mta-sts.{domain}");
        let addrs = super::route::addresses(&self.resolver, &host).await?;
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let mut last = format!("{host} has no address");
        for ip in addrs {
            let tcp = match TcpStream::connect(SocketAddr::new(ip, 443)).await {
                Ok(s) => s,
                Err(e) => {
                    last = format!("{host} [{ip}]: connect: {e}");
                    continue;
                }
            };
            let tls = self
                .tls
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("{host} [{ip}]: TLS: {e}"))?;
            return get_policy(tls, &host).await.and_then(|text| {
                let policy = Policy::parse(&text).map_err(|e| format!("{host}: {e}"))?;
                Ok((text, policy))
            });
        }
        Err(last)
    }
}

/// GET /.well-known/mta-sts.txt over an established TLS stream: a 200 answer with a
/// text/plain body of at most [`MAX_POLICY`] bytes; redirects are not followed
/// (RFC 8461 §3.3).
async fn get_policy<T>(stream: T, host: &str) -> Result<String, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{host}: HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/.well-known/mta-sts.txt")
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "Postern")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{host}: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{host}: HTTP: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!(
                "{host} answered {} (only 200 is accepted; redirects are not followed)",
                response.status()
            ));
        }
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("text/plain") {
            return Err(format!(
                "{host} served the policy as {content_type:?}, not text/plain"
            ));
        }
        let body = Limited::new(response.into_body(), MAX_POLICY)
            .collect()
            .await
            .map_err(|e| {
                format!("{host}: the policy is unreadable or over {MAX_POLICY} bytes: {e}")
            })?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| format!("{host}: the policy is not UTF-8"))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_rfc_example() {
        // RFC 8461 §3.2.
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(
            p.mx,
            ["mail.example.com", "*.example.net", "backupmx.example.com"]
        );
        assert!(p.matches("mail.example.com"));
        assert!(p.matches("MAIL.Example.com."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("example.net"));
        assert!(!p.matches("a.b.example.net"));
        assert!(!p.matches("xexample.net"));
        assert!(!p.matches("mail.example.org"));
    }

    #[test]
    fn lenient_where_the_rfc_is_and_strict_where_it_is_not() {
        // LF line ends, unknown keys, repeated mode: first counts, max_age capped.
        let p = Policy::parse(
            "version: STSv1\nfoo: bar\nmode: testing\nmode: enforce\nmx: mx.example.com\nmax_age: 9999999999\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert_eq!(p.max_age, MAX_AGE);
        // mode none needs no mx.
        assert_eq!(
            Policy::parse("version: STSv1\nmode: none\nmax_age: 86400\n")
                .unwrap()
                .mode,
            Mode::None
        );
        for bad in [
            "mode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n",
            "<html>not a policy</html>",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad:?}");
        }
    }
}
