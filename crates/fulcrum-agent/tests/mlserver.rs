//! Both seed flows end to end with a real model server: the registry, the agent's gateway and
//! guard, and Seldon MLServer (Open Inference Protocol, sklearn runtime) on loopback.
//!
//! - Promotion → Deploy: the alias moves to v2; the guard verifies and places it beside v1 in the
//!   model repository, tells MLServer to `load`, and inference answers with v2 (its predictions,
//!   not only its label).
//! - Revocation → Rollback: v2 is revoked while callers call; from the quiesce point no request is
//!   answered by v2 (503 instead), v2's folder leaves the repository and MLServer drops it, and
//!   v1 answers again.
//!
//! MLServer is installed by `scripts/test.sh` (`FULCRUM_MLSERVER`); under `CI=true` its absence
//! fails the suite.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{agent, as_, register_as, registry};
use fulcrum_agent::gateway::{Gateway, Protocol, Route};
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::oip::Oip;
use fulcrum_testkit::mlserver::{self, infer, start as start_mlserver, train};
use serde_json::{Value, json};

/// Run `g` (it follows the registry until the test ends).
fn follow(g: Guard) -> Arc<Guard> {
    let guard = Arc::new(g);
    let run = guard.clone();
    tokio::spawn(async move { run.run(std::future::pending::<()>()).await });
    guard
}

