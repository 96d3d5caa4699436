//! Several registries on one PostgreSQL database and bucket (SPEC §11, contract for replicas):
//! one of them leads the background work at a time, and another takes over within seconds when
//! the leader goes away.

mod common;

use common::Harness;
use reqwest::StatusCode;
use serde_json::json;

/// `fulcrum_leader` and `fulcrum_leader_term` of one registry.
async fn leadership(h: &Harness) -> (u64, u64) {
    let m = h.get("", "/metrics", StatusCode::OK).await;
    let m = m.as_str().unwrap();
    let gauge = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}: {m}"))
            .parse()
            .unwrap()
    };
    (gauge("fulcrum_leader"), gauge("fulcrum_leader_term"))
}

/// Wait (up to 10 s) until `f` holds.
async fn within_seconds<F: AsyncFn() -> bool>(what: &str, f: F) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not within 10 s: {what}");
}

/// A second registry on the same database and bucket. Replicas sign with one key (in production
/// a KMS/HSM key; here the first one's development key file).
async fn another_replica(first: &Harness) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let key = "data/signing-key.pk8";
    std::fs::copy(first.dir.path().join(key), dir.path().join(key)).unwrap();
    Harness::start_in(dir).await
}

/// The version a replica's signed answer for `fraud@production` names.
async fn serves(h: &Harness) -> String {
    let doc = h.get("agent", "/v1/resolve?ref=fraud@production&env=prod", StatusCode::OK).await;
    doc["version"].as_str().unwrap().to_owned()
}

/// The kill switch across replicas: a version revoked through one registry is no longer in any
/// other's signed answers within a second — the second replica's cache follows the log instead
/// of signing what it loaded at start.
#[test]
fn a_revocation_through_one_replica_reaches_every_replicas_answers() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let one = Harness::start().await;
        let two = another_replica(&one).await;
        one.create_model("ci", "fraud").await;
        for v in ["v1", "v2"] {
            one.register("ci", "fraud", v, &[("w.bin", v.as_bytes())]).await;
            one.approve_fully("fraud", v).await;
            one.put(
                "rm",
                "/v1/models/fraud/aliases/production",
                json!({"version": v, "chg_id": format!("CHG-{v}")}),
                StatusCode::OK,
            )
            .await;
        }
        assert_eq!(serves(&one).await, "v2");
        within_seconds("replica two sees the alias set through replica one", async || serves(&two).await == "v2").await;

        one.post(
            "bo",
            "/v1/models/fraud/versions/v2/revocation",
            json!({"reason": "critical CVE", "inc_id": "INC-1"}),
            StatusCode::OK,
        )
        .await;
        let t0 = std::time::Instant::now();
        assert_eq!(serves(&one).await, "v1", "the replica that took the revocation rolls back at once");
        within_seconds("replica two rolls back", async || serves(&two).await == "v1").await;
        let took = t0.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "replica two still signed the revoked version after {took:?}"
        );
        // Pinned answers too: v2 by name is a signed deny on both.
        for h in [&one, &two] {
            let doc = h.get("agent", "/v1/resolve?ref=fraud@v2&env=prod", StatusCode::OK).await;
            assert_eq!((doc["decision"].as_str(), doc["revoked"].as_bool()), (Some("deny"), Some(true)), "{doc}");
        }
    });
}

/// The largest checkpoint stored (signed by the leader's background work; nothing here asks
/// for one through the API).
async fn stored_checkpoint(store: &fulcrum_store::Store) -> u64 {
    store.last_checkpoint().await.unwrap().map_or(0, |c| c.size)
}

#[test]
fn one_replica_leads_and_another_takes_over_when_it_goes() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let first = Harness::start().await;
        let second = another_replica(&first).await;
        let db = common::scale_out::current().unwrap().database();
        let store = fulcrum_store::Store::connect(&db, fulcrum_store::StoreOptions::default()).await.unwrap();
        within_seconds("a leader", async || leadership(&first).await.0 + leadership(&second).await.0 == 1).await;
        let (a, b) = (leadership(&first).await, leadership(&second).await);
        assert_eq!(a.0 + b.0, 1, "exactly one leads: {a:?} {b:?}");
        let (leader, follower, term) = if a.0 == 1 { (first, second, a.1) } else { (second, first, b.1) };
        assert_eq!(leadership(&follower).await, (0, 0));
        assert_eq!(store.newest_term().await.unwrap().map(|t| t.term), Some(term as i64));

        // A commit through the follower is signed into a checkpoint by the leader.
        follower.create_model("ci", "fraud").await;
        let size = store.ledger_size().await.unwrap();
        within_seconds("the leader signs the new entries", async || stored_checkpoint(&store).await >= size).await;

        // The leader goes away; the other replica leads within seconds, with a newer term, and
        // the background work goes on there.
        leader.stop().await;
        within_seconds("the other replica leads", async || leadership(&follower).await.0 == 1).await;
        let (_, new_term) = leadership(&follower).await;
        assert!(new_term > term, "terms only grow: {term} then {new_term}");
        let signed = stored_checkpoint(&store).await;
        // A release is an event, so a new ledger leaf after everything signed so far.
        follower.register("ci", "fraud", "v1", &[("w.bin", b"weights")]).await;
        let size = store.ledger_size().await.unwrap();
        assert!(size > signed, "{size} > {signed}");
        within_seconds("the new leader signs", async || stored_checkpoint(&store).await >= size).await;
    });
}
