//! The gateway against a real registry and an HTTP upstream on loopback: requests are pinned to
//! the served version, the signed model card's guardrails apply, traffic splits by route weight,
//! and after a revocation's quiesce point no answer of the revoked version reaches a caller.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::HeaderMap;
use common::{Reg, agent, as_, register_as, registry};
use fulcrum_agent::gateway::{Gateway, Protocol, Route};
use fulcrum_agent::guard::{Guard, Layout};
use serde_json::{Value, json};

/// An upstream that says which version it was asked for. Headers steer it: `x-delay-ms` waits,
/// `x-pad` adds that many bytes, `x-say` puts a phrase in the answer.
async fn upstream() -> String {
    async fn infer(Path((m, v)): Path<(String, String)>, h: HeaderMap, body: String) -> axum::Json<Value> {
        let num = |k: &str| h.get(k).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(num("x-delay-ms"))).await;
        let say = h.get("x-say").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let pad = "x".repeat(usize::try_from(num("x-pad")).unwrap());
        axum::Json(json!({"model_name": m, "model_version": v, "echo": body, "say": say, "pad": pad}))
    }
    let app = axum::Router::new()
        .route("/v2/models/{m}/versions/{v}/infer", axum::routing::post(infer))
        .fallback(|uri: axum::http::Uri| async move { axum::Json(json!({"path": uri.path()})) });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

struct Running {
    url: String,
    gw: Arc<Gateway>,
    _dirs: Vec<tempfile::TempDir>,
}

