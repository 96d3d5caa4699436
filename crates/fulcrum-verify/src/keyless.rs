//! Sigstore bundles (v0.1–v0.3; message signatures and DSSE), verified **offline** against a
//! `trusted_root.json` the caller supplies: the Fulcio certificate's path to a trusted CA at every
//! verified signing time, its SCT, the Rekor entry (inclusion proof and signed checkpoint, or the
//! signed entry timestamp), RFC 3161 timestamps, and the signature over the artifact or its DSSE
//! envelope. Nothing here contacts Rekor, Fulcio or a TUF repository.
//!
//! A keyless signature proves *who* signed only through an identity policy: a verification
//! without at least one [`KeylessSigner`] is refused ([`Failure::IdentityPolicyMissing`]), and
//! the certificate's issuer and subject must match one of them ([`Failure::SignerIdentity`]).
//! "Some valid signature" is never enough.
//!
//! The cryptography is the `sigstore-verify` crate (pinned; it passes the upstream conformance
//! set); this module is the only place that names it, so its 0.x API stays behind Fulcrum's
//! types and [`Failure`] codes.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sigstore_verify::types::{Bundle, DerPublicKey, Sha256Hash};
use sigstore_verify::{Error as SigError, PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use crate::Failure;

/// Largest `trusted_root.json` accepted (production's is about 7 KiB).
pub const MAX_TRUSTED_ROOT: usize = 1 << 20;
/// Largest bundle accepted.
pub const MAX_BUNDLE: usize = 4 << 20;

/// A parsed, checked `trusted_root.json`, pinned by the SHA-256 of its exact bytes.
pub struct TrustedRoot {
    json: Vec<u8>,
    sha256: [u8; 32],
    verifier: Verifier,
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedRoot").field("digest", &self.digest()).finish_non_exhaustive()
    }
}

impl TrustedRoot {
    /// Parse and check a `trusted_root.json` (keys and certificates well formed, validity
    /// windows consistent, no duplicate log).
    ///
    /// # Errors
    /// [`Failure::TrustRoot`] for anything else.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Failure> {
        if bytes.len() > MAX_TRUSTED_ROOT {
            return Err(Failure::TrustRoot(format!("larger than {MAX_TRUSTED_ROOT} bytes")));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Failure::TrustRoot("not UTF-8".into()))?;
        let root =
            sigstore_verify::trust_root::TrustedRoot::from_json(text).map_err(|e| Failure::TrustRoot(e.to_string()))?;
        let verifier = Verifier::new(&root).map_err(|e| Failure::TrustRoot(e.to_string()))?;
        Ok(Self { json: bytes.to_vec(), sha256: Sha256::digest(bytes).into(), verifier })
    }

    /// Sigstore's public-good production root, as shipped with this build (for `verify-bundle`
    /// without `--trusted-root`, and for a key-admin who imports it on purpose).
    pub fn production() -> Self {
        Self::from_json(PRODUCTION_TRUSTED_ROOT.as_bytes()).expect("the shipped production root parses")
    }

    /// `sha256:<hex>` of the exact bytes: what is pinned, ledgered and compared.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.sha256))
    }

    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// Sigstore's production `trusted_root.json` as shipped with this build.
pub const PRODUCTION_TRUSTED_ROOT: &str = sigstore_verify::trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT;

/// Sigstore's staging `trusted_root.json` as shipped with this build.
pub const STAGING_TRUSTED_ROOT: &str = sigstore_verify::trust_root::SIGSTORE_STAGING_TRUSTED_ROOT;

/// How a certificate's subject (its SAN: an email or a URI) must look.
#[derive(Debug, Clone)]
pub enum SubjectMatch {
    Exact(String),
    /// A regular expression over the whole subject (anchored: `a.*` never matches `xa…`).
    Pattern(regex::Regex),
}

