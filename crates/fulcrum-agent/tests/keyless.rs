//! Keyless model signatures at serving time, offline: a version whose release gate accepted a
//! Sigstore keyless model-signing bundle (the production-signed vector) is fetched by the real
//! `fulcrum-agent` binary, which verifies that bundle again against the Sigstore root its pinned
//! trust bundle carries — with every proxy pointing nowhere, so nothing but the registry on
//! loopback can be reached. An agent pinned to a bundle carrying another root (a key-admin's
//! mistake, or an attacker's root) refuses the same version with `signature_unverified` and
//! places nothing.

mod common;

use std::path::Path;

use common::{approve_and_alias, as_, registry_tuned};
use fulcrum_server::release::ReleasePolicy;
use fulcrum_verify::keyless::{KeylessSigner, PRODUCTION_TRUSTED_ROOT, TrustedRoot};
use serde_json::json;

const OMS_ISSUER: &str = "https://sigstore.verify.ibm.com/oauth2";
const OMS_IDENTITY: &str = "stefanb@us.ibm.com";

fn vectors() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// A registry whose release policy requires a signature by the vector's keyless identity.
async fn keyless_registry() -> common::Reg {
    registry_tuned(|c| {
        c.release_policy = ReleasePolicy {
            require_signature: true,
            keyless_signers: vec![KeylessSigner::exact(OMS_ISSUER, OMS_IDENTITY)],
            allowed_ignore_paths: vec!["ignore-me".into(), "model.sig".into()],
            ..Default::default()
        };
    })
    .await
}

async fn register_keyless(r: &common::Reg) {
    let ci = as_(r, "ci");
    ci.post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let dir = vectors().join("model-signing-keyless/model");
    let mut files = vec![];
    for name in ["signme-1", "signme-2"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let d = ci.upload_bytes(bytes.clone()).await.unwrap();
        files.push(json!({"path": name, "size": bytes.len(), "digest": d.to_string()}));
    }
    let sig = ci.upload_bytes(std::fs::read(dir.join("model.sig")).unwrap()).await.unwrap();
    let v = ci
        .post(
            "/v1/models/fraud/versions",
            &json!({"version": "v1", "files": files, "signatures": [sig.to_string()],
                "model_card": {"owner": "fraud", "intended_use": "scoring"}, "revalidate_by": "2099-01-01T00:00:00Z"}),
        )
        .await
        .unwrap();
    assert_eq!(v["release"]["release_gate"]["artifact_signature"]["keyless"]["identity"], OMS_IDENTITY, "{v}");
    approve_and_alias(r, "fraud", "v1", "production").await;
}

async fn import_root(r: &common::Reg, text: &str, note: &str) {
    as_(r, "keys").post("/v1/trust-roots/sigstore", &json!({"trusted_root": text, "note": note})).await.unwrap();
}

/// The agent binary, with no route anywhere but loopback.
fn agent_cmd(r: &common::Reg, work: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_fulcrum-agent"));
    c.env_remove("FULCRUM_ENV");
    for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        c.env(var, "http://127.0.0.1:9");
    }
    c.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    c.arg("--registry")
        .arg(&r.url)
        .arg("--token-file")
        .arg(work.join("token"))
        .arg("--bundle")
        .arg(work.join("bundle.json"))
        .arg("--state")
        .arg(work.join("state"));
    c
}

async fn pin(r: &common::Reg, work: &Path) -> serde_json::Value {
    std::fs::write(work.join("token"), "tok-agent\n").unwrap();
    let out = agent_cmd(r, work).args(["pin", work.join("bundle.json").to_str().unwrap()]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(work.join("bundle.json")).unwrap()).unwrap()
}

async fn fetch(r: &common::Reg, work: &Path, dest: &Path) -> std::process::Output {
    agent_cmd(r, work)
        .args(["fetch", "--ref", "fraud@production", "--env", "prod", "--dest", dest.to_str().unwrap()])
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_agent_verifies_a_keyless_signature_offline_with_the_pinned_root_only() {
    let r = keyless_registry().await;
    import_root(&r, PRODUCTION_TRUSTED_ROOT, "production root, as shipped").await;
    register_keyless(&r).await;

    // Pinned to the bundle carrying the production root: permitted, files placed.
    let good = tempfile::tempdir().unwrap();
    let pinned = pin(&r, good.path()).await;
    assert_eq!(pinned["sigstore"]["digest"], TrustedRoot::production().digest().as_str());
    let dest = good.path().join("model");
    let out = fetch(&r, good.path(), &dest).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let src = vectors().join("model-signing-keyless/model");
    for f in ["signme-1", "signme-2"] {
        assert_eq!(std::fs::read(dest.join(f)).unwrap(), std::fs::read(src.join(f)).unwrap());
    }

    // A key-admin puts another Sigstore root in force (a private instance's — or an attacker's).
    let other = std::fs::read_to_string(
        vectors()
            .join("sigstore-conformance/test/assets/bundle-verify/intoto-with-custom-trust-root/trusted_root.json"),
    )
    .unwrap();
    import_root(&r, &other, "a private Sigstore instance").await;
    let bad = tempfile::tempdir().unwrap();
    let pinned = pin(&r, bad.path()).await;
    assert_ne!(pinned["sigstore"]["digest"], TrustedRoot::production().digest().as_str());
    let dest = bad.path().join("model");
    let out = fetch(&r, bad.path(), &dest).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a deny exits 2: {stderr}");
    assert!(stderr.contains("signature_unverified"), "{stderr}");
    assert!(!dest.exists(), "nothing placed");
    let denies = as_(&r, "rm").get("/v1/events?after=0&limit=1000").await.unwrap();
    let reasons: Vec<String> = denies["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["event"] == "startup_deny")
        .map(|e| e["data"]["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("signature_unverified")), "the deny is reported: {reasons:?}");

    // The agent pinned to the production root still starts it: what is pinned decides.
    let again = good.path().join("model-again");
    let out = fetch(&r, good.path(), &again).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn an_agent_pinned_before_any_root_follows_the_endorsed_chain_or_denies() {
    let r = keyless_registry().await;
    // Pinned before any Sigstore root was imported.
    let work = tempfile::tempdir().unwrap();
    let pinned = pin(&r, work.path()).await;
    assert!(pinned.get("sigstore").is_none());
    import_root(&r, PRODUCTION_TRUSTED_ROOT, "production root, as shipped").await;
    register_keyless(&r).await;
    // The newer bundle is endorsed by the same registry key: the agent adopts it and verifies.
    let dest = work.path().join("model");
    let out = fetch(&r, work.path(), &dest).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dest.join("signme-1").exists());
}
