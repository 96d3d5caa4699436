//! Decision logs pushed to a SIEM (SPEC §9) in OPA's decision-log upload format: each batch is
//! a gzip-compressed JSON array of decision events (`decision_id`, `path`, `input`, `result`,
//! `bundles.<name>.revision` = the policy digest, `timestamp`, `labels`, `erased`, plus Fulcrum's
//! `chg_id`/`inc_id`), POSTed with `Content-Encoding: gzip` to the configured endpoint (OPA's
//! own uploads go to `<service>/logs`). The records are the ones stored, already masked by the
//! policy's `system.log.mask` rule, so the SIEM sees exactly what the pull API shows.
//!
//! Gate decisions, release decisions, the watcher's and the lifecycle's refusals are pushed in
//! log order (the `decisions` table's position) from the leader; a batch is retried with
//! backoff until the receiver answers 2xx, and the position moves only then (at least once: a
//! crash between the answer and the stored position repeats that batch; receivers dedupe on
//! `decision_id`, as OPA's do). Access decisions stay in the packed access log (`GET
//! /v1/decisions?path=fulcrum/authz/decision`): at thousands per second they are pulled, not
//! pushed.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::AppState;

/// Where decision logs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLogConfig {
    /// The upload endpoint (e.g. `https://siem.example/logs`).
    pub url: String,
    /// A bearer token for the endpoint, read from this file (re-read on each batch).
    pub token_file: Option<PathBuf>,
    /// Decisions per upload at most.
    pub batch: u32,
}

/// The position kept for this sink (in `sink_positions`, with the webhooks').
pub const SINK: &str = "decision-log";

/// Push until shutdown (leader only).
pub fn spawn(state: AppState, cfg: DecisionLogConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown_rx.clone();
        loop {
            tokio::select! {
                r = run(&state, &cfg) => match r {
                    Ok(()) => return,
                    Err(e) => tracing::error!(error = %e, "decision-log push stopped; retrying"),
                },
                _ = shutdown.changed() => return,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Gzip a JSON array of the records (already OPA-shaped JSON objects).
pub fn gzip_batch(records: &[String]) -> Vec<u8> {
    let mut json = Vec::with_capacity(records.iter().map(String::len).sum::<usize>() + records.len() + 2);
    json.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(r.as_bytes());
    }
    json.push(b']');
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

async fn run(state: &AppState, cfg: &DecisionLogConfig) -> Result<(), fulcrum_store::StoreError> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let mut pos = state.store.sink_position(SINK).await?;
    let mut commits = state.events_tx.subscribe();
    let mut shutdown = state.shutdown_rx.clone();
    loop {
        let batch = state.store.decisions_after(pos, cfg.batch).await?;
        if batch.is_empty() {
            // Decisions are written with or beside events; wake on the next commit, or look
            // again within a second (a denial commits no event).
            tokio::select! {
                _ = commits.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            continue;
        }
        let last = batch.last().map_or(pos, |(seq, _)| *seq);
        let body = gzip_batch(&batch.into_iter().map(|(_, r)| r).collect::<Vec<_>>());
        let mut wait = Duration::from_millis(250);
        loop {
            let mut req = http
                .post(&cfg.url)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(body.clone());
            if let Some(f) = &cfg.token_file {
                match std::fs::read_to_string(f) {
                    Ok(t) => req = req.bearer_auth(t.trim()),
                    Err(e) => tracing::error!(error = %e, file = %f.display(), "decision-log token unreadable"),
                }
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "decision-log upload refused; retrying"),
                Err(e) => tracing::warn!(error = %e, "decision-log upload failed; retrying"),
            }
            state.metrics.decision_log_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        pos = last;
        state.store.set_sink_position(SINK, pos).await?;
        state
            .metrics
            .decision_log_position
            .store(u64::try_from(pos).unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    #[test]
    fn a_batch_is_a_gzipped_json_array_of_the_records_in_order() {
        let recs = vec![
            r#"{"decision_id":"a","path":"fulcrum/env/decision"}"#.to_owned(),
            r#"{"decision_id":"b"}"#.to_owned(),
        ];
        let gz = super::gzip_batch(&recs);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(v.iter().map(|d| d["decision_id"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
    }
}
