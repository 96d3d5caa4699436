//! HTTP routes (SPEC §10). Each submodule owns one resource; this module assembles the router,
//! the OpenAPI document (generated from the handlers' annotations), the operational endpoints
//! and the shared extractors.

pub(crate) mod blobs;
mod cluster;
mod datasets;
pub(crate) mod events;
mod findings;
mod identity;
pub(crate) mod incidents;
mod keys;
mod ledger;
pub(crate) mod models;
mod policy;
mod resolve;
mod webhooks;

use std::sync::{Arc, OnceLock};

use axum::extract::{DefaultBodyLimit, FromRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use fulcrum_core::names::check_identifier;
use fulcrum_core::{ModelName, Principal};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::Health;
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(OpenApi)]
#[openapi(
    info(title = "Fulcrum registry API", version = "1", description = "Governed model registry: lifecycle, signed startup handshake, events."),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// JSON body extractor whose rejections are problem+json.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query extractor whose rejections are problem+json.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// JSON API routes: bounded bodies and a request deadline are applied in [`router`].
fn json_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(models::create_model, models::list_models))
        .routes(routes!(models::get_model))
        .routes(routes!(models::register_version, models::list_versions))
        .routes(routes!(models::get_version))
        .routes(routes!(models::approve))
        .routes(routes!(models::promote))
        .routes(routes!(models::revoke))
        .routes(routes!(models::quarantine, models::lift_quarantine))
        .routes(routes!(models::set_alias, models::get_alias, models::delete_alias))
        .routes(routes!(models::alias_history))
        .routes(routes!(resolve::startup_report))
        .routes(routes!(resolve::agent_report))
        .routes(routes!(resolve::trust_bundle))
        .routes(routes!(resolve::trust_bundle_chain))
        .routes(routes!(events::list_events))
        .routes(routes!(keys::list_keys, keys::register_key))
        .routes(routes!(keys::retire_key))
        .routes(routes!(keys::list_trust_roots, keys::import_trust_root))
        .routes(routes!(findings::report, findings::list))
        .routes(routes!(findings::signals))
        .routes(routes!(datasets::used_by))
        .routes(routes!(datasets::oci_sources))
        .routes(routes!(findings::grant, findings::waivers))
        .routes(routes!(policy::current))
        .routes(routes!(policy::install))
        .routes(routes!(policy::rollback))
        .routes(routes!(policy::history))
        .routes(routes!(policy::decisions))
        .routes(routes!(policy::by_digest))
        .routes(routes!(identity::me))
        .routes(routes!(ledger::checkpoint))
        .routes(routes!(ledger::entries))
        .routes(routes!(ledger::inclusion))
        .routes(routes!(ledger::consistency))
        .routes(routes!(ledger::state_proof))
        .routes(routes!(ledger::write_evidence, ledger::read_evidence))
        .routes(routes!(webhooks::dead_letters))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(cluster::cluster))
        .routes(routes!(incidents::open, incidents::list))
        .routes(routes!(incidents::get))
        .routes(routes!(incidents::close))
        .routes(routes!(incidents::timeline))
        .routes(routes!(health))
        .routes(routes!(ready))
}

/// Routes that need no deadline: streams (blobs, events) with their own size limits.
fn streaming_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(blobs::post_blob))
        .routes(routes!(blobs::put_blob, blobs::get_blob, blobs::head_blob))
        .routes(routes!(blobs::scrub))
        .routes(routes!(events::stream_events))
}

/// JSON routes that may run long (a registration pulling a model from an OCI registry):
/// bounded bodies, no request deadline.
fn long_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(models::register_from_oci))
}

/// The resolve hot path: no body, no deadline (it answers from memory and never waits on I/O),
/// and no per-route layer at all (see [`crate::edge`]).
fn hot_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(resolve::resolve))
}

/// Endpoints served outside the OpenAPI document.
pub(crate) const UNDOCUMENTED: [&str; 2] = ["/openapi.json", "/metrics"];

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        json_routes().merge(streaming_routes()).merge(long_routes()).merge(hot_routes()).split_for_parts().1
    })
    .clone()
}

pub fn router(state: AppState) -> Router {
    let json_api = json_routes()
        .layer(DefaultBodyLimit::max(state.config.max_json_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), crate::deadline::request_deadline));
    let (api, _) = json_api
        .merge(streaming_routes().layer(DefaultBodyLimit::disable()))
        .merge(long_routes().layer(DefaultBodyLimit::max(state.config.max_json_bytes)))
        .merge(hot_routes())
        .split_for_parts();
    let doc_json: Arc<str> = serde_json::to_string(&openapi()).expect("openapi serialises").into();
    let [openapi_json, metrics_path] = UNDOCUMENTED;
    api.route(
        openapi_json,
        get(move || {
            let d = doc_json.clone();
            async move { ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], d.to_string()) }
        }),
    )
    .route(metrics_path, get(metrics))
    .merge(crate::ui::router())
    .merge(crate::mlflow::router())
    .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint") })
    .method_not_allowed_fallback(|| async {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
    })
    .with_state(state)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: the database answers and the process is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200, body = Health), (status = 503, body = Problem)))]
