//! Tenant isolation of what serving reports: per-version signals (traffic, latency, findings)
//! of one tenant never include another's, even for the same model and version names.

mod common;

use common::Harness;
use reqwest::StatusCode;
use serde_json::json;

/// Per-version signals and findings are a tenant's own: two tenants with the same model and
/// version name, each reporting traffic and findings, each see exactly theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_of_the_same_name_in_two_tenants_never_mix() {
    let h = Harness::start().await;
    for (ci, admin, requests) in [("ci", "admin", 7u64), ("other-ci", "other-admin", 1_000)] {
        h.create_model(ci, "fraud").await;
        h.register(ci, "fraud", "v1", &[("weights.bin", format!("weights of {ci}").as_bytes())]).await;
        let stats =
            json!({"window_s": 10, "requests": requests, "errors": 0, "refused": 0, "p50_us": 900, "p99_us": 2000});
        h.post(
            admin,
            "/v1/agent-reports",
            json!({"ref": "fraud@v1", "env": "dev", "kind": "stats", "version": "v1", "agent": "gw", "stats": stats}),
            StatusCode::CREATED,
        )
        .await;
        let report = json!({"format": "fulcrum", "report": {"findings": [{"id": format!("CVE-{requests}"), "severity": "low", "status": "open"}]}});
        h.post(admin, "/v1/models/fraud/versions/v1/findings", report, StatusCode::CREATED).await;
    }
    let requests = |v: &serde_json::Value| -> u64 {
        v["serving"].as_array().unwrap().iter().map(|s| s["requests"].as_u64().unwrap()).sum()
    };
    let start = std::time::Instant::now();
    let (ours, theirs) = loop {
        let ours = h.get("viewer", "/v1/models/fraud/versions/v1/signals", StatusCode::OK).await;
        let theirs = h.get("other-admin", "/v1/models/fraud/versions/v1/signals", StatusCode::OK).await;
        if requests(&ours) > 0 && requests(&theirs) > 0 {
            break (ours, theirs);
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "the reports never reached the signals");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((requests(&ours), requests(&theirs)), (7, 1_000));
    assert_eq!(ours["findings"][0]["id"], "CVE-7");
    assert_eq!(theirs["findings"][0]["id"], "CVE-1000");
    // A reference to the other tenant's model is simply this tenant's own (or nothing).
    h.get("other-ci", "/v1/models/fraud/versions/v2/signals", StatusCode::NOT_FOUND).await;
}
