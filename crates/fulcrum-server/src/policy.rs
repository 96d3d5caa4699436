//! The policy in force (SPEC §7): a Rego snapshot compiled by `fulcrum-policy`, stored
//! immutably, signed by the registry as a DSSE envelope over its canonical bytes. Its digest is
//! the `policy_digest` that resolve documents, events and decisions carry. A new snapshot is
//! installed only after it compiles and passes its own tests, and emits `policy_changed`.

use std::sync::Arc;

use arc_swap::ArcSwap;

use fulcrum_core::Digest;
use fulcrum_policy::{Policy, PolicyError, Snapshot};
use fulcrum_sign::Signer;
use fulcrum_store::{SnapshotRecord, Store};
use fulcrum_verify::dsse::Envelope;
use time::OffsetDateTime;

pub const SNAPSHOT_MEDIA_TYPE: &str = fulcrum_policy::SNAPSHOT_MEDIA_TYPE;

/// The compiled policy in force, with its digest and signed envelope.
#[derive(Debug)]
pub struct Current {
    pub policy: Policy,
    pub digest: Digest,
    /// Canonical snapshot bytes (what `digest` and the envelope cover).
    pub snapshot: Vec<u8>,
    pub envelope: Vec<u8>,
}

#[derive(Debug)]
pub struct Policies {
    current: ArcSwap<Current>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("signing the snapshot: {0}")]
    Sign(#[from] fulcrum_sign::SignError),
    #[error(transparent)]
    Store(#[from] fulcrum_store::StoreError),
}

fn envelope(snapshot: &Snapshot, signer: &dyn Signer) -> Result<Vec<u8>, fulcrum_sign::SignError> {
    let env = Envelope::sign(SNAPSHOT_MEDIA_TYPE, &snapshot.canonical_bytes(), signer, signer.kid())?;
    Ok(serde_json::to_vec(&env).expect("envelopes serialise"))
}

fn digest_of(snapshot: &Snapshot) -> Digest {
    snapshot.digest().parse().expect("snapshot digests are sha256")
}

impl Policies {
    /// Load the snapshot in force; on a first start install the shipped default set.
    ///
    /// # Errors
    /// A stored snapshot that no longer compiles, signer or store failures.
    pub async fn load(store: &Store, signer: &dyn Signer, now: OffsetDateTime) -> Result<Self, InstallError> {
        let (snapshot, envelope_bytes) = match store.current_policy().await? {
            Some(rec) => {
                let s = Snapshot::from_canonical_bytes(&rec.body)?;
                (s, rec.envelope)
            }
            None => {
                let s = Snapshot::default_set();
                let env = envelope(&s, signer)?;
                let rec = SnapshotRecord {
                    digest: s.digest(),
                    body: s.canonical_bytes(),
                    envelope: env.clone(),
                    installed_by: "bootstrap".into(),
                    installed_at: String::new(),
                };
                store.install_policy(&rec, None, false, now).await?;
                (s, env)
            }
        };
        let policy = Policy::compile(&snapshot)?;
        Ok(Self {
            current: ArcSwap::from_pointee(Current {
                digest: digest_of(&snapshot),
                snapshot: snapshot.canonical_bytes(),
                policy,
                envelope: envelope_bytes,
            }),
        })
    }

    pub fn current(&self) -> Arc<Current> {
        self.current.load_full()
    }

    /// Compile, test, sign and install a snapshot; emits `policy_changed`.
    ///
    /// # Errors
    /// The engine's messages for snapshots that do not compile or pass their tests (nothing
    /// changes), signer or store failures.
    pub async fn install(
        &self,
        store: &Store,
        snapshot: &Snapshot,
        signer: &dyn Signer,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<Current>, InstallError> {
        let policy = Policy::compile(snapshot)?;
        let env = envelope(snapshot, signer)?;
        let previous = self.current().digest.to_string();
        let rec = SnapshotRecord {
            digest: snapshot.digest(),
            body: snapshot.canonical_bytes(),
            envelope: env.clone(),
            installed_by: actor.into(),
            installed_at: String::new(),
        };
        store.install_policy(&rec, Some(&previous), true, now).await?;
        let cur = Arc::new(Current {
            digest: digest_of(snapshot),
            snapshot: snapshot.canonical_bytes(),
            policy,
            envelope: env,
        });
        self.current.store(cur.clone());
        Ok(cur)
    }

    /// Re-sign the snapshot in force with a new key (after a rotation).
    ///
    /// # Errors
    /// The signer failing.
    pub fn resign(&self, signer: &dyn Signer) -> Result<(), fulcrum_sign::SignError> {
        let cur = self.current();
        let env = Envelope::sign(SNAPSHOT_MEDIA_TYPE, &cur.snapshot, signer, signer.kid())?;
        let next = Current {
            policy: cur.policy.clone(),
            digest: cur.digest,
            snapshot: cur.snapshot.clone(),
            envelope: serde_json::to_vec(&env).expect("serialises"),
        };
        self.current.store(Arc::new(next));
        Ok(())
    }
}
