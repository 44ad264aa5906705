//! DKIM key generation. Private keys are PKCS#8 PEM; public keys are given as the
//! base64 `p=` value of the DKIM record: for RSA the SubjectPublicKeyInfo DER (what
//! opendkim and most DNS records publish), for Ed25519 the raw 32-byte key
//! (RFC 8463 §4.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::KeyPair;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::Error;

/// A DKIM signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
    /// rsa-sha256 with a 2048-bit key (RFC 6376, RFC 8301).
    Rsa2048,
}

impl Algorithm {
    /// The `k=` tag value of the DKIM record.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa2048 => "rsa",
        }
    }

    /// Parses a `k=` value.
    pub fn from_key_type(k: &str) -> Option<Algorithm> {
        match k {
            "ed25519" => Some(Algorithm::Ed25519),
            "rsa" => Some(Algorithm::Rsa2048),
            _ => None,
        }
    }
}

/// A freshly generated key pair.
#[derive(Clone)]
pub struct GeneratedKey {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// PKCS#8 PEM of the private key.
    pub private_key_pem: String,
    /// Base64 of the public key, as the record's `p=` value.
    pub public_key_b64: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("public_key_b64", &self.public_key_b64)
            .finish_non_exhaustive()
    }
}

/// Generates a key pair of `algorithm` from the operating system's random source.
pub fn generate(algorithm: Algorithm) -> Result<GeneratedKey, Error> {
    let err = |e: &dyn std::fmt::Display| Error::Key(e.to_string());
    match algorithm {
        Algorithm::Ed25519 => {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 =
                ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| err(&e))?;
            let pair =
                ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| err(&e))?;
            Ok(GeneratedKey {
                algorithm,
                private_key_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
                public_key_b64: STANDARD.encode(pair.public_key().as_ref()),
            })
        }
        Algorithm::Rsa2048 => {
            let private =
                rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|e| err(&e))?;
            let public = private.to_public_key();
            let private_key_pem = private.to_pkcs8_pem(LineEnding::LF).map_err(|e| err(&e))?;
            let spki = public.to_public_key_der().map_err(|e| err(&e))?;
            Ok(GeneratedKey {
                algorithm,
                private_key_pem: private_key_pem.to_string(),
                public_key_b64: STANDARD.encode(spki.as_bytes()),
            })
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_public_key_is_raw_32_bytes() {
        let k = generate(Algorithm::Ed25519).unwrap();
        assert_eq!(STANDARD.decode(&k.public_key_b64).unwrap().len(), 32);
        assert!(
            k.private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
    }

    #[test]
    fn rsa_public_key_is_spki() {
        let k = generate(Algorithm::Rsa2048).unwrap();
        // SPKI of a 2048-bit RSA key starts with this prefix in base64.
        assert!(
            k.public_key_b64.starts_with("MIIBIjAN"),
            "{}",
            k.public_key_b64
        );
        assert!(
            k.private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
    }
}
