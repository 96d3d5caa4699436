//! Against a real OCI registry (the CNCF distribution registry): a ModelPack pushed by digest
//! reads back byte for byte, a tag resolves once to its digest, cosign v3 bundles attached as
//! referrers are found through the tag-schema index (distribution 2.8 has no referrers API) and
//! verify, and a legacy `.sig` tag is read; a blob changed on the registry's disk is caught.

use fulcrum_oci::cosign::{self, Trust};
use fulcrum_oci::layout::{self, ImageManifest, Source};
use fulcrum_oci::publish::{self, FileSource};
use fulcrum_oci::remote::{Remote, Settings, Target};
use fulcrum_oci::sha256_of;
use fulcrum_sign::{Alg, LocalKey, Signer};

#[tokio::test]
async fn a_modelpack_round_trips_and_its_signatures_are_found_both_ways() {
    let Some(reg) = fulcrum_testkit::oci::Registry::start() else { return };
    let remote = Remote::new(&Settings { insecure: vec![reg.host.clone()], basic: None });
    let t = Target::parse(&format!("{}/models/fraud:v1", reg.host)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 2] = [("model.safetensors", b"weights-one"), ("config/config.json", b"{\"a\":1}")];
    let locals: Vec<(&str, std::path::PathBuf)> = files
        .iter()
        .enumerate()
        .map(|(i, (p, b))| {
            let local = work.path().join(format!("f{i}"));
            std::fs::write(&local, b).unwrap();
            (*p, local)
        })
        .collect();
    let sources: Vec<FileSource<'_>> = locals.iter().map(|(path, local)| FileSource { path, local }).collect();
    let (digest, _) =
        publish::modelpack(&remote, &t, "fraud", "1", &sources, Default::default(), Some("v1")).await.unwrap();
    assert_eq!(remote.resolve(&t).await.unwrap(), digest, "the tag resolves to what was pushed");
    let art = layout::classify(&remote.manifest(&t, &digest).await.unwrap()).unwrap();
    assert_eq!(art.kind, layout::Kind::ModelPack);
    for (layer, (path, content)) in art.layers.iter().zip(files) {
        assert_eq!(layer.source, Source::Raw { path: path.to_owned() });
        assert_eq!(remote.blob_bytes(&t, &layer.descriptor.digest, 1 << 20).await.unwrap(), content);
    }

    // cosign v3: a bundle referrer, found through the tag-schema index.
    let key = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
    publish::attach_bundle(
        &remote,
        &t,
        &digest,
        cosign::sign_bundle(&digest, &key).unwrap(),
        cosign::COSIGN_SIGN_PREDICATE,
    )
    .await
    .unwrap();
    let refs = remote.referrers(&t, &digest).await.unwrap();
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].artifact_type.as_deref(), Some(cosign::BUNDLE_ARTIFACT_TYPE));
    let rm: ImageManifest = serde_json::from_slice(&remote.manifest(&t, &refs[0].digest).await.unwrap()).unwrap();
    assert_eq!(rm.subject.as_ref().map(|s| s.digest.as_str()), Some(digest.as_str()));
    let got = remote.blob_bytes(&t, &rm.layers[0].digest, 1 << 20).await.unwrap();
    let keys = [key.public_key().clone()];
    let trust = Trust { keys: &keys, keyless: &[], root: None };
    assert_eq!(cosign::verify_bundle(&got, &digest, trust).unwrap().signer, key.public_key().fingerprint());

    // cosign v2: a simple-signing image under sha256-<hex>.sig.
    let payload = cosign::simple_signing_payload(&t.repository(), &digest);
    let sig = cosign::sign_simple(&payload, &key).unwrap();
    publish::legacy_signature(&remote, &t, &digest, payload, &sig).await.unwrap();
    let lb = remote.manifest_at_tag(&t, &cosign::legacy_tag(&digest)).await.unwrap().unwrap();
    let lm: ImageManifest = serde_json::from_slice(&lb).unwrap();
    let p = remote.blob_bytes(&t, &lm.layers[0].digest, 1 << 20).await.unwrap();
    cosign::verify_simple_signing(&p, &lm.layers[0].annotations[cosign::SIGNATURE_ANNOTATION], &digest, trust).unwrap();
    assert!(remote.manifest_at_tag(&t, "sha256-nothing.sig").await.unwrap().is_none());

    // A blob changed on the registry's disk: the bytes no longer hash to their digest.
    let victim = &art.layers[0].descriptor.digest;
    std::fs::write(reg.blob_path(victim), b"weights-two").unwrap();
    let e = remote.blob_bytes(&t, victim, 1 << 20).await.unwrap_err();
    assert_eq!(e.code(), "oci_digest_mismatch", "{e}");
    assert_eq!(sha256_of(b"weights-one"), *victim);
}
