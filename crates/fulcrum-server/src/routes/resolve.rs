//! The startup handshake (SPEC §4): signed resolve documents, startup reports, trust bundle.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fulcrum_core::event::{EventKind, EventPayload};
use fulcrum_core::identity::{Action, Principal};
use fulcrum_core::lifecycle::Env;
use fulcrum_core::reference::Selector;
use fulcrum_core::resolve::{Decision, RESOLVE_MEDIA_TYPE};
use fulcrum_core::{Digest, Reference};

use super::{ApiJson, ApiQuery, check_id, visible_model};
use crate::AppState;
use crate::access::Resource;
use crate::auth::Caller;
use crate::catalog::Miss;
use crate::dto::{AgentReport, EventAck, ResolveQuery, StartupReport};
use crate::problem::{ApiError, ApiResult, Problem};

/// Header carrying the base64 signature over the exact response body.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("fulcrum-signature");
/// Header naming the key (`kid`) that made the signature.
pub const KID_HEADER: HeaderName = HeaderName::from_static("fulcrum-key-id");

impl<S: Send + Sync> FromRequestParts<S> for ResolveQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Self::parse(parts.uri.query()).map_err(|e| ApiError::bad_request("bad_query", e))
    }
}

/// This replica has not read the registry's log for too long: it cannot know what was revoked
/// meanwhile, so it answers nothing (fail closed).
pub(crate) fn stale_view(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stale_view",
        format!(
            "this registry replica has not read the registry's log for {} s (limit {} s): it answers no resolve until it can; retry or use another replica",
            state.view.age().as_secs(),
            crate::follow::STALE_AFTER.as_secs()
        ),
    )
}

fn parse_env(s: &str) -> ApiResult<Env> {
    s.parse().map_err(|()| ApiError::bad_request("bad_env", "env must be dev, staging or prod"))
}

/// Resolve a reference for an environment. The body is the signed document, byte for byte;
/// the signature and key id travel in `Fulcrum-Signature` and `Fulcrum-Key-Id`. A version the
/// env may not load is answered with `decision: deny` and a `deny_reason`, still signed.
#[utoipa::path(get, path = "/v1/resolve", tag = "handshake", params(ResolveQuery),
    responses(
        (status = 200, description = "signed resolve document", body = fulcrum_core::resolve::ResolveDocument, content_type = "application/vnd.fulcrum.resolve.v1+json",
         headers(("fulcrum-signature" = String, description = "base64 signature over the body"), ("fulcrum-key-id" = String, description = "kid of the signing key"))),
        (status = 404, description = "unknown model/version, or alias_empty", body = Problem),
        (status = "4XX", body = Problem)))]
