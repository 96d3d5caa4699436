//! The upstream Sigstore conformance set (`tests/vectors/sigstore-conformance`, bundle-verify):
//! every case verified offline through [`fulcrum_verify::keyless`], from the artifact's bytes and
//! from its digest alone; a `_fail` case must be refused both ways, every other case must verify
//! both ways. The same set runs through the `fulcrum verify-bundle` binary in the CLI's tests.
//!
//! Also: the keyless OpenSSF model-signing bundle (`tests/vectors/model-signing-keyless`)
//! verified against the pinned production root, and refused under another root or identity.

use std::path::{Path, PathBuf};

use fulcrum_verify::Failure;
use fulcrum_verify::keyless::{self, KeylessSigner, Signers, Subject, TrustedRoot};
use fulcrum_verify::model_signing::{self, Trust, VerifyOptions};
use sha2::{Digest, Sha256};

fn vectors() -> PathBuf {
    fulcrum_testkit::vectors::dir()
}

#[test]
fn every_upstream_bundle_verify_case_gets_its_verdict_from_bytes_and_from_digest() {
    let production = TrustedRoot::production();
    let cases = fulcrum_testkit::vectors::sigstore_conformance();
    let mut wrong = Vec::new();
    let mut refusals = std::collections::BTreeMap::<&'static str, usize>::new();
    for case in &cases {
        let name = &case.name;
        let bundle = std::fs::read(&case.bundle).unwrap();
        let artifact = std::fs::read(&case.artifact).unwrap();
        let digest: [u8; 32] = Sha256::digest(&artifact).into();
        let custom = match &case.trusted_root {
            Some(p) => match TrustedRoot::from_json(&std::fs::read(p).unwrap()) {
                Ok(r) => Some(r),
                Err(f) => {
                    // An unusable trusted root refuses every bundle: a correct verdict only for `_fail`.
                    if !case.should_fail {
                        wrong.push(format!("{name}: trusted root refused: {f}"));
                    }
                    *refusals.entry(f.code()).or_default() += 2;
                    continue;
                }
            },
            None => None,
        };
        let root = custom.as_ref().unwrap_or(&production);
        let key = case.key.as_ref().map(|p| std::fs::read_to_string(p).unwrap());
        let signers = [KeylessSigner::exact(&case.issuer, &case.identity)];
        let who = match &key {
            Some(pem) => Signers::Key(pem),
            None => Signers::Keyless(&signers),
        };
        for (how, subject) in [("bytes", Subject::Bytes(&artifact)), ("digest", Subject::Sha256(digest))] {
            match (keyless::verify(root, &bundle, subject, who), case.should_fail) {
                (Ok(_), false) => {}
                (Err(f), true) => *refusals.entry(f.code()).or_default() += 1,
                (Ok(_), true) => wrong.push(format!("{name} ({how}): verified but must be refused")),
                (Err(f), false) => wrong.push(format!("{name} ({how}): refused ({}: {f}) but must verify", f.code())),
            }
        }
    }
    assert!(wrong.is_empty(), "{} verdicts differ from upstream:\n{}", wrong.len(), wrong.join("\n"));
    // Refusals are reasons, not one catch-all: several distinct codes must appear.
    assert!(refusals.len() >= 5, "refusal reasons: {refusals:?}");
    eprintln!("{} cases, both ways; refusals by reason: {refusals:?}", cases.len());
}

fn keyless_model() -> (PathBuf, Vec<u8>) {
    let dir = vectors().join("model-signing-keyless/model");
    let bundle = std::fs::read(dir.join("model.sig")).unwrap();
    (dir, bundle)
}

fn opts(dir: &Path) -> VerifyOptions {
    VerifyOptions { signature_path: Some(dir.join("model.sig")), allowed_ignores: vec!["ignore-me".into()] }
}

const OMS_ISSUER: &str = "https://sigstore.verify.ibm.com/oauth2";
const OMS_IDENTITY: &str = "stefanb@us.ibm.com";

