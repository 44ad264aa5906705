//! SPF (RFC 7208), DKIM (RFC 6376), ARC (RFC 8617) and DMARC (RFC 7489) verification
//! with mail-auth, summed up in an RFC 8601 Authentication-Results header with our host
//! name as authserv-id. All lookups for one message share the `[dns]` time budget.
//!
//! mail-auth 0.13 builds its own hickory resolver; it gets the `ResolverConfig` and
//! `ResolverOpts` that [`common::dns::resolver_config`] makes of `[dns]`, so it asks
//! the same nameservers (ports included) as every other lookup.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use mail_auth::arc::ArcError;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, DnsError,
    MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::time::{Instant, timeout_at};

/// Errors setting up verification.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `[dns]` does not make a usable resolver configuration.
    #[error("message authentication setup failed: {0}")]
    Dns(#[from] common::dns::Error),
    /// mail-auth could not build its resolver.
    #[error("message authentication setup failed: {0}")]
    Resolver(String),
}

/// An RFC 8601 §2.7 result value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// Nothing to check (no record, no signature).
    None,
    /// Verified.
    Pass,
    /// Verified as not authorized, or the signature does not match.
    Fail,
    /// SPF `~all`: probably not authorized (RFC 7208 §2.6.5).
    SoftFail,
    /// Checked, no assertion either way (or a DKIM signature we could not process).
    Neutral,
    /// A transient error, DNS mostly (or our time budget ran out).
    TempError,
    /// A permanent error: a broken record or signature.
    PermError,
}

impl AuthResult {
    /// The RFC 8601 token.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::None => "none",
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SPF of the MAIL FROM identity (RFC 7208 §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    /// The result.
    pub result: AuthResult,
    /// The identity checked: MAIL FROM, or `postmaster@<HELO>` for the null sender.
    pub mail_from: String,
    /// Why, when it is an error.
    pub reason: Option<String>,
}

/// One DKIM-Signature's verification (RFC 6376 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimOutcome {
    /// The result; a body-hash mismatch is `Fail` (mail-auth says neutral).
    pub result: AuthResult,
    /// The signing domain, `d=` ("" when the signature could not be parsed).
    pub domain: String,
    /// The selector, `s=`.
    pub selector: String,
    /// The algorithm, `a=` (e.g. `ed25519-sha256`).
    pub algorithm: String,
    /// The first 8 characters of `b=` (RFC 6008), telling signatures apart.
    pub header_b: String,
    /// Why, when it did not pass.
    pub reason: Option<String>,
}

/// What a failed DMARC evaluation asks of us, i.e. the domain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicyAction {
    /// Nothing: DMARC passed, or the domain publishes no or a `p=none` policy.
    None,
    /// Deliver to Junk (`p=quarantine`).
    Quarantine,
    /// Refuse with 550 5.7.1 (`p=reject`).
    Reject,
}

/// The former name of [`DmarcPolicyAction`], used by the session.
pub type DmarcAction = DmarcPolicyAction;

impl DmarcPolicyAction {
    /// The policy's name as in the record (`none`, `quarantine`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicyAction::None => "none",
            DmarcPolicyAction::Quarantine => "quarantine",
            DmarcPolicyAction::Reject => "reject",
        }
    }
}

/// The DMARC evaluation of the RFC 5322.From domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcOutcome {
    /// The result.
    pub result: AuthResult,
    /// The policy that applies to the domain (`sp=`/`np=` for subdomains, lowered one
    /// step by `t=y`, as mail-auth applies them).
    pub policy: DmarcPolicyAction,
    /// The RFC 5322.From domain ("" when the message has none, or several).
    pub header_from: String,
    /// Why, when it is an error.
    pub reason: Option<String>,
}

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// SPF of MAIL FROM.
    pub spf: SpfOutcome,
    /// One per DKIM-Signature; empty when the message is unsigned.
    pub dkim: Vec<DkimOutcome>,
    /// The ARC chain (RFC 8617 §5.2): `none`, `pass`, `fail` or `temperror`.
    pub arc: String,
    /// DMARC.
    pub dmarc_outcome: DmarcOutcome,
    /// What DMARC asks of us, the same as [`Report::dmarc_action`].
    pub dmarc: DmarcPolicyAction,
    /// The From: domain DMARC judged ("" when the message has none).
    pub from_domain: String,
    /// The complete `Authentication-Results:` field, folded, CRLF-terminated.
    pub header: String,
    /// The ARC set for a forwarded copy ([`Input::seal`]), CRLF-terminated fields; None
    /// when no seal was asked for or the chain cannot be extended.
    pub arc_set: Option<String>,
}

