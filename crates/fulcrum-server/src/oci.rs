//! Registering a version from an OCI registry (`"oci": REF` in a registration): the tag, if
//! any, is resolved to a digest once; the manifest and every layer are pulled by digest, each
//! byte checked against the digest that named it while it streams into the blob store; the
//! artifact is recognised (ModelPack, ModelKit, modelcar) and its files become the version's
//! manifest. Signatures found with it — cosign v3 bundles among its referrers, a cosign v2
//! `.sig` tag, an OpenSSF model-signing bundle attached as a referrer — are collected here and
//! judged by the release gate under the release policy. The version records
//! `registry/repository@digest`; a tag is never recorded.

use fulcrum_core::{Digest, FileEntry};
use fulcrum_oci::cosign;
use fulcrum_oci::layout::{self, Source};
use fulcrum_oci::remote::{MAX_DOCUMENT, Remote, Target};
use fulcrum_oci::{OciError, tarball};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, CheckFailure};

/// Signatures read from the registry and referrers, not yet judged.
#[derive(Debug, Clone)]
pub enum Candidate {
    /// A cosign v3 bundle (referrer).
    Bundle(Vec<u8>),
    /// A cosign v2 simple-signing layer: its payload and base64 signature.
    SimpleSigning { payload: Vec<u8>, signature: String },
}

/// What an OCI registration brings to the release gate.
#[derive(Debug)]
pub struct Imported {
    pub files: Vec<FileEntry>,
    /// `sha256:` of the OCI manifest the files came from.
    pub digest: String,
    /// What the release record says of the source.
    pub facts: serde_json::Value,
    pub cosign: Vec<Candidate>,
    /// Model-signing bundles attached as referrers (stored as blobs, judged like uploaded ones).
    pub model_signing: Vec<Digest>,
}

/// At most this many referrers or signature layers are read.
const MAX_SIGNATURES: usize = 16;

fn refused(e: &OciError) -> ApiError {
    ApiError::unprocessable("release_gate_failed", format!("registration refused: oci ({})", e.code()))
        .with_errors(vec![CheckFailure { check: "oci".into(), detail: format!("{}: {e}", e.code()) }])
}

