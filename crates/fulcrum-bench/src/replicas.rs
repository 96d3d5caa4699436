//! Three replicas of one registry on one PostgreSQL database and S3 bucket, in this process
//! (SPEC §11), side by side:
//!
//! - **commit → visible**: an alias moved through replica 1; from the moment its commit is
//!   answered until replicas 2 and 3 sign answers naming the new version (they follow the log
//!   every 100 ms);
//! - **resolve under others' writes**: replica 3's resolve throughput with replicas 1 and 2 idle,
//!   and while they take writes (alias moves and agent reports, which replica 3 follows), next to
//!   the bare handler — interleaved rounds, ratios;
//! - **revocation → quiesced** for guards spread round-robin over the three (revoked through
//!   replica 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::identity::{Variant, load};
use crate::lab::{Lab, release, who};

const MODELS: usize = 100;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

/// The version a replica's signed answer for `model@production` names.
async fn answers(http: &reqwest::Client, url: &str, model: &str) -> Option<String> {
    let r = http
        .get(format!("{url}/v1/resolve?ref={model}@production&env=prod"))
        .bearer_auth("tok-agent")
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["version"].as_str().map(str::to_owned)
}

/// Alias moves through `urls[0]`; for each, how long after its commit was answered the other
/// replicas' signed answers named it.
async fn commit_to_visible(urls: &[String], moves: usize) -> anyhow::Result<Vec<Duration>> {
    let model = "visible";
    who(&urls[0], "ci")?.post("/v1/models", &json!({"name": model, "domain": "bench"})).await?;
    release(&urls[0], model, "v1").await?;
    release(&urls[0], model, "v2").await?;
    let http = reqwest::Client::new();
    let rm = who(&urls[0], "rm")?;
    let mut seen = Vec::with_capacity(moves * (urls.len() - 1));
    for i in 0..moves {
        let target = if i % 2 == 0 { "v1" } else { "v2" };
        rm.put(
            &format!("/v1/models/{model}/aliases/production"),
            &json!({"version": target, "chg_id": format!("CHG-V{i}"), "allow_downgrade": true}),
        )
        .await
        .context("moving the alias")?;
        let committed = Instant::now();
        let waits = urls[1..].iter().map(|u| {
            let http = http.clone();
            async move {
                while answers(&http, u, model).await.as_deref() != Some(target) {
                    anyhow::ensure!(committed.elapsed() < Duration::from_secs(10), "{u} never showed {target}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok(committed.elapsed())
            }
        });
        for w in futures_util::future::join_all(waits).await {
            seen.push(w?);
        }
    }
    seen.sort();
    Ok(seen)
}

/// Writes through `urls` until `stop`: alias moves over the bench models and agent reports.
fn writers(urls: &[String], stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (lane, u) in urls.iter().cycle().take(urls.len() * 4).enumerate() {
        let (u, stop, done) = (u.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = lane;
            while !stop.load(Ordering::Relaxed) {
                i += 4 * 2;
                let ok = if lane % 2 == 0 {
                    let target = if (i / 8) % 2 == 0 { "v1" } else { "v2" };
                    http.put(format!("{u}/v1/models/model-{:03}/aliases/production", i % MODELS))
                        .bearer_auth("tok-rm")
                        .json(&json!({"version": target, "chg_id": "CHG-W", "allow_downgrade": true}))
                        .send()
                        .await
                } else {
                    http.post(format!("{u}/v1/agent-reports"))
                        .bearer_auth("tok-agent")
                        .json(&json!({"ref": format!("model-{:03}@production", i % MODELS), "env": "prod",
                                      "kind": "step", "step": "permit", "observed_at": "2026-12-06T00:00:00Z"}))
                        .send()
                        .await
                };
                if ok.is_ok_and(|r| r.status().is_success()) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tasks
}

pub async fn run(
    moves: usize,
    guards: usize,
    conns: usize,
    rounds: usize,
    secs: f64,
    parts: &[String],
) -> anyhow::Result<()> {
    let part = |p: &str| parts.iter().any(|x| x == p);
    let so = fulcrum_server::testing::ScaleOut::start(true)
        .await
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL or SeaweedFS is not installed"))?;
    let one = Lab::start_with(so.tune(), None).await?;
    let two = Lab::replica_of(&one, so.tune()).await?;
    let three = Lab::replica_of(&one, so.tune()).await?;
    let urls = vec![one.url.clone(), two.url.clone(), three.url.clone()];
    if part("visible") {
        visible(&urls, moves).await?;
    }
    if part("resolve") {
        resolve_under_writes(&so, &urls, conns, rounds, secs).await?;
    }
    if part("guards") {
        println!("## revocation through replica 1 → quiesced, guards spread over the three\n");
        println!("| guards | quiesced | p50 | p99 | max | all rolled back |");
        println!("|---|---|---|---|---|---|");
        crate::guards::measure(&urls, &one.bundle, one.dir.path(), guards, None).await?;
    }
    drop((one, two, three));
    drop(so);
    Ok(())
}

async fn visible(urls: &[String], moves: usize) -> anyhow::Result<()> {
    let seen = commit_to_visible(urls, moves).await?;
    println!("## commit on replica 1 → visible in replicas 2 and 3's signed answers ({moves} alias moves)\n");
    println!("| samples | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
        seen.len(),
        pct(&seen, 0.5),
        pct(&seen, 0.99),
        seen[seen.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}

/// Replica 3's resolve throughput: the bare handler, the others idle, replicas 1 and 2 taking
/// writes, and the same writes on a registry of its own (the control).
async fn resolve_under_writes(
    so: &fulcrum_server::testing::ScaleOut,
    urls: &[String],
    conns: usize,
    rounds: usize,
    secs: f64,
) -> anyhow::Result<()> {
    // Models for the resolve load, each with v1 and v2 Approved and `production` on v2; the same
    // on a registry of its own (another database): the control, whose writes cost the machine
    // as much but give replica 3 nothing to follow.
    let stranger = {
        let (url, blobs) = (so.pg.database("stranger"), so.blob_store());
        Lab::start_with(
            move |c| {
                c.database = Some(fulcrum_store::Database::Postgres { url, password: None });
                c.blob_store = Some(blobs);
            },
            None,
        )
        .await?
    };
    for u in [&urls[0], &stranger.url] {
        for m in 0..MODELS {
            let name = format!("model-{m:03}");
            who(u, "ci")?.post("/v1/models", &json!({"name": name, "domain": "bench"})).await?;
            release(u, &name, "v1").await?;
            release(u, &name, "v2").await?;
        }
    }
    let http = reqwest::Client::new();
    let sample = http
        .get(format!("{}/v1/resolve?ref=model-000@production&env=prod", urls[2]))
        .bearer_auth("tok-agent")
        .send()
        .await?
        .bytes()
        .await?;
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(bare, crate::bare_router(sample)).await });
    let addr = |u: &str| u.trim_start_matches("http://").to_owned();
    let variant = |name, addr| Variant { name, addr, tls: None, bearer: Some("tok-agent".into()) };
    println!(
        "## resolve on replica 3 ({conns} connections, {secs} s rounds): bare handler; others idle; replicas 1 and 2 taking writes; the same writes on another registry (control)\n"
    );
    println!(
        "| round | bare | others idle | 1 and 2 writing (writes/s) | stranger writing (writes/s) | idle / bare | writing / idle | stranger / idle |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let under = |writers_at: Vec<String>| {
        let three = urls[2].clone();
        async move {
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let tasks = writers(&writers_at, stop.clone(), done.clone());
            let t = Instant::now();
            let (busy, _) = load(&variant("busy", addr(&three)), MODELS, conns, secs).await?;
            stop.store(true, Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)]
            let wps = done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
            for task in tasks {
                let _ = task.await;
            }
            Ok::<_, anyhow::Error>((busy, wps))
        }
    };
    let mut sums = [0.0; 4];
    for round in 1..=rounds {
        let (b, _) = load(&variant("bare", bare_addr.clone()), MODELS, conns, secs).await?;
        let (idle, _) = load(&variant("idle", addr(&urls[2])), MODELS, conns, secs).await?;
        let (busy, wps) = under(urls[..2].to_vec()).await?;
        let (control, cps) = under(vec![stranger.url.clone(), stranger.url.clone()]).await?;
        println!(
            "| {round} | {b:.0}/s | {idle:.0}/s | {busy:.0}/s ({wps:.0}) | {control:.0}/s ({cps:.0}) | {:.1} % | {:.1} % | {:.1} % |",
            100.0 * idle / b,
            100.0 * busy / idle,
            100.0 * control / idle
        );
        for (s, v) in sums.iter_mut().zip([b, idle, busy, control]) {
            *s += v;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let [b, idle, busy, control] = sums.map(|s| s / rounds as f64);
    println!(
        "| mean | {b:.0}/s | {idle:.0}/s | {busy:.0}/s | {control:.0}/s | {:.1} % | {:.1} % | {:.1} % |\n",
        100.0 * idle / b,
        100.0 * busy / idle,
        100.0 * control / idle
    );
    drop(stranger);
    Ok(())
}
