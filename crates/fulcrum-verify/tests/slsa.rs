//! SLSA Provenance v1 checks as data: each tampering or policy mismatch fails with its reason.

use fulcrum_sign::{Alg, LocalKey, Signer};
use fulcrum_verify::dsse::Envelope;
use fulcrum_verify::slsa::{self, TrustedBuilder};
use serde_json::json;

const BUILDER: &str = "https://ci.bank.example/builders/gpu-runner@v3";
const BUILD_TYPE: &str = "https://ci.bank.example/build-types/model-train@v1";
const DIGEST: &str = "9bfb44c5b0434acc563aabcba55df687627516b769c7345cf75fefe8af8e26ba";

fn key(dir: &std::path::Path, name: &str) -> LocalKey {
    LocalKey::generate(&dir.join(name), Alg::EcdsaP256Sha256).unwrap()
}

#[test]
fn provenance_cases() {
    let d = tempfile::tempdir().unwrap();
    let ci = key(d.path(), "ci");
    let other_ci = key(d.path(), "other");
    let builders = vec![
        TrustedBuilder {
            id: BUILDER.into(),
            build_types: vec![BUILD_TYPE.into()],
            signers: vec![ci.public_key().clone()],
        },
        TrustedBuilder {
            id: "https://other.example/builder".into(),
            build_types: vec![BUILD_TYPE.into()],
            signers: vec![other_ci.public_key().clone()],
        },
    ];
    let make = |signer: &LocalKey, builder: &str, build_type: &str, digest: &str| {
        slsa::attest(
            "model",
            digest,
            builder,
            build_type,
            json!({"repo": "git+https://scm/risk"}),
            Some("run-1"),
            signer,
        )
        .unwrap()
    };
    let check = |env: Vec<u8>, expect: Result<(), &str>| {
        let got = slsa::verify(&env, DIGEST, &builders).map(|_| ()).map_err(|f| f.code());
        assert_eq!(got, expect);
    };
    let ok = make(&ci, BUILDER, BUILD_TYPE, DIGEST);
    let p = slsa::verify(&ok, DIGEST, &builders).unwrap();
    assert_eq!((p.builder_id.as_str(), p.build_type.as_str()), (BUILDER, BUILD_TYPE));
    check(make(&ci, BUILDER, BUILD_TYPE, &"0".repeat(64)), Err("subject_mismatch"));
    check(make(&ci, "https://evil.example/builder", BUILD_TYPE, DIGEST), Err("untrusted_builder"));
    // A trusted key claiming a builder it does not sign for.
    check(make(&other_ci, BUILDER, BUILD_TYPE, DIGEST), Err("untrusted_builder"));
    check(make(&ci, BUILDER, "https://other/build-type", DIGEST), Err("build_type"));
    let stranger = key(d.path(), "stranger");
    check(make(&stranger, BUILDER, BUILD_TYPE, DIGEST), Err("signature_invalid"));
    // Payload edited after signing.
    let mut env: Envelope = serde_json::from_slice(&ok).unwrap();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&fulcrum_verify::b64_decode(&env.payload).unwrap()).unwrap();
    payload["predicate"]["buildDefinition"]["buildType"] = json!("x");
    env.payload = fulcrum_sign::b64(&serde_json::to_vec(&payload).unwrap());
    check(serde_json::to_vec(&env).unwrap(), Err("signature_invalid"));
    // Another payload type, validly signed.
    let other_type = Envelope::sign("application/json", br#"{"x":1}"#, &ci, "").unwrap();
    check(serde_json::to_vec(&other_type).unwrap(), Err("payload_type"));
    check(b"not json".to_vec(), Err("bundle_malformed"));
}

#[test]
fn sbom_formats() {
    assert_eq!(slsa::sbom_format(br#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}"#), Ok("cyclonedx"));
    assert_eq!(slsa::sbom_format(br#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT"}"#), Ok("spdx"));
    for bad in [&b"{}"[..], b"[]", b"<xml/>", br#"{"bomFormat":"CycloneDX"}"#] {
        assert_eq!(slsa::sbom_format(bad).unwrap_err().code(), "sbom_invalid");
    }
}
