//! The agent against a scale-out registry (PostgreSQL + S3 on SeaweedFS): the registry decides,
//! object storage serves the bytes through short-lived pre-signed URLs, the agent checks every
//! byte against the signed digest and resumes interrupted downloads with Range.

mod common;

use common::{agent, as_, read, register, registry_tuned};
use fulcrum_core::Digest;
use object_store::ObjectStoreExt as _;
use serde_json::json;

struct ScaleOut(fulcrum_server::testing::ScaleOut);

impl ScaleOut {
    async fn start() -> Option<Self> {
        fulcrum_server::testing::ScaleOut::start(false).await.map(Self)
    }

    fn tune(&self) -> impl FnOnce(&mut fulcrum_server::Config) + use<> {
        self.0.tune()
    }

    /// Someone with write access to the bucket replaces an object behind the registry's back.
    async fn overwrite(&self, d: &Digest, bytes: &[u8]) {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("models")
            .with_region("us-east-1")
            .with_endpoint(self.0.endpoint())
            .with_allow_http(true)
            .with_access_key_id("fulcrum")
            .with_secret_access_key("fulcrum-secret")
            .build()
            .unwrap();
        s3.put(&object_store::path::Path::from(format!("sha256/{}", d.hex())), bytes.to_vec().into()).await.unwrap();
    }
}

async fn counter(r: &common::Reg, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", r.url)).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// 3 MiB of weights: the bytes come from object storage, not through the registry; a tampered
/// object is refused by the agent's own check; nothing is placed then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_come_from_object_storage_and_are_still_checked() {
    let Some(s) = ScaleOut::start().await else { return };
    let r = registry_tuned(s.tune()).await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let weights: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let weights: &'static [u8] = Box::leak(weights.into_boxed_slice());
    register(&r, "v1", &[("weights.bin", weights), ("config.json", b"{}")]).await;

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model");
    let state = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    let served_before = counter(&r, "fulcrum_blob_bytes_served_total").await;
    let permit = a.fetch("fraud@production", "prod", &dest).await.unwrap();
    assert_eq!(read(&dest, "weights.bin"), weights);
    assert_eq!(permit.document.version, "v1");
    let served = counter(&r, "fulcrum_blob_bytes_served_total").await - served_before;
    assert!(served < 64 * 1024, "the registry itself sent {served} bytes of a 3 MiB model");
    assert!(counter(&r, "fulcrum_blob_redirects_total").await >= 3, "manifest and files by pre-signed URL");

    // Tampered object: the agent refuses it, the previous placement stays.
    let d = Digest::of(weights);
    let mut forged = weights.to_vec();
    forged[12345] ^= 1;
    s.overwrite(&d, &forged).await;
    let state = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    let dest2 = out.path().join("again");
    let e = a.fetch("fraud@production", "prod", &dest2).await.unwrap_err();
    assert_eq!(e.code(), "artifact_tampered", "{e}");
    assert!(!dest2.join("weights.bin").exists(), "nothing placed");

    // A revoked version's bytes get no URL at all: the access decision comes first.
    s.overwrite(&d, weights).await;
    as_(&r, "bo")
        .post("/v1/models/fraud/versions/v1/revocation", &json!({"reason": "CVE", "inc_id": "INC-9"}))
        .await
        .unwrap();
    let ci = as_(&r, "agent");
    let got = ci.download_blob(&d, &out.path().join("after-revoke"), weights.len() as u64).await.unwrap_err();
    assert!(got.to_string().contains("revoked"), "{got}");
}

/// An interrupted download resumes: the client asks the registry with Range, is sent to object
/// storage with it, and only the missing bytes travel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_resumes_from_object_storage() {
    let Some(s) = ScaleOut::start().await else { return };
    let r = registry_tuned(s.tune()).await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let weights: Vec<u8> = (0..2u32 << 20).map(|i| (i * 13 % 241) as u8).collect();
    let weights: &'static [u8] = Box::leak(weights.into_boxed_slice());
    register(&r, "v1", &[("weights.bin", weights)]).await;
    let d = Digest::of(weights);
    let part = tempfile::tempdir().unwrap();
    let dest = part.path().join("weights.bin");
    let have = 1_500_000usize;
    std::fs::write(&dest, &weights[..have]).unwrap();
    let received = std::sync::atomic::AtomicU64::new(0);
    let n = as_(&r, "agent")
        .download_blob_counted(&d, &dest, weights.len() as u64, &|c| {
            received.fetch_add(c, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .unwrap();
    assert_eq!(n, weights.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), weights);
    assert_eq!(received.into_inner(), (weights.len() - have) as u64, "only the missing bytes travelled");
}
