//! The registry killed with SIGKILL in the middle of a burst while it relays events to a real
//! NATS JetStream server, then started again on the same data: every event that committed
//! arrives — the ones committed but not yet relayed after the restart, the ones relayed whose
//! position was not yet kept again (and dropped by JetStream as duplicates) — once each, in
//! outbox order, for a consumer that dedupes on the event id.

mod common;

use std::time::{Duration, Instant};

use common::{fulcrum, serve_with};
use fulcrum_server::testing::Nats;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// One agent report (one committed event); false when the registry did not answer it.
async fn report(url: &str, i: usize) -> bool {
    let body = json!({"ref": "fraud@production", "env": "prod", "kind": "step", "step": "permit",
                      "observed_at": "2026-11-29T00:00:00Z", "detail": format!("step {i}")});
    reqwest::Client::new()
        .post(format!("{url}/v1/agent-reports"))
        .bearer_auth("t-agent")
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn get(url: &str, path: &str) -> Value {
    reqwest::Client::new().get(format!("{url}{path}")).bearer_auth("t-ci").send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_killed_mid_burst_loses_and_repeats_nothing_downstream() {
    let Some(nats) = Nats::start() else { return };
    let flags = ["--nats-url", &nats.url()];
    let mut s = serve_with(&flags, tempfile::tempdir().unwrap());
    let env = [("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", "t-ci")];
    assert!(fulcrum(&["model", "create", "fraud", "--domain", "risk"], &env).status.success());

    // A burst from another thread; the registry is killed (SIGKILL) while it runs.
    let url = s.url.clone();
    let burst = tokio::spawn(async move {
        let mut answered = 0;
        for i in 0..400 {
            answered += usize::from(report(&url, i).await);
        }
        answered
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let before = burst.await.unwrap();
    assert!(before > 0 && before < 400, "the kill landed mid-burst ({before} of 400 answered)");

    // Started again on the same data: more events, then everything reaches the stream.
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    let s = serve_with(&flags, dir);
    let mut after = 0;
    for i in 0..50 {
        after += usize::from(report(&s.url, 1000 + i).await);
    }
    assert_eq!(after, 50);
    let committed = get(&s.url, "/v1/events?after=0&limit=1000").await["events"].as_array().unwrap().clone();
    assert!(committed.len() >= before + after, "{} events for {} answered reports", committed.len(), before + after);
    let last: u64 = committed.last().unwrap()["sequence"].as_str().unwrap().parse().unwrap();
    let start = Instant::now();
    loop {
        let m = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
        let pos: u64 = m.lines().find_map(|l| l.strip_prefix("fulcrum_relay_position ")).unwrap().parse().unwrap();
        if pos >= last {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the relay did not catch up ({pos} of {last})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("FULCRUM").await.unwrap();
    let consumer =
        stream.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut ids: Vec<String> = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let want: Vec<String> = committed.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, want, "every committed event once, in outbox order");
}
