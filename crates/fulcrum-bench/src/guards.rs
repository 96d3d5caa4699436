//! Revocation → quiesced, for many guards at once: a registry in this process (loopback HTTP,
//! its own SQLite and key), N guards on one model's alias, each with its own state and event
//! stream. T0 is just before the revocation call; each guard's time is when it went not-ready.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fulcrum_agent::fetch::Agent;
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::state::StateDir;
use fulcrum_client::Client;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_server::auth::{TokenEntry, TokensFile};
use fulcrum_server::{Config, Registry};
use serde_json::json;
use time::OffsetDateTime;

const PEOPLE: &[(&str, Role, Option<Env>)] = &[
    ("ci", Role::Publisher, None),
    ("rm", Role::ReleaseManager, None),
    ("ana", Role::Approver, None),
    ("bo", Role::SecurityOfficer, None),
    ("agent", Role::Serving, Some(Env::Prod)),
];

fn who(url: &str, w: &str) -> anyhow::Result<Client> {
    Ok(Client::new(url, Some(format!("tok-{w}")))?)
}

async fn release(url: &str, model: &str, version: &str) -> anyhow::Result<()> {
    let ci = who(url, "ci")?;
    let bytes = format!("{model}-{version}").into_bytes();
    let n = bytes.len();
    let d = ci.upload_bytes(bytes).await?;
    ci.post(
        &format!("/v1/models/{model}/versions"),
        &json!({"version": version, "files": [{"path": "weights.bin", "size": n, "digest": d.to_string()}],
                "model_card": {"owner": "bench", "intended_use": "bench"}, "revalidate_by": "2099-01-01T00:00:00Z"}),
    )
    .await?;
    let v = format!("/v1/models/{model}/versions/{version}");
    who(url, "rm")?.post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await?;
    who(url, "ana")?.post(&format!("{v}/approvals"), &json!({})).await?;
    who(url, "bo")?.post(&format!("{v}/approvals"), &json!({})).await?;
    who(url, "rm")?.post(&format!("{v}/promotions"), &json!({"to": "Approved"})).await?;
    who(url, "rm")?
        .put(&format!("/v1/models/{model}/aliases/production"), &json!({"version": version, "chg_id": "CHG-B"}))
        .await?;
    Ok(())
}

pub async fn run(counts: &[usize]) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let tokens = TokensFile {
        tokens: PEOPLE
            .iter()
            .map(|(w, role, env)| TokenEntry {
                token: Some(format!("tok-{w}")),
                token_sha256: None,
                subject: (*w).into(),
                role: *role,
                tenant: "bench".into(),
                domain: "*".into(),
                env: *env,
                purpose: None,
            })
            .collect(),
    };
    tokens.write_new(&dir.path().join("tokens.json"))?;
    let mut config = Config::new(dir.path().join("data"));
    config.tokens_file = Some(dir.path().join("tokens.json"));
    let (state, _) = Registry::open_default(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(fulcrum_server::serve(state, listener, std::future::pending()));
    let bundle = who(&url, "agent")?.trust_bundle().await?;

    println!("| guards | quiesced | p50 | p99 | max | all rolled back |");
    println!("|---|---|---|---|---|---|");
    for &n in counts {
        let model = format!("bench-{n}");
        who(&url, "ci")?.post("/v1/models", &json!({"name": model, "domain": "bench"})).await?;
        release(&url, &model, "v1").await?;
        release(&url, &model, "v2").await?;
        let reference = format!("{model}@production");
        let mut guards = Vec::with_capacity(n);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        for i in 0..n {
            let state = StateDir::open(&dir.path().join(format!("agents/{n}/{i}")))?;
            let agent = Agent {
                client: who(&url, "agent")?,
                bundle: bundle.clone(),
                state,
                max_skew: time::Duration::seconds(30),
                name: format!("guard-{i}"),
            };
            let g = Arc::new(Guard::new(
                agent,
                &reference,
                "prod",
                Layout::Dir(dir.path().join(format!("models/{n}/{i}"))),
            ));
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
        who(&url, "rm")?
            .post(&format!("/v1/models/{model}/versions/v2/revocation"), &json!({"reason": "bench", "inc_id": "INC-B"}))
            .await
            .context("revoking")?;
        let wait = Instant::now();
        let quiesced = |g: &Guard| g.timeline().iter().find(|s| s.step == "quiesce" && s.at >= t0).map(|s| s.at);
        while guards.iter().any(|g| quiesced(g).is_none()) {
            anyhow::ensure!(wait.elapsed() < Duration::from_secs(60), "not every guard quiesced within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut lat: Vec<Duration> =
            guards.iter().map(|g| (quiesced(g).expect("checked") - t0).unsigned_abs()).collect();
        lat.sort();
        while guards.iter().any(|g| !g.is_ready() || g.loaded().is_none_or(|d| d.version != "v1")) {
            anyhow::ensure!(wait.elapsed() < Duration::from_secs(120), "not every guard rolled back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rolled = wait.elapsed();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "| {n} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} s |",
            lat.len(),
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            lat[lat.len() - 1].as_secs_f64() * 1e3,
            rolled.as_secs_f64()
        );
        let _ = stop_tx.send(true);
    }
    Ok(())
}
