//! The artifact signature behind a release, checked again by the agent when it is a Sigstore
//! keyless one: the verified release record names the model-signing bundle (by digest) and the
//! identity the registry's gate accepted; the agent verifies that bundle **offline** against the
//! Sigstore trusted root its pinned trust bundle carries, for exactly that identity, over the
//! files it is about to place. Nothing here contacts Rekor, Fulcio or a TUF repository, and the
//! agent never fetches a trusted root of its own: a pinned bundle without one is a deny.

use std::path::PathBuf;

use fulcrum_core::Digest;
use fulcrum_core::manifest::FileEntry;
use fulcrum_sign::TrustBundle;
use fulcrum_verify::keyless::{KeylessSigner, TrustedRoot};
use fulcrum_verify::model_signing::{self, Trust};
use fulcrum_verify::modeldir::Entry;

use crate::check::Deny;

/// Largest signature bundle read.
pub const MAX_BUNDLE: u64 = 4 << 20;

/// A keyless signature a release record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub bundle: Digest,
    pub issuer: String,
    pub identity: String,
    /// The trusted root the registry's gate verified it against (`sha256:<hex>`).
    pub trusted_root: Option<String>,
}

/// The keyless signature the (verified) release predicate names, if any.
///
/// # Errors
/// A keyless section without its bundle digest, issuer or identity.
pub fn keyless_claim(predicate: &serde_json::Value) -> Result<Option<Claim>, Deny> {
    let sig = &predicate["release_gate"]["artifact_signature"];
    let Some(k) = sig.get("keyless").filter(|k| !k.is_null()) else { return Ok(None) };
    let bad = |what: &str| Deny::SignatureUnverified(format!("the release record's keyless signature has no {what}"));
    let bundle = sig["bundle"].as_str().and_then(|d| d.parse().ok()).ok_or_else(|| bad("bundle digest"))?;
    let issuer = k["issuer"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad("issuer"))?;
    let identity = k["identity"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad("identity"))?;
    let trusted_root = k["trusted_root"].as_str().map(str::to_owned);
    Ok(Some(Claim { bundle, issuer: issuer.to_owned(), identity: identity.to_owned(), trusted_root }))
}

/// The Sigstore trusted root the pinned trust bundle carries, checked against its stated digest.
///
/// # Errors
/// None carried, a digest that does not match the bytes, or a root that does not parse.
pub fn pinned_root(trust: &TrustBundle) -> Result<TrustedRoot, Deny> {
    let s = trust.sigstore.as_ref().ok_or_else(|| {
        Deny::SignatureUnverified(format!(
            "the pinned trust bundle (v{}) carries no Sigstore trusted root; a keyless signature cannot be checked",
            trust.version
        ))
    })?;
    let root = TrustedRoot::from_json(s.trusted_root.as_bytes())
        .map_err(|f| Deny::SignatureUnverified(format!("the pinned Sigstore root: {f}")))?;
    if root.digest() != s.digest {
        return Err(Deny::SignatureUnverified(format!("the pinned Sigstore root is not {}", s.digest)));
    }
    Ok(root)
}

/// Verify the claimed keyless signature over `files` (each with the path of its verified blob).
///
/// # Errors
/// `Deny::SignatureUnverified` with the machine-readable reason of the failed check.
pub fn verify(
    trust: &TrustBundle,
    claim: &Claim,
    bundle: &[u8],
    files: &[(FileEntry, PathBuf)],
) -> Result<model_signing::SignedModel, Deny> {
    let root = pinned_root(trust)?;
    let signers = [KeylessSigner::exact(&claim.issuer, &claim.identity)];
    let unverified = |f: fulcrum_verify::Failure| Deny::SignatureUnverified(format!("{}: {f}", f.code()));
    let signed = model_signing::open(bundle, Trust::Sigstore { root: &root, signers: &signers }).map_err(unverified)?;
    let entries: Vec<Entry> = files
        .iter()
        .map(|(f, p)| Entry {
            rel: f.path.clone(),
            path: p.clone(),
            size: f.size,
            known_sha256: Some(*f.digest.as_bytes()),
        })
        .collect();
    signed.check(&entries).map_err(unverified)?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_without_a_keyless_section_claims_nothing_and_a_partial_one_is_refused() {
        assert_eq!(keyless_claim(&json!({"release_gate": {"artifact_signature": {"signer": "ab"}}})).unwrap(), None);
        assert_eq!(keyless_claim(&json!({})).unwrap(), None);
        let d = Digest::of(b"bundle");
        let full = json!({"release_gate": {"artifact_signature": {"bundle": d.to_string(), "keyless": {"issuer": "i", "identity": "a@b"}}}});
        assert_eq!(keyless_claim(&full).unwrap().unwrap().identity, "a@b");
        for broken in [
            json!({"release_gate": {"artifact_signature": {"keyless": {"issuer": "i", "identity": "a@b"}}}}),
            json!({"release_gate": {"artifact_signature": {"bundle": d.to_string(), "keyless": {"identity": "a@b"}}}}),
            json!({"release_gate": {"artifact_signature": {"bundle": d.to_string(), "keyless": {"issuer": "i", "identity": ""}}}}),
        ] {
            assert_eq!(keyless_claim(&broken).unwrap_err().code(), "signature_unverified", "{broken}");
        }
    }

    #[test]
    fn a_pinned_root_must_be_carried_and_match_its_digest() {
        let mut tb =
            TrustBundle { version: 4, issued_at: String::new(), expires_at: None, keys: vec![], sigstore: None };
        assert!(pinned_root(&tb).unwrap_err().to_string().contains("carries no Sigstore trusted root"));
        let text = fulcrum_verify::keyless::PRODUCTION_TRUSTED_ROOT.to_owned();
        let digest = TrustedRoot::production().digest();
        tb.sigstore =
            Some(fulcrum_sign::SigstoreRoot { version: 1, digest: digest.clone(), trusted_root: text.clone() });
        assert_eq!(pinned_root(&tb).unwrap().digest(), digest);
        tb.sigstore = Some(fulcrum_sign::SigstoreRoot {
            version: 1,
            digest,
            trusted_root: text.replace("\"mediaType\"", " \"mediaType\""),
        });
        assert!(pinned_root(&tb).unwrap_err().to_string().contains("is not sha256:"));
    }
}
