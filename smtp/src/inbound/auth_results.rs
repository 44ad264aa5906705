//! SPF (RFC 7208), DKIM (RFC 6376), ARC (RFC 8617) and DMARC (RFC 7489) verification
//! with mail-auth, summed up in an RFC 8601 Authentication-Results header with our host
//! name as authserv-id. All lookups for one message share the `[dns]` time budget.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcResult,
    MessageAuthenticator,
};

/// Errors setting up verification.
#[derive(Debug, thiserror::Error)]
#[error("message authentication setup failed: {0}")]
pub struct Error(String);

/// What a failed DMARC evaluation asks of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcAction {
    /// Nothing: DMARC passed, or the domain publishes no or a `p=none` policy.
    None,
    /// Deliver to Junk (`p=quarantine`).
    Quarantine,
    /// Refuse with 550 5.7.1 (`p=reject`).
    Reject,
}

/// The outcome for one message.
#[derive(Debug, Clone)]
pub struct Report {
    /// The complete `Authentication-Results:` field, folded, CRLF-terminated.
    pub header: String,
    /// What DMARC asks for.
    pub dmarc: DmarcAction,
    /// The From: domain DMARC judged ("" when the message has none).
    pub from_domain: String,
}

/// The message and its envelope.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The client's address.
    pub client_ip: IpAddr,
    /// Its EHLO/HELO name.
    pub helo: &'a str,
    /// The envelope sender ("" for the null sender).
    pub mail_from: &'a str,
    /// The whole message, CRLF line ends.
    pub message: &'a [u8],
}

/// The verifier: one mail-auth authenticator on the `[dns]` resolvers.
pub struct Verifier {
    authenticator: MessageAuthenticator,
    hostname: String,
    budget: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier using `[dns]`'s nameservers and budget; `hostname` is the authserv-id.
    pub fn new(dns: &common::dns::Config, hostname: &str) -> Result<Verifier, Error> {
        let (config, options) =
            common::dns::resolver_config(dns).map_err(|e| Error(e.to_string()))?;
        let authenticator =
            MessageAuthenticator::new(config, options).map_err(|e| Error(e.to_string()))?;
        Ok(Verifier {
            authenticator,
            hostname: hostname.to_string(),
            budget: dns.budget(),
        })
    }

    /// Verifies `input`. Past the time budget the checks count as temporary errors
    /// (and the message is accepted).
    pub async fn verify(&self, input: &Input<'_>) -> Report {
        match tokio::time::timeout(self.budget, self.evaluate(input)).await {
            Ok(report) => report,
            Err(_) => {
                tracing::warn!(ip = %input.client_ip, "message authentication ran out of time: temperror");
                Report {
                    header: format!(
                        "Authentication-Results: {};\r\n\tspf=temperror (time budget exceeded);\r\n\tdkim=temperror (time budget exceeded);\r\n\tdmarc=temperror (time budget exceeded)\r\n",
                        self.hostname
                    ),
                    dmarc: DmarcAction::None,
                    from_domain: String::new(),
                }
            }
        }
    }

    async fn evaluate(&self, input: &Input<'_>) -> Report {
        let Some(message) = AuthenticatedMessage::parse(input.message) else {
            return Report {
                header: format!(
                    "Authentication-Results: {};\r\n\tdkim=permerror (unparsable message)\r\n",
                    self.hostname
                ),
                dmarc: DmarcAction::None,
                from_domain: String::new(),
            };
        };
        let auth = &self.authenticator;
        // RFC 7208 §2.4: the null sender is checked as postmaster@<HELO>.
        let sender = if input.mail_from.is_empty() {
            format!("postmaster@{}", input.helo)
        } else {
            input.mail_from.to_string()
        };
        let spf = auth
            .verify_spf(SpfParameters::verify_mail_from(
                input.client_ip,
                input.helo,
                &self.hostname,
                &sender,
            ))
            .await;
        let dkim: Vec<DkimOutput> = auth.verify_dkim(&message).await;
        let arc = auth.verify_arc(&message).await;
        let mail_from_domain = sender
            .rsplit_once('@')
            .map_or(input.helo, |(_, d)| d)
            .to_string();
        let dmarc = auth
            .verify_dmarc(mail_auth::dmarc::verify::DmarcParameters::new(
                &message,
                &dkim,
                &mail_from_domain,
                &spf,
            ))
            .await;
        let from_domain = dmarc.domain().to_string();
        let header_from = message.from.first().cloned().unwrap_or_default();
        let header = AuthenticationResults::new(&self.hostname)
            .with_dkim_results(&dkim, &header_from)
            .with_spf_mailfrom_result(&spf, input.client_ip, input.mail_from, input.helo)
            .with_arc_result(&arc, input.client_ip)
            .with_dmarc_result(&dmarc)
            .to_header();
        let header = body_hash_mismatch_is_fail(&header, &dkim);
        let action = match (dmarc.result(), dmarc.policy()) {
            (DmarcResult::Fail(_), Policy::Reject) => DmarcAction::Reject,
            (DmarcResult::Fail(_), Policy::Quarantine) => DmarcAction::Quarantine,
            _ => DmarcAction::None,
        };
        Report {
            header,
            dmarc: action,
            from_domain,
        }
    }
}

