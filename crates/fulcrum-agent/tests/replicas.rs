//! The kill switch across registry replicas (SPEC §11): a guard connected to replica three
//! quiesces, and rolls back, when the version it serves is revoked through replica one — on
//! real PostgreSQL and S3 (SeaweedFS), within a second.

mod common;

use std::time::{Duration, Instant};

use common::{as_, register, registry_tuned, replica_of, serving_guard, until};
use fulcrum_server::testing::ScaleOut;
use serde_json::json;

/// The version `fraud@production` resolves to on a replica (empty while it does not know it).
async fn serves(r: &common::Reg) -> String {
    as_(r, "agent")
        .get("/v1/resolve?ref=fraud@production&env=prod")
        .await
        .map(|d| d["version"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_on_one_replica_quiesces_when_another_revokes() {
    let Some(services) = ScaleOut::start(false).await else { return };
    let one = registry_tuned(services.tune()).await;
    let _two = replica_of(&one, services.tune()).await;
    let three = replica_of(&one, services.tune()).await;
    as_(&one, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&one, "v1", &[("weights.bin", b"weights-one")]).await;
    register(&one, "v2", &[("weights.bin", b"weights-two")]).await;
    let start = Instant::now();
    while serves(&three).await != "v2" {
        assert!(start.elapsed() < Duration::from_secs(10), "replica three never served v2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let guard = serving_guard(&three, state.path(), out.path().join("model"), |_| {}).await;
    assert_eq!(guard.loaded().unwrap().version, "v2");
    let quiesces = || guard.timeline().iter().filter(|s| s.step == "quiesce").count();
    let before = quiesces();

    // T0: the revocation, through replica one.
    let t0 = Instant::now();
    as_(&one, "rm")
        .post("/v1/models/fraud/versions/v2/revocation", &json!({"reason": "critical CVE", "inc_id": "INC-9"}))
        .await
        .unwrap();
    until("the guard on replica three quiesces", || quiesces() > before).await;
    let quiesced = t0.elapsed();
    until("it rolls back to v1", || guard.loaded().is_some_and(|d| d.version == "v1") && guard.is_ready()).await;
    let rolled_back = t0.elapsed();
    eprintln!(
        "revocation through replica one → guard on replica three quiesced in {quiesced:?}, rolled back in {rolled_back:?}"
    );
    assert!(quiesced < Duration::from_secs(1), "quiesced after {quiesced:?}");
    assert_eq!(serves(&three).await, "v1", "replica three's signed answer rolled back too");
}
