//! Vulnerability findings per version (imported from Grype, osv-scanner or Fulcrum's own JSON)
//! and waivers (who accepted which finding, why, until when). The promotion gate reads both.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fulcrum_core::event::{EventKind, EventPayload};
use fulcrum_core::findings::{self, Finding};
use fulcrum_core::identity::Action;
use fulcrum_store::WaiverRecord;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::{ApiJson, ApiQuery, parse_model_name, visible_model};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingsReport {
    /// `grype`, `osv` (osv-scanner) or `fulcrum` (`{"findings": [{"id", "severity", "status"}]}`).
    pub format: String,
    /// The scanner's JSON report.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FindingDto {
    pub id: String,
    pub severity: String,
    pub status: String,
    pub package: String,
}

/// Open findings by severity, in words (`2 critical, 1 high open; 5 in the report`).
fn summary(found: &[Finding]) -> String {
    let open = |s: findings::Severity| found.iter().filter(|f| f.status == "open" && f.severity == s).count();
    let by: Vec<String> =
        [findings::Severity::Critical, findings::Severity::High, findings::Severity::Medium, findings::Severity::Low]
            .into_iter()
            .filter(|s| open(*s) > 0)
            .map(|s| format!("{} {}", open(s), s.as_str()))
            .collect();
    let open = if by.is_empty() { "none open".to_owned() } else { format!("{} open", by.join(", ")) };
    format!("{open}; {} in the report", found.len())
}

fn dto(f: Finding) -> FindingDto {
    FindingDto { id: f.id, severity: f.severity.as_str().into(), status: f.status, package: f.package }
}

/// Attach a scanner report's findings to a version (re-reporting a finding updates it).
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/findings", tag = "findings",
    params(("name" = String, Path), ("version" = String, Path)), request_body = FindingsReport,
    responses((status = 201, body = Vec<FindingDto>), (status = "4XX", body = Problem)))]
pub async fn report(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
    ApiJson(body): ApiJson<FindingsReport>,
) -> ApiResult<(StatusCode, Json<Vec<FindingDto>>)> {
    who.require(&state, Action::RecordFindings).await?;
    let m = visible_model(&state, &who, Action::RecordFindings, &parse_model_name(&name)?).await?;
    let v = state.store.get_version(m.id, &version).await?.ok_or_else(|| ApiError::not_found("version"))?;
    let bytes = serde_json::to_vec(&body.report).expect("json");
    let parsed = findings::parse(&body.format, &bytes)
        .map_err(|e| ApiError::unprocessable("findings_invalid", e.to_string()))?;
    let now = state.clock.now();
    let mut ev = EventPayload::new(EventKind::FindingsRecorded, now, &m.tenant, &m.domain, &m.name);
    ev.version = Some(v.label.clone());
    ev.actor = Some(who.0.subject.clone());
    ev.reason = Some(summary(&parsed));
    ev.detail = Some(format!("{} report", body.format));
    state
        .commit(
            async |_| state.store.record_findings(v.id, &parsed, &body.format, &who.0.subject, now, ev).await,
            |_, _| {},
        )
        .await?;
    Ok((StatusCode::CREATED, Json(state.store.findings(v.id).await?.into_iter().map(dto).collect())))
}

