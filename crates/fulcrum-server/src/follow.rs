//! The resolve cache follows the committed log (SPEC §11, replicas): every registry reads the
//! outbox (`events`) after the last position it applied and reloads, from the database, each
//! model an event changed — whichever replica committed it. A revocation through one replica
//! therefore reaches the signed answers of every other within one poll (`FOLLOW_EVERY`) plus
//! the reload.
//!
//! **Bounded staleness.** A replica that cannot read the log for longer than [`STALE_AFTER`]
//! (its database unreachable, its follower stuck) cannot know what was revoked meanwhile: it
//! stops answering resolves (503 `stale_view`, so no permit leaves it) and `/readyz` fails, until
//! a read succeeds again.
//!
//! Only registries on PostgreSQL follow: SQLite is one process per file, whose own commits are
//! all there is (and its view is never stale).
//!
//! A registry's own commits also update its cache at once (the handlers apply their effects
//! under the write gate); the reload here takes the same gate, so a reload read before a local
//! commit never lands after it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fulcrum_core::event::EventKind;
use fulcrum_store::StoreError;

use crate::AppState;

/// How often the outbox is read for commits made elsewhere.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// Events read at once.
const BATCH: u32 = 512;

/// How old a replica's view of the log may get before it stops answering resolves.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// When this replica last read the log (monotonic time, not the registry's clock).
#[derive(Debug)]
pub struct View {
    base: Instant,
    /// Milliseconds after `base` of the last successful read.
    read_at_ms: AtomicU64,
    /// A follower runs (PostgreSQL): only then can the view be stale.
    followed: AtomicBool,
}

impl Default for View {
    fn default() -> Self {
        Self { base: Instant::now(), read_at_ms: AtomicU64::new(0), followed: AtomicBool::new(false) }
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

    /// Whether the view is older than [`STALE_AFTER`] (never without a follower).
    pub fn is_stale(&self) -> bool {
        self.followed.load(Ordering::Relaxed) && self.age() > STALE_AFTER
    }
}

/// Follow the outbox from position `from` (read before the cache was loaded) until shutdown, on
/// PostgreSQL; nothing to follow on SQLite.
pub fn spawn(state: AppState, from: i64) -> Option<tokio::task::JoinHandle<()>> {
    if state.store.dialect() != fulcrum_store::db::Dialect::Postgres {
        return None;
    }
    state.view.mark_read();
    state.view.followed.store(true, Ordering::Relaxed);
    Some(tokio::spawn(async move {
        let mut applied = from;
        let mut shutdown = state.shutdown_rx.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            match follow_once(&state, applied).await {
                Ok(next) => {
                    applied = next;
                    state.view.mark_read();
                }
                Err(e) => {
                    tracing::warn!(error = %e, position = applied, "cannot read the event log to follow other replicas' commits")
                }
            }
        }
    }))
}

/// Whether an event of this kind changes what the resolve cache holds.
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

/// Reload every model the events after `applied` changed; the new position.
async fn follow_once(state: &AppState, applied: i64) -> Result<i64, StoreError> {
    let events = state.store.events_after(None, applied, BATCH).await?;
    let Some(last) = events.last().map(|e| e.seq) else { return Ok(applied) };
    let models: BTreeSet<(String, String)> = events
        .into_iter()
        .map(crate::fanout::Fanned::of)
        .filter(|e| changes_the_catalog(&e.kind))
        .map(|e| (e.tenant, e.model))
        .collect();
    if !models.is_empty() {
        let _gate = state.write_gate.lock().await;
        for (tenant, name) in models {
            let Some(m) = state.store.get_model(&tenant, &name).await? else { continue };
            let versions = state.store.versions_brief_of(m.id).await?;
            let aliases = state.store.aliases_of(m.id).await?;
            state.catalog.reload_model(&m, &versions, &aliases, state.clock.now());
        }
    }
    Ok(last)
}
