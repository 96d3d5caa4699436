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

/// A version as a catalog lookup lists it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListedVersionDto {
    pub model: String,
    pub domain: String,
    pub version: String,
    pub stage: String,
    pub hold: String,
    pub artifact_digest: String,
    pub registered_at: String,
}

fn listed(v: fulcrum_store::datasets::ListedVersion) -> ListedVersionDto {
    ListedVersionDto {
        model: v.model,
        domain: v.domain,
        version: v.version,
        stage: v.stage,
        hold: v.hold,
        artifact_digest: v.artifact_digest,
        registered_at: v.registered_at,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatasetUseDto {
    #[serde(flatten)]
    pub version: ListedVersionDto,
    /// The URI(s) the version named the snapshot by.
    pub uris: Vec<String>,
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
    let next = (rows.len() == n as usize).then(|| rows.last().map(|r| r.listed.version_id.to_string())).flatten();
    let items = rows
        .into_iter()
        .filter(|r| who.0.may_use_domain(&r.listed.domain))
        .map(|r| DatasetUseDto { version: listed(r.listed), uris: r.uris })
        .collect();
    Ok(Json(DatasetUsePage { digest: d.to_string(), items, next }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OciSourceDto {
    #[serde(flatten)]
    pub version: ListedVersionDto,
    /// `registry/repository` the version was pulled from.
    pub repository: String,
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
            .filter(|r| who.0.may_use_domain(&r.listed.domain))
            .map(|r| OciSourceDto { version: listed(r.listed), repository: r.repository })
            .collect(),
    ))
}