async fn ready(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    if *state.shutdown_rx.borrow() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the registry is shutting down"));
    }
    if state.view.is_stale() {
        return Err(resolve::stale_view(&state));
    }
    state.store.last_event_seq().await.map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the metadata store does not answer")
    })?;
    Ok(Json(Health { status: "ready".into() }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (models, versions) = state.catalog.counts();
    let last = state.store.last_event_seq().await.unwrap_or(-1);
    let body = state.metrics.render(&[
        ("fulcrum_models", "Models registered.", models as u64),
        ("fulcrum_versions", "Versions registered.", versions as u64),
        ("fulcrum_event_log_position", "Position of the newest event.", last.max(0) as u64),
        (
            "fulcrum_state_divergent_models",
            "Models whose stored state disagrees with the audit ledger (answers denied, governance refused; alert on any).",
            state.catalog.divergent_count() as u64,
        ),
        (
            "fulcrum_view_age_seconds",
            "Seconds since this replica last read the registry's log (resolves stop past the staleness bound).",
            state.view.age().as_secs(),
        ),
        (
            "fulcrum_log_applied_position",
            "Position of the newest event this replica's caches and event streams applied.",
            state.view.applied().max(0) as u64,
        ),
        (
            "fulcrum_log_lag_events",
            "Events committed (by any replica) that this replica has not applied yet.",
            (last - state.view.applied()).max(0) as u64,
        ),
        (
            "fulcrum_leader",
            "1 when this replica leads the background work (relay, webhooks, checkpoints), else 0.",
            u64::from(state.leader_term.load(std::sync::atomic::Ordering::SeqCst) > 0),
        ),
        (
            "fulcrum_leader_term",
            "The leadership term this replica holds (0 when it does not lead); terms only grow.",
            state.leader_term.load(std::sync::atomic::Ordering::SeqCst).max(0) as u64,
        ),
        (
            "fulcrum_access_decisions_logged",
            "Access decisions stored in the decision log since start.",
            state.access.written.load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "fulcrum_access_decisions_dropped",
            "Access decisions that could not be stored after retries (alert on any).",
            state.access.dropped.load(std::sync::atomic::Ordering::Relaxed),
        ),
    ]);
    let mut body = body;
    body.push_str(&state.signals.render(state.clock.now()));
    let fetches = state.oidc.fetch_counts();
    if !fetches.is_empty() {
        body.push_str("# HELP fulcrum_oidc_jwks_fetches_total Fetches of an issuer's keys (start-up, age, unknown kid).\n# TYPE fulcrum_oidc_jwks_fetches_total counter\n");
        for (issuer, n) in fetches {
            body.push_str(&format!("fulcrum_oidc_jwks_fetches_total{{issuer=\"{issuer}\"}} {n}\n"));
        }
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body)
}

// ------------------------------------------------------------------ shared helpers

pub(crate) fn parse_model_name(s: &str) -> ApiResult<ModelName> {
    ModelName::parse(s).map_err(|e| ApiError::bad_request("bad_name", e.to_string()))
}

/// A page size: 1–500, default 100.
pub(crate) fn limit(l: Option<u32>) -> ApiResult<u32> {
    match l {
        None => Ok(100),
        Some(n @ 1..=500) => Ok(n),
        Some(_) => Err(ApiError::bad_request("bad_limit", "limit must be between 1 and 500")),
    }
}

/// Free text an operator writes (reasons, comments): 1–`max` bytes, no control characters.
pub(crate) fn check_text(what: &'static str, s: &str, max: usize) -> ApiResult<()> {
    if s.trim().is_empty() || s.len() > max {
        return Err(ApiError::unprocessable("invalid_body", format!("{what} must be 1-{max} bytes")));
    }
    fulcrum_core::names::check_text(what, s).map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))
}

pub(crate) fn check_id(what: &'static str, v: Option<&str>) -> ApiResult<()> {
    match v {
        Some(s) => check_identifier(what, s).map_err(|e| ApiError::bad_request("bad_identifier", e.to_string())),
        None => Ok(()),
    }
}

/// Load a model the caller may see: same tenant and an allowed domain. Anything else is 404,
/// so other tenants' models are invisible rather than forbidden.
pub(crate) async fn find_model(
    state: &AppState,
    who: &Principal,
    name: &ModelName,
) -> ApiResult<fulcrum_store::ModelRecord> {
    let m = state.store.get_model(&who.tenant, name.as_str()).await?.ok_or_else(|| ApiError::not_found("model"))?;
    if !who.may_use_domain(&m.domain) {
        return Err(ApiError::not_found("model"));
    }
    Ok(m)
}

/// [`find_model`], then the policy's resource-level rule for `action` on it (its tenant,
/// domain, name and labels), logged.
pub(crate) async fn visible_model(
    state: &AppState,
    who: &crate::auth::Caller,
    action: fulcrum_core::identity::Action,
    name: &ModelName,
) -> ApiResult<fulcrum_store::ModelRecord> {
    let m = find_model(state, &who.0, name).await?;
    let labels = fulcrum_core::dlp::version_labels(&m.labels, &[]);
    let res =
        crate::access::Resource { labels: &labels, ..crate::access::Resource::model(&m.tenant, &m.domain, &m.name) };
    who.require_on(state, action, res).await?;
    Ok(m)
}
