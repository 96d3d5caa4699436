//! Policy snapshots over HTTP: the current one and any by digest, each as the registry-signed
//! DSSE envelope over the snapshot's canonical bytes.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fulcrum_core::Digest;
use fulcrum_core::identity::Action;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, ApiResult, Problem};

fn envelope(state: &AppState) -> Response {
    let snap = state.policies.current();
    let digest = HeaderValue::from_str(&snap.digest.to_string()).expect("digest is a header value");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::HeaderName::from_static("fulcrum-policy-digest"), digest),
        ],
        snap.envelope.clone(),
    )
        .into_response()
}

/// The policy snapshot in force: a DSSE envelope (payloadType
/// `application/vnd.fulcrum.policy-snapshot.v2+json`) signed by the registry; its payload's
/// SHA-256 is the `policy_digest` resolve documents carry.
#[utoipa::path(get, path = "/v1/policy/current", tag = "policy",
    responses((status = 200, description = "signed policy snapshot (DSSE envelope)", content_type = "application/json"), (status = "4XX", body = Problem)))]
pub async fn current(State(state): State<AppState>, who: Caller) -> ApiResult<Response> {
    who.require(&state, Action::Read).await?;
    Ok(envelope(&state))
}

/// A policy snapshot by its digest.
#[utoipa::path(get, path = "/v1/policy/snapshots/{digest}", tag = "policy", params(("digest" = String, Path)),
    responses((status = 200, description = "signed policy snapshot (DSSE envelope)", content_type = "application/json"), (status = "4XX", body = Problem)))]
pub async fn by_digest(State(state): State<AppState>, who: Caller, Path(digest): Path<String>) -> ApiResult<Response> {
    who.require(&state, Action::Read).await?;
    let d: Digest =
        digest.parse().map_err(|e: fulcrum_core::DigestError| ApiError::bad_request("bad_digest", e.to_string()))?;
    if d == state.policies.current().digest {
        return Ok(envelope(&state));
    }
    // Earlier snapshots stay fetchable (decisions name them), signed as they were installed.
    let rec =
        state.store.policy_by_digest(&d.to_string()).await?.ok_or_else(|| ApiError::not_found("policy snapshot"))?;
    let digest = HeaderValue::from_str(&rec.digest).expect("digest is a header value");
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::HeaderName::from_static("fulcrum-policy-digest"), digest),
        ],
        rec.envelope,
    )
        .into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallPolicy {
    /// Rego modules: file name (`*.rego`) → source. Each module's `test_*` rules must pass.
    pub modules: std::collections::BTreeMap<String, String>,
    /// Data documents (a JSON object), under `data`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Why (recorded with the install and in `policy_changed`).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Installed {
    pub policy_digest: String,
    /// `install` (a new snapshot) or `rollback` (one installed before, back in force).
    pub kind: String,
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The digest of a snapshot installed before.
    pub digest: String,
    #[serde(default)]
    pub reason: Option<String>,
}

fn install_error(e: crate::policy::InstallError) -> ApiError {
    use fulcrum_policy::PolicyError;
    match e {
        crate::policy::InstallError::Policy(p @ PolicyError::Conformance(_)) => {
            ApiError::unprocessable("policy_nonconformant", p.to_string())
        }
        crate::policy::InstallError::Policy(p) => ApiError::unprocessable("policy_invalid", p.to_string()),
        crate::policy::InstallError::Store(fulcrum_store::StoreError::Conflict(msg)) => {
            ApiError::conflict("policy_in_force", msg)
        }
        crate::policy::InstallError::Store(s) => s.into(),
        crate::policy::InstallError::Sign(s) => ApiError::internal(&s),
        crate::policy::InstallError::Reset(s) => ApiError::internal(&s),
    }
}

async fn put_in_force(
    state: &AppState,
    who: &Caller,
    snapshot: fulcrum_policy::Snapshot,
    reason: Option<String>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<Installed>)> {
    if let Some(r) = &reason {
        super::check_text("reason", r, 2048)?;
    }
    let (cur, kind) = state
        .commit(
            async |at| {
                let signer = state.keys.current();
                state.policies.install(&state.store, &snapshot, signer.as_ref(), &who.0.subject, reason, at).await
            },
            |_, at| state.catalog.policy_changed(at),
        )
        .await
        .map_err(install_error)?;
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(Installed { policy_digest: cur.digest.to_string(), kind: kind.as_str().into() }),
    ))
}

/// Install a policy snapshot (policy-admin): it must parse, compile, pass its own tests and
/// Fulcrum's conformance tests (every entry point defined, the way back open, serving can still
/// load an Approved version, four-eyes unless explicitly waived), or it is refused with the
/// failures named and nothing changes. The same snapshot as one installed before is a rollback
/// to it. Emits `policy_changed`; resolve documents carry the new digest from then on.
#[utoipa::path(put, path = "/v1/policy", tag = "policy", request_body = InstallPolicy,
    responses((status = 201, body = Installed), (status = 422, description = "does not compile, its tests fail, or it does not conform", body = Problem), (status = 409, description = "already in force", body = Problem), (status = "4XX", body = Problem)))]