/// One signer a policy trusts: the OIDC issuer (exact) and the certificate identity. Written as
/// `{"issuer": "...", "identity": "..."}` or `{"issuer": "...", "identity_pattern": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SignerSpec", into = "SignerSpec")]
pub struct KeylessSigner {
    pub issuer: String,
    pub subject: SubjectMatch,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerSpec {
    issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity_pattern: Option<String>,
}

impl TryFrom<SignerSpec> for KeylessSigner {
    type Error = String;
    fn try_from(s: SignerSpec) -> Result<Self, String> {
        if s.issuer.trim().is_empty() {
            return Err("a keyless signer needs a non-empty issuer".into());
        }
        match (s.identity, s.identity_pattern) {
            (Some(i), None) if !i.is_empty() => Ok(Self::exact(s.issuer, i)),
            (None, Some(p)) if !p.is_empty() => Self::pattern(s.issuer, &p),
            _ => Err("a keyless signer needs exactly one of identity or identity_pattern".into()),
        }
    }
}

impl From<KeylessSigner> for SignerSpec {
    fn from(k: KeylessSigner) -> Self {
        match k.subject {
            SubjectMatch::Exact(i) => Self { issuer: k.issuer, identity: Some(i), identity_pattern: None },
            SubjectMatch::Pattern(p) => {
                let src = p.as_str();
                let inner = src.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(src);
                Self { issuer: k.issuer, identity: None, identity_pattern: Some(inner.to_owned()) }
            }
        }
    }
}

impl KeylessSigner {
    pub fn exact(issuer: impl Into<String>, identity: impl Into<String>) -> Self {
        Self { issuer: issuer.into(), subject: SubjectMatch::Exact(identity.into()) }
    }

    /// # Errors
    /// A pattern that is not a regular expression.
    pub fn pattern(issuer: impl Into<String>, pattern: &str) -> Result<Self, String> {
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("identity_pattern: {e}"))?;
        Ok(Self { issuer: issuer.into(), subject: SubjectMatch::Pattern(re) })
    }

    /// Whether a verified certificate's issuer and subject are this signer's.
    pub fn admits(&self, issuer: &str, identity: &str) -> bool {
        self.issuer == issuer
            && match &self.subject {
                SubjectMatch::Exact(i) => i == identity,
                SubjectMatch::Pattern(p) => p.is_match(identity),
            }
    }
}

/// What is signed: the bytes, or only their SHA-256 (for DSSE, a subject of the statement).
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Bytes(&'a [u8]),
    Sha256([u8; 32]),
}

/// Who may have signed.
#[derive(Debug, Clone, Copy)]
pub enum Signers<'a> {
    /// Fulcio certificates: the identity must be one of these.
    Keyless(&'a [KeylessSigner]),
    /// A managed key (PEM `PUBLIC KEY`); the bundle carries a key hint, not a certificate.
    Key(&'a str),
}

/// A verified bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The certificate's OIDC issuer (keyless only).
    pub issuer: Option<String>,
    /// The certificate's subject: email or URI (keyless only).
    pub identity: Option<String>,
    /// The trusted root it was verified against.
    pub trusted_root: String,
    /// Whether the transparency-log entry (inclusion proof or promise) was verified.
    pub tlog: bool,
    /// Signing times proven by the bundle (Rekor integrated time, RFC 3161), RFC 3339.
    pub times: Vec<String>,
}

/// Verify a Sigstore bundle offline.
///
/// # Errors
/// A typed [`Failure`]: malformed bundle, certificate, transparency log, timestamp, signature,
/// subject, or an identity no signer admits.
pub fn verify(
    root: &TrustedRoot,
    bundle: &[u8],
    subject: Subject<'_>,
    signers: Signers<'_>,
) -> Result<Verified, Failure> {
    if bundle.len() > MAX_BUNDLE {
        return Err(Failure::Malformed(format!("bundle larger than {MAX_BUNDLE} bytes")));
    }
    let text = std::str::from_utf8(bundle).map_err(|_| Failure::Malformed("bundle is not UTF-8".into()))?;
    let parsed = Bundle::from_json(text).map_err(|e| Failure::Malformed(e.to_string()))?;
    let digest;
    let artifact: sigstore_verify::types::Artifact<'_> = match subject {
        Subject::Bytes(b) => b.into(),
        Subject::Sha256(d) => {
            digest = Sha256Hash::new(d);
            (&digest).into()
        }
    };
    let result = match signers {
        Signers::Keyless(list) => {
            if list.is_empty() {
                return Err(Failure::IdentityPolicyMissing);
            }
            // Verified cryptographically first, then authorised against the list (one pass for
            // any number of signers; the crate's own matcher has no patterns).
            let r = root.verifier.verify(artifact, &parsed, &VerificationPolicy::any_identity()).map_err(failure)?;
            let issuer = r.issuer().unwrap_or_default().to_owned();
            let identity = r.identity().map(|i| i.as_str().to_owned()).unwrap_or_default();
            if !r.certificate_verified() || !list.iter().any(|s| s.admits(&issuer, &identity)) {
                return Err(Failure::SignerIdentity { issuer, identity });
            }
            r
        }
        Signers::Key(pem) => {
            let key = DerPublicKey::from_pem(pem).map_err(|e| Failure::Malformed(format!("public key: {e}")))?;
            root.verifier.verify(artifact, &parsed, &PublicKeyVerificationPolicy::new(key)).map_err(failure)?
        }
    };
    if !result.tlog_verified() {
        return Err(Failure::Transparency("no verified transparency-log entry".into()));
    }
    Ok(Verified {
        issuer: result.issuer().map(str::to_owned),
        identity: result.identity().map(|i| i.as_str().to_owned()),
        trusted_root: root.digest(),
        tlog: result.tlog_verified(),
        times: result.verified_timestamps().iter().map(ToString::to_string).collect(),
    })
}

