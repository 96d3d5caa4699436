//! Registering from an OCI registry on every backend (the embedded default, and PostgreSQL + S3
//! under `scale_out`): a ModelPack's raw layers and a modelcar's `/models` files land in the
//! blob store byte for byte and are served back through the download gate; an image index is
//! refused with its reason and stores no version.

mod common;

use common::Harness;
use fulcrum_oci::publish::{self, FileSource};
use fulcrum_oci::remote::{Remote, Settings, Target};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn oci_artifacts_land_in_the_blob_store_byte_for_byte() {
    let Some(reg) = fulcrum_testkit::oci::Registry::start() else { return };
    let host = reg.host.clone();
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| {
        c.oci = Settings { insecure: vec![host], basic: None };
    })
    .await;
    h.create_model("ci", "risk").await;
    let remote = Remote::new(&Settings { insecure: vec![reg.host.clone()], basic: None });
    let work = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = work.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let (w, c) = (file("w", &vec![5u8; 200_000]), file("c", b"{\"k\":1}"));
    let t = Target::parse(&format!("{}/risk/model:v1", reg.host)).unwrap();
    let sources = [FileSource { path: "weights/model.bin", local: &w }, FileSource { path: "config.json", local: &c }];
    let (digest, _) =
        publish::modelpack(&remote, &t, "risk", "1", &sources, Default::default(), Some("v1")).await.unwrap();
    let card = json!({"owner": "risk", "intended_use": "scoring"});
    let v = h
        .post(
            "ci",
            "/v1/models/risk/oci-imports",
            json!({"version": "1", "oci": format!("{}/risk/model:v1", reg.host), "model_card": card}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v["release"]["release_gate"]["oci"]["digest"], digest.as_str());
    // Which version came from that OCI manifest: an index lookup, in the caller's tenant only.
    let found = h.get("agent", &format!("/v1/oci-sources/{digest}/versions"), StatusCode::OK).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!((found[0]["model"].as_str(), found[0]["version"].as_str()), (Some("risk"), Some("1")));
    assert_eq!(found[0]["repository"], format!("{}/risk/model", reg.host));
    assert_eq!(found[0]["artifact_digest"], v["artifact_digest"]);
    let other = h.get("other-admin", &format!("/v1/oci-sources/{digest}/versions"), StatusCode::OK).await;
    assert_eq!(other, json!([]), "another tenant sees nothing");
    h.get("agent", "/v1/oci-sources/sha256:nothex/versions", StatusCode::BAD_REQUEST).await;
    for f in v["files"].as_array().unwrap() {
        let body = h
            .req("ci", reqwest::Method::GET, &format!("/v1/blobs/{}", f["digest"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let expected = std::fs::read(if f["path"] == "config.json" { &c } else { &w }).unwrap();
        assert_eq!(body.as_ref(), expected.as_slice(), "{}", f["path"]);
    }

    // A modelcar: only /models is the model.
    let t = Target::parse(&format!("{}/risk/car:v1", reg.host)).unwrap();
    let os = file("os", b"ID=distroless");
    publish::modelcar(
        &remote,
        &t,
        &[FileSource { path: "etc/os-release", local: &os }],
        &[FileSource { path: "m.onnx", local: &c }],
        "v1",
    )
    .await
    .unwrap();
    let v = h
        .post(
            "ci",
            "/v1/models/risk/oci-imports",
            json!({"version": "2", "oci": format!("{}/risk/car:v1", reg.host)}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v["files"].as_array().unwrap().len(), 1);
    assert_eq!(v["files"][0]["path"], "m.onnx");

    // An image index names several manifests: refused, nothing stored.
    let model = Target::parse(&format!("{}/risk/model:v1", reg.host)).unwrap();
    let size = remote.manifest(&model, &digest).await.unwrap().len();
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": fulcrum_oci::layout::OCI_INDEX,
        "manifests": [{"mediaType": fulcrum_oci::layout::OCI_MANIFEST, "digest": digest, "size": size}]}))
    .unwrap();
    remote.push_manifest_bytes(&model, index, fulcrum_oci::layout::OCI_INDEX, Some("multi")).await.unwrap();
    let p = h
        .post(
            "ci",
            "/v1/models/risk/oci-imports",
            json!({"version": "3", "oci": format!("{}/risk/model:multi", reg.host)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p["errors"][0]["detail"].as_str().unwrap().starts_with("oci_index"), "{p}");
    h.get("ci", "/v1/models/risk/versions/3", StatusCode::NOT_FOUND).await;
    // The JSON route (with its deadline) points at the OCI route.
    let p = h
        .post(
            "ci",
            "/v1/models/risk/versions",
            json!({"version": "3", "oci": format!("{}/risk/car:v1", reg.host)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("oci-imports"), "{p}");
}

on_scale_out!(oci_artifacts_land_in_the_blob_store_byte_for_byte);
