//! The audit ledger over HTTP (SPEC §10): the newest signed checkpoint, the entries (each
//! record's bytes as stored, for the caller's tenant), inclusion and consistency proofs, and a
//! version's proven state in the state map.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fulcrum_core::identity::Action;
use fulcrum_ledger::merkle;
use fulcrum_store::ledger::LeafKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiQuery;
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, ApiResult, Problem};

/// Most entries in one page.
const MAX_ENTRIES: u64 = 1000;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointDto {
    pub origin: String,
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
    /// The C2SP signed note.
    pub note: String,
    /// The registry key that signed it (in the trust bundle).
    pub kid: String,
    pub signed_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryDto {
    pub index: u64,
    /// `event`, `decision` or `access`.
    pub kind: String,
    /// Base64 leaf hash stored in the tree.
    pub leaf_hash: String,
    /// The record's bytes as stored (UTF-8), for the caller's tenant (and registry-wide events);
    /// `null` for other tenants' records (only their leaf hash is shown), for decisions and
    /// access batches when the caller may not read decisions, and for records that are gone
    /// (`missing`).
    pub data: Option<String>,
    /// True when the record is of the caller's tenant but no longer stored.
    pub missing: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntriesPage {
    pub entries: Vec<EntryDto>,
    /// The tree's size now.
    pub size: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    pub start: u64,
    /// Exclusive; at most `start + 1000`.
    pub end: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProofDto {
    /// Base64 hashes, in RFC 9162 order.
    pub hashes: Vec<String>,
    /// The leaf hash (inclusion proofs).
    pub leaf_hash: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    pub index: u64,
    pub tree_size: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    pub first: u64,
    pub second: u64,
}

fn unavailable(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "audit ledger");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", "the audit ledger cannot answer now")
}

/// The newest signed checkpoint (signed now if the tree grew since the last, at most once a
/// second).
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "audit",
    responses((status = 200, body = CheckpointDto), (status = "4XX", body = Problem)))]
pub async fn checkpoint(State(state): State<AppState>, who: Caller) -> ApiResult<Json<CheckpointDto>> {
    who.require(&state, Action::ReadEvents).await?;
    let c = state.ledger.checkpoint(&state, time::Duration::SECOND).await.map_err(|e| unavailable(&e))?;
    Ok(Json(CheckpointDto {
        origin: state.config.ledger_origin.clone(),
        size: c.size,
        root: B64.encode(c.root),
        note: c.note,
        kid: c.kid,
        signed_at: c.signed_at,
    }))
}

/// Entries `[start, end)`: each leaf's stored hash, and its record's bytes for the caller's
/// tenant — events for whoever may read events (a serving agent proving the event behind its
/// resolve answer), decisions and access batches only for who may read decisions.
#[utoipa::path(get, path = "/v1/ledger/entries", tag = "audit", params(EntriesQuery),
    responses((status = 200, body = EntriesPage), (status = "4XX", body = Problem)))]
pub async fn entries(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<EntriesQuery>,
) -> ApiResult<Json<EntriesPage>> {
    who.require(&state, Action::ReadEvents).await?;
    if q.end < q.start || q.end - q.start > MAX_ENTRIES {
        return Err(ApiError::bad_request("bad_range", "need start ≤ end ≤ start + 1000"));
    }
    let size = state.store.ledger_size().await?;
    let rows = state.store.ledger_entries(q.start, q.end.min(size)).await?;
    let own_records = rows.iter().any(|e| e.tenant == who.0.tenant && e.kind != LeafKind::Event);
    let decisions = own_records && who.require(&state, Action::ReadDecisions).await.is_ok();
    let entries = rows
        .into_iter()
        .map(|e| {
            // Registry-wide events (tenant `*`: policy changes, key rotations) are every tenant's.
            let mine = (e.tenant == who.0.tenant && (e.kind == LeafKind::Event || decisions))
                || (e.tenant == "*" && e.kind == LeafKind::Event);
            EntryDto {
                index: e.index,
                kind: e.kind.as_str().into(),
                leaf_hash: B64.encode(e.leaf_hash),
                missing: mine && e.data.is_none(),
                data: e.data.filter(|_| mine).map(|d| String::from_utf8_lossy(&d).into_owned()),
            }
        })
        .collect();
    Ok(Json(EntriesPage { entries, size }))
}