impl Report {
    /// What the DMARC result asks of us: `Reject` only for a failure under `p=reject`,
    /// `Quarantine` for a failure under `p=quarantine`, else `None` (a pass, no policy,
    /// or a temporary error). mail-auth 0.13 implements DMARCbis, which drops `pct=`;
    /// its `t=y` is already folded into the policy.
    pub fn dmarc_action(&self) -> DmarcPolicyAction {
        match (self.dmarc_outcome.result, self.dmarc_outcome.policy) {
            (AuthResult::Fail, DmarcPolicyAction::Reject) => DmarcPolicyAction::Reject,
            (AuthResult::Fail, DmarcPolicyAction::Quarantine) => DmarcPolicyAction::Quarantine,
            _ => DmarcPolicyAction::None,
        }
    }
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
    /// The whole message, CRLF line ends; or only its header block when `body` is
    /// given.
    pub message: &'a [u8],
    /// The rest of the message after `message` (a spooled message's body): its body
    /// hashes are computed from it a chunk at a time.
    pub body: Option<&'a store::Body<'a>>,
    /// The key to seal the message's ARC chain with (RFC 8617), when it will be
    /// forwarded to another server.
    pub seal: Option<&'a dkim::sign::SigningKey>,
}

/// The verifier: one mail-auth authenticator on the `[dns]` resolvers.
pub struct Verifier {
    authenticator: MessageAuthenticator,
    hostname: String,
    budget: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hostname", &self.hostname)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// The resolver error standing in for a check cut short by the time budget.
const BUDGET_EXCEEDED: &str = "time budget exceeded";

fn budget_exceeded() -> mail_auth::Error {
    mail_auth::Error::Dns(DnsError::Resolver(BUDGET_EXCEEDED.to_string()))
}

impl Verifier {
    /// A verifier asking `[dns]`'s nameservers, within its per-message budget;
    /// `our_hostname` is the authserv-id.
    pub fn new(dns: &common::dns::Config, our_hostname: &str) -> Result<Verifier, Error> {
        let (config, options) = common::dns::resolver_config(dns)?;
        let authenticator = MessageAuthenticator::new(config, options)
            .map_err(|e| Error::Resolver(e.to_string()))?;
        Ok(Verifier {
            authenticator,
            hostname: our_hostname.to_string(),
            budget: dns.budget(),
        })
    }

    /// Verifies `input`: SPF, DKIM and ARC at once, then DMARC on their results. What
    /// has not finished when the time budget runs out is `temperror` (and the message
    /// is accepted).
    pub async fn verify(&self, input: &Input<'_>) -> Report {
        let deadline = Instant::now() + self.budget;
        let auth = &self.authenticator;
        // RFC 7208 §2.4: the null sender is checked as postmaster@<HELO>.
        let sender = if input.mail_from.is_empty() {
            format!("postmaster@{}", input.helo)
        } else {
            input.mail_from.to_string()
        };
        let mail_from_domain = sender
            .rsplit_once('@')
            .map_or(input.helo, |(_, d)| d)
            .to_string();
        // A message with no header fields has no signatures, no ARC and no From.
        let mut message = AuthenticatedMessage::parse(input.message).unwrap_or_default();
        if let Some(body) = input.body {
            // The body hashes of the signatures, and the one an ARC seal would need,
            // computed as the body streams from its spool file.
            let relaxed = (
                mail_auth::dkim::Canonicalization::Relaxed,
                mail_auth::common::crypto::HashAlgorithm::Sha256,
                0u64,
            );
            if input.seal.is_some()
                && !message
                    .body_hashes
                    .iter()
                    .any(|(c, h, l, _)| (*c, *h, *l) == relaxed)
            {
                message
                    .body_hashes
                    .push((relaxed.0, relaxed.1, relaxed.2, Vec::new()));
            }
            for (cb, ha, l, bh) in &mut message.body_hashes {
                match streamed_body_hash(body, *cb, *ha, *l) {
                    Ok(hash) => *bh = hash,
                    Err(e) => tracing::warn!(error = %e, "cannot read the spooled message"),
                }
            }
        }

        let (spf, dkim, arc) = tokio::join!(
            timeout_at(
                deadline,
                auth.verify_spf(SpfParameters::verify_mail_from(
                    input.client_ip,
                    input.helo,
                    &self.hostname,
                    &sender,
                )),
            ),
            timeout_at(deadline, auth.verify_dkim(&message)),
            timeout_at(deadline, auth.verify_arc(&message)),
        );
        let spf_in_time = spf.is_ok();
        let spf = spf.unwrap_or_else(|_| {
            SpfOutput::new(mail_from_domain.clone()).with_result(SpfResult::TempError)
        });
        // Signatures not verified in time are temporary errors, which DMARC honours
        // (RFC 7489 §6.6.2: neither pass nor fail on their account).
        let dkim: Vec<DkimOutput<'_>> = dkim.unwrap_or_else(|_| {
            message
                .dkim_headers
                .iter()
                .map(|h| DkimOutput::temp_err(budget_exceeded()).with_signature(&h.header))
                .collect()
        });
        // DMARC judges the From: domains the one message reader sees (every From:
        // field, every mailbox), not mail-auth's own reading. Several domains: each is
        // evaluated and the strictest failing policy applies (RFC 7489 §6.6.1).
        let author = message::author(input.message);
        let mut per_domain: Vec<AuthenticatedMessage<'_>> = Vec::new();
        for domain in author.from_domains() {
            let mut one = message.clone();
            one.from = author
                .from
                .iter()
                .filter(|m| m.domain().as_deref() == Some(domain.as_str()))
                .map(|m| m.address.to_ascii_lowercase())
                .take(1)
                .collect();
            per_domain.push(one);
        }
        let dmarc = timeout_at(deadline, async {
            let mut outputs = Vec::with_capacity(per_domain.len());
            for one in &per_domain {
                outputs.push(
                    auth.verify_dmarc(DmarcParameters::new(one, &dkim, &mail_from_domain, &spf))
                        .await,
                );
            }
            outputs
        })
        .await;

