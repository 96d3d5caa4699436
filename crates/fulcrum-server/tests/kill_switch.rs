//! The kill switch's reach over raw bytes, tried the way an attacker or a careless operator
//! would: after a revocation or quarantine, no serving identity gets the version's bytes by
//! digest — files, Range resumes, the manifest and record URIs of an earlier resolve answer —
//! and a `prod` identity never gets a Candidate's. Forensic roles still read them, logged.
//! Bytes altered on the registry's own disk never arrive whole, are recorded as
//! `blob_corrupt`, found by a scrub, and repaired by an upload of the true bytes.

mod common;

use common::Harness;
use fulcrum_core::Digest;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `fraud` v1 Approved behind `production`; the URIs a serving agent was handed for it.
async fn approved(h: &Harness) -> (Digest, Value) {
    h.create_model("ci", "fraud").await;
    let (_, m) = h.register("ci", "fraud", "v1", &[("weights.bin", b"fraud weights v1")]).await;
    h.approve_fully("fraud", "v1").await;
    h.put("rm", "/v1/models/fraud/aliases/production", json!({"version": "v1", "chg_id": "CHG-9"}), StatusCode::OK)
        .await;
    let answer = h.get("agent", "/v1/resolve?ref=fraud@production&env=prod", StatusCode::OK).await;
    assert_eq!(answer["decision"], "permit");
    (m.files()[0].digest, answer["uris"].clone())
}

