//! Revocation → quiesced, for many guards at once: a registry in this process (loopback HTTP,
//! its own SQLite and key), N guards on one model's alias, each with its own state and event
//! stream. T0 is just before the revocation call; each guard's time is when it went not-ready.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fulcrum_agent::fetch::Agent;
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::state::StateDir;
use serde_json::json;
use time::OffsetDateTime;

use crate::lab::{Lab, release, who};

pub async fn run(counts: &[usize], jitter_ms: Option<u64>, finding: bool) -> anyhow::Result<()> {
    let lab = Lab::start().await?;
    let trigger = if finding { Trigger::Finding } else { Trigger::Revocation };
    println!("| guards | quiesced | p50 | p99 | max | all rolled back |");
    println!("|---|---|---|---|---|---|");
    for &n in counts {
        measure_on(std::slice::from_ref(&lab.url), &lab.bundle, lab.dir.path(), n, jitter_ms, trigger).await?;
    }
    Ok(())
}

/// What stops the served version at T0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A release manager revokes it.
    Revocation,
    /// A scanner report with a critical finding is recorded against it (the leader's findings
    /// watcher quarantines it).
    Finding,
}

/// One row: `n` guards on a fresh model's `production`, spread round-robin over the registries
/// at `urls` (replicas of one registry), each with its own state and event stream; the version
/// they serve is revoked through the first registry.
pub async fn measure(
    urls: &[String],
    bundle: &fulcrum_sign::TrustBundle,
    dir: &std::path::Path,
    n: usize,
    jitter_ms: Option<u64>,
) -> anyhow::Result<()> {
    measure_on(urls, bundle, dir, n, jitter_ms, Trigger::Revocation).await
}

/// [`measure`], stopping the version with `trigger`.
pub async fn measure_on(
    urls: &[String],
    bundle: &fulcrum_sign::TrustBundle,
    dir: &std::path::Path,
    n: usize,
    jitter_ms: Option<u64>,
    trigger: Trigger,
) -> anyhow::Result<()> {
    let url = urls[0].clone();
    let model = format!("bench-{n}");
    who(&url, "ci")?.post("/v1/models", &json!({"name": model, "domain": "bench"})).await?;
    release(&url, &model, "v1").await?;
    release(&url, &model, "v2").await?;
    // Every replica answers v2 before the guards start (they follow the log).
    let start = Instant::now();
    for u in urls {
        while who(u, "agent")?
            .get(&format!("/v1/resolve?ref={model}@production&env=prod"))
            .await
            .ok()
            .and_then(|d| d["version"].as_str().map(str::to_owned))
            .as_deref()
            != Some("v2")
        {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "{u} does not follow");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let reference = format!("{model}@production");
    let mut guards = Vec::with_capacity(n);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for i in 0..n {
        let state = StateDir::open(&dir.join(format!("agents/{n}/{i}")))?;
        let agent = Agent::new(
            who(&urls[i % urls.len()], "agent")?,
            bundle.clone(),
            state,
            time::Duration::seconds(30),
            format!("guard-{i}"),
        );
        let mut g = Guard::new(agent, &reference, "prod", Layout::Dir(dir.join(format!("models/{n}/{i}"))));
        if let Some(ms) = jitter_ms {
            g.reload_jitter = Duration::from_millis(ms);
        }
        let g = Arc::new(g);
        let (g2, mut stop) = (g.clone(), stop_rx.clone());
        tokio::spawn(async move {
            g2.run(async move {
                let _ = stop.changed().await;
            })
            .await;
        });
        guards.push(g);
    }
    let start = Instant::now();
    while !guards.iter().all(|g| g.is_ready()) {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "{n} guards did not all start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every guard's event stream is open once it is ready (it subscribes before loading).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = OffsetDateTime::now_utc();
    match trigger {
        Trigger::Revocation => who(&url, "rm")?
            .post(&format!("/v1/models/{model}/versions/v2/revocation"), &json!({"reason": "bench", "inc_id": "INC-B"}))
            .await
            .context("revoking")?,
        Trigger::Finding => who(&url, "ci")?
            .post(
                &format!("/v1/models/{model}/versions/v2/findings"),
                &json!({"format": "grype", "report": {"matches": [{"vulnerability": {"id": "CVE-2026-9999", "severity": "Critical"},
                                                                    "artifact": {"name": "tokenizers"}}]}}),
            )
            .await
            .context("recording a finding")?,
    };
    let wait = Instant::now();
    let quiesced = |g: &Guard| g.timeline().iter().find(|s| s.step == "quiesce" && s.at >= t0).map(|s| s.at);
    while guards.iter().any(|g| quiesced(g).is_none()) {
        anyhow::ensure!(wait.elapsed() < Duration::from_secs(60), "not every guard quiesced within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat: Vec<Duration> = guards.iter().map(|g| (quiesced(g).expect("checked") - t0).unsigned_abs()).collect();
    lat.sort();
    while guards.iter().any(|g| !g.is_ready() || g.loaded().is_none_or(|d| d.version != "v1")) {
        anyhow::ensure!(wait.elapsed() < Duration::from_secs(120), "not every guard rolled back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rolled = wait.elapsed();
    // What the slowest guard was doing (stderr): why a tail is long.
    if let Some((i, g)) = guards.iter().enumerate().max_by_key(|(_, g)| quiesced(g)) {
        let steps: Vec<String> = g
            .timeline()
            .iter()
            .rev()
            .take(8)
            .rev()
            .map(|s| format!("{:+.0} ms {} ({})", (s.at - t0).as_seconds_f64() * 1e3, s.step, s.detail))
            .collect();
        eprintln!("slowest guard #{i} (registry {}): {}", i % urls.len() + 1, steps.join("; "));
    }
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "| {n} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} s |",
        lat.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
        rolled.as_secs_f64()
    );
    if urls.len() > 1 {
        for (r, _) in urls.iter().enumerate() {
            let mut lat: Vec<Duration> = guards
                .iter()
                .enumerate()
                .filter(|(i, _)| i % urls.len() == r)
                .map(|(_, g)| (quiesced(g).expect("checked") - t0).unsigned_abs())
                .collect();
            lat.sort();
            let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
            println!(
                "| {} on replica {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | |",
                lat.len(),
                r + 1,
                lat.len(),
                pct(0.5).as_secs_f64() * 1e3,
                pct(0.99).as_secs_f64() * 1e3,
                lat[lat.len() - 1].as_secs_f64() * 1e3,
            );
        }
    }
    let _ = stop_tx.send(true);
    Ok(())
}
