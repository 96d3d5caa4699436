//! Revalidation dates (SPEC §12): the leader's watcher raises `revalidation_due` inside the
//! policy's notice period and `revalidation_overdue` past the date, each once (also across a
//! restart); past it, promotions and alias moves onto the version are refused with
//! `revalidation_overdue`, while it keeps serving where it already does.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, ShiftedClock};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

async fn register(h: &Harness, version: &str, revalidate_in: time::Duration) {
    let w = h.upload("ci", version.as_bytes()).await;
    let rb = (time::OffsetDateTime::now_utc() + revalidate_in).format(&Rfc3339).unwrap();
    h.post(
        "ci",
        "/v1/models/fraud/versions",
        json!({"version": version, "files": [{"path": "w.bin", "size": version.len(), "digest": w.to_string()}],
               "model_card": {"owner": "fraud", "intended_use": "scoring"}, "revalidate_by": rb}),
        StatusCode::CREATED,
    )
    .await;
}

/// (event, version) of the revalidation events so far.
async fn notices(h: &Harness) -> Vec<(String, String)> {
    let page = h
        .get("rm", "/v1/events?model=fraud&types=revalidation_due,revalidation_overdue&limit=1000", StatusCode::OK)
        .await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["data"]["event"].as_str().unwrap().to_owned(), e["data"]["version"].as_str().unwrap().to_owned()))
        .collect()
}

async fn until_notices(h: &Harness, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    let start = Instant::now();
    while notices(h).await != want {
        assert!(start.elapsed() < Duration::from_secs(15), "notices {:?}, want {want:?}", notices(h).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_then_overdue_once_and_overdue_versions_take_no_new_moves() {
    let clock = Arc::new(ShiftedClock::default());
    let h = Harness::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |_| {}).await;
    h.create_model("ci", "fraud").await;
    register(&h, "v1", time::Duration::days(2)).await;
    h.approve_fully("fraud", "v1").await;
    h.put("rm", "/v1/models/fraud/aliases/production", json!({"version": "v1", "chg_id": "CHG-1"}), StatusCode::OK)
        .await;
    register(&h, "v2", time::Duration::days(1)).await;
    let v2 = "/v1/models/fraud/versions/v2";
    h.post("rm", &format!("{v2}/promotions"), json!({"to": "Staging", "chg_id": "CHG-2"}), StatusCode::OK).await;
    h.post("ana", &format!("{v2}/approvals"), json!({}), StatusCode::CREATED).await;
    h.post("bo", &format!("{v2}/approvals"), json!({}), StatusCode::CREATED).await;

    // Two days out, inside the shipped 30-day notice: due, for the Approved version only.
    until_notices(&h, &[("revalidation_due", "v1")]).await;

    // Three days later: overdue.
    clock.shift(3 * 86_400);
    until_notices(&h, &[("revalidation_due", "v1"), ("revalidation_overdue", "v1")]).await;
    // No new moves onto it, and no promotion past the date; it keeps serving.
    let p = h
        .put("rm", "/v1/models/fraud/aliases/shadow", json!({"version": "v1", "chg_id": "CHG-3"}), StatusCode::CONFLICT)
        .await;
    assert!(p.to_string().contains("revalidation_overdue"), "{p}");
    let p = h
        .post("rm", &format!("{v2}/promotions"), json!({"to": "Approved", "chg_id": "CHG-4"}), StatusCode::CONFLICT)
        .await;
    assert!(p.to_string().contains("revalidation_overdue"), "{p}");
    let doc: Value = h.get("agent", "/v1/resolve?ref=fraud@production&env=prod", StatusCode::OK).await;
    assert_eq!((doc["version"].as_str(), doc["decision"].as_str()), (Some("v1"), Some("permit")), "{doc}");

    // Once each, also across a restart of the registry.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(notices(&h).await.len(), 2);
    let dir = h.stop().await;
    let h = Harness::start_clocked(dir, clock.clone(), |_| {}).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(notices(&h).await.len(), 2, "{:?}", notices(&h).await);
}
