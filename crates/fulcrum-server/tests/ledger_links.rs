//! Resolve answers name the audit-ledger leaf behind them (SPEC §8): the lifecycle event that
//! last moved the alias or set the version's stage or hold. The link follows every change, is
//! the same after a restart (read from the store), and the migration's backfill for records
//! kept before the links existed computes the same links as the live path.

mod common;

use common::{Harness, with_production};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn ledger_index(h: &Harness, reference: &str) -> u64 {
    let doc = h.get("agent", &format!("/v1/resolve?ref={reference}&env=prod"), StatusCode::OK).await;
    doc["ledger_index"].as_u64().unwrap_or_else(|| panic!("{reference}: {doc}"))
}

/// The event stored at leaf `index`, as an auditor reads it.
async fn event_at(h: &Harness, index: u64) -> Value {
    let page = h.get("auditor", &format!("/v1/ledger/entries?start={index}&end={}", index + 1), StatusCode::OK).await;
    let e = &page["entries"][0];
    assert_eq!(e["kind"], "event", "{e}");
    serde_json::from_str::<Value>(e["data"].as_str().unwrap()).unwrap()["data"].clone()
}

/// The id of the CloudEvent stored at leaf `index`.
async fn event_id_at(h: &Harness, index: u64) -> String {
    let page = h.get("auditor", &format!("/v1/ledger/entries?start={index}&end={}", index + 1), StatusCode::OK).await;
    let e: Value = serde_json::from_str(page["entries"][0]["data"].as_str().unwrap()).unwrap();
    e["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn answers_name_the_event_behind_them_across_changes_restarts_and_backfill() {
    let h = Harness::start().await;
    with_production(&h, "fraud").await;

    let alias = ledger_index(&h, "fraud@production").await;
    let ev = event_at(&h, alias).await;
    assert_eq!(
        (ev["event"].as_str(), ev["alias"].as_str(), ev["version"].as_str(), ev["chg_id"].as_str()),
        (Some("alias_updated"), Some("production"), Some("v1"), Some("CHG-9"))
    );
    // Pinned to the version: the promotion that made it Approved (the alias moved later).
    let pinned = ledger_index(&h, "fraud@v1").await;
    let ev = event_at(&h, pinned).await;
    assert_eq!(
        (ev["event"].as_str(), ev["to"].as_str(), ev["chg_id"].as_str()),
        (Some("promotion"), Some("Approved"), Some("CHG-3"))
    );
    assert!(pinned < alias);

    // A newer version behind the alias, then its revocation: the alias answer stands on the
    // rollback, the revoked version's own answer on its revocation.
    h.register("ci", "fraud", "v2", &[("weights.bin", b"two")]).await;
    h.approve_fully("fraud", "v2").await;
    h.put("rm", "/v1/models/fraud/aliases/production", json!({"version": "v2", "chg_id": "CHG-10"}), StatusCode::OK)
        .await;
    let moved = ledger_index(&h, "fraud@production").await;
    assert_eq!(event_at(&h, moved).await["version"], "v2");
    h.post(
        "rm",
        "/v1/models/fraud/versions/v2/revocation",
        json!({"reason": "drift", "inc_id": "INC-4"}),
        StatusCode::OK,
    )
    .await;
    let rollback = ledger_index(&h, "fraud@production").await;
    let ev = event_at(&h, rollback).await;
    assert_eq!(
        (ev["event"].as_str(), ev["version"].as_str(), ev["inc_id"].as_str()),
        (Some("alias_updated"), Some("v1"), Some("INC-4"))
    );
    let revoked = ledger_index(&h, "fraud@v2").await;
    let ev = event_at(&h, revoked).await;
    assert_eq!((ev["event"].as_str(), ev["version"].as_str()), (Some("revocation"), Some("v2")));
    // The alias answer names the newest of its two leaves (alias move, version state).
    assert!(rollback > moved && revoked > moved);

    let before: Vec<u64> = [
        ledger_index(&h, "fraud@production").await,
        ledger_index(&h, "fraud@v1").await,
        ledger_index(&h, "fraud@v2").await,
    ]
    .into();
    let dir = h.stop().await;
    let h = Harness::start_in(dir).await;
    let after: Vec<u64> = [
        ledger_index(&h, "fraud@production").await,
        ledger_index(&h, "fraud@v1").await,
        ledger_index(&h, "fraud@v2").await,
    ]
    .into();
    assert_eq!(before, after, "the links are read back from the store");

    // A registry from before the ledger (no leaves, no links), started with this code: the
    // ledger is rebuilt from the records (events first, in table order) and the links found
    // again — to the same events as the live path's.
    let mut events = vec![];
    for i in &after {
        events.push(event_id_at(&h, *i).await);
    }
    let dir = h.stop().await;
    let db = dir.path().join("data/registry.db");
    let links = |pool: sqlx::SqlitePool| async move {
        let v: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT label, ledger_index FROM versions ORDER BY id").fetch_all(&pool).await.unwrap();
        let a: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT name, ledger_index FROM aliases ORDER BY name").fetch_all(&pool).await.unwrap();
        (v, a)
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let live = links(pool.clone()).await;
    assert!(live.0.iter().chain(&live.1).all(|(_, i)| i.is_some()), "{live:?}");
    sqlx::raw_sql(
        "DROP TRIGGER ledger_leaves_no_delete; DROP TRIGGER ledger_nodes_no_delete; DROP TRIGGER ledger_checkpoints_no_delete;
         DELETE FROM ledger_leaves; DELETE FROM ledger_nodes; DELETE FROM ledger_checkpoints; UPDATE ledger_state SET built = 0;
         UPDATE versions SET ledger_index = NULL; UPDATE aliases SET ledger_index = NULL;",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(links(pool.clone()).await.0.iter().all(|(_, i)| i.is_none()));
    pool.close().await;
    let h = Harness::start_in(dir).await;
    let rebuilt: Vec<u64> = [
        ledger_index(&h, "fraud@production").await,
        ledger_index(&h, "fraud@v1").await,
        ledger_index(&h, "fraud@v2").await,
    ]
    .into();
    let mut again = vec![];
    for i in &rebuilt {
        again.push(event_id_at(&h, *i).await);
    }
    assert_eq!(again, events, "the answers stand on the same events");
    let dir = h.stop().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("data/registry.db").display()))
        .await
        .unwrap();
    let (v, a) = links(pool).await;
    assert!(v.iter().chain(&a).all(|(_, i)| i.is_some()), "every version and alias is linked again: {v:?} {a:?}");
}

/// The release gate's allow is logged (and named by the release record) only for a release that
/// passed every check: in development mode a submitted SBOM that is not one still refuses the
/// release, and no allow is logged for it.
#[tokio::test]
async fn only_a_release_that_passed_logs_the_gate_allow_its_record_names() {
    let h = Harness::start().await;
    h.create_model("ci", "fraud").await;
    let weights = h.upload("ci", b"weights").await;
    let not_an_sbom = h.upload("ci", b"{\"not\":\"an sbom\"}").await;
    let files = json!([{"path": "weights.bin", "size": 7, "digest": weights.to_string()}]);
    let refused = json!({"version": "v1", "files": files, "sbom": not_an_sbom.to_string()});
    h.post("ci", "/v1/models/fraud/versions", refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    let (v, _) = h.register("ci", "fraud", "v2", &[("weights.bin", b"weights, second")]).await;

    let log = h.get("auditor", "/v1/decisions?path=fulcrum/release/decision&limit=100", StatusCode::OK).await;
    let allowed: Vec<(String, Value)> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["result"]["allow"] == true)
        .map(|d| (d["input"]["version"]["label"].as_str().unwrap().to_owned(), d["decision_id"].clone()))
        .collect();
    assert_eq!(allowed.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), ["v2"], "{log}");
    let named = &v["release"]["release_gate_decision"];
    assert_eq!(named["decision_id"], allowed[0].1, "{v}");
    let index = named["ledger_index"].as_u64().unwrap();
    let page = h.get("auditor", &format!("/v1/ledger/entries?start={index}&end={}", index + 1), StatusCode::OK).await;
    assert_eq!(page["entries"][0]["kind"], "decision");
    assert_eq!(page["entries"][0]["leaf_hash"], named["leaf_hash"]);
}
