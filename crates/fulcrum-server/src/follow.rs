//! One reader of the committed log per registry (SPEC §11, replicas). The outbox (`events`) is
//! the truth; everything a registry holds in memory follows it the same way on one process and on
//! ten:
//!
//! 1. read the events after the last position applied (woken by a local commit, and on
//!    PostgreSQL also every [`FOLLOW_EVERY`], since another replica's commit wakes nothing here);
//! 2. apply them: reload from the database each model an event changed, the policy in force
//!    after `policy_changed`, the key ring after `key_rotated`/`key_retired`;
//! 3. add serving and startup reports to the per-version signals ([`crate::signals`]);
//! 4. only then hand them to the event streams (SSE, guards; see [`crate::fanout`]), so a guard
//!    told of a revocation re-resolves against a cache that already has it.
//!
//! A failed read or reload does not advance the position: the next attempt replays from the last
//! event applied, so nothing is skipped across a database blip or a reconnect.
//!
//! **Bounded staleness.** A replica that cannot read the log for longer than [`STALE_AFTER`]
//! (its database unreachable, a key it cannot open) cannot know what was revoked meanwhile: it
//! stops answering resolves (503 `stale_view`, so no permit leaves it) and `/readyz` fails, until
//! a read succeeds again. SQLite is one process per file, whose own commits are all there is: it
//! skips step 2 (its handlers already applied their change) and its view is never stale.
//!
//! A registry's own commits also update its cache at once (the handlers apply their effects
//! under the write gate, so a caller reads its own write on the replica it wrote through); the
//! reload here takes the same gate, so a reload read before a local commit never lands after it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fulcrum_core::event::EventKind;
use fulcrum_store::StoreError;
use tokio::sync::watch;

use crate::AppState;
use crate::fanout::Fanned;

/// How often a registry on PostgreSQL reads the outbox for commits made elsewhere.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// Events read at once.
const BATCH: u32 = 512;

/// How old a replica's view of the log may get before it stops answering resolves.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// What this replica has read of the log, and when (monotonic time, not the registry's clock).
#[derive(Debug)]
pub struct View {
    base: Instant,
    /// Milliseconds after `base` of the last successful read.
    read_at_ms: AtomicU64,
    /// Other replicas may commit (PostgreSQL): only then can the view be stale.
    followed: AtomicBool,
    /// The last event position applied.
    applied: AtomicI64,
}

impl Default for View {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            read_at_ms: AtomicU64::new(0),
            followed: AtomicBool::new(false),
            applied: AtomicI64::new(0),
        }
    }
}

impl View {
    fn mark_read(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.read_at_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago the log was last read.
    pub fn age(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(self.read_at_ms.load(Ordering::Relaxed)))
    }

    /// Whether the view is older than [`STALE_AFTER`] (never on SQLite).
    pub fn is_stale(&self) -> bool {
        self.followed.load(Ordering::Relaxed) && self.age() > STALE_AFTER
    }

    /// The last event position applied to this replica's caches and streams.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Relaxed)
    }
}

