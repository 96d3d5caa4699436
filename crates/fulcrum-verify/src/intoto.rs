//! in-toto Statement v1 (subjects match by digest only; unknown fields are ignored).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Failure;

pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub ty: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: serde_json::Value,
}

impl Statement {
    /// Parse and check `_type` and `predicateType`.
    ///
    /// # Errors
    /// Malformed JSON or unexpected types.
    pub fn parse(payload: &[u8], predicate_type: &str) -> Result<Self, Failure> {
        let st: Statement =
            serde_json::from_slice(payload).map_err(|e| Failure::Malformed(format!("statement: {e}")))?;
        if st.ty != STATEMENT_V1 {
            return Err(Failure::StatementType(st.ty));
        }
        if st.predicate_type != predicate_type {
            return Err(Failure::PredicateType(st.predicate_type));
        }
        Ok(st)
    }

    /// Does some subject carry this SHA-256 (lowercase hex)?
    pub fn has_sha256_subject(&self, hex: &str) -> bool {
        self.subject.iter().any(|s| s.digest.get("sha256").is_some_and(|d| d.eq_ignore_ascii_case(hex)))
    }
}
