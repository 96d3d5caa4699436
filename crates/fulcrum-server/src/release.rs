//! The release gate (SPEC §5.1 step 1, §7): what CI submits with a version is verified before
//! anything is stored — the artifact signature (OpenSSF model-signing bundle by a trusted CI
//! key, covering exactly the manifest's files), SLSA provenance (a trusted builder, signed by a
//! key trusted for it, subject = the artifact digest, the expected build type) and an SBOM
//! (CycloneDX or SPDX JSON). Then the registry signs a release attestation of its own.
//!
//! The policy comes from `--release-policy FILE`. Without one the gate runs in development mode:
//! whatever is submitted is verified, nothing is required, and the server says so loudly.

use std::path::Path;

use fulcrum_sign::PublicKey;
use fulcrum_verify::keyless::{self, KeylessSigner, TrustedRoot};
use fulcrum_verify::model_signing::{self, GIT_PATHS, Trust};
use fulcrum_verify::modeldir::Entry;
use fulcrum_verify::slsa::{self, TrustedBuilder};
use fulcrum_verify::{Failure, dsse, intoto};
use serde::Deserialize;

use crate::problem::CheckFailure;

/// What must accompany a release, and whom to trust for it.
#[derive(Debug, Clone, Default)]
pub struct ReleasePolicy {
    pub require_signature: bool,
    pub require_provenance: bool,
    pub require_sbom: bool,
    /// Keys that may sign model artifacts (CI keys).
    pub signers: Vec<PublicKey>,
    /// Sigstore keyless identities that may sign model artifacts (OIDC issuer + certificate
    /// identity), verified against the trusted root a key-admin put in force.
    pub keyless_signers: Vec<KeylessSigner>,
    pub builders: Vec<TrustedBuilder>,
    /// Paths a signer may exclude besides git metadata.
    pub allowed_ignore_paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    signers: Vec<SignerFile>,
    #[serde(default)]
    keyless_signers: Vec<KeylessSigner>,
    #[serde(default)]
    builders: Vec<BuilderFile>,
    #[serde(default)]
    allowed_ignore_paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerFile {
    public_key_pem: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuilderFile {
    id: String,
    build_types: Vec<String>,
    signer_public_keys_pem: Vec<String>,
}

impl ReleasePolicy {
    /// Load a policy file:
    /// `{"require": ["signature","provenance","sbom"], "signers": [{"public_key_pem": …}],
    ///   "keyless_signers": [{"issuer": …, "identity": … | "identity_pattern": …}],
    ///   "builders": [{"id", "build_types": [...], "signer_public_keys_pem": [...]}],
    ///   "allowed_ignore_paths": [...]}`.
    ///
    /// # Errors
    /// Unreadable files, unknown fields or requirements, bad keys.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let f: PolicyFile = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let key = |pem: &str| PublicKey::from_pem(pem.as_bytes()).map_err(|e| format!("{}: {e}", path.display()));
        let mut p = ReleasePolicy {
            allowed_ignore_paths: f.allowed_ignore_paths,
            keyless_signers: f.keyless_signers,
            ..Default::default()
        };
        for r in &f.require {
            match r.as_str() {
                "signature" => p.require_signature = true,
                "provenance" => p.require_provenance = true,
                "sbom" => p.require_sbom = true,
                other => return Err(format!("{}: unknown requirement {other:?}", path.display())),
            }
        }
        for s in &f.signers {
            p.signers.push(key(&s.public_key_pem)?);
        }
        for b in f.builders {
            let signers = b.signer_public_keys_pem.iter().map(|pem| key(pem)).collect::<Result<_, _>>()?;
            p.builders.push(TrustedBuilder { id: b.id, build_types: b.build_types, signers });
        }
        Ok(p)
    }

    /// Development mode: the operator's policy requires nothing (no `--release-policy`, or one
    /// with an empty `require`). Any requirement makes the gate enforcing for it.
    pub fn is_development(&self) -> bool {
        !(self.require_signature || self.require_provenance || self.require_sbom)
    }

    /// What the operator's policy requires, by name (`signature`, `provenance`, `sbom`).
    pub fn required(&self) -> Vec<&'static str> {
        [(self.require_signature, "signature"), (self.require_provenance, "provenance"), (self.require_sbom, "sbom")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }

    /// The gate's mode as release records state it.
    pub fn mode(&self) -> &'static str {
        if self.is_development() { "development" } else { "enforced" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any requirement makes the gate enforcing; only a policy requiring nothing is development.
    #[test]
    fn modes_as_data() {
        let dir = tempfile::tempdir().unwrap();
        for (require, mode) in [
            ("[]", "development"),
            ("[\"signature\"]", "enforced"),
            ("[\"sbom\"]", "enforced"),
            ("[\"signature\", \"provenance\", \"sbom\"]", "enforced"),
        ] {
            let f = dir.path().join("p.json");
            std::fs::write(&f, format!("{{\"require\": {require}}}")).unwrap();
            assert_eq!(ReleasePolicy::load(&f).unwrap().mode(), mode, "{require}");
        }
        assert_eq!(ReleasePolicy::default().mode(), "development");
    }
}

/// What the gate proved, recorded in the release attestation.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GateFacts {
    pub artifact_signature: Option<serde_json::Value>,
    pub provenance: Vec<serde_json::Value>,
    pub sbom: Option<serde_json::Value>,
    /// "enforced" or "development" (nothing required).
    pub mode: &'static str,
    /// What the operator's release policy required of it.
    pub required: Vec<&'static str>,
    /// Where the files came from when registered from an OCI registry: the repository, the
    /// manifest digest (never a tag), the artifact kind and the cosign signatures that verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci: Option<serde_json::Value>,
}

fn fail(check: &str, f: &Failure) -> CheckFailure {
    CheckFailure { check: check.into(), detail: format!("{}: {f}", f.code()) }
}

/// Open a model-signing bundle signed by one of the policy's CI keys — or, for a Sigstore
/// keyless bundle, by one of its keyless identities under the trusted root in force — within
/// its ignore rules.
///
/// # Errors
/// The signature's failure, as a gate check.
pub fn open_signature(
    policy: &ReleasePolicy,
    sigstore: Option<&TrustedRoot>,
    bundle: &[u8],
) -> Result<model_signing::SignedModel, CheckFailure> {
    let mut allowed: Vec<String> = GIT_PATHS.iter().map(|s| (*s).to_owned()).collect();
    allowed.extend(policy.allowed_ignore_paths.iter().cloned());
    let within_policy = |signed: model_signing::SignedModel| {
        signed.check_ignore_policy(&allowed).map_err(|f| fail("artifact_signature", &f))?;
        Ok(signed)
    };
    if keyless::is_keyless(bundle) {
        if policy.keyless_signers.is_empty() {
            return Err(fail("artifact_signature", &Failure::IdentityPolicyMissing));
        }
        let root = sigstore.ok_or_else(|| {
            fail(
                "artifact_signature",
                &Failure::TrustRoot("no Sigstore trusted root is in force (a key-admin imports one)".into()),
            )
        })?;
        let trust = Trust::Sigstore { root, signers: &policy.keyless_signers };
        return model_signing::open(bundle, trust).map_err(|f| fail("artifact_signature", &f)).and_then(within_policy);
    }
    if policy.signers.is_empty() {
        return Err(fail("artifact_signature", &Failure::VerificationMaterial));
    }
    let mut last = Failure::BadSignature;
    for key in &policy.signers {
        match model_signing::open(bundle, Trust::Key(key)) {
            Ok(signed) => return within_policy(signed),
            // Another key may have signed: try the next one.
            Err(f @ (Failure::KeyMismatch | Failure::BadSignature)) => last = f,
            Err(f) => return Err(fail("artifact_signature", &f)),
        }
    }
    Err(fail("artifact_signature", &last))
}

/// Check an opened signature against the manifest's files (stored blobs named by path); what the
/// gate records of it.
///
/// # Errors
/// Files missing, extra or different from what was signed.
pub fn check_signature(
    signed: &model_signing::SignedModel,
    entries: &[Entry],
) -> Result<serde_json::Value, CheckFailure> {
    signed.check(entries).map_err(|f| fail("artifact_signature", &f))?;
    let mut facts = serde_json::json!({
        "format": "model-signing/v1.0",
        "signer": signed.signer.fingerprint(),
        "method": signed.method_name(),
        "hash": signed.alg.name(),
        "subject_sha256": hex::encode(signed.subject_sha256),
    });
    // A keyless signature is recorded by who signed and against which root, so a verifier (the
    // agent) can check the same bundle offline against the identity the gate accepted.
    if let Some(k) = &signed.keyless {
        facts["keyless"] = serde_json::json!({
            "issuer": k.issuer, "identity": k.identity, "trusted_root": k.trusted_root, "tlog": k.tlog, "signed_at": k.times,
        });
    }
    Ok(facts)
}

/// Verify one attestation: only SLSA Provenance v1 is accepted.
pub fn check_attestation(
    policy: &ReleasePolicy,
    bytes: &[u8],
    artifact_hex: &str,
) -> Result<serde_json::Value, CheckFailure> {
    // Route by the (not yet trusted) predicate type; the chosen verifier then checks everything.
    let predicate_type = serde_json::from_slice::<dsse::Envelope>(bytes)
        .ok()
        .and_then(|e| fulcrum_verify::b64_decode(&e.payload).ok())
        .and_then(|p| serde_json::from_slice::<intoto::Statement>(&p).ok())
        .map(|s| s.predicate_type);
    match predicate_type.as_deref() {
        Some(slsa::PROVENANCE_V1) => {
            let p = slsa::verify(bytes, artifact_hex, &policy.builders).map_err(|f| fail("provenance", &f))?;
            Ok(
                serde_json::json!({"predicateType": slsa::PROVENANCE_V1, "builder_id": p.builder_id, "build_type": p.build_type, "signer": p.signer_fingerprint}),
            )
        }
        Some(other) => Err(CheckFailure {
            check: "attestation".into(),
            detail: format!("predicate_type: unsupported attestation {other:?}"),
        }),
        None => Err(fail("attestation", &Failure::Malformed("not a DSSE envelope over an in-toto statement".into()))),
    }
}

pub fn check_sbom(bytes: &[u8]) -> Result<serde_json::Value, CheckFailure> {
    slsa::sbom_format(bytes).map(|f| serde_json::json!({"format": f})).map_err(|f| fail("sbom", &f))
}

/// The registry's release attestation predicate type.
pub use fulcrum_core::resolve::RELEASE_PREDICATE;
