//! The release gate with an enforcing policy: a version registers only with a model-signing
//! bundle by a trusted CI key covering exactly its files, SLSA provenance from a trusted builder
//! for its artifact digest, and an SBOM. Each failure is named in the 422; nothing is stored.

mod common;

use common::Harness;
use fulcrum_core::{Digest, FileEntry, Manifest};
use fulcrum_server::release::ReleasePolicy;
use fulcrum_sign::{Alg, LocalKey, Signer};
use fulcrum_verify::model_signing::{self, SignOptions};
use fulcrum_verify::slsa::{self, TrustedBuilder};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BUILDER: &str = "https://ci.bank.example/builders/trainer@v2";
const BUILD_TYPE: &str = "https://ci.bank.example/build-types/train@v1";
const SBOM: &[u8] =
    br#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"name":"torch","version":"2.5.0"}]}"#;

struct Kit {
    h: Harness,
    ci: LocalKey,
    builder: LocalKey,
    keys: tempfile::TempDir,
}

async fn start() -> Kit {
    let keys = tempfile::tempdir().unwrap();
    let ci = LocalKey::generate(&keys.path().join("ci"), Alg::EcdsaP256Sha256).unwrap();
    let builder = LocalKey::generate(&keys.path().join("builder"), Alg::EcdsaP256Sha256).unwrap();
    let policy = ReleasePolicy {
        require_signature: true,
        require_provenance: true,
        require_sbom: true,
        signers: vec![ci.public_key().clone()],
        builders: vec![TrustedBuilder {
            id: BUILDER.into(),
            build_types: vec![BUILD_TYPE.into()],
            signers: vec![builder.public_key().clone()],
        }],
        allowed_ignore_paths: vec![],
        keyless_signers: vec![],
    };
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| c.release_policy = policy).await;
    h.create_model("ci", "risk").await;
    Kit { h, ci, builder, keys }
}

/// A model directory, its manifest, and everything CI would submit for it.
struct Release {
    files: Vec<(String, Vec<u8>)>,
    bundle: Vec<u8>,
    provenance: Vec<u8>,
    sbom: Vec<u8>,
}

fn release(k: &Kit, files: &[(&str, &[u8])]) -> Release {
    release_with(k, files, &SignOptions::default())
}

fn release_with(k: &Kit, files: &[(&str, &[u8])], opts: &SignOptions) -> Release {
    let dir = tempfile::tempdir().unwrap();
    for (p, b) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
    }
    let bundle = model_signing::sign(dir.path(), &k.ci, opts).unwrap();
    let manifest = manifest_of(&files.iter().map(|(p, b)| ((*p).to_owned(), b.to_vec())).collect::<Vec<_>>());
    let provenance = slsa::attest(
        "risk",
        &manifest.digest().hex(),
        BUILDER,
        BUILD_TYPE,
        json!({"repo": "git+https://scm/risk"}),
        Some("run-7"),
        &k.builder,
    )
    .unwrap();
    Release {
        files: files.iter().map(|(p, b)| ((*p).to_owned(), b.to_vec())).collect(),
        bundle,
        provenance,
        sbom: SBOM.to_vec(),
    }
}

fn manifest_of(files: &[(String, Vec<u8>)]) -> Manifest {
    Manifest::new(
        files.iter().map(|(p, b)| FileEntry { path: p.clone(), size: b.len() as u64, digest: Digest::of(b) }).collect(),
    )
    .unwrap()
}

async fn submit(h: &Harness, version: &str, r: &Release, expect: StatusCode) -> Value {
    for (_, b) in &r.files {
        let d = Digest::of(b);
        let resp = h.req("ci", reqwest::Method::PUT, &format!("/v1/blobs/{d}")).body(b.clone()).send().await.unwrap();
        assert!(resp.status().is_success());
    }
    let mut body = json!({"version": version, "files": manifest_of(&r.files).files()});
    if !r.bundle.is_empty() {
        body["signatures"] = json!([h.upload_any("ci", &r.bundle).await.to_string()]);
    }
    if !r.provenance.is_empty() {
        body["attestations"] = json!([h.upload_any("ci", &r.provenance).await.to_string()]);
    }
    if !r.sbom.is_empty() {
        body["sbom"] = json!(h.upload_any("ci", &r.sbom).await.to_string());
    }
    h.post("ci", "/v1/models/risk/versions", body, expect).await
}

fn failed_checks(p: &Value) -> Vec<String> {
    assert_eq!(p["code"], "release_gate_failed", "{p}");
    p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!("{}:{}", e["check"].as_str().unwrap(), e["detail"].as_str().unwrap().split(':').next().unwrap())
        })
        .collect()
}

