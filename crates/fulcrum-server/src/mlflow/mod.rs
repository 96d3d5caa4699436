//! The MLflow Model Registry REST API (`/api/2.0/mlflow/…`) over Fulcrum's registry, so the
//! official `mlflow` client works with `MLFLOW_REGISTRY_URI` pointed here — with every governed
//! rule still in force (docs/mlflow.md has the mapping and the conformance table).
//!
//! - [`models`]: registered models — read, search, create, describe, tag; rename and delete
//!   refused (a name is an identity in signed records; versions are immutable and auditable).
//! - [`versions`]: model versions — registration from an MLflow source (files copied and hashed
//!   here, the release gate, `PENDING_REGISTRATION` → `READY` | `FAILED_REGISTRATION`), read,
//!   search, describe, tag, governed stage transitions and alias moves, the download URI and the
//!   artifact endpoints a client loads `models:/…` through.
//! - [`search`]: MLflow's filter and `order_by` grammar, pure (`fulcrum_core::mlflow_search`).
//! - [`sources`]: where an MLflow version's files come from (tracking server, local in dev).
//!
//! Every call is the API's own: the same bearer token (`MLFLOW_TRACKING_TOKEN`), the same access
//! decisions, the same governed paths. A Fulcrum refusal becomes MLflow's error shape
//! `{"error_code", "message"}` with MLflow's status for that code. Tags and descriptions set
//! through MLflow are annotations (people's notes, each change an `annotated` event), never
//! governance inputs.

pub mod models;
pub mod sources;
pub mod versions;

/// MLflow's filter and `order_by` grammar (pure, in the core so it is fuzzed there).
pub use fulcrum_core::mlflow_search as search;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use fulcrum_core::identity::Action;
use fulcrum_core::lifecycle::{Hold, Stage};
use fulcrum_store::annotations::{Annotations, Annotator, Change, Target};
use fulcrum_store::registrations::{RegStatus, Registration};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiError;
use crate::routes::{parse_model_name, visible_model};

/// The artifact prefix under which versions are served (`…/mlflow-artifacts/artifacts/fulcrum/…`).
pub const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// Longest tag key and value MLflow's own stores accept.
const TAG_KEY: usize = 250;
const TAG_VALUE: usize = 5000;
/// Longest description kept.
const DESCRIPTION: usize = 65_536;

pub fn router() -> Router<AppState> {
    const RM: &str = "/api/2.0/mlflow/registered-models";
    const MV: &str = "/api/2.0/mlflow/model-versions";
    Router::new()
        .route(&format!("{RM}/get"), get(models::get))
        .route(&format!("{RM}/search"), get(models::search))
        .route(&format!("{RM}/create"), post(models::create))
        .route(&format!("{RM}/update"), patch(models::update))
        .route(&format!("{RM}/rename"), post(models::rename))
        .route(&format!("{RM}/delete"), delete(models::delete))
        .route(&format!("{RM}/set-tag"), post(models::set_tag))
        .route(&format!("{RM}/delete-tag"), delete(models::delete_tag))
        .route(
            &format!("{RM}/alias"),
            get(versions::get_by_alias).post(versions::set_alias).delete(versions::delete_alias),
        )
        .route(&format!("{RM}/get-latest-versions"), get(versions::latest_get).post(versions::latest_post))
        .route(&format!("{MV}/create"), post(versions::create))
        .route(&format!("{MV}/get"), get(versions::get))
        .route(&format!("{MV}/search"), get(versions::search))
        .route(&format!("{MV}/update"), patch(versions::update))
        .route(&format!("{MV}/delete"), delete(versions::delete))
        .route(&format!("{MV}/set-tag"), post(versions::set_tag))
        .route(&format!("{MV}/delete-tag"), delete(versions::delete_tag))
        .route(&format!("{MV}/get-download-uri"), get(versions::download_uri))
        .route(&format!("{MV}/transition-stage"), post(versions::transition_stage))
        .route("/api/2.0/mlflow/{*rest}", axum::routing::any(not_supported))
        .route(ARTIFACTS, get(versions::list_artifacts))
        .route(&format!("{ARTIFACTS}/fulcrum/{{model}}/{{version}}/{{*path}}"), get(versions::download_artifact))
        .layer(axum::middleware::map_response(in_mlflow_terms))
}

