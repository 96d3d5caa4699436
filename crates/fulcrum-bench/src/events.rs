//! End-to-end event latency to a NATS consumer: an agent report is answered by the registry
//! (its event committed), relayed to JetStream and delivered to a subscriber on
//! `fulcrum.<tenant>.>`; the time from sending the report to receiving its event, one at a time
//! (light load) and with `conns` reporters at once.

use std::time::{Duration, Instant};

use fulcrum_server::testing::Nats;
use futures_util::StreamExt;
use serde_json::json;

use crate::lab::{Lab, release, who};

fn pct(sorted: &[f64], q: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub async fn run(count: usize, conns: usize) -> anyhow::Result<()> {
    let nats =
        Nats::start().ok_or_else(|| anyhow::anyhow!("nats-server is not installed (scripts/test.sh installs it)"))?;
    let url = nats.url();
    let lab = Lab::start_with(|c| c.nats = Some(fulcrum_server::relay::NatsConfig::new(&url)), None).await?;
    who(&lab.url, "ci")?.post("/v1/models", &json!({"name": "bench", "domain": "bench"})).await?;
    release(&lab.url, "bench", "v1").await?;
    let client = async_nats::connect(&url).await?;
    let mut sub = client.subscribe("fulcrum.bench.>").await?;
    // Drain what the setup produced.
    while tokio::time::timeout(Duration::from_millis(1500), sub.next()).await.is_ok() {}
    println!("| reporters at once | events | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for parallel in [1, conns] {
        let agent = std::sync::Arc::new(who(&lab.url, "agent")?);
        let mut sent: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
        let per = count / parallel;
        let mut tasks = vec![];
        for p in 0..parallel {
            let (agent, tx) = (agent.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    let detail = format!("r{parallel}-{p}-{i}");
                    let t0 = Instant::now();
                    let body = json!({"ref": "bench@production", "env": "prod", "kind": "step", "step": "permit",
                                      "observed_at": "2026-11-29T00:00:00Z", "detail": detail});
                    agent.post("/v1/agent-reports", &body).await?;
                    let _ = tx.send((detail, t0));
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        drop(tx);
        let mut lat = Vec::with_capacity(per * parallel);
        let deadline = Instant::now() + Duration::from_secs(120);
        while lat.len() < per * parallel && Instant::now() < deadline {
            tokio::select! {
                Some((d, t0)) = rx.recv() => { sent.insert(d, t0); }
                Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), sub.next()) => {
                    let now = Instant::now();
                    let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
                    if let Some(d) = v["data"]["detail"].as_str() {
                        // The send time may arrive just after the event.
                        while !sent.contains_key(d) {
                            match rx.recv().await { Some((x, t)) => { sent.insert(x, t); } None => break }
                        }
                        if let Some(t0) = sent.remove(d) {
                            lat.push(now.duration_since(t0).as_secs_f64() * 1e3);
                        }
                    }
                }
            }
        }
        for t in tasks {
            t.await??;
        }
        lat.sort_by(f64::total_cmp);
        anyhow::ensure!(lat.len() == per * parallel, "{} of {} events arrived", lat.len(), per * parallel);
        println!(
            "| {parallel} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// Agent reports per second through the registry's HTTP request path (token auth, access
/// decision, validation, durable commit of event + outbox + ledger leaf), `conns` reporters at
/// once for `secs` each; every answered report's event is then counted in the ledger.
pub async fn reports(conns: &[usize], secs: f64) -> anyhow::Result<()> {
    let lab = crate::lab::Lab::start().await?;
    who(&lab.url, "ci")?.post("/v1/models", &json!({"name": "bench", "domain": "bench"})).await?;
    release(&lab.url, "bench", "v1").await?;
    println!("| reporters at once | reports/s (each durable when answered) | p50 | p99 |");
    println!("|---|---|---|---|");
    for &parallel in conns {
        let agent = std::sync::Arc::new(who(&lab.url, "agent")?);
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..parallel)
            .map(|p| {
                let agent = agent.clone();
                tokio::spawn(async move {
                    let mut lat = vec![];
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let body = json!({"ref": "bench@production", "env": "prod", "kind": "step", "step": "permit",
                                          "observed_at": "2026-11-29T00:00:00Z", "detail": format!("r{p}")});
                        agent.post("/v1/agent-reports", &body).await?;
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok::<_, anyhow::Error>(lat)
                })
            })
            .collect();
        let mut lat = vec![];
        for t in tasks {
            lat.extend(t.await??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let rate = lat.len() as f64 / elapsed;
        println!("| {parallel} | {rate:.0} | {:.2} ms | {:.2} ms |", pct(&lat, 0.5), pct(&lat, 0.99));
    }
    Ok(())
}
