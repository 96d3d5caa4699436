//! Signing the audit ledger's checkpoints (SPEC §8).
//!
//! A checkpoint is signed with the registry's current key under the ledger's origin as a C2SP
//! signed note, and only after the tree it names is shown to extend the last one signed: the root
//! of the last checkpoint's size is recomputed from the stored subtrees and must equal the root
//! signed then. The registry never signs two inconsistent checkpoints; if the stored tree no
//! longer matches what it signed, it stops signing and says so.
//!
//! Each checkpoint also commits to the **state map** (`fulcrum_ledger::state`): every version's
//! stage and hold as the lifecycle events among its entries imply them — folded here from the
//! ledger's own leaves (each event's bytes checked against its leaf hash), never read from the
//! state tables. A permit is proven current against it ([`Ledger::state_proof`]); a checkpoint
//! can be re-signed at the same size with a newer time when an agent needs one newer than its
//! answer (kept in memory: the stored history holds one checkpoint per size).

use std::sync::Arc;

use fulcrum_core::projection::Projection;
use fulcrum_ledger::checkpoint::Checkpoint;
use fulcrum_ledger::state::{StateHead, StateLeaf, StateMap};
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
    #[error("the ledger does not give a governance state: {0}")]
    State(String),
}

/// The projection folded so far, and the state map of the newest checkpoint.
#[derive(Debug, Default)]
struct StateCache {
    /// Ledger entries folded into `projection`.
    folded: u64,
    projection: Projection,
    /// The map as of `folded` (rebuilt only when a lifecycle event moved it).
    map: Option<Arc<StateMap>>,
    /// Why the ledger's events give no state (nothing more is signed).
    broken: Option<String>,
    /// The newest checkpoint with a state map (possibly re-signed at the same size).
    latest: Option<StatePoint>,
}

/// A signed checkpoint with its state map, as the state-proof endpoint serves it.
#[derive(Debug, Clone)]
pub struct StatePoint {
    pub record: CheckpointRecord,
    pub map: Arc<StateMap>,
    pub head: StateHead,
}

/// Serialises checkpoint signing and keeps the state projection.
#[derive(Debug, Default)]
pub struct Ledger {
    sign: tokio::sync::Mutex<StateCache>,
}