/// Start the reader at position `from` (read before the caches were loaded, so a commit another
/// replica makes while this one loads is applied too). It holds the registry weakly and ends with
/// it, or at shutdown.
pub(crate) fn start(state: &AppState, from: i64, mut commits: watch::Receiver<u64>) {
    let followed = state.store.dialect() == fulcrum_store::db::Dialect::Postgres;
    state.view.applied.store(from, Ordering::Relaxed);
    state.view.mark_read();
    state.view.followed.store(followed, Ordering::Relaxed);
    let weak = Arc::downgrade(&state.0);
    let mut shutdown = state.shutdown_rx.clone();
    tokio::spawn(async move {
        let mut applied = from;
        loop {
            let tick = async {
                if followed {
                    tokio::time::sleep(FOLLOW_EVERY).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                woke = commits.changed() => if woke.is_err() { return },
                () = tick => {}
                _ = shutdown.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            let state = AppState(inner);
            match follow_once(&state, applied, followed).await {
                Ok(next) => {
                    applied = next;
                    state.view.mark_read();
                }
                Err(e) => tracing::warn!(error = %e, position = applied,
                    "cannot follow the event log; retrying from the last event applied"),
            }
        }
    });
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the policy in force: {0}")]
    Policy(String),
    #[error("the key ring: {0}")]
    Keys(String),
}

/// Whether an event of this kind changes what the resolve cache holds for its model.
fn changes_the_catalog(kind: &str) -> bool {
    [
        EventKind::ReleasePublished,
        EventKind::Promotion,
        EventKind::Approval,
        EventKind::Revocation,
        EventKind::Quarantined,
        EventKind::QuarantineReleased,
        EventKind::AliasUpdated,
    ]
    .iter()
    .any(|k| k.as_str() == kind)
}

fn is(e: &Fanned, kinds: &[EventKind]) -> bool {
    kinds.iter().any(|k| k.as_str() == e.kind)
}

/// Read, apply and hand on every event after `applied`; the new position.
async fn follow_once(state: &AppState, mut applied: i64, followed: bool) -> Result<i64, FollowError> {
    loop {
        let rows = state.store.events_after(None, applied, BATCH).await?;
        let full = rows.len() == BATCH as usize;
        if rows.is_empty() {
            return Ok(applied);
        }
        let batch: Vec<Arc<Fanned>> = rows.into_iter().map(|r| Arc::new(Fanned::of(r))).collect();
        if followed {
            apply(state, &batch).await?;
        }
        let now = state.clock.now();
        for e in &batch {
            // Binned inputs count once their version's profile is in memory.
            if e.kind == EventKind::ServingInputs.as_str()
                && let Some(d) = crate::signals::Signals::profile_named(&e.body)
                && state.signals.profile(&d).is_none()
                && let Err(err) = state.reference_profile(&d).await
            {
                tracing::warn!(profile = %d, error = ?err, "cannot read a reference profile; its inputs are not counted");
            }
            state.signals.observe(&e.kind, &e.body, now);
        }
        for e in batch {
            applied = e.seq;
            // No receivers is fine: nobody is streaming.
            let _ = state.events_fanout.send(e);
        }
        state.view.applied.store(applied, Ordering::Relaxed);
        if !full {
            return Ok(applied);
        }
    }
}

/// Bring the caches up to the events of `batch` (under the write gate, like a local commit).
async fn apply(state: &AppState, batch: &[Arc<Fanned>]) -> Result<(), FollowError> {
    let keys =
        batch.iter().any(|e| is(e, &[EventKind::KeyRotated, EventKind::KeyRetired, EventKind::TrustRootImported]));
    let policy = batch.iter().any(|e| is(e, &[EventKind::PolicyChanged]));
    let models: BTreeSet<(&str, &str)> =
        batch.iter().filter(|e| changes_the_catalog(&e.kind)).map(|e| (e.tenant.as_str(), e.model.as_str())).collect();
    if !keys && !policy && models.is_empty() {
        return Ok(());
    }
    let _gate = state.write_gate.lock().await;
    let now = state.clock.now();
    let mut resign = false;
    if keys {
        let key_changed = state.keys.follow(&state.store).await.map_err(FollowError::Keys)?;
        if key_changed {
            state.policies.resign(state.keys.current().as_ref()).map_err(|e| FollowError::Keys(e.to_string()))?;
        }
        // A retired or compromised key must leave every cached signature at once.
        resign = true;
    }
    if policy {
        let signer = state.keys.current();
        resign |= state.policies.follow(&state.store, signer.as_ref()).await.map_err(FollowError::Policy)?;
    }
    for (tenant, name) in models {
        let Some(m) = state.store.get_model(tenant, name).await? else { continue };
        let versions = state.store.versions_brief_of(m.id).await?;
        let aliases = state.store.aliases_of(m.id).await?;
        state.catalog.reload_model(&m, &versions, &aliases, now);
    }
    if resign {
        state.catalog.resign_all(now);
    }
    Ok(())
}