        let arc_set = match (input.seal, &arc, &dmarc) {
            (Some(key), Ok(arc_output), Ok(dmarc_outputs)) if arc_output.can_be_sealed() => {
                let mut results = mail_auth::AuthenticationResults::new(&self.hostname)
                    .with_dkim_results(&dkim, message.from())
                    .with_spf_mailfrom_result(&spf, input.client_ip, input.mail_from, input.helo)
                    .with_arc_result(arc_output, input.client_ip);
                for output in dmarc_outputs {
                    results = results.with_dmarc_result(output);
                }
                match dkim::sign::arc_seal(&message, &results, arc_output, key) {
                    Ok(set) => Some(set),
                    Err(e) => {
                        tracing::warn!(error = %e, "ARC sealing failed: forwarded without a seal");
                        None
                    }
                }
            }
            _ => None,
        };
        let spf = SpfOutcome {
            result: spf_result(spf.result()),
            mail_from: sender,
            reason: match spf.result() {
                _ if !spf_in_time => Some(BUDGET_EXCEEDED.to_string()),
                SpfResult::TempError => Some("dns error".to_string()),
                SpfResult::PermError => Some("invalid SPF record".to_string()),
                _ => None,
            },
        };
        let dkim: Vec<DkimOutcome> = dkim.iter().map(dkim_outcome).collect();
        let (arc, arc_reason) = match &arc {
            Ok(arc) => arc_result(arc.result()),
            Err(_) => (AuthResult::TempError, Some(BUDGET_EXCEEDED)),
        };
        let dmarc_outcome = match &dmarc {
            Ok(outputs) if outputs.is_empty() => DmarcOutcome {
                result: AuthResult::None,
                policy: DmarcPolicyAction::None,
                header_from: String::new(),
                reason: None,
            },
            Ok(outputs) => strictest(outputs.iter().map(dmarc_outcome)),
            Err(_) => DmarcOutcome {
                result: AuthResult::TempError,
                policy: DmarcPolicyAction::None,
                header_from: author.from_domains().join(","),
                reason: Some(BUDGET_EXCEEDED.to_string()),
            },
        };
        let mut report = Report {
            spf,
            dkim,
            arc: arc.as_str().to_string(),
            from_domain: dmarc_outcome.header_from.clone(),
            dmarc_outcome,
            dmarc: DmarcPolicyAction::None,
            header: String::new(),
            arc_set,
        };
        report.dmarc = report.dmarc_action();
        report.header = header(
            &self.hostname,
            &resinfos(&report, arc_reason, input.client_ip),
        );
        if !spf_in_time || arc_reason == Some(BUDGET_EXCEEDED) || dmarc.is_err() {
            tracing::warn!(ip = %input.client_ip, "message authentication ran out of time: temperror");
        }
        report
    }
}