#[test]
fn a_keyless_model_signing_bundle_verifies_offline_with_the_pinned_root_and_identity_only() {
    let (dir, bundle) = keyless_model();
    let production = TrustedRoot::production();
    let signers = [KeylessSigner::exact(OMS_ISSUER, OMS_IDENTITY)];
    let v = model_signing::verify(&dir, &bundle, Trust::Sigstore { root: &production, signers: &signers }, &opts(&dir))
        .expect("the production-signed model verifies");
    assert_eq!(v.resources.len(), 2);
    let k = v.keyless.expect("keyless facts recorded");
    assert_eq!(k.identity.as_deref(), Some(OMS_IDENTITY));
    assert_eq!(k.issuer.as_deref(), Some(OMS_ISSUER));
    assert_eq!(k.trusted_root, production.digest());
    assert!(k.tlog && !k.times.is_empty(), "{k:?}");

    // A pattern admitting the identity works; one admitting only others does not.
    let pattern = [KeylessSigner::pattern(OMS_ISSUER, r".*@us\.ibm\.com").unwrap()];
    model_signing::verify(&dir, &bundle, Trust::Sigstore { root: &production, signers: &pattern }, &opts(&dir))
        .unwrap();
    for signers in [
        vec![KeylessSigner::exact(OMS_ISSUER, "someone-else@us.ibm.com")],
        vec![KeylessSigner::exact("https://accounts.google.com", OMS_IDENTITY)],
        vec![KeylessSigner::pattern(OMS_ISSUER, "stefanb").unwrap()],
    ] {
        let f =
            model_signing::verify(&dir, &bundle, Trust::Sigstore { root: &production, signers: &signers }, &opts(&dir))
                .unwrap_err();
        assert_eq!(f.code(), "signer_identity", "{signers:?}: {f}");
    }
    // No identity policy at all: refused, never "some valid signature".
    let f = model_signing::verify(&dir, &bundle, Trust::Sigstore { root: &production, signers: &[] }, &opts(&dir))
        .unwrap_err();
    assert_eq!(f, Failure::IdentityPolicyMissing);

    // Another trusted root (a private Sigstore instance's): the certificate does not chain.
    let other = TrustedRoot::from_json(
        &std::fs::read(
            vectors()
                .join("sigstore-conformance/test/assets/bundle-verify/intoto-with-custom-trust-root/trusted_root.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_ne!(other.digest(), production.digest());
    let signers = [KeylessSigner::exact(OMS_ISSUER, OMS_IDENTITY)];
    let f = model_signing::verify(&dir, &bundle, Trust::Sigstore { root: &other, signers: &signers }, &opts(&dir))
        .unwrap_err();
    assert!(["certificate_invalid", "tlog_invalid", "timestamp_invalid"].contains(&f.code()), "{f}");
}

#[test]
fn a_tampered_file_or_a_keyless_bundle_under_a_key_is_refused() {
    let (src, bundle) = keyless_model();
    let tmp = tempfile::tempdir().unwrap();
    for f in ["signme-1", "signme-2", "ignore-me", "model.sig"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let production = TrustedRoot::production();
    let signers = [KeylessSigner::exact(OMS_ISSUER, OMS_IDENTITY)];
    std::fs::write(tmp.path().join("signme-2"), b"tampered").unwrap();
    let f = model_signing::verify(
        tmp.path(),
        &bundle,
        Trust::Sigstore { root: &production, signers: &signers },
        &opts(tmp.path()),
    )
    .unwrap_err();
    assert_eq!(f.code(), "hash_mismatch", "{f}");
    // The signer may not exclude files the verifier did not allow.
    let strict = VerifyOptions { signature_path: Some(src.join("model.sig")), allowed_ignores: vec![] };
    let f = model_signing::verify(&src, &bundle, Trust::Sigstore { root: &production, signers: &signers }, &strict)
        .unwrap_err();
    assert_eq!(f.code(), "ignore_paths_policy", "{f}");
    // A statement edited after signing: the subject no longer matches what was signed.
    let mut doc: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    let payload = fulcrum_verify::b64_decode(doc["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap();
    let edited = String::from_utf8(payload).unwrap().replace("signme-2", "signme-3");
    doc["dsseEnvelope"]["payload"] = fulcrum_sign::b64(edited.as_bytes()).into();
    let f = model_signing::open(
        &serde_json::to_vec(&doc).unwrap(),
        Trust::Sigstore { root: &production, signers: &signers },
    )
    .unwrap_err();
    assert!(["signature_invalid", "tlog_invalid"].contains(&f.code()), "{f}");
    assert!(keyless::is_keyless(&bundle));
}
