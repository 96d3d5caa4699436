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

/// DER prefixes of P-256 / P-384 SubjectPublicKeyInfo; the uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P384_SPKI_PREFIX: [u8; 23] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
    0x22, 0x03, 0x62, 0x00,
];

impl PublicKey {
    /// A public key from an uncompressed EC point (`04‖X‖Y`, as PKCS#11 `CKA_EC_POINT` holds
    /// it inside an OCTET STRING) or a raw Ed25519 key.
    ///
    /// # Errors
    /// A point of the wrong length for `alg`.
    pub fn from_point(alg: Alg, point: &[u8]) -> Result<Self, KeyError> {
        let mut der = match (alg, point.len()) {
            (Alg::Ed25519, 32) => return Self::from_ed25519_raw(point),
            (Alg::EcdsaP256Sha256, 65) => P256_SPKI_PREFIX.to_vec(),
            (Alg::EcdsaP384Sha384, 97) => P384_SPKI_PREFIX.to_vec(),
            _ => return Err(KeyError::Unsupported),
        };
        der.extend_from_slice(point);
        Self::from_spki_der(&der)
    }
}

/// Convert a fixed-size ECDSA signature (`r‖s`, as PKCS#11 returns it) to ASN.1 DER.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Vec<u8> {
    fn int(bytes: &[u8]) -> Vec<u8> {
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
        let mut v = bytes[first..].to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body: Vec<u8> = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_signatures_become_der_that_verifies() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        };
        for (alg, signing) in [
            (Alg::EcdsaP256Sha256, &ECDSA_P256_SHA256_FIXED_SIGNING),
            (Alg::EcdsaP384Sha384, &ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            let rng = SystemRandom::new();
            let doc = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, doc.as_ref()).unwrap();
            let key = PublicKey::from_point(alg, pair.public_key().as_ref()).unwrap();
            for i in 0..50u8 {
                let msg = [i; 17];
                let raw = pair.sign(&rng, &msg).unwrap();
                key.verify(&msg, &ecdsa_raw_to_der(raw.as_ref())).unwrap();
            }
        }
        assert!(PublicKey::from_point(Alg::EcdsaP256Sha256, &[4; 10]).is_err());
    }
}