/// A gateway for `routes` in front of the model server at `upstream`, on a loopback port: the
/// gateway and its URL.
async fn front(routes: Vec<Route>, upstream: &str) -> (Arc<Gateway>, String) {
    let gw = Arc::new(Gateway::new(routes, upstream, Protocol::Oip).unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(fulcrum_agent::gateway::serve(gw.clone(), l));
    (gw, url)
}

fn as_refs(v: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    v.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect()
}

fn prediction(v: &Value) -> Option<(String, Vec<i64>)> {
    let data = v["outputs"][0]["data"].as_array()?.iter().filter_map(Value::as_i64).collect();
    Some((v["model_version"].as_str()?.to_owned(), data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_deploys_and_revocation_rolls_back_on_a_real_model_server() {
    let Some(bin) = mlserver::bin() else { return };
    let python = bin.with_file_name("python");
    let work = tempfile::tempdir().unwrap();
    let v1 = train(&python, &work.path().join("train/1"), "1", false);
    let v2 = train(&python, &work.path().join("train/2"), "2", true);

    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let card = json!({"owner": "fraud", "intended_use": "scoring"});
    register_as(&r, "fraud", "1", &as_refs(&v1), card.clone(), "production").await;

    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let server = start_mlserver(&bin, &repo, &work.path().join("mlserver.log")).await;
    let mut g = Guard::new(
        agent(&r, &work.path().join("state")).await,
        "fraud@production",
        "prod",
        Layout::Repository(repo.clone()),
    );
    g.oip = Some(Oip::new(&server.url).unwrap());
    g.reload_jitter = Duration::from_millis(200);
    let guard = follow(g);
    let (_gw, url) =
        front(vec![Route { alias: "production".into(), weight: 1, guard: guard.clone() }], &server.url).await;
    let http = reqwest::Client::new();
    let wait_for = |want: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let start = Instant::now();
            loop {
                let (s, v) = infer(&http, &url).await;
                if s == 200 && v["model_version"] == want {
                    return v;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "never served {want}: last {s} {v}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Start: v1 is the permitted version, and it is what answers.
    let v = wait_for("1").await;
    assert_eq!(prediction(&v), Some(("1".into(), vec![1, 0])), "{v}");

    // Promotion → Deploy: v2 approved and the alias moved; the guard loads it beside v1, then
    // retires v1; inference answers with v2's predictions.
    register_as(&r, "fraud", "2", &as_refs(&v2), card, "production").await;
    let v = wait_for("2").await;
    assert_eq!(prediction(&v), Some(("2".into(), vec![0, 1])), "{v}");
    let start = Instant::now();
    while repo.join("fraud/1").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "v1 never left the repository");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The model server no longer holds v1 either (the agent's `load` dropped it).
    let held = |v: &'static str| {
        let (http, base) = (http.clone(), server.url.clone());
        async move {
            http.get(format!("{base}/v2/models/fraud/versions/{v}/ready")).send().await.unwrap().status().is_success()
        }
    };
    assert!(held("2").await && !held("1").await);

    // Revocation → Rollback while callers call.
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = vec![];
    for _ in 0..2 {
        let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut seen = vec![];
            while !stop.load(Ordering::SeqCst) {
                let sent = time::OffsetDateTime::now_utc();
                let (s, v) = infer(&http, &url).await;
                seen.push((sent, s, prediction(&v), v["code"].as_str().map(str::to_owned)));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/2/revocation", &json!({"reason": "drift", "inc_id": "INC-11"}))
        .await
        .unwrap();
    let _ = wait_for("1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = vec![];
    for c in callers {
        seen.extend(c.await.unwrap());
    }
    let timeline = guard.timeline();
    let quiesce = timeline.iter().find(|s| s.step == "quiesce").expect("a quiesce step").at;
    let after: Vec<_> = seen.iter().filter(|(at, ..)| *at > quiesce).collect();
    assert!(
        after.iter().all(|(_, s, p, c)| (*s == 200 && p.as_ref().is_some_and(|(v, d)| v == "1" && d == &[1, 0]))
            || (*s == 503 && c.as_deref() == Some("quiesced"))),
        "after the quiesce point only 503 or v1: {after:?}"
    );
    assert!(seen.iter().any(|(at, s, p, _)| *at < quiesce && *s == 200 && p.as_ref().is_some_and(|(v, _)| v == "2")));
    assert!(seen.iter().any(|(_, s, ..)| *s == 503), "the quiesce was visible as 503");
    assert!(!repo.join("fraud/2").exists(), "the revoked version's files are purged");
    assert!(held("1").await && !held("2").await, "MLServer dropped the revoked version");
    let steps: Vec<&str> = timeline.iter().map(|s| s.step).collect();
    let from = steps.iter().position(|s| *s == "quiesce").unwrap();
    assert_eq!(&steps[from..from + 6], ["quiesce", "purge", "unload", "reload", "permit", "load"], "{steps:?}");
    drop(server);
}

/// The training sample's columns as `fulcrum profile build` reads them (header row, commas).
fn columns(csv: &str) -> Vec<(String, Vec<String>)> {
    let mut lines = csv.lines();
    let names: Vec<String> = lines.next().unwrap().split(',').map(|s| s.trim().to_owned()).collect();
    let mut cols: Vec<(String, Vec<String>)> = names.into_iter().map(|n| (n, vec![])).collect();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        for (c, cell) in cols.iter_mut().zip(l.split(',')) {
            c.1.push(cell.trim().to_owned());
        }
    }
    cols
}

/// Standard normal draws (Box–Muller over a fixed LCG: the same inputs every run).
fn normals(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (next(), next());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

/// Drift with a real model server: the version is registered with a reference profile built from
/// its training sample (its four features are columns of the one input tensor); traffic drawn
/// like the training data through the gateway to MLServer keeps every feature's PSI under 0.1;
/// shifting one feature takes its PSI over 0.25 and the registry raises `drift_detected` naming
/// it, and only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_of_live_inputs_against_the_training_profile_on_a_real_model_server() {
    let Some(bin) = mlserver::bin() else { return };
    let python = bin.with_file_name("python");
    let work = tempfile::tempdir().unwrap();
    let files = train(&python, &work.path().join("train/1"), "1", false);
    let csv = std::fs::read_to_string(work.path().join("train/1/train.csv")).unwrap();
    let mut profile = fulcrum_core::drift::Profile::build(&columns(&csv), 10).unwrap();
    for (i, f) in profile.features.iter_mut().enumerate() {
        f.tensor = Some("input-0".into());
        f.column = Some(i);
    }
    profile.check().unwrap();

    let r = registry().await;
    let ci = as_(&r, "ci");
    ci.post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let p = ci.upload_bytes(profile.to_bytes()).await.unwrap();
    let mut entries = vec![];
    for (path, bytes) in &files {
        let d = ci.upload_bytes(bytes.clone()).await.unwrap();
        entries.push(json!({"path": path, "size": bytes.len(), "digest": d.to_string()}));
    }
    ci.post(
        "/v1/models/fraud/versions",
        &json!({"version": "1", "files": entries, "model_card": {"owner": "fraud", "intended_use": "scoring"},
                "revalidate_by": "2099-01-01T00:00:00Z", "reference_profile": p.to_string()}),
    )
    .await
    .unwrap();
    let v = "/v1/models/fraud/versions/1";
    as_(&r, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
    as_(&r, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(&r, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(&r, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-T"})).await.unwrap();
    as_(&r, "rm")
        .put("/v1/models/fraud/aliases/production", &json!({"version": "1", "chg_id": "CHG-1"}))
        .await
        .unwrap();

    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let server = start_mlserver(&bin, &repo, &work.path().join("mlserver.log")).await;
    let mut g =
        Guard::new(agent(&r, &work.path().join("state")).await, "fraud@production", "prod", Layout::Repository(repo));
    g.oip = Some(Oip::new(&server.url).unwrap());
    let guard = follow(g);
    let (gw, url) =
        front(vec![Route { alias: "production".into(), weight: 1, guard: guard.clone() }], &server.url).await;
    let reporter = Arc::new(fulcrum_agent::report::Reporter::start(as_(&r, "agent")));
    tokio::spawn(gw.clone().report(reporter, Duration::from_secs(1)));
    let start = Instant::now();
    while !guard.is_ready() || guard.serving().is_none_or(|s| s.profile.is_none()) {
        assert!(start.elapsed() < Duration::from_secs(60), "the guard never served v1 with its profile");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let http = reqwest::Client::new();
    let psi = async |feature: &str| -> Option<f64> {
        let m = http.get(format!("{}/metrics", r.url)).send().await.ok()?.text().await.ok()?;
        let prefix = format!(
            r#"fulcrum_version_drift_psi{{tenant="acme",model="fraud",version="1",alias="production",env="prod",feature="{feature}"}} "#
        );
        m.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok())
    };
    let values = async |feature: &str| -> f64 {
        let m = http.get(format!("{}/metrics", r.url)).send().await.unwrap().text().await.unwrap();
        let prefix = format!(
            r#"fulcrum_version_drift_values{{tenant="acme",model="fraud",version="1",alias="production",env="prod",feature="{feature}",outcome="binned"}} "#
        );
        m.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    // Batches of 10 rows through the gateway to MLServer; `shift` moves feature f1.
    let send = async |seed: u64, batches: usize, shift: f64| {
        for b in 0..batches {
            let mut data = normals(seed * 1000 + b as u64, 40);
            for row in 0..10 {
                data[row * 4 + 1] += shift;
            }
            let body = json!({"inputs": [{"name": "input-0", "shape": [10, 4], "datatype": "FP64", "data": data}]});
            let r = http.post(format!("{url}/v2/models/fraud/infer")).json(&body).send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["outputs"][0]["data"].as_array().map(Vec::len), Some(10), "MLServer answered every row: {v}");
        }
    };
    let settle = async |n: f64| {
        let start = Instant::now();
        while values("f0").await < n || values("f1").await < n {
            assert!(start.elapsed() < Duration::from_secs(20), "the registry never counted {n} inputs per feature");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    send(1, 150, 0.0).await;
    settle(1500.0).await;
    for f in ["f0", "f1", "f2", "f3"] {
        let v = psi(f).await.unwrap();
        assert!(v < 0.1, "{f}: like the training data, PSI {v}");
    }
    send(2, 150, 3.0).await;
    settle(3000.0).await;
    let shifted = psi("f1").await.unwrap();
    assert!(shifted > 0.25, "f1 shifted: PSI {shifted}");
    for f in ["f0", "f2", "f3"] {
        let v = psi(f).await.unwrap();
        assert!(v < 0.1, "{f} did not move: PSI {v}");
    }
    let start = Instant::now();
    loop {
        let page = as_(&r, "rm").get("/v1/events?model=fraud&types=drift_detected&limit=1000").await.unwrap();
        let features: Vec<&str> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["drift"]["feature"].as_str().unwrap())
            .collect();
        if !features.is_empty() {
            assert_eq!(features, ["f1"]);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no drift_detected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("PSI of f1 after the shift: {shifted:.3}");
    drop(server);
}

/// Canary and production side by side on a real model server: two guards place v1 and v2 in one
/// model repository, the gateway splits traffic 80/20, and the registry's per-version series show
/// each alias with its own requests and latency histogram (from the gateway's reports).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_and_production_each_have_their_own_series_on_a_real_model_server() {
    let Some(bin) = mlserver::bin() else { return };
    let python = bin.with_file_name("python");
    let work = tempfile::tempdir().unwrap();
    let v1 = train(&python, &work.path().join("train/1"), "1", false);
    let v2 = train(&python, &work.path().join("train/2"), "2", true);
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let card = json!({"owner": "fraud", "intended_use": "scoring"});
    register_as(&r, "fraud", "1", &as_refs(&v1), card.clone(), "production").await;
    register_as(&r, "fraud", "2", &as_refs(&v2), card, "canary").await;

    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let server = start_mlserver(&bin, &repo, &work.path().join("mlserver.log")).await;
    let mut routes = vec![];
    for (alias, weight) in [("production", 80), ("canary", 20)] {
        let mut g = Guard::new(
            agent(&r, &work.path().join(format!("state-{alias}"))).await,
            &format!("fraud@{alias}"),
            "prod",
            Layout::Repository(repo.clone()),
        );
        g.oip = Some(Oip::new(&server.url).unwrap());
        routes.push(Route { alias: alias.into(), weight, guard: follow(g) });
    }
    let (gw, url) = front(routes, &server.url).await;
    let reporter = Arc::new(fulcrum_agent::report::Reporter::start(as_(&r, "agent")));
    tokio::spawn(gw.clone().report(reporter, Duration::from_secs(1)));
    let start = Instant::now();
    while !gw.routes().iter().all(|r| r.guard.is_ready()) {
        assert!(start.elapsed() < Duration::from_secs(60), "the guards never served both versions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    let mut answered = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..200 {
        let (s, v) = infer(&http, &url).await;
        assert_eq!(s, 200, "{v}");
        let (version, data) = prediction(&v).unwrap();
        assert_eq!(data, if version == "1" { vec![1, 0] } else { vec![0, 1] }, "each version answers its own way");
        *answered.entry(version).or_default() += 1;
    }
    assert!(answered["1"] > answered["2"] && answered["2"] > 0, "{answered:?}");
    // The registry's series, per alias, add up to what each version answered.
    let start = Instant::now();
    loop {
        let m = http.get(format!("{}/metrics", r.url)).send().await.unwrap().text().await.unwrap();
        let count = |alias: &str, version: &str| -> Option<u64> {
            let prefix = format!(
                r#"fulcrum_version_latency_seconds_count{{tenant="acme",model="fraud",version="{version}",alias="{alias}",env="prod"}} "#
            );
            m.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok())
        };
        if count("production", "1") == Some(answered["1"]) && count("canary", "2") == Some(answered["2"]) {
            assert!(m.contains(
                r#"fulcrum_version_errors_total{tenant="acme",model="fraud",version="2",alias="canary",env="prod"} 0"#
            ));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "series never matched {answered:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
}
