//! The outbox relay to NATS JetStream (SPEC §8): every committed event, in outbox order, as a
//! CloudEvent (structured JSON) on `<prefix>.<tenant>.<model>.<event>`, with `Nats-Msg-Id` = the
//! event id so JetStream drops a re-delivered copy within its duplicate window.
//!
//! The relay's position moves only after the PubAck of each event, one at a time — so events
//! reach the stream in outbox order (per model, and overall), a crash or a lost connection makes
//! it resend from the last acknowledged event (deduplicated by id), and nothing is skipped. On
//! failure it reconnects with backoff; registry requests never wait for it.

use std::time::Duration;

use async_nats::jetstream;

use crate::AppState;

/// The relay's name in the sink positions table.
pub const SINK: &str = "nats";

/// Where the relay publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The JetStream stream (created if missing, on `<subject_prefix>.>`).
    pub stream: String,
    pub subject_prefix: String,
    /// JetStream's duplicate window (how long a resent event id is recognised).
    pub duplicate_window: Duration,
}

impl NatsConfig {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            stream: "FULCRUM".into(),
            subject_prefix: "fulcrum".into(),
            duplicate_window: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("store: {0}")]
    Store(#[from] fulcrum_store::StoreError),
    #[error("an outbox event is not a CloudEvent: {0}")]
    Event(String),
}

fn nats<E: std::fmt::Display>(e: E) -> RelayError {
    RelayError::Nats(e.to_string())
}

/// A subject token: anything NATS gives a meaning to ('.', '*', '>', spaces) or that is not
/// plainly printable is percent-encoded, so one name is one token.
pub fn token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'@' | b'+') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() { "%00".into() } else { out }
}

/// (subject, event id) of a stored CloudEvent.
fn route(prefix: &str, body: &str) -> Result<(String, String), RelayError> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| RelayError::Event(e.to_string()))?;
    let s = |k: &str| v["data"][k].as_str().unwrap_or_default().to_owned();
    let id = v["id"].as_str().ok_or_else(|| RelayError::Event("no id".into()))?.to_owned();
    Ok((format!("{prefix}.{}.{}.{}", token(&s("tenant")), token(&s("model")), token(&s("event"))), id))
}

/// Run the relay until shutdown.
pub fn spawn(state: AppState, cfg: NatsConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown_rx.clone();
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                r = run(&state, &cfg) => match r {
                    Ok(()) => return,
                    Err(e) => {
                        state.metrics.relay_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "event relay to NATS interrupted");
                    }
                },
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

async fn run(state: &AppState, cfg: &NatsConfig) -> Result<(), RelayError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(5)))
        .max_reconnects(Some(0))
        .retry_on_initial_connect()
        .connect(&cfg.url)
        .await
        .map_err(nats)?;
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.subject_prefix)],
        duplicate_window: cfg.duplicate_window,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(nats)?;
    tracing::info!(url = %cfg.url, stream = %cfg.stream, "event relay connected to NATS");
    let mut pos = state.store.sink_position(SINK).await?;
    let mut commits = state.events_tx.subscribe();
    let mut shutdown = state.shutdown_rx.clone();
    while let Some(batch) = crate::fanout::next_for_sink(state, pos, 256, &mut commits, &mut shutdown).await? {
        for ev in batch {
            let (subject, id) = route(&cfg.subject_prefix, &ev.body)?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            let ack = js.publish_with_headers(subject, headers, ev.body.into_bytes().into()).await.map_err(nats)?;
            tokio::time::timeout(Duration::from_secs(5), ack).await.map_err(nats)?.map_err(nats)?;
            pos = ev.seq;
            state.metrics.relay_position.store(pos.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // Kept once a batch: after a crash the batch is sent again, and JetStream drops the copies.
        state.store.set_sink_position(SINK, pos).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_subject_tokens() {
        assert_eq!(token("fraud"), "fraud");
        assert_eq!(token("risk.v2"), "risk%2Ev2");
        assert_eq!(token("*"), "%2A");
        assert_eq!(token("a>b c"), "a%3Eb%20c");
        assert_eq!(token(""), "%00");
        let (subject, id) =
            route("fulcrum", r#"{"id":"e1","data":{"tenant":"acme","model":"m.1","event":"revoked"}}"#).unwrap();
        assert_eq!((subject.as_str(), id.as_str()), ("fulcrum.acme.m%2E1.revoked", "e1"));
    }
}
