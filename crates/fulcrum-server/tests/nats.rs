//! The event relay against a real NATS JetStream server (`nats-server` 2.15 from PyPI, started per
//! test): every committed event arrives, in outbox order, with `Nats-Msg-Id` = its id — across a
//! NATS restart in the middle of a burst and a cut network. A consumer that dedupes on the event
//! id sees each event once.
//!
//! `nats-server` is installed by `scripts/test.sh` (`FULCRUM_NATS_SERVER`); under `CI=true` its
//! absence fails the suite.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Harness;
use fulcrum_server::testing::Nats;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A TCP proxy that can cut the line: while cut, it closes every connection and accepts none.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

async fn proxy(to: u16) -> Proxy {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let c = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = l.accept().await else { return };
            if c.load(Ordering::SeqCst) {
                continue; // dropped: refused while cut
            }
            let c = c.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else { return };
                let (mut ri, mut wi) = inbound.split();
                let (mut ro, mut wo) = outbound.split();
                let watch = async {
                    while !c.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                tokio::select! {
                    _ = tokio::io::copy(&mut ri, &mut wo) => {}
                    _ = tokio::io::copy(&mut ro, &mut wi) => {}
                    () = watch => {}
                }
            });
        }
    });
    Proxy { addr, cut }
}

/// Events for `n` agent steps on model `m` (each report is one committed event).
async fn burst(h: &Harness, model: &str, n: usize) {
    for i in 0..n {
        let body = json!({"ref": format!("{model}@production"), "env": "prod", "kind": "step", "step": "permit",
                          "observed_at": "2026-11-29T00:00:00Z", "detail": format!("step {i}")});
        h.post("agent", "/v1/agent-reports", body, StatusCode::CREATED).await;
    }
}

/// Every message in the stream, in stream order.
async fn consume(url: &str, expect: usize) -> Vec<(String, Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("FULCRUM").await.unwrap();
    let consumer =
        stream.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expect && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
            Ok(Some(Ok(m))) => {
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                out.push((id, serde_json::from_slice(&m.payload).unwrap()));
            }
            Ok(Some(Err(e))) => panic!("consumer: {e}"),
            Ok(None) | Err(_) => {}
        }
    }
    out
}

/// Every committed event, oldest first, as the registry's outbox holds them.
async fn committed(h: &Harness) -> Vec<Value> {
    h.get("admin", "/v1/events?after=0&limit=1000", StatusCode::OK).await["events"].as_array().unwrap().clone()
}

