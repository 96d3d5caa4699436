//! Incidents (seed §5.2, §8; SPEC §12): records with a severity and the versions they name,
//! opened by a person, a runbook, a revocation or quarantine carrying their id, or a watcher;
//! closed by a role the policy names (`close_incident`). The timeline T0→T+N folds the log:
//! the withdrawal, each serving replica's quiesce, purge, unload, verified reload and
//! post-backout validation, with each step's delay from T0.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fulcrum_core::event::EventKind;
use fulcrum_core::identity::Action;
use fulcrum_core::incident::{Logged, Timeline};
use fulcrum_store::{IncidentRecord, NewIncident};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery, check_id, check_text};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, ApiResult, Problem};

pub use fulcrum_store::incidents::INCIDENT_MODEL;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenIncident {
    /// The incident id (e.g. the ITSM ticket, `INC-4711`).
    pub id: String,
    pub title: String,
    /// One of the policy's `data.fulcrum.incidents.severities` (`critical`, `high`, `medium`, `low`).
    pub severity: String,
    /// Versions it names, `model@version`.
    #[serde(default)]
    pub versions: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseIncident {
    /// How it ended (what was done, what was learned).
    pub resolution: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IncidentsQuery {
    /// Only incidents still open.
    #[serde(default)]
    pub open: bool,
    #[serde(default)]
    pub limit: Option<u32>,
}

fn severities(state: &AppState) -> Vec<String> {
    let policy = state.policies.current();
    let snapshot: serde_json::Value = serde_json::from_slice(&policy.snapshot).unwrap_or_default();
    snapshot
        .pointer("/data/fulcrum/incidents/severities")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_else(|| ["critical", "high", "medium", "low"].map(str::to_owned).to_vec())
}

/// Split `model@version`, both checked.
fn model_version(s: &str) -> ApiResult<(String, String)> {
    let bad = || ApiError::bad_request("bad_version_ref", format!("{s:?}: expected model@version"));
    let (m, v) = s.split_once('@').ok_or_else(bad)?;
    fulcrum_core::ModelName::parse(m).map_err(|_| bad())?;
    fulcrum_core::VersionLabel::parse(v).map_err(|_| bad())?;
    Ok((m.to_owned(), v.to_owned()))
}

/// The versions of `i` the caller may see (a domain-bound principal sees its domain's only).
/// Each model's domain is read once per call; a caller of every domain reads none.
async fn visible(state: &AppState, who: &Caller, mut list: Vec<IncidentRecord>) -> ApiResult<Vec<IncidentRecord>> {
    if who.0.domain == "*" {
        return Ok(list);
    }
    let mut seen: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for i in &mut list {
        let mut kept = Vec::with_capacity(i.versions.len());
        for v in std::mem::take(&mut i.versions) {
            let ok = match seen.get(&v.model) {
                Some(ok) => *ok,
                None => {
                    let m = state.store.get_model(&who.0.tenant, &v.model).await?;
                    let ok = m.is_some_and(|m| who.0.may_use_domain(&m.domain));
                    seen.insert(v.model.clone(), ok);
                    ok
                }
            };
            if ok {
                kept.push(v);
            }
        }
        i.versions = kept;
    }
    Ok(list)
}

/// Open an incident record.
#[utoipa::path(post, path = "/v1/incidents", tag = "incidents", request_body = OpenIncident,
    responses((status = 201, body = Object), (status = 409, body = Problem), (status = "4XX", body = Problem)))]
pub async fn open(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(body): ApiJson<OpenIncident>,
) -> ApiResult<(StatusCode, Json<IncidentRecord>)> {
    who.require(&state, Action::OpenIncident).await?;
    check_id("incident id", Some(&body.id))?;
    check_text("title", &body.title, 512)?;
    if !severities(&state).contains(&body.severity) {
        return Err(ApiError::unprocessable(
            "bad_severity",
            format!("severity must be one of {}", severities(&state).join(", ")),
        ));
    }
    if body.versions.len() > 100 {
        return Err(ApiError::unprocessable("invalid_body", "at most 100 versions"));
    }
    let mut versions = Vec::with_capacity(body.versions.len());
    for s in &body.versions {
        let (m, v) = model_version(s)?;
        let model =
            super::visible_model(&state, &who, Action::Read, &fulcrum_core::ModelName::parse(&m).expect("checked"))
                .await?;
        state.store.get_version(model.id, &v).await?.ok_or_else(|| ApiError::not_found("version"))?;
        versions.push((m, v));
    }
    let n = NewIncident {
        tenant: &who.0.tenant,
        id: &body.id,
        title: &body.title,
        severity: &body.severity,
        source: "operator",
        opened_by: &who.0.subject,
        versions: &versions,
    };
    let now = state.clock.now();
    state.commit(async |_| state.store.open_incident(&n, now).await, |_, _| {}).await?;
    let i = state.store.incident(&who.0.tenant, &body.id).await?.ok_or_else(|| ApiError::internal(&"just opened"))?;
    Ok((StatusCode::CREATED, Json(i)))
}

