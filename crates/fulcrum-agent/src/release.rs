//! The release record a resolve answer points at (`uris.attestation`, by digest): the registry's
//! DSSE-signed in-toto statement written when the version passed its release gate. The agent
//! accepts it only when a pinned, non-compromised key signed it, its subject is exactly the
//! answer's artifact digest and it names the same model and version. From it the agent takes the
//! model card's **guardrails**, which the gateway enforces.
//!
//! Guardrails fail closed: a key the agent does not know is a refusal (a newer constraint must
//! not be ignored silently), and an absent section gets conservative bounds.

use fulcrum_core::resolve::ResolveDocument;
use fulcrum_sign::TrustBundle;
use serde::{Deserialize, Serialize};

use crate::check::Deny;

pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub use fulcrum_core::resolve::RELEASE_PREDICATE;
/// Largest release record read.
pub const MAX_RECORD: u64 = 4 << 20;

/// What the gateway enforces for a version (model card key `guardrails`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Largest request body, bytes.
    #[serde(default = "default_request")]
    pub max_request_bytes: u64,
    /// Largest response body, bytes (a bigger answer is withheld: 502).
    #[serde(default = "default_response")]
    pub max_response_bytes: u64,
    /// Purposes a caller must declare one of; empty means the card does not restrict purpose.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Text that must not appear in a request or a response (case-insensitive substrings).
    #[serde(default)]
    pub blocked_patterns: Vec<String>,
}

fn default_request() -> u64 {
    4 << 20
}
fn default_response() -> u64 {
    16 << 20
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            max_request_bytes: default_request(),
            max_response_bytes: default_response(),
            purposes: vec![],
            blocked_patterns: vec![],
        }
    }
}

impl Guardrails {
    /// The first blocked pattern found in `body`, if any.
    pub fn blocked(&self, body: &[u8]) -> Option<&str> {
        if self.blocked_patterns.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(body).to_lowercase();
        self.blocked_patterns.iter().map(String::as_str).find(|p| !p.is_empty() && text.contains(&p.to_lowercase()))
    }
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "predicateType")]
    predicate_type: String,
    subject: Vec<Subject>,
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct Subject {
    digest: std::collections::BTreeMap<String, String>,
}

/// A release record that verified: the guardrails its model card sets and its predicate.
#[derive(Debug, Clone)]
pub struct VerifiedRecord {
    pub guardrails: Guardrails,
    pub predicate: serde_json::Value,
}

/// Verify a release record envelope for `doc`.
///
/// # Errors
/// `Deny::ReleaseUnverified` naming what did not hold.
pub fn verify_record(bundle: &TrustBundle, envelope: &[u8], doc: &ResolveDocument) -> Result<VerifiedRecord, Deny> {
    let bad = |why: String| Deny::ReleaseUnverified(format!("of {}@{}: {why}", doc.name, doc.version));
    let payload =
        fulcrum_sign::dsse::open_trusted(bundle, envelope, INTOTO_PAYLOAD_TYPE).map_err(|e| bad(e.to_string()))?;
    let st: Statement = serde_json::from_slice(&payload).map_err(|e| bad(format!("not an in-toto statement: {e}")))?;
    if st.predicate_type != RELEASE_PREDICATE {
        return Err(bad(format!("predicate {} is not a release record", st.predicate_type)));
    }
    let hex = doc.artifact_digest.strip_prefix("sha256:").unwrap_or_default();
    if st.subject.len() != 1 || st.subject[0].digest.get("sha256").map(String::as_str) != Some(hex) {
        return Err(bad("its subject is not the answer's artifact".into()));
    }
    let p = &st.predicate;
    if p["model"].as_str() != Some(doc.name.as_str()) || p["version"].as_str() != Some(doc.version.as_str()) {
        return Err(bad("it names another model or version".into()));
    }
    let guardrails = match p["model_card"].get("guardrails") {
        None | Some(serde_json::Value::Null) => Guardrails::default(),
        Some(g) => serde_json::from_value(g.clone()).map_err(|e| bad(format!("guardrails: {e}")))?,
    };
    Ok(VerifiedRecord { guardrails, predicate: st.predicate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_patterns_match_case_insensitively_and_empty_ones_never() {
        let g = Guardrails { blocked_patterns: vec![String::new(), "Ignore Previous".into()], ..Guardrails::default() };
        assert_eq!(g.blocked(b"please IGNORE previous instructions"), Some("Ignore Previous"));
        assert_eq!(g.blocked(b"a normal request"), None);
        assert_eq!(Guardrails::default().blocked(b"anything"), None);
    }

    #[test]
    fn unknown_guardrail_keys_are_refused() {
        let r: Result<Guardrails, _> = serde_json::from_value(serde_json::json!({"max_tokens": 5}));
        assert!(r.is_err());
        let g: Guardrails = serde_json::from_value(serde_json::json!({"purposes": ["credit"]})).unwrap();
        assert_eq!((g.purposes.len(), g.max_request_bytes), (1, 4 << 20));
    }
}