pub async fn install(
    State(state): State<AppState>,
    who: Caller,
    super::ApiJson(body): super::ApiJson<InstallPolicy>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<Installed>)> {
    who.require(&state, Action::AdministerPolicy).await?;
    if body.modules.len() > 64 || body.modules.values().map(String::len).sum::<usize>() > 512 * 1024 {
        return Err(ApiError::unprocessable("policy_invalid", "at most 64 modules and 512 KiB of Rego"));
    }
    let snapshot = fulcrum_policy::Snapshot::new(body.modules, body.data)
        .map_err(|e| ApiError::unprocessable("policy_invalid", e.to_string()))?;
    put_in_force(&state, &who, snapshot, body.reason).await
}

/// Put a snapshot installed before back in force by its digest (policy-admin): a rollback. It
/// must still pass today's conformance tests.
#[utoipa::path(post, path = "/v1/policy/rollback", tag = "policy", request_body = Rollback,
    responses((status = 201, body = Installed), (status = 404, description = "no such snapshot", body = Problem), (status = "4XX", body = Problem)))]
pub async fn rollback(
    State(state): State<AppState>,
    who: Caller,
    super::ApiJson(body): super::ApiJson<Rollback>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<Installed>)> {
    who.require(&state, Action::AdministerPolicy).await?;
    let d: Digest = body
        .digest
        .parse()
        .map_err(|e: fulcrum_core::DigestError| ApiError::bad_request("bad_digest", e.to_string()))?;
    let rec =
        state.store.policy_by_digest(&d.to_string()).await?.ok_or_else(|| ApiError::not_found("policy snapshot"))?;
    let snapshot = fulcrum_policy::Snapshot::from_canonical_bytes(&rec.body).map_err(|e| ApiError::internal(&e))?;
    put_in_force(&state, &who, snapshot, body.reason).await
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PolicyHistory {
    /// Installs, rollbacks and break-glass resets, newest first; the first is in force.
    #[schema(value_type = Vec<Object>)]
    pub installs: Vec<fulcrum_store::PolicyHistoryEntry>,
}

/// Which snapshots were put in force, when, by whom and how (install, rollback, reset).
#[utoipa::path(get, path = "/v1/policy/history", tag = "policy",
    responses((status = 200, body = PolicyHistory), (status = "4XX", body = Problem)))]
pub async fn history(State(state): State<AppState>, who: Caller) -> ApiResult<axum::Json<PolicyHistory>> {
    who.require(&state, Action::Read).await?;
    Ok(axum::Json(PolicyHistory { installs: state.store.policy_history(200).await? }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub decision_id: Option<String>,
    /// Rule path: `fulcrum/promotion/decision`, `fulcrum/env/decision` (gates) or
    /// `fulcrum/authz/decision` (access decisions, listed only when asked for; their cursor is
    /// their own). Without it, gate decisions are listed.
    pub path: Option<String>,
    #[serde(default)]
    pub after: i64,
    pub limit: Option<u32>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DecisionsPage {
    /// OPA decision-log records, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub decisions: Vec<serde_json::Value>,
    pub next_after: i64,
}

/// Decision logs of the caller's tenant, by change, incident, model or version.
#[utoipa::path(get, path = "/v1/decisions", tag = "policy", params(DecisionsQuery),
    responses((status = 200, body = DecisionsPage), (status = "4XX", body = Problem)))]
pub async fn decisions(
    State(state): State<AppState>,
    who: Caller,
    super::ApiQuery(q): super::ApiQuery<DecisionsQuery>,
) -> ApiResult<axum::Json<DecisionsPage>> {
    who.require(&state, Action::ReadDecisions).await?;
    let limit = match q.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => return Err(ApiError::bad_request("bad_limit", "limit must be between 1 and 1000")),
    };
    // Access decisions are written behind the requests they served: read them all.
    state.access.flush().await;
    let access = fulcrum_store::access::ACCESS_PATH;
    let access_query = |decision_id| fulcrum_store::access::AccessQuery {
        tenant: who.0.tenant.clone(),
        model: q.model.clone(),
        decision_id,
        after: q.after.max(0),
        limit,
    };
    let rows = if q.path.as_deref() == Some(access) {
        let id = match q.decision_id.as_deref() {
            Some(s) => Some(
                uuid::Uuid::parse_str(s)
                    .map_err(|_| ApiError::bad_request("bad_decision_id", "decision_id must be a UUID"))?,
            ),
            None => None,
        };
        state.store.access_decisions(&access_query(id)).await?
    } else {
        let gates = state
            .store
            .decisions(&fulcrum_store::DecisionQuery {
                tenant: who.0.tenant.clone(),
                chg_id: q.chg_id.clone(),
                inc_id: q.inc_id.clone(),
                model: q.model.clone(),
                version: q.version.clone(),
                decision_id: q.decision_id.clone(),
                path: q.path.clone(),
                after: q.after.max(0),
                limit,
            })
            .await?;
        // Looking one decision up by id: it may be an access decision.
        match (gates.is_empty(), q.decision_id.as_deref().map(uuid::Uuid::parse_str)) {
            (true, Some(Ok(id))) if q.path.is_none() => state.store.access_decisions(&access_query(Some(id))).await?,
            _ => gates,
        }
    };
    let next_after = rows.last().map_or(q.after, |r| r.0);
    let decisions = rows.into_iter().filter_map(|(_, r)| serde_json::from_str(&r).ok()).collect();
    Ok(axum::Json(DecisionsPage { decisions, next_after }))
}
