//! cosign signatures over an OCI manifest digest, in both forms found in registries:
//!
//! - **cosign v3**: a Sigstore bundle v0.3 attached as an OCI referrer (`artifactType`
//!   [`BUNDLE_ARTIFACT_TYPE`]), whose DSSE envelope holds an in-toto statement with predicate
//!   [`COSIGN_SIGN_PREDICATE`] and the manifest digest as subject. A keyless bundle (Fulcio
//!   certificate, Rekor entry) is verified offline against the trusted root in force and an
//!   identity policy; a key-signed one against the trusted keys.
//! - **cosign v2** ("legacy"): an image tagged `sha256-<hex>.sig` whose layers are
//!   simple-signing payloads naming the manifest digest, each signed (annotation
//!   [`SIGNATURE_ANNOTATION`]) with a key. Keyless legacy signatures are not read here.
//!
//! Attestations share the referrer type: only the cosign *signature* predicate counts as a
//! signature; anything else is not one.

use fulcrum_sign::{PublicKey, Signer};
use fulcrum_verify::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use fulcrum_verify::keyless::{self, KeylessSigner, TrustedRoot};
use serde::Serialize;
use serde_json::json;

use crate::OciError;

pub const BUNDLE_ARTIFACT_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Referrer annotations cosign v3 writes.
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// Whom the policy trusts to sign.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub keys: &'a [PublicKey],
    pub keyless: &'a [KeylessSigner],
    pub root: Option<&'a TrustedRoot>,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signed {
    /// `cosign-bundle` (v3 referrer) or `cosign-simple-signing` (v2 `.sig` tag).
    pub format: &'static str,
    /// A key's fingerprint, or a keyless certificate's identity.
    pub signer: String,
    /// The OIDC issuer of a keyless signer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The trusted root a keyless signature was verified against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_root: Option<String>,
}

fn sig_err(code: &str, detail: impl std::fmt::Display) -> OciError {
    OciError::Signature(format!("{code}: {detail}"))
}

fn digest_bytes(manifest_digest: &str) -> Result<[u8; 32], OciError> {
    manifest_digest
        .strip_prefix("sha256:")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or_else(|| OciError::Digest(manifest_digest.to_owned()))
}

/// The statement a verified envelope carried must be a cosign *signature* of this manifest.
fn check_statement(payload: &[u8], manifest_digest: &str) -> Result<(), OciError> {
    let st: fulcrum_verify::intoto::Statement =
        serde_json::from_slice(payload).map_err(|e| sig_err("bundle_malformed", format!("statement: {e}")))?;
    if st.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(sig_err("predicate_type", format!("{} is not a cosign signature", st.predicate_type)));
    }
    let hex = manifest_digest.trim_start_matches("sha256:");
    if !st.subject.iter().any(|s| s.digest.get("sha256").is_some_and(|d| d.eq_ignore_ascii_case(hex))) {
        return Err(sig_err("subject_mismatch", "the statement does not name this manifest"));
    }
    Ok(())
}

/// Verify a cosign v3 bundle over `manifest_digest`.
///
/// # Errors
/// `OciError::Signature` with the machine-readable reason first (`signer_identity`,
/// `signature_invalid`, `trust_root_invalid`, `predicate_type`, …).
pub fn verify_bundle(bundle: &[u8], manifest_digest: &str, trust: Trust<'_>) -> Result<Signed, OciError> {
    let digest = digest_bytes(manifest_digest)?;
    let doc: serde_json::Value =
        serde_json::from_slice(bundle).map_err(|e| sig_err("bundle_malformed", e.to_string()))?;
    let envelope: Envelope = serde_json::from_value(doc["dsseEnvelope"].clone())
        .map_err(|_| sig_err("bundle_malformed", "an image signature is a DSSE envelope"))?;
    if keyless::is_keyless(bundle) {
        let root = trust.root.ok_or_else(|| sig_err("trust_root_invalid", "no Sigstore trusted root is in force"))?;
        let v =
            keyless::verify(root, bundle, keyless::Subject::Sha256(digest), keyless::Signers::Keyless(trust.keyless))
                .map_err(|f| sig_err(f.code(), f))?;
        let payload = fulcrum_verify::b64_decode(&envelope.payload).map_err(|f| sig_err(f.code(), f))?;
        check_statement(&payload, manifest_digest)?;
        return Ok(Signed {
            format: "cosign-bundle",
            signer: v.identity.unwrap_or_default(),
            issuer: v.issuer,
            trusted_root: Some(v.trusted_root),
        });
    }
    if trust.keys.is_empty() {
        return Err(sig_err("verification_material", "no trusted key for a key-signed bundle"));
    }
    let hint = doc["verificationMaterial"]["publicKey"]["hint"].as_str().unwrap_or("");
    for key in trust.keys {
        if !hint.is_empty() && !hint.eq_ignore_ascii_case(&key.model_signing_hint()) {
            continue;
        }
        if let Ok(payload) = envelope.verify(key, INTOTO_PAYLOAD_TYPE) {
            check_statement(&payload, manifest_digest)?;
            return Ok(Signed { format: "cosign-bundle", signer: key.fingerprint(), issuer: None, trusted_root: None });
        }
    }
    Err(sig_err("signature_invalid", "no trusted key made this signature"))
}

