//! One delivery attempt to one remote host, with mail-send's SMTP client: greeting,
//! EHLO, STARTTLS (opportunistic, or required and verified), AUTH at a relay, then
//! MAIL / RCPT per recipient / DATA or BDAT, each reply kept for the recipient it
//! concerns.

use std::net::SocketAddr;
use std::time::Duration;

use mail_send::SmtpClient;
use mail_send::smtp::AssertReply as _;
use smtp_proto::{
    EXT_8BIT_MIME, EXT_CHUNKING, EXT_DSN, EXT_REQUIRE_TLS, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS,
    EhloResponse, Response,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// How TLS is used with a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered, any certificate (RFC 7435 opportunistic security);
    /// plaintext when not offered or when the handshake fails.
    Opportunistic,
    /// STARTTLS is required, with a certificate valid for the host name.
    Verified,
    /// STARTTLS is required, any certificate (a relay the operator chose to trust).
    Unverified,
}

/// What one attempt needs to know.
pub struct Attempt<'a> {
    /// Our EHLO name.
    pub hostname: &'a str,
    /// The host name (for TLS and the replies we record).
    pub host: &'a str,
    /// Where to connect.
    pub addr: SocketAddr,
    /// TLS use.
    pub tls: TlsPolicy,
    /// The connector that verifies certificates.
    pub verified: &'a TlsConnector,
    /// AUTH at a relay (user, password).
    pub credentials: Option<(&'a str, &'a str)>,
    /// Per-reply timeout.
    pub timeout: Duration,
    /// The reverse-path.
    pub sender: &'a str,
    /// The recipients with their DSN parameters (NOTIFY, ORCPT).
    pub recipients: &'a [(String, Option<String>, Option<String>)],
    /// The message.
    pub message: &'a [u8],
    /// RFC 8689 REQUIRETLS.
    pub require_tls: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 3461 ENVID (decoded).
    pub env_id: Option<&'a str>,
    /// RFC 3461 RET=FULL.
    pub ret_full: bool,
}

/// The outcome for one recipient on a host that took the transaction this far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: the host and its reply.
    Delivered(String),
    /// Temporary failure: try again later.
    Temporary(String),
    /// Permanent failure: status code and reply.
    Permanent(String, String),
}

/// Why a host could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Try the next host (connection refused, timeout, 4xx greeting...).
    Next(String),
    /// The TLS handshake failed in opportunistic mode: try this host again in plaintext.
    TlsFailed(String),
    /// The host lacks what the message requires (REQUIRETLS, verified TLS,
    /// SMTPUTF8): the next host may have it; if none, the message bounces.
    Unsuitable(String, &'static str),
    /// The sender was refused for good (5xx to MAIL): every recipient fails.
    Permanent(String, String),
}

fn describe(r: &Response<String>) -> String {
    let esc = r.esc;
    if esc[0] == 0 {
        format!("{} {}", r.code, r.message.trim())
    } else {
        format!(
            "{} {}.{}.{} {}",
            r.code,
            esc[0],
            esc[1],
            esc[2],
            r.message.trim()
        )
    }
}

/// The RFC 3463 status of a reply: its enhanced code, or one derived from the class.
pub fn status_of(r: &Response<String>) -> String {
    if r.esc[0] != 0 {
        format!("{}.{}.{}", r.esc[0], r.esc[1], r.esc[2])
    } else if r.code >= 500 {
        "5.0.0".into()
    } else {
        "4.0.0".into()
    }
}

fn mail_error(e: mail_send::Error) -> String {
    match e {
        mail_send::Error::UnexpectedReply(r) => describe(&r),
        mail_send::Error::Timeout => "timed out".into(),
        e => e.to_string(),
    }
}

