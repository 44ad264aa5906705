//! The certificates the listeners serve, as files: where each lives and what it says
//! (names, issuer, validity). Read by the metrics, the admin API and ACME renewal.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// What one certificate file says about its leaf.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Its DNS names (subjectAltName).
    pub names: Vec<String>,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Issuer and subject are the same (self-signed, as quickstart makes).
    pub self_signed: bool,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    /// Whether the certificate names `host`, directly or by a `*.parent` wildcard.
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| {
            n.eq_ignore_ascii_case(host)
                || n.strip_prefix("*.").is_some_and(|parent| {
                    host.split_once('.')
                        .is_some_and(|(_, p)| p.eq_ignore_ascii_case(parent))
                })
        })
    }
}

/// Every host name the HTTPS front answers for: the names certificates are ordered
/// for ([`crate::acme::wanted_names`]) and each mail domain itself (autoconfiguration
/// is served there too); lower case, without a trailing dot.
pub fn served_names(config: &Config, store: &store::Store) -> Vec<String> {
    let mut names = crate::acme::wanted_names(config, store);
    if let Ok(domains) = store.domains() {
        for domain in domains {
            if !names.contains(&domain.name) {
                names.push(domain.name);
            }
        }
    }
    let hostname = config.hostname.trim_end_matches('.').to_ascii_lowercase();
    if !names.contains(&hostname) {
        names.push(hostname);
    }
    names
}

/// With the self-signed default certificate in use (no `[tls] cert`, and
/// `DATA_DIR/tls/cert.pem` self-signed, as quickstart and `serve` make it), makes a
/// new one when it does not name every name we serve (the host name first, then
/// [`crate::acme::wanted_names`]), and reloads the listeners. True if it did.
pub fn cover_served_names(
    config: &Config,
    store: &store::Store,
    tls: &common::tls::Tls,
) -> Result<bool, String> {
    if !config.tls.cert.as_os_str().is_empty() {
        return Ok(false);
    }
    let path = default_cert(config);
    let Some(info) = read(&path) else {
        return Ok(false);
    };
    if !info.self_signed {
        return Ok(false);
    }
    let mut names = vec![config.hostname.trim_end_matches('.').to_ascii_lowercase()];
    for name in crate::acme::wanted_names(config, store) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.iter().all(|n| info.covers(n)) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    common::tls::write_self_signed(dir, &names).map_err(|e| e.to_string())?;
    tls.reload().map_err(|e| e.to_string())?;
    Ok(true)
}

/// The default pair's certificate file: `[tls] cert`, or `DATA_DIR/tls/cert.pem`.
pub fn default_cert(config: &Config) -> PathBuf {
    if config.tls.cert.as_os_str().is_empty() {
        config.data_dir.join("tls/cert.pem")
    } else {
        config.tls.cert.clone()
    }
}

/// The directory of the per-name pairs, `DATA_DIR/tls/sni` (`NAME.pem` + `NAME.key`).
pub fn sni_dir(config: &Config) -> PathBuf {
    config.data_dir.join("tls/sni")
}

/// The certificate files, by name: `default` and each SNI pair's name, sorted.
pub fn files(config: &Config) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = vec![("default".into(), default_cert(config))];
    if let Ok(entries) = std::fs::read_dir(sni_dir(config)) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("pem")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                files.push((stem.to_string(), path));
            }
        }
    }
    files.sort();
    files
}

/// Reads the leaf (first) certificate of a PEM file. None: missing or unparsable.
pub fn read(path: &Path) -> Option<CertInfo> {
    parse(&std::fs::read(path).ok()?)
}

/// Parses the leaf (first) certificate of a PEM chain.
pub fn parse(pem: &[u8]) -> Option<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertInfo {
        names,
        issuer: cert.issuer().to_string(),
        self_signed: cert.issuer().as_raw() == cert.subject().as_raw(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_issuer_and_validity_of_a_self_signed_pair() {
        let dir = tempfile::tempdir().unwrap();
        common::tls::write_self_signed(dir.path(), &["mail.example.test".into()]).unwrap();
        let info = read(&dir.path().join("cert.pem")).unwrap();
        assert_eq!(info.names, ["mail.example.test"]);
        assert!(info.self_signed);
        assert!(info.covers("MAIL.example.test"));
        assert!(!info.covers("my.example.test"));
        assert!(info.not_after > info.not_before);
        assert!(read(&dir.path().join("key.pem")).is_none());
    }

    #[test]
    fn a_wildcard_covers_direct_subdomains_only() {
        let info = CertInfo {
            names: vec!["*.example.test".into()],
            issuer: String::new(),
            self_signed: false,
            not_before: 0,
            not_after: 0,
        };
        assert!(info.covers("my.example.test"));
        assert!(!info.covers("example.test"));
        assert!(!info.covers("a.b.example.test"));
    }
}
