//! Models kept in OCI registries, taken in and handed out by digest.
//!
//! - [`layout`]: which artifact a manifest is (ModelPack, KitOps ModelKit, KServe modelcar) and
//!   where each model file comes from (a raw layer, or a tar layer to unpack), pure.
//! - [`tarball`]: unpacking a tar layer into regular files only (no links, devices, whiteouts
//!   or paths leaving the model), pure over a reader.
//! - [`cosign`]: cosign signatures over a manifest digest — Sigstore bundles attached as OCI
//!   referrers (cosign v3) and simple-signing payloads under `sha256-<hex>.sig` tags (cosign v2)
//!   — verified under an identity policy; and signing them with a key (for tests and exports).
//! - [`publish`]: pushing ModelPacks, ModelKits, modelcar images and cosign signatures the way
//!   their usual tools do (exports, tests, benchmarks).
//! - [`remote`]: the registry client (pull and push by digest, referrers with the tag-schema
//!   fallback), the only module doing network I/O.
//!
//! # Invariants
//! - A tag is resolved to a digest once; everything after is fetched by digest, and every byte
//!   is checked against the digest that named it before it is used. Tags are never recorded.
//! - Anything not understood is refused with a machine-readable [`OciError::code`], never
//!   skipped: an unknown layer type, a link in a tar, a signature by nobody the policy names.

pub mod cosign;
pub mod layout;
#[cfg(feature = "remote")]
pub mod publish;
#[cfg(feature = "remote")]
pub mod remote;
pub mod tarball;

/// Why an OCI artifact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    #[error("not a usable image manifest: {0}")]
    Manifest(String),
    #[error("an image index names several manifests; name the model's manifest by digest")]
    Index,
    #[error("not a model artifact Fulcrum reads (ModelPack, ModelKit or modelcar): {0}")]
    UnknownArtifact(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("not a sha256 digest: {0:?}")]
    Digest(String),
    #[error("path {0:?} is not a safe relative path inside the model")]
    UnsafePath(String),
    #[error("path {0:?} appears twice")]
    DuplicatePath(String),
    #[error("{0}: not a regular file (links, devices and whiteouts are refused)")]
    NotRegular(String),
    #[error("{what} does not hash to the digest that names it ({digest})")]
    DigestMismatch { what: String, digest: String },
    #[error("{0} is larger than allowed")]
    TooLarge(String),
    #[error("the reference {0:?} does not parse")]
    Reference(String),
    #[error("{0} is not one of the registries this registry pulls from (--oci-registry)")]
    NotAllowed(String),
    #[error("the OCI registry: {0}")]
    Registry(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("cannot read a layer: {0}")]
    Io(String),
}

impl OciError {
    /// Stable machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            OciError::Manifest(_) => "oci_manifest",
            OciError::Index => "oci_index",
            OciError::UnknownArtifact(_) => "oci_unknown_artifact",
            OciError::Unsupported(_) => "oci_unsupported",
            OciError::Digest(_) => "oci_digest",
            OciError::UnsafePath(_) => "oci_unsafe_path",
            OciError::DuplicatePath(_) => "oci_duplicate_path",
            OciError::NotRegular(_) => "oci_not_regular_file",
            OciError::DigestMismatch { .. } => "oci_digest_mismatch",
            OciError::TooLarge(_) => "oci_too_large",
            OciError::Reference(_) => "oci_reference",
            OciError::NotAllowed(_) => "oci_registry_not_allowed",
            OciError::Registry(_) => "oci_registry",
            OciError::Signature(_) => "oci_signature",
            OciError::Io(_) => "oci_io",
        }
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