/// Runs one attempt. `Ok` holds one outcome per recipient, in order.
pub async fn deliver(a: &Attempt<'_>, plaintext: bool) -> Result<Vec<Outcome>, HostError> {
    let remote = format!("{} [{}]", a.host, a.addr.ip());
    let mut client = SmtpClient::connect(a.addr, a.timeout)
        .await
        .map_err(|e| HostError::Next(format!("{remote}: connect: {}", mail_error(e))))?;
    let greeting = client
        .read()
        .await
        .map_err(|e| HostError::Next(format!("{remote}: greeting: {}", mail_error(e))))?;
    if greeting.code != 220 {
        return Err(HostError::Next(format!(
            "{remote}: greeting: {}",
            describe(&greeting)
        )));
    }
    let caps = client
        .ehlo(a.hostname)
        .await
        .map_err(|e| HostError::Next(format!("{remote}: EHLO: {}", mail_error(e))))?;
    let must_tls = a.tls != TlsPolicy::Opportunistic || a.require_tls;
    if caps.has_capability(EXT_START_TLS) && !plaintext {
        let verify = a.tls == TlsPolicy::Verified || a.require_tls;
        let connector = if verify {
            a.verified.clone()
        } else {
            any_certificate().map_err(|e| HostError::Next(format!("{remote}: TLS setup: {e}")))?
        };
        let mut client = match client.start_tls(&connector, a.host).await {
            Ok(c) => c,
            Err(e) if !must_tls => {
                return Err(HostError::TlsFailed(format!(
                    "{remote}: STARTTLS: {}",
                    mail_error(e)
                )));
            }
            // REQUIRETLS mail is returned when no host can take it safely; a host
            // failing an MTA-STS or relay check is only skipped for this attempt.
            Err(e) if a.require_tls => {
                return Err(HostError::Unsuitable(
                    format!("{remote}: STARTTLS: {}", mail_error(e)),
                    "5.7.10",
                ));
            }
            Err(e) => {
                return Err(HostError::Next(format!(
                    "{remote}: STARTTLS: {}",
                    mail_error(e)
                )));
            }
        };
        let caps = client
            .ehlo(a.hostname)
            .await
            .map_err(|e| HostError::Next(format!("{remote}: EHLO: {}", mail_error(e))))?;
        let result = transact(&mut client, &caps, a, &remote).await;
        quit_later(client);
        result
    } else if must_tls {
        let _ = client.quit().await;
        if a.require_tls {
            Err(HostError::Unsuitable(
                format!("{remote}: STARTTLS is not offered; the message requires TLS (REQUIRETLS)"),
                "5.7.10",
            ))
        } else {
            Err(HostError::Next(format!(
                "{remote}: STARTTLS is not offered"
            )))
        }
    } else {
        let result = transact(&mut client, &caps, a, &remote).await;
        quit_later(client);
        result
    }
}

/// Says QUIT without making the caller wait for the reply: the outcome is recorded
/// at once, which keeps the time between a remote 250 and our record of it (when a
/// crash would make us send the message again) as short as it can be.
fn quit_later<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(client: SmtpClient<T>) {
    tokio::spawn(async move {
        let _ = client.quit().await;
    });
}

/// A connector accepting any certificate, for opportunistic TLS (RFC 7435).
fn any_certificate() -> Result<TlsConnector, String> {
    use std::sync::OnceLock;
    static ANY: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    ANY.get_or_init(|| mail_send::smtp::tls::build_tls_connector(true))
        .clone()
}

