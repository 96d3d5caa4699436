//! Verification of signed artifacts, shared by the registry (release gate) and the serving agent.
//!
//! - [`dsse`]: DSSE envelopes and PAE.
//! - [`intoto`]: in-toto Statement v1.
//! - [`modeldir`]: walking and hashing a model directory (files or shards; SHA-256, BLAKE2b,
//!   BLAKE3), in parallel.
//! - [`keyless`]: Sigstore bundles (Fulcio certificate, Rekor entry, RFC 3161 timestamps)
//!   verified offline against a pinned `trusted_root.json`, under a mandatory identity policy.
//! - [`slsa`]: SLSA Provenance v1 verification (trusted builders) and SBOM recognition.
//! - [`model_signing`]: the OpenSSF model-signing bundle (Sigstore bundle v0.3 with a DSSE
//!   envelope over an in-toto statement listing every file's digest): verify and sign.
//!
//! Every failed check is a [`Failure`] with a stable machine-readable [`Failure::code`], which the
//! registry lists in a 422 and the agent reports as its `startup_deny` reason.
//!
//! # Invariants
//! - No server, storage or HTTP dependencies (the agent links this crate).
//! - Signatures are checked over exact bytes before anything in them is trusted.
//! - A model verifies only if the set of files on disk equals the signed set exactly.

#[cfg(unix)]
pub mod cache;
pub mod dsse;
pub mod intoto;
pub mod keyless;
pub mod model_signing;
pub mod modeldir;
pub mod slsa;

/// Why a verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("bundle is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("unsupported bundle media type {0:?}")]
    MediaType(String),
    #[error("the bundle names another key (hint mismatch)")]
    KeyMismatch,
    #[error("the bundle carries no verification material this verifier accepts")]
    VerificationMaterial,
    #[error("certificate chain invalid: {0}")]
    Certificate(String),
    #[error("expected exactly one signature, found {0}")]
    SignatureCount(usize),
    #[error("signature does not verify")]
    BadSignature,
    #[error("unexpected payload type {0:?}")]
    PayloadType(String),
    #[error("unexpected statement type {0:?}")]
    StatementType(String),
    #[error("unexpected predicate type {0:?}")]
    PredicateType(String),
    #[error("expected exactly one subject, found {0}")]
    SubjectCount(usize),
    #[error("subject digest does not match the listed resources")]
    RootDigest,
    #[error("resource {0:?} is listed twice")]
    DuplicateResource(String),
    #[error("unsupported hash algorithm {0:?}")]
    HashAlgorithm(String),
    #[error("unsupported serialization: {0}")]
    Serialization(String),
    #[error("signed ignore_paths exclude files the policy requires to be signed: {0:?}")]
    IgnorePaths(Vec<String>),
    #[error("files not covered by the signature: {0:?}")]
    ExtraFiles(Vec<String>),
    #[error("signed files missing: {0:?}")]
    MissingFiles(Vec<String>),
    #[error("content differs from the signature for: {0:?}")]
    HashMismatch(Vec<String>),
    #[error("{0} is a symlink; models are regular files only")]
    Symlink(String),
    #[error("cannot read the model: {0}")]
    Io(String),
    #[error("no subject of the attestation is the artifact")]
    SubjectMismatch,
    #[error("builder {0:?} is not trusted (or not for this signing key)")]
    UntrustedBuilder(String),
    #[error("build type {0:?} is not the expected one")]
    BuildType(String),
    #[error("SBOM invalid: {0}")]
    SbomInvalid(String),
    #[error("trusted root unusable: {0}")]
    TrustRoot(String),
    #[error("transparency log: {0}")]
    Transparency(String),
    #[error("timestamp: {0}")]
    Timestamp(String),
    #[error("a keyless signature needs an identity policy (issuer and identity); none was given")]
    IdentityPolicyMissing,
    #[error("signed by {identity:?} (issuer {issuer:?}), which no trusted signer admits")]
    SignerIdentity { issuer: String, identity: String },
}

impl Failure {
    /// Stable machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Malformed(_) => "bundle_malformed",
            Failure::MediaType(_) => "bundle_media_type",
            Failure::KeyMismatch => "key_mismatch",
            Failure::VerificationMaterial => "verification_material",
            Failure::Certificate(_) => "certificate_invalid",
            Failure::SignatureCount(_) => "signature_count",
            Failure::BadSignature => "signature_invalid",
            Failure::PayloadType(_) => "payload_type",
            Failure::StatementType(_) => "statement_type",
            Failure::PredicateType(_) => "predicate_type",
            Failure::SubjectCount(_) => "subject_count",
            Failure::RootDigest => "root_digest_mismatch",
            Failure::DuplicateResource(_) => "duplicate_resource",
            Failure::HashAlgorithm(_) => "hash_algorithm",
            Failure::Serialization(_) => "serialization",
            Failure::IgnorePaths(_) => "ignore_paths_policy",
            Failure::ExtraFiles(_) => "extra_files",
            Failure::MissingFiles(_) => "missing_files",
            Failure::HashMismatch(_) => "hash_mismatch",
            Failure::Symlink(_) => "symlink",
            Failure::Io(_) => "io",
            Failure::SubjectMismatch => "subject_mismatch",
            Failure::UntrustedBuilder(_) => "untrusted_builder",
            Failure::BuildType(_) => "build_type",
            Failure::SbomInvalid(_) => "sbom_invalid",
            Failure::TrustRoot(_) => "trust_root_invalid",
            Failure::Transparency(_) => "tlog_invalid",
            Failure::Timestamp(_) => "timestamp_invalid",
            Failure::IdentityPolicyMissing => "identity_policy_missing",
            Failure::SignerIdentity { .. } => "signer_identity",
        }
    }
}

/// Decode base64 in either alphabet, padded or not (DSSE verifiers must accept both).
///
/// # Errors
/// Anything that is not base64.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, Failure> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        if let Ok(v) = engine.decode(s) {
            return Ok(v);
        }
    }
    Err(Failure::Malformed("invalid base64".into()))
}
