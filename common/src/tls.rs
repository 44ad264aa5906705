//! TLS for every listener: rustls with ring, TLS 1.2 and 1.3 only, ECDHE key exchange
//! and AEAD suites only, server preference order; certificates chosen by SNI and
//! reloaded in place (SIGHUP) without dropping connections. ACME TLS-ALPN-01
//! validation (RFC 8737) is answered with a challenge certificate set for the name.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[tls]`: the certificate every TLS listener presents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// PEM file with the certificate chain (leaf first), and its private key after it
    /// if you like. Empty: `DATA_DIR/tls/cert.pem`, the self-signed certificate
    /// `quickstart` made (or the one ACME got for the host name), key included.
    pub cert: PathBuf,
    /// PEM file with the private key of `cert` (PKCS#8, PKCS#1 or SEC1), read only when
    /// `cert` holds no key. Empty: `DATA_DIR/tls/key.pem`. Besides this default pair,
    /// every `NAME.pem` (with its key, or with `NAME.key` beside it) in
    /// `DATA_DIR/tls/sni/` is served to clients asking for host NAME (SNI; a
    /// `*.example.com` pair serves that domain's direct subdomains). A name with no
    /// pair of its own gets the default pair. SIGHUP reloads all of them; a pair that
    /// does not load is logged and skipped. The files must be readable by the user
    /// `serve` runs as (`[server] run_as`) for SIGHUP and renewals.
    pub key: PathBuf,
}

/// Errors loading certificates or keys.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Certificate generation or rustls configuration failed.
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// Where the certificates come from: resolved paths, re-read on reload.
#[derive(Debug, Clone)]
struct Sources {
    cert: PathBuf,
    key: PathBuf,
    sni_dir: PathBuf,
}

#[derive(Debug)]
struct Certs {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// The ALPN protocol of ACME TLS-ALPN-01 validation (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Picks the certificate for a handshake from the SNI name.
#[derive(Debug)]
struct SniResolver {
    certs: RwLock<Arc<Certs>>,
    /// TLS-ALPN-01 challenge certificates by name, while an order is validated.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 §3: only the challenge certificate, never a regular one.
            let name = hello.server_name()?.to_ascii_lowercase();
            let challenges = self.challenges.read().unwrap_or_else(|e| e.into_inner());
            return challenges.get(&name).cloned();
        }
        let certs = self.certs.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(name) = hello.server_name() else {
            return Some(certs.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(c) = certs.by_name.get(&name) {
            return Some(c.clone());
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(c) = certs.by_name.get(&format!("*.{parent}"))
        {
            return Some(c.clone());
        }
        Some(certs.default.clone())
    }
}

/// The TLS state shared by all listeners: one rustls `ServerConfig` whose certificates
/// can be swapped at run time.
#[derive(Debug, Clone)]
pub struct Tls {
    resolver: Arc<SniResolver>,
    server_config: Arc<rustls::ServerConfig>,
    sources: Sources,
}

impl Tls {
    /// Loads the certificates named by `config` (defaults under `data_dir/tls/`).
    pub fn load(config: &Config, data_dir: &Path) -> Result<Tls, Error> {
        let tls_dir = data_dir.join("tls");
        let pick = |p: &PathBuf, default: &str| {
            if p.as_os_str().is_empty() {
                tls_dir.join(default)
            } else {
                p.clone()
            }
        };
        let sources = Sources {
            cert: pick(&config.cert, "cert.pem"),
            key: pick(&config.key, "key.pem"),
            sni_dir: tls_dir.join("sni"),
        };
        let resolver = Arc::new(SniResolver {
            certs: RwLock::new(Arc::new(load_certs(&sources)?)),
            challenges: RwLock::new(HashMap::new()),
        });
        let server_config = Arc::new(server_config(resolver.clone())?);
        Ok(Tls {
            resolver,
            server_config,
            sources,
        })
    }

    /// Re-reads every certificate and key. On error the old ones stay in use.
    /// Connections already open keep their session; new handshakes use the new ones.
    pub fn reload(&self) -> Result<usize, Error> {
        let certs = load_certs(&self.sources)?;
        let count = 1 + certs.by_name.len();
        *self
            .resolver
            .certs
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(certs);
        Ok(count)
    }

    /// Answers TLS-ALPN-01 validation for `name` with `cert` (the self-signed
    /// certificate carrying the acmeIdentifier extension) and its key.
    pub fn set_alpn_challenge(
        &self,
        name: &str,
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), Error> {
        // Not `from_der`: webpki refuses the critical acmeIdentifier extension, which
        // only the CA's validator has to understand.
        let provider = rustls::crypto::ring::default_provider();
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| Error::Setup(format!("TLS-ALPN-01 key for {name}: {e}")))?;
        let certified = CertifiedKey::new(vec![cert], signer);
        self.resolver
            .challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_ascii_lowercase(), Arc::new(certified));
        Ok(())
    }

    /// Stops answering TLS-ALPN-01 validation for `name`.
    pub fn clear_alpn_challenge(&self, name: &str) {
        self.resolver
            .challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name.to_ascii_lowercase());
    }

    /// An acceptor for one handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config.clone())
    }

    /// The rustls configuration (for listeners that drive rustls themselves).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config.clone()
    }
}

