//! Who may send as which address on submission: nobody sends as anybody else. The
//! originator fields are read by the one message reader ([`message::author`]), the
//! same one DMARC, Sieve and the milter use, so what is checked here is what every
//! other part of Postern (and of the receiving side) sees.

use store::{Account, Store};

/// Whether `account` may use `address` as its envelope or From: address: its own
/// address, a `+tag` variant of it, or an alias that delivers to it.
pub fn may_send_as(store: &Store, account: &Account, address: &str) -> Result<bool, store::Error> {
    let Ok(address) = store::normalize_address(address) else {
        return Ok(false);
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Ok(false);
    };
    let mut candidates = vec![address.clone()];
    if let Some((base, _)) = local.split_once('+')
        && !base.is_empty()
    {
        candidates.push(format!("{base}@{domain}"));
    }
    for candidate in candidates {
        if candidate == account.email {
            return Ok(true);
        }
        if let Some(alias) = store.alias(&candidate)?
            && alias
                .targets
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&account.email))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Why a submitted message's originator fields are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No From: field (RFC 5322 §3.6: exactly one).
    NoFrom,
    /// Several From: fields: clients show one, DMARC may judge another.
    SeveralFromFields(usize),
    /// A From: field with no address in it.
    FromWithoutAddress,
    /// Several Sender: fields (RFC 5322 §3.6: at most one).
    SeveralSenderFields(usize),
    /// A From: with several mailboxes and no Sender: naming the user (RFC 5322 §3.6.2).
    SeveralAuthorsWithoutSender,
    /// A From: address that is not the user's.
    FromNotYours(String),
    /// A Sender: address that is not the user's.
    SenderNotYours(String),
}

impl Refusal {
    /// The reply text (after `550 5.7.1`), naming the rule.
    pub fn text(&self) -> String {
        match self {
            Refusal::NoFrom => "The message has no From: field (RFC 5322 section 3.6)".into(),
            Refusal::SeveralFromFields(n) => format!(
                "The message has {n} From: fields; exactly one is allowed (RFC 5322 section 3.6)"
            ),
            Refusal::FromWithoutAddress => "The From: field holds no address".into(),
            Refusal::SeveralSenderFields(n) => format!(
                "The message has {n} Sender: fields; at most one is allowed (RFC 5322 section 3.6)"
            ),
            Refusal::SeveralAuthorsWithoutSender => "A From: with several addresses needs a Sender: field with your address (RFC 5322 section 3.6.2)".into(),
            Refusal::FromNotYours(a) => format!("From: address <{a}> is not yours"),
            Refusal::SenderNotYours(a) => format!("Sender: address <{a}> is not yours"),
        }
    }
}

/// Checks a submitted message's From: and Sender: fields against the account: exactly
/// one From: field, every address in it the user's, and with several of them a single
/// Sender: that is the user's; a Sender: field, when present, the user's too.
pub fn check_originator(
    store: &Store,
    account: &Account,
    message: &[u8],
) -> Result<Result<(), Refusal>, store::Error> {
    let author = message::author(message);
    match author.from_fields {
        0 => return Ok(Err(Refusal::NoFrom)),
        1 => {}
        n => return Ok(Err(Refusal::SeveralFromFields(n))),
    }
    if author.sender_fields > 1 {
        return Ok(Err(Refusal::SeveralSenderFields(author.sender_fields)));
    }
    if author.from.is_empty() || author.from.iter().any(|m| m.address.is_empty()) {
        return Ok(Err(Refusal::FromWithoutAddress));
    }
    for mailbox in &author.from {
        if !may_send_as(store, account, &mailbox.address)? {
            return Ok(Err(Refusal::FromNotYours(mailbox.address.clone())));
        }
    }
    for mailbox in &author.sender {
        if mailbox.address.is_empty() || !may_send_as(store, account, &mailbox.address)? {
            return Ok(Err(Refusal::SenderNotYours(mailbox.address.clone())));
        }
    }
    if author.from.len() > 1 && author.sender.len() != 1 {
        return Ok(Err(Refusal::SeveralAuthorsWithoutSender));
    }
    Ok(Ok(()))
}