pub async fn resolve(State(state): State<AppState>, who: Caller, q: ResolveQuery) -> ApiResult<Response> {
    // The access decision is taken on the version named (its labels, DLP purpose). Answers that
    // name none, and documents that must be signed first, are decided on the tenant before
    // (so a role that may not resolve learns nothing and costs no signature).
    if state.view.is_stale() {
        return Err(stale_view(&state));
    }
    let p = &who.0;
    let r: Reference = q
        .reference
        .parse()
        .map_err(|e: fulcrum_core::ReferenceError| ApiError::bad_request("bad_reference", e.to_string()))?;
    let env = match (q.env.as_deref(), p.env) {
        (Some(e), _) => parse_env(e)?,
        (None, Some(e)) => e,
        (None, None) => {
            return Err(ApiError::bad_request("env_required", "env is required (dev, staging or prod)"));
        }
    };
    if p.env.is_some_and(|own| own != env) {
        return Err(ApiError::forbidden(format!(
            "this identity serves env {} and cannot resolve for {env}",
            p.env.map_or("", |e| e.as_str())
        )));
    }
    let selector = match &r.selector {
        Selector::Word(w) => std::borrow::Cow::Borrowed(w.as_str()),
        Selector::Digest(d) => std::borrow::Cow::Owned(d.to_string()),
    };
    let now = state.clock.now();
    let cached = match state.catalog.cached(&p.tenant, |d| p.may_use_domain(d), &r, &selector, env, now) {
        Ok(c) => c,
        Err(_) => {
            who.require(&state, Action::Resolve).await?;
            return Err(ApiError::not_found("model"));
        }
    };
    let doc = match cached {
        Some(doc) => doc,
        None => {
            who.require(&state, Action::Resolve).await?;
            state.metrics.resolve_cache_miss.fetch_add(1, Ordering::Relaxed);
            state.catalog.build(&p.tenant, &r, &selector, env, now).map_err(|m| match m {
                Miss::Model => ApiError::not_found("model"),
                Miss::Version => ApiError::not_found("version"),
                Miss::Signer => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "signer_unavailable",
                    "the signing service did not answer; retry",
                ),
                Miss::AliasEmpty => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "alias_empty",
                    format!("{r} has no target: its version was revoked or quarantined and no healthy Approved version was left to roll back to"),
                ),
            })?
        }
    };
    // The resource-level rule (labels, DLP purpose) for the version the document names.
    let res = Resource {
        labels: &doc.dlp.labels,
        purposes: &doc.dlp.purposes,
        env: Some(env.as_str()),
        ..Resource::model(&p.tenant, &doc.dlp.domain, r.model.as_str())
    };
    who.require_on(&state, Action::Resolve, res).await?;
    match doc.decision {
        Decision::Permit => state.metrics.resolve_permit.fetch_add(1, Ordering::Relaxed),
        Decision::Deny => state.metrics.resolve_deny.fetch_add(1, Ordering::Relaxed),
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(RESOLVE_MEDIA_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::ETAG, doc.etag.clone()),
            (SIGNATURE_HEADER, doc.signature.clone()),
            (KID_HEADER, doc.kid.clone()),
        ],
        doc.body.clone(),
    )
        .into_response())
}

/// What an agent reports on: the reference and env, parsed; an identity bound to one env reports
/// for that env only.
fn report_target(p: &Principal, reference: &str, env: &str) -> ApiResult<(Reference, Env)> {
    let r: Reference = reference
        .parse()
        .map_err(|e: fulcrum_core::ReferenceError| ApiError::bad_request("bad_reference", e.to_string()))?;
    let env = parse_env(env)?;
    if p.env.is_some_and(|own| own != env) {
        return Err(ApiError::forbidden("this identity cannot report for another env"));
    }
    Ok((r, env))
}

/// What a report is about, from its reference: an alias of the model names the alias; a
/// version label names the version (when the report did not already); a digest names the
/// artifact. And who reported it (identity/replica).
fn stamp(
    state: &AppState,
    ev: &mut EventPayload,
    m: &fulcrum_store::ModelRecord,
    r: &Reference,
    p: &Principal,
    agent: Option<String>,
) {
    match &r.selector {
        Selector::Word(w) if state.catalog.is_alias(&m.tenant, &m.name, w) => ev.alias = Some(w.clone()),
        Selector::Word(w) => {
            ev.version.get_or_insert_with(|| w.clone());
        }
        Selector::Digest(d) => {
            ev.artifact_digest.get_or_insert_with(|| d.to_string());
        }
    }
    ev.actor = Some(match agent {
        Some(a) => format!("{}/{a}", p.subject),
        None => p.subject.clone(),
    });
}

/// Record an agent's startup decision as `startup_permit` / `startup_deny`.
#[utoipa::path(post, path = "/v1/startup-reports", tag = "handshake", request_body = StartupReport,
    responses((status = 201, body = EventAck), (status = "4XX", body = Problem)))]