fn spf_result(result: SpfResult) -> AuthResult {
    match result {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

fn dkim_outcome(output: &DkimOutput<'_>) -> DkimOutcome {
    let (result, reason) = match output.result() {
        DkimResult::Pass => (AuthResult::Pass, None),
        // mail-auth 0.13 reports a body-hash mismatch as neutral, but the signed
        // content was changed: RFC 6376 §6.1.3 makes it a failed signature.
        DkimResult::Neutral(err @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some(reason(err)))
        }
        DkimResult::Neutral(err) => (AuthResult::Neutral, Some(reason(err))),
        DkimResult::Fail(err) => (AuthResult::Fail, Some(reason(err))),
        DkimResult::PermError(err) => (AuthResult::PermError, Some(reason(err))),
        DkimResult::TempError(err) => (AuthResult::TempError, Some(reason(err))),
        DkimResult::None => (AuthResult::None, None),
    };
    let signature = output.signature();
    DkimOutcome {
        result,
        domain: signature
            .map(|s| s.d.to_ascii_lowercase())
            .unwrap_or_default(),
        selector: signature.map(|s| s.s.clone()).unwrap_or_default(),
        algorithm: signature
            .map(|s| s.a.name().to_string())
            .unwrap_or_default(),
        // RFC 6008 §2: the first 8 characters of b= (6 bytes of base64).
        header_b: signature
            .and_then(|s| s.b.get(..6))
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
            .unwrap_or_default(),
        reason: reason.map(str::to_string),
    }
}

/// RFC 8617 §5.2: a chain either validates or fails; DNS trouble is temporary.
fn arc_result(result: &DkimResult) -> (AuthResult, Option<&'static str>) {
    match result {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::None => (AuthResult::None, None),
        DkimResult::TempError(err) => (AuthResult::TempError, Some(reason(err))),
        DkimResult::Neutral(err) | DkimResult::Fail(err) | DkimResult::PermError(err) => {
            (AuthResult::Fail, Some(reason(err)))
        }
    }
}

/// The DKIM body hash (RFC 6376 §3.7) of `body`, read a chunk at a time.
fn streamed_body_hash(
    body: &store::Body<'_>,
    cb: mail_auth::dkim::Canonicalization,
    ha: mail_auth::common::crypto::HashAlgorithm,
    l: u64,
) -> std::io::Result<Vec<u8>> {
    use mail_auth::common::crypto::{HashContext, HashImpl, Sha1, Sha256};
    use mail_auth::dkim::canonicalize::BodyHasher;
    fn run<H: HashImpl>(
        body: &store::Body<'_>,
        cb: mail_auth::dkim::Canonicalization,
        l: u64,
    ) -> std::io::Result<Vec<u8>> {
        let mut hasher = BodyHasher::new(H::hasher(), cb, l);
        body.for_each_chunk(|chunk| {
            hasher.write(chunk);
            Ok(())
        })?;
        Ok(hasher.finish().0.complete().as_ref().to_vec())
    }
    match ha {
        mail_auth::common::crypto::HashAlgorithm::Sha1 => run::<Sha1>(body, cb, l),
        mail_auth::common::crypto::HashAlgorithm::Sha256 => run::<Sha256>(body, cb, l),
    }
}

/// Of several From: domains' DMARC outcomes, the one to act on: the strictest failing
/// policy, else the first (RFC 7489 §6.6.1).
fn strictest(outcomes: impl Iterator<Item = DmarcOutcome>) -> DmarcOutcome {
    let rank = |o: &DmarcOutcome| match (o.result, o.policy) {
        (AuthResult::Fail, DmarcPolicyAction::Reject) => 4,
        (AuthResult::Fail, DmarcPolicyAction::Quarantine) => 3,
        (AuthResult::Fail, DmarcPolicyAction::None) => 2,
        (AuthResult::TempError | AuthResult::PermError, _) => 1,
        _ => 0,
    };
    let mut best: Option<DmarcOutcome> = None;
    for o in outcomes {
        if best.as_ref().is_none_or(|b| rank(&o) > rank(b)) {
            best = Some(o);
        }
    }
    best.unwrap_or(DmarcOutcome {
        result: AuthResult::None,
        policy: DmarcPolicyAction::None,
        header_from: String::new(),
        reason: None,
    })
}

fn dmarc_outcome(dmarc: &DmarcOutput) -> DmarcOutcome {
    let (result, reason) = match dmarc.result() {
        DmarcResult::Pass => (AuthResult::Pass, None),
        DmarcResult::Fail(_) => (AuthResult::Fail, None),
        DmarcResult::TempError(err) => (AuthResult::TempError, Some(reason(&err))),
        DmarcResult::PermError(err) => (AuthResult::PermError, Some(reason(&err))),
        DmarcResult::None => (AuthResult::None, None),
    };
    DmarcOutcome {
        result,
        policy: match dmarc.policy() {
            Policy::Reject => DmarcPolicyAction::Reject,
            Policy::Quarantine => DmarcPolicyAction::Quarantine,
            Policy::None | Policy::Unspecified => DmarcPolicyAction::None,
        },
        header_from: dmarc.domain().to_string(),
        reason: reason.map(str::to_string),
    }
}

/// A short, fixed explanation for a comment in the header (never text from the
/// network).
fn reason(err: &mail_auth::Error) -> &'static str {
    use mail_auth::Error as E;
    match err {
        E::Dns(DnsError::Resolver(detail)) if detail == BUDGET_EXCEEDED => BUDGET_EXCEEDED,
        E::Dns(DnsError::Resolver(_)) => "dns error",
        E::Dns(DnsError::RecordNotFound(_)) => "no key for signature",
        E::Dns(DnsError::InvalidRecordType) | E::ParseError | E::Base64 => "invalid record",
        E::Dkim(DkimError::FailedBodyHashMatch) | E::Arc(ArcError::FailedBodyHashMatch) => {
            "body hash did not verify"
        }
        E::Dkim(DkimError::SignatureExpired) | E::Arc(ArcError::SignatureExpired) => {
            "signature expired"
        }
        E::Dkim(DkimError::SignatureLength) | E::Arc(ArcError::SignatureLength) => {
            "l= tag not accepted"
        }
        E::Dkim(DkimError::RevokedPublicKey) => "key revoked",
        E::Dkim(DkimError::FailedAuidMatch) => "i= not within d=",
        E::Dkim(_) => "unsupported signature",
        E::Crypto(_) => "signature did not verify",
        E::Arc(_) => "broken chain",
        E::NotAligned => "not aligned",
        E::MissingParameters | E::NoHeadersFound | E::Io(_) | E::Dkim2(_) => "invalid signature",
    }
}