/// The domain whose keys sign a message Postern sends: that of its only From:
/// address (mail Postern writes, or submitted mail already checked).
pub fn signing_domain(message: &[u8]) -> Option<String> {
    let author = message::author(message);
    author
        .from
        .first()
        .filter(|_| author.from_fields == 1)
        .and_then(message::Mailbox::domain)
}

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The message has no single From: domain.
    #[error("the message has no single From: address to sign for")]
    NoDomain,
    /// The domain has no active DKIM key: signing would silently be off.
    #[error("the domain {0} has no active DKIM key (postern dkim list {0})")]
    NoActiveKey(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The signer failed.
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// The DKIM-Signature header fields for `message`, one per active key of the domain of
/// its From: address. A domain with no active key is an error, never unsigned mail.
pub fn dkim_signatures(store: &Store, message: &[u8]) -> Result<String, SigningError> {
    let domain = signing_domain(message).ok_or(SigningError::NoDomain)?;
    sign_as(store, &domain, message)
}

/// The signatures of a report Postern writes from `MAILER-DAEMON@<hostname>`: by the
/// From: domain's keys, else by those of the nearest parent domain we host (aligned
/// under DMARC's relaxed mode); unsigned when no such domain has a key, as a host
/// name outside our domains has none to sign with.
pub fn report_signatures(store: &Store, message: &[u8]) -> Result<String, SigningError> {
    let Some(domain) = signing_domain(message) else {
        return Ok(String::new());
    };
    let mut candidate = domain.as_str();
    loop {
        match sign_as(store, candidate, message) {
            Err(SigningError::NoActiveKey(_)) => {}
            other => return other,
        }
        match candidate.split_once('.') {
            Some((_, parent)) if parent.contains('.') => candidate = parent,
            _ => return Ok(String::new()),
        }
    }
}

fn sign_as(store: &Store, domain: &str, message: &[u8]) -> Result<String, SigningError> {
    let keys: Vec<dkim::sign::SigningKey> = store
        .dkim_keys(domain)?
        .into_iter()
        .filter(|k| k.active)
        .filter_map(|k| {
            Some(dkim::sign::SigningKey {
                algorithm: dkim::keys::Algorithm::from_key_type(&k.algorithm)?,
                domain: k.domain,
                selector: k.selector,
                private_key_pem: k.private_key_pem,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(SigningError::NoActiveKey(domain.to_string()));
    }
    dkim::sign::sign(message, &keys).map_err(|e| SigningError::Sign(e.to_string()))
}

/// RFC 6409 §8.2, §8.3: the `Date:` and `Message-ID:` fields a submitted message
/// lacks, to put in front of it (a message without them is refused by large
/// receivers, and clients show `Date: ???`).
pub fn missing_msa_fields(message: &[u8], hostname: &str) -> String {
    let (mut date, mut id) = (false, false);
    for field in message::header::fields(message) {
        date |= field.is("Date");
        id |= field.is("Message-ID");
    }
    let mut out = String::new();
    if !date {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
            .unwrap_or(0);
        out.push_str(&format!(
            "Date: {}\r\n",
            mail_parser::DateTime::from_timestamp(now).to_rfc822()
        ));
    }
    if !id {
        let mut random = [0u8; 16];
        if getrandom::fill(&mut random).is_err() {
            // The time and a counter still make it unique on this host.
            random[..8].copy_from_slice(
                &std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
                    .to_le_bytes()[..8],
            );
        }
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!(
            "Message-ID: <{hex}.{}@{hostname}>\r\n",
            crate::session::queue_id()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msa_fields_are_added_only_when_missing() {
        let both = missing_msa_fields(b"Subject: x\r\n\r\nbody\r\n", "mail.example.test");
        assert!(both.starts_with("Date: "), "{both}");
        assert!(both.contains("\r\nMessage-ID: <"), "{both}");
        assert!(both.ends_with("@mail.example.test>\r\n"), "{both}");
        let none = missing_msa_fields(
            b"date: Sat, 5 Dec 2026 10:00:00 +0000\r\nMessage-Id: <a@b>\r\n\r\n",
            "h",
        );
        assert_eq!(none, "");
        // A Date: in the body is not a Date: field.
        let body_only = missing_msa_fields(b"Subject: x\r\n\r\nDate: no\r\n", "h");
        assert!(body_only.starts_with("Date: "));
    }

    #[test]
    fn the_signing_domain_is_the_single_from() {
        assert_eq!(
            signing_domain(b"From: A <a@Example.TEST>\r\n\r\n").as_deref(),
            Some("example.test")
        );
        assert_eq!(
            signing_domain(b"From: a@x.test\r\nFrom: b@y.test\r\n\r\n"),
            None
        );
    }
}