/// Status and problem code of a GET (with an optional Range) by `who`.
async fn fetch(h: &Harness, who: &str, path: &str, range: Option<&str>) -> (StatusCode, String) {
    let mut rb = h.req(who, Method::GET, path);
    if let Some(r) = range {
        rb = rb.header("range", r);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn a_revoked_versions_bytes_stop_for_serving_and_stay_readable_forensically() {
    let h = Harness::start().await;
    let (file, uris) = approved(&h).await;
    let paths = [
        format!("/v1/blobs/{file}"),
        uris["artifact"].as_str().unwrap().to_owned(),
        uris["attestation"].as_str().unwrap().to_owned(),
    ];
    for p in &paths {
        assert_eq!(fetch(&h, "agent", p, None).await.0, StatusCode::OK, "{p} before the revocation");
    }
    assert_eq!(fetch(&h, "agent", &paths[0], Some("bytes=2-5")).await.0, StatusCode::PARTIAL_CONTENT);

    h.post(
        "bo",
        "/v1/models/fraud/versions/v1/revocation",
        json!({"reason": "fraud ring", "inc_id": "INC-7"}),
        StatusCode::OK,
    )
    .await;
    for who in ["agent", "agent-dev", "rm", "ci", "admin"] {
        for p in &paths {
            assert_eq!(fetch(&h, who, p, None).await, (StatusCode::GONE, "revoked".into()), "{who} GET {p}");
            assert_eq!(
                fetch(&h, who, p, Some("bytes=0-3")).await,
                (StatusCode::GONE, "revoked".into()),
                "{who} Range {p}"
            );
        }
        let head = h.req(who, Method::HEAD, &paths[0]).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::GONE, "{who} HEAD");
    }
    // An investigation still reads them — asked as such, naming its incident — and it is on record.
    for who in ["bo", "auditor"] {
        assert_eq!(fetch(&h, who, &paths[0], None).await.0, StatusCode::FORBIDDEN, "{who}: not as a download");
        let resp = h.req(who, Method::GET, &format!("{}?forensic=INC-7", paths[0])).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{who}");
        assert_eq!(resp.headers()["fulcrum-forensic-read"], "true");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), b"fraud weights v1");
    }
    for who in ["agent", "rm", "viewer"] {
        assert_eq!(
            fetch(&h, who, &format!("{}?forensic=INC-7", paths[0]), None).await.0,
            StatusCode::FORBIDDEN,
            "{who}"
        );
    }
    assert_eq!(fetch(&h, "bo", &format!("{}?forensic=../x", paths[0]), None).await.0, StatusCode::BAD_REQUEST);
    let reads: Vec<Value> =
        h.events("auditor").await.into_iter().filter(|e| e["data"]["event"] == "forensic_read").collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(
        (reads[0]["data"]["inc_id"].as_str(), reads[0]["data"]["actor"].as_str(), reads[0]["data"]["version"].as_str()),
        (Some("INC-7"), Some("bo"), Some("v1"))
    );
    let log = h.get("auditor", "/v1/decisions?path=fulcrum/authz/decision&limit=500", StatusCode::OK).await;
    let forensic: Vec<&Value> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["input"]["action"] == "forensic_read" && d["input"]["resource"]["model"] == "fraud")
        .filter(|d| d["result"]["allow"] == true)
        .collect();
    assert!(forensic.len() >= 2, "each forensic read is a logged decision: {log}");
    assert_eq!(forensic[0]["input"]["resource"]["hold"], "revoked", "{}", forensic[0]);
    // Other tenants still see nothing at all.
    assert_eq!(fetch(&h, "other-admin", &paths[0], None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn quarantine_closes_the_bytes_and_lifting_it_reopens_them() {
    let h = Harness::start().await;
    let (file, _) = approved(&h).await;
    let path = format!("/v1/blobs/{file}");
    h.post(
        "bo",
        "/v1/models/fraud/versions/v1/quarantine",
        json!({"reason": "drift", "inc_id": "INC-8"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(fetch(&h, "agent", &path, None).await, (StatusCode::FORBIDDEN, "quarantined".into()));
    assert_eq!(fetch(&h, "agent", &path, Some("bytes=0-1")).await, (StatusCode::FORBIDDEN, "quarantined".into()));
    // Lifting needs an approval from someone else during the quarantine, and a change id.
    let v = "/v1/models/fraud/versions/v1";
    h.post("ana", &format!("{v}/approvals"), json!({"comment": "drift explained"}), StatusCode::CREATED).await;
    h.call(h.req("bo", Method::DELETE, &format!("{v}/quarantine?chg_id=CHG-10")), StatusCode::OK).await;
    assert_eq!(fetch(&h, "agent", &path, None).await.0, StatusCode::OK);
}

/// A file shared by a revoked version and an Approved one leaves under the Approved one; a
/// Candidate's file does not leave to `prod` (it does to `dev`); an upload no version names
/// leaves only to those who may upload.
#[tokio::test]
async fn bytes_leave_only_for_a_version_the_caller_may_resolve_now() {
    let h = Harness::start().await;
    let (shared, _) = approved(&h).await;
    let candidate = h.upload("ci", b"v2 only").await;
    let files = json!([{"path": "extra.bin", "size": 7, "digest": candidate.to_string()},
                       {"path": "weights.bin", "size": 16, "digest": shared.to_string()}]);
    h.post(
        "ci",
        "/v1/models/fraud/versions",
        json!({"version": "v2", "files": files, "revalidate_by": "2099-01-01T00:00:00Z",
        "model_card": {"owner": "fraud", "intended_use": "scoring"}}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        fetch(&h, "agent", &format!("/v1/blobs/{candidate}"), None).await,
        (StatusCode::FORBIDDEN, "stage_not_allowed".into())
    );
    assert_eq!(fetch(&h, "agent-dev", &format!("/v1/blobs/{candidate}"), None).await.0, StatusCode::OK);
    h.post("bo", "/v1/models/fraud/versions/v1/revocation", json!({"reason": "x", "inc_id": "INC-1"}), StatusCode::OK)
        .await;
    // v1 revoked; v2 (a Candidate) still holds the shared file: dev may load it, prod may not.
    assert_eq!(fetch(&h, "agent-dev", &format!("/v1/blobs/{shared}"), None).await.0, StatusCode::OK);
    assert_eq!(
        fetch(&h, "agent", &format!("/v1/blobs/{shared}"), None).await,
        (StatusCode::FORBIDDEN, "stage_not_allowed".into())
    );
    h.approve_fully("fraud", "v2").await;
    assert_eq!(fetch(&h, "agent", &format!("/v1/blobs/{shared}"), None).await.0, StatusCode::OK);

    let loose = h.upload("ci", b"not registered yet").await;
    assert_eq!(fetch(&h, "agent", &format!("/v1/blobs/{loose}"), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(fetch(&h, "ci", &format!("/v1/blobs/{loose}"), None).await.0, StatusCode::OK);
}

/// Bytes altered on the registry's disk under their digest: a download never ends cleanly
/// (full or ranged), `blob_corrupt` is recorded, later requests are refused, the scrub names
/// the blob, and uploading the true bytes repairs it.
#[tokio::test]
async fn bytes_altered_on_disk_never_arrive_whole() {
    let h = Harness::start().await;
    let (file, _) = approved(&h).await;
    let stored = h.dir.path().join("data/blobs/sha256").join(&file.hex()[..2]).join(&file.hex()[2..]);
    let scrub = h.post("admin", "/v1/blobs/scrub", json!({}), StatusCode::OK).await;
    assert!(scrub["checked"].as_u64().unwrap() >= 3 && scrub["corrupt"].as_array().unwrap().is_empty(), "{scrub}");

    std::fs::write(&stored, b"fraud weights V1").unwrap(); // same size, one byte changed
    let resp = h.req("agent", Method::GET, &format!("/v1/blobs/{file}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the status went out before the last byte was read");
    assert!(resp.bytes().await.is_err(), "the body must not end cleanly");
    let kinds = h.event_kinds("admin").await;
    assert!(kinds.iter().any(|k| k == "blob_corrupt"), "{kinds:?}");
    let ev = h.events("admin").await.into_iter().find(|e| e["data"]["event"] == "blob_corrupt").unwrap();
    assert_eq!(ev["data"]["artifact_digest"], file.to_string());
    assert_eq!(
        fetch(&h, "agent", &format!("/v1/blobs/{file}"), Some("bytes=0-3")).await,
        (StatusCode::INTERNAL_SERVER_ERROR, "blob_corrupt".into())
    );

    // A fresh registry on the same data knows nothing of it yet: a Range read is verified too.
    let dir = h.stop().await;
    let h = Harness::start_in(dir).await;
    let resp =
        h.req("agent", Method::GET, &format!("/v1/blobs/{file}")).header("range", "bytes=0-3").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert!(resp.bytes().await.is_err(), "a ranged read of damaged bytes must not end cleanly");
    let scrub = h.post("admin", "/v1/blobs/scrub?limit=1000", json!({}), StatusCode::OK).await;
    let corrupt = scrub["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{scrub}");
    assert_eq!(corrupt[0]["digest"], file.to_string());
    assert_eq!(corrupt[0]["actual"], Digest::of(b"fraud weights V1").to_string());
    assert_eq!(h.post("viewer", "/v1/blobs/scrub", json!({}), StatusCode::FORBIDDEN).await["code"], "forbidden");

    h.upload_any("ci", b"fraud weights v1").await;
    let resp = h.req("agent", Method::GET, &format!("/v1/blobs/{file}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"fraud weights v1");
    let scrub = h.post("admin", "/v1/blobs/scrub", json!({}), StatusCode::OK).await;
    assert!(scrub["corrupt"].as_array().unwrap().is_empty(), "{scrub}");
}

// The same tests on PostgreSQL + S3.
on_scale_out!(
    a_revoked_versions_bytes_stop_for_serving_and_stay_readable_forensically,
    quarantine_closes_the_bytes_and_lifting_it_reopens_them,
    bytes_leave_only_for_a_version_the_caller_may_resolve_now,
);