const FILES: &[(&str, &[u8])] = &[("weights.bin", b"weights-v1"), ("config/model.json", b"{\"layers\":12}")];

/// A signature over shards (or another hash than SHA-256) cannot be checked from the digests the
/// blob store keeps: the gate reads the stored bytes (on S3, from a local view it downloads),
/// and a byte that differs from what was signed is still caught.
#[tokio::test]
async fn a_shard_signature_is_checked_against_the_stored_bytes() {
    let k = start().await;
    let opts = SignOptions {
        method: fulcrum_verify::modeldir::Method::Shards(4),
        alg: fulcrum_verify::modeldir::HashAlg::Blake2b,
        signature_path: None,
    };
    let r = release_with(&k, FILES, &opts);
    let v = submit(&k.h, "v1", &r, StatusCode::CREATED).await;
    assert_eq!(v["release"]["release_gate"]["artifact_signature"]["method"], "shards", "{v}");
    // The same signature over other bytes for one file: refused, by name.
    let mut other = release_with(&k, &[("weights.bin", b"weights-v2"), FILES[1]], &opts);
    other.bundle = r.bundle.clone();
    let p = submit(&k.h, "v2", &other, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(failed_checks(&p).iter().any(|c| c.starts_with("artifact_signature:")), "{p}");
}

#[tokio::test]
async fn a_fully_evidenced_release_registers_and_is_attested() {
    let k = start().await;
    let r = release(&k, FILES);
    let v = submit(&k.h, "v1", &r, StatusCode::CREATED).await;
    let gate = &v["release"]["release_gate"];
    assert_eq!(gate["mode"], "enforced");
    assert_eq!(gate["artifact_signature"]["signer"], k.ci.public_key().fingerprint());
    assert_eq!(gate["provenance"][0]["builder_id"], BUILDER);
    assert_eq!(gate["sbom"]["format"], "cyclonedx");
    let _ = &k.keys;
}

#[tokio::test]
async fn each_gate_failure_is_named_and_nothing_is_stored() {
    let k = start().await;
    let good = release(&k, FILES);
    let stranger = LocalKey::generate(&k.keys.path().join("stranger"), Alg::EcdsaP256Sha256).unwrap();

    let mut cases: Vec<(&str, Release, Vec<&str>)> = Vec::new();
    // Nothing submitted: all three requirements are listed at once.
    cases.push((
        "nothing",
        Release { bundle: vec![], provenance: vec![], sbom: vec![], ..release(&k, FILES) },
        vec!["artifact_signature:missing", "provenance:missing", "sbom:missing"],
    ));
    // The signature covers other bytes than those uploaded.
    let mut tampered = release(&k, FILES);
    tampered.files[0].1 = b"weights-v1-backdoored".to_vec();
    tampered.provenance = slsa::attest(
        "risk",
        &manifest_of(&tampered.files).digest().hex(),
        BUILDER,
        BUILD_TYPE,
        json!({}),
        None,
        &k.builder,
    )
    .unwrap();
    cases.push(("tampered", tampered, vec!["artifact_signature:hash_mismatch"]));
    // An extra file the signature does not cover.
    let mut extra = release(&k, FILES);
    extra.files.push(("loader.py".into(), b"import os".to_vec()));
    extra.provenance = slsa::attest(
        "risk",
        &manifest_of(&extra.files).digest().hex(),
        BUILDER,
        BUILD_TYPE,
        json!({}),
        None,
        &k.builder,
    )
    .unwrap();
    cases.push(("extra file", extra, vec!["artifact_signature:extra_files"]));
    // Signed by a key the policy does not trust.
    let mut wrong_key = release(&k, FILES);
    let d = tempfile::tempdir().unwrap();
    for (p, b) in FILES {
        std::fs::create_dir_all(d.path().join(p).parent().unwrap()).unwrap();
        std::fs::write(d.path().join(p), b).unwrap();
    }
    wrong_key.bundle = model_signing::sign(d.path(), &stranger, &SignOptions::default()).unwrap();
    cases.push(("untrusted signer", wrong_key, vec!["artifact_signature:key_mismatch"]));
    // Provenance from an unknown builder, for another artifact, or signed by a stranger.
    let mut evil_builder = release(&k, FILES);
    evil_builder.provenance = slsa::attest(
        "risk",
        &manifest_of(&evil_builder.files).digest().hex(),
        "https://evil/builder",
        BUILD_TYPE,
        json!({}),
        None,
        &k.builder,
    )
    .unwrap();
    cases.push(("untrusted builder", evil_builder, vec!["provenance:untrusted_builder"]));
    let mut other_subject = release(&k, FILES);
    other_subject.provenance =
        slsa::attest("risk", &"ab".repeat(32), BUILDER, BUILD_TYPE, json!({}), None, &k.builder).unwrap();
    cases.push(("other subject", other_subject, vec!["provenance:subject_mismatch"]));
    let mut forged = release(&k, FILES);
    forged.provenance = slsa::attest(
        "risk",
        &manifest_of(&forged.files).digest().hex(),
        BUILDER,
        BUILD_TYPE,
        json!({}),
        None,
        &stranger,
    )
    .unwrap();
    cases.push(("forged provenance", forged, vec!["provenance:signature_invalid"]));
    let mut bad_sbom = release(&k, FILES);
    bad_sbom.sbom = b"{\"not\":\"an sbom\"}".to_vec();
    cases.push(("bad sbom", bad_sbom, vec!["sbom:sbom_invalid"]));

    for (i, (what, r, expect)) in cases.iter().enumerate() {
        let p = submit(&k.h, &format!("v{}", i + 10), r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(failed_checks(&p), *expect, "{what}");
    }
    assert!(
        k.h.get("viewer", "/v1/models/risk/versions", StatusCode::OK).await["items"].as_array().unwrap().is_empty()
    );
    assert!(k.h.events("viewer").await.is_empty(), "refused releases emit nothing");
    // And the good one still goes through.
    submit(&k.h, "v1", &good, StatusCode::CREATED).await;
}

/// A policy that requires only a signature is an enforcing gate, not development mode: a
/// version without one is refused, and the record of one with it says what was required.
#[tokio::test]
async fn a_signature_only_policy_is_enforcing() {
    let keys = tempfile::tempdir().unwrap();
    let ci = LocalKey::generate(&keys.path().join("ci"), Alg::EcdsaP256Sha256).unwrap();
    let policy =
        ReleasePolicy { require_signature: true, signers: vec![ci.public_key().clone()], ..Default::default() };
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| c.release_policy = policy).await;
    h.create_model("ci", "risk").await;
    let k = Kit { h, ci, builder: LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap(), keys };
    let signed = Release { provenance: Vec::new(), ..release(&k, FILES) };
    let bare = Release { bundle: Vec::new(), provenance: Vec::new(), ..release(&k, FILES) };
    assert_eq!(
        failed_checks(&submit(&k.h, "v0", &bare, StatusCode::UNPROCESSABLE_ENTITY).await),
        ["artifact_signature:missing"]
    );
    let v = submit(&k.h, "v1", &signed, StatusCode::CREATED).await;
    let gate = &v["release"]["release_gate"];
    assert_eq!((gate["mode"].as_str(), &gate["required"]), (Some("enforced"), &serde_json::json!(["signature"])));
}

const OMS_ISSUER: &str = "https://sigstore.verify.ibm.com/oauth2";
const OMS_IDENTITY: &str = "stefanb@us.ibm.com";

/// The production-signed keyless model-signing vector: its two files and its bundle.
fn keyless_release() -> Release {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/model-signing-keyless/model");
    let file = |n: &str| (n.to_owned(), std::fs::read(dir.join(n)).unwrap());
    Release {
        files: vec![file("signme-1"), file("signme-2")],
        bundle: std::fs::read(dir.join("model.sig")).unwrap(),
        provenance: vec![],
        sbom: vec![],
    }
}

async fn keyless_registry(signers: Vec<fulcrum_verify::keyless::KeylessSigner>) -> Harness {
    let policy = ReleasePolicy {
        require_signature: true,
        keyless_signers: signers,
        // The signer excluded these (the vector's own `ignore_paths`).
        allowed_ignore_paths: vec!["ignore-me".into(), "model.sig".into()],
        ..Default::default()
    };
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| c.release_policy = policy).await;
    h.create_model("ci", "risk").await;
    h
}

