//! Three `fulcrum serve` processes on one PostgreSQL database and S3 bucket, relaying to a real
//! NATS JetStream server and a webhook receiver. The leader is killed (SIGKILL) in the middle of
//! a burst of 1,000 events spread over the three (SPEC §11, contract for replicas): another
//! replica leads within seconds; NATS holds every committed event once after dedupe, in outbox
//! order; the webhook receiver gets every event, in order once the one event in flight when the
//! leader died (delivered again, same `fulcrum-event-id`) is dropped; checkpoints
//! never shrink; `fulcrum audit verify` passes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, ok, run_as, serve_with};
use fulcrum_server::testing::{Nats, ScaleOut};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// A webhook receiver that accepts everything and keeps each delivery's event id, in arrival order.
fn receiver(ids: Arc<Mutex<Vec<String>>>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut len, mut id) = (0usize, None);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("fulcrum-event-id:") {
                    id = Some(v.trim().to_owned());
                }
                line.clear();
            }
            let mut body = vec![0; len];
            // A request cut off by the sender's death (headers or body incomplete) is not a
            // delivery: a receiver would not accept it either.
            if len == 0 || r.read_exact(&mut body).is_err() {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&body) else { continue };
            assert_eq!(v["id"].as_str().map(str::to_ascii_lowercase), id, "the header names the event delivered");
            ids.lock().unwrap().push(v["id"].as_str().unwrap_or_default().to_owned());
            let _ = write!(conn, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    url
}

/// A gauge from a registry's `/metrics` (`None` when it does not answer).
async fn gauge(url: &str, name: &str) -> Option<u64> {
    let m = reqwest::get(format!("{url}/metrics")).await.ok()?.text().await.ok()?;
    m.lines().find_map(|l| l.strip_prefix(&format!("{name} ")))?.parse().ok()
}

