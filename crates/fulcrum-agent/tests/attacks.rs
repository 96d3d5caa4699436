//! The attack suite against a live registry, for the attacks that need one (the pure check's
//! table in `check.rs` covers the rest): extra and missing files, a version revoked while it
//! downloads, a clock that disagrees with the registry's signed time, and a permit replayed after
//! the deny was seen. Each ends in a deny with its machine-readable reason and nothing placed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{agent, as_, fraud_v1, read, register, registry, registry_with_clock};
use fulcrum_core::Digest;
use serde_json::json;
use time::OffsetDateTime;

fn stored(r: &common::Reg, d: &Digest) -> std::path::PathBuf {
    r.dir.path().join("data/blobs/sha256").join(&d.hex()[..2]).join(&d.hex()[2..])
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// An extra file in the destination does not survive a start (the directory is replaced, not
/// merged); an extra file added to the stored manifest, or a file missing from the registry,
/// is a deny and the destination keeps what it had.
#[tokio::test]
async fn extra_and_missing_files_are_denied_and_nothing_is_merged() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one"), ("config.json", b"{}")]).await;
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("backdoor.py"), b"import os").unwrap();
    let state = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    let p = a.fetch("fraud@production", "prod", &dest).await.unwrap();
    assert_eq!(listing(&dest), ["config.json", "weights.bin"], "exactly the signed files");

    // The manifest with one more file, served by a man in the middle: its bytes no longer hash
    // to the signed digest.
    let artifact: Digest = p.document.artifact_digest.parse().unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(stored(&r, &artifact)).unwrap()).unwrap();
    m["files"]
        .as_array_mut()
        .unwrap()
        .push(json!({"path": "extra.py", "size": 3, "digest": Digest::of(b"bad").to_string()}));
    let altered: &'static [u8] = serde_json::to_vec(&m).unwrap().leak();
    let fresh = tempfile::tempdir().unwrap();
    let mitm = common::lying_proxy(&r.url, artifact, altered).await;
    let b = common::agent_via(&r, &mitm, fresh.path()).await;
    let other = out.path().join("other");
    let e = b.fetch("fraud@production", "prod", &other).await.unwrap_err();
    assert_eq!(e.code(), "artifact_tampered", "{e}");
    assert!(!other.exists());
    // The same change on the registry's own disk: the registry never hands it out whole.
    std::fs::write(stored(&r, &artifact), altered).unwrap();
    let again = tempfile::tempdir().unwrap();
    let e = agent(&r, again.path()).await.fetch("fraud@production", "prod", &other).await;
    assert!(e.is_err() && !other.exists(), "{e:?}");

    // A file the manifest names is gone from the registry.
    let r2 = registry().await;
    as_(&r2, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r2, "v1", &[("weights.bin", b"weights-one"), ("config.json", b"{}")]).await;
    std::fs::remove_file(stored(&r2, &Digest::of(b"{}"))).unwrap();
    let s2 = tempfile::tempdir().unwrap();
    let c = agent(&r2, s2.path()).await;
    let e = c.fetch("fraud@production", "prod", &dest).await.unwrap_err();
    assert!(!e.code().is_empty() && e.code() != "permit", "{e}");
    assert_eq!(listing(&dest), ["config.json", "weights.bin"], "the destination keeps what it had");
    assert_eq!(read(&dest, "weights.bin"), b"weights-one");
}

/// A version revoked while its bytes download is not placed: the agent asks again before it
/// places anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_revoked_during_its_download_is_not_placed() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let big: Vec<u8> = (0..96u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let big_digest = Digest::of(&big);
    register(&r, "v2", &[("weights.bin", &big)]).await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model");
    let a = Arc::new(agent(&r, state.path()).await);
    let partial = a.state.partial(&big_digest);
    let (a2, d2) = (a.clone(), dest.clone());
    let fetch = tokio::spawn(async move { a2.fetch("fraud@production", "prod", &d2).await });
    let start = Instant::now();
    while !partial.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "the download never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/v2/revocation", &json!({"reason": "compromised", "inc_id": "INC-12"}))
        .await
        .unwrap();
    let e = fetch.await.unwrap().unwrap_err();
    assert_eq!(e.code(), "registry_deny", "{e}");
    assert!(!dest.exists(), "nothing placed");
}