/// The resinfo clauses (RFC 8601 §2.2), in order: SPF, DKIM (one per signature),
/// ARC, DMARC.
fn resinfos(report: &Report, arc_reason: Option<&str>, client_ip: IpAddr) -> Vec<String> {
    let comment = |reason: &Option<String>| {
        reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(report.dkim.len() + 3);
    // RFC 7208 §9.1 / RFC 8601 §2.7.2: smtp.mailfrom.
    out.push(format!(
        "spf={}{} smtp.mailfrom={}",
        report.spf.result,
        comment(&report.spf.reason),
        pvalue(&report.spf.mail_from)
    ));
    if report.dkim.is_empty() {
        out.push("dkim=none".to_string());
    }
    // RFC 8601 §2.7.1: header.d, header.s; RFC 6008: header.b.
    for dkim in &report.dkim {
        let mut clause = format!("dkim={}{}", dkim.result, comment(&dkim.reason));
        if !dkim.domain.is_empty() {
            clause.push_str(&format!(
                " header.d={} header.s={} header.b={}",
                pvalue(&dkim.domain),
                pvalue(&dkim.selector),
                pvalue(&dkim.header_b)
            ));
        }
        out.push(clause);
    }
    // RFC 8617 §10.1: arc with smtp.remote-ip.
    let mut arc = format!("arc={}", report.arc);
    if let Some(reason) = arc_reason {
        arc.push_str(&format!(" ({reason})"));
    }
    if report.arc != "none" {
        arc.push_str(&format!(
            " smtp.remote-ip={}",
            pvalue(&client_ip.to_string())
        ));
    }
    out.push(arc);
    // RFC 7489 §11.2: header.from; the policy in a comment.
    let dmarc = &report.dmarc_outcome;
    let mut clause = format!("dmarc={}", dmarc.result);
    match (&dmarc.reason, dmarc.result) {
        (Some(reason), _) => clause.push_str(&format!(" ({reason})")),
        (None, AuthResult::Pass | AuthResult::Fail) => {
            clause.push_str(&format!(" (p={})", dmarc.policy.as_str()));
        }
        (None, _) => {}
    }
    if !dmarc.header_from.is_empty() {
        clause.push_str(&format!(" header.from={}", pvalue(&dmarc.header_from)));
    }
    out.push(clause);
    out
}

/// Lines are folded to stay within this many octets where a space allows it
/// (RFC 5322 §2.1.1).
const LINE_LENGTH: usize = 78;

/// The whole field: `Authentication-Results: <authserv-id>;` then one resinfo per
/// continuation line, long ones folded at spaces (RFC 5322 §2.2.3), CRLF at the end.
fn header(authserv_id: &str, resinfos: &[String]) -> String {
    let mut out = format!("Authentication-Results: {authserv_id};");
    if resinfos.is_empty() {
        // RFC 8601 §2.2: no-result.
        out.push_str(" none\r\n");
        return out;
    }
    for (i, resinfo) in resinfos.iter().enumerate() {
        out.push_str("\r\n\t");
        let mut line = 1;
        for (j, word) in words(resinfo).enumerate() {
            if j > 0 {
                if line + 1 + word.len() > LINE_LENGTH {
                    out.push_str("\r\n\t");
                    line = 1;
                } else {
                    out.push(' ');
                    line += 1;
                }
            }
            out.push_str(word);
            line += word.len();
        }
        if i + 1 < resinfos.len() {
            out.push(';');
        }
    }
    out.push_str("\r\n");
    out
}

/// `text` split at the spaces outside quoted-strings (which are not folded).
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    text.split(move |c: char| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        }
        c == ' ' && !quoted
    })
    .filter(|w| !w.is_empty())
}

