//! What an OCI manifest holds, pure: which kind of model artifact it is (CNCF ModelPack, KitOps
//! ModelKit, KServe modelcar image) and where each model file comes from — a `raw` layer that
//! *is* the file (its layer digest is the file's SHA-256), or a tar layer to unpack. Anything
//! else is refused with a reason: an image index (name one manifest by digest), an unknown
//! artifact, a compression this build does not read, a path that leaves the model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::OciError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// ModelPack (CNCF model-spec).
pub const MODELPACK_ARTIFACT: &str = "application/vnd.cncf.model.manifest.v1+json";
pub const MODELPACK_CONFIG: &str = "application/vnd.cncf.model.config.v1+json";
pub const MODELPACK_WEIGHT_RAW: &str = "application/vnd.cncf.model.weight.v1.raw";
pub const FILEPATH_ANNOTATION: &str = "org.cncf.model.filepath";
/// KitOps ModelKit.
pub const MODELKIT_CONFIG: &str = "application/vnd.kitops.modelkit.config.v1+json";
/// Container images (modelcars).
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The empty descriptor's media type (referrer manifests' config).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Where a modelcar keeps the model (KServe links `/mnt/models` to it).
pub const MODELCAR_ROOT: &str = "models/";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest (also the shape of a Docker v2 manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index (the referrers list has this shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ModelPack,
    ModelKit,
    Modelcar,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ModelPack => "modelpack",
            Kind::ModelKit => "modelkit",
            Kind::Modelcar => "modelcar",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// Where a layer's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The layer is one file at this path; its digest is the file's SHA-256.
    Raw { path: String },
    /// A tar of files; for a modelcar only the entries under [`MODELCAR_ROOT`] are the model.
    Tar { compression: Compression, under: Option<&'static str> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub source: Source,
}

/// A recognised model artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub kind: Kind,
    pub manifest: ImageManifest,
    pub layers: Vec<Layer>,
}

/// Check a path inside a model: relative, `/`-separated, no `.`/`..`/empty components, no
/// control characters or backslashes. Returns it without a leading `./`.
///
/// # Errors
/// `OciError::UnsafePath` naming it.
pub fn safe_path(p: &str) -> Result<String, OciError> {
    let p = p.strip_prefix("./").unwrap_or(p);
    let bad = p.is_empty()
        || p.len() > 4096
        || p.starts_with('/')
        || p.contains('\\')
        || p.chars().any(char::is_control)
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad { Err(OciError::UnsafePath(p.to_owned())) } else { Ok(p.to_owned()) }
}

fn sha256_digest(d: &str) -> Result<(), OciError> {
    match d.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(()),
        _ => Err(OciError::Digest(d.to_owned())),
    }
}

fn compression_of(suffix: &str, media_type: &str) -> Result<Compression, OciError> {
    match suffix {
        "tar" => Ok(Compression::None),
        "tar+gzip" | "tar.gzip" | "tar.gz" => Ok(Compression::Gzip),
        _ => Err(OciError::Unsupported(format!("layer media type {media_type} (this build reads tar and tar+gzip)"))),
    }
}