/// Refusals made before a handler runs (no or a bad token, a body that is not JSON) are
/// problem+json like the rest of the API; MLflow's clients read `error_code`, so they are
/// restated in MLflow's shape with the same status.
async fn in_mlflow_terms(resp: Response) -> Response {
    let problem = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !problem {
        return resp;
    }
    let status = resp.status();
    let Ok(bytes) = axum::body::to_bytes(resp.into_body(), 1 << 16).await else {
        return MlflowError::invalid("the request was refused").into_response();
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let message = format!("{} ({})", v["detail"].as_str().unwrap_or("refused"), v["code"].as_str().unwrap_or("error"));
    let code = match status {
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
        s if s.is_client_error() => "INVALID_PARAMETER_VALUE",
        _ => "INTERNAL_ERROR",
    };
    let status = if status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 404) {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    MlflowError { code, status, message }.into_response()
}

/// An MLflow error: its code, MLflow's status for it, and a message.
#[derive(Debug)]
pub struct MlflowError {
    code: &'static str,
    status: StatusCode,
    message: String,
}

impl MlflowError {
    fn invalid(message: impl Into<String>) -> Self {
        Self { code: "INVALID_PARAMETER_VALUE", status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    fn missing(message: impl Into<String>) -> Self {
        Self { code: "RESOURCE_DOES_NOT_EXIST", status: StatusCode::NOT_FOUND, message: message.into() }
    }

    fn denied(message: impl Into<String>) -> Self {
        Self { code: "PERMISSION_DENIED", status: StatusCode::FORBIDDEN, message: message.into() }
    }

    fn exists(name: &str) -> Self {
        Self {
            code: "RESOURCE_ALREADY_EXISTS",
            status: StatusCode::BAD_REQUEST,
            message: format!("Registered Model (name={name}) already exists."),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ApiError> for MlflowError {
    /// A Fulcrum problem in MLflow's terms; a governed refusal (the lifecycle's or the policy's)
    /// is `PERMISSION_DENIED` with its reasons.
    fn from(e: ApiError) -> Self {
        let reasons: Vec<String> = e.errors.iter().map(|c| format!("{}: {}", c.check, c.detail)).collect();
        let message = if reasons.is_empty() {
            format!("{} ({})", e.detail, e.code)
        } else {
            format!("{} ({}): {}", e.detail, e.code, reasons.join("; "))
        };
        match e.status {
            StatusCode::NOT_FOUND => Self::missing(message),
            StatusCode::UNAUTHORIZED => Self { code: "UNAUTHENTICATED", status: StatusCode::UNAUTHORIZED, message },
            StatusCode::FORBIDDEN | StatusCode::CONFLICT | StatusCode::GONE => Self::denied(message),
            s if s.is_client_error() => Self::invalid(message),
            _ => Self { code: "INTERNAL_ERROR", status: StatusCode::INTERNAL_SERVER_ERROR, message },
        }
    }
}

impl From<fulcrum_store::StoreError> for MlflowError {
    fn from(e: fulcrum_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error_code": self.code, "message": self.message}))).into_response()
    }
}

type Answer = Result<Json<Value>, MlflowError>;

/// What a refused deletion says first; the policy's reason follows.
const IMMUTABLE: &str = "Fulcrum keeps every registered model and version: they are immutable and auditable";

/// A deletion the policy refused, in MLflow's terms, with the policy's reason.
fn refused_deletion(e: MlflowError) -> MlflowError {
    if e.code == "PERMISSION_DENIED" { MlflowError::denied(format!("{IMMUTABLE} ({})", e.message)) } else { e }
}

/// Any other MLflow endpoint (prompts, webhooks, tracking calls sent to the registry): MLflow's
/// own answer for an endpoint it does not have.
async fn not_supported(uri: axum::http::Uri) -> MlflowError {
    MlflowError {
        code: "ENDPOINT_NOT_FOUND",
        status: StatusCode::NOT_FOUND,
        message: format!("{} is not part of Fulcrum's MLflow registry API (docs/mlflow.md)", uri.path()),
    }
}

/// A request's fields: MLflow's client sends GETs as query parameters and every other method
/// (DELETE included) as a JSON body; both are read, the body first.
fn fields<T: DeserializeOwned>(uri: &axum::http::Uri, body: &[u8]) -> Result<T, MlflowError> {
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        return serde_json::from_slice(body).map_err(|e| MlflowError::invalid(format!("request body: {e}")));
    }
    serde_urlencoded::from_str(uri.query().unwrap_or("")).map_err(|e| MlflowError::invalid(format!("request: {e}")))
}

/// The change id an MLflow request may carry in the `Fulcrum-Change-Id` header (MLflow's own
/// messages have no field for it).
fn change_id(headers: &HeaderMap) -> Option<String> {
    headers.get("fulcrum-change-id").and_then(|h| h.to_str().ok()).map(str::to_owned)
}

/// Milliseconds since the epoch of a stored RFC 3339 time (0 when unreadable).
fn millis(t: &str) -> i64 {
    OffsetDateTime::parse(t, &Rfc3339).map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// MLflow's stage for a Fulcrum version: the ladder, and any hold as `Archived`.
pub fn stage_of(stage: Stage, hold: Hold) -> &'static str {
    match (hold, stage) {
        (Hold::Revoked | Hold::Quarantined, _) => "Archived",
        (Hold::None, Stage::Candidate) => "None",
        (Hold::None, Stage::Staging) => "Staging",
        (Hold::None, Stage::Approved) => "Production",
    }
}

/// Tag keys Fulcrum reports itself (read-only through MLflow).
fn reserved(key: &str) -> bool {
    key.starts_with("fulcrum.")
}

fn check_tag(key: &str, value: Option<&str>) -> Result<(), MlflowError> {
    if key.trim().is_empty() || key.len() > TAG_KEY {
        return Err(MlflowError::invalid(format!("a tag key is 1-{TAG_KEY} bytes")));
    }
    if value.is_some_and(|v| v.len() > TAG_VALUE) {
        return Err(MlflowError::invalid(format!("a tag value is at most {TAG_VALUE} bytes")));
    }
    if reserved(key) {
        return Err(MlflowError::denied(format!("tag {key}: fulcrum.* tags are the registry's own facts, read-only")));
    }
    Ok(())
}

/// What a registration records beyond its files, which MLflow's messages have no fields for and
/// so come as version tags: `fulcrum.card.<field>` (the model card's field, e.g. `owner`,
/// `intended_use`, which the shipped policy requires before Approved) and `fulcrum.revalidate_by`
/// (RFC 3339). Both go into the signed release record; other `fulcrum.*` tags are the registry's
/// own facts and are dropped (it states them again).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RegistrationInputs {
    pub card: serde_json::Map<String, Value>,
    pub revalidate_by: Option<String>,
}

/// # Errors
/// A card field name that is empty or not `[a-z0-9_]`.
pub fn registration_inputs<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> Result<RegistrationInputs, String> {
    let mut out = RegistrationInputs::default();
    for (k, v) in tags {
        if let Some(field) = k.strip_prefix("fulcrum.card.") {
            if field.is_empty()
                || field == "mlflow"
                || !field.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!("tag {k}: a model card field is [a-z0-9_]+ (and not mlflow)"));
            }
            out.card.insert(field.to_owned(), Value::String(v.to_owned()));
        } else if k == "fulcrum.revalidate_by" {
            out.revalidate_by = Some(v.to_owned());
        }
    }
    Ok(out)
}

fn check_description(text: &str) -> Result<(), MlflowError> {
    if text.len() > DESCRIPTION {
        return Err(MlflowError::invalid(format!("a description is at most {DESCRIPTION} bytes")));
    }
    Ok(())
}

fn tag_list<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Value> {
    tags.map(|(k, v)| json!({"key": k, "value": v})).collect()
}

/// A Fulcrum version as MLflow's `ModelVersion`.
fn version_json(model: &str, v: &fulcrum_store::VersionRecord, aliases: &[String], notes: &Annotations) -> Value {
    let card = &v.release["model_card"];
    let mut tags = tag_list(notes.tags.iter());
    tags.extend([
        json!({"key": "fulcrum.artifact_digest", "value": v.artifact_digest.to_string()}),
        json!({"key": "fulcrum.stage", "value": v.stage.as_str()}),
        json!({"key": "fulcrum.hold", "value": v.hold.as_str()}),
    ]);
    let created = millis(&v.created_at);
    json!({
        "name": model,
        "version": v.label,
        "creation_timestamp": created,
        "last_updated_timestamp": notes.updated_at.as_deref().map_or(created, |u| millis(u).max(created)),
        "current_stage": stage_of(v.stage, v.hold),
        "description": notes.description.as_deref()
            .or_else(|| card["description"].as_str())
            .or_else(|| card["intended_use"].as_str())
            .unwrap_or_default(),
        "source": card["mlflow"]["source"].as_str().map_or_else(|| format!("fulcrum:{}", v.artifact_digest), str::to_owned),
        "run_id": card["mlflow"]["run_id"].as_str().unwrap_or_default(),
        "status": "READY",
        "user_id": v.publisher,
        "tags": tags,
        "aliases": aliases,
    })
}

/// How long a registration may stay pending before it reads as failed (its replica stopped
/// while copying).
const PENDING_FOR: time::Duration = time::Duration::hours(1);

/// A registration's status as clients should see it now: a pending one past [`PENDING_FOR`]
/// was interrupted.
pub fn effective_status(r: &Registration, now: OffsetDateTime) -> (RegStatus, String) {
    let started = OffsetDateTime::parse(&r.updated_at, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    if r.status == RegStatus::Pending && now - started > PENDING_FOR {
        return (
            RegStatus::Failed,
            "the registration was interrupted (its registry replica stopped); register again".into(),
        );
    }
    (r.status, r.message.clone())
}

/// A registration that is not (yet) a version, as MLflow's `ModelVersion`.
fn registration_json(model: &str, r: &Registration, now: OffsetDateTime) -> Value {
    let (status, message) = effective_status(r, now);
    json!({
        "name": model,
        "version": r.version,
        "creation_timestamp": millis(&r.created_at),
        "last_updated_timestamp": millis(&r.updated_at),
        "current_stage": "None",
        "description": "",
        "source": r.source,
        "run_id": r.run_id,
        "status": status.as_str(),
        "status_message": message,
        "user_id": r.created_by,
        "tags": [],
        "aliases": [],
    })
}

/// The model a caller may act on, by name (an unknown or invisible one reads as MLflow's
/// "not found").
async fn model_for(
    state: &AppState,
    who: &Caller,
    action: Action,
    name: &str,
) -> Result<fulcrum_store::ModelRecord, MlflowError> {
    let n = parse_model_name(name).map_err(|e| MlflowError::invalid(e.detail))?;
    visible_model(state, who, action, &n).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            MlflowError::missing(format!("Registered Model with name={name} not found"))
        } else {
            e.into()
        }
    })
}

