//! Incident records over the API: who may open and close them, bad input refused with nothing
//! recorded, and tenant isolation (another tenant's incident is invisible: not listed, not
//! readable, not closable, its timeline not drawn; the same id in two tenants is two incidents).

mod common;

use common::{Harness, with_production};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_governed_checked_and_isolated_per_tenant() {
    let h = Harness::start().await;
    with_production(&h, "fraud").await;
    let open = |id: &str, severity: &str, versions: serde_json::Value| json!({"id": id, "title": "tokenizer CVE", "severity": severity, "versions": versions});

    // Who may open: the policy's open_incident (not a viewer, not a publisher).
    h.post("viewer", "/v1/incidents", open("INC-1", "high", json!([])), StatusCode::FORBIDDEN).await;
    h.post("ci", "/v1/incidents", open("INC-1", "high", json!([])), StatusCode::FORBIDDEN).await;
    // Bad input: refused, nothing recorded.
    let p =
        h.post("bo", "/v1/incidents", open("INC-1", "catastrophic", json!([])), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["code"], "bad_severity");
    h.post("bo", "/v1/incidents", open("../etc", "high", json!([])), StatusCode::BAD_REQUEST).await;
    h.post("bo", "/v1/incidents", open("INC-1", "high", json!(["fraud"])), StatusCode::BAD_REQUEST).await;
    h.post("bo", "/v1/incidents", open("INC-1", "high", json!(["fraud@v9"])), StatusCode::NOT_FOUND).await;
    h.post(
        "bo",
        "/v1/incidents",
        json!({"id": "INC-1", "title": "x\u{1b}[2J", "severity": "high"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(h.get("viewer", "/v1/incidents", StatusCode::OK).await, json!([]), "nothing half-recorded");

    let i = h.post("bo", "/v1/incidents", open("INC-1", "high", json!(["fraud@v1"])), StatusCode::CREATED).await;
    assert_eq!((i["opened_by"].as_str(), i["source"].as_str()), (Some("bo"), Some("operator")));
    assert_eq!(i["versions"][0]["via"], "declared");
    let dup = h.post("rm", "/v1/incidents", open("INC-1", "low", json!([])), StatusCode::CONFLICT).await;
    assert_eq!(dup["code"], "conflict");

    // Another tenant: invisible everywhere, and its own INC-1 is its own.
    assert_eq!(h.get("other-admin", "/v1/incidents", StatusCode::OK).await, json!([]));
    h.get("other-admin", "/v1/incidents/INC-1", StatusCode::NOT_FOUND).await;
    h.get("other-admin", "/v1/incidents/INC-1/timeline", StatusCode::NOT_FOUND).await;
    h.post("other-admin", "/v1/incidents/INC-1/close", json!({"resolution": "mine now"}), StatusCode::NOT_FOUND).await;
    // Naming another tenant's version: it does not exist for them.
    h.post("other-admin", "/v1/incidents", open("INC-2", "high", json!(["fraud@v1"])), StatusCode::NOT_FOUND).await;
    let theirs = h.post("other-admin", "/v1/incidents", open("INC-1", "low", json!([])), StatusCode::CREATED).await;
    assert_eq!(theirs["severity"], "low");
    assert_eq!(h.get("viewer", "/v1/incidents/INC-1", StatusCode::OK).await["severity"], "high", "ours unchanged");

    // A revocation naming INC-1 attaches its version to ours only.
    h.post(
        "bo",
        "/v1/models/fraud/versions/v1/revocation",
        json!({"reason": "CVE", "inc_id": "INC-1"}),
        StatusCode::OK,
    )
    .await;
    let ours = h.get("viewer", "/v1/incidents/INC-1", StatusCode::OK).await;
    let via: Vec<&str> = ours["versions"].as_array().unwrap().iter().map(|v| v["via"].as_str().unwrap()).collect();
    assert_eq!(via, ["declared"], "already named: the revocation attaches nothing new");
    let t = h.get("viewer", "/v1/incidents/INC-1/timeline", StatusCode::OK).await;
    assert_eq!(t["withdrawn"], json!(["fraud@v1"]));
    assert!(
        h.get("other-admin", "/v1/incidents/INC-1", StatusCode::OK).await["versions"].as_array().unwrap().is_empty()
    );

    // Closing: the policy's close_incident (an approver may not), once.
    h.post("ana", "/v1/incidents/INC-1/close", json!({"resolution": "done"}), StatusCode::FORBIDDEN).await;
    h.post("rm", "/v1/incidents/INC-1/close", json!({"resolution": ""}), StatusCode::UNPROCESSABLE_ENTITY).await;
    let closed = h.post("rm", "/v1/incidents/INC-1/close", json!({"resolution": "rolled back"}), StatusCode::OK).await;
    assert_eq!((closed["closed_by"].as_str(), closed["resolution"].as_str()), (Some("rm"), Some("rolled back")));
    h.post("bo", "/v1/incidents/INC-1/close", json!({"resolution": "again"}), StatusCode::CONFLICT).await;
    assert_eq!(h.get("viewer", "/v1/incidents?open=true", StatusCode::OK).await, json!([]));
    // Opening and closing are ledgered events of the tenant.
    let kinds = h.event_kinds("viewer").await;
    assert_eq!(kinds.iter().filter(|k| *k == "incident_opened").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "incident_closed").count(), 1, "{kinds:?}");
}
