//! The registry's signing keys at run time: the active signer, how to reach each key's backend
//! with the registry's own *sign-only* credential, and the current signed trust bundle.
//!
//! Key administration (creating keys in a KMS, choosing when to rotate) is the key-admin's job,
//! done with their own credential (`fulcrum keys …`). The registry only *publishes* a key a
//! key-admin registers, after proving it can sign with it: it never creates, exports or rotates
//! keys inside a KMS.
//!
//! # Invariants
//! - Exactly one active key; every document is signed by it and names its `kid`.
//! - Trust bundle versions only grow; each is signed by the active key and expires.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use fulcrum_sign::{KeyStatus, LocalKey, PublicKey, PublishedKey, SignError, Signer, SigstoreRoot, TrustBundle};
use fulcrum_store::{BundleContent, BundleRecord, KeyRecord, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::SignedBlob;

/// How long a trust bundle is valid; it is re-issued (new version) at half its life.
pub const BUNDLE_TTL: time::Duration = time::Duration::days(7);

/// A signer published under a registry-assigned kid.
#[derive(Debug)]
pub struct Published {
    kid: String,
    development: bool,
    /// Signing goes over the network or to an HSM (anything but a local key file): it may block,
    /// so it runs through [`crate::blocking`] and never starves the runtime's queued tasks.
    remote: bool,
    inner: Arc<dyn Signer>,
}

impl Published {
    fn sign_with(inner: &dyn Signer, remote: bool, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        if remote { crate::blocking(|| inner.sign(msg)) } else { inner.sign(msg) }
    }
}

impl Signer for Published {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        Self::sign_with(self.inner.as_ref(), self.remote, msg)
    }
    fn is_development_key(&self) -> bool {
        self.development
    }
}

/// Opens the signer of a key record with the registry's credentials. The local backend reads
/// key files under the data dir; KMS backends are added here.
pub trait Backends: Send + Sync + std::fmt::Debug {
    /// # Errors
    /// Unknown backend, unreachable KMS, or a key the registry's credential cannot use.
    fn open(&self, rec: &KeyRecord) -> Result<Arc<dyn Signer>, String>;
}

/// Where the registry's keys can live, with the registry's own (sign-only) credentials.
#[derive(Debug, Clone, Default)]
pub struct KmsConfig {
    pub pkcs11: Option<fulcrum_kms::pkcs11::Pkcs11Config>,
    pub vault: Option<fulcrum_kms::vault::VaultConfig>,
}

/// Local key files under the data dir, plus the configured KMS backends.
#[derive(Debug)]
pub struct KmsBackends {
    pub data_dir: PathBuf,
    pub kms: KmsConfig,
}

impl Backends for KmsBackends {
    fn open(&self, rec: &KeyRecord) -> Result<Arc<dyn Signer>, String> {
        match rec.backend.as_str() {
            "local" => {
                let rel = Path::new(&rec.backend_ref);
                if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                    return Err(format!("local key {} must be a path inside the data dir", rec.backend_ref));
                }
                let key = LocalKey::from_file(&self.data_dir.join(rel)).map_err(|e| e.to_string())?;
                Ok(Arc::new(key))
            }
            "pkcs11" => {
                let cfg = self.kms.pkcs11.as_ref().ok_or("no PKCS#11 module is configured on this registry")?;
                Ok(Arc::new(fulcrum_kms::pkcs11::Pkcs11Signer::open(cfg, &rec.backend_ref).map_err(|e| e.to_string())?))
            }
            "vault" => {
                let cfg = self.kms.vault.as_ref().ok_or("no Vault is configured on this registry")?;
                let (name, version) = fulcrum_kms::vault::parse_ref(&rec.backend_ref).map_err(|e| e.to_string())?;
                let public = published(rec)?.key().map_err(|e| e.to_string())?;
                Ok(Arc::new(fulcrum_kms::vault::VaultSigner::new(cfg.clone(), &name, version, public)))
            }
            other => Err(format!("unknown key backend {other:?}")),
        }
    }
}

