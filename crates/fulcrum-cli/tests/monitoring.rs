//! Monitoring from the command line: findings and waivers recorded and listed, and
//! `fulcrum version status` showing a version's findings, traffic, startup denies and drift.

mod common;

use common::{ok, one_error_line, run_as, serve};
use serde_json::json;

#[test]
fn findings_waivers_and_a_versions_status() {
    let s = serve();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("weights.bin"), b"weights").unwrap();
    let profile = fulcrum_core::drift::Profile::build(
        &[("amount".into(), (0..100).map(|i| i.to_string()).collect::<Vec<_>>())],
        4,
    )
    .unwrap();
    std::fs::write(dir.path().join("profile.json"), profile.to_bytes()).unwrap();
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "risk"]));
    ok(&run_as(
        &s,
        "ci",
        &[
            "version",
            "register",
            "fraud",
            "v1",
            "--dir",
            model.to_str().unwrap(),
            "--profile",
            dir.path().join("profile.json").to_str().unwrap(),
        ],
    ));

    let report = dir.path().join("grype.json");
    std::fs::write(
        &report,
        json!({"matches": [{"vulnerability": {"id": "CVE-2026-4242", "severity": "Critical"}, "artifact": {"name": "tokenizers"}}]})
            .to_string(),
    )
    .unwrap();
    let added = String::from_utf8(
        run_as(&s, "ci", &["findings", "add", "fraud", "v1", "--file", report.to_str().unwrap()]).stdout,
    )
    .unwrap();
    assert!(added.contains("CVE-2026-4242  critical  open  tokenizers"), "{added}");
    let listed = ok(&run_as(&s, "ci", &["findings", "list", "fraud", "v1", "--output", "json"]));
    assert_eq!(listed[0]["id"], "CVE-2026-4242");
    ok(&run_as(
        &s,
        "bo",
        &[
            "waivers",
            "add",
            "fraud",
            "--id",
            "W-1",
            "--finding",
            "CVE-2026-4242",
            "--version",
            "v1",
            "--justification",
            "not reachable",
            "--expires",
            "2099-01-01T00:00:00Z",
        ],
    ));
    let w = String::from_utf8(run_as(&s, "ci", &["waivers", "list", "fraud", "--version", "v1"]).stdout).unwrap();
    assert!(w.contains("W-1  CVE-2026-4242  v1  until 2099-01-01T00:00:00Z  by bo: not reachable"), "{w}");
    // Only a security officer grants waivers: one line, nothing granted.
    let err = one_error_line(&run_as(
        &s,
        "ci",
        &[
            "waivers",
            "add",
            "fraud",
            "--id",
            "W-2",
            "--finding",
            "CVE-2026-4242",
            "--justification",
            "x",
            "--expires",
            "2099-01-01T00:00:00Z",
        ],
    ));
    assert!(err.contains("403") || err.contains("forbid") || err.contains("role"), "{err}");

    // What agents and a gateway report shows in the version's status.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut buckets = [0u64; 15];
        buckets[3] = 10;
        for body in [
            json!({"ref": "fraud@v1", "env": "prod", "kind": "stats", "version": "v1",
                   "stats": {"window_s": 10, "requests": 10, "errors": 1, "refused": 2, "p50_us": 3000, "p99_us": 4000,
                             "latency_buckets": buckets, "latency_sum_us": 30000}}),
        ] {
            let r = http.post(format!("{}/v1/agent-reports", s.url)).bearer_auth("t-agent").json(&body).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
        let r = http
            .post(format!("{}/v1/startup-reports", s.url))
            .bearer_auth("t-agent")
            .json(&json!({"ref": "fraud@v1", "env": "prod", "decision": "deny", "reason": "registry_deny", "version": "v1"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    });
    let mut text = String::new();
    for _ in 0..50 {
        text = String::from_utf8(run_as(&s, "ci", &["version", "status", "fraud", "v1"]).stdout).unwrap();
        if text.contains("startups prod deny (registry_deny): 1") && text.contains("10 requests") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for want in [
        "fraud@v1  Candidate  hold=none",
        "open findings: CVE-2026-4242 (critical)",
        "waivers: 1",
        "10 requests, 1 errors, 2 refused, p50 3.8 ms",
        "startups prod deny (registry_deny): 1",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}