pub async fn startup_report(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(body): ApiJson<StartupReport>,
) -> ApiResult<(StatusCode, Json<EventAck>)> {
    who.require(&state, Action::ReportStartup).await?;
    let p = &who.0;
    let (r, env) = report_target(p, &body.reference, &body.env)?;
    let kind = match body.decision.as_str() {
        "permit" => EventKind::StartupPermit,
        "deny" => EventKind::StartupDeny,
        _ => {
            return Err(ApiError::unprocessable("bad_decision", "decision must be permit or deny"));
        }
    };
    if kind == EventKind::StartupDeny && body.reason.is_none() {
        return Err(ApiError::unprocessable("reason_required", "a deny report needs a machine-readable reason"));
    }
    check_id("reason", body.reason.as_deref())?;
    check_id("agent", body.agent.as_deref())?;
    if let Some(v) = &body.version {
        fulcrum_core::VersionLabel::parse(v).map_err(|e| ApiError::bad_request("bad_version", e.to_string()))?;
    }
    for d in [&body.artifact_digest, &body.policy_digest].into_iter().flatten() {
        d.parse::<Digest>().map_err(|e| ApiError::bad_request("bad_digest", e.to_string()))?;
    }
    for (what, t) in [("detail", &body.detail), ("fallback", &body.fallback)] {
        if t.as_ref().is_some_and(|d| d.chars().count() > 512 || d.chars().any(char::is_control)) {
            return Err(ApiError::bad_request("bad_detail", format!("{what}: at most 512 printable characters")));
        }
    }
    let m = visible_model(&state, &who, Action::ReportStartup, &r.model).await?;
    let mut ev = EventPayload::new(kind, state.clock.now(), &m.tenant, &m.domain, &m.name);
    ev.detail = match (body.detail, body.fallback) {
        (Some(d), Some(f)) => Some(format!("{d}; kept serving {f}")),
        (None, Some(f)) => Some(format!("kept serving {f}")),
        (d, None) => d,
    };
    ev.version = body.version;
    ev.artifact_digest = body.artifact_digest;
    ev.policy_digest = body.policy_digest;
    ev.env = Some(env.as_str().into());
    ev.reason = body.reason;
    stamp(&state, &mut ev, &m, &r, p, body.agent);
    let stored = state.store.record_event(ev).await?;
    match kind {
        EventKind::StartupPermit => state.metrics.startup_permit.fetch_add(1, Ordering::Relaxed),
        _ => state.metrics.startup_deny.fetch_add(1, Ordering::Relaxed),
    };
    state.notify_events();
    Ok((StatusCode::CREATED, Json(EventAck { event: kind.as_str().into(), sequence: stored.seq })))
}

/// Record a serving agent's runtime step (`agent_step`) or a gateway's per-version figures
/// (`serving_stats`), so the revocation timeline T0→T+N and the per-version dashboards can be
/// drawn from the event log.
#[utoipa::path(post, path = "/v1/agent-reports", tag = "handshake", request_body = AgentReport,
    responses((status = 201, body = EventAck), (status = "4XX", body = Problem)))]
pub async fn agent_report(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(body): ApiJson<AgentReport>,
) -> ApiResult<(StatusCode, Json<EventAck>)> {
    who.require(&state, Action::ReportStartup).await?;
    let p = &who.0;
    let (r, env) = report_target(p, &body.reference, &body.env)?;
    let kind = match (body.kind.as_str(), &body.step, &body.stats, &body.inputs) {
        ("step", Some(_), None, None) => EventKind::AgentStep,
        ("stats", None, Some(_), None) => EventKind::ServingStats,
        ("inputs", None, None, Some(_)) => EventKind::ServingInputs,
        _ => {
            return Err(ApiError::unprocessable(
                "bad_report",
                "kind must be step (with step), stats (with stats) or inputs (with inputs), and carry only that",
            ));
        }
    };
    check_id("step", body.step.as_deref())?;
    check_id("agent", body.agent.as_deref())?;
    check_id("inc_id", body.inc_id.as_deref())?;
    check_id("chg_id", body.chg_id.as_deref())?;
    if let Some(d) = &body.policy_digest {
        d.parse::<Digest>().map_err(|e| ApiError::bad_request("bad_digest", e.to_string()))?;
    }
    if let Some(at) = &body.observed_at {
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ApiError::bad_request("bad_time", "observed_at must be an RFC 3339 date-time"))?;
    }
    if body.detail.as_ref().is_some_and(|d| d.chars().count() > 512 || d.chars().any(char::is_control)) {
        return Err(ApiError::bad_request("bad_detail", "detail: at most 512 printable characters"));
    }
    if let Some(v) = &body.version {
        fulcrum_core::VersionLabel::parse(v).map_err(|e| ApiError::bad_request("bad_version", e.to_string()))?;
    }
    if let Some(d) = &body.artifact_digest {
        d.parse::<Digest>().map_err(|e| ApiError::bad_request("bad_digest", e.to_string()))?;
    }
    if body.stats.is_some_and(|s| !s.is_consistent()) {
        return Err(ApiError::unprocessable(
            "bad_stats",
            "stats: window_s > 0, errors ≤ requests, p50 ≤ p99, latency bucket counts sum to at most requests",
        ));
    }
    let m = visible_model(&state, &who, Action::ReportStartup, &r.model).await?;
    if let Some(inputs) = &body.inputs {
        check_inputs(&state, &m, body.version.as_deref(), inputs).await?;
    }
    let mut ev = EventPayload::new(kind, state.clock.now(), &m.tenant, &m.domain, &m.name);
    ev.version = body.version;
    ev.artifact_digest = body.artifact_digest;
    ev.env = Some(env.as_str().into());
    ev.inputs = body.inputs;
    ev.reason = body.step;
    ev.observed_at = body.observed_at;
    ev.detail = body.detail;
    ev.stats = body.stats;
    ev.inc_id = body.inc_id;
    ev.chg_id = body.chg_id;
    ev.policy_digest = body.policy_digest;
    stamp(&state, &mut ev, &m, &r, p, body.agent);
    let stored = state.store.record_event(ev).await?;
    state.notify_events();
    Ok((StatusCode::CREATED, Json(EventAck { event: kind.as_str().into(), sequence: stored.seq })))
}

