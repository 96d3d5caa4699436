//! The local key file signer: a PKCS#8 private key on disk (Ed25519 by default; ECDSA P-256 or
//! P-384 for OpenSSF model-signing compatibility). Fine for development and for CI runners that
//! hold their own key; a registry in production signs through a KMS instead.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use crate::{Alg, PublicKey, SignError, Signer, kid_for};

enum Pair {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
}

pub struct LocalKey {
    pair: Pair,
    public: PublicKey,
    kid: String,
    development: bool,
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").field("kid", &self.kid).field("alg", &self.public.alg()).finish_non_exhaustive()
    }
}

impl LocalKey {
    /// Load the Ed25519 key at `path` (DER PKCS#8), or create it (mode 0600) if missing.
    /// Returns the key and whether it was created now.
    ///
    /// # Errors
    /// I/O failures and files that are not supported PKCS#8 keys.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SignError> {
        let io = |source| SignError::Io { path: path.display().to_string(), source };
        match std::fs::read(path) {
            Ok(bytes) => Ok((Self::from_pkcs8_der(&bytes, "local", true).map_err(|_| bad(path))?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| bad(path))?;
                write_new(path, doc.as_ref()).map_err(io)?;
                Ok((Self::from_pkcs8_der(doc.as_ref(), "local", true).map_err(|_| bad(path))?, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Load a PKCS#8 private key from a PEM or DER file (e.g. a CI signing key).
    ///
    /// # Errors
    /// Unreadable files and unsupported keys.
    pub fn from_file(path: &Path) -> Result<Self, SignError> {
        let bytes = std::fs::read(path).map_err(|source| SignError::Io { path: path.display().to_string(), source })?;
        let der = match PrivatePkcs8KeyDer::from_pem_slice(&bytes) {
            Ok(der) => der.secret_pkcs8_der().to_vec(),
            Err(_) => bytes,
        };
        Self::from_pkcs8_der(&der, "key", false).map_err(|_| bad(path))
    }

    /// Generate a new key of `alg` and write it as PKCS#8 DER (mode 0600, never overwriting).
    ///
    /// # Errors
    /// I/O failures, including an existing file.
    pub fn generate(path: &Path, alg: Alg) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        let doc = match alg {
            Alg::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| bad(path))?,
            Alg::EcdsaP256Sha256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(|_| bad(path))?
            }
            Alg::EcdsaP384Sha384 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng).map_err(|_| bad(path))?
            }
        };
        write_new(path, doc.as_ref()).map_err(|source| SignError::Io { path: path.display().to_string(), source })?;
        Self::from_pkcs8_der(doc.as_ref(), "key", false).map_err(|_| bad(path))
    }

    /// A key that lives only in memory (test KMS fakes, benchmarks).
    ///
    /// # Errors
    /// Key generation failing.
    pub fn ephemeral(alg: Alg) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        let gen_err = |_| SignError::Backend("key generation failed".into());
        let doc = match alg {
            Alg::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng).map_err(gen_err)?,
            Alg::EcdsaP256Sha256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(gen_err)?
            }
            Alg::EcdsaP384Sha384 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng).map_err(gen_err)?
            }
        };
        Self::from_pkcs8_der(doc.as_ref(), "mem", false)
            .map_err(|()| SignError::Backend("generated key unusable".into()))
    }

    fn from_pkcs8_der(der: &[u8], prefix: &str, development: bool) -> Result<Self, ()> {
        let (pair, public) = if let Ok(p) = Ed25519KeyPair::from_pkcs8(der) {
            let public = PublicKey::from_ed25519_raw(p.public_key().as_ref()).map_err(|_| ())?;
            (Pair::Ed25519(p), public)
        } else if let Ok(p) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der) {
            let public = PublicKey::from_spki_der(p.public_key().as_der().map_err(|_| ())?.as_ref()).map_err(|_| ())?;
            (Pair::Ecdsa(p), public)
        } else if let Ok(p) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der) {
            let public = PublicKey::from_spki_der(p.public_key().as_der().map_err(|_| ())?.as_ref()).map_err(|_| ())?;
            (Pair::Ecdsa(p), public)
        } else {
            return Err(());
        };
        Ok(Self { kid: kid_for(prefix, &public), pair, public, development })
    }
}

fn bad(path: &Path) -> SignError {
    SignError::BadKey(path.display().to_string())
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Signer for LocalKey {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            Pair::Ed25519(p) => Ok(p.sign(msg).as_ref().to_vec()),
            Pair::Ecdsa(p) => p
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Backend("ECDSA signing failed".into())),
        }
    }
    fn is_development_key(&self) -> bool {
        self.development
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PublishedKey, TrustBundle, VerifyError, b64};

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
        let sig = k1.sign(b"hello").unwrap();
        assert!(k2.public_key().verify(b"hello", &sig).is_ok());
        assert_eq!(k2.public_key().verify(b"hellO", &sig), Err(VerifyError::BadSignature));
    }

    #[test]
    fn every_algorithm_signs_and_round_trips_through_pem() {
        let dir = tempfile::tempdir().unwrap();
        for alg in Alg::ALL {
            let k = LocalKey::generate(&dir.path().join(alg.as_str()), alg).unwrap();
            assert_eq!(k.public_key().alg(), alg);
            let pem = k.public_key().to_pem();
            let back = PublicKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(&back, k.public_key());
            let sig = k.sign(b"msg").unwrap();
            back.verify(b"msg", &sig).unwrap();
            assert!(back.verify(b"msh", &sig).is_err());
            let reloaded = LocalKey::from_file(&dir.path().join(alg.as_str())).unwrap();
            assert_eq!(reloaded.public_key(), k.public_key());
        }
        assert!(LocalKey::generate(&dir.path().join("ed25519"), Alg::Ed25519).is_err(), "never overwrites");
    }

    #[test]
    fn bundle_refuses_unknown_kid_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (k, _) = LocalKey::load_or_create(&dir.path().join("key")).unwrap();
        let bundle = TrustBundle {
            version: 1,
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
            keys: vec![PublishedKey {
                kid: k.kid().into(),
                alg: Alg::Ed25519,
                public_key: b64(k.public_key().spki_der()),
                valid_from: "2026-01-01T00:00:00Z".into(),
                valid_until: None,
                status: crate::KeyStatus::Active,
                development: true,
            }],
            sigstore: None,
        };
        let sig = b64(&k.sign(b"doc").unwrap());
        assert!(bundle.verify(k.kid(), b"doc", &sig).is_ok());
        assert_eq!(bundle.verify("other", b"doc", &sig), Err(VerifyError::UnknownKid("other".into())));
        assert_eq!(bundle.verify(k.kid(), b"doc", "%%%"), Err(VerifyError::Encoding));
        std::fs::write(dir.path().join("bad"), b"not a key").unwrap();
        assert!(matches!(LocalKey::load_or_create(&dir.path().join("bad")), Err(SignError::BadKey(_))));
        assert!(PublicKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
    }
}