/// A tenant's incidents, newest first.
#[utoipa::path(get, path = "/v1/incidents", tag = "incidents", params(IncidentsQuery),
    responses((status = 200, body = Vec<Object>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<IncidentsQuery>,
) -> ApiResult<Json<Vec<IncidentRecord>>> {
    Ok(Json(list_for(&state, &who, q.open, q.limit.unwrap_or(100)).await?))
}

/// The caller's incidents as the API lists them (the console's list too).
pub(crate) async fn list_for(state: &AppState, who: &Caller, open: bool, limit: u32) -> ApiResult<Vec<IncidentRecord>> {
    who.require(state, Action::Read).await?;
    visible(state, who, state.store.incidents(&who.0.tenant, open, limit.min(1000)).await?).await
}

async fn load(state: &AppState, who: &Caller, id: &str) -> ApiResult<IncidentRecord> {
    check_id("incident id", Some(id))?;
    let i = state.store.incident(&who.0.tenant, id).await?.ok_or_else(|| ApiError::not_found("incident"))?;
    Ok(visible(state, who, vec![i]).await?.pop().expect("one in, one out"))
}

/// One incident.
#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentRecord>> {
    who.require(&state, Action::Read).await?;
    Ok(Json(load(&state, &who, &id).await?))
}

/// Close an incident (the policy names the roles that may: `close_incident`).
#[utoipa::path(post, path = "/v1/incidents/{id}/close", tag = "incidents", params(("id" = String, Path)),
    request_body = CloseIncident, responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn close(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CloseIncident>,
) -> ApiResult<Json<IncidentRecord>> {
    who.require(&state, Action::CloseIncident).await?;
    check_text("resolution", &body.resolution, 4096)?;
    load(&state, &who, &id).await?;
    let now = state.clock.now();
    state
        .commit(
            async |_| state.store.close_incident(&who.0.tenant, &id, &who.0.subject, &body.resolution, now).await,
            |_, _| {},
        )
        .await?;
    Ok(Json(load(&state, &who, &id).await?))
}

/// Serving events read per model for a timeline: from this many positions before T0 (to find
/// who served the withdrawn versions) up to this many after.
const BEFORE_T0: i64 = 20_000;
const AFTER_T0: u32 = 20_000;

/// Build an incident's timeline from the log.
pub(crate) async fn timeline_of(state: &AppState, tenant: &str, id: &str) -> ApiResult<Timeline> {
    let parse = |seq: i64, body: &str| -> Option<Logged> {
        let ce: fulcrum_core::event::CloudEvent = serde_json::from_str(body).ok()?;
        Some(Logged { seq, event: ce.data })
    };
    let incident: Vec<Logged> =
        state.store.incident_events(tenant, id).await?.iter().filter_map(|e| parse(e.seq, &e.body)).collect();
    let t0 = incident.iter().find(|l| matches!(l.event.event, EventKind::Revocation | EventKind::Quarantined));
    let mut serving = Vec::new();
    if let Some(t0) = t0 {
        let models: std::collections::BTreeSet<&str> = incident
            .iter()
            .filter(|l| matches!(l.event.event, EventKind::Revocation | EventKind::Quarantined))
            .map(|l| l.event.model.as_str())
            .collect();
        let kinds = [EventKind::AgentStep, EventKind::StartupPermit, EventKind::StartupDeny, EventKind::ServingStats];
        for m in models {
            let evs = state
                .store
                .model_events_between(tenant, m, &kinds, t0.seq - BEFORE_T0, t0.seq + i64::from(AFTER_T0), AFTER_T0 * 2)
                .await?;
            serving.extend(evs.iter().filter_map(|e| parse(e.seq, &e.body)));
        }
        serving.sort_by_key(|l| l.seq);
    }
    Ok(fulcrum_core::incident::timeline(id, &incident, &serving))
}

/// The incident's timeline T0→T+N: each step with its delay from T0, per replica its quiesce,
/// purge (or error), unload, verified reload and post-backout validation; replicas that served
/// the withdrawn version and stayed silent are named in `missing`.
#[utoipa::path(get, path = "/v1/incidents/{id}/timeline", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = Problem)))]
pub async fn timeline(State(state): State<AppState>, who: Caller, Path(id): Path<String>) -> ApiResult<Json<Timeline>> {
    Ok(Json(with_timeline(&state, &who, &id).await?.1))
}

/// An incident and its timeline as the caller may see them (the console's incident page too).
pub(crate) async fn with_timeline(state: &AppState, who: &Caller, id: &str) -> ApiResult<(IncidentRecord, Timeline)> {
    who.require(state, Action::ReadEvents).await?;
    let i = load(state, who, id).await?;
    let mut t = timeline_of(state, &who.0.tenant, &i.id).await?;
    // A domain-bound caller sees the steps of its own domains' models only.
    let seen: std::collections::BTreeSet<String> = i.versions.iter().map(|v| v.model.clone()).collect();
    t.steps.retain(|s| s.model == INCIDENT_MODEL || seen.contains(&s.model) || who.0.domain == "*");
    Ok((i, t))
}
