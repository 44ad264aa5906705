//! A test certificate authority (rcgen) writing PEM files, for peers that need TLS
//! (a policy server, an ACME server) and for the roots our clients trust.

use std::path::Path;

use anyhow::Result;

/// A test CA; its certificate is written to `ca.pem` in the directory given to
/// [`TestCa::new`].
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Result<TestCa> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Postern test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key)?;
        std::fs::write(dir.join("ca.pem"), cert.pem())?;
        Ok(TestCa {
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// Issues a certificate for `names` (DNS names or IP addresses); writes
    /// `dir/<stem>.pem` and `dir/<stem>.key`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> Result<()> {
        let key = rcgen::KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)?.signed_by(&key, &self.issuer)?;
        std::fs::write(dir.join(format!("{stem}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem())?;
        Ok(())
    }
}
