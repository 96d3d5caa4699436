//! `fulcrum verify-bundle` speaks the sigstore-conformance CLI protocol: every case of the
//! upstream bundle-verify set (`tests/vectors/sigstore-conformance`) is run through the real
//! binary, with the arguments in the protocol's order, once with the artifact's path and once
//! with its `sha256:<hex>` digest; the exit code must be the case's verdict. No network: the
//! cases without a trusted root use the production root shipped with the build.
//!
//! `fulcrum verify model` with a certificate identity verifies the production-signed keyless
//! model-signing vector offline, and refuses it under another identity or trusted root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use fulcrum_testkit::vectors::{DEFAULT_IDENTITY, DEFAULT_ISSUER};

fn vectors() -> PathBuf {
    fulcrum_testkit::vectors::dir()
}

fn fulcrum(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fulcrum")).args(args).env("FULCRUM_LOG", "error").output().unwrap()
}

#[test]
fn verify_bundle_gives_every_conformance_case_its_verdict_by_path_and_by_digest() {
    let mut wrong = Vec::new();
    for case in fulcrum_testkit::vectors::sigstore_conformance() {
        let name = &case.name;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(std::fs::read(&case.artifact).unwrap())));
        for input in [case.artifact.to_str().unwrap(), digest.as_str()] {
            // The protocol's order: --bundle, then identity/issuer or --key, then --trusted-root, then the input.
            let mut args: Vec<&str> = vec!["verify-bundle", "--bundle", case.bundle.to_str().unwrap()];
            match &case.key {
                Some(key) => args.extend(["--key", key.to_str().unwrap()]),
                None => {
                    args.extend(["--certificate-identity", &case.identity, "--certificate-oidc-issuer", &case.issuer])
                }
            }
            if let Some(root) = &case.trusted_root {
                args.extend(["--trusted-root", root.to_str().unwrap()]);
            }
            args.push(input);
            let out = fulcrum(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            match (out.status.success(), case.should_fail) {
                (true, false) => {}
                (false, true) => {
                    // A refusal is one clear line naming a machine-readable reason.
                    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                    if lines.len() != 1 || !lines[0].starts_with("error: ") {
                        wrong.push(format!("{name} ({input}): refusal is not one line: {stderr}"));
                    }
                }
                (true, true) => wrong.push(format!("{name} ({input}): exit 0 but must be refused")),
                (false, false) => wrong.push(format!("{name} ({input}): refused but must verify: {stderr}")),
            }
        }
    }
    assert!(wrong.is_empty(), "{} verdicts differ from upstream:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn verify_bundle_needs_an_identity_for_a_keyless_bundle() {
    let dir = vectors().join("sigstore-conformance/test/assets/bundle-verify");
    let bundle = dir.join("happy-path-v0.3/bundle.sigstore.json");
    let a = dir.join("a.txt");
    // `verify-bundle --bundle B <who…> a.txt`.
    let verify = |who: &[&str]| {
        let mut args = vec!["verify-bundle", "--bundle", bundle.to_str().unwrap()];
        args.extend_from_slice(who);
        args.push(a.to_str().unwrap());
        fulcrum(&args)
    };
    let exact = ["--certificate-identity", DEFAULT_IDENTITY, "--certificate-oidc-issuer", DEFAULT_ISSUER];
    let ok = verify(&[&exact[..], &["--output", "json"]].concat());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["result"]["identity"], DEFAULT_IDENTITY);
    assert_eq!(v["result"]["tlog"], true);
    // No identity at all: refused with the machine-readable reason, never "some valid signature".
    let out = verify(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("identity_policy_missing"));
    // A pattern must match the whole identity.
    for (pattern, verifies) in [
        (".*extremely-dangerous-oidc-beacon.yml@refs/heads/main", true),
        ("https://github.com/sigstore-conformance", false),
    ] {
        let out = verify(&["--certificate-identity-regexp", pattern, "--certificate-oidc-issuer", DEFAULT_ISSUER]);
        assert_eq!(out.status.success(), verifies, "{pattern}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // An unreadable trusted root is one clear line.
    let out = verify(&[&exact[..], &["--trusted-root", a.to_str().unwrap()]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("trust_root_invalid") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn verify_model_checks_a_keyless_model_signing_bundle_offline() {
    let model = vectors().join("model-signing-keyless/model");
    let sig = model.join("model.sig");
    let custom = vectors()
        .join("sigstore-conformance/test/assets/bundle-verify/intoto-with-custom-trust-root/trusted_root.json");
    let run = |identity: &str, root: Option<&Path>| {
        let mut args = vec![
            "verify".to_owned(),
            "--output".into(),
            "json".into(),
            "model".into(),
            model.to_str().unwrap().into(),
            "--signature".into(),
            sig.to_str().unwrap().into(),
            "--allow-ignore".into(),
            "ignore-me".into(),
            "--certificate-identity".into(),
            identity.into(),
            "--certificate-oidc-issuer".into(),
            "https://sigstore.verify.ibm.com/oauth2".into(),
        ];
        if let Some(r) = root {
            args.extend(["--trusted-root".into(), r.to_str().unwrap().into()]);
        }
        fulcrum(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let ok = run("stefanb@us.ibm.com", None);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["keyless"]["identity"], "stefanb@us.ibm.com");
    assert_eq!(v["resources"], 2);
    let out = run("mallory@us.ibm.com", None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("signer_identity"));
    let out = run("stefanb@us.ibm.com", Some(&custom));
    assert!(!out.status.success(), "another trusted root must refuse it");
}

/// A key-admin puts a Sigstore trusted root in force from the CLI; anyone else, or a file that
/// is not a trusted root, gets one clear line and changes nothing.
#[test]
fn a_key_admin_imports_a_sigstore_root_and_nobody_else_can() {
    let s = common::serve();
    let custom = vectors()
        .join("sigstore-conformance/test/assets/bundle-verify/intoto-with-custom-trust-root/trusted_root.json");
    let custom = custom.to_str().unwrap();
    let err = common::one_error_line(&common::run_as(
        &s,
        "ci",
        &["keys", "import-sigstore-root", "--production", "--note", "x"],
    ));
    assert!(err.contains("403") || err.to_lowercase().contains("forbid") || err.contains("role"), "{err}");
    let bundle = vectors().join("sigstore-conformance/test/assets/bundle-verify/a.txt");
    let err = common::one_error_line(&common::run_as(
        &s,
        "keys",
        &["keys", "import-sigstore-root", bundle.to_str().unwrap(), "--note", "not a root"],
    ));
    assert!(err.contains("trust_root_invalid"), "{err}");
    let v = common::ok(&common::run_as(
        &s,
        "keys",
        &["keys", "--output", "json", "import-sigstore-root", "--production", "--note", "production root"],
    ));
    assert_eq!(v["version"], 1);
    let err = common::one_error_line(&common::run_as(
        &s,
        "keys",
        &["keys", "import-sigstore-root", "--production", "--note", "again"],
    ));
    assert!(err.contains("already in force"), "{err}");
    common::ok(&common::run_as(&s, "keys", &["keys", "import-sigstore-root", custom, "--note", "private instance"]));
    let list = common::ok(&common::run_as(&s, "auditor", &["keys", "--output", "json", "sigstore-roots"]));
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["version"].as_u64(), rows[0]["in_force"].as_bool()), (Some(2), Some(true)));
    assert_eq!(rows[1]["in_force"], false);
    assert_eq!(rows[1]["note"], "production root");
}