/// A connector that accepts only certificates valid for the host name, chaining to
/// the system's roots or to one in `ca_file` (PEM; empty: none).
pub fn verifying_connector(ca_file: &std::path::Path) -> Result<TlsConnector, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    use std::sync::Arc;
    let mut extra = Vec::new();
    if !ca_file.as_os_str().is_empty() {
        let pem = std::fs::read(ca_file)
            .map_err(|e| format!("[queue] ca_file {}: {e}", ca_file.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            extra.push(cert.map_err(|e| format!("[queue] ca_file {}: {e}", ca_file.display()))?);
        }
        if extra.is_empty() {
            return Err(format!(
                "[queue] ca_file {} holds no PEM certificate",
                ca_file.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| format!("the certificate verifier: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("the TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn transact<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    caps: &EhloResponse<String>,
    a: &Attempt<'_>,
    remote: &str,
) -> Result<Vec<Outcome>, HostError> {
    if let Some((user, password)) = a.credentials {
        let credentials = mail_send::Credentials::new(user.to_string(), password.to_string());
        client
            .authenticate(&credentials, caps)
            .await
            .map_err(|e| HostError::Next(format!("{remote}: AUTH: {}", mail_error(e))))?;
    }
    if a.require_tls && !caps.has_capability(EXT_REQUIRE_TLS) {
        return Err(HostError::Unsuitable(
            format!("{remote} does not support REQUIRETLS"),
            "5.7.30",
        ));
    }
    if a.smtputf8 && !caps.has_capability(EXT_SMTP_UTF8) {
        return Err(HostError::Unsuitable(
            format!("{remote} does not support SMTPUTF8"),
            "5.6.7",
        ));
    }
    let dsn = caps.has_capability(EXT_DSN);
    let mut mail = format!("MAIL FROM:<{}>", a.sender);
    if caps.has_capability(EXT_SIZE) {
        mail.push_str(&format!(" SIZE={}", a.message.len()));
    }
    if !a.message.is_ascii() && caps.has_capability(EXT_8BIT_MIME) {
        mail.push_str(" BODY=8BITMIME");
    }
    if a.smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    if a.require_tls {
        mail.push_str(" REQUIRETLS");
    }
    if dsn {
        mail.push_str(if a.ret_full { " RET=FULL" } else { " RET=HDRS" });
        if let Some(id) = a.env_id {
            mail.push_str(&format!(" ENVID={}", super::xtext(id)));
        }
    }
    mail.push_str("\r\n");
    let reply = command(client, &mail, remote).await?;
    if reply.code >= 500 {
        return Err(HostError::Permanent(
            status_of(&reply),
            format!("{remote} said: {}", describe(&reply)),
        ));
    }
    if reply.code >= 300 {
        return Err(HostError::Next(format!(
            "{remote} said: {}",
            describe(&reply)
        )));
    }
    let mut outcomes = Vec::with_capacity(a.recipients.len());
    let mut accepted = 0;
    for (address, notify, orcpt) in a.recipients {
        let mut rcpt = format!("RCPT TO:<{address}>");
        if dsn {
            if let Some(n) = notify {
                rcpt.push_str(&format!(" NOTIFY={n}"));
            }
            if let Some(o) = orcpt {
                let o = if o.contains(';') {
                    o.clone()
                } else {
                    format!("rfc822;{o}")
                };
                rcpt.push_str(&format!(" ORCPT={}", super::xtext(&o)));
            }
        }
        rcpt.push_str("\r\n");
        let reply = command(client, &rcpt, remote).await?;
        outcomes.push(match reply.code {
            200..=299 => {
                accepted += 1;
                Outcome::Delivered(String::new())
            }
            500..=599 => Outcome::Permanent(
                status_of(&reply),
                format!("{remote} said: {}", describe(&reply)),
            ),
            _ => Outcome::Temporary(format!("{remote} said: {}", describe(&reply))),
        });
    }
    if accepted == 0 {
        let _ = client.rset().await;
        return Ok(outcomes);
    }
    let reply = if caps.has_capability(EXT_CHUNKING) {
        send_bdat(client, a.message, a.timeout).await
    } else {
        send_data(client, a.message, a.timeout).await
    };
    let end = match reply {
        Ok(r) => r,
        // Past this point the server may or may not have the message; RFC 5321
        // §4.5.4.1 prefers a duplicate to a loss: try again later.
        Err(e) => {
            let text = format!("{remote}: while sending the message: {}", mail_error(e));
            return Ok(outcomes
                .into_iter()
                .map(|o| match o {
                    Outcome::Delivered(_) => Outcome::Temporary(text.clone()),
                    other => other,
                })
                .collect());
        }
    };
    let text = format!("{remote} said: {}", describe(&end));
    Ok(outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Delivered(_) => match end.code {
                200..=299 => Outcome::Delivered(text.clone()),
                500..=599 => Outcome::Permanent(status_of(&end), text.clone()),
                _ => Outcome::Temporary(text.clone()),
            },
            other => other,
        })
        .collect())
}

async fn command<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    line: &str,
    remote: &str,
) -> Result<Response<String>, HostError> {
    client
        .cmd(line.as_bytes())
        .await
        .map_err(|e| HostError::Next(format!("{remote}: {}", mail_error(e))))
}

/// The end of data gets at least 10 minutes (RFC 5321 §4.5.3.2.6).
fn data_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(600))
}

/// DATA: the message dot-stuffed by mail-send, which adds the final CRLF.CRLF itself.
async fn send_data<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    message: &[u8],
    timeout: Duration,
) -> Result<Response<String>, mail_send::Error> {
    client.cmd(b"DATA\r\n").await?.assert_code(354)?;
    let body = message.strip_suffix(b"\r\n").unwrap_or(message);
    tokio::time::timeout(data_timeout(timeout), async {
        client.write_message(body).await?;
        client.read().await
    })
    .await
    .map_err(|_| mail_send::Error::Timeout)?
}

/// BDAT LAST (RFC 3030): the message as it is, no stuffing.
async fn send_bdat<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    message: &[u8],
    timeout: Duration,
) -> Result<Response<String>, mail_send::Error> {
    tokio::time::timeout(data_timeout(timeout), async {
        client
            .stream
            .write_all(format!("BDAT {} LAST\r\n", message.len()).as_bytes())
            .await?;
        client.stream.write_all(message).await?;
        client.stream.flush().await?;
        client.read().await
    })
    .await
    .map_err(|_| mail_send::Error::Timeout)?
}