/// Every model of the caller's tenant in a domain it may use, by name.
async fn readable_models(state: &AppState, who: &Caller) -> Result<Vec<fulcrum_store::ModelRecord>, MlflowError> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = state.store.list_models(&who.0.tenant, &after, 500).await?;
        let Some(last) = page.last().map(|m| m.name.clone()) else { return Ok(all) };
        all.extend(page.into_iter().filter(|m| who.0.may_use_domain(&m.domain)));
        after = last;
    }
}

async fn visible(state: &AppState, who: &Caller, name: &str) -> Result<fulcrum_store::ModelRecord, MlflowError> {
    model_for(state, who, Action::Read, name).await
}

async fn version_of(
    state: &AppState,
    who: &Caller,
    name: &str,
    version: &str,
) -> Result<(fulcrum_store::ModelRecord, fulcrum_store::VersionRecord), MlflowError> {
    let m = visible(state, who, name).await?;
    let v = state
        .store
        .get_version(m.id, version)
        .await?
        .ok_or_else(|| MlflowError::missing(format!("Model Version (name={name}, version={version}) not found")))?;
    Ok((m, v))
}

/// Apply one annotation change, as `who`, to a model or one of its versions: the role's
/// `annotate`, the model visible to the caller, the version existing; a model's labels are not
/// annotations (they are inputs to the policy and data rules, set when it was created).
async fn annotate(
    state: &AppState,
    who: &Caller,
    name: &str,
    target: Target<'_>,
    change: Change<'_>,
) -> Result<fulcrum_store::ModelRecord, MlflowError> {
    who.require(state, Action::Annotate).await.map_err(MlflowError::from)?;
    let m = model_for(state, who, Action::Annotate, name).await?;
    let key = match change {
        Change::SetTag { key, .. } | Change::DeleteTag { key } => Some(key),
        Change::Describe { .. } => None,
    };
    match target {
        Target::Model => {
            if let Some(key) = key.filter(|k| m.labels.contains_key(*k)) {
                return Err(MlflowError::denied(format!(
                    "tag {key} is one of the model's labels: an input to the policy and data rules, set when the model was created"
                )));
            }
        }
        Target::Version(version) => {
            if state.store.get_version(m.id, version).await?.is_none() {
                return Err(MlflowError::missing(format!("Model Version (name={name}, version={version}) not found")));
            }
        }
    }
    let by = Annotator { tenant: &m.tenant, domain: &m.domain, model: &m.name, model_id: m.id, by: &who.0.subject };
    match state.store.annotate(&by, target, change, state.clock.now()).await {
        Ok(()) => Ok(m),
        Err(fulcrum_store::StoreError::NotFound(_)) => Err(MlflowError::missing(match target {
            Target::Model => format!("Registered model tag with name={name} and key={} not found", key.unwrap_or("")),
            Target::Version(v) => {
                format!("Model version tag with name={name}, version={v} and key={} not found", key.unwrap_or(""))
            }
        })),
        Err(e) => Err(e.into()),
    }
}