/// What a consumer that dedupes on the event id sees: each event once, in outbox order.
fn check(received: &[(String, Value)], committed: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&Value> = received.iter().filter(|(id, _)| seen.insert(id.clone())).map(|(_, v)| v).collect();
    for (id, v) in received {
        assert_eq!(id, v["id"].as_str().unwrap(), "Nats-Msg-Id is the event id");
    }
    let ids = |vs: &[&Value]| vs.iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let want: Vec<&Value> = committed.iter().collect();
    assert_eq!(ids(&unique), ids(&want), "every committed event, once, in outbox order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_jetstream_once_in_order_across_a_nats_crash_and_a_cut_network() {
    let Some(mut nats) = Nats::start() else { return };
    let line = proxy(nats.port).await;
    let url = format!("nats://{}", line.addr);
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| {
        let mut cfg = fulcrum_server::relay::NatsConfig::new(&url);
        cfg.duplicate_window = Duration::from_secs(120);
        c.nats = Some(cfg);
    })
    .await;
    common::with_production(&h, "fraud").await;
    h.create_model("ci", "credit").await;
    h.register("ci", "credit", "v1", &[("weights.bin", b"credit weights")]).await;
    h.approve_fully("credit", "v1").await;
    let alias = json!({"version": "v1", "chg_id": "CHG-9"});
    h.put("rm", "/v1/models/credit/aliases/production", alias, StatusCode::OK).await;

    // A burst with NATS crashing (kill -9) in the middle of it.
    let bursts = async {
        burst(&h, "fraud", 40).await;
        burst(&h, "credit", 40).await;
    };
    let crash = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tokio::task::block_in_place(|| nats.crash_and_restart());
    };
    tokio::join!(bursts, crash);

    // A burst while the network to NATS is cut for two seconds: the events commit, and wait.
    line.cut.store(true, Ordering::SeqCst);
    burst(&h, "fraud", 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held: u64 = committed(&h).await.last().unwrap()["sequence"].as_str().unwrap().parse().unwrap();
    assert!(relay_position(&h).await < held, "nothing passes while the line is cut");
    line.cut.store(false, Ordering::SeqCst);
    burst(&h, "credit", 10).await;

    let all = committed(&h).await;
    assert!(all.len() >= 120, "{} events", all.len());
    // Wait for the relay to catch up, then read the stream.
    let last: Option<u64> = all.last().unwrap()["sequence"].as_str().and_then(|s| s.parse().ok());
    let start = Instant::now();
    while Some(relay_position(&h).await) < last {
        assert!(start.elapsed() < Duration::from_secs(30), "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = consume(&nats.url(), all.len()).await;
    check(&received, &all);
}

async fn relay_position(h: &Harness) -> u64 {
    let m = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
    m.lines().find_map(|l| l.strip_prefix("fulcrum_relay_position ")).unwrap().parse().unwrap()
}

async fn caught_up(h: &Harness) -> Vec<Value> {
    let all = committed(h).await;
    let last: u64 = all.last().unwrap()["sequence"].as_str().unwrap().parse().unwrap();
    let start = Instant::now();
    while relay_position(h).await < last {
        assert!(start.elapsed() < Duration::from_secs(30), "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all
}

/// What the relay's ordering rests on, shown on the real server: a copy of a stored message is
/// dropped as a duplicate before its expectation is looked at, and a publish whose predecessor
/// is missing is refused — so a lost publish is never overtaken. Then the relay with a kept
/// position far behind the stream and the duplicate window long past: it starts after the
/// stream's last event and sends nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publish_is_never_overtaken_and_a_stale_position_sends_nothing_twice() {
    use async_nats::jetstream::context::PublishErrorKind;
    let Some(nats) = Nats::start() else { return };
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "PROBE".into(),
        subjects: vec!["probe.>".into()],
        duplicate_window: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .unwrap();
    let publish = |id: &'static str, expect: Option<&'static str>| {
        let js = js.clone();
        async move {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id);
            if let Some(e) = expect {
                h.insert("Nats-Expected-Last-Msg-Id", e);
            }
            js.publish_with_headers("probe.x", h, id.as_bytes().to_vec().into()).await.unwrap().await
        }
    };
    assert!(!publish("a", None).await.unwrap().duplicate);
    assert!(!publish("b", Some("a")).await.unwrap().duplicate);
    assert!(publish("a", Some("not-the-last")).await.unwrap().duplicate, "a copy is a duplicate, not refused");
    let lost = publish("d", Some("c")).await.unwrap_err();
    assert_eq!(lost.kind(), PublishErrorKind::WrongLastMessageId);
    let mut probe = js.get_stream("PROBE").await.unwrap();
    assert_eq!(probe.info().await.unwrap().state.messages, 2);

    let url = nats.url();
    let tune = |c: &mut fulcrum_server::Config| {
        let mut cfg = fulcrum_server::relay::NatsConfig::new(&url);
        cfg.duplicate_window = Duration::from_secs(1);
        c.nats = Some(cfg);
    };
    let h = Harness::start_with(tempfile::tempdir().unwrap(), tune).await;
    common::with_production(&h, "fraud").await;
    burst(&h, "fraud", 20).await;
    caught_up(&h).await;
    let dir = h.stop().await;
    // The kept position lost (as if the relay died after every PubAck but before keeping any),
    // and the duplicate window long gone: copies would now be stored again.
    let db = dir.path().join("data/registry.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query("UPDATE sink_positions SET seq = 0 WHERE sink = 'nats'").execute(&pool).await.unwrap();
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h = Harness::start_with(dir, tune).await;
    burst(&h, "fraud", 5).await;
    let all = caught_up(&h).await;
    let mut stream = js.get_stream("FULCRUM").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, all.len() as u64, "no copy was stored");
    let received = consume(&nats.url(), all.len()).await;
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let got: Vec<Value> = received.into_iter().map(|(_, v)| v).collect();
    assert_eq!(ids(&got), ids(&all), "the stream holds each event exactly once, in outbox order");
}