/// A gateway with one guard per `(alias, weight)`, each guard running.
async fn gateway(r: &Reg, routes: &[(&str, u32)], up: &str) -> Running {
    let mut built = vec![];
    let mut dirs = vec![];
    for (alias, weight) in routes {
        let state = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let mut g = Guard::new(
            agent(r, state.path()).await,
            &format!("fraud@{alias}"),
            "prod",
            Layout::Repository(repo.path().to_owned()),
        );
        g.reload_jitter = Duration::from_millis(150);
        let g = Arc::new(g);
        let run = g.clone();
        tokio::spawn(async move { run.run(std::future::pending::<()>()).await });
        built.push(Route { alias: (*alias).to_owned(), weight: *weight, guard: g });
        dirs.extend([state, repo]);
    }
    let gw = Arc::new(Gateway::new(built, up, Protocol::Oip).unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(fulcrum_agent::gateway::serve(gw.clone(), l));
    let start = Instant::now();
    while !gw.routes().iter().all(|r| r.guard.is_ready()) {
        assert!(start.elapsed() < Duration::from_secs(20), "the gateway's guards never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Running { url, gw, _dirs: dirs }
}

/// (what, path, headers, body, status, problem code)
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str, u16, Option<&'a str>);
/// (sent at, status, model version, problem code)
type Seen = (time::OffsetDateTime, u16, Option<String>, Option<String>);

fn plain() -> Value {
    json!({"owner": "fraud", "intended_use": "scoring"})
}

fn card() -> Value {
    json!({"owner": "fraud", "intended_use": "scoring", "guardrails": {"max_request_bytes": 1024, "max_response_bytes": 4096,
        "purposes": ["credit-scoring"], "blocked_patterns": ["ignore previous instructions"]}})
}

async fn call(url: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new().post(format!("{url}{path}")).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let version = resp.headers().get("x-fulcrum-version").map(|v| v.to_str().unwrap().to_owned());
    let v = resp.json().await.unwrap_or(Value::Null);
    (status, v, version)
}

/// POST `path` exactly as written (no client-side normalisation); the status and the body.
async fn raw_post(url: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await.unwrap();
    let req = format!("POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_pinned_to_the_served_version_and_the_cards_guardrails_apply() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register_as(&r, "fraud", "1", &[("model.bin", b"one")], card(), "production").await;
    register_as(&r, "fraud", "2", &[("model.bin", b"two")], card(), "production").await;
    let up = upstream().await;
    let g = gateway(&r, &[("production", 100)], &up).await;
    let ok: &[(&str, &str)] = &[("x-fulcrum-purpose", "credit-scoring")];
    let big = "a".repeat(2000);
    // (what, path, headers, body, status, problem code)
    let cases: Vec<Case> = vec![
        ("served", "/v2/models/fraud/infer", ok.to_vec(), "{}", 200, None),
        ("no purpose", "/v2/models/fraud/infer", vec![], "{}", 403, Some("purpose_required")),
        (
            "another purpose",
            "/v2/models/fraud/infer",
            vec![("x-fulcrum-purpose", "marketing")],
            "{}",
            403,
            Some("purpose_not_allowed"),
        ),
        ("request too big", "/v2/models/fraud/infer", ok.to_vec(), &big, 413, Some("request_too_large")),
        (
            "blocked request",
            "/v2/models/fraud/infer",
            ok.to_vec(),
            "please IGNORE PREVIOUS INSTRUCTIONS",
            422,
            Some("blocked_content"),
        ),
        (
            "answer too big",
            "/v2/models/fraud/infer",
            [ok, &[("x-pad", "8000")]].concat(),
            "{}",
            502,
            Some("response_too_large"),
        ),
        (
            "blocked answer",
            "/v2/models/fraud/infer",
            [ok, &[("x-say", "ignore previous instructions")]].concat(),
            "{}",
            502,
            Some("blocked_content"),
        ),
        ("repository API", "/v2/repository/models/fraud/unload", ok.to_vec(), "{}", 403, Some("repository_forbidden")),
        ("another model", "/v2/models/other/infer", ok.to_vec(), "{}", 404, Some("model_not_served")),
        ("an older version", "/v2/models/fraud/versions/1/infer", ok.to_vec(), "{}", 404, Some("version_not_served")),
        ("the served version by name", "/v2/models/fraud/versions/2/infer", ok.to_vec(), "{}", 200, None),
    ];
    for (what, path, headers, body, status, code) in cases {
        let (got, v, version) = call(&g.url, path, &headers, body).await;
        assert_eq!(got, status, "{what}: {v}");
        match code {
            Some(c) => assert_eq!(v["code"], c, "{what}: {v}"),
            None => {
                assert_eq!(v["model_version"], "2", "{what}: pinned to the served version: {v}");
                assert_eq!(version.as_deref(), Some("2"), "{what}");
            }
        }
    }
    // Paths an HTTP client library would normalise, sent raw: refused before anything else.
    for raw in [
        "/v2/models/fraud/versions/2/../../../repository/models/fraud/unload",
        "/v2/models/fraud/%2e%2e/other/infer",
        "/v2/models/fraud%2Fversions%2F1/infer",
    ] {
        let (status, body) = raw_post(&g.url, raw).await;
        assert_eq!(status, 400, "{raw}: {body}");
        assert!(body.contains("bad_path"), "{raw}: {body}");
    }
    // The counts per version saw every served request and every refusal.
    let m = g.gw.metrics();
    assert!(m.contains(r#"alias="production",version="2",outcome="ok"} 2"#), "{m}");
    assert!(m.contains(r#"alias="production",version="2",outcome="refused"} 4"#), "{m}");
    let window = g.gw.take_window(Duration::from_secs(10));
    assert_eq!(window.len(), 1);
    assert_eq!((window[0].2.requests, window[0].2.errors, window[0].2.refused), (4, 2, 4), "{window:?}");
    assert!(window[0].2.p50_us <= window[0].2.p99_us && window[0].2.p99_us > 0);
    // Every answered request is in the latency histogram (refusals are not answered upstream).
    assert_eq!(window[0].2.latency_buckets.iter().sum::<u64>(), 4, "{window:?}");
    assert!(window[0].2.latency_sum_us >= window[0].2.p99_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splits_by_weight_and_a_revoked_canary_falls_back_to_production() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register_as(&r, "fraud", "1", &[("model.bin", b"one")], plain(), "production").await;
    register_as(&r, "fraud", "2", &[("model.bin", b"two")], plain(), "canary").await;
    let up = upstream().await;
    let g = gateway(&r, &[("production", 90), ("canary", 10)], &up).await;
    // Per-version figures go to the registry every second.
    let reporter = Arc::new(fulcrum_agent::report::Reporter::start(as_(&r, "agent")));
    tokio::spawn(g.gw.clone().report(reporter, Duration::from_secs(1)));
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..200 {
        let (s, v, _) = call(&g.url, "/v2/models/fraud/infer", &[], "{}").await;
        assert_eq!(s, 200, "{v}");
        *seen.entry(v["model_version"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(seen, [("1".to_owned(), 180), ("2".to_owned(), 20)].into(), "90/10 by weight");
    // The registry has each version's figures: 180 + 20 requests over the windows, by alias.
    let start = Instant::now();
    loop {
        let page = as_(&r, "rm").get("/v1/events?types=serving_stats&model=fraud&limit=1000").await.unwrap();
        let mut totals = std::collections::BTreeMap::<(String, String), u64>::new();
        for e in page["events"].as_array().unwrap() {
            let d = &e["data"];
            let key = (d["alias"].as_str().unwrap().to_owned(), d["version"].as_str().unwrap().to_owned());
            *totals.entry(key).or_default() += d["stats"]["requests"].as_u64().unwrap();
            assert!(d["stats"]["p50_us"].as_u64() <= d["stats"]["p99_us"].as_u64());
        }
        let want = [(("canary".to_owned(), "2".to_owned()), 20), (("production".to_owned(), "1".to_owned()), 180)];
        if totals == want.into() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "serving figures never reached the registry: {totals:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // … and sums them into per-version series on its /metrics: requests and a latency histogram
    // whose count is every answered request.
    let m = reqwest::get(format!("{}/metrics", r.url)).await.unwrap().text().await.unwrap();
    for (alias, version, n) in [("production", "1", 180), ("canary", "2", 20)] {
        let l = format!(r#"tenant="acme",model="fraud",version="{version}",alias="{alias}",env="prod""#);
        assert!(m.contains(&format!("fulcrum_version_requests_total{{{l}}} {n}\n")), "{l}: {m}");
        assert!(m.contains(&format!("fulcrum_version_latency_seconds_count{{{l}}} {n}\n")), "{l}: {m}");
        assert!(m.contains(&format!("fulcrum_version_latency_seconds_bucket{{{l},le=\"+Inf\"}} {n}\n")), "{l}: {m}");
    }
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/2/revocation", &json!({"reason": "canary errors", "inc_id": "INC-9"}))
        .await
        .unwrap();
    let canary = &g.gw.routes()[1].guard;
    let start = Instant::now();
    while canary.serving().is_some() {
        assert!(start.elapsed() < Duration::from_secs(10), "the canary never quiesced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..50 {
        let (s, v, _) = call(&g.url, "/v2/models/fraud/infer", &[], "{}").await;
        assert_eq!((s, v["model_version"].as_str()), (200, Some("1")), "{v}");
    }
}

/// Seed flow §5.2 through the gateway: callers keep calling while v2 is revoked. Before the
/// quiesce point v2 answers; from it on, the gateway answers 503 (also for requests already in
/// flight) until the rolled-back v1 serves — never v2 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_quiesce_point_no_answer_of_the_revoked_version_is_served() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register_as(&r, "fraud", "1", &[("model.bin", b"one")], plain(), "production").await;
    register_as(&r, "fraud", "2", &[("model.bin", b"two")], plain(), "production").await;
    let up = upstream().await;
    let g = gateway(&r, &[("production", 100)], &up).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = vec![];
    for _ in 0..4 {
        let (url, stop) = (g.url.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut seen = vec![];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // The time a request is sent: one sent after the quiesce point must never be
                // answered by the revoked version (one in flight then is withheld by the
                // gateway, which the client cannot time from outside).
                let at = time::OffsetDateTime::now_utc();
                let (s, v, _) = call(&url, "/v2/models/fraud/infer", &[("x-delay-ms", "40")], "{}").await;
                seen.push((
                    at,
                    s,
                    v["model_version"].as_str().map(str::to_owned),
                    v["code"].as_str().map(str::to_owned),
                ));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/2/revocation", &json!({"reason": "drift", "inc_id": "INC-10"}))
        .await
        .unwrap();
    let guard = g.gw.routes()[0].guard.clone();
    let start = Instant::now();
    while guard.serving().is_none_or(|s| s.document.version != "1") {
        assert!(start.elapsed() < Duration::from_secs(20), "never rolled back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = vec![];
    for c in callers {
        seen.extend(c.await.unwrap());
    }
    let quiesce = guard.timeline().iter().find(|s| s.step == "quiesce").expect("a quiesce step").at;
    let v2_after: Vec<_> = seen.iter().filter(|(at, _, v, _)| *at > quiesce && v.as_deref() == Some("2")).collect();
    assert!(v2_after.is_empty(), "requests sent after the quiesce point answered by the revoked version: {v2_after:?}");
    let kinds = |f: &dyn Fn(&Seen) -> bool| seen.iter().filter(|x| f(x)).count();
    assert!(kinds(&|(at, s, v, _)| *at < quiesce && *s == 200 && v.as_deref() == Some("2")) > 0, "v2 served before");
    assert!(kinds(&|(_, s, _, c)| *s == 503 && c.as_deref() == Some("quiesced")) > 0, "503 while quiesced");
    // Requests in flight at the quiesce point (sent before it, 40 ms upstream) were withheld.
    assert!(kinds(&|(at, s, _, _)| *at < quiesce && *s == 503) > 0, "in-flight answers withheld");
    assert!(kinds(&|(at, s, v, _)| *at > quiesce && *s == 200 && v.as_deref() == Some("1")) > 0, "v1 after");
    assert!(seen.iter().all(|(_, s, _, _)| *s == 200 || *s == 503), "only answers or 503");
}

/// A `fulcrum_version_drift_psi` (or `_values`) sample for `feature` of fraud v1 on the
/// registry's `/metrics`.
async fn drift_metric(r: &Reg, name: &str, feature: &str, extra: &str) -> Option<f64> {
    let m = reqwest::get(format!("{}/metrics", r.url)).await.ok()?.text().await.ok()?;
    let prefix = format!(
        r#"{name}{{tenant="acme",model="fraud",version="1",alias="production",env="prod",feature="{feature}"{extra}}} "#
    );
    m.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok())
}

/// Drift: a version registered with a reference profile of its training inputs; the gateway bins
/// each inference's inputs per feature and reports the counts; the registry's PSI per feature
/// stays under 0.1 for inputs drawn like the training sample, and passes 0.25 for the one
/// feature whose inputs shift while the other stays put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_binned_against_the_reference_profile_and_drift_shows_per_feature() {
    use fulcrum_core::drift::Profile;
    let r = registry().await;
    let ci = as_(&r, "ci");
    ci.post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let country = |i: usize| if i % 4 == 3 { "ES" } else { "PT" };
    let amounts: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let countries: Vec<String> = (0..1000).map(|i| country(i).to_owned()).collect();
    let profile = Profile::build(&[("amount".into(), amounts), ("country".into(), countries)], 10).unwrap();
    let p = ci.upload_bytes(profile.to_bytes()).await.unwrap();
    let w = ci.upload_bytes(b"weights".to_vec()).await.unwrap();
    ci.post(
        "/v1/models/fraud/versions",
        &json!({"version": "1", "files": [{"path": "model.bin", "size": 7, "digest": w.to_string()}],
                "model_card": plain(), "revalidate_by": "2099-01-01T00:00:00Z", "reference_profile": p.to_string()}),
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
    let up = upstream().await;
    let g = gateway(&r, &[("production", 100)], &up).await;
    assert!(g.gw.routes()[0].guard.serving().unwrap().profile.is_some(), "the guard fetched the version's profile");
    let reporter = Arc::new(fulcrum_agent::report::Reporter::start(as_(&r, "agent")));
    tokio::spawn(g.gw.clone().report(reporter, Duration::from_secs(1)));

    let send = |amount: usize, i: usize| {
        let body = json!({"inputs": [
            {"name": "amount", "shape": [1], "datatype": "FP64", "data": [amount]},
            {"name": "country", "shape": [1], "datatype": "BYTES", "data": [country(i)]}
        ]})
        .to_string();
        let url = g.url.clone();
        async move {
            let (s, v, _) = call(&url, "/v2/models/fraud/infer", &[], &body).await;
            assert_eq!(s, 200, "{v}");
        }
    };
    let settle = async |binned: f64| {
        let start = Instant::now();
        while drift_metric(&r, "fulcrum_version_drift_values", "amount", r#",outcome="binned""#).await != Some(binned)
            || drift_metric(&r, "fulcrum_version_drift_values", "country", r#",outcome="binned""#).await != Some(binned)
        {
            assert!(start.elapsed() < Duration::from_secs(15), "the registry never counted {binned} inputs");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // Like the training sample: amounts spread evenly, countries 3:1.
    for i in 0..400 {
        send((i * 7919) % 1000, i).await;
    }
    settle(400.0).await;
    let (amount, country_psi) = (
        drift_metric(&r, "fulcrum_version_drift_psi", "amount", "").await.unwrap(),
        drift_metric(&r, "fulcrum_version_drift_psi", "country", "").await.unwrap(),
    );
    assert!(amount < 0.1 && country_psi < 0.1, "no drift: amount {amount}, country {country_psi}");

    // Amounts shift to the top tenth; countries do not.
    for i in 0..400 {
        send(900 + i % 100, i).await;
    }
    settle(800.0).await;
    let (amount, country_psi) = (
        drift_metric(&r, "fulcrum_version_drift_psi", "amount", "").await.unwrap(),
        drift_metric(&r, "fulcrum_version_drift_psi", "country", "").await.unwrap(),
    );
    assert!(amount > 0.25, "amount drifted: {amount}");
    assert!(country_psi < 0.1, "country did not: {country_psi}");

    // The leader's watcher raises drift_detected for amount (not for country), once.
    let drift_events = async || {
        let page =
            as_(&r, "rm").get("/v1/events?model=fraud&types=drift_detected,drift_cleared&limit=1000").await.unwrap();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["data"]["event"].as_str().unwrap().to_owned(),
                    e["data"]["drift"]["feature"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let start = Instant::now();
    while drift_events().await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(15), "no drift_detected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(drift_events().await, [("drift_detected".to_owned(), "amount".to_owned())], "once, for amount only");
    let page = as_(&r, "rm").get("/v1/events?model=fraud&types=drift_detected&limit=1000").await.unwrap();
    let d = &page["events"][0]["data"];
    assert_eq!(
        (d["version"].as_str(), d["alias"].as_str(), d["drift"]["alert"].as_f64()),
        (Some("1"), Some("production"), Some(0.25)),
        "{d}"
    );

    // The thresholds are the policy's: raised far above the index, the feature is clear again.
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    data["fulcrum"]["drift"] = json!({"warn": 5.0, "alert": 10.0, "min_values": 100});
    let modules: std::collections::BTreeMap<String, String> =
        fulcrum_policy::DEFAULT_MODULES.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect();
    as_(&r, "policy").put("/v1/policy", &json!({"modules": modules, "data": data})).await.unwrap();
    let start = Instant::now();
    while drift_events().await.len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(15), "no drift_cleared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(drift_events().await[1], ("drift_cleared".to_owned(), "amount".to_owned()));

    // A report binned against another profile, or in another shape, is refused.
    let agent = as_(&r, "agent");
    let mut tally = fulcrum_core::drift::Tally::for_profile(&profile);
    let report = |profile: String, tally: &fulcrum_core::drift::Tally| {
        json!({"ref": "fraud@production", "env": "prod", "kind": "inputs", "version": "1",
               "inputs": {"profile": profile, "window_s": 10, "tally": tally}})
    };
    let e = agent.post("/v1/agent-reports", &report(w.to_string(), &tally)).await.unwrap_err().to_string();
    assert!(e.contains("bad_inputs") || e.contains("reference profile"), "{e}");
    tally.counts[0].push(1);
    let e = agent.post("/v1/agent-reports", &report(p.to_string(), &tally)).await.unwrap_err().to_string();
    assert!(e.contains("features and bins"), "{e}");
}