/// Why the ledger's events do not give a state.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("store: {0}")]
    Store(#[from] fulcrum_store::StoreError),
    #[error("ledger entry {0}: the stored event does not hash to its leaf")]
    Tampered(u64),
    #[error("ledger entry {0}: the event does not parse: {1}")]
    Malformed(u64, String),
    #[error(transparent)]
    Impossible(#[from] fulcrum_core::projection::ProjectionError),
}

/// Fold the lifecycle events among ledger entries `[from, to)` into `p`, checking each event's
/// stored bytes against its leaf hash first.
///
/// # Errors
/// An event that was edited behind the ledger, does not parse, or cannot follow from the state.
pub async fn fold(store: &fulcrum_store::Store, p: &mut Projection, from: u64, to: u64) -> Result<bool, FoldError> {
    let mut moved = false;
    let mut at = from;
    while at < to {
        let end = to.min(at + 5000);
        for (idx, leaf, body) in store.ledger_lifecycle_events(at, end).await? {
            if fulcrum_ledger::merkle::leaf_hash(&body) != leaf {
                return Err(FoldError::Tampered(idx));
            }
            let ce: fulcrum_core::event::CloudEvent =
                serde_json::from_slice(&body).map_err(|e| FoldError::Malformed(idx, e.to_string()))?;
            p.apply(idx, &ce.data)?;
            moved = true;
        }
        at = end;
    }
    Ok(moved)
}

/// The state map's leaves for a projection.
pub fn state_leaves(p: &Projection) -> Vec<StateLeaf> {
    p.versions
        .iter()
        .map(|(k, v)| StateLeaf {
            tenant: k.tenant.clone(),
            model: k.model.clone(),
            version: k.version.clone(),
            seq: v.seq,
            artifact_digest: v.artifact_digest.clone(),
            stage: v.stage.as_str().into(),
            hold: v.hold.as_str().into(),
        })
        .collect()
}

/// The stored tree still has the root signed at the last checkpoint's size: only then may a
/// checkpoint be signed over it (never two inconsistent ones).
async fn still_extends(state: &AppState, last: &CheckpointRecord) -> Result<(), CheckpointError> {
    if state.store.ledger_root(last.size).await? != last.root {
        tracing::error!(size = last.size, "the audit ledger's stored tree disagrees with a signed checkpoint");
        return Err(CheckpointError::Inconsistent(last.size));
    }
    Ok(())
}

fn unix(t: time::OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

impl Ledger {
    /// Start from a projection already folded over the first `folded` entries (the start-up
    /// check's), so it is not folded twice.
    pub fn with_projection(projection: Projection, folded: u64) -> Self {
        Self { sign: tokio::sync::Mutex::new(StateCache { folded, projection, ..StateCache::default() }) }
    }

    /// A ledger whose events give no state (edited behind it, or impossible): nothing more is
    /// signed; the last stored checkpoint stays the registry's word for auditors.
    pub fn broken(why: String) -> Self {
        Self { sign: tokio::sync::Mutex::new(StateCache { broken: Some(why), ..StateCache::default() }) }
    }

    /// The newest checkpoint, signing one first when the tree grew since the last (and the last
    /// is older than `min_age`). When no new one can be signed because the ledger's events give
    /// no state, the last stored one is returned (auditors go on checking against it).
    ///
    /// # Errors
    /// The store failing, the tree disagreeing with the last signed root, or the signer failing.
    pub async fn checkpoint(
        &self,
        state: &AppState,
        min_age: time::Duration,
    ) -> Result<CheckpointRecord, CheckpointError> {
        self.checkpoint_as(state, min_age, None).await
    }

    /// [`Ledger::checkpoint`] by the leader's background signer: the checkpoint is stored under
    /// its lease's `fence`, so a replica that no longer leads stores nothing.
    ///
    /// # Errors
    /// As [`Ledger::checkpoint`]; a superseded lease is `Store(Fenced)`.
    pub async fn checkpoint_as(
        &self,
        state: &AppState,
        min_age: time::Duration,
        fence: Option<fulcrum_store::leader::Fence>,
    ) -> Result<CheckpointRecord, CheckpointError> {
        let mut cache = self.sign.lock().await;
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
            still_extends(state, l).await?;
        }
        match self.sign_now(&mut cache, state, size, last.as_ref(), fence).await {
            Ok(p) => Ok(p.record),
            Err(CheckpointError::State(why)) if last.is_some() => {
                tracing::error!(%why, "no checkpoint is signed over a ledger that gives no governance state");
                Ok(last.expect("checked"))
            }
            Err(e) => Err(e),
        }
    }

    /// A checkpoint with its state map over the whole tree, signed at or after `not_before`
    /// (when given; it is taken as no later than now): the newest one if it qualifies, else one
    /// signed now (re-signed at the same size, kept in memory, if the tree has not grown). Since
    /// signing times are whole seconds and `not_before` never passes now, a re-signing at the
    /// same size happens at most once a second, whoever asks.
    ///
    /// # Errors
    /// As [`Ledger::checkpoint`], and `State` when the ledger gives no governance state.
    pub async fn state_point(
        &self,
        state: &AppState,
        not_before: Option<time::OffsetDateTime>,
    ) -> Result<StatePoint, CheckpointError> {
        let mut cache = self.sign.lock().await;
        let size = state.store.ledger_size().await?;
        let now = state.clock.now();
        if let Some(p) = cache.latest.clone()
            && p.record.size == size
            && not_before.is_none_or(|t| p.head.signed_at >= unix(t.min(now)))
        {
            return Ok(p);
        }
        let last = state.store.last_checkpoint().await?;
        if let Some(l) = &last {
            if l.size > size {
                return Err(CheckpointError::Inconsistent(l.size));
            }
            still_extends(state, l).await?;
        }
        self.sign_now(&mut cache, state, size, last.as_ref(), None).await
    }

    /// Fold what the state map does not cover yet, then sign a checkpoint over the whole tree
    /// (stored when the tree grew; kept in memory when it is a re-signing at the same size).
    async fn sign_now(
        &self,
        cache: &mut StateCache,
        state: &AppState,
        size: u64,
        last: Option<&CheckpointRecord>,
        fence: Option<fulcrum_store::leader::Fence>,
    ) -> Result<StatePoint, CheckpointError> {
        if let Some(why) = &cache.broken {
            return Err(CheckpointError::State(why.clone()));
        }
        if cache.folded > size {
            return Err(CheckpointError::Inconsistent(size));
        }
        let from = cache.folded;
        let moved = match fold(&state.store, &mut cache.projection, from, size).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "the ledger's events do not give a governance state: refusing to sign");
                cache.broken = Some(e.to_string());
                return Err(CheckpointError::State(e.to_string()));
            }
        };
        cache.folded = size;
        if moved || cache.map.is_none() {
            cache.map = Some(Arc::new(StateMap::build(state_leaves(&cache.projection))));
        }
        let map = cache.map.clone().expect("built above");
        // The map the last stored checkpoint committed to must be the one its entries still give
        // (an event edited after it was signed shows here, and nothing more is signed).
        if let Some(l) = last.filter(|l| l.size == size)
            && let Ok((signed, _)) = Checkpoint::parse(&l.note)
            && let Some(h) = signed.state
            && (h.count, h.root) != (map.len(), map.root())
        {
            tracing::error!(size, "the ledger's events no longer give the state map signed at this size");
            return Err(CheckpointError::State(format!(
                "the events no longer give the state map signed at size {size}"
            )));
        }
        let now = state.clock.now();
        let root = state.store.ledger_root(size).await?;
        let origin = state.config.ledger_origin.clone();
        let head = StateHead { count: map.len(), root: map.root(), signed_at: unix(now) };
        let cp = Checkpoint { origin: origin.clone(), size, root, state: Some(head) };
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
        if last.is_none_or(|l| size > l.size) {
            match fence {
                Some(f) => state.store.store_checkpoint_as(&rec, f).await?,
                None => state.store.store_checkpoint(&rec).await?,
            }
        }
        let point = StatePoint { record: rec, map, head };
        cache.latest = Some(point.clone());
        Ok(point)
    }
}
