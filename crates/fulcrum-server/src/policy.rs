//! The policy in force (SPEC §7): a Rego snapshot compiled by `fulcrum-policy`, stored
//! immutably, signed by the registry as a DSSE envelope over its canonical bytes. Its digest is
//! the `policy_digest` that resolve documents, events and decisions carry. A new snapshot is
//! installed only after it compiles, passes its own tests and Fulcrum's conformance tests
//! (`fulcrum_policy::conformance`), and emits `policy_changed`. Re-applying a snapshot
//! installed before is a rollback to it; a host operator's break-glass request
//! ([`RESET_MARKER`]) puts the shipped default back at the next start.

use std::sync::Arc;

use arc_swap::ArcSwap;

use fulcrum_core::Digest;
use fulcrum_policy::{Policy, PolicyError, Snapshot};
use fulcrum_sign::Signer;
use fulcrum_store::{InstallKind, PolicyInstall, SnapshotRecord, Store};
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
    #[error("policy reset: {0}")]
    Reset(String),
}

fn envelope(snapshot: &Snapshot, signer: &dyn Signer) -> Result<Vec<u8>, fulcrum_sign::SignError> {
    let env = Envelope::sign(SNAPSHOT_MEDIA_TYPE, &snapshot.canonical_bytes(), signer, signer.kid())?;
    Ok(serde_json::to_vec(&env).expect("envelopes serialise"))
}

fn digest_of(snapshot: &Snapshot) -> Digest {
    snapshot.digest().parse().expect("snapshot digests are sha256")
}

/// The file a host operator's `fulcrum policy reset --data-dir` leaves in the data dir: at the
/// next start the registry puts the shipped default policy back in force, records it as a
/// `reset` install and announces it (`policy_changed`, ledgered), then removes the file.
pub const RESET_MARKER: &str = "policy-reset.json";

/// A break-glass request, as `fulcrum policy reset` writes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The host account that asked (the operator with access to the data dir).
    pub requested_by: String,
    pub requested_at: String,
    pub reason: String,
}

