//! Reference profiles registered with a version (SPEC §12): checked at registration (a profile a
//! gateway could not bin against is refused with the reason, and nothing is stored), covered by
//! the signed release record, and readable by serving once the version may be loaded.

mod common;

use common::Harness;
use fulcrum_core::Digest;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn profile() -> Vec<u8> {
    let cells = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let p = fulcrum_core::drift::Profile::build(
        &[
            ("amount".into(), cells(&["1", "2", "3", "4", "5", "6", "7", "8"])),
            ("country".into(), cells(&["PT", "PT", "ES", "FR", "PT", "ES", "PT", "PT"])),
        ],
        4,
    )
    .unwrap();
    p.to_bytes()
}

/// Register `version` of `fraud` (one small file) with `extra` fields in the body.
async fn register(h: &Harness, version: &str, extra: Value, expect: StatusCode) -> Value {
    let weights = format!("weights {version}");
    let w = h.upload_any("ci", weights.as_bytes()).await;
    let mut body = json!({"version": version, "files": [{"path": "w.bin", "size": weights.len(), "digest": w.to_string()}],
                          "model_card": {"owner": "fraud", "intended_use": "scoring"}, "revalidate_by": "2099-01-01T00:00:00Z"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    h.post("ci", "/v1/models/fraud/versions", body, expect).await
}

#[tokio::test]
async fn a_version_carries_a_checked_reference_profile() {
    let h = Harness::start().await;
    h.create_model("ci", "fraud").await;
    let bytes = profile();
    let d = h.upload("ci", &bytes).await;
    let v = register(&h, "v1", json!({"reference_profile": d.to_string()}), StatusCode::CREATED).await;
    assert_eq!(v["release"]["reference_profile"]["digest"], d.to_string(), "{v}");
    assert_eq!(v["release"]["reference_profile"]["features"], json!(["amount", "country"]));

    // Refused, with the reason, and nothing stored: not a profile, no such blob, a malformed digest.
    let junk = h.upload("ci", br#"{"format":"fulcrum.profile.v1","rows":1,"features":[{"name":"x","kind":"numeric","edges":[2,1],"proportions":[0.2,0.3,0.5]}]}"#).await;
    for (field, check) in [
        (junk.to_string(), "reference_profile_invalid"),
        (Digest::of(b"never uploaded").to_string(), "reference_profile_missing"),
        ("sha256:zz".to_owned(), "reference_profile_digest_invalid"),
    ] {
        let p = register(&h, "v2", json!({"reference_profile": field}), StatusCode::UNPROCESSABLE_ENTITY).await;
        let checks: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["check"].as_str().unwrap()).collect();
        assert!(checks.iter().any(|c| c.contains(check)), "{check}: {p}");
    }
    let versions = h.get("ci", "/v1/models/fraud/versions", StatusCode::OK).await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 1, "refused registrations stored nothing");

    // Another tenant's upload of the same bytes is not this tenant's blob.
    let other = h
        .req("other-ci", Method::PUT, &format!("/v1/blobs/{}", Digest::of(b"only theirs")))
        .body(&b"only theirs"[..])
        .send()
        .await
        .unwrap();
    assert!(other.status().is_success());
    let p = register(
        &h,
        "v2",
        json!({"reference_profile": Digest::of(b"only theirs").to_string()}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(p.to_string().contains("reference_profile_missing"), "{p}");

    // Serving may read the profile once the version may be loaded in its environment, like every
    // other blob of the version.
    let read = |who: &'static str| h.req(who, Method::GET, &format!("/v1/blobs/{d}")).send();
    assert_eq!(
        read("agent").await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "a Candidate's evidence is not for prod serving"
    );
    h.approve_fully("fraud", "v1").await;
    let r = read("agent").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
}
