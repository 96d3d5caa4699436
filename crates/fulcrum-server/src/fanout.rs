//! Event fan-out: the registry's one log reader ([`crate::follow`]) broadcasts every committed
//! event — this replica's and every other's — in outbox order to all open event streams: one SQL
//! read per batch, not one per stream. A stream that falls behind the broadcast (lagged) or has
//! just opened catches up from SQL and drops what it has already sent by position, so it never
//! skips or repeats.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

/// Events buffered for slow streams before they must catch up from SQL.
const CAPACITY: usize = 4096;

/// The broadcast every event stream subscribes to.
pub fn channel() -> broadcast::Sender<Arc<Fanned>> {
    broadcast::channel(CAPACITY).0
}

/// One committed event, parsed once for every stream.
#[derive(Debug)]
pub struct Fanned {
    pub seq: i64,
    /// `*` for registry-wide events.
    pub tenant: String,
    pub domain: String,
    pub model: String,
    pub kind: String,
    /// The CloudEvent as stored.
    pub body: String,
}

impl Fanned {
    /// A stored event with its routing fields read from the CloudEvent's data (empty when absent).
    pub fn of(e: fulcrum_store::StoredEvent) -> Self {
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
        let s = |k: &str| v["data"][k].as_str().unwrap_or("").to_owned();
        Self { seq: e.seq, tenant: s("tenant"), domain: s("domain"), model: s("model"), kind: s("event"), body: e.body }
    }
}

/// What a delivering sink (the NATS relay, a webhook) reads next: the committed events after
/// `pos`, at most `limit`, waiting for a commit when there are none; `None` once the registry
/// shuts down. Sinks keep their own position, so each reads at its own pace and resumes after a
/// restart.
///
/// # Errors
/// Store failures.
pub async fn next_for_sink(
    state: &crate::AppState,
    pos: i64,
    limit: u32,
    commits: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Vec<fulcrum_store::StoredEvent>>, fulcrum_store::StoreError> {
    loop {
        let batch = state.store.events_after(None, pos, limit).await?;
        if !batch.is_empty() {
            return Ok(Some(batch));
        }
        tokio::select! {
            _ = commits.changed() => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return Ok(None),
        }
    }
}
