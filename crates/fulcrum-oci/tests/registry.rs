//! Against a real OCI registry (the CNCF distribution registry): a ModelPack pushed by digest
//! reads back byte for byte, a tag resolves once to its digest, cosign v3 bundles attached as
//! referrers are found through the tag-schema index (distribution 2.8 has no referrers API) and
//! verify, and a legacy `.sig` tag is read; a blob changed on the registry's disk is caught.

use std::collections::BTreeMap;

use fulcrum_oci::cosign::{self, Trust};
use fulcrum_oci::layout::{self, Descriptor, Source};
use fulcrum_oci::remote::{Remote, Settings, Target};
use fulcrum_oci::sha256_of;
use fulcrum_sign::{Alg, LocalKey, Signer};

async fn push_modelpack(remote: &Remote, t: &Target, files: &[(&str, &[u8])], tag: &str) -> String {
    let mut layers = vec![];
    for (path, bytes) in files {
        let d = remote.push_blob(t, bytes.to_vec()).await.unwrap();
        layers.push(((*path).to_owned(), d.digest, d.size));
    }
    let digests: Vec<String> = layers.iter().map(|l| l.1.clone()).collect();
    let config = remote.push_blob(t, layout::modelpack_config("fraud", "1", &digests)).await.unwrap();
    let config = Descriptor { media_type: layout::MODELPACK_CONFIG.into(), ..config };
    remote.push_manifest(t, &layout::modelpack_manifest(config, &layers), Some(tag)).await.unwrap()
}

#[tokio::test]
async fn a_modelpack_round_trips_and_its_signatures_are_found_both_ways() {
    let Some(reg) = fulcrum_testkit::oci::Registry::start() else { return };
    let remote = Remote::new(&Settings { insecure: vec![reg.host.clone()], basic: None });
    let t = Target::parse(&format!("{}/models/fraud:v1", reg.host)).unwrap();
    let files: [(&str, &[u8]); 2] = [("model.safetensors", b"weights-one"), ("config/config.json", b"{\"a\":1}")];
    let digest = push_modelpack(&remote, &t, &files, "v1").await;
    assert_eq!(remote.resolve(&t).await.unwrap(), digest, "the tag resolves to what was pushed");
    let bytes = remote.manifest(&t, &digest).await.unwrap();
    let art = layout::classify(&bytes).unwrap();
    assert_eq!(art.kind, layout::Kind::ModelPack);
    for (layer, (path, content)) in art.layers.iter().zip(files) {
        assert_eq!(layer.source, Source::Raw { path: path.to_owned() });
        assert_eq!(remote.blob_bytes(&t, &layer.descriptor.digest, 1 << 20).await.unwrap(), content);
    }

    // cosign v3: a bundle referrer, found through the tag-schema index.
    let key = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
    let bundle = cosign::sign_bundle(&digest, &key).unwrap();
    let layer = remote.push_blob(&t, bundle.clone()).await.unwrap();
    let layer = Descriptor { media_type: cosign::BUNDLE_MEDIA_TYPE.into(), ..layer };
    let subject = Descriptor {
        media_type: layout::OCI_MANIFEST.into(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    let annotations =
        [(cosign::BUNDLE_PREDICATE_ANNOTATION.to_owned(), cosign::COSIGN_SIGN_PREDICATE.to_owned())].into();
    remote
        .push_referrer(&t, &layout::referrer_manifest(cosign::BUNDLE_ARTIFACT_TYPE, layer, subject, annotations))
        .await
        .unwrap();
    let refs = remote.referrers(&t, &digest).await.unwrap();
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].artifact_type.as_deref(), Some(cosign::BUNDLE_ARTIFACT_TYPE));
    let rm = layout::ImageManifest::clone(
        &serde_json::from_slice(&remote.manifest(&t, &refs[0].digest).await.unwrap()).unwrap(),
    );
    let got = remote.blob_bytes(&t, &rm.layers[0].digest, 1 << 20).await.unwrap();
    let keys = [key.public_key().clone()];
    let trust = Trust { keys: &keys, keyless: &[], root: None };
    assert_eq!(cosign::verify_bundle(&got, &digest, trust).unwrap().signer, key.public_key().fingerprint());

    // cosign v2: a simple-signing image under sha256-<hex>.sig.
    let payload = cosign::simple_signing_payload(&t.repository(), &digest);
    let sig = cosign::sign_simple(&payload, &key).unwrap();
    let pl = remote.push_blob(&t, payload.clone()).await.unwrap();
    let cfg = remote.push_blob(&t, b"{}".to_vec()).await.unwrap();
    let legacy = layout::ImageManifest {
        schema_version: 2,
        media_type: Some(layout::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor { media_type: layout::OCI_IMAGE_CONFIG.into(), ..cfg },
        layers: vec![Descriptor {
            media_type: cosign::SIMPLE_SIGNING.into(),
            annotations: [(cosign::SIGNATURE_ANNOTATION.to_owned(), sig.clone())].into(),
            ..pl
        }],
        subject: None,
        annotations: BTreeMap::new(),
    };
    remote.push_manifest(&t, &legacy, Some(&cosign::legacy_tag(&digest))).await.unwrap();
    let (lb, _) = remote.manifest_at_tag(&t, &cosign::legacy_tag(&digest)).await.unwrap().unwrap();
    let lm: layout::ImageManifest = serde_json::from_slice(&lb).unwrap();
    let p = remote.blob_bytes(&t, &lm.layers[0].digest, 1 << 20).await.unwrap();
    let s = &lm.layers[0].annotations[cosign::SIGNATURE_ANNOTATION];
    cosign::verify_simple_signing(&p, s, &digest, trust).unwrap();
    assert!(remote.manifest_at_tag(&t, "sha256-nothing.sig").await.unwrap().is_none());

    // A blob changed on the registry's disk: the bytes no longer hash to their digest.
    let victim = &art.layers[0].descriptor.digest;
    std::fs::write(reg.blob_path(victim), b"weights-two").unwrap();
    let e = remote.blob_bytes(&t, victim, 1 << 20).await.unwrap_err();
    assert_eq!(e.code(), "oci_digest_mismatch", "{e}");
    assert_eq!(sha256_of(b"weights-one"), *victim);
}