/// Recognise a manifest (exact bytes as pulled) and map its layers to files.
///
/// # Errors
/// `OciError` with a reason: not JSON of the expected shape, an index, an unknown artifact, an
/// unsupported layer, a bad digest, an unsafe or duplicate path.
pub fn classify(bytes: &[u8]) -> Result<Artifact, OciError> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| OciError::Manifest(e.to_string()))?;
    match raw["mediaType"].as_str() {
        Some(OCI_INDEX | DOCKER_LIST) => return Err(OciError::Index),
        None if raw.get("manifests").is_some() => return Err(OciError::Index),
        Some(OCI_MANIFEST | DOCKER_MANIFEST) | None => {}
        Some(other) => return Err(OciError::Manifest(format!("media type {other} is not an image manifest"))),
    }
    let manifest: ImageManifest = serde_json::from_value(raw).map_err(|e| OciError::Manifest(e.to_string()))?;
    if manifest.schema_version != 2 {
        return Err(OciError::Manifest(format!("schemaVersion {}", manifest.schema_version)));
    }
    sha256_digest(&manifest.config.digest)?;
    let config = manifest.config.media_type.as_str();
    let kind = if manifest.artifact_type.as_deref() == Some(MODELPACK_ARTIFACT) || config == MODELPACK_CONFIG {
        Kind::ModelPack
    } else if config == MODELKIT_CONFIG {
        Kind::ModelKit
    } else if config == OCI_IMAGE_CONFIG || config == DOCKER_IMAGE_CONFIG {
        Kind::Modelcar
    } else {
        return Err(OciError::UnknownArtifact(
            manifest.artifact_type.clone().unwrap_or_else(|| manifest.config.media_type.clone()),
        ));
    };
    let mut layers = Vec::with_capacity(manifest.layers.len());
    let mut paths = std::collections::BTreeSet::new();
    for d in &manifest.layers {
        sha256_digest(&d.digest)?;
        let mt = d.media_type.as_str();
        let source = match kind {
            Kind::ModelPack => {
                let rest = mt
                    .strip_prefix("application/vnd.cncf.model.")
                    .ok_or_else(|| OciError::Unsupported(format!("layer media type {mt} in a ModelPack")))?;
                let (_, format) =
                    rest.split_once(".v1.").ok_or_else(|| OciError::Unsupported(format!("layer media type {mt}")))?;
                if format == "raw" {
                    let path = d.annotations.get(FILEPATH_ANNOTATION).ok_or_else(|| {
                        OciError::Manifest(format!("raw layer {} has no {FILEPATH_ANNOTATION}", d.digest))
                    })?;
                    let path = safe_path(path)?;
                    if !paths.insert(path.clone()) {
                        return Err(OciError::DuplicatePath(path));
                    }
                    Source::Raw { path }
                } else {
                    Source::Tar { compression: compression_of(format, mt)?, under: None }
                }
            }
            Kind::ModelKit => {
                let rest = mt
                    .strip_prefix("application/vnd.kitops.modelkit.")
                    .ok_or_else(|| OciError::Unsupported(format!("layer media type {mt} in a ModelKit")))?;
                let (_, format) =
                    rest.split_once(".v1.").ok_or_else(|| OciError::Unsupported(format!("layer media type {mt}")))?;
                Source::Tar { compression: compression_of(format, mt)?, under: None }
            }
            Kind::Modelcar => {
                let format = match mt {
                    "application/vnd.oci.image.layer.v1.tar" => "tar",
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                    | "application/vnd.docker.image.rootfs.diff.tar.gzip" => "tar+gzip",
                    other => return Err(OciError::Unsupported(format!("image layer media type {other}"))),
                };
                Source::Tar { compression: compression_of(format, mt)?, under: Some(MODELCAR_ROOT) }
            }
        };
        layers.push(Layer { descriptor: d.clone(), source });
    }
    if layers.is_empty() {
        return Err(OciError::Manifest("no layers".into()));
    }
    Ok(Artifact { kind, manifest, layers })
}

/// A ModelPack manifest over raw layers, one per file `(path, sha256 digest, size)`, with the
/// config blob's descriptor: what `fulcrum version export --oci` pushes.
pub fn modelpack_manifest(config: Descriptor, files: &[(String, String, u64)]) -> ImageManifest {
    ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: Some(MODELPACK_ARTIFACT.into()),
        config,
        layers: files
            .iter()
            .map(|(path, digest, size)| Descriptor {
                media_type: MODELPACK_WEIGHT_RAW.into(),
                digest: digest.clone(),
                size: *size,
                artifact_type: None,
                annotations: [(FILEPATH_ANNOTATION.to_owned(), path.clone())].into(),
            })
            .collect(),
        subject: None,
        annotations: BTreeMap::new(),
    }
}

/// The ModelPack config blob for a model (its `modelfs.diffIds` are the raw layers' digests).
pub fn modelpack_config(name: &str, version: &str, layer_digests: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "descriptor": {"name": name, "version": version},
        "config": {},
        "modelfs": {"type": "layers", "diffIds": layer_digests},
    }))
    .expect("configs serialise")
}

/// A referrer manifest: an artifact of `artifact_type` with one layer, whose subject is the
/// model's manifest (the OCI 1.1 way to attach signatures and attestations).
pub fn referrer_manifest(
    artifact_type: &str,
    layer: Descriptor,
    subject: Descriptor,
    annotations: BTreeMap<String, String>,
) -> ImageManifest {
    ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: Some(artifact_type.into()),
        config: empty_descriptor(),
        layers: vec![layer],
        subject: Some(subject),
        annotations,
    }
}

