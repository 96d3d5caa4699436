//! Putting model artifacts and signatures into a registry the way their usual tools do:
//! a ModelPack (raw layers), a KitOps-style ModelKit (a Kitfile config and tar layers), a
//! modelcar image (files under `/models` in an image layer), a cosign v3 bundle referrer and a
//! cosign v2 `.sig` image. Used by `fulcrum version export`, the tests and the benchmarks.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cosign;
use crate::layout::{self, Descriptor, ImageManifest};
use crate::remote::{Remote, Target};
use crate::{OciError, sha256_of};

/// A file to publish: its path in the model and where its bytes are.
#[derive(Debug, Clone)]
pub struct FileSource<'a> {
    pub path: &'a str,
    pub local: &'a Path,
}

fn io(e: std::io::Error) -> OciError {
    OciError::Io(e.to_string())
}

/// The SHA-256 and size of a file, streamed.
///
/// # Errors
/// The file not readable.
pub fn hash_file(path: &Path) -> Result<(String, u64), OciError> {
    use sha2::Digest as _;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

/// Push a ModelPack (one raw layer per file) under `tag` (or by digest); its manifest digest.
///
/// # Errors
/// Unreadable files, the registry refusing a push.
pub async fn modelpack(
    remote: &Remote,
    t: &Target,
    name: &str,
    version: &str,
    files: &[FileSource<'_>],
    annotations: BTreeMap<String, String>,
    tag: Option<&str>,
) -> Result<(String, ImageManifest), OciError> {
    let mut layers = Vec::with_capacity(files.len());
    for f in files {
        let local = f.local.to_owned();
        let (digest, size) =
            tokio::task::spawn_blocking(move || hash_file(&local)).await.map_err(|e| OciError::Io(e.to_string()))??;
        remote.push_file(t, f.local, &digest, size).await?;
        layers.push((layout::safe_path(f.path)?, digest, size));
    }
    let digests: Vec<String> = layers.iter().map(|l| l.1.clone()).collect();
    let config = remote.push_blob(t, layout::modelpack_config(name, version, &digests)).await?;
    let mut m =
        layout::modelpack_manifest(Descriptor { media_type: layout::MODELPACK_CONFIG.into(), ..config }, &layers);
    m.annotations = annotations;
    let digest = remote.push_manifest(t, &m, tag).await?;
    Ok((digest, m))
}

/// A tar of `files` (paths as given; `prefix` before each), gzip-compressed when asked.
///
/// # Errors
/// Unreadable files.
pub fn tar_of(files: &[FileSource<'_>], prefix: &str, gzip: bool) -> Result<Vec<u8>, OciError> {
    let mut b = tar::Builder::new(Vec::new());
    for f in files {
        b.append_path_with_name(f.local, format!("{prefix}{}", f.path)).map_err(io)?;
    }
    let raw = b.into_inner().map_err(io)?;
    if !gzip {
        return Ok(raw);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).map_err(io)?;
    gz.finish().map_err(io)
}

/// Push a ModelKit: a Kitfile config and one `model` tar layer holding `files`.
///
/// # Errors
/// As [`modelpack`].
pub async fn modelkit(
    remote: &Remote,
    t: &Target,
    name: &str,
    files: &[FileSource<'_>],
    tag: &str,
) -> Result<String, OciError> {
    let kitfile = serde_json::to_vec(&serde_json::json!({
        "manifestVersion": "1.0.0",
        "package": {"name": name},
        "model": {"name": name, "path": "."},
    }))
    .expect("kitfiles serialise");
    let config = remote.push_blob(t, kitfile).await?;
    let layer = remote.push_blob(t, tar_of(files, "", false)?).await?;
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(layout::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor { media_type: layout::MODELKIT_CONFIG.into(), ..config },
        layers: vec![Descriptor { media_type: "application/vnd.kitops.modelkit.model.v1.tar".into(), ..layer }],
        subject: None,
        annotations: BTreeMap::new(),
    };
    remote.push_manifest(t, &m, Some(tag)).await
}

/// Push a modelcar image: a "base" layer with files outside `/models` (what an image carries
/// besides the model) and a layer with `files` under `/models`, gzip-compressed.
///
/// # Errors
/// As [`modelpack`].
pub async fn modelcar(
    remote: &Remote,
    t: &Target,
    base: &[FileSource<'_>],
    files: &[FileSource<'_>],
    tag: &str,
) -> Result<String, OciError> {
    let base_layer = remote.push_blob(t, tar_of(base, "", true)?).await?;
    let model_layer = remote.push_blob(t, tar_of(files, layout::MODELCAR_ROOT, true)?).await?;
    let config = remote
        .push_blob(
            t,
            serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []}, "config": {}}))
            .expect("configs serialise"),
        )
        .await?;
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(layout::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor { media_type: layout::OCI_IMAGE_CONFIG.into(), ..config },
        layers: vec![
            Descriptor { media_type: gz.into(), ..base_layer },
            Descriptor { media_type: gz.into(), ..model_layer },
        ],
        subject: None,
        annotations: BTreeMap::new(),
    };
    remote.push_manifest(t, &m, Some(tag)).await
}

/// The descriptor of the manifest at `digest` (for a referrer's subject).
///
/// # Errors
/// The registry failing.
pub async fn subject(remote: &Remote, t: &Target, digest: &str) -> Result<Descriptor, OciError> {
    let bytes = remote.manifest(t, digest).await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| OciError::Manifest(e.to_string()))?;
    Ok(Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or(layout::OCI_MANIFEST).to_owned(),
        digest: sha256_of(&bytes),
        size: bytes.len() as u64,
        artifact_type: v["artifactType"].as_str().map(str::to_owned),
        annotations: BTreeMap::new(),
    })
}

