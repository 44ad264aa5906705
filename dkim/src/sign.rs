//! DKIM signing (RFC 6376) with mail-auth: relaxed/relaxed, a standard header set with
//! From over-signed (listed once more than it occurs, so no From can be added later),
//! one signature per active key (Ed25519, RFC 8463, and RSA-SHA256).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::Error;
use crate::keys::Algorithm;

/// The headers signed, in order. `From` twice: the second instance does not exist,
/// which over-signs it (RFC 6376 §8.15).
pub const SIGNED_HEADERS: [&str; 16] = [
    "From",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Sender",
];

/// A private key to sign with.
#[derive(Clone)]
pub struct SigningKey {
    /// The d= domain.
    pub domain: String,
    /// The s= selector.
    pub selector: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The PKCS#8 PEM private key.
    pub private_key_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The `DKIM-Signature:` header fields for `message` (CRLF line ends), one per key,
/// to be prepended to it. Parsed keys are kept for the life of the process (an RSA
/// key's parse and consistency check costs more than the signature itself); a key
/// whose PEM changes under the same selector is parsed again.
pub fn sign(message: &[u8], keys: &[SigningKey]) -> Result<String, Error> {
    let mut out = String::new();
    for key in keys {
        let err = |e: mail_auth::Error| Error::Key(format!("{} {}: {e}", key.domain, key.selector));
        let signature = match parsed(key)? {
            Parsed::Ed25519(pk) => signer(DkimSigner::from_key(Shared(pk)), key)
                .sign(message)
                .map_err(err)?,
            Parsed::Rsa(pk) => signer(DkimSigner::from_key(Shared(pk)), key)
                .sign(message)
                .map_err(err)?,
        };
        out.push_str(&signature.to_header());
    }
    Ok(out)
}

/// The header fields an ARC-Message-Signature covers: those a forwarder leaves alone
/// (no trace fields, which every hop adds).
pub const ARC_SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
];

/// The ARC set (RFC 8617: ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results)
/// a forwarder adds to `message`, whose authentication it recorded in `results` and
/// whose existing chain `arc` is; prepend it to the forwarded copy. Fails when the
/// chain cannot be extended (RFC 8617 §5.1.2: a failed chain is not sealed again).
pub fn arc_seal(
    message: &mail_auth::AuthenticatedMessage<'_>,
    results: &mail_auth::AuthenticationResults<'_>,
    arc: &mail_auth::ArcOutput<'_>,
    key: &SigningKey,
) -> Result<String, Error> {
    let err = |e: mail_auth::Error| Error::Key(format!("ARC seal by {}: {e}", key.domain));
    match parsed(key)? {
        Parsed::Ed25519(pk) => seal_with(Shared(pk), key, message, results, arc).map_err(err),
        Parsed::Rsa(pk) => seal_with(Shared(pk), key, message, results, arc).map_err(err),
    }
}

fn seal_with<K: mail_auth::common::crypto::SigningKey<Hasher = Sha256>>(
    pk: K,
    key: &SigningKey,
    message: &mail_auth::AuthenticatedMessage<'_>,
    results: &mail_auth::AuthenticationResults<'_>,
    arc: &mail_auth::ArcOutput<'_>,
) -> mail_auth::Result<String> {
    Ok(mail_auth::arc::ArcSealer::from_key(pk)
        .domain(key.domain.clone())
        .selector(key.selector.clone())
        .headers(ARC_SIGNED_HEADERS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .seal(message, results, arc)?
        .to_header())
}

/// A private key parsed once and shared by every signature made with it.
#[derive(Clone)]
enum Parsed {
    Ed25519(Arc<Ed25519Key>),
    Rsa(Arc<RsaKey<Sha256>>),
}

/// Lends a shared key to mail-auth's signer, which takes its key by value.
struct Shared<K>(Arc<K>);

impl<K: mail_auth::common::crypto::SigningKey> mail_auth::common::crypto::SigningKey for Shared<K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

/// (domain, selector) -> (the PEM it was parsed from, the key).
type Cache = HashMap<(String, String), (String, Parsed)>;

fn parsed(key: &SigningKey) -> Result<Parsed, Error> {
    static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(HashMap::new()));
    let id = (key.domain.clone(), key.selector.clone());
    if let Some((pem, parsed)) = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        && *pem == key.private_key_pem
    {
        return Ok(parsed.clone());
    }
    let err = |e: mail_auth::Error| Error::Key(format!("{} {}: {e}", key.domain, key.selector));
    let der = pem_to_der(&key.private_key_pem)
        .ok_or_else(|| Error::Key(format!("{} {}: unreadable PEM", key.domain, key.selector)))?;
    let parsed = match key.algorithm {
        Algorithm::Ed25519 => {
            Parsed::Ed25519(Arc::new(Ed25519Key::from_pkcs8_der(&der).map_err(err)?))
        }
        Algorithm::Rsa2048 => {
            let der = rustls_pki_types::PrivateKeyDer::Pkcs8(der.into());
            Parsed::Rsa(Arc::new(RsaKey::<Sha256>::from_key_der(der).map_err(err)?))
        }
    };
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, (key.private_key_pem.clone(), parsed.clone()));
    Ok(parsed)
}

fn signer<T: mail_auth::common::crypto::SigningKey>(
    builder: DkimSigner<T, mail_auth::dkim::NeedDomain>,
    key: &SigningKey,
) -> DkimSigner<T, mail_auth::dkim::Done> {
    builder
        .domain(key.domain.clone())
        .selector(key.selector.clone())
        .headers(SIGNED_HEADERS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate;

    #[test]
    fn signs_with_both_algorithms_and_oversigns_from() {
        let msg = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let keys: Vec<SigningKey> = [Algorithm::Ed25519, Algorithm::Rsa2048]
            .into_iter()
            .map(|algorithm| SigningKey {
                domain: "example.test".into(),
                selector: format!("s-{}", algorithm.key_type()),
                algorithm,
                private_key_pem: generate(algorithm).unwrap().private_key_pem,
            })
            .collect();
        let headers = sign(msg, &keys).unwrap();
        assert_eq!(headers.matches("DKIM-Signature:").count(), 2, "{headers}");
        assert!(
            headers.contains("a=ed25519-sha256") && headers.contains("a=rsa-sha256"),
            "{headers}"
        );
        assert!(headers.contains("c=relaxed/relaxed"), "{headers}");
        let unfolded = headers.replace("\r\n", "").replace(['\t', ' '], "");
        assert!(
            unfolded.contains(":From:From:"),
            "From is over-signed: {headers}"
        );
        assert!(headers.ends_with("\r\n"));
    }
}