/// Leave a break-glass request in a data dir (what `fulcrum policy reset` does): the registry
/// carries it out at its next start. The data dir must hold a registry.
///
/// # Errors
/// No registry in `data_dir`, an unusable reason, or the file cannot be written.
pub fn request_reset(data_dir: &std::path::Path, reason: &str) -> Result<ResetRequest, InstallError> {
    // A registry's data dir holds its SQLite database, or (on PostgreSQL) its tokens and blobs.
    if !["registry.db", "tokens.json", "blobs", "blob-spool"].iter().any(|f| data_dir.join(f).exists()) {
        return Err(InstallError::Reset(format!("{} holds no registry (no registry.db)", data_dir.display())));
    }
    if reason.trim().is_empty() || reason.len() > 2048 || fulcrum_core::names::check_text("reason", reason).is_err() {
        return Err(InstallError::Reset("the reason must be 1-2048 bytes of text without control characters".into()));
    }
    let requested_by = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown-host-user".into());
    let requested_by: String =
        requested_by.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).take(64).collect();
    let req = ResetRequest {
        requested_by,
        requested_at: OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats"),
        reason: reason.to_owned(),
    };
    let path = data_dir.join(RESET_MARKER);
    let tmp = data_dir.join(format!(".{RESET_MARKER}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&req).expect("json"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| InstallError::Reset(format!("{}: {e}", path.display())))?;
    Ok(req)
}

/// Carry out a pending break-glass reset, if the data dir holds one: the shipped default goes
/// in force (signed now, by the registry's key), recorded and announced; the request file is
/// removed once that is committed.
///
/// # Errors
/// A request file that cannot be read or parsed (the registry does not start: the operator
/// asked for something it cannot tell), signer or store failures.
pub async fn break_glass_reset(
    store: &Store,
    signer: &dyn Signer,
    data_dir: &std::path::Path,
    now: OffsetDateTime,
) -> Result<Option<ResetRequest>, InstallError> {
    let path = data_dir.join(RESET_MARKER);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallError::Reset(format!("{}: {e}", path.display()))),
    };
    let req: ResetRequest =
        serde_json::from_slice(&bytes).map_err(|e| InstallError::Reset(format!("{}: {e}", path.display())))?;
    let s = Snapshot::default_set();
    let rec = SnapshotRecord {
        digest: s.digest(),
        body: s.canonical_bytes(),
        envelope: envelope(&s, signer)?,
        installed_by: format!("break-glass:{}", req.requested_by),
        installed_at: String::new(),
    };
    let install = PolicyInstall {
        kind: InstallKind::Reset,
        reason: Some(format!("break-glass reset requested at {}: {}", req.requested_at, req.reason)),
    };
    store.install_policy(&rec, &install, true, now).await?;
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::error!(file = %path.display(), error = %e, "the reset is done but its request file stays; remove it");
    }
    Ok(Some(req))
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
                store
                    .install_policy(&rec, &PolicyInstall { kind: InstallKind::Install, reason: None }, false, now)
                    .await?;
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

    /// Compile, test (its own tests, then Fulcrum's conformance tests), sign and put a snapshot
    /// in force; emits `policy_changed`. A snapshot installed before is a rollback to it.
    ///
    /// # Errors
    /// The engine's messages for snapshots that do not compile, pass their tests or conform
    /// (nothing changes), signer or store failures (`Conflict`: already in force).
    pub async fn install(
        &self,
        store: &Store,
        snapshot: &Snapshot,
        signer: &dyn Signer,
        actor: &str,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> Result<(Arc<Current>, InstallKind), InstallError> {
        // Compiling runs on a blocking thread: a hostile policy must not stall the async workers.
        let policy = {
            let s = snapshot.clone();
            tokio::task::spawn_blocking(move || Policy::compile_conformant(&s))
                .await
                .map_err(|e| PolicyError::Compile(format!("the compilation did not finish: {e}")))??
        };
        let env = envelope(snapshot, signer)?;
        let rec = SnapshotRecord {
            digest: snapshot.digest(),
            body: snapshot.canonical_bytes(),
            envelope: env.clone(),
            installed_by: actor.into(),
            installed_at: String::new(),
        };
        let kind = store.install_policy(&rec, &PolicyInstall { kind: InstallKind::Install, reason }, true, now).await?;
        let cur = Arc::new(Current {
            digest: digest_of(snapshot),
            snapshot: snapshot.canonical_bytes(),
            policy,
            envelope: env,
        });
        self.current.store(cur.clone());
        Ok((cur, kind))
    }

    /// Take the snapshot in force as stored (another replica may have installed one); whether it
    /// changed. It is compiled again here, off the async workers, and carries the envelope it was
    /// installed with, re-signed with `signer` when that is another key.
    ///
    /// # Errors
    /// The store failing, or a stored snapshot that no longer compiles (nothing changes).
    pub async fn follow(&self, store: &Store, signer: &dyn Signer) -> Result<bool, String> {
        let Some(rec) = store.current_policy().await.map_err(|e| e.to_string())? else { return Ok(false) };
        let snapshot = Snapshot::from_canonical_bytes(&rec.body).map_err(|e| e.to_string())?;
        let digest = digest_of(&snapshot);
        if digest == self.current().digest {
            return Ok(false);
        }
        let policy = {
            let s = snapshot.clone();
            tokio::task::spawn_blocking(move || Policy::compile(&s))
                .await
                .map_err(|e| format!("the compilation did not finish: {e}"))?
                .map_err(|e| e.to_string())?
        };
        let signed_by_signer = serde_json::from_slice::<Envelope>(&rec.envelope)
            .is_ok_and(|e| e.signatures.iter().any(|s| s.keyid == signer.kid()));
        let envelope =
            if signed_by_signer { rec.envelope } else { envelope(&snapshot, signer).map_err(|e| e.to_string())? };
        tracing::info!(policy_digest = %digest, "the policy in force changed on another replica: following it");
        self.current.store(Arc::new(Current { digest, snapshot: snapshot.canonical_bytes(), policy, envelope }));
        Ok(true)
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
