//! One ACME conversation (RFC 8555) with instant-acme: the account, kept in
//! `DATA_DIR/acme/account.json`, and one certificate order for one host name,
//! validated by HTTP-01 or TLS-ALPN-01 on our own listeners.

use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::{Challenge, Config, Http01};

/// How long the CA may take to validate our challenge responses, and to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// The account as stored: which directory it belongs to, and its key.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

fn account_path(data_dir: &Path) -> PathBuf {
    data_dir.join("acme/account.json")
}

/// The ACME account for `[acme] directory`: the stored one, or a new one registered
/// (terms of service agreed, `[acme] email` as contact) and stored with mode 0600.
pub async fn account(config: &Config, data_dir: &Path) -> Result<Account, String> {
    let builder = || {
        if config.ca_file.as_os_str().is_empty() {
            Account::builder()
        } else {
            Account::builder_with_root(&config.ca_file)
        }
        .map_err(|e| format!("the ACME client: {e}"))
    };
    let path = account_path(data_dir);
    if let Ok(text) = std::fs::read(&path) {
        match serde_json::from_slice::<StoredAccount>(&text) {
            Ok(stored) if stored.directory == config.directory => {
                return builder()?
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(|e| format!("{}: {e}", config.directory));
            }
            Ok(_) => tracing::info!(
                directory = %config.directory,
                "[acme] directory changed: registering a new account"
            ),
            Err(e) => {
                return Err(format!(
                    "{}: {e} (move it away to register a new account)",
                    path.display()
                ));
            }
        }
    }
    let contact = format!("mailto:{}", config.email);
    let contacts = [contact.as_str()];
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: if config.email.is_empty() {
                    &[]
                } else {
                    &contacts
                },
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("registering with {}: {e}", config.directory))?;
    let stored = serde_json::to_vec_pretty(&StoredAccount {
        directory: config.directory.clone(),
        credentials,
    })
    .map_err(|e| e.to_string())?;
    save_private(&path, &stored)?;
    tracing::info!(id = account.id(), directory = %config.directory, "ACME account registered");
    Ok(account)
}

/// Writes `data` to `path` (mode 0600) through a temporary file and a rename, so
/// `path` holds either the old or the new content.
pub fn save_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    common::tls::write_private(&tmp, data).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where challenge responses are published while an order is validated.
pub struct Responders<'a> {
    /// HTTP-01 tokens, served on the plain HTTP listeners.
    pub http01: &'a Http01,
    /// TLS-ALPN-01 certificates, served on the HTTPS listeners.
    pub tls: &'a common::tls::Tls,
}

/// Removes what an order published, however the order ends.
struct Published<'a> {
    responders: &'a Responders<'a>,
    tokens: Vec<String>,
    alpn_names: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.responders.http01.remove(token);
        }
        for name in &self.alpn_names {
            self.responders.tls.clear_alpn_challenge(name);
        }
    }
}

/// A certificate chain (PEM, leaf first) and its private key (PEM, PKCS#8).
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders a certificate for `name` and answers its challenge of kind `challenge`.
pub async fn issue(
    account: &Account,
    name: &str,
    challenge: Challenge,
    responders: &Responders<'_>,
) -> Result<Issued, String> {
    let identifiers = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut published = Published {
        responders,
        tokens: Vec::new(),
        alpn_names: Vec::new(),
    };
    let kind = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(format!("authorization is {other:?}")),
        }
        let mut handle = authorization
            .challenge(kind.clone())
            .ok_or_else(|| format!("the CA offers no {kind:?} challenge for {name}"))?;
        let key_authorization = handle.key_authorization();
        match challenge {
            Challenge::Http01 => {
                responders
                    .http01
                    .insert(&handle.token, key_authorization.as_str());
                published.tokens.push(handle.token.clone());
            }
            Challenge::TlsAlpn01 => {
                let (cert, key) = alpn_certificate(name, key_authorization.digest().as_ref())?;
                responders
                    .tls
                    .set_alpn_challenge(name, cert, key)
                    .map_err(|e| e.to_string())?;
                published.alpn_names.push(name.to_string());
            }
        }
        handle
            .set_ready()
            .await
            .map_err(|e| format!("challenge: {e}"))?;
    }

    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(VALIDATION_TIMEOUT);
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(|e| format!("validation: {e}"))?;
    if status != OrderStatus::Ready {
        // Why: the failed challenge's problem document.
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authorization)) = authorizations.next().await {
            if let Ok(state) = authorization.refresh().await {
                reasons.extend(
                    state
                        .challenges
                        .iter()
                        .filter_map(|c| c.error.as_ref().map(ToString::to_string)),
                );
            }
        }
        if reasons.is_empty() {
            reasons.push(format!("the order is {status:?}"));
        }
        return Err(format!("validation failed: {}", reasons.join("; ")));
    }
    drop(published);

    // Our own key (ECDSA P-256) and CSR, so the key never leaves this process.
    let key = rcgen::KeyPair::generate().map_err(|e| format!("key: {e}"))?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("CSR: {e}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The RFC 8737 §3 challenge certificate: self-signed for `name`, with the critical
/// acmeIdentifier extension holding the key authorization's SHA-256 digest.
fn alpn_certificate(
    name: &str,
    digest: &[u8],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((cert.der().clone(), key))
}
