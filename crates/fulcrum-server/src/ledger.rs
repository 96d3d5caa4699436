//! Signing the audit ledger's checkpoints (SPEC §8).
//!
//! A checkpoint is signed with the registry's current key under the ledger's origin as a C2SP
//! signed note, and only after the tree it names is shown to extend the last one signed: the root
//! of the last checkpoint's size is recomputed from the stored subtrees and must equal the root
//! signed then. The registry never signs two inconsistent checkpoints; if the stored tree no
//! longer matches what it signed, it stops signing and says so.

use fulcrum_ledger::checkpoint::Checkpoint;
use fulcrum_store::ledger::CheckpointRecord;
use time::format_description::well_known::Rfc3339;

use crate::AppState;

/// The ledger's origin and key name unless configured.
pub const DEFAULT_ORIGIN: &str = "fulcrum/registry-audit";

/// Why no checkpoint could be signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("store: {0}")]
    Store(#[from] fulcrum_store::StoreError),
    #[error("the stored tree no longer has the root signed at size {0}: refusing to sign")]
    Inconsistent(u64),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Serialises checkpoint signing.
#[derive(Debug, Default)]
pub struct Ledger {
    sign: tokio::sync::Mutex<()>,
}

impl Ledger {
    /// The newest checkpoint, signing one first when the tree grew since the last (and the last
    /// is older than `min_age`).
    ///
    /// # Errors
    /// The store failing, the tree disagreeing with the last signed root, or the signer failing.
    pub async fn checkpoint(
        &self,
        state: &AppState,
        min_age: time::Duration,
    ) -> Result<CheckpointRecord, CheckpointError> {
        let _one = self.sign.lock().await;
        let size = state.store.ledger_size().await?;
        let last = state.store.last_checkpoint().await?;
        let now = state.clock.now();
        if let Some(l) = &last {
            let fresh = time::OffsetDateTime::parse(&l.signed_at, &Rfc3339).is_ok_and(|t| now - t < min_age);
            // A tree smaller than the last signed one was cut: nothing smaller is ever signed, and
            // the last checkpoint stays the registry's word (auditors find where the cut is).
            if l.size >= size || (fresh && l.size > 0) {
                if l.size > size {
                    tracing::error!(
                        signed = l.size,
                        stored = size,
                        "the audit ledger holds fewer entries than it signed"
                    );
                }
                return Ok(l.clone());
            }
            if state.store.ledger_root(l.size).await? != l.root {
                tracing::error!(size = l.size, "the audit ledger's stored tree disagrees with a signed checkpoint");
                return Err(CheckpointError::Inconsistent(l.size));
            }
        }
        let root = state.store.ledger_root(size).await?;
        let origin = state.config.ledger_origin.clone();
        let cp = Checkpoint { origin: origin.clone(), size, root };
        let signer = state.keys.current();
        let note =
            crate::blocking(|| cp.sign(&origin, signer.as_ref())).map_err(|e| CheckpointError::Sign(e.to_string()))?;
        let rec = CheckpointRecord {
            size,
            root,
            note,
            kid: signer.kid().to_owned(),
            signed_at: now.format(&Rfc3339).expect("formats"),
        };
        state.store.store_checkpoint(&rec).await?;
        Ok(rec)
    }
}