/// mail-auth reports a body-hash mismatch as `neutral`; it means the signed content
/// was changed, which RFC 6376 §6.3 makes a failure: rewrite those `dkim=` clauses
/// (one per output, in order) as `dkim=fail`.
fn body_hash_mismatch_is_fail(header: &str, dkim: &[DkimOutput<'_>]) -> String {
    let mut outputs = dkim.iter();
    header
        .split(";\r\n\t")
        .map(|clause| match clause.strip_prefix("dkim=neutral") {
            Some(rest) => match outputs.next().map(DkimOutput::result) {
                Some(DkimResult::Neutral(mail_auth::Error::Dkim(
                    DkimError::FailedBodyHashMatch,
                ))) => {
                    format!("dkim=fail{rest}")
                }
                _ => clause.to_string(),
            },
            None => {
                if clause.starts_with("dkim=") {
                    outputs.next();
                }
                clause.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(";\r\n\t")
}

/// Removes every Authentication-Results field whose authserv-id is ours: one that
/// arrives from outside is forged (RFC 8601 §5). Others are kept.
pub fn strip_our_results(message: &[u8], authserv_id: &str) -> Vec<u8> {
    let header_end = find_header_end(message);
    let (head, body) = message.split_at(header_end);
    let mut out = Vec::with_capacity(message.len());
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    // Split the header block into fields: a line starting with SP/HTAB continues one.
    let mut i = 0;
    while i < head.len() {
        let line_end = head[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(head.len(), |p| i + p + 1);
        if i > start && !matches!(head.get(i), Some(b' ' | b'\t')) {
            fields.push(&head[start..i]);
            start = i;
        }
        i = line_end;
    }
    if start < head.len() {
        fields.push(&head[start..]);
    }
    for field in fields {
        if !is_ours(field, authserv_id) {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(body);
    out
}

/// Where the header block ends (after its empty line), or the whole message.
fn find_header_end(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") {
        return 0;
    }
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2)
}

fn is_ours(field: &[u8], authserv_id: &str) -> bool {
    let text = String::from_utf8_lossy(field);
    let Some((name, value)) = text.split_once(':') else {
        return false;
    };
    if !name.trim().eq_ignore_ascii_case("Authentication-Results") {
        return false;
    }
    // The authserv-id is the first token, before ';' (a version number may follow it).
    let unfolded = value.replace(['\r', '\n'], " ");
    let id = unfolded.trim().split([';', ' ', '\t']).next().unwrap_or("");
    id.eq_ignore_ascii_case(authserv_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_forged_results_are_removed() {
        let msg = b"Authentication-Results: mx.example.test;\r\n\tdkim=pass\r\nAuthentication-Results: other.test; spf=pass\r\nauthentication-results:  MX.EXAMPLE.TEST 1; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.test; body\r\n";
        let out = String::from_utf8(strip_our_results(msg, "mx.example.test")).unwrap();
        assert_eq!(
            out,
            "Authentication-Results: other.test; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.test; body\r\n"
        );
    }

    #[test]
    fn a_message_without_body_is_handled() {
        let msg = b"Authentication-Results: mx.example.test; x\r\nSubject: a\r\n";
        assert_eq!(strip_our_results(msg, "mx.example.test"), b"Subject: a\r\n");
    }
}
