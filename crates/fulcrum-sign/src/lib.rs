//! Signing keys and signature checks for the documents Fulcrum hands out.
//!
//! The registry signs exact bytes (a resolve document, the trust bundle) and publishes each key by
//! its `kid`. On the embedded default the key is a local Ed25519 key file created on first start;
//! it is a *development* key and is reported as one. KMS backends (PKCS#11, Vault Transit) plug in
//! behind [`Signer`].
//!
//! # Invariants
//! - The only algorithms are the ones listed in [`Alg`]; nothing is chosen from untrusted input.
//! - A key file is created with mode 0600 and never overwritten.
//! - This crate knows nothing about HTTP or storage.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alg {
    Ed25519,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Ed25519 => "ed25519",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("key file {0} is not a valid Ed25519 PKCS#8 key")]
    BadKey(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("signature is not valid base64")]
    Encoding,
    #[error("key {0} is not trusted")]
    UnknownKid(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// Something that can sign bytes with a published key. Implementations never expose private keys.
pub trait Signer: Send + Sync + fmt::Debug {
    fn kid(&self) -> &str;
    fn alg(&self) -> Alg;
    fn public_key(&self) -> &[u8];
    fn sign(&self, msg: &[u8]) -> Vec<u8>;
    /// True for keys that are not protected by a KMS (the local development key).
    fn is_development_key(&self) -> bool;
}

/// A local Ed25519 key kept in a PKCS#8 file.
pub struct LocalKey {
    pair: Ed25519KeyPair,
    kid: String,
    public: Vec<u8>,
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// `local-<first 16 hex of SHA-256(public key)>`: stable for a key, different across keys.
pub fn kid_for(prefix: &str, public: &[u8]) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(public);
    format!("{prefix}-{}", &hex::encode(h)[..16])
}

impl LocalKey {
    /// Load the key at `path`, or create it (mode 0600) if the file does not exist.
    /// Returns the key and whether it was created now.
    ///
    /// # Errors
    /// I/O failures and files that are not Ed25519 PKCS#8 keys.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SignError> {
        let io = |source| SignError::Io { path: path.display().to_string(), source };
        match std::fs::read(path) {
            Ok(bytes) => {
                Ok((Self::from_pkcs8(&bytes).map_err(|_| SignError::BadKey(path.display().to_string()))?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| SignError::BadKey("generated".into()))?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path).map_err(io)?;
                f.write_all(doc.as_ref()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok((Self::from_pkcs8(doc.as_ref()).map_err(|_| SignError::BadKey(path.display().to_string()))?, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn from_pkcs8(bytes: &[u8]) -> Result<Self, ()> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|_| ())?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(Self { kid: kid_for("local", &public), public, pair })
    }
}

impl Signer for LocalKey {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn alg(&self) -> Alg {
        Alg::Ed25519
    }
    fn public_key(&self) -> &[u8] {
        &self.public
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
    fn is_development_key(&self) -> bool {
        true
    }
}

/// One key as published in the trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub kid: String,
    pub alg: Alg,
    /// Raw public key, standard base64.
    pub public_key: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub development: bool,
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
        let public = B64.decode(&key.public_key).map_err(|_| VerifyError::Encoding)?;
        let sig = B64.decode(sig_b64).map_err(|_| VerifyError::Encoding)?;
        verify(key.alg, &public, msg, &sig)
    }
}

/// Verify a raw signature.
///
/// # Errors
/// `BadSignature` when it does not verify.
pub fn verify(alg: Alg, public: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
    match alg {
        Alg::Ed25519 => {
            UnparsedPublicKey::new(&ED25519, public).verify(msg, sig).map_err(|_| VerifyError::BadSignature)
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_reload_gives_same_key_and_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let (k1, created) = LocalKey::load_or_create(&p).unwrap();
        assert!(created);
        let (k2, created) = LocalKey::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(k1.kid(), k2.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let sig = k1.sign(b"hello");
        assert!(verify(Alg::Ed25519, k2.public_key(), b"hello", &sig).is_ok());
        assert_eq!(verify(Alg::Ed25519, k2.public_key(), b"hellO", &sig), Err(VerifyError::BadSignature));
    }

    #[test]
    fn bundle_refuses_unknown_kid_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (k, _) = LocalKey::load_or_create(&dir.path().join("key")).unwrap();
        let bundle = TrustBundle {
            version: 1,
            issued_at: "2026-01-01T00:00:00Z".into(),
            keys: vec![PublishedKey {
                kid: k.kid().into(),
                alg: Alg::Ed25519,
                public_key: b64(k.public_key()),
                valid_from: "2026-01-01T00:00:00Z".into(),
                valid_until: None,
                development: true,
            }],
        };
        let sig = b64(&k.sign(b"doc"));
        assert!(bundle.verify(k.kid(), b"doc", &sig).is_ok());
        assert_eq!(bundle.verify("other", b"doc", &sig), Err(VerifyError::UnknownKid("other".into())));
        assert_eq!(bundle.verify(k.kid(), b"doc", "%%%"), Err(VerifyError::Encoding));
        std::fs::write(dir.path().join("bad"), b"not a key").unwrap();
        assert!(matches!(LocalKey::load_or_create(&dir.path().join("bad")), Err(SignError::BadKey(_))));
    }
}
