//! The resolve document: the startup handshake's contract (seed §2.1, SPEC §4).
//!
//! The seed's fields come first with exactly their names and types; what the agent needs to
//! trust the answer follows. The registry signs the document's exact serialised bytes; verifiers
//! check those bytes and only then parse them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Uris {
    pub artifact: String,
    pub attestation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Permit,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResolveDocument {
    // --- the seed's contract, names and types exactly ---
    pub name: String,
    pub version: String,
    pub stage: String,
    pub artifact_digest: String,
    pub policy_digest: String,
    pub revoked: bool,
    pub quarantined: bool,
    pub uris: Uris,
    pub model_card_ref: String,
    // --- what the agent needs to trust it ---
    pub seq: u64,
    pub tenant: String,
    pub domain: String,
    /// The reference that was resolved, as asked (`name@alias`, `name@version`, `name@sha256:…`).
    #[serde(rename = "ref")]
    pub reference: String,
    pub alias: Option<String>,
    /// Position of the alias's current entry in its history (anti-downgrade evidence).
    pub alias_position: Option<u64>,
    /// The change id that authorised the alias's current target, when there is one.
    pub alias_chg_id: Option<String>,
    /// The incident id of an automatic rollback that moved the alias, when there is one.
    #[serde(default)]
    pub alias_inc_id: Option<String>,
    /// Why the alias points where it does: `set`, `downgrade`, `rollback`, … (its latest entry).
    #[serde(default)]
    pub alias_cause: Option<String>,
    pub env: String,
    /// The audit-ledger leaf that stands behind this answer: the lifecycle event recording the
    /// decision that last moved the alias or set the version's stage or hold, whichever is
    /// newer (its approvals and change id are in it). An agent may demand its inclusion proof
    /// against a signed checkpoint before it serves (SPEC §8). `None` only for records older
    /// than the ledger.
    #[serde(default)]
    pub ledger_index: Option<u64>,
    /// The registry's own answer for `env`; agents still check for themselves.
    pub decision: Decision,
    pub deny_reason: Option<String>,
    pub issued_at: String,
    pub expires_at: String,
    /// The key that signs this document (also sent beside it); covered by the signature.
    pub kid: String,
}

/// The in-toto predicate type of the registry's release record, the DSSE envelope a resolve
/// answer's `uris.attestation` points at.
pub const RELEASE_PREDICATE: &str = "urn:fulcrum:attestation:release:v1";

/// The media type of a signed resolve answer's body.
pub const RESOLVE_MEDIA_TYPE: &str = "application/vnd.fulcrum.resolve.v1+json";