#[derive(Debug)]
pub struct KeyRing {
    active: RwLock<Arc<dyn Signer>>,
    bundle: RwLock<Arc<SignedBlob>>,
    bundle_version: RwLock<(u64, OffsetDateTime)>,
    /// The Sigstore trusted root the current bundle carries, parsed once.
    sigstore: RwLock<Option<Arc<fulcrum_verify::keyless::TrustedRoot>>>,
    backends: Box<dyn Backends>,
}

pub fn published(rec: &KeyRecord) -> Result<PublishedKey, String> {
    Ok(PublishedKey {
        kid: rec.kid.clone(),
        alg: rec.alg.parse().map_err(|()| format!("key {} has unknown alg {}", rec.kid, rec.alg))?,
        public_key: rec.public_key.clone(),
        valid_from: rec.valid_from.clone(),
        valid_until: rec.valid_until.clone(),
        status: rec.status.parse().map_err(|()| format!("key {} has unknown status", rec.kid))?,
        development: rec.development,
    })
}

/// Build and sign bundle `version` over `keys` with `signer`; each of `endorsers` (the key being
/// rotated out) signs the same body, so agents pinned to the previous bundle can follow.
///
/// # Errors
/// Malformed records or a signer failing.
pub fn sign_bundle(
    signer: &dyn Signer,
    endorsers: &[&dyn Signer],
    content: &BundleContent,
    version: u64,
    now: OffsetDateTime,
) -> Result<BundleRecord, String> {
    let bundle = TrustBundle {
        version,
        issued_at: now.format(&Rfc3339).expect("formats"),
        expires_at: Some((now + BUNDLE_TTL).format(&Rfc3339).expect("formats")),
        keys: content.keys.iter().map(published).collect::<Result<_, _>>()?,
        sigstore: content.sigstore.as_ref().map(|r| SigstoreRoot {
            version: r.version,
            digest: r.digest.clone(),
            trusted_root: r.body.clone(),
        }),
    };
    let body = serde_json::to_string(&bundle).expect("bundles serialise");
    let sig = signer.sign(body.as_bytes()).map_err(|e| e.to_string())?;
    let mut endorsements = vec![];
    for e in endorsers {
        let s = e.sign(body.as_bytes()).map_err(|err| format!("endorsing with {}: {err}", e.kid()))?;
        endorsements.push(serde_json::json!({"kid": e.kid(), "sig": fulcrum_sign::b64(&s)}));
    }
    Ok(BundleRecord {
        version,
        body,
        kid: signer.kid().to_owned(),
        signature: fulcrum_sign::b64(&sig),
        endorsements: serde_json::Value::Array(endorsements).to_string(),
    })
}

fn blob(b: &BundleRecord) -> Result<SignedBlob, String> {
    Ok(SignedBlob {
        body: b.body.clone().into_bytes().into(),
        signature: axum::http::HeaderValue::from_str(&b.signature).map_err(|e| e.to_string())?,
        kid: axum::http::HeaderValue::from_str(&b.kid).map_err(|e| e.to_string())?,
    })
}

fn sigstore_of(b: &BundleRecord) -> Result<Option<Arc<fulcrum_verify::keyless::TrustedRoot>>, String> {
    let tb: TrustBundle = serde_json::from_str(&b.body).map_err(|e| format!("trust bundle v{}: {e}", b.version))?;
    tb.sigstore
        .map(|s| {
            fulcrum_verify::keyless::TrustedRoot::from_json(s.trusted_root.as_bytes())
                .map(Arc::new)
                .map_err(|f| format!("trust bundle v{}: its Sigstore root: {f}", b.version))
        })
        .transpose()
}