/// Attach `bytes` to the manifest at `digest` as a referrer of `artifact_type` (one layer of
/// `media_type`).
///
/// # Errors
/// The registry refusing a push.
pub async fn attach(
    remote: &Remote,
    t: &Target,
    digest: &str,
    bytes: Vec<u8>,
    artifact_type: &str,
    media_type: &str,
    annotations: BTreeMap<String, String>,
) -> Result<String, OciError> {
    let subject = subject(remote, t, digest).await?;
    let layer = remote.push_blob(t, bytes).await?;
    let layer = Descriptor { media_type: media_type.into(), ..layer };
    remote.push_referrer(t, &layout::referrer_manifest(artifact_type, layer, subject, annotations)).await
}

/// Attach a Sigstore bundle (a cosign v3 signature, or any bundle with `predicate_type`) to
/// the manifest at `digest` as a referrer.
///
/// # Errors
/// The registry refusing a push.
pub async fn attach_bundle(
    remote: &Remote,
    t: &Target,
    digest: &str,
    bundle: Vec<u8>,
    predicate_type: &str,
) -> Result<String, OciError> {
    let annotations = [
        (cosign::BUNDLE_PREDICATE_ANNOTATION.to_owned(), predicate_type.to_owned()),
        (cosign::BUNDLE_CONTENT_ANNOTATION.to_owned(), "dsse-envelope".to_owned()),
    ]
    .into();
    attach(remote, t, digest, bundle, cosign::BUNDLE_ARTIFACT_TYPE, cosign::BUNDLE_MEDIA_TYPE, annotations).await
}

/// Push a cosign v2 signature image (`sha256-<hex>.sig`) with one simple-signing layer.
///
/// # Errors
/// The registry refusing a push.
pub async fn legacy_signature(
    remote: &Remote,
    t: &Target,
    digest: &str,
    payload: Vec<u8>,
    signature_b64: &str,
) -> Result<String, OciError> {
    let layer = remote.push_blob(t, payload).await?;
    let config = remote.push_blob(t, b"{}".to_vec()).await?;
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(layout::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor { media_type: layout::OCI_IMAGE_CONFIG.into(), ..config },
        layers: vec![Descriptor {
            media_type: cosign::SIMPLE_SIGNING.into(),
            annotations: [(cosign::SIGNATURE_ANNOTATION.to_owned(), signature_b64.to_owned())].into(),
            ..layer
        }],
        subject: None,
        annotations: BTreeMap::new(),
    };
    remote.push_manifest(t, &m, Some(&cosign::legacy_tag(digest))).await
}
