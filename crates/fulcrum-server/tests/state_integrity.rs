//! Governance state is a projection of the ledgered events, and the registry holds its tables
//! to it. Tried as an operator with database access would: a revocation undone by editing the
//! row (after dropping the trigger that forbids it), an alias pointed back at the revoked
//! version. The trigger refuses the plain edit; the edited rows are found at the next start and
//! named; nothing is signed from them (answers are signed denies saying `state_divergent`,
//! carrying the ledger's hold); governance on the model is refused; other models serve as
//! before; a divergence metric says so.

mod common;

use common::{Harness, with_production};
use fulcrum_core::resolve::{Decision, ResolveDocument};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn doc(h: &Harness, path: &str) -> ResolveDocument {
    let resp = h.req("agent", Method::GET, path).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    assert!(resp.headers().contains_key("fulcrum-signature"), "a signed answer");
    resp.json().await.unwrap()
}

async fn db(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("data/registry.db").display())).await.unwrap()
}

#[tokio::test]
async fn a_revocation_undone_in_the_database_is_caught_and_never_signed() {
    let h = Harness::start().await;
    with_production(&h, "fraud").await;
    with_production(&h, "risk").await;
    h.register("ci", "fraud", "v2", &[("weights.bin", b"two")]).await;
    h.approve_fully("fraud", "v2").await;
    h.put("rm", "/v1/models/fraud/aliases/production", json!({"version": "v2", "chg_id": "CHG-20"}), StatusCode::OK)
        .await;
    h.post(
        "bo",
        "/v1/models/fraud/versions/v2/revocation",
        json!({"reason": "leak", "inc_id": "INC-9"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc(&h, "/v1/resolve?ref=fraud@production&env=prod").await.version, "v1", "rolled back");
    let dir = h.stop().await;

    // The database's own guards refuse the plain edits.
    let pool = db(&dir).await;
    let e = sqlx::query("UPDATE versions SET hold = 'none' WHERE label = 'v2'").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("a revoked version stays revoked"), "{e}");
    let e = sqlx::query("UPDATE versions SET stage = 'Candidate' WHERE label = 'v1'").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("a stage only climbs"), "{e}");
    // An operator who drops the trigger gets the edit through.
    sqlx::raw_sql(
        "DROP TRIGGER versions_revocation_is_final;
         UPDATE versions SET hold = 'none' WHERE label = 'v2' AND model_id = (SELECT id FROM models WHERE name = 'fraud');
         UPDATE aliases SET version_id = (SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = 'fraud' AND v.label = 'v2')
           WHERE name = 'production' AND model_id = (SELECT id FROM models WHERE name = 'fraud');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let h = Harness::start_in(dir).await;
    // Nothing is signed from the edited rows: every answer about fraud is a deny that says why,
    // and carries the hold the ledger implies.
    let pinned = doc(&h, "/v1/resolve?ref=fraud@v2&env=prod").await;
    assert_eq!((pinned.decision, pinned.deny_reason.as_deref()), (Decision::Deny, Some("state_divergent")));
    assert!(pinned.revoked, "the ledger's hold, not the edited row's");
    let alias = doc(&h, "/v1/resolve?ref=fraud@production&env=prod").await;
    assert_eq!((alias.decision, alias.deny_reason.as_deref()), (Decision::Deny, Some("state_divergent")));
    let v1 = doc(&h, "/v1/resolve?ref=fraud@v1&env=prod").await;
    assert_eq!(v1.decision, Decision::Deny, "the whole model is suspect until repaired");
    // The bytes do not leave either: the download gate does not trust divergent rows.
    let two = fulcrum_core::Digest::of(b"two");
    let p = h.get("agent", &format!("/v1/blobs/{two}"), StatusCode::FORBIDDEN).await;
    assert_eq!(p["code"], "state_divergent");
    let p = h
        .post(
            "rm",
            "/v1/models/fraud/versions/v1/promotions",
            json!({"to": "Approved", "chg_id": "CHG-T"}),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(p["code"], "state_divergent");
    assert!(
        p["detail"].as_str().unwrap().contains("version v2: hold is none in the table, revoked in the ledger"),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("alias production: v2 in the table, v1 in the ledger"), "{p}");
    // Other models are untouched.
    assert_eq!(doc(&h, "/v1/resolve?ref=risk@production&env=prod").await.decision, Decision::Permit);
    let metrics = h.req("", Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fulcrum_state_divergent_models 1"), "{metrics}");
}

/// A ledger whose events were edited behind it gives no state at all: the registry starts (its
/// entries stay readable for auditors) but every answer is a signed deny (`ledger_broken`), every
/// change is refused, and no new checkpoint is signed.
#[tokio::test]
async fn an_event_edited_behind_the_ledger_breaks_every_answer() {
    let h = Harness::start().await;
    with_production(&h, "fraud").await;
    let before = h.get("auditor", "/v1/ledger/checkpoint", StatusCode::OK).await;
    let dir = h.stop().await;
    let pool = db(&dir).await;
    sqlx::raw_sql(
        "DROP TRIGGER events_no_update;
         UPDATE events SET body = replace(body, '\"to\":\"Approved\"', '\"to\":\"Staging\"') WHERE kind = 'promotion';",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let h = Harness::start_in(dir).await;
    let d = doc(&h, "/v1/resolve?ref=fraud@production&env=prod").await;
    assert_eq!(d.decision, Decision::Deny);
    assert!(d.deny_reason.as_deref().unwrap().starts_with("ledger_broken"), "{:?}", d.deny_reason);
    h.create_model("ci", "fresh").await;
    let p = h
        .post(
            "rm",
            "/v1/models/fraud/versions/v1/revocation",
            json!({"reason": "x", "inc_id": "INC-1"}),
            StatusCode::CONFLICT,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("does not hash to its leaf"), "{p}");
    // More entries arrive (this agent's report), yet the checkpoint stays the last one signed.
    h.post(
        "agent",
        "/v1/startup-reports",
        json!({"ref": "fraud@production", "env": "prod", "decision": "deny", "reason": "ledger_broken"}),
        StatusCode::CREATED,
    )
    .await;
    let after = h.get("auditor", "/v1/ledger/checkpoint", StatusCode::OK).await;
    assert_eq!(after["size"], before["size"], "nothing new is signed over a broken ledger");
    h.get("agent", "/v1/ledger/proofs/state?model=fraud&version=v1", StatusCode::SERVICE_UNAVAILABLE).await;
}
