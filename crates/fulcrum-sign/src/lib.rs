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

pub mod keys;
pub mod local;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

pub use keys::{Alg, KeyError, PublicKey};
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

/// One key as published in the trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub kid: String,
    pub alg: Alg,
    /// DER SubjectPublicKeyInfo, standard base64.
    pub public_key: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub development: bool,
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

/// The set of keys a verifier trusts, as published at `/v1/trust-bundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustBundle {
    pub version: u64,
    pub issued_at: String,
    pub keys: Vec<PublishedKey>,
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
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}