/// The empty JSON descriptor (`{}`), the config of artifacts that have none.
pub fn empty_descriptor() -> Descriptor {
    Descriptor {
        media_type: EMPTY_MEDIA_TYPE.into(),
        digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
        size: 2,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(config_type: &str, layers: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": D1, "size": 2}, "layers": layers}))
        .unwrap()
    }

    #[test]
    fn the_three_kinds_are_recognised_as_data() {
        let mp = manifest(
            MODELPACK_CONFIG,
            json!([{"mediaType": MODELPACK_WEIGHT_RAW, "digest": D2, "size": 5, "annotations": {FILEPATH_ANNOTATION: "w/model.safetensors"}},
                   {"mediaType": "application/vnd.cncf.model.doc.v1.tar", "digest": D1, "size": 5}]),
        );
        let a = classify(&mp).unwrap();
        assert_eq!(a.kind, Kind::ModelPack);
        assert_eq!(a.layers[0].source, Source::Raw { path: "w/model.safetensors".into() });
        assert_eq!(a.layers[1].source, Source::Tar { compression: Compression::None, under: None });
        let mk = manifest(
            MODELKIT_CONFIG,
            json!([{"mediaType": "application/vnd.kitops.modelkit.model.v1.tar+gzip", "digest": D2, "size": 9}]),
        );
        assert_eq!(
            classify(&mk).unwrap().layers[0].source,
            Source::Tar { compression: Compression::Gzip, under: None }
        );
        let mc = manifest(
            OCI_IMAGE_CONFIG,
            json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 9}]),
        );
        let a = classify(&mc).unwrap();
        assert_eq!(
            (a.kind, &a.layers[0].source),
            (Kind::Modelcar, &Source::Tar { compression: Compression::Gzip, under: Some(MODELCAR_ROOT) })
        );
    }

    #[test]
    fn what_cannot_be_read_safely_is_refused_with_a_reason() {
        let raw = |path: &str| {
            manifest(
                MODELPACK_CONFIG,
                json!([{"mediaType": MODELPACK_WEIGHT_RAW, "digest": D2, "size": 5, "annotations": {FILEPATH_ANNOTATION: path}}]),
            )
        };
        for (bytes, code) in [
            (raw("../etc/passwd"), "oci_unsafe_path"),
            (raw("/abs"), "oci_unsafe_path"),
            (raw("a//b"), "oci_unsafe_path"),
            (
                serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})).unwrap(),
                "oci_index",
            ),
            (
                manifest("application/vnd.example.thing", json!([{"mediaType": "x", "digest": D2, "size": 1}])),
                "oci_unknown_artifact",
            ),
            (
                manifest(
                    MODELKIT_CONFIG,
                    json!([{"mediaType": "application/vnd.kitops.modelkit.model.v1.tar+zstd", "digest": D2, "size": 9}]),
                ),
                "oci_unsupported",
            ),
            (
                manifest(
                    MODELPACK_CONFIG,
                    json!([{"mediaType": MODELPACK_WEIGHT_RAW, "digest": "sha256:abc", "size": 5, "annotations": {FILEPATH_ANNOTATION: "a"}}]),
                ),
                "oci_digest",
            ),
            (
                manifest(MODELPACK_CONFIG, json!([{"mediaType": MODELPACK_WEIGHT_RAW, "digest": D2, "size": 5}])),
                "oci_manifest",
            ),
            (manifest(MODELPACK_CONFIG, json!([])), "oci_manifest"),
            (
                manifest(
                    MODELPACK_CONFIG,
                    json!([
                {"mediaType": MODELPACK_WEIGHT_RAW, "digest": D2, "size": 5, "annotations": {FILEPATH_ANNOTATION: "a"}},
                {"mediaType": MODELPACK_WEIGHT_RAW, "digest": D1, "size": 5, "annotations": {FILEPATH_ANNOTATION: "./a"}}]),
                ),
                "oci_duplicate_path",
            ),
            (b"not json".to_vec(), "oci_manifest"),
        ] {
            let e = classify(&bytes).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
        }
    }

    #[test]
    fn an_exported_modelpack_reads_back_as_the_same_files() {
        let files = vec![("a.bin".to_owned(), D1.to_owned(), 3), ("dir/b.json".to_owned(), D2.to_owned(), 4)];
        let m = modelpack_manifest(empty_descriptor(), &files);
        let a = classify(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(a.kind, Kind::ModelPack);
        let back: Vec<(String, String, u64)> = a
            .layers
            .iter()
            .map(|l| match &l.source {
                Source::Raw { path } => (path.clone(), l.descriptor.digest.clone(), l.descriptor.size),
                Source::Tar { .. } => panic!("raw layers only"),
            })
            .collect();
        assert_eq!(back, files);
    }

    proptest! {
        /// Arbitrary bytes never panic the parser; whatever it accepts has only safe paths.
        #[test]
        fn classify_never_panics_and_accepts_only_safe_paths(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(a) = classify(&bytes) {
                for l in a.layers {
                    if let Source::Raw { path } = l.source { prop_assert!(safe_path(&path).is_ok()); }
                }
            }
        }

        #[test]
        fn safe_paths_never_climb_out(p in "[a-z./]{0,24}") {
            if let Ok(s) = safe_path(&p) {
                prop_assert!(!s.starts_with('/') && !s.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
            }
        }
    }
}