/// Verify a cosign v2 simple-signing layer (its payload bytes and the base64 signature from
/// its annotation) over `manifest_digest`.
///
/// # Errors
/// `OciError::Signature` with the reason first.
pub fn verify_simple_signing(
    payload: &[u8],
    signature_b64: &str,
    manifest_digest: &str,
    trust: Trust<'_>,
) -> Result<Signed, OciError> {
    let sig = fulcrum_verify::b64_decode(signature_b64).map_err(|f| sig_err("bundle_malformed", f))?;
    let key = trust
        .keys
        .iter()
        .find(|k| k.verify(payload, &sig).is_ok())
        .ok_or_else(|| sig_err("signature_invalid", "no trusted key made this signature"))?;
    // Only now is the payload read for meaning.
    let doc: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| sig_err("bundle_malformed", format!("payload: {e}")))?;
    if doc["critical"]["type"].as_str() != Some(SIMPLE_SIGNING_TYPE) {
        return Err(sig_err("payload_type", "not a cosign container image signature"));
    }
    if doc["critical"]["image"]["docker-manifest-digest"].as_str() != Some(manifest_digest) {
        return Err(sig_err("subject_mismatch", "the payload names another manifest"));
    }
    Ok(Signed { format: "cosign-simple-signing", signer: key.fingerprint(), issuer: None, trusted_root: None })
}

/// A key-signed cosign v3 bundle over `manifest_digest` (what `cosign sign --key` writes with
/// the bundle format, without a transparency-log entry).
///
/// # Errors
/// The signer failing.
pub fn sign_bundle(manifest_digest: &str, signer: &dyn Signer) -> Result<Vec<u8>, OciError> {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": manifest_digest.trim_start_matches("sha256:")}}],
        "predicateType": COSIGN_SIGN_PREDICATE,
        "predicate": {},
    });
    let payload = serde_json::to_vec(&statement).expect("statements serialise");
    let envelope =
        Envelope::sign(INTOTO_PAYLOAD_TYPE, &payload, signer, "").map_err(|e| OciError::Signature(e.to_string()))?;
    Ok(serde_json::to_vec(&json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": signer.public_key().model_signing_hint()}, "tlogEntries": []},
        "dsseEnvelope": envelope,
    }))
    .expect("bundles serialise"))
}

/// A cosign v2 simple-signing payload for `docker_reference` at `manifest_digest`.
pub fn simple_signing_payload(docker_reference: &str, manifest_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {"identity": {"docker-reference": docker_reference},
                     "image": {"docker-manifest-digest": manifest_digest},
                     "type": SIMPLE_SIGNING_TYPE},
        "optional": null,
    }))
    .expect("payloads serialise")
}

/// Sign a simple-signing payload; the base64 signature for [`SIGNATURE_ANNOTATION`].
///
/// # Errors
/// The signer failing.
pub fn sign_simple(payload: &[u8], signer: &dyn Signer) -> Result<String, OciError> {
    Ok(fulcrum_sign::b64(&signer.sign(payload).map_err(|e| OciError::Signature(e.to_string()))?))
}

/// The legacy signature tag for a manifest digest.
pub fn legacy_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replace(':', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_sign::{Alg, LocalKey};

    const M: &str = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const OTHER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn bundles_verify_for_their_manifest_and_trusted_keys_only() {
        let k = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
        let stranger = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
        let keys = [k.public_key().clone()];
        let trust = Trust { keys: &keys, keyless: &[], root: None };
        let b = sign_bundle(M, &k).unwrap();
        assert_eq!(verify_bundle(&b, M, trust).unwrap().signer, k.public_key().fingerprint());
        let code = |e: OciError| e.to_string().split(':').nth(1).unwrap_or("").trim().to_owned();
        assert_eq!(code(verify_bundle(&b, OTHER, trust).unwrap_err()), "subject_mismatch");
        let by_stranger = sign_bundle(M, &stranger).unwrap();
        assert_eq!(code(verify_bundle(&by_stranger, M, trust).unwrap_err()), "signature_invalid");
        assert_eq!(
            code(verify_bundle(&b, M, Trust { keys: &[], keyless: &[], root: None }).unwrap_err()),
            "verification_material"
        );
        // An attestation is not a signature, even by a trusted key.
        let att = Envelope::sign(
            INTOTO_PAYLOAD_TYPE,
            &serde_json::to_vec(&json!({"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest": {"sha256": M.trim_start_matches("sha256:")}}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}})).unwrap(),
            &k,
            "",
        )
        .unwrap();
        let att = serde_json::to_vec(&json!({"mediaType": BUNDLE_MEDIA_TYPE, "verificationMaterial": {"publicKey": {"hint": ""}}, "dsseEnvelope": att})).unwrap();
        assert_eq!(code(verify_bundle(&att, M, trust).unwrap_err()), "predicate_type");
    }

    #[test]
    fn simple_signing_verifies_over_the_exact_payload() {
        let k = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
        let keys = [k.public_key().clone()];
        let trust = Trust { keys: &keys, keyless: &[], root: None };
        let payload = simple_signing_payload("127.0.0.1:5000/models/fraud", M);
        let sig = sign_simple(&payload, &k).unwrap();
        assert_eq!(verify_simple_signing(&payload, &sig, M, trust).unwrap().format, "cosign-simple-signing");
        assert!(verify_simple_signing(&payload, &sig, OTHER, trust).is_err(), "another manifest");
        let mut edited = payload.clone();
        edited.push(b' ');
        assert!(verify_simple_signing(&edited, &sig, M, trust).is_err(), "the signature covers exact bytes");
        let other_payload = simple_signing_payload("x/y", OTHER);
        let other_sig = sign_simple(&other_payload, &k).unwrap();
        assert!(verify_simple_signing(&other_payload, &other_sig, M, trust).is_err(), "signed, but for another image");
        assert_eq!(legacy_tag(M), format!("sha256-{}.sig", &M[7..]));
    }
}