/// The aliases that point at `label`.
fn alias_names(aliases: &[fulcrum_store::AliasRecord], label: &str) -> Vec<String> {
    aliases.iter().filter(|a| a.version.as_deref() == Some(label)).map(|a| a.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_map_onto_the_ladder_and_holds_read_as_archived() {
        assert_eq!(stage_of(Stage::Candidate, Hold::None), "None");
        assert_eq!(stage_of(Stage::Staging, Hold::None), "Staging");
        assert_eq!(stage_of(Stage::Approved, Hold::None), "Production");
        assert_eq!(stage_of(Stage::Approved, Hold::Revoked), "Archived");
        assert_eq!(stage_of(Stage::Staging, Hold::Quarantined), "Archived");
    }

    #[test]
    fn governed_refusals_read_as_permission_denied_with_their_reasons() {
        let e: MlflowError = ApiError::conflict("policy_denied", "the policy denies it")
            .with_errors(vec![crate::problem::CheckFailure {
                check: "policy".into(),
                detail: "chg_id_required".into(),
            }])
            .into();
        assert_eq!((e.code, e.status), ("PERMISSION_DENIED", StatusCode::FORBIDDEN));
        assert!(e.message.contains("chg_id_required"), "{}", e.message);
        let e: MlflowError = ApiError::not_found("version").into();
        assert_eq!((e.code, e.status), ("RESOURCE_DOES_NOT_EXIST", StatusCode::NOT_FOUND));
        let e: MlflowError = ApiError::unprocessable("bad", "x").into();
        assert_eq!((e.code, e.status), ("INVALID_PARAMETER_VALUE", StatusCode::BAD_REQUEST));
    }

    #[test]
    fn a_pending_registration_left_behind_reads_as_failed() {
        let now = OffsetDateTime::now_utc();
        let at = |t: OffsetDateTime| t.format(&Rfc3339).unwrap();
        let r = Registration {
            model_id: 1,
            version: "3".into(),
            source: "runs:/r/model".into(),
            run_id: "r".into(),
            status: RegStatus::Pending,
            message: String::new(),
            created_by: "ci".into(),
            created_at: at(now),
            updated_at: at(now),
        };
        assert_eq!(effective_status(&r, now).0, RegStatus::Pending);
        let old = Registration { updated_at: at(now - time::Duration::hours(2)), ..r.clone() };
        let (status, why) = effective_status(&old, now);
        assert_eq!(status, RegStatus::Failed);
        assert!(why.contains("interrupted"));
        let failed = Registration { status: RegStatus::Failed, message: "gate".into(), ..old };
        assert_eq!(effective_status(&failed, now), (RegStatus::Failed, "gate".into()));
    }

    #[test]
    fn card_fields_and_revalidation_ride_in_reserved_tags() {
        let tags = [
            ("fulcrum.card.owner", "fraud-team"),
            ("fulcrum.card.intended_use", "card fraud scoring"),
            ("fulcrum.revalidate_by", "2027-06-01T00:00:00Z"),
            ("fulcrum.artifact_digest", "sha256:00"),
            ("team", "risk"),
        ];
        let got = registration_inputs(tags.into_iter()).unwrap();
        assert_eq!(got.card["owner"], "fraud-team");
        assert_eq!(got.card["intended_use"], "card fraud scoring");
        assert_eq!(got.card.len(), 2, "facts and ordinary tags are not card fields");
        assert_eq!(got.revalidate_by.as_deref(), Some("2027-06-01T00:00:00Z"));
        for bad in ["fulcrum.card.", "fulcrum.card.Owner", "fulcrum.card.mlflow", "fulcrum.card.a-b"] {
            assert!(registration_inputs([(bad, "x")].into_iter()).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_bounded_and_fulcrum_keys_are_read_only() {
        assert!(check_tag("team", Some("risk")).is_ok());
        assert_eq!(check_tag("", Some("x")).unwrap_err().code, "INVALID_PARAMETER_VALUE");
        assert_eq!(check_tag(&"k".repeat(251), None).unwrap_err().code, "INVALID_PARAMETER_VALUE");
        assert_eq!(check_tag("k", Some(&"v".repeat(5001))).unwrap_err().code, "INVALID_PARAMETER_VALUE");
        assert_eq!(check_tag("fulcrum.stage", Some("Approved")).unwrap_err().code, "PERMISSION_DENIED");
    }
}
