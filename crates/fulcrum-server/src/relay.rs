//! The outbox relay to NATS JetStream (SPEC §8): every committed event, in outbox order, as a
//! CloudEvent (structured JSON) on `<prefix>.<tenant>.<model>.<event>`, with `Nats-Msg-Id` = the
//! event id so JetStream drops a re-delivered copy within its duplicate window.
//!
//! Publishes are pipelined (a batch of up to 256 events is sent before the first PubAck is awaited)
//! and still reach the stream in outbox order: each one after the first of a connection carries
//! `Nats-Expected-Last-Msg-Id` = the previous event's id, so if one is lost JetStream refuses
//! every later one instead of storing it ahead of the lost one. The relay's position moves only
//! over PubAcks received in order; a crash, a refusal or a lost connection makes it resend from
//! the last acknowledged event (JetStream drops copies it already holds by `Nats-Msg-Id`, before
//! it checks the expectation), and nothing is skipped. On failure it reconnects with backoff;
//! registry requests never wait for it.

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
    #[error("the stream's last message is not the event before {0}; resynchronised")]
    OutOfStep(i64),
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
    let mut stream = js
        .get_or_create_stream(jetstream::stream::Config {
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
    // Where the stream stands: the id its last message must have for the next publish.
    let mut previous = start_point(state, &mut stream, &mut pos).await?;
    while let Some(batch) = crate::fanout::next_for_sink(state, pos, 256, &mut commits, &mut shutdown).await? {
        let mut acks = Vec::with_capacity(batch.len());
        for ev in batch {
            let (subject, id) = route(&cfg.subject_prefix, &ev.body)?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            if let Some(p) = previous.as_deref() {
                headers.insert("Nats-Expected-Last-Msg-Id", p);
            }
            let ack = js.publish_with_headers(subject, headers, ev.body.into_bytes().into()).await.map_err(nats)?;
            acks.push((ev.seq, ack));
            previous = Some(id);
        }
        for (seq, ack) in acks {
            match tokio::time::timeout(Duration::from_secs(5), ack).await {
                Ok(Ok(_)) => {
                    pos = seq;
                    state.metrics.relay_position.store(pos.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(Err(e)) if e.kind() == jetstream::context::PublishErrorKind::WrongLastMessageId => {
                    // The stream moved without us (another publisher on our subjects): reconnect
                    // and start again from where the stream stands.
                    state.store.set_sink_position(SINK, pos).await?;
                    return Err(RelayError::OutOfStep(seq));
                }
                Ok(Err(e)) => {
                    state.store.set_sink_position(SINK, pos).await?;
                    return Err(nats(e));
                }
                Err(elapsed) => {
                    state.store.set_sink_position(SINK, pos).await?;
                    return Err(nats(elapsed));
                }
            }
        }
        // Kept once a batch: after a crash, the next connect finds the stream ahead and starts there.
        state.store.set_sink_position(SINK, pos).await?;
    }
    Ok(())
}

/// Where the stream stands, read at each connect: its last message's id, which the next
/// publish expects. When that message is one of our events beyond `pos` (the relay crashed
/// after the PubAcks, before keeping its position), everything up to it is in the stream — the
/// stream only ever holds a prefix of the outbox, since each publish expects its predecessor —
/// so the position moves there and nothing is sent twice, whatever the duplicate window. An empty
/// stream, or one whose last message is not ours, expects nothing of the first publish.
async fn start_point(
    state: &AppState,
    stream: &mut jetstream::stream::Stream,
    pos: &mut i64,
) -> Result<Option<String>, RelayError> {
    let last = stream.info().await.map_err(nats)?.state.last_sequence;
    if last == 0 {
        return Ok(None);
    }
    let msg = stream.get_raw_message(last).await.map_err(nats)?;
    let Some(id) = msg.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()) else {
        return Ok(None);
    };
    match state.store.event_seq(&id).await? {
        Some(seq) if seq > *pos => {
            tracing::info!(from = *pos, to = seq, "the stream already holds events beyond the relay's position");
            *pos = seq;
            state.store.set_sink_position(SINK, seq).await?;
            Ok(Some(id))
        }
        Some(seq) if seq == *pos => Ok(Some(id)),
        Some(seq) => {
            // The stream lost events it had acknowledged (its storage replaced): what it lost is
            // not sent again; the next one expects nothing.
            tracing::error!(stream_last = seq, position = *pos, "the stream holds fewer events than it acknowledged");
            Ok(None)
        }
        None => Ok(None),
    }
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
