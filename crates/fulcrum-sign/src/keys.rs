//! Public keys and signature verification, for every algorithm Fulcrum accepts.
//!
//! The list is closed ([`Alg`]): Ed25519, ECDSA P-256 with SHA-256 and ECDSA P-384 with SHA-384
//! (DER signatures, as X.509, cosign and OpenSSF model-signing use). A key's algorithm is fixed by
//! the key itself (its SubjectPublicKeyInfo), never by a field of the thing being verified.

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ED25519, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alg {
    Ed25519,
    EcdsaP256Sha256,
    EcdsaP384Sha384,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::Ed25519, Alg::EcdsaP256Sha256, Alg::EcdsaP384Sha384];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Ed25519 => "ed25519",
            Alg::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Alg::EcdsaP384Sha384 => "ecdsa-p384-sha384",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Alg {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM public key")]
    Pem,
    #[error("unsupported or malformed public key (accepted: Ed25519, ECDSA P-256, ECDSA P-384)")]
    Unsupported,
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// A parsed public key with its algorithm.
#[derive(Clone)]
pub struct PublicKey {
    alg: Alg,
    spki: Vec<u8>,
    parsed: ParsedPublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("alg", &self.alg).field("fingerprint", &self.fingerprint()).finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl PublicKey {
    /// Parse a DER SubjectPublicKeyInfo. The curve in the key decides the algorithm.
    ///
    /// # Errors
    /// Keys of any other type or curve.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Some(raw) = der.strip_prefix(&ED25519_SPKI_PREFIX[..])
            && raw.len() == 32
        {
            let parsed = ParsedPublicKey::new(&ED25519, raw).map_err(|_| KeyError::Unsupported)?;
            return Ok(Self { alg: Alg::Ed25519, spki: der.to_vec(), parsed });
        }
        for (alg, algorithm) in
            [(Alg::EcdsaP256Sha256, &ECDSA_P256_SHA256_ASN1), (Alg::EcdsaP384Sha384, &ECDSA_P384_SHA384_ASN1)]
        {
            if let Ok(parsed) = ParsedPublicKey::new(algorithm, der)
                && der.first() == Some(&0x30)
            {
                return Ok(Self { alg, spki: der.to_vec(), parsed });
            }
        }
        Err(KeyError::Unsupported)
    }

    /// A raw 32-byte Ed25519 key.
    ///
    /// # Errors
    /// Wrong length.
    pub fn from_ed25519_raw(raw: &[u8]) -> Result<Self, KeyError> {
        if raw.len() != 32 {
            return Err(KeyError::Unsupported);
        }
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(raw);
        Self::from_spki_der(&der)
    }

    /// Parse a `-----BEGIN PUBLIC KEY-----` PEM.
    ///
    /// # Errors
    /// Not PEM, or an unsupported key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| KeyError::Pem)?;
        Self::from_spki_der(der.as_ref())
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Canonical PEM: 64-column base64 lines, `\n` line ends, trailing newline.
    pub fn to_pem(&self) -> String {
        let b = B64.encode(&self.spki);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// The OpenSSF model-signing key hint: hex SHA-256 of the canonical PEM text.
    pub fn model_signing_hint(&self) -> String {
        hex::encode(sha2::Sha256::digest(self.to_pem().as_bytes()))
    }

    /// Hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.spki))
    }

    /// Verify a signature (DER for ECDSA, 64 bytes for Ed25519) over `msg`.
    ///
    /// # Errors
    /// `BadSignature` when it does not verify.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), crate::VerifyError> {
        self.parsed.verify_sig(msg, sig).map_err(|_| crate::VerifyError::BadSignature)
    }
}
