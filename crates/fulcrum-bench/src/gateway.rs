//! The gateway's added latency: the same inference requests, over `conns` keep-alive
//! connections, sent straight to an upstream and through the gateway, in interleaved rounds
//! (direct, gateway, direct, gateway, …) so that the machine's drift hits both alike.
//!
//! Everything runs in this process on loopback: the registry (for the guard's permit), the
//! upstream (a fixed Open Inference Protocol answer, so the figures are the gateway's own cost,
//! not a model's), the gateway with its guard, and the load. On a 2-core machine they share the
//! cores, so the added figure includes the gateway's share of CPU under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use fulcrum_agent::fetch::Agent;
use fulcrum_agent::gateway::{Gateway, Protocol, Route};
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::state::StateDir;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::lab::{Lab, release, who};

const BODY: &str = r#"{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[0.5,-1.0,0.25,2.0]}]}"#;
const ANSWER: &str = r#"{"model_name":"bench","model_version":"v1","id":"0","parameters":{},"outputs":[{"name":"predict","shape":[1,1],"datatype":"INT64","parameters":{"content_type":"np"},"data":[1]}]}"#;

/// The upstream; `compute` is how long each answer takes (a model's inference time; zero: the
/// gateway's own cost alone).
async fn upstream(compute: Duration) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v2/models/{m}/versions/{v}/infer",
        axum::routing::post(move |_b: Bytes| async move {
            if !compute.is_zero() {
                tokio::time::sleep(compute).await;
            }
            ([("content-type", "application/json")], ANSWER)
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(url)
}

/// `conns` connections, each sending requests one after another for `secs`; latencies in µs.
/// With a `rate` (requests/s over all connections) the load is open: each connection sends on a
/// fixed schedule and a request's latency counts from when it was due (a late send counts as
/// waiting, so a slow path cannot hide its queue); without, each sends as soon as it can.
async fn load(addr: &str, path: &str, conns: usize, secs: f64, rate: Option<f64>) -> anyhow::Result<Vec<u32>> {
    load_body(addr, path, Bytes::from_static(BODY.as_bytes()), conns, secs, rate).await
}

/// [`load`] with another request body.
async fn load_body(
    addr: &str,
    path: &str,
    body: Bytes,
    conns: usize,
    secs: f64,
    rate: Option<f64>,
) -> anyhow::Result<Vec<u32>> {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    #[allow(clippy::cast_precision_loss)]
    let every = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (path, host, body) = (path.to_owned(), addr.to_owned(), body.clone());
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let offset = every.map(|e| e.mul_f64(tasks.len() as f64 / conns as f64));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut due = start + offset.unwrap_or_default();
            while Instant::now() < until {
                // On time: sleep until due and count from the actual send (the timer's own
                // lag is not the path's). Late (the previous answer came after this one was
                // due): send now and count from when it was due.
                let mut from = None;
                if every.is_some() {
                    if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                    } else {
                        from = Some(due);
                    }
                }
                let req = Request::post(&path)
                    .header("host", &host)
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let t = from.unwrap_or_else(Instant::now);
                if let Some(e) = every {
                    due += e;
                }
                let resp = send.send_request(req).await?;
                anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
                resp.into_body().collect().await?;
                lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok(lat)
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

fn pct(sorted: &[u32], q: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

pub async fn run(conns: &[usize], rates: &[f64], rounds: usize, secs: f64, compute_ms: u64) -> anyhow::Result<()> {
    let lab = Lab::start().await?;
    who(&lab.url, "ci")?.post("/v1/models", &json!({"name": "bench", "domain": "bench"})).await?;
    release(&lab.url, "bench", "v1").await?;
    let up = upstream(Duration::from_millis(compute_ms)).await?;
    let agent = Agent::new(
        who(&lab.url, "agent")?,
        lab.bundle.clone(),
        StateDir::open(&lab.dir.path().join("agent"))?,
        time::Duration::seconds(30),
        "gateway-bench".into(),
    );
    let guard =
        Arc::new(Guard::new(agent, "bench@production", "prod", Layout::Repository(lab.dir.path().join("repo"))));
    let g = guard.clone();
    tokio::spawn(async move { g.run(std::future::pending::<()>()).await });
    let gw = Arc::new(
        Gateway::new(vec![Route { alias: "production".into(), weight: 1, guard: guard.clone() }], &up, Protocol::Oip)
            .map_err(anyhow::Error::msg)?,
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gw_addr = l.local_addr()?.to_string();
    tokio::spawn(fulcrum_agent::gateway::serve(gw, l));
    let start = Instant::now();
    while !guard.is_ready() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the gateway's guard never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let up_addr = up.trim_start_matches("http://").to_owned();
    println!("| conns | load | path | requests | req/s | p50 | p90 | p99 | p99 added |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let direct_path = "/v2/models/bench/versions/v1/infer";
    for &c in conns {
        // Warm both paths (connections, pools, caches).
        load(&up_addr, direct_path, c, 1.0, None).await?;
        load(&gw_addr, "/v2/models/bench/infer", c, 1.0, None).await?;
        for rate in std::iter::once(None).chain(rates.iter().copied().map(Some)) {
            let (mut direct, mut through) = (vec![], vec![]);
            for _ in 0..rounds {
                direct.extend(load(&up_addr, direct_path, c, secs, rate).await?);
                through.extend(load(&gw_addr, "/v2/models/bench/infer", c, secs, rate).await?);
            }
            direct.sort_unstable();
            through.sort_unstable();
            #[allow(clippy::cast_precision_loss)]
            let per_s = |n: usize| n as f64 / (secs * rounds as f64);
            let added = pct(&through, 0.99) - pct(&direct, 0.99);
            let what = rate.map_or_else(|| "as fast as answered".to_owned(), |r| format!("{r:.0} req/s"));
            for (name, l) in [("direct", &direct), ("gateway", &through)] {
                println!(
                    "| {c} | {what} | {name} | {} | {:.0} | {:.3} ms | {:.3} ms | {:.3} ms | {} |",
                    l.len(),
                    per_s(l.len()),
                    pct(l, 0.5),
                    pct(l, 0.9),
                    pct(l, 0.99),
                    if name == "gateway" { format!("{added:+.3} ms") } else { String::new() }
                );
            }
        }
    }
    Ok(())
}

/// A gateway (with its guard, serving `model@production`) on a fresh loopback port.
async fn gateway_for(lab: &Lab, model: &str, up: &str) -> anyhow::Result<String> {
    let agent = Agent::new(
        who(&lab.url, "agent")?,
        lab.bundle.clone(),
        StateDir::open(&lab.dir.path().join(format!("agent-{model}")))?,
        time::Duration::seconds(30),
        format!("gateway-{model}"),
    );
    let guard = Arc::new(Guard::new(
        agent,
        &format!("{model}@production"),
        "prod",
        Layout::Repository(lab.dir.path().join(format!("repo-{model}"))),
    ));
    let g = guard.clone();
    tokio::spawn(async move { g.run(std::future::pending::<()>()).await });
    let gw = Arc::new(
        Gateway::new(vec![Route { alias: "production".into(), weight: 1, guard: guard.clone() }], up, Protocol::Oip)
            .map_err(anyhow::Error::msg)?,
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?.to_string();
    tokio::spawn(fulcrum_agent::gateway::serve(gw, l));
    let start = Instant::now();
    while !guard.is_ready() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the gateway's guard never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(addr)
}

/// What drift binning costs the gateway: the same 20-feature inference requests through a
/// gateway whose version has no reference profile and one whose version has a 20-feature profile
/// (10 quantile bins each), interleaved rounds; latency p50/p99 and the difference.
pub async fn drift(conns: usize, rounds: usize, secs: f64) -> anyhow::Result<()> {
    use fulcrum_core::drift::Profile;
    const FEATURES: usize = 20;
    let lab = Lab::start().await?;
    let ci = who(&lab.url, "ci")?;
    // A 20-feature sample; the profile reads each from a column of the one input tensor.
    let columns: Vec<(String, Vec<String>)> = (0..FEATURES)
        .map(|f| (format!("f{f}"), (0..1000).map(|i| ((i * (f + 7)) % 997).to_string()).collect()))
        .collect();
    let mut profile = Profile::build(&columns, 10)?;
    for (i, f) in profile.features.iter_mut().enumerate() {
        f.tensor = Some("input-0".into());
        f.column = Some(i);
    }
    let p = ci.upload_bytes(profile.to_bytes()).await?;
    for (model, with_profile) in [("plain", false), ("profiled", true)] {
        ci.post("/v1/models", &json!({"name": model, "domain": "bench"})).await?;
        let w = ci.upload_bytes(format!("weights {model}").into_bytes()).await?;
        let mut body = json!({"version": "v1", "files": [{"path": "weights.bin", "size": 7 + model.len() + 1, "digest": w.to_string()}],
                              "model_card": {"owner": "bench", "intended_use": "bench"}, "revalidate_by": "2099-01-01T00:00:00Z"});
        if with_profile {
            body["reference_profile"] = json!(p.to_string());
        }
        ci.post(&format!("/v1/models/{model}/versions"), &body).await?;
        crate::lab::approve(&lab.url, model, "v1").await?;
        who(&lab.url, "rm")?
            .put(&format!("/v1/models/{model}/aliases/production"), &json!({"version": "v1", "chg_id": "CHG-B"}))
            .await?;
    }
    let up = upstream(Duration::ZERO).await?;
    let plain = gateway_for(&lab, "plain", &up).await?;
    let profiled = gateway_for(&lab, "profiled", &up).await?;
    let row: Vec<f64> = (0..FEATURES).map(|f| (f * 37 % 997) as f64 + 0.5).collect();
    let body = Bytes::from(
        json!({"inputs": [{"name": "input-0", "shape": [1, FEATURES], "datatype": "FP64", "data": row}]}).to_string(),
    );
    println!(
        "## drift binning at the gateway: {FEATURES} features, {conns} connections, {rounds} × {secs} s interleaved\n"
    );
    println!("| gateway | requests | req/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (addr, m) in [(&plain, "plain"), (&profiled, "profiled")] {
        load_body(addr, &format!("/v2/models/{m}/infer"), body.clone(), conns, 1.0, None).await?;
    }
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..rounds {
        a.extend(load_body(&plain, "/v2/models/plain/infer", body.clone(), conns, secs, None).await?);
        b.extend(load_body(&profiled, "/v2/models/profiled/infer", body.clone(), conns, secs, None).await?);
    }
    a.sort_unstable();
    b.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let per_s = |n: usize| n as f64 / (secs * rounds as f64);
    for (name, l) in [("no profile", &a), ("20-feature profile", &b)] {
        println!("| {name} | {} | {:.0} | {:.3} ms | {:.3} ms |", l.len(), per_s(l.len()), pct(l, 0.5), pct(l, 0.99));
    }
    println!(
        "\nadded by binning: p50 {:+.3} ms, p99 {:+.3} ms; throughput {:.1} % of the plain gateway",
        pct(&b, 0.5) - pct(&a, 0.5),
        pct(&b, 0.99) - pct(&a, 0.99),
        100.0 * b.len() as f64 / a.len() as f64
    );
    Ok(())
}