/// Pull `reference` into the blob store (granted to the caller's tenant).
///
/// # Errors
/// A 422 naming what was refused (`oci_*` reasons); store failures.
pub async fn import(state: &AppState, who: &Caller, reference: &str) -> Result<Imported, ApiError> {
    let t = Target::parse(reference).map_err(|e| refused(&e))?;
    // The registry pulls only from registries it was told about: a reference is input, and
    // must not make it fetch from anywhere it can reach (internal services, metadata endpoints).
    let host = t.registry();
    if !state.config.oci_registries.iter().chain(&state.config.oci.insecure).any(|r| r == host) {
        return Err(refused(&OciError::NotAllowed(host.to_owned())));
    }
    let remote = Remote::new(&state.config.oci);
    let digest = remote.resolve(&t).await.map_err(|e| refused(&e))?;
    let manifest = remote.manifest(&t, &digest).await.map_err(|e| refused(&e))?;
    let artifact = layout::classify(&manifest).map_err(|e| refused(&e))?;
    let mut files: Vec<FileEntry> = Vec::new();
    for layer in &artifact.layers {
        let d = &layer.descriptor;
        let expected: Digest = d.digest.parse().map_err(|_| refused(&OciError::Digest(d.digest.clone())))?;
        match &layer.source {
            Source::Raw { path } => {
                let stream = remote.blob_stream(&t, &d.digest).await.map_err(|e| refused(&e))?;
                let out = crate::routes::blobs::store_stream(state, who, stream, Some(expected), Some(d.size), |e| {
                    refused(&OciError::DigestMismatch { what: format!("layer {path} ({e})"), digest: d.digest.clone() })
                })
                .await?;
                files.push(FileEntry { path: path.clone(), size: out.size, digest: out.digest });
            }
            Source::Tar { compression, under } => {
                for f in unpack_layer(state, who, &remote, &t, d, *compression, *under).await? {
                    files.push(f);
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = files.iter().find(|f| !seen.insert(f.path.clone())) {
        return Err(refused(&OciError::DuplicatePath(dup.path.clone())));
    }
    let (cosign, model_signing) = signatures(state, who, &remote, &t, &digest).await?;
    let facts = serde_json::json!({
        "reference": t.pinned(&digest),
        "repository": t.repository(),
        "digest": digest,
        "kind": artifact.kind.as_str(),
        "layers": artifact.layers.len(),
    });
    Ok(Imported { files, digest, facts, cosign, model_signing })
}

/// A tar layer: downloaded to a temp file (checked against its digest), unpacked (regular files
/// only), each file stored as a blob.
async fn unpack_layer(
    state: &AppState,
    who: &Caller,
    remote: &Remote,
    t: &Target,
    d: &layout::Descriptor,
    compression: layout::Compression,
    under: Option<&'static str>,
) -> Result<Vec<FileEntry>, ApiError> {
    // Scratch space next to the blob store's own (a layer may be as large as a model).
    let tmp = tempfile::tempdir_in(state.blobs.spool_dir()).map_err(|e| ApiError::internal(&e))?;
    let layer_path = tmp.path().join("layer");
    remote.blob_to_file(t, &d.digest, &layer_path, state.config.max_blob_bytes).await.map_err(|e| refused(&e))?;
    let files_dir = tmp.path().join("files");
    std::fs::create_dir_all(&files_dir).map_err(|e| ApiError::internal(&e))?;
    let max = state.config.max_blob_bytes;
    let unpacked = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&layer_path).map_err(|e| OciError::Io(e.to_string()))?;
        tarball::unpack(std::io::BufReader::new(f), compression, under, &files_dir, max)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| refused(&e))?;
    let mut entries = Vec::with_capacity(unpacked.len());
    for u in unpacked {
        let file = tokio::fs::File::open(&u.file).await.map_err(|e| ApiError::internal(&e))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let stored = crate::routes::blobs::store_stream(state, who, stream, None, Some(u.size), |e: std::io::Error| {
            ApiError::internal(&e)
        })
        .await?;
        entries.push(FileEntry { path: u.path, size: stored.size, digest: stored.digest });
    }
    Ok(entries)
}

/// The signatures found with `digest`: cosign v3 bundles and model-signing bundles among its
/// referrers, and the simple-signing layers of a cosign v2 `.sig` tag.
async fn signatures(
    state: &AppState,
    who: &Caller,
    remote: &Remote,
    t: &Target,
    digest: &str,
) -> Result<(Vec<Candidate>, Vec<Digest>), ApiError> {
    let mut cosign_found = Vec::new();
    let mut model_signing = Vec::new();
    let referrers = remote.referrers(t, digest).await.map_err(|e| refused(&e))?;
    for r in referrers
        .iter()
        .filter(|r| r.artifact_type.as_deref() == Some(cosign::BUNDLE_ARTIFACT_TYPE))
        .take(MAX_SIGNATURES)
    {
        let m: layout::ImageManifest =
            serde_json::from_slice(&remote.manifest(t, &r.digest).await.map_err(|e| refused(&e))?)
                .map_err(|e| refused(&OciError::Manifest(format!("referrer {}: {e}", r.digest))))?;
        if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(digest) {
            continue;
        }
        let Some(layer) = m.layers.first() else { continue };
        let bundle = remote.blob_bytes(t, &layer.digest, MAX_DOCUMENT).await.map_err(|e| refused(&e))?;
        // Routed by the (not yet trusted) predicate; each kind is then verified in full.
        if predicate_of(&bundle).as_deref() == Some(fulcrum_verify::model_signing::PREDICATE_TYPE) {
            let chunk =
                futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(bundle.into())));
            let stored = crate::routes::blobs::store_stream(state, who, chunk, None, None, |e| match e {}).await?;
            model_signing.push(stored.digest);
        } else {
            cosign_found.push(Candidate::Bundle(bundle));
        }
    }
    if let Some(bytes) = remote.manifest_at_tag(t, &cosign::legacy_tag(digest)).await.map_err(|e| refused(&e))? {
        let m: layout::ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| refused(&OciError::Manifest(format!("the .sig image: {e}"))))?;
        for layer in m.layers.iter().filter(|l| l.media_type == cosign::SIMPLE_SIGNING).take(MAX_SIGNATURES) {
            let Some(sig) = layer.annotations.get(cosign::SIGNATURE_ANNOTATION) else { continue };
            let payload = remote.blob_bytes(t, &layer.digest, MAX_DOCUMENT).await.map_err(|e| refused(&e))?;
            cosign_found.push(Candidate::SimpleSigning { payload, signature: sig.clone() });
        }
    }
    Ok((cosign_found, model_signing))
}

fn predicate_of(bundle: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bundle).ok()?;
    let payload = fulcrum_verify::b64_decode(v["dsseEnvelope"]["payload"].as_str()?).ok()?;
    let st: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    Some(st["predicateType"].as_str()?.to_owned())
}

/// Judge the cosign signatures under the release policy: the verified ones, or — when some
/// were found and none verified — the first reason.
///
/// # Errors
/// The reason none of the found signatures verified.
pub fn judge(
    policy: &crate::release::ReleasePolicy,
    root: Option<&fulcrum_verify::keyless::TrustedRoot>,
    digest: &str,
    found: &[Candidate],
) -> Result<Vec<cosign::Signed>, CheckFailure> {
    let trust = cosign::Trust { keys: &policy.signers, keyless: &policy.keyless_signers, root };
    let mut ok = Vec::new();
    let mut first_err = None;
    for c in found {
        let r = match c {
            Candidate::Bundle(b) => cosign::verify_bundle(b, digest, trust),
            Candidate::SimpleSigning { payload, signature } => {
                cosign::verify_simple_signing(payload, signature, digest, trust)
            }
        };
        match r {
            Ok(s) => ok.push(s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (ok.is_empty(), first_err) {
        (true, Some(e)) => Err(CheckFailure {
            check: "artifact_signature".into(),
            detail: match e {
                OciError::Signature(d) => d,
                other => format!("{}: {other}", other.code()),
            },
        }),
        _ => Ok(ok),
    }
}