fn import_body(root: &str) -> Value {
    json!({"trusted_root": root, "note": "Sigstore production root, from the build"})
}

/// A Sigstore keyless model signature passes the gate only under a trusted root a key-admin put
/// in force (pinned, versioned, in the trust bundle, an event) and only for an identity the
/// release policy names; the record keeps who signed and against which root.
#[tokio::test]
async fn a_keyless_signature_needs_the_trusted_root_in_force_and_a_named_identity() {
    use fulcrum_verify::keyless::{KeylessSigner, PRODUCTION_TRUSTED_ROOT, TrustedRoot};
    let h = keyless_registry(vec![KeylessSigner::exact(OMS_ISSUER, OMS_IDENTITY)]).await;
    let r = keyless_release();
    // No trusted root yet: refused, and the reason says what is missing.
    let p = submit(&h, "v0", &r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(failed_checks(&p), ["artifact_signature:trust_root_invalid"], "{p}");

    // Only a key-admin imports a root; a document that is not one is a 422 naming why.
    h.post("ci", "/v1/trust-roots/sigstore", import_body(PRODUCTION_TRUSTED_ROOT), StatusCode::FORBIDDEN).await;
    let bad = h
        .post("keys", "/v1/trust-roots/sigstore", import_body("{\"mediaType\": 3}"), StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    assert_eq!(bad["code"], "trust_root_invalid", "{bad}");
    let before = h.get("viewer", "/v1/trust-bundle", StatusCode::OK).await;
    assert!(before.get("sigstore").is_none(), "{before}");
    let ack =
        h.post("keys", "/v1/trust-roots/sigstore", import_body(PRODUCTION_TRUSTED_ROOT), StatusCode::CREATED).await;
    let pinned = TrustedRoot::production().digest();
    assert_eq!((ack["version"].as_u64(), ack["digest"].as_str()), (Some(1), Some(pinned.as_str())), "{ack}");
    // The same root again changes nothing.
    h.post("keys", "/v1/trust-roots/sigstore", import_body(PRODUCTION_TRUSTED_ROOT), StatusCode::CONFLICT).await;
    let tb = h.get("viewer", "/v1/trust-bundle", StatusCode::OK).await;
    assert_eq!(tb["version"].as_u64(), ack["trust_bundle_version"].as_u64());
    assert_eq!(tb["sigstore"]["digest"], pinned.as_str());
    assert_eq!(tb["sigstore"]["trusted_root"], PRODUCTION_TRUSTED_ROOT, "shipped byte for byte");
    let listed = h.get("keys", "/v1/trust-roots/sigstore", StatusCode::OK).await;
    assert_eq!((listed[0]["in_force"].as_bool(), listed[0]["imported_by"].as_str()), (Some(true), Some("keys")));
    let ev = h.events("admin").await;
    let imported: Vec<&Value> = ev.iter().filter(|e| e["data"]["event"] == "trust_root_imported").collect();
    assert_eq!(imported.len(), 1, "one event per import");
    assert!(imported[0]["data"]["reason"].as_str().unwrap().contains(&pinned), "{}", imported[0]);
    assert_eq!(imported[0]["data"]["actor"], "keys");

    let v = submit(&h, "v1", &r, StatusCode::CREATED).await;
    let sig = &v["release"]["release_gate"]["artifact_signature"];
    assert_eq!(sig["keyless"]["identity"], OMS_IDENTITY, "{sig}");
    assert_eq!(sig["keyless"]["issuer"], OMS_ISSUER);
    assert_eq!(sig["keyless"]["trusted_root"], pinned.as_str());
    assert_eq!(sig["bundle"], Digest::of(&r.bundle).to_string());

    // The same signature over a changed file: refused by name.
    let mut tampered = keyless_release();
    tampered.files[1].1 = b"changed".to_vec();
    let p = submit(&h, "v2", &tampered, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(failed_checks(&p), ["artifact_signature:hash_mismatch"], "{p}");
}

#[tokio::test]
async fn a_keyless_signature_by_an_identity_the_policy_does_not_name_is_refused() {
    use fulcrum_verify::keyless::{KeylessSigner, PRODUCTION_TRUSTED_ROOT};
    for (signers, reason) in [
        (vec![KeylessSigner::exact(OMS_ISSUER, "release-bot@us.ibm.com")], "signer_identity"),
        (vec![KeylessSigner::exact("https://token.actions.githubusercontent.com", OMS_IDENTITY)], "signer_identity"),
        (vec![], "identity_policy_missing"),
    ] {
        let h = keyless_registry(signers).await;
        h.post("keys", "/v1/trust-roots/sigstore", import_body(PRODUCTION_TRUSTED_ROOT), StatusCode::CREATED).await;
        let p = submit(&h, "v1", &keyless_release(), StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(failed_checks(&p), [format!("artifact_signature:{reason}")], "{p}");
    }
}

// The same tests on PostgreSQL + S3.
on_scale_out!(
    a_shard_signature_is_checked_against_the_stored_bytes,
    a_fully_evidenced_release_registers_and_is_attested,
    each_gate_failure_is_named_and_nothing_is_stored,
    a_signature_only_policy_is_enforcing,
    a_keyless_signature_needs_the_trusted_root_in_force_and_a_named_identity,
);
