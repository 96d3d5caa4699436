//! The monitoring kit against a real Prometheus (Debian's `prometheus`): it scrapes a registry,
//! `promtool check rules` accepts the shipped rules, the drift and canary-error alerts fire from
//! reports a gateway would send, and every panel of the shipped Grafana dashboard returns data.
//!
//! The alerts' `for:` hold is shortened to 2 s in the copy Prometheus loads (the expressions are
//! the shipped ones), so the test does not wait a minute per alert.

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn shipped(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

async fn query(prom: &str, expr: &str) -> Vec<Value> {
    let r: Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "success", "{expr}: {r}");
    r["data"]["result"].as_array().cloned().unwrap_or_default()
}

async fn firing(prom: &str) -> Vec<String> {
    let r: Value = reqwest::get(format!("{prom}/api/v1/alerts")).await.unwrap().json().await.unwrap();
    r["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_signals_fires_the_alerts_and_fills_the_dashboard() {
    let rules = shipped("deploy/prometheus/fulcrum-rules.yml");
    let Some(bin) = fulcrum_server::testing::prometheus_bin() else { return };
    let promtool = bin.with_file_name("promtool");
    let check = std::process::Command::new(&promtool).args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    let h = Harness::start().await;
    h.create_model("ci", "fraud").await;
    // A profile of one numeric feature in ten even bins.
    let cells: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let profile = fulcrum_core::drift::Profile::build(&[("amount".into(), cells)], 10).unwrap();
    let p = h.upload("ci", &profile.to_bytes()).await;
    // Ten days from revalidation: inside the shipped 30-day notice period.
    let revalidate_by = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for (v, alias) in [("v1", "production"), ("v2", "canary")] {
        let w = h.upload("ci", v.as_bytes()).await;
        h.post(
            "ci",
            "/v1/models/fraud/versions",
            json!({"version": v, "files": [{"path": "w.bin", "size": 2, "digest": w.to_string()}],
                   "model_card": {"owner": "fraud", "intended_use": "scoring"}, "revalidate_by": revalidate_by,
                   "reference_profile": p.to_string()}),
            StatusCode::CREATED,
        )
        .await;
        h.approve_fully("fraud", v).await;
        h.put(
            "rm",
            &format!("/v1/models/fraud/aliases/{alias}"),
            json!({"version": v, "chg_id": "CHG-1", "allow_downgrade": true}),
            StatusCode::OK,
        )
        .await;
    }

    // An open low finding (not blocking: the version keeps serving, and the gauge shows it).
    let grype = json!({"matches": [{"vulnerability": {"id": "CVE-2026-0001", "severity": "Low"}, "artifact": {"name": "numpy"}}]});
    h.post(
        "ci",
        "/v1/models/fraud/versions/v1/findings",
        json!({"format": "grype", "report": grype}),
        StatusCode::CREATED,
    )
    .await;

    // The shipped rules with a short hold.
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("rules.yml");
    std::fs::write(
        &fast,
        std::fs::read_to_string(&rules).unwrap().replace("for: 1m", "for: 2s").replace("for: 30s", "for: 2s"),
    )
    .unwrap();
    let target = h.url.trim_start_matches("http://").to_owned();
    let prom = fulcrum_server::testing::Prometheus::start(&[target], &[fast]).unwrap();
    let prom = prom.url();

    // What gateways report: production healthy, the canary failing 30 % of the time and its
    // inputs all in the top tenth; and agents refusing the canary at start.
    let report = async |alias: &str, version: &str, errors: u64, bucket: usize| {
        let mut buckets = [0u64; 15];
        buckets[bucket] = 100;
        h.post(
            "agent",
            "/v1/agent-reports",
            json!({"ref": format!("fraud@{alias}"), "env": "prod", "kind": "stats", "version": version,
                   "stats": {"window_s": 1, "requests": 100, "errors": errors, "refused": 0, "p50_us": 1000,
                             "p99_us": 9000, "latency_buckets": buckets, "latency_sum_us": 300_000}}),
            StatusCode::CREATED,
        )
        .await;
    };
    let mut tally = fulcrum_core::drift::Tally::for_profile(&profile);
    tally.counts[0][9] = 200;
    let start = Instant::now();
    let mut want = vec!["FulcrumCanaryErrorsAboveProduction".to_owned(), "FulcrumInputDrift".to_owned()];
    want.sort();
    loop {
        report("production", "v1", 0, 2).await;
        report("canary", "v2", 30, 5).await;
        h.post(
            "agent",
            "/v1/agent-reports",
            json!({"ref": "fraud@canary", "env": "prod", "kind": "inputs", "version": "v2",
                   "inputs": {"profile": p.to_string(), "window_s": 1, "tally": tally}}),
            StatusCode::CREATED,
        )
        .await;
        h.post(
            "agent",
            "/v1/startup-reports",
            json!({"ref": "fraud@canary", "env": "prod", "decision": "deny", "reason": "signature_invalid", "version": "v2"}),
            StatusCode::CREATED,
        )
        .await;
        let mut got = firing(&prom).await;
        got.retain(|a| want.contains(a));
        got.sort();
        got.dedup();
        if got == want {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "alerts firing after 60 s: {got:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every panel of the shipped dashboard returns data for this model.
    let dash: Value =
        serde_json::from_slice(&std::fs::read(shipped("deploy/grafana/fulcrum-version.json")).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for panel in panels {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$tenant", "acme")
                .replace("$model", "fraud")
                .replace("$version", ".*")
                .replace("$__rate_interval", "1m");
            let start = Instant::now();
            while query(&prom, &expr).await.is_empty() {
                assert!(start.elapsed() < Duration::from_secs(20), "panel {:?} has no data: {expr}", panel["title"]);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    // The leader's watchers' gauges: the open finding, and about ten days to revalidation.
    let open = query(&prom, r#"fulcrum_version_findings_open{model="fraud",version="v1",severity="low"}"#).await;
    assert_eq!(open[0]["value"][1], "1", "{open:?}");
    let days = query(&prom, r#"fulcrum_version_revalidate_in_seconds{model="fraud",version="v1"} / 86400"#).await;
    let d: f64 = days[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((9.9..=10.0).contains(&d), "{days:?}");
    // The figures behind them are right: canary error ratio 0.3, production 0.
    let ratio = query(&prom, r#"fulcrum:version_error_ratio:rate5m{model="fraud",alias="canary"}"#).await;
    let v: f64 = ratio[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((v - 0.3).abs() < 1e-9, "{ratio:?}");
}