/// The registry's signed time ten minutes ahead of this machine's clock: beyond the tolerance,
/// a deny (`clock_skew`); within it, a permit.
#[tokio::test]
async fn a_clock_beyond_the_tolerance_is_a_deny() {
    #[derive(Debug)]
    struct Ahead;
    impl fulcrum_server::clock::Clock for Ahead {
        fn now(&self) -> OffsetDateTime {
            OffsetDateTime::now_utc() + time::Duration::minutes(10)
        }
    }
    let r = registry_with_clock(Arc::new(Ahead)).await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    let e = a.fetch("fraud@production", "prod", &out.path().join("model")).await.unwrap_err();
    assert_eq!(e.code(), "clock_skew", "{e}");
    assert!(!out.path().join("model").exists());
    let mut tolerant = agent(&r, state.path()).await;
    tolerant.max_skew = time::Duration::minutes(15);
    tolerant.fetch("fraud@production", "prod", &out.path().join("model")).await.unwrap();
}

/// SPEC §4: never accept an answer older than one already seen — a deny included. Permit for
/// `fraud@v1`, then a revocation and the signed deny, then the first permit (still unexpired,
/// still validly signed) played back by a man in the middle, and again from the agent's own
/// kept answer with the registry down: both are replays, nothing is placed.
#[tokio::test]
async fn a_permit_replayed_after_the_deny_was_seen_is_refused() {
    let mut r = fraud_v1().await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    a.fetch("fraud@v1", "prod", &out.path().join("first")).await.unwrap();
    // What a man in the middle recorded: the permit, byte for byte, with its signature.
    let (body, kid, sig) = as_(&r, "agent").resolve_unverified("fraud@v1", "prod").await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("\"decision\":\"permit\""));

    as_(&r, "bo")
        .post("/v1/models/fraud/versions/v1/revocation", &json!({"reason": "fraud ring", "inc_id": "INC-9"}))
        .await
        .unwrap();
    let e = a.fetch("fraud@v1", "prod", &out.path().join("second")).await.unwrap_err();
    assert_eq!(e.code(), "registry_deny", "{e}");

    // The recorded permit, served by a replaying endpoint.
    let replay = axum::Router::new().route(
        "/v1/resolve",
        axum::routing::get(move || {
            let (body, kid, sig) = (body.clone(), kid.clone(), sig.clone());
            async move {
                (
                    [
                        ("content-type", "application/json".to_owned()),
                        ("fulcrum-key-id", kid),
                        ("fulcrum-signature", sig),
                    ],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, replay).await });
    let mitm = fulcrum_agent::fetch::Agent::new(
        fulcrum_client::Client::new(&url, Some("tok-agent".into())).unwrap(),
        as_(&r, "agent").trust_bundle().await.unwrap(),
        fulcrum_agent::state::StateDir::open(state.path()).unwrap(),
        time::Duration::seconds(30),
        "test-agent".into(),
    );
    let e = mitm.fetch("fraud@v1", "prod", &out.path().join("third")).await.unwrap_err();
    assert_eq!(e.code(), "rollback_replay", "{e}");
    assert!(!out.path().join("third").exists());

    // The registry down: the kept permit is older than the deny the agent has seen.
    r.down().await;
    let e = a.fetch("fraud@v1", "prod", &out.path().join("fourth")).await.unwrap_err();
    assert_eq!(e.code(), "rollback_replay", "{e}");
    assert!(!out.path().join("fourth").exists());
}

/// An `oci://…@sha256:` source is looked up in the registry, but the lookup is only a hint: a
/// man in the middle answering it with another version (one never registered from that OCI
/// manifest) does not get it placed — the signed release record must name the OCI digest.
#[tokio::test]
async fn a_lying_oci_lookup_cannot_choose_what_is_served() {
    let r = fraud_v1().await;
    let v = as_(&r, "rm").get("/v1/models/fraud/versions/v1").await.unwrap();
    let artifact = v["artifact_digest"].as_str().unwrap().to_owned();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let lie = format!("/v1/oci-sources/{digest}/versions");
    let body = serde_json::to_vec(&json!([{"model": "fraud", "domain": "fraud", "version": "v1", "stage": "Approved",
        "hold": "none", "artifact_digest": artifact, "repository": "registry.example.com/models/fraud",
        "registered_at": "2026-12-06T00:00:00Z"}]))
    .unwrap();
    let mitm = common::proxy(
        &r.url,
        Arc::new(move |t: &str| {
            (t == lie).then(|| (vec![("content-type".to_owned(), "application/json".to_owned())], body.clone()))
        }),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let a = common::agent_via(&r, &mitm, state.path()).await;
    let origin =
        fulcrum_agent::fetch::OciOrigin::parse(&format!("registry.example.com/models/fraud@{digest}")).unwrap();
    let dest = state.path().join("model");
    let e = a.fetch_oci(&origin, "prod", &dest).await.unwrap_err();
    assert_eq!(e.code(), "release_unverified", "{e}");
    assert!(e.to_string().contains("was not registered from oci://"), "{e}");
    assert!(!dest.exists(), "nothing placed");
}
