//! The data catalog (SPEC §6): which versions of the caller's tenant used a dataset snapshot.

use axum::Json;
use axum::extract::{Path, State};
use fulcrum_core::Digest;
use fulcrum_core::identity::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiQuery, limit};
use crate::AppState;
use crate::auth::Caller;
use crate::dto::PageQuery;
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatasetUseDto {
    pub model: String,
    pub domain: String,
    pub version: String,
    pub stage: String,
    pub hold: String,
    pub artifact_digest: String,
    /// The URI(s) the version named the snapshot by.
    pub uris: Vec<String>,
    pub registered_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatasetUsePage {
    pub digest: String,
    pub items: Vec<DatasetUseDto>,
    /// Cursor for the next page, if there may be one.
    pub next: Option<String>,
}

/// Versions of the caller's tenant (in the domains it may see) that were registered with the
/// dataset snapshot `digest`, oldest first.
#[utoipa::path(get, path = "/v1/datasets/{digest}/versions", tag = "datasets",
    params(("digest" = String, Path, description = "sha256:<hex> of the snapshot"), PageQuery),
    responses((status = 200, body = DatasetUsePage), (status = "4XX", body = Problem)))]
pub async fn used_by(
    State(state): State<AppState>,
    who: Caller,
    Path(digest): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<DatasetUsePage>> {
    who.require(&state, Action::Read).await?;
    let d: Digest =
        digest.parse().map_err(|e: fulcrum_core::DigestError| ApiError::bad_request("bad_digest", e.to_string()))?;
    let n = limit(q.limit)?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(s) => s.parse().map_err(|_| ApiError::bad_request("bad_cursor", "after must be a cursor from a page"))?,
    };
    let rows = state.store.dataset_uses(&who.0.tenant, &d.to_string(), after, n).await?;
    let next = (rows.len() == n as usize).then(|| rows.last().map(|r| r.version_id.to_string())).flatten();
    let items = rows
        .into_iter()
        .filter(|r| who.0.may_use_domain(&r.domain))
        .map(|r| DatasetUseDto {
            model: r.model,
            domain: r.domain,
            version: r.version,
            stage: r.stage,
            hold: r.hold,
            artifact_digest: r.artifact_digest,
            uris: r.uris,
            registered_at: r.registered_at,
        })
        .collect();
    Ok(Json(DatasetUsePage { digest: d.to_string(), items, next }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OciSourceDto {
    pub model: String,
    pub domain: String,
    pub version: String,
    pub stage: String,
    pub hold: String,
    pub artifact_digest: String,
    /// `registry/repository` the version was pulled from.
    pub repository: String,
    pub registered_at: String,
}

/// Versions of the caller's tenant (in the domains it may see) registered from the OCI
/// manifest `digest`, oldest first: how `oci://…@sha256:…` is served through the registry (the
/// agent then checks the signed release record names that digest).
#[utoipa::path(get, path = "/v1/oci-sources/{digest}/versions", tag = "versions",
    params(("digest" = String, Path, description = "sha256:<hex> of the OCI manifest")),
    responses((status = 200, body = Vec<OciSourceDto>), (status = "4XX", body = Problem)))]
pub async fn oci_sources(
    State(state): State<AppState>,
    who: Caller,
    Path(digest): Path<String>,
) -> ApiResult<Json<Vec<OciSourceDto>>> {
    who.require(&state, Action::Read).await?;
    let d: Digest =
        digest.parse().map_err(|e: fulcrum_core::DigestError| ApiError::bad_request("bad_digest", e.to_string()))?;
    let rows = state.store.oci_sources(&who.0.tenant, &d.to_string()).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|r| who.0.may_use_domain(&r.domain))
            .map(|r| OciSourceDto {
                model: r.model,
                domain: r.domain,
                version: r.version,
                stage: r.stage,
                hold: r.hold,
                artifact_digest: r.artifact_digest,
                repository: r.repository,
                registered_at: r.registered_at,
            })
            .collect(),
    ))
}