/// An RFC 8601 §2.2 pvalue: bare when it is a MIME token or `[local-part]@domain` of
/// atoms, else a quoted-string. Control characters are dropped: the value may come
/// from the client, and must not end the field.
fn pvalue(value: &str) -> String {
    let clean: String = value.chars().filter(|c| !c.is_control()).collect();
    // RFC 2045 §5.1: token characters.
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c);
    // RFC 5322 §3.2.3: atext.
    let atom = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
    };
    let domain = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    let bare = !clean.is_empty()
        && (clean.chars().all(token)
            || clean.rsplit_once('@').is_some_and(|(local, d)| {
                (local.is_empty() || local.split('.').all(atom)) && domain(d)
            }));
    if bare {
        clean
    } else {
        format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Removes every Authentication-Results and ARC-Authentication-Results field whose
/// authserv-id is `authserv_id` (compared without regard to case or a trailing dot):
/// one that arrives from outside is forged (RFC 8601 §5). Others' are kept, and so is
/// the body.
pub fn strip_our_results(message: &[u8], authserv_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut end = 0;
    for span in message::header::spans(message) {
        if !is_ours(span.raw, authserv_id) {
            out.extend_from_slice(span.raw);
        }
        end = span.offset + span.raw.len();
    }
    out.extend_from_slice(&message[end..]);
    out
}

/// Is `field` an Authentication-Results or ARC-Authentication-Results field naming
/// `authserv_id`? A fully qualified name's trailing dot does not make it another name.
fn is_ours(field: &[u8], authserv_id: &str) -> bool {
    let Some(colon) = field.iter().position(|b| *b == b':') else {
        return false;
    };
    let name = String::from_utf8_lossy(&field[..colon]);
    let name = name.trim();
    let value = if name.eq_ignore_ascii_case("Authentication-Results") {
        Some(&field[colon + 1..])
    } else if name.eq_ignore_ascii_case("ARC-Authentication-Results") {
        // RFC 8617 §4.1.1: the instance tag `i=N;` comes before the authserv-id.
        arc_payload(&field[colon + 1..])
    } else {
        None
    };
    let absolute = |id: &str| id.strip_suffix('.').unwrap_or(id).to_string();
    value
        .and_then(authserv_id_of)
        .is_some_and(|id| absolute(&id).eq_ignore_ascii_case(&absolute(authserv_id)))
}

/// What follows `[CFWS] "i=" 1*DIGIT [CFWS] ";"` in an ARC-Authentication-Results
/// value (RFC 8617 §4.1.1).
fn arc_payload(value: &[u8]) -> Option<&[u8]> {
    let rest = skip_cfws(value)?;
    let rest = rest.strip_prefix(b"i=")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    skip_cfws(&rest[digits..])?.strip_prefix(b";")
}

/// `value` after its leading folding white space and comments (nested, with
/// quoted-pairs).
fn skip_cfws(value: &[u8]) -> Option<&[u8]> {
    let mut rest = value;
    loop {
        match rest.first()? {
            b' ' | b'\t' | b'\r' | b'\n' => rest = &rest[1..],
            b'(' => {
                // A comment, possibly nested, with quoted-pairs.
                let mut depth = 0usize;
                let mut at = 0;
                while at < rest.len() {
                    match rest[at] {
                        b'\\' => at += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    at += 1;
                }
                rest = rest.get(at + 1..)?;
            }
            _ => return Some(rest),
        }
    }
}

/// The authserv-id at the start of a field value (RFC 8601 §2.2: a token or a
/// quoted-string, after optional CFWS, comments included).
fn authserv_id_of(value: &[u8]) -> Option<String> {
    let rest = skip_cfws(value)?;
    if rest.first() == Some(&b'"') {
        let mut id = Vec::new();
        let mut at = 1;
        while at < rest.len() {
            match rest[at] {
                b'"' => return Some(String::from_utf8_lossy(&id).into_owned()),
                b'\\' => {
                    at += 1;
                    id.extend(rest.get(at));
                }
                b'\r' | b'\n' => {}
                b => id.push(b),
            }
            at += 1;
        }
        return None;
    }
    let end = rest
        .iter()
        .position(|b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(msg: &str) -> String {
        String::from_utf8(strip_our_results(msg.as_bytes(), "mx.example.test")).unwrap()
    }

    #[test]
    fn only_our_forged_results_are_removed() {
        let msg = "Authentication-Results: mx.example.test;\r\n\tdkim=pass\r\n\
                   Authentication-Results: other.test; spf=pass\r\n\
                   authentication-results:  MX.EXAMPLE.TEST 1; spf=pass\r\n\
                   Subject: hi\r\n\
                   \r\n\
                   Authentication-Results: mx.example.test; body\r\n";
        assert_eq!(
            strip(msg),
            "Authentication-Results: other.test; spf=pass\r\nSubject: hi\r\n\r\n\
             Authentication-Results: mx.example.test; body\r\n"
        );
    }

    #[test]
    fn folded_commented_and_quoted_ids_are_ours_too() {
        let msg = "Received: from x\r\n\tby y\r\n\
                   Authentication-Results:\r\n mx.example.test;\r\n spf=pass\r\n\
                   Authentication-Results: (forged (nested)) Mx.Example.Test; dkim=pass\r\n\
                   Authentication-Results: \"mx.example.test\"; dmarc=pass\r\n\
                   Authentication-Results: mx.example.test.evil; dmarc=pass\r\n\
                   Authentication-Results: (mx.example.test) other.test; dmarc=pass\r\n\
                   X-Authentication-Results: mx.example.test; spf=pass\r\n\
                   \r\nbody\r\n";
        assert_eq!(
            strip(msg),
            "Received: from x\r\n\tby y\r\n\
             Authentication-Results: mx.example.test.evil; dmarc=pass\r\n\
             Authentication-Results: (mx.example.test) other.test; dmarc=pass\r\n\
             X-Authentication-Results: mx.example.test; spf=pass\r\n\
             \r\nbody\r\n"
        );
    }

    #[test]
    fn an_absolute_id_and_arc_results_claiming_to_be_ours_are_forged_too() {
        let msg = "Authentication-Results: mx.example.test.; dkim=pass\r\n\
                   Authentication-Results: MX.EXAMPLE.TEST. ; spf=pass\r\n\
                   ARC-Authentication-Results: i=1; mx.example.test; dmarc=pass\r\n\
                   ARC-Authentication-Results: i=2;\r\n (ours) mx.example.test.; spf=pass\r\n\
                   ARC-Authentication-Results: i=1; other.test; dkim=pass\r\n\
                   ARC-Authentication-Results: i=1; mx.example.test.evil; dkim=pass\r\n\
                   Authentication-Results: mx.example.test..; dkim=pass\r\n\
                   \r\nbody\r\n";
        assert_eq!(
            strip(msg),
            "ARC-Authentication-Results: i=1; other.test; dkim=pass\r\n\
             ARC-Authentication-Results: i=1; mx.example.test.evil; dkim=pass\r\n\
             Authentication-Results: mx.example.test..; dkim=pass\r\n\
             \r\nbody\r\n"
        );
        // Our own name, configured with its trailing dot, finds the forgeries too.
        let stripped = strip_our_results(
            b"Authentication-Results: mx.example.test; x\r\n",
            "mx.example.test.",
        );
        assert_eq!(stripped, b"");
    }

    #[test]
    fn a_message_without_body_is_handled() {
        assert_eq!(
            strip("Authentication-Results: mx.example.test; x\r\nSubject: a\r\n"),
            "Subject: a\r\n"
        );
        assert_eq!(
            strip("Subject: a\r\nAuthentication-Results: mx.example.test; x"),
            "Subject: a\r\n"
        );
        assert_eq!(strip(""), "");
        assert_eq!(strip("\r\nbody"), "\r\nbody");
    }

    #[test]
    fn pvalues_are_quoted_when_needed() {
        assert_eq!(pvalue("alice@example.test"), "alice@example.test");
        assert_eq!(pvalue("example.test"), "example.test");
        assert_eq!(pvalue("@example.test"), "@example.test");
        assert_eq!(pvalue("a+b/c=@example.test"), "a+b/c=@example.test");
        assert_eq!(pvalue("AbCd/E=+"), "\"AbCd/E=+\"");
        assert_eq!(pvalue("::1"), "\"::1\"");
        assert_eq!(
            pvalue("\"a b\"@example.test"),
            "\"\\\"a b\\\"@example.test\""
        );
        assert_eq!(
            pvalue("x@evil\r\nBcc: y"),
            "\"x@evilBcc: y\"",
            "no line break"
        );
        assert_eq!(pvalue(""), "\"\"");
    }

    #[test]
    fn headers_are_folded_within_78_columns() {
        let long = format!("{}@example.test", "a".repeat(30));
        let resinfos = vec![
            format!("spf=pass smtp.mailfrom={long}"),
            "dkim=fail (body hash did not verify) header.d=example.test header.s=sel header.b=\"AbCd/E=+\"".to_string(),
            "dkim=pass header.d=example.test header.s=sel header.b=\"with space in quotes, long enough to need folding\"".to_string(),
            "arc=none".to_string(),
            "dmarc=pass (p=reject) header.from=example.test".to_string(),
        ];
        let field = header("mx.example.test", &resinfos);
        assert!(field.starts_with("Authentication-Results: mx.example.test;\r\n\tspf=pass"));
        assert!(field.ends_with("header.from=example.test\r\n"));
        let lines: Vec<&str> = field.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(lines.len() > resinfos.len() + 1, "long clauses are folded");
        for line in &lines[1..] {
            assert!(line.starts_with('\t'), "{line:?}");
        }
        for line in &lines {
            let quoted = line.contains("with space in quotes");
            assert!(line.len() <= LINE_LENGTH || quoted, "{line:?}");
        }
        // Unfolding (RFC 5322 §2.2.3) gives back the clauses, separated by ";".
        let unfolded = field.trim_end_matches("\r\n").replace("\r\n", "");
        let (_, value) = unfolded.split_once(':').unwrap();
        let normalize = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let clauses: Vec<String> = value.split(';').map(normalize).collect();
        assert_eq!(clauses[0], "mx.example.test");
        assert_eq!(clauses[1..], resinfos[..]);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("with space in quotes, long"))
        );
    }

    #[test]
    fn no_results_say_none() {
        assert_eq!(
            header("mx.example.test", &[]),
            "Authentication-Results: mx.example.test; none\r\n"
        );
    }

    #[test]
    fn body_hash_mismatch_is_fail_and_the_policy_is_applied() {
        let output = DkimOutput::neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch));
        assert_eq!(dkim_outcome(&output).result, AuthResult::Fail);
        let output = DkimOutput::neutral(mail_auth::Error::Dkim(DkimError::SignatureExpired));
        assert_eq!(dkim_outcome(&output).result, AuthResult::Neutral);

        let outcome = |result, policy| Report {
            spf: SpfOutcome {
                result: AuthResult::None,
                mail_from: String::new(),
                reason: None,
            },
            dkim: Vec::new(),
            arc: "none".into(),
            dmarc_outcome: DmarcOutcome {
                result,
                policy,
                header_from: "example.test".into(),
                reason: None,
            },
            dmarc: DmarcPolicyAction::None,
            from_domain: "example.test".into(),
            header: String::new(),
            arc_set: None,
        };
        use AuthResult as R;
        use DmarcPolicyAction as P;
        assert_eq!(outcome(R::Fail, P::Reject).dmarc_action(), P::Reject);
        assert_eq!(
            outcome(R::Fail, P::Quarantine).dmarc_action(),
            P::Quarantine
        );
        assert_eq!(outcome(R::Fail, P::None).dmarc_action(), P::None);
        assert_eq!(outcome(R::Pass, P::Reject).dmarc_action(), P::None);
        assert_eq!(outcome(R::TempError, P::Reject).dmarc_action(), P::None);
    }
}
