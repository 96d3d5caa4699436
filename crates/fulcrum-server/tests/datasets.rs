//! The data catalog: "which versions used dataset snapshot X", across the caller's tenant and
//! only in the domains it may see.

mod common;

use common::Harness;
use fulcrum_core::Digest;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn register(h: &Harness, who: &str, model: &str, version: &str, datasets: Value) {
    let bytes = format!("{model}-{version}").into_bytes();
    let d = h.upload(who, &bytes).await;
    h.post(
        who,
        &format!("/v1/models/{model}/versions"),
        json!({"version": version, "files": [{"path": "w.bin", "size": bytes.len(), "digest": d.to_string()}],
               "model_card": {"owner": "o", "intended_use": "u"}, "revalidate_by": "2099-01-01T00:00:00Z",
               "dataset_snapshots": datasets}),
        StatusCode::CREATED,
    )
    .await;
}

fn found(page: &Value) -> Vec<(String, String, Vec<String>)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let uris = i["uris"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect();
            (i["model"].as_str().unwrap().to_owned(), i["version"].as_str().unwrap().to_owned(), uris)
        })
        .collect()
}

#[tokio::test]
async fn versions_that_used_a_snapshot_within_the_callers_reach() {
    let h = Harness::start().await;
    let snap = Digest::of(b"loans-2026-10-01.parquet").to_string();
    let other = Digest::of(b"another snapshot").to_string();
    h.create_model("ci", "risk").await;
    h.post("ci", "/v1/models", json!({"name": "fraud", "domain": "fraud"}), StatusCode::CREATED).await;
    h.post("other-ci", "/v1/models", json!({"name": "risk", "domain": "risk"}), StatusCode::CREATED).await;
    register(&h, "ci", "risk", "v1", json!([{"uri": "s3://lake/loans/2026-10-01", "digest": snap}])).await;
    register(&h, "ci", "risk", "v2", json!([{"uri": "s3://lake/loans/2026-11-01", "digest": other}])).await;
    register(
        &h,
        "ci",
        "fraud",
        "v1",
        json!([{"uri": "s3://lake/a", "digest": snap}, {"uri": "s3://mirror/a", "digest": snap}]),
    )
    .await;
    register(&h, "other-ci", "risk", "v7", json!([{"uri": "s3://globex/loans", "digest": snap}])).await;

    let path = format!("/v1/datasets/{snap}/versions");
    let page = h.get("viewer", &path, StatusCode::OK).await;
    assert_eq!(
        found(&page),
        [
            ("risk".to_owned(), "v1".to_owned(), vec!["s3://lake/loans/2026-10-01".to_owned()]),
            ("fraud".to_owned(), "v1".to_owned(), vec!["s3://lake/a".to_owned(), "s3://mirror/a".to_owned()]),
        ],
        "the caller's tenant only; each version once, with every URI it named"
    );
    // A caller limited to one domain sees that domain's versions only.
    let page = h.get("fraud-ci", &path, StatusCode::OK).await;
    assert_eq!(found(&page).iter().map(|(m, ..)| m.as_str()).collect::<Vec<_>>(), ["fraud"]);
    // Another tenant sees its own use, never acme's.
    let page = h.get("other-admin", &path, StatusCode::OK).await;
    assert_eq!(found(&page).iter().map(|(m, v, _)| format!("{m}@{v}")).collect::<Vec<_>>(), ["risk@v7"]);
    // Paging.
    let first = h.get("viewer", &format!("{path}?limit=1"), StatusCode::OK).await;
    assert_eq!(found(&first).len(), 1);
    let next = first["next"].as_str().unwrap();
    let second = h.get("viewer", &format!("{path}?limit=1&after={next}"), StatusCode::OK).await;
    assert_eq!(found(&second)[0].0, "fraud");
    // Nothing used it / bad input.
    let none = Digest::of(b"never used").to_string();
    assert!(found(&h.get("viewer", &format!("/v1/datasets/{none}/versions"), StatusCode::OK).await).is_empty());
    let bad = h.get("viewer", "/v1/datasets/sha256:xyz/versions", StatusCode::BAD_REQUEST).await;
    assert_eq!(bad["code"], "bad_digest");
    h.get("viewer", &format!("{path}?limit=0"), StatusCode::BAD_REQUEST).await;
    h.get("viewer", &format!("{path}?after=abc"), StatusCode::BAD_REQUEST).await;
}

// The same tests on PostgreSQL + S3.
on_scale_out!(versions_that_used_a_snapshot_within_the_callers_reach,);