/// One agent report (one committed event); whether the registry answered it.
async fn report(http: &reqwest::Client, url: &str, i: usize) -> bool {
    let body = json!({"ref": "fraud@production", "env": "prod", "kind": "step", "step": "permit",
                      "observed_at": "2026-12-06T00:00:00Z", "detail": format!("step {i}")});
    http.post(format!("{url}/v1/agent-reports"))
        .bearer_auth("t-agent")
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_burst_loses_and_reorders_nothing() {
    let Some(so) = ScaleOut::start(false).await else { return };
    let Some(nats) = Nats::start() else { return };
    let hooks_dir = tempfile::tempdir().unwrap();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let hook = receiver(delivered.clone());
    std::fs::write(hooks_dir.path().join("siem.key"), "a-secret\n").unwrap();
    let hooks = json!({"webhooks": [{"name": "siem", "url": hook, "secret_file": hooks_dir.path().join("siem.key"),
                                      "first_retry_ms": 10}]});
    std::fs::write(hooks_dir.path().join("hooks.json"), hooks.to_string()).unwrap();
    let blob_store = format!("s3://models?endpoint={}&region=us-east-1", so.endpoint());
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("ak"), "fulcrum\n").unwrap();
    std::fs::write(secrets.path().join("sk"), "fulcrum-secret\n").unwrap();
    let (ak, sk) = (secrets.path().join("ak"), secrets.path().join("sk"));
    let nats_url = nats.url();
    let hooks_file = hooks_dir.path().join("hooks.json");
    let flags = [
        "--database-url",
        &so.db_url,
        "--blob-store",
        &blob_store,
        "--s3-access-key-file",
        ak.to_str().unwrap(),
        "--s3-secret-key-file",
        sk.to_str().unwrap(),
        "--nats-url",
        &nats_url,
        "--webhooks",
        hooks_file.to_str().unwrap(),
    ];
    // Replicas sign with one key: the first one's development key, copied to the others.
    let first = serve_with(&flags, tempfile::tempdir().unwrap());
    let mut replicas: Vec<Option<Server>> = vec![Some(first)];
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let key = replicas[0].as_ref().unwrap().dir.path().join("data/signing-key.pk8");
        std::fs::copy(key, dir.path().join("data/signing-key.pk8")).unwrap();
        replicas.push(Some(serve_with(&flags, dir)));
    }
    let urls: Vec<String> = replicas.iter().map(|s| s.as_ref().unwrap().url.clone()).collect();
    ok(&run_as(replicas[1].as_ref().unwrap(), "ci", &["model", "create", "fraud", "--domain", "risk"]));

    // Who leads.
    let start = Instant::now();
    let leader = loop {
        let mut leaders = vec![];
        for (i, u) in urls.iter().enumerate() {
            if gauge(u, "fulcrum_leader").await == Some(1) {
                leaders.push(i);
            }
        }
        if let [one] = leaders[..] {
            break one;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no single leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let old_term = gauge(&urls[leader], "fulcrum_leader_term").await.unwrap();

    // Checkpoint sizes as every replica serves them, sampled all along.
    let sizes = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sampler = {
        let (urls, sizes) = (urls.clone(), sizes.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                for u in &urls {
                    let Ok(r) = http.get(format!("{u}/v1/ledger/checkpoint")).bearer_auth("t-auditor").send().await
                    else {
                        continue;
                    };
                    if let Ok(v) = r.json::<Value>().await
                        && let Some(size) = v["size"].as_u64()
                    {
                        sizes.lock().unwrap().push(size);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // The burst: 1,000 reports, spread round-robin over the three, three at a time.
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let burst = {
        let (urls, answered) = (urls.clone(), answered.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let lanes = (0..3).map(|lane| {
                let (http, urls, answered) = (http.clone(), urls.clone(), answered.clone());
                async move {
                    for i in (lane..1000).step_by(3) {
                        if report(&http, &urls[i % 3], i).await {
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
            });
            futures_util::future::join_all(lanes).await;
        })
    };
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut dead = replicas[leader].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let killed_at = Instant::now();
    let at_kill = answered.load(std::sync::atomic::Ordering::SeqCst);

    // Another replica leads, with a newer term, within seconds.
    let survivors: Vec<String> = (0..3).filter(|i| *i != leader).map(|i| urls[i].clone()).collect();
    let new_leader = loop {
        let mut leaders = vec![];
        for u in &survivors {
            if gauge(u, "fulcrum_leader").await == Some(1) {
                leaders.push(u.clone());
            }
        }
        if let [one] = &leaders[..] {
            break one.clone();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(10), "no new leader after 10 s: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took_over = killed_at.elapsed();
    assert!(gauge(&new_leader, "fulcrum_leader_term").await.unwrap() > old_term);
    burst.await.unwrap();
    let total = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        at_kill < 1000 && (600..1000).contains(&total),
        "the kill landed mid-burst: {at_kill} then {total} of 1000"
    );

    // Every committed event, from the database itself.
    let store = fulcrum_store::Store::connect(&so.database(), fulcrum_store::StoreOptions::default()).await.unwrap();
    let committed: Vec<String> = store
        .events_after(None, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_str::<Value>(&e.body).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    let reports =
        store.events_after(None, 0, 10_000).await.unwrap().iter().filter(|e| e.body.contains("\"agent_step\"")).count();
    assert!(reports >= total, "{reports} reports committed for {total} answered");
    let last = store.last_event_seq().await.unwrap() as u64;

    // NATS: every committed event once after dedupe, in outbox order.
    let start = Instant::now();
    while gauge(&new_leader, "fulcrum_relay_position").await.unwrap_or(0) < last {
        assert!(start.elapsed() < Duration::from_secs(30), "the new leader's relay did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("FULCRUM").await.unwrap();
    let consumer =
        stream.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut on_nats: Vec<String> = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
        on_nats.push(serde_json::from_slice::<Value>(&m.payload).unwrap()["id"].as_str().unwrap().to_owned());
    }
    let dedupe = |ids: &[String]| {
        let mut seen = std::collections::HashSet::new();
        ids.iter().filter(|id| seen.insert((*id).clone())).cloned().collect::<Vec<_>>()
    };
    assert_eq!(dedupe(&on_nats), committed, "NATS: every committed event once, in outbox order");

    // Webhooks: every event, in order once the dead leader's in-flight event is dropped.
    let start = Instant::now();
    while dedupe(&delivered.lock().unwrap()).len() < committed.len() {
        assert!(start.elapsed() < Duration::from_secs(60), "webhooks did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = delivered.lock().unwrap().clone();
    let committed_lower: Vec<String> = committed.iter().map(|i| i.to_ascii_lowercase()).collect();
    let once = dedupe(&got);
    if let Some(i) = once.iter().zip(&committed_lower).position(|(a, b)| a != b) {
        let pos = |id: &String| committed_lower.iter().position(|c| c == id);
        let around: Vec<(Option<usize>, &String)> = got.iter().map(|id| (pos(id), id)).collect();
        let j = got.iter().position(|g| *g == once[i]).unwrap_or(0);
        panic!(
            "webhooks out of outbox order at {i} ({} deliveries, {} events): deliveries {}..: {:?}",
            got.len(),
            committed.len(),
            j.saturating_sub(3),
            &around[j.saturating_sub(3)..(j + 6).min(around.len())]
        );
    }
    assert_eq!(once, committed_lower, "webhooks: every event, in outbox order");
    let repeats = got.len() - committed.len();
    // A sink keeps its position after each event, so only the event in flight when the leader
    // died may come twice (the receiver had it; the position had not been kept).
    assert!(repeats <= 1, "only the event in flight may come twice: {repeats} repeats");

    // The audit ledger verifies, and no replica ever served a smaller checkpoint than one seen
    // before (samples interleave replicas; a follower may lag a leader, so compare per
    // observation order with the maximum seen so far minus nothing: checkpoints are shared).
    sampler.abort();
    let sizes = sizes.lock().unwrap().clone();
    assert!(sizes.len() > 10, "{sizes:?}");
    assert!(sizes.windows(2).all(|w| w[1] >= w[0]), "checkpoints never shrink: {sizes:?}");
    let survivor = replicas.iter().flatten().next().unwrap();
    let witness = tempfile::tempdir().unwrap();
    ok(&run_as(survivor, "auditor", &["audit", "verify", "--state", witness.path().to_str().unwrap()]));
    eprintln!(
        "killed the leader after {at_kill} of 1000 answered; new leader in {took_over:?}; {total} answered; {} events; {} NATS messages; {} webhook deliveries",
        committed.len(),
        on_nats.len(),
        got.len()
    );
}
