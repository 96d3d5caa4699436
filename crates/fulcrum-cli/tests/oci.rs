//! Models in a real OCI registry (the CNCF distribution registry, plain HTTP on loopback) through
//! the real binaries: a ModelPack signed with a cosign v3 bundle referrer, a ModelKit signed with
//! a cosign v2 `.sig` tag and a modelcar image are registered by `fulcrum version register
//! --oci` against a registry whose release policy requires a signature by the CI key; the
//! release record names the manifest digest, never the tag; the agent fetches what was approved.
//! An unsigned artifact, one signed by another key, a tag moved to other bytes and a layer
//! changed on the registry's disk are each refused with their reason, leaving no version.
//! `fulcrum version export --oci` then re-registration round-trips byte for byte.

mod common;

use std::path::{Path, PathBuf};

use common::serving::{agent, as_};
use common::{Server, fulcrum, one_error_line, serve_with};
use fulcrum_oci::cosign;
use fulcrum_oci::publish::{self, FileSource};
use fulcrum_oci::remote::{Remote, Settings, Target};
use fulcrum_sign::LocalKey;
use serde_json::{Value, json};

struct Kit {
    s: Server,
    reg: fulcrum_testkit::oci::Registry,
    remote: Remote,
    ci: LocalKey,
    stranger: LocalKey,
    work: tempfile::TempDir,
}