/// Binned inputs must be for a version that carries that very profile, in its shape: a drift
/// figure is only as good as the profile it was binned against.
async fn check_inputs(
    state: &AppState,
    m: &fulcrum_store::ModelRecord,
    version: Option<&str>,
    inputs: &fulcrum_core::event::ServingInputs,
) -> ApiResult<()> {
    let bad = |detail: String| ApiError::unprocessable("bad_inputs", detail);
    let version = version.ok_or_else(|| bad("inputs name the version they were binned for".into()))?;
    let v = state.store.get_version(m.id, version).await?.ok_or_else(|| ApiError::not_found("version"))?;
    let Some(theirs) = v.release["reference_profile"]["digest"].as_str() else {
        return Err(bad(format!("{}@{version} carries no reference profile", m.name)));
    };
    if theirs != inputs.profile {
        return Err(bad(format!("{}@{version}'s reference profile is {theirs}, not {}", m.name, inputs.profile)));
    }
    if inputs.window_s == 0 {
        return Err(bad("window_s must be positive".into()));
    }
    let d: Digest = theirs.parse().map_err(|_| ApiError::internal(&"a stored profile digest"))?;
    let profile = state.reference_profile(&d).await?;
    if !inputs.tally.fits(&profile) {
        return Err(bad("the tally does not have the profile's features and bins".into()));
    }
    Ok(())
}

/// The keys that sign what the registry hands out, as a signed, versioned document. Built when
/// the key set changes, never per request.
#[utoipa::path(get, path = "/v1/trust-bundle", tag = "handshake", security(()),
    responses((status = 200, description = "trust bundle", content_type = "application/json",
        headers(("fulcrum-signature" = String, description = "base64 signature over the body"), ("fulcrum-key-id" = String, description = "kid of the signing key")))))]
pub async fn trust_bundle(State(state): State<AppState>) -> Response {
    let b = state.keys.bundle();
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (SIGNATURE_HEADER, b.signature.clone()),
            (KID_HEADER, b.kid.clone()),
        ],
        b.body.clone(),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChainQuery {
    /// The bundle version the caller trusts; links to every later one are returned.
    pub after: u64,
}

/// The chain from a bundle an agent trusts to the current one (TUF-style): each later bundle
/// with its own signature and the endorsements of the key(s) it rotated out. Oldest first, at
/// most 100 per answer. Agents verify every link against what they already trust.
#[utoipa::path(get, path = "/v1/trust-bundle/chain", tag = "handshake", security(()), params(ChainQuery),
    responses((status = 200, description = "links", content_type = "application/json"), (status = "4XX", body = Problem)))]
pub async fn trust_bundle_chain(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ChainQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let links = state.store.bundles_after(q.after, 100).await?;
    let links: Vec<serde_json::Value> = links
        .into_iter()
        .map(|b| {
            serde_json::json!({
                "version": b.version, "body": b.body, "kid": b.kid, "signature": b.signature,
                "endorsements": serde_json::from_str::<serde_json::Value>(&b.endorsements)
                    .unwrap_or_else(|_| serde_json::json!([])),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "links": links })))
}
