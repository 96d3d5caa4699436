//! The findings runbook (SPEC §12): a critical finding recorded against a serving Approved
//! version, with no waiver covering it, quarantines the version under a new incident — its alias
//! rolls back and the guard serving it quiesces and reloads the previous version — decided by the
//! policy (`fulcrum.watch`) and ledgered. A covering waiver holds it off; its expiry brings it on.

mod common;

use std::time::{Duration, Instant};

use common::{as_, fraud_v1, register, serving_guard, until};
use serde_json::json;

fn grype(id: &str, severity: &str) -> serde_json::Value {
    json!({"format": "grype", "report": {"matches": [{"vulnerability": {"id": id, "severity": severity}, "artifact": {"name": "tokenizers"}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_finding_without_a_waiver_quarantines_the_serving_version() {
    let r = fraud_v1().await;
    register(&r, "v2", &[("weights.bin", b"weights-two")]).await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let guard = serving_guard(&r, state.path(), out.path().join("model"), |_| {}).await;
    assert_eq!(guard.loaded().unwrap().version, "v2");
    let v2 = "/v1/models/fraud/versions/v2";

    // A low finding changes nothing; a critical one covered by a waiver (3 s left) neither.
    as_(&r, "ci").post(&format!("{v2}/findings"), &grype("CVE-2026-0001", "Low")).await.unwrap();
    let expiry = Instant::now() + Duration::from_secs(3);
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::seconds(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    as_(&r, "bo")
        .post(
            "/v1/models/fraud/waivers",
            &json!({"id": "W-1", "finding": "CVE-2026-4242", "version": "v2", "justification": "not reachable from the model's inputs", "expires_at": expires}),
        )
        .await
        .unwrap();
    as_(&r, "ci").post(&format!("{v2}/findings"), &grype("CVE-2026-4242", "Critical")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = as_(&r, "rm").get(v2).await.unwrap();
    assert_eq!(v["hold"], "none", "the waiver covers it: {v}");
    assert_eq!(guard.loaded().unwrap().version, "v2");

    // The waiver expires: within 2 s the version is quarantined under a new incident, the alias
    // rolls back, the guard quiesces and serves v1.
    let t0 = Instant::now();
    let quiesced = || guard.timeline().iter().any(|s| s.step == "quiesce");
    while !quiesced() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the guard never quiesced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after_expiry = Instant::now().saturating_duration_since(expiry);
    assert!(after_expiry < Duration::from_secs(2), "quiesced {after_expiry:?} after the waiver expired");
    until("the rollback to v1", || guard.loaded().is_some_and(|d| d.version == "v1") && guard.is_ready()).await;
    let v = as_(&r, "rm").get(v2).await.unwrap();
    assert_eq!(v["hold"], "quarantined", "{v}");
    let events = as_(&r, "rm")
        .get("/v1/events?model=fraud&types=quarantined,findings_recorded,waiver_granted&limit=1000")
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["data"]["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["findings_recorded", "waiver_granted", "findings_recorded", "quarantined"],
        "in the log, in order"
    );
    let q = &events[3]["data"];
    let inc = q["inc_id"].as_str().unwrap();
    assert!(inc.starts_with("INC-W-"), "{q}");
    assert_eq!(q["actor"], "fulcrum-watcher", "{q}");
    // The decision behind it is logged with the incident, replayable.
    let d = as_(&r, "bo").get(&format!("/v1/decisions?inc_id={inc}")).await.unwrap();
    let d = &d["decisions"][0];
    assert_eq!(
        (d["path"].as_str(), d["result"]["allow"].as_bool()),
        (Some("fulcrum/watch/decision"), Some(false)),
        "{d}"
    );
    assert_eq!(d["result"]["deny"], json!(["open_finding:CVE-2026-4242"]));
    // The watcher's quarantine opened the incident as a record naming the version.
    let i = as_(&r, "bo").get(&format!("/v1/incidents/{inc}")).await.unwrap();
    assert_eq!(
        (i["source"].as_str(), i["opened_by"].as_str(), i["severity"].as_str()),
        (Some("quarantine"), Some("fulcrum-watcher"), Some("high")),
        "{i}"
    );
    assert_eq!(i["versions"][0]["version"], "v2", "{i}");
    eprintln!("waiver expired → guard quiesced {after_expiry:?} later");
}