fn server_config(resolver: Arc<SniResolver>) -> Result<rustls::ServerConfig, Error> {
    // ring's default suites are exactly what we want: TLS 1.3's three AEAD suites and
    // TLS 1.2's ECDHE_{ECDSA,RSA} with AES-GCM or ChaCha20-Poly1305; its key exchange
    // groups are X25519, P-256 and P-384 (ECDHE only, no finite-field DH).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.ignore_client_order = true;
    Ok(config)
}

fn load_certs(sources: &Sources) -> Result<Certs, Error> {
    let default = Arc::new(load_pair(&sources.cert, &sources.key)?);
    let mut by_name = HashMap::new();
    match fs::read_dir(&sources.sni_dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|source| Error::Io {
                    path: sources.sni_dir.clone(),
                    source,
                })?;
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let key = path.with_extension("key");
                // One bad pair must not take the others (or the default) down with it.
                match load_pair(&path, &key) {
                    Ok(pair) => {
                        by_name.insert(name.to_ascii_lowercase(), Arc::new(pair));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "skipping a certificate pair that does not load")
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                path: sources.sni_dir.clone(),
                source,
            });
        }
    }
    Ok(Certs { default, by_name })
}

/// Loads a pair: the key from the certificate file itself when it holds one (as
/// [`write_pair`] writes them), else from `key`.
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, Error> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    if PrivateKeyDer::from_pem_slice(&cert_pem).is_ok() {
        return pair_from_pem(&cert_pem, &cert_pem, cert, cert);
    }
    pair_from_pem(&cert_pem, &read(key)?, cert, key)
}

/// Replaces `cert` with the chain and its key in one file (mode 0600): written beside
/// it, synced, renamed over it, and the directory synced. A crash at any point leaves
/// the old pair or the new one, never a key that does not fit its certificate. The
/// pair must load first. A separate key file of the old pair (`NAME.key`, `key.pem`)
/// is no longer read and may be removed.
pub fn write_pair(cert: &Path, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), Error> {
    check_pair(chain_pem, key_pem)?;
    let dir = cert.parent().unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let name = cert
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut both = chain_pem.to_vec();
    if !both.ends_with(b"\n") {
        both.push(b'\n');
    }
    both.extend_from_slice(key_pem);
    write_private(&tmp, &both)?;
    if let Err(source) = fs::rename(&tmp, cert) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io {
            path: cert.to_path_buf(),
            source,
        });
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Checks that a certificate chain and a private key (both PEM) load as a pair, as
/// the listeners would load them.
pub fn check_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), Error> {
    pair_from_pem(
        cert_pem,
        key_pem,
        Path::new("(new certificate)"),
        Path::new("(new key)"),
    )
    .map(|_| ())
}

fn pair_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, Error> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            path: cert.to_path_buf(),
            what: format!("bad certificate PEM: {e}"),
        })?;
    if chain.is_empty() {
        return Err(Error::Pem {
            path: cert.to_path_buf(),
            what: "no CERTIFICATE block".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Pem {
        path: key.to_path_buf(),
        what: format!("no usable private key: {e}"),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| Error::Pem {
        path: key.to_path_buf(),
        what: format!("key does not fit certificate {}: {e}", cert.display()),
    })
}

/// Writes a self-signed certificate for `names` (the first is the subject) with its
/// ECDSA P-256 key to `dir/cert.pem` (one file, mode 0600, replaced atomically by
/// [`write_pair`]), creating `dir`; an old `dir/key.pem` is removed.
pub fn write_self_signed(dir: &Path, names: &[String]) -> Result<(), Error> {
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Setup(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| Error::Setup(e.to_string()))?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.clone());
    }
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(825 * 86_400)).into();
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Setup(e.to_string()))?;
    write_pair(
        &dir.join("cert.pem"),
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )?;
    match fs::remove_file(dir.join("key.pem")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: dir.join("key.pem"),
            source,
        }),
    }
}

/// Creates `path` with mode 0600 and writes `data` to it.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_loads_and_reloads() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        write_self_signed(&dir.path().join("tls"), &["mail.example.test".into()]).unwrap();
        let tls = Tls::load(&Config::default(), dir.path()).unwrap();
        assert_eq!(tls.reload().unwrap(), 1);
        let sni = dir.path().join("tls/sni");
        write_self_signed(&sni, &["my.example.test".into()]).unwrap();
        fs::rename(sni.join("cert.pem"), sni.join("my.example.test.pem")).unwrap();
        assert_eq!(tls.reload().unwrap(), 2);
        let cfg = tls.server_config();
        assert!(cfg.ignore_client_order);
    }

    #[test]
    fn a_mismatched_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        fs::write(dir.path().join("a.pem"), a.cert.pem()).unwrap();
        fs::write(dir.path().join("b.key"), b.signing_key.serialize_pem()).unwrap();
        let err = load_pair(&dir.path().join("a.pem"), &dir.path().join("b.key"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit"), "{err}");
        assert!(
            write_pair(
                &dir.path().join("c.pem"),
                a.cert.pem().as_bytes(),
                b.signing_key.serialize_pem().as_bytes()
            )
            .is_err()
        );
        assert!(!dir.path().join("c.pem").exists());
    }

    #[test]
    fn a_pair_in_one_file_wins_over_a_stale_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        let cert = dir.path().join("a.test.pem");
        write_pair(
            &cert,
            a.cert.pem().as_bytes(),
            a.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        // The key file of an older pair (or another one) is not read.
        fs::write(dir.path().join("a.test.key"), b.signing_key.serialize_pem()).unwrap();
        load_pair(&cert, &dir.path().join("a.test.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&cert).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }
}
