//! Interop with the real OpenSSF `model-signing` tool: every case of
//! `tests/vectors/model-signing/expected.json` (made with model-signing 1.1.1) verifies or fails
//! with the right reason, derived cases built at test time, and bundles Fulcrum signs verify with
//! `model_signing verify key` (the test command installs it; set FULCRUM_MODEL_SIGNING to its path).

use std::path::{Path, PathBuf};
use std::process::Command;

use fulcrum_sign::{LocalKey, PublicKey, Signer};
use fulcrum_verify::Failure;
use fulcrum_verify::model_signing::{self, SignOptions, Trust, VerifyOptions};
use fulcrum_verify::modeldir::{HashAlg, Method};
use serde_json::Value;

fn vectors() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/model-signing");
    assert!(p.join("expected.json").exists(), "test vectors not found at {}", p.display());
    p
}

/// Our expected outcome per case: Ok, or the failure code. Where Fulcrum deliberately differs
/// from model-signing 1.1.1 (see the crate docs), the case id says why.
fn our_expectation(id: &str, python_expect: &str) -> Result<(), &'static str> {
    match id {
        // No "ignore unsigned files" mode: the files on disk must be exactly the signed set.
        "info-extra-file-ignore-unsigned" => Err("extra_files"),
        // A resource listed twice is refused.
        "lenient-dup-resource" => Err("duplicate_resource"),
        // Fulcrum reads the method from the signed serialization, so these verify.
        id if id.starts_with("info-api-guess-") || id.starts_with("info-cli-") => Ok(()),
        "neg-tampered" | "neg-api-tampered-files-blake2" | "neg-api-tampered-files-blake3" => Err("hash_mismatch"),
        id if id.starts_with("neg-api-tampered-shards") => Err("hash_mismatch"),
        "neg-extra-file" => Err("extra_files"),
        "neg-removed-file" => Err("missing_files"),
        "neg-wrong-key" | "neg-p384-wrong-key" | "neg-bundle-hint-other-key" => Err("key_mismatch"),
        "neg-cert-no-chain" => Err("certificate_invalid"),
        "neg-bundle-bad-signature" | "neg-bundle-payload-modified" | "neg-no-hint-wrong-key" => {
            Err("signature_invalid")
        }
        "neg-bundle-inconsistent-root" => Err("root_digest_mismatch"),
        "neg-bundle-wrong-predicate-type" => Err("predicate_type"),
        "neg-bundle-wrong-statement-type" => Err("statement_type"),
        "neg-bundle-wrong-payload-type" => Err("payload_type"),
        "neg-bundle-media-type-v0.2" => Err("bundle_media_type"),
        id if id.starts_with("pos-") => {
            assert_eq!(python_expect, "ok", "{id}");
            Ok(())
        }
        other => panic!("case {other} has no expectation: add it"),
    }
}

struct Case {
    model: PathBuf,
    sig: PathBuf,
    key: Option<PathBuf>,
    roots: Option<Vec<PathBuf>>,
    ignore: Vec<String>,
}

fn parse_command(dir: &Path, cmd: &str) -> Case {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let arg = |flag: &str| words.iter().position(|w| *w == flag).map(|i| dir.join(words[i + 1]));
    if cmd.starts_with("python <api-verify>") {
        let kv = |k: &str| words.iter().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap().trim_matches('\'');
        let ignore = kv("ignore");
        return Case {
            model: dir.join(kv("model")),
            sig: dir.join(kv("sig")),
            key: Some(dir.join(kv("pub"))),
            roots: None,
            ignore: if ignore.is_empty() { vec![] } else { vec![ignore.to_owned()] },
        };
    }
    assert_eq!(words[0], "model_signing");
    let model = dir.join(words[3]);
    if words[2] == "certificate" {
        let roots = arg("--certificate_chain").map(|p| vec![p]).unwrap_or_default();
        return Case { model, sig: arg("--signature").unwrap(), key: None, roots: Some(roots), ignore: vec![] };
    }
    Case { model, sig: arg("--signature").unwrap(), key: arg("--public_key"), roots: None, ignore: vec![] }
}

fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    model_signing::pem_certificates(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run(case: &Case) -> Result<model_signing::SignedModel, Failure> {
    let bundle = std::fs::read(&case.sig).unwrap();
    let opts = VerifyOptions { signature_path: Some(case.sig.clone()), allowed_ignores: case.ignore.clone() };
    match (&case.key, &case.roots) {
        (Some(k), _) => {
            let key = PublicKey::from_pem(&std::fs::read(k).unwrap()).unwrap();
            model_signing::verify(&case.model, &bundle, Trust::Key(&key), &opts)
        }
        (None, Some(roots)) => {
            let roots: Vec<Vec<u8>> = roots.iter().flat_map(|p| pem_certs(p)).collect();
            model_signing::verify(&case.model, &bundle, Trust::Roots(&roots), &opts)
        }
        _ => panic!("case has neither key nor roots"),
    }
}

#[test]
fn every_vector_case() {
    let dir = vectors();
    let expected: Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 45, "all cases are present");
    let mut failures = Vec::new();
    for c in cases {
        let id = c["id"].as_str().unwrap();
        let want = our_expectation(id, c["expect"].as_str().unwrap());
        let got = run(&parse_command(&dir, c["command"].as_str().unwrap())).map(|_| ()).map_err(|f| f.code());
        if got != want {
            failures.push(format!("{id}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn derived_cases() {
    let dir = vectors();
    let key = PublicKey::from_pem(&std::fs::read(dir.join("public-key.pem")).unwrap()).unwrap();
    let bundle = std::fs::read(dir.join("model.sig")).unwrap();
    let check = |change: &dyn Fn(&Path), expect: Result<(), &str>| {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("renamed");
        copy_dir(&dir.join("model"), &m);
        change(&m);
        let got = model_signing::verify(&m, &bundle, Trust::Key(&key), &VerifyOptions::default())
            .map(|_| ())
            .map_err(|f| f.code());
        assert_eq!(got, expect);
    };
    check(&|_| {}, Ok(()));
    check(
        &|m| {
            std::fs::create_dir_all(m.join(".git")).unwrap();
            std::fs::write(m.join(".git/config"), "x").unwrap();
            std::fs::write(m.join(".gitattributes"), "x").unwrap();
        },
        Ok(()),
    );
    check(&|m| std::fs::create_dir_all(m.join("empty-dir")).unwrap(), Ok(()));
    check(&|m| std::fs::write(m.join("empty.txt"), "").unwrap(), Err("extra_files"));
    #[cfg(unix)]
    check(&|m| std::os::unix::fs::symlink(m.join("weights.bin"), m.join("link.bin")).unwrap(), Err("symlink"));
    // The signature file inside the model is not a model file.
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("model");
    copy_dir(&dir.join("model"), &m);
    std::fs::write(m.join("model.sig"), &bundle).unwrap();
    let opts = VerifyOptions { signature_path: Some(m.join("model.sig")), allowed_ignores: vec![] };
    model_signing::verify(&m, &bundle, Trust::Key(&key), &opts).unwrap();
}

fn model_signing_cli() -> PathBuf {
    if let Ok(p) = std::env::var("FULCRUM_MODEL_SIGNING") {
        return PathBuf::from(p);
    }
    let found =
        Command::new("sh").args(["-c", "command -v model_signing"]).output().ok().filter(|o| o.status.success());
    match found {
        Some(o) => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        None => panic!(
            "model_signing is not installed: run `bash scripts/test.sh` (it installs it) or set FULCRUM_MODEL_SIGNING"
        ),
    }
}

/// Bundles Fulcrum signs verify in Fulcrum and with `model_signing verify key`, for P-256 and
/// P-384; tampering is caught by both.
#[test]
fn fulcrum_bundles_verify_with_model_signing() {
    let dir = vectors();
    let cli = model_signing_cli();
    for (key_file, pub_file) in
        [("test-only-private-key.pem", "public-key.pem"), ("test-only-p384-private-key.pem", "p384-public-key.pem")]
    {
        let signer = LocalKey::from_file(&dir.join(key_file)).unwrap();
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("model");
        copy_dir(&dir.join("model"), &m);
        let sig = t.path().join("fulcrum.sig");
        let bundle = model_signing::sign(&m, &signer, &SignOptions::default()).unwrap();
        std::fs::write(&sig, &bundle).unwrap();
        model_signing::verify(&m, &bundle, Trust::Key(signer.public_key()), &VerifyOptions::default()).unwrap();
        let verify = |model: &Path| {
            Command::new(&cli)
                .args(["verify", "key"])
                .arg(model)
                .arg("--signature")
                .arg(&sig)
                .arg("--public_key")
                .arg(dir.join(pub_file))
                .output()
                .unwrap()
        };
        let out = verify(&m);
        assert!(
            out.status.success(),
            "model_signing refused a Fulcrum bundle: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(m.join("config.json"), "{\"tampered\":true}").unwrap();
        assert!(!verify(&m).status.success(), "model_signing must refuse a tampered model");
        assert_eq!(
            model_signing::verify(&m, &bundle, Trust::Key(signer.public_key()), &VerifyOptions::default())
                .unwrap_err()
                .code(),
            "hash_mismatch"
        );
    }
}

/// Round trips for every method and algorithm Fulcrum signs with.
#[test]
fn sign_verify_round_trips() {
    let dir = vectors();
    let signer = LocalKey::from_file(&dir.join("test-only-private-key.pem")).unwrap();
    for (method, alg) in [
        (Method::Files, HashAlg::Sha256),
        (Method::Files, HashAlg::Blake2b),
        (Method::Files, HashAlg::Blake3),
        (Method::Shards(16384), HashAlg::Sha256),
        (Method::Shards(7), HashAlg::Blake3),
    ] {
        let opts = SignOptions { method, alg, signature_path: None };
        let bundle = model_signing::sign(
            &dir.join("model-edge"),
            &signer,
            &SignOptions { signature_path: Some(dir.join("model-edge/model.sig")), ..opts },
        )
        .unwrap();
        let v = model_signing::verify(
            &dir.join("model-edge"),
            &bundle,
            Trust::Key(signer.public_key()),
            &VerifyOptions { signature_path: Some(dir.join("model-edge/model.sig")), allowed_ignores: vec![] },
        )
        .unwrap();
        assert_eq!((v.method, v.alg), (method, alg));
    }
}