/// Whether a bundle carries a Fulcio certificate (keyless) rather than a key hint. Read from the
/// not-yet-verified bytes only to choose the verification path.
pub fn is_keyless(bundle: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bundle) else { return false };
    let vm = &v["verificationMaterial"];
    let logged = vm["tlogEntries"].as_array().is_some_and(|e| !e.is_empty());
    vm.get("certificate").is_some() || (vm.get("x509CertificateChain").is_some() && logged)
}

fn failure(e: SigError) -> Failure {
    // (Identity and issuer are matched here, after verification, never by the crate.)
    match e {
        SigError::SignatureInvalid(_) => Failure::BadSignature,
        SigError::ArtifactMismatch(_) => Failure::SubjectMismatch,
        SigError::Certificate(c) => Failure::Certificate(c.to_string()),
        SigError::TransparencyLog(t) => Failure::Transparency(t.to_string()),
        SigError::Timestamp(t) => Failure::Timestamp(t.to_string()),
        SigError::InvalidTrustRoot(m) => Failure::TrustRoot(m),
        SigError::TrustRoot(t) => Failure::TrustRoot(t.to_string()),
        SigError::TrustedCertificate(t) => Failure::TrustRoot(t.to_string()),
        other => Failure::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signers_parse_exactly_one_identity_form_and_patterns_are_anchored() {
        let s: KeylessSigner =
            serde_json::from_str(r#"{"issuer":"https://idp","identity_pattern":"https://ci/.*@refs/tags/v.*"}"#)
                .unwrap();
        assert!(s.admits("https://idp", "https://ci/x@refs/tags/v1"));
        assert!(!s.admits("https://idp", "evil https://ci/x@refs/tags/v1"), "anchored at the start");
        assert!(!s.admits("https://idp", "https://ci/x@refs/tags/v1 evil\n"), "anchored at the end");
        assert!(!s.admits("https://other", "https://ci/x@refs/tags/v1"), "issuer is exact");
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["identity_pattern"], "https://ci/.*@refs/tags/v.*");
        let e: KeylessSigner = serde_json::from_str(r#"{"issuer":"i","identity":"a@b"}"#).unwrap();
        assert!(e.admits("i", "a@b") && !e.admits("i", "a@bc"));
        for bad in [
            r#"{"issuer":"i"}"#,
            r#"{"issuer":"i","identity":"a","identity_pattern":"b"}"#,
            r#"{"issuer":"","identity":"a"}"#,
            r#"{"issuer":"i","identity_pattern":"("}"#,
            r#"{"issuer":"i","identity":"a","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<KeylessSigner>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_keyless_verification_without_signers_is_refused_before_anything_else() {
        let root = TrustedRoot::production();
        let err = verify(&root, b"{}", Subject::Bytes(b"x"), Signers::Keyless(&[])).unwrap_err();
        assert!(matches!(err, Failure::Malformed(_)), "a malformed bundle is reported first: {err:?}");
        let bundle = include_bytes!(
            "../../../tests/vectors/sigstore-conformance/test/assets/bundle-verify/happy-path-v0.3/bundle.sigstore.json"
        );
        let a = include_bytes!("../../../tests/vectors/sigstore-conformance/test/assets/bundle-verify/a.txt");
        assert_eq!(
            verify(&root, bundle, Subject::Bytes(a), Signers::Keyless(&[])).unwrap_err(),
            Failure::IdentityPolicyMissing
        );
    }

    #[test]
    fn trusted_roots_are_pinned_by_their_bytes() {
        let p = TrustedRoot::production();
        assert_eq!(p.digest(), format!("sha256:{}", hex::encode(Sha256::digest(PRODUCTION_TRUSTED_ROOT.as_bytes()))));
        assert!(matches!(TrustedRoot::from_json(b"{\"mediaType\": 1}"), Err(Failure::TrustRoot(_))));
        assert!(matches!(TrustedRoot::from_json(b"\xff"), Err(Failure::TrustRoot(_))));
    }
}