fn key(dir: &Path, name: &str) -> (LocalKey, String) {
    let path = dir.join(name);
    let out = fulcrum(&["keys", "generate", "--out", path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (LocalKey::load_or_create(&path).unwrap().0, String::from_utf8(out.stdout).unwrap())
}

fn start() -> Option<Kit> {
    let reg = fulcrum_testkit::oci::Registry::start()?;
    let work = tempfile::tempdir().unwrap();
    let (ci, pem) = key(work.path(), "ci.pk8");
    let (stranger, _) = key(work.path(), "stranger.pk8");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("release-policy.json");
    std::fs::write(&policy, json!({"require": ["signature"], "signers": [{"public_key_pem": pem}]}).to_string())
        .unwrap();
    let s = serve_with(&["--release-policy", policy.to_str().unwrap(), "--oci-insecure-registry", &reg.host], dir);
    let remote = Remote::new(&Settings { insecure: vec![reg.host.clone()], basic: None });
    Some(Kit { s, reg, remote, ci, stranger, work })
}

impl Kit {
    fn run(&self, who: &str, args: &[&str]) -> std::process::Output {
        common::run_as(&self.s, who, args)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.work.path().join("files").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn target(&self, repo_tag: &str) -> Target {
        Target::parse(&format!("{}/{repo_tag}", self.reg.host)).unwrap()
    }

    async fn modelpack(&self, repo_tag: &str, files: &[(&str, &[u8])]) -> String {
        let t = self.target(repo_tag);
        let locals: Vec<(String, PathBuf)> =
            files.iter().map(|(p, b)| ((*p).to_owned(), self.file(&format!("{repo_tag}/{p}"), b))).collect();
        let sources: Vec<FileSource<'_>> = locals.iter().map(|(path, local)| FileSource { path, local }).collect();
        publish::modelpack(&self.remote, &t, "fraud", "1", &sources, Default::default(), t.tag()).await.unwrap().0
    }

    async fn sign_v3(&self, repo_tag: &str, digest: &str, key: &LocalKey) {
        let bundle = cosign::sign_bundle(digest, key).unwrap();
        publish::attach_bundle(&self.remote, &self.target(repo_tag), digest, bundle, cosign::COSIGN_SIGN_PREDICATE)
            .await
            .unwrap();
    }

    /// The card and revalidation date the shipped policy wants before Approved.
    fn governed(&self) -> Vec<String> {
        let card = self.file("card.json", br#"{"owner": "fraud-team", "intended_use": "card fraud scoring"}"#);
        ["--model-card", card.to_str().unwrap(), "--revalidate-by", "2099-01-01T00:00:00Z", "--output", "json"]
            .map(str::to_owned)
            .to_vec()
    }

    /// `fulcrum version register fraud VER --oci HOST/REPO:TAG` as CI.
    fn register(&self, version: &str, repo_tag: &str) -> std::process::Output {
        let r = format!("{}/{repo_tag}", self.reg.host);
        let mut args = vec!["version".to_owned(), "register".into(), "fraud".into(), version.into(), "--oci".into(), r];
        args.extend(self.governed());
        self.run("ci", &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn registered(&self, version: &str, repo_tag: &str) -> Value {
        common::ok(&self.register(version, repo_tag))
    }

    fn refused(&self, version: &str, repo_tag: &str) -> String {
        let err = one_error_line(&self.register(version, repo_tag));
        let get = self.run("ci", &["version", "get", "fraud", version]);
        assert!(!get.status.success(), "a refused registration leaves no version {version}");
        err
    }
}

async fn approve(s: &Server, model: &str, version: &str) {
    let v = format!("/v1/models/{model}/versions/{version}");
    as_(s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
    as_(s, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(s, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-OCI"})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_artifacts_register_by_digest_and_only_trusted_signatures_pass() {
    let Some(k) = start() else { return };
    common::ok(&k.run("ci", &["model", "create", "fraud", "--domain", "fraud"]));

    // A ModelPack signed the cosign v3 way (a bundle referrer, found through the tag schema).
    let weights = vec![7u8; 300_000];
    let mp = k
        .modelpack("models/fraud:v1", &[("model.safetensors", &weights), ("config/config.json", b"{\"layers\":2}")])
        .await;
    k.sign_v3("models/fraud:v1", &mp, &k.ci).await;
    let v = k.registered("1", "models/fraud:v1");
    let oci = &v["release"]["release_gate"]["oci"];
    assert_eq!(oci["reference"], format!("{}/models/fraud@{mp}", k.reg.host));
    assert_eq!((oci["kind"].as_str(), oci["digest"].as_str()), (Some("modelpack"), Some(mp.as_str())));
    assert_eq!(v["release"]["release_gate"]["artifact_signature"]["format"], "cosign-bundle");
    assert_eq!(
        v["release"]["release_gate"]["artifact_signature"]["signer"],
        fulcrum_sign::Signer::public_key(&k.ci).fingerprint()
    );
    assert!(!v.to_string().contains("fraud:v1"), "a tag is never recorded: {v}");
    let files: Vec<(String, String)> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f["digest"].as_str().unwrap().to_owned()))
        .collect();
    assert!(files.contains(&("model.safetensors".into(), fulcrum_oci::sha256_of(&weights))), "{files:?}");

    // A ModelKit (Kitfile config, a tar layer) signed the cosign v2 way (a .sig tag).
    let t = k.target("models/kit:v1");
    let (m, r) = (k.file("kit/model.bin", b"kit-weights"), k.file("kit/README.md", b"# fraud"));
    let kit = publish::modelkit(
        &k.remote,
        &t,
        "fraud",
        &[FileSource { path: "model.bin", local: &m }, FileSource { path: "docs/README.md", local: &r }],
        "v1",
    )
    .await
    .unwrap();
    let payload = cosign::simple_signing_payload(&t.repository(), &kit);
    let sig = cosign::sign_simple(&payload, &k.ci).unwrap();
    publish::legacy_signature(&k.remote, &t, &kit, payload, &sig).await.unwrap();
    let v = k.registered("2", "models/kit:v1");
    assert_eq!(v["release"]["release_gate"]["oci"]["kind"], "modelkit");
    assert_eq!(v["release"]["release_gate"]["artifact_signature"]["format"], "cosign-simple-signing");
    let mut paths: Vec<&str> = v["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["docs/README.md", "model.bin"]);

    // A modelcar image: only what is under /models is the model.
    let t = k.target("models/car:v1");
    let (os, onnx) = (k.file("car/os-release", b"ID=distroless"), k.file("car/model.onnx", b"onnx-graph"));
    let car = publish::modelcar(
        &k.remote,
        &t,
        &[FileSource { path: "etc/os-release", local: &os }],
        &[FileSource { path: "model.onnx", local: &onnx }],
        "v1",
    )
    .await
    .unwrap();
    k.sign_v3("models/car:v1", &car, &k.ci).await;
    let v = k.registered("3", "models/car:v1");
    assert_eq!(v["release"]["release_gate"]["oci"]["kind"], "modelcar");
    assert_eq!(
        v["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect::<Vec<_>>(),
        ["model.onnx"]
    );

    // Unsigned: the policy requires a signature.
    k.modelpack("models/unsigned:v1", &[("w.bin", b"unsigned")]).await;
    let err = k.refused("4", "models/unsigned:v1");
    assert!(err.contains("artifact_signature") && err.contains("missing"), "{err}");
    // Signed, but by a key the policy does not trust.
    let d = k.modelpack("models/stranger:v1", &[("w.bin", b"stranger")]).await;
    k.sign_v3("models/stranger:v1", &d, &k.stranger).await;
    let err = k.refused("4", "models/stranger:v1");
    assert!(err.contains("signature_invalid"), "{err}");
    // The signed tag moved to other bytes: the signature was for the old digest.
    k.modelpack("models/fraud:v1", &[("model.safetensors", b"retagged"), ("config/config.json", b"{}")]).await;
    let err = k.refused("4", "models/fraud:v1");
    assert!(err.contains("artifact_signature") && err.contains("missing"), "{err}");
    // A signed artifact whose layer was changed on the registry's disk.
    let d = k.modelpack("models/tamper:v1", &[("w.bin", b"original-bytes")]).await;
    k.sign_v3("models/tamper:v1", &d, &k.ci).await;
    std::fs::write(k.reg.blob_path(&fulcrum_oci::sha256_of(b"original-bytes")), b"tampered-bytes").unwrap();
    let err = k.refused("4", "models/tamper:v1");
    assert!(err.contains("oci_digest_mismatch"), "{err}");
    // A reference that does not parse: one line.
    let err = one_error_line(&k.run("ci", &["version", "register", "fraud", "4", "--oci", "UPPER//bad ref"]));
    assert!(err.contains("oci_reference"), "{err}");
    // A registry this registry was not told about (an internal service, a metadata endpoint):
    // nothing is fetched from it.
    let err = one_error_line(
        &k.run("ci", &["version", "register", "fraud", "4", "--oci", "169.254.169.254/latest/meta-data:v1"]),
    );
    assert!(err.contains("oci_registry_not_allowed"), "{err}");

    // Governed, resolved and fetched by the agent: the files are the layers' bytes.
    approve(&k.s, "fraud", "1").await;
    common::ok(&k.run("rm", &["alias", "set", "fraud", "production", "1", "--chg-id", "CHG-OCI"]));
    let state = tempfile::tempdir().unwrap();
    let a = agent(&k.s, state.path(), "oci-agent").await;
    let dest = state.path().join("model");
    a.fetch("fraud@production", "prod", &dest).await.unwrap();
    assert_eq!(std::fs::read(dest.join("model.safetensors")).unwrap(), weights);
    assert_eq!(std::fs::read(dest.join("config/config.json")).unwrap(), b"{\"layers\":2}");
    // KServe's form, `oci://REPOSITORY@sha256:…`: served through the registry — the version
    // registered from exactly that manifest (its signed record says so), fetched from Fulcrum.
    let oci =
        |repo: &str, d: &str| fulcrum_agent::fetch::OciOrigin::parse(&format!("{}/{repo}@{d}", k.reg.host)).unwrap();
    let by_oci = state.path().join("by-oci");
    let p = a.fetch_oci(&oci("models/fraud", &mp), "prod", &by_oci).await.unwrap();
    assert_eq!(p.document.version, "1");
    assert_eq!(std::fs::read(by_oci.join("model.safetensors")).unwrap(), weights);
    // The same digest under another repository was never registered.
    let e = a.fetch_oci(&oci("other/fraud", &mp), "prod", &state.path().join("x")).await.unwrap_err();
    assert_eq!(e.code(), "oci_not_registered", "{e}");
    // A Candidate registered from an OCI manifest is not served in prod.
    let held = state.path().join("y");
    let e = a.fetch_oci(&oci("models/kit", &kit), "prod", &held).await.unwrap_err();
    assert!(!held.exists(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_round_trips_byte_for_byte() {
    let Some(k) = start() else { return };
    common::ok(&k.run("ci", &["model", "create", "fraud", "--domain", "fraud"]));
    // CI signs a model directory and registers it with the signature.
    let m = k.work.path().join("model");
    std::fs::create_dir_all(m.join("tokenizer")).unwrap();
    std::fs::write(m.join("weights.bin"), vec![3u8; 250_000]).unwrap();
    std::fs::write(m.join("tokenizer/vocab.txt"), b"a\nb\n").unwrap();
    let sig = k.work.path().join("model.sig");
    let ci_key = k.work.path().join("ci.pk8");
    common::ok(&fulcrum(
        &[
            "sign",
            "model",
            m.to_str().unwrap(),
            "--key",
            ci_key.to_str().unwrap(),
            "--signature",
            sig.to_str().unwrap(),
        ],
        &[],
    ));
    let mut args: Vec<String> =
        ["version", "register", "fraud", "1", "--dir", m.to_str().unwrap(), "--signature", sig.to_str().unwrap()]
            .map(str::to_owned)
            .to_vec();
    args.extend(k.governed());
    let v1 = common::ok(&k.run("ci", &args.iter().map(String::as_str).collect::<Vec<_>>()));
    // Only what was approved leaves for serving elsewhere.
    let target = format!("{}/exported/fraud:1.0", k.reg.host);
    let export = |who: &str| {
        k.run(
            who,
            &[
                "version",
                "export",
                "fraud",
                "1",
                "--oci",
                &target,
                "--oci-insecure-registry",
                &k.reg.host,
                "--output",
                "json",
            ],
        )
    };
    assert!(one_error_line(&export("ci")).contains("not_approved"));
    approve(&k.s, "fraud", "1").await;
    let out = common::ok(&export("ci"));
    let digest = out["digest"].as_str().unwrap().to_owned();
    assert_eq!(out["artifact_digest"], v1["artifact_digest"]);
    assert_eq!(out["referrers"].as_array().unwrap().len(), 2, "the release record and the model-signing bundle: {out}");
    let t = k.target("exported/fraud:1.0");
    assert_eq!(k.remote.resolve(&t).await.unwrap(), digest);
    let kinds: Vec<String> =
        k.remote.referrers(&t, &digest).await.unwrap().into_iter().filter_map(|r| r.artifact_type).collect();
    assert!(
        kinds.contains(&cosign::BUNDLE_ARTIFACT_TYPE.to_owned())
            && kinds.iter().any(|t| t.contains("fulcrum.release-record")),
        "{kinds:?}"
    );

    // Registered again from the registry by digest: the model-signing bundle found as a referrer
    // satisfies the policy, and the files are the same bytes (same artifact digest).
    let pinned = format!("{}/exported/fraud@{digest}", k.reg.host);
    let mut args: Vec<String> = ["version", "register", "fraud", "2", "--oci", &pinned].map(str::to_owned).to_vec();
    args.extend(k.governed());
    let v2 = common::ok(&k.run("ci", &args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(v2["artifact_digest"], v1["artifact_digest"], "byte-identical files");
    assert_eq!(v2["files"], v1["files"]);
    assert_eq!(v2["release"]["release_gate"]["artifact_signature"]["format"], "model-signing/v1.0");
    assert_eq!(v2["release"]["release_gate"]["oci"]["digest"], digest.as_str());

    // A revoked version is not handed out for export.
    common::ok(&k.run("bo", &["version", "revoke", "fraud", "1", "--reason", "test revocation", "--inc-id", "INC-1"]));
    let err = one_error_line(&export("ci"));
    assert!(err.to_lowercase().contains("revoked") || err.contains("410") || err.contains("403"), "{err}");
}