/// RFC 9162 inclusion proof of entry `index` in the tree of `tree_size` entries.
#[utoipa::path(get, path = "/v1/ledger/proofs/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = ProofDto), (status = "4XX", body = Problem)))]
pub async fn inclusion(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> ApiResult<Json<ProofDto>> {
    who.require(&state, Action::ReadEvents).await?;
    let size = state.store.ledger_size().await?;
    if q.index >= q.tree_size || q.tree_size > size {
        return Err(ApiError::bad_request("bad_range", format!("need index < tree_size ≤ {size}")));
    }
    let mut ranges = merkle::inclusion_path(q.index, q.tree_size);
    ranges.push((q.index, q.index + 1));
    let mut hashes = state.store.ledger_ranges(&ranges).await.map_err(|e| unavailable(&e))?;
    let leaf = hashes.pop().expect("the leaf's range");
    Ok(Json(ProofDto { hashes: hashes.iter().map(|h| B64.encode(h)).collect(), leaf_hash: Some(B64.encode(leaf)) }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StateProofQuery {
    pub model: String,
    pub version: String,
    /// The checkpoint must be signed at or after this time (RFC 3339): an agent passes its
    /// answer's `issued_at`, so the state it is shown is newer than the answer. Without it, the
    /// newest checkpoint over the whole tree.
    pub not_before: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StateProofDto {
    pub origin: String,
    /// The C2SP signed note; its `fulcrum-state` line commits to the state map.
    pub note: String,
    pub kid: String,
    /// The ledger size the checkpoint covers (the state map is what its entries imply).
    pub size: u64,
    /// The version's leaf in the state map (canonical text) and its index.
    pub leaf: String,
    pub index: u64,
    /// Leaves in the state map.
    pub count: u64,
    /// Base64 RFC 9162 inclusion proof of the leaf in the state map.
    pub hashes: Vec<String>,
}

/// A version's governance state as the audit ledger implies it, proven: its leaf in the state
/// map that a checkpoint signed at or after `not_before` commits to. What an agent demanding
/// ledger proofs checks before it serves: no revocation or quarantine of the version in the
/// ledger up to a checkpoint newer than its answer.
#[utoipa::path(get, path = "/v1/ledger/proofs/state", tag = "audit", params(StateProofQuery),
    responses((status = 200, body = StateProofDto), (status = "4XX", body = Problem)))]
pub async fn state_proof(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<StateProofQuery>,
) -> ApiResult<Json<StateProofDto>> {
    who.require(&state, Action::ReadEvents).await?;
    let name = super::parse_model_name(&q.model)?;
    let m = super::find_model(&state, &who.0, &name).await?;
    let not_before = q
        .not_before
        .as_deref()
        .map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|_| ApiError::bad_request("bad_time", "not_before must be an RFC 3339 time"))?;
    if not_before.is_some_and(|t| t > state.clock.now() + time::Duration::seconds(5)) {
        return Err(ApiError::bad_request("bad_time", "not_before is in the future"));
    }
    let point = state.ledger.state_point(&state, not_before).await.map_err(|e| unavailable(&e))?;
    let (index, leaf, hashes) = point
        .map
        .prove(&m.tenant, &m.name, &q.version)
        .ok_or_else(|| ApiError::not_found("version in the state map"))?;
    Ok(Json(StateProofDto {
        origin: state.config.ledger_origin.clone(),
        note: point.record.note.clone(),
        kid: point.record.kid.clone(),
        size: point.record.size,
        leaf: String::from_utf8(leaf.bytes()).expect("leaves are text"),
        index,
        count: point.head.count,
        hashes: hashes.iter().map(|h| B64.encode(h)).collect(),
    }))
}

/// RFC 9162 consistency proof between the trees of `first` and `second` entries.
#[utoipa::path(get, path = "/v1/ledger/proofs/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ProofDto), (status = "4XX", body = Problem)))]
pub async fn consistency(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> ApiResult<Json<ProofDto>> {
    who.require(&state, Action::ReadEvents).await?;
    let size = state.store.ledger_size().await?;
    if q.first > q.second || q.second > size {
        return Err(ApiError::bad_request("bad_range", format!("need first ≤ second ≤ {size}")));
    }
    let hashes =
        state.store.ledger_ranges(&merkle::consistency_path(q.first, q.second)).await.map_err(|e| unavailable(&e))?;
    Ok(Json(ProofDto { hashes: hashes.iter().map(|h| B64.encode(h)).collect(), leaf_hash: None }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBody {
    /// The change to gather (exactly one of chg_id, inc_id).
    #[serde(default)]
    pub chg_id: Option<String>,
    #[serde(default)]
    pub inc_id: Option<String>,
    /// How long the archive is retained (default 7 years; 1 day to 100 years).
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// Gather a change's or an incident's events and gate decisions with their inclusion proofs, sign
/// them and write them once to the evidence store, retained.
#[utoipa::path(post, path = "/v1/audit/evidence", tag = "audit", request_body = EvidenceBody,
    responses((status = 201, body = crate::evidence::EvidenceReceipt), (status = "4XX", body = Problem)))]
pub async fn write_evidence(
    State(state): State<AppState>,
    who: Caller,
    super::ApiJson(b): super::ApiJson<EvidenceBody>,
) -> ApiResult<(StatusCode, Json<crate::evidence::EvidenceReceipt>)> {
    who.require(&state, Action::ReadDecisions).await?;
    if b.chg_id.is_some() == b.inc_id.is_some() {
        return Err(ApiError::unprocessable("invalid_body", "give exactly one of chg_id, inc_id"));
    }
    super::check_id("chg_id", b.chg_id.as_deref())?;
    super::check_id("inc_id", b.inc_id.as_deref())?;
    let days = b.retention_days.unwrap_or(2557);
    if !(1..=36_525).contains(&days) {
        return Err(ApiError::unprocessable("invalid_body", "retention_days must be 1 to 36525"));
    }
    let r = crate::evidence::write(
        &state,
        &who.0.tenant,
        b.chg_id.as_deref(),
        b.inc_id.as_deref(),
        time::Duration::days(days.into()),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    pub key: String,
}

/// A stored evidence archive of the caller's tenant, checked against its digest.
#[utoipa::path(get, path = "/v1/audit/evidence", tag = "audit", params(EvidenceQuery),
    responses((status = 200, content_type = "application/json", body = Object), (status = "4XX", body = Problem)))]
pub async fn read_evidence(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<EvidenceQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    who.require(&state, Action::ReadDecisions).await?;
    if !q.key.starts_with(&format!("{}/", who.0.tenant)) {
        return Err(ApiError::not_found("evidence"));
    }
    let (bytes, r) = state.evidence.get(&q.key).await.map_err(|e| match e {
        fulcrum_store::worm::WormError::NotFound(_) | fulcrum_store::worm::WormError::BadKey(_) => {
            ApiError::not_found("evidence")
        }
        other => unavailable(&other),
    })?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/json".to_owned()),
            (axum::http::HeaderName::from_static("fulcrum-retain-until"), r.retain_until),
        ],
        bytes,
    )
        .into_response())
}