/// A version's monitoring signals (SPEC §12): traffic per alias (latency quantiles estimated
/// from the summed histogram), startup checks by decision and reason, drift per feature; the same
/// figures as `/metrics`, for one version.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/signals", tag = "findings",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn signals(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    who.require(&state, Action::Read).await?;
    let m = visible_model(&state, &who, Action::Read, &parse_model_name(&name)?).await?;
    let v = state.store.get_version(m.id, &version).await?.ok_or_else(|| ApiError::not_found("version"))?;
    let mut out = state.signals.version_view(&m.tenant, &m.name, &version, state.clock.now());
    out["version"] = serde_json::json!(version);
    out["stage"] = serde_json::json!(v.stage.as_str());
    out["hold"] = serde_json::json!(v.hold.as_str());
    out["revalidate_by"] = v.release["revalidate_by"].clone();
    out["reference_profile"] = v.release["reference_profile"].clone();
    out["findings"] = serde_json::to_value(state.store.findings(v.id).await?.into_iter().map(dto).collect::<Vec<_>>())
        .expect("serialises");
    out["waivers"] = serde_json::to_value(state.store.waivers(m.id, Some(v.id)).await?).expect("serialises");
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/findings", tag = "findings",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = Vec<FindingDto>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Vec<FindingDto>>> {
    who.require(&state, Action::Read).await?;
    let m = visible_model(&state, &who, Action::Read, &parse_model_name(&name)?).await?;
    let v = state.store.get_version(m.id, &version).await?.ok_or_else(|| ApiError::not_found("version"))?;
    Ok(Json(state.store.findings(v.id).await?.into_iter().map(dto).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantWaiver {
    /// The waiver's id (e.g. `W-2026-017`).
    pub id: String,
    /// The finding (CVE/GHSA id) or rule it covers.
    pub finding: String,
    /// Limit it to one version; otherwise it covers every version of the model.
    #[serde(default)]
    pub version: Option<String>,
    pub justification: String,
    /// RFC 3339; must be in the future.
    pub expires_at: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaiverQuery {
    #[serde(default)]
    pub version: Option<String>,
}

/// Grant a waiver (the approver is the caller). Waivers are immutable; a renewal is a new waiver.
#[utoipa::path(post, path = "/v1/models/{name}/waivers", tag = "findings", params(("name" = String, Path)), request_body = GrantWaiver,
    responses((status = 201, body = Object), (status = "4XX", body = Problem)))]
pub async fn grant(
    State(state): State<AppState>,
    who: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<GrantWaiver>,
) -> ApiResult<(StatusCode, Json<WaiverRecord>)> {
    who.require(&state, Action::GrantWaiver).await?;
    let m = visible_model(&state, &who, Action::GrantWaiver, &parse_model_name(&name)?).await?;
    super::check_id("waiver id", Some(&body.id))?;
    findings::check_id(&body.finding).map_err(|e| ApiError::bad_request("bad_finding", e.to_string()))?;
    if body.justification.trim().is_empty() || body.justification.len() > 4096 {
        return Err(ApiError::unprocessable("invalid_body", "justification must be 1-4096 bytes"));
    }
    let now = state.clock.now();
    match OffsetDateTime::parse(&body.expires_at, &Rfc3339) {
        Ok(t) if t > now => {}
        Ok(_) => return Err(ApiError::unprocessable("waiver_expired", "expires_at must be in the future")),
        Err(_) => return Err(ApiError::unprocessable("invalid_body", "expires_at must be an RFC 3339 date-time")),
    }
    let version_id = match &body.version {
        Some(v) => Some(state.store.get_version(m.id, v).await?.ok_or_else(|| ApiError::not_found("version"))?.id),
        None => None,
    };
    let w = WaiverRecord {
        id: body.id,
        model: m.name.clone(),
        version: body.version,
        finding: body.finding,
        justification: body.justification,
        approver: who.0.subject.clone(),
        expires_at: body.expires_at,
        created_at: now.format(&Rfc3339).expect("formats"),
    };
    let mut ev = EventPayload::new(EventKind::WaiverGranted, now, &m.tenant, &m.domain, &m.name);
    ev.version = w.version.clone();
    ev.actor = Some(who.0.subject.clone());
    ev.reason = Some(w.finding.clone());
    ev.detail = Some(format!("waiver {} until {}", w.id, w.expires_at));
    state.commit(async |_| state.store.grant_waiver(&m.tenant, m.id, version_id, &w, now, ev).await, |_, _| {}).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

#[utoipa::path(get, path = "/v1/models/{name}/waivers", tag = "findings", params(("name" = String, Path), WaiverQuery),
    responses((status = 200, body = Vec<Object>), (status = "4XX", body = Problem)))]
pub async fn waivers(
    State(state): State<AppState>,
    who: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<WaiverQuery>,
) -> ApiResult<Json<Vec<WaiverRecord>>> {
    who.require(&state, Action::Read).await?;
    let m = visible_model(&state, &who, Action::Read, &parse_model_name(&name)?).await?;
    let version_id = match &q.version {
        Some(v) => Some(state.store.get_version(m.id, v).await?.ok_or_else(|| ApiError::not_found("version"))?.id),
        None => None,
    };
    Ok(Json(state.store.waivers(m.id, version_id).await?))
}
