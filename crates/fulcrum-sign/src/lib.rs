//! Keys, signers and signature checks: the one crate that owns Fulcrum's crypto choices.
//!
//! The registry signs exact bytes (resolve documents, the trust bundle, release attestations) and
//! publishes each key by its `kid`. [`keys`] parses and verifies public keys of the closed
//! algorithm list; [`local`] holds the local key file signer (the embedded default, a
//! *development* key, reported as one). KMS backends (PKCS#11, Vault Transit) plug in behind
//! [`Signer`].
//!
//! # Invariants
//! - The only algorithms are the ones in [`Alg`]; nothing is chosen from untrusted input.
//! - aws-lc-rs is the only crypto provider; `ring` and OpenSSL stay out of the graph.
//! - Key files are created with mode 0600 and never overwritten.
//! - This crate knows nothing about HTTP or storage.

pub mod dsse;
pub mod keys;
pub mod local;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

pub use keys::{Alg, KeyError, PublicKey, ecdsa_raw_to_der};
pub use local::LocalKey;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("key file {0} is not a supported PKCS#8 private key (Ed25519, ECDSA P-256, ECDSA P-384)")]
    BadKey(String),
    #[error("the signer failed: {0}")]
    Backend(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("signature is not valid base64")]
    Encoding,
    #[error("key {0} is not trusted")]
    UnknownKid(String),
    #[error("key {0} was not valid at that time")]
    KeyNotValidAt(String),
    #[error("key {0} is compromised; nothing it signed is trusted")]
    KeyCompromised(String),
    #[error("published key is malformed")]
    BadKey,
    #[error("signature does not verify")]
    BadSignature,
}

/// Something that can sign bytes with a published key. Implementations never expose private keys.
pub trait Signer: Send + Sync + fmt::Debug {
    fn kid(&self) -> &str;
    fn public_key(&self) -> &PublicKey;
    /// Sign `msg` (the signer hashes it as its algorithm requires). ECDSA signatures are DER.
    ///
    /// # Errors
    /// Backend failures (an HSM or KMS that does not answer).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError>;
    /// True for keys that are not protected by a KMS (the local development key).
    fn is_development_key(&self) -> bool;
    fn alg(&self) -> Alg {
        self.public_key().alg()
    }
}

/// `<prefix>-<first 16 hex of SHA-256(SPKI DER)>`: stable for a key, different across keys.
pub fn kid_for(prefix: &str, key: &PublicKey) -> String {
    format!("{prefix}-{}", &key.fingerprint()[..16])
}

/// Where a key stands. A retired key's signatures stay valid inside its window; a compromised
/// key's signatures are never valid again, whenever they claim to have been made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Retired,
    Compromised,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
            KeyStatus::Compromised => "compromised",
        }
    }
}

impl std::str::FromStr for KeyStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [KeyStatus::Active, KeyStatus::Retired, KeyStatus::Compromised].into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// One key as published in the trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub kid: String,
    pub alg: Alg,
    /// DER SubjectPublicKeyInfo, standard base64.
    pub public_key: String,
    /// RFC 3339: signatures made before this are not valid.
    pub valid_from: String,
    /// RFC 3339: signatures made at or after this are not valid (`None` = open).
    pub valid_until: Option<String>,
    #[serde(default = "active")]
    pub status: KeyStatus,
    pub development: bool,
}

fn active() -> KeyStatus {
    KeyStatus::Active
}

impl PublishedKey {
    /// # Errors
    /// A malformed or unsupported key, or one whose algorithm differs from the published one.
    pub fn key(&self) -> Result<PublicKey, VerifyError> {
        let der = B64.decode(&self.public_key).map_err(|_| VerifyError::BadKey)?;
        let k = PublicKey::from_spki_der(&der).map_err(|_| VerifyError::BadKey)?;
        if k.alg() != self.alg {
            return Err(VerifyError::BadKey);
        }
        Ok(k)
    }
}

/// The set of keys a verifier trusts, as published at `/v1/trust-bundle`: versioned (the version
/// only grows) and expiring, so a verifier can refuse rollback and freeze.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustBundle {
    pub version: u64,
    pub issued_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    pub keys: Vec<PublishedKey>,
    /// The Sigstore trusted root in force for keyless signatures, when a key-admin imported one:
    /// verifiers use this one and never fetch another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigstore: Option<SigstoreRoot>,
}

/// A Sigstore `trusted_root.json` as the registry holds it: its import version, the SHA-256 of
/// its exact bytes, and those bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigstoreRoot {
    pub version: u64,
    pub digest: String,
    pub trusted_root: String,
}

impl TrustBundle {
    /// Verify `sig` (standard base64) over `msg` with the key named `kid`.
    ///
    /// # Errors
    /// Unknown kid, bad encoding, or a signature that does not verify.
    pub fn verify(&self, kid: &str, msg: &[u8], sig_b64: &str) -> Result<(), VerifyError> {
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| VerifyError::UnknownKid(kid.to_owned()))?;
        let sig = B64.decode(sig_b64).map_err(|_| VerifyError::Encoding)?;
        key.key()?.verify(msg, &sig)
    }

    /// Verify a signature made at `signed_at` (a time the verifier trusts, e.g. the signed
    /// `issued_at` of a document it has checked against its own clock): the key must exist,
    /// not be compromised, and its validity window must contain `signed_at`.
    ///
    /// # Errors
    /// As [`TrustBundle::verify`], plus `KeyNotValidAt` and `KeyCompromised`.
    pub fn verify_at(
        &self,
        kid: &str,
        msg: &[u8],
        sig_b64: &str,
        signed_at: time::OffsetDateTime,
    ) -> Result<(), VerifyError> {
        use time::format_description::well_known::Rfc3339;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| VerifyError::UnknownKid(kid.to_owned()))?;
        if key.status == KeyStatus::Compromised {
            return Err(VerifyError::KeyCompromised(kid.to_owned()));
        }
        let from = time::OffsetDateTime::parse(&key.valid_from, &Rfc3339).map_err(|_| VerifyError::BadKey)?;
        let until = key
            .valid_until
            .as_deref()
            .map(|u| time::OffsetDateTime::parse(u, &Rfc3339))
            .transpose()
            .map_err(|_| VerifyError::BadKey)?;
        if signed_at < from || until.is_some_and(|u| signed_at >= u) {
            return Err(VerifyError::KeyNotValidAt(kid.to_owned()));
        }
        self.verify(kid, msg, sig_b64)
    }
}

/// DSSE v1 pre-authentication encoding: what a DSSE signature covers,
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` — never the bare payload.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}