fn issued_at(b: &BundleRecord) -> OffsetDateTime {
    serde_json::from_str::<TrustBundle>(&b.body)
        .ok()
        .and_then(|t| OffsetDateTime::parse(&t.issued_at, &Rfc3339).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A key record for a signer about to be published.
pub fn record_for(signer: &dyn Signer, backend: &str, backend_ref: &str) -> KeyRecord {
    KeyRecord {
        kid: signer.kid().to_owned(),
        alg: signer.alg().as_str().to_owned(),
        public_key: fulcrum_sign::b64(signer.public_key().spki_der()),
        backend: backend.to_owned(),
        backend_ref: backend_ref.to_owned(),
        valid_from: String::new(),
        valid_until: None,
        status: KeyStatus::Active.as_str().to_owned(),
        development: signer.is_development_key(),
        reason: None,
    }
}

impl KeyRing {
    /// Load the published keys and open the active one. On a first start the development key
    /// (`<data-dir>/signing-key.pk8`, created if missing) becomes the first published key.
    /// Returns the ring and whether the development key was created now.
    ///
    /// # Errors
    /// A missing or unusable active key, or a store failure.
    pub async fn load(
        store: &Store,
        data_dir: &Path,
        backends: Box<dyn Backends>,
        now: OffsetDateTime,
    ) -> Result<(Self, Option<PathBuf>), String> {
        let mut created = None;
        if store.keys().await.map_err(|e| e.to_string())?.is_empty() {
            let path = data_dir.join("signing-key.pk8");
            let (key, fresh) = LocalKey::load_or_create(&path).map_err(|e| e.to_string())?;
            if fresh {
                created = Some(path);
            }
            let rec = record_for(&key, "local", "signing-key.pk8");
            let sign = |c: &BundleContent, v: u64| sign_bundle(&key, &[], c, v, now);
            store.rotate_key(rec, "bootstrap", &sign, now).await.map_err(|e| e.to_string())?;
        }
        let keys = store.keys().await.map_err(|e| e.to_string())?;
        let active = keys.iter().find(|k| k.status == "active").ok_or("no active signing key is published")?;
        let signer = Self::open_checked(backends.as_ref(), active)?;
        let bundle =
            store.latest_bundle().await.map_err(|e| e.to_string())?.ok_or("no trust bundle was ever issued")?;
        let ring = Self {
            sigstore: RwLock::new(sigstore_of(&bundle)?),
            bundle_version: RwLock::new((bundle.version, issued_at(&bundle))),
            bundle: RwLock::new(Arc::new(blob(&bundle)?)),
            active: RwLock::new(signer),
            backends,
        };
        Ok((ring, created))
    }

    /// Open a record's signer and prove it is the published key.
    fn open_checked(backends: &dyn Backends, rec: &KeyRecord) -> Result<Arc<dyn Signer>, String> {
        let inner = backends.open(rec)?;
        let published = published(rec)?.key().map_err(|e| format!("key {}: {e}", rec.kid))?;
        let probe = format!("fulcrum key probe {}", rec.kid);
        let remote = rec.backend != "local";
        let sig = Published::sign_with(inner.as_ref(), remote, probe.as_bytes())
            .map_err(|e| format!("key {} cannot sign: {e}", rec.kid))?;
        published
            .verify(probe.as_bytes(), &sig)
            .map_err(|_| format!("key {} signs with another key than the one published", rec.kid))?;
        Ok(Arc::new(Published { kid: rec.kid.clone(), development: rec.development, remote, inner }))
    }

    pub fn current(&self) -> Arc<dyn Signer> {
        self.active.read().expect("keyring lock").clone()
    }

    pub fn bundle(&self) -> Arc<SignedBlob> {
        self.bundle.read().expect("keyring lock").clone()
    }

    pub fn bundle_version(&self) -> u64 {
        self.bundle_version.read().expect("keyring lock").0
    }

    /// The Sigstore trusted root in force (the one the current trust bundle carries), if a
    /// key-admin imported one.
    pub fn sigstore_root(&self) -> Option<Arc<fulcrum_verify::keyless::TrustedRoot>> {
        self.sigstore.read().expect("keyring lock").clone()
    }

    fn install(&self, b: &BundleRecord, now: OffsetDateTime) -> Result<(), String> {
        // Both read before either is installed: a bundle is taken whole or not at all.
        let (sigstore, signed) = (sigstore_of(b)?, Arc::new(blob(b)?));
        *self.sigstore.write().expect("keyring lock") = sigstore;
        *self.bundle.write().expect("keyring lock") = signed;
        *self.bundle_version.write().expect("keyring lock") = (b.version, now);
        Ok(())
    }

    /// Publish a key a key-admin registered and make it the active signer.
    ///
    /// # Errors
    /// The registry cannot sign with it (wrong key, backend unreachable), or the store refuses.
    pub async fn rotate(
        &self,
        store: &Store,
        rec: KeyRecord,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<u64, RotateError> {
        let signer = Self::open_checked(self.backends.as_ref(), &rec).map_err(RotateError::Unusable)?;
        // The key rotated out vouches for the new bundle (the chain link agents follow).
        let previous = self.current();
        let sign = |c: &BundleContent, v: u64| sign_bundle(signer.as_ref(), &[previous.as_ref()], c, v, now);
        let b = store.rotate_key(rec, actor, &sign, now).await.map_err(RotateError::Store)?;
        *self.active.write().expect("keyring lock") = signer;
        self.install(&b, now).map_err(RotateError::Unusable)?;
        Ok(b.version)
    }

    /// # Errors
    /// Unknown kid, the active key, store failures.
    pub async fn retire(
        &self,
        store: &Store,
        kid: &str,
        compromised: bool,
        reason: &str,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<u64, RotateError> {
        let signer = self.current();
        let sign = |c: &BundleContent, v: u64| sign_bundle(signer.as_ref(), &[], c, v, now);
        let b = store.retire_key(kid, compromised, reason, actor, &sign, now).await.map_err(RotateError::Store)?;
        self.install(&b, now).map_err(RotateError::Unusable)?;
        Ok(b.version)
    }

    /// Take the key set as stored (another replica may have rotated or retired a key, or
    /// re-issued the bundle); whether the active signer changed.
    ///
    /// # Errors
    /// The store failing, or an active key this replica cannot open or sign with (it then keeps
    /// nothing half-changed and its caller stops following; see [`crate::follow`]).
    pub async fn follow(&self, store: &Store) -> Result<bool, String> {
        let keys = store.keys().await.map_err(|e| e.to_string())?;
        let active = keys.iter().find(|k| k.status == "active").ok_or("no active signing key is published")?;
        let changed = active.kid != self.current().kid();
        let signer = if changed { Some(Self::open_checked(self.backends.as_ref(), active)?) } else { None };
        let newer =
            store.latest_bundle().await.map_err(|e| e.to_string())?.filter(|b| b.version > self.bundle_version());
        if let Some(signer) = signer {
            tracing::info!(kid = %active.kid, "the active signing key changed on another replica: following it");
            *self.active.write().expect("keyring lock") = signer;
        }
        if let Some(b) = newer {
            self.install(&b, issued_at(&b))?;
        }
        Ok(changed)
    }

    /// Put a Sigstore trusted root in force (a key-admin's import): a new trust bundle carries it.
    ///
    /// # Errors
    /// The store refuses (the same root already in force) or the signer fails.
    pub async fn import_sigstore_root(
        &self,
        store: &Store,
        root: &fulcrum_verify::keyless::TrustedRoot,
        note: &str,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<(fulcrum_store::SigstoreRootRecord, u64), RotateError> {
        let signer = self.current();
        let sign = |c: &BundleContent, v: u64| sign_bundle(signer.as_ref(), &[], c, v, now);
        let body = std::str::from_utf8(root.json()).map_err(|e| RotateError::Unusable(e.to_string()))?;
        let (rec, b) = store
            .import_sigstore_root(&root.digest(), body, note, actor, &sign, now)
            .await
            .map_err(RotateError::Store)?;
        self.install(&b, now).map_err(RotateError::Unusable)?;
        Ok((rec, b.version))
    }

    /// Re-issue the bundle if it is past half its lifetime.
    ///
    /// # Errors
    /// Store or signer failures.
    pub async fn refresh_bundle(&self, store: &Store, now: OffsetDateTime) -> Result<(), String> {
        let issued = self.bundle_version.read().expect("keyring lock").1;
        if now < issued + BUNDLE_TTL / 2 {
            return Ok(());
        }
        let signer = self.current();
        let sign = |c: &BundleContent, v: u64| sign_bundle(signer.as_ref(), &[], c, v, now);
        let b = store.reissue_bundle(&sign, now).await.map_err(|e| e.to_string())?;
        self.install(&b, now)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Store(fulcrum_store::StoreError),
}
