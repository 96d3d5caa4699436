//! The MLflow Model Registry REST API (`/api/2.0/mlflow/…`) over Fulcrum's registry, so the
//! official `mlflow` client works with `MLFLOW_REGISTRY_URI` pointed here — with every governed
//! rule still in force (docs/mlflow.md).
//!
//! **This is a first slice (issue 19).** Registering a version from an MLflow source (its files
//! copied from the tracking server and hashed here, then the release gate), reading (registered
//! models, versions, search with name and tag filters, aliases, latest versions per stage),
//! creating a registered model, governed alias moves and stage transitions, the download URI and
//! the artifact listing/download a client loads `models:/name@alias` through. Tags, updates and
//! the import command are not here yet; deletes are refused with `PERMISSION_DENIED` (versions
//! are immutable and auditable).
//!
//! Every call is the API's own: the same bearer token (`MLFLOW_TRACKING_TOKEN`), the same access
//! decisions, the same governed alias move (environment rule, anti-downgrade). A Fulcrum refusal
//! becomes MLflow's error shape `{"error_code", "message"}` with MLflow's status for that code.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fulcrum_core::identity::Action;
use fulcrum_core::lifecycle::{Hold, Stage};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiError;
use crate::routes::{ApiJson, parse_model_name, visible_model};

/// The artifact prefix under which versions are served (`…/mlflow-artifacts/artifacts/fulcrum/…`).
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/2.0/mlflow/registered-models/get", get(get_registered_model))
        .route("/api/2.0/mlflow/registered-models/search", get(search_registered_models))
        .route("/api/2.0/mlflow/registered-models/create", axum::routing::post(create_registered_model))
        .route("/api/2.0/mlflow/registered-models/delete", axum::routing::delete(refuse_delete))
        .route("/api/2.0/mlflow/registered-models/alias", get(get_by_alias).post(set_alias).delete(delete_alias))
        .route("/api/2.0/mlflow/model-versions/create", axum::routing::post(create_model_version))
        .route("/api/2.0/mlflow/model-versions/get", get(get_model_version))
        .route("/api/2.0/mlflow/model-versions/search", get(search_model_versions))
        .route("/api/2.0/mlflow/model-versions/get-download-uri", get(download_uri))
        .route("/api/2.0/mlflow/model-versions/delete", axum::routing::delete(refuse_delete))
        .route("/api/2.0/mlflow/model-versions/transition-stage", axum::routing::post(transition_stage))
        .route(
            "/api/2.0/mlflow/registered-models/get-latest-versions",
            get(latest_versions_get).post(latest_versions_post),
        )
        .route(ARTIFACTS, get(list_artifacts))
        .route(&format!("{ARTIFACTS}/fulcrum/{{model}}/{{version}}/{{*path}}"), get(download_artifact))
}

/// An MLflow error: its code, MLflow's status for it, and a message.
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
}

impl From<ApiError> for MlflowError {
    /// A Fulcrum problem in MLflow's terms; a governed refusal (the lifecycle's or the policy's)
    /// is `PERMISSION_DENIED` with its reasons.
    fn from(e: ApiError) -> Self {
        let reasons: Vec<String> = e.errors.iter().map(|c| c.detail.clone()).collect();
        let message = if reasons.is_empty() {
            format!("{} ({})", e.detail, e.code)
        } else {
            format!("{} ({}): {}", e.detail, e.code, reasons.join(", "))
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

fn version_json(model: &str, v: &fulcrum_store::VersionRecord, aliases: &[String]) -> Value {
    json!({
        "name": model,
        "version": v.label,
        "creation_timestamp": millis(&v.created_at),
        "last_updated_timestamp": millis(&v.created_at),
        "current_stage": stage_of(v.stage, v.hold),
        "description": v.release["model_card"]["description"]
            .as_str()
            .or_else(|| v.release["model_card"]["intended_use"].as_str())
            .unwrap_or_default(),
        "source": v.release["model_card"]["mlflow"]["source"]
            .as_str()
            .map_or_else(|| format!("fulcrum:{}", v.artifact_digest), str::to_owned),
        "run_id": v.release["model_card"]["mlflow"]["run_id"].as_str().unwrap_or_default(),
        "status": "READY",
        "user_id": v.publisher,
        "tags": [
            {"key": "fulcrum.artifact_digest", "value": v.artifact_digest.to_string()},
            {"key": "fulcrum.stage", "value": v.stage.as_str()},
            {"key": "fulcrum.hold", "value": v.hold.as_str()},
        ],
        "aliases": aliases,
    })
}

async fn model_json(state: &AppState, m: &fulcrum_store::ModelRecord) -> Result<Value, MlflowError> {
    let aliases = state.store.aliases_of(m.id).await?;
    let latest = state.store.latest_versions(m.id, 1).await?;
    let updated = latest.first().map_or_else(|| millis(&m.created_at), |v| millis(&v.created_at));
    Ok(json!({
        "name": m.name,
        "creation_timestamp": millis(&m.created_at),
        "last_updated_timestamp": updated,
        "description": m.description,
        "tags": m.labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "aliases": aliases
            .iter()
            .filter_map(|a| a.version.as_ref().map(|v| json!({"alias": a.name, "version": v})))
            .collect::<Vec<_>>(),
        "latest_versions": latest.iter().map(|v| version_json(&m.name, v, &[])).collect::<Vec<_>>(),
    }))
}

async fn visible(state: &AppState, who: &Caller, name: &str) -> Result<fulcrum_store::ModelRecord, MlflowError> {
    let n = parse_model_name(name).map_err(|e| MlflowError::invalid(e.detail))?;
    visible_model(state, who, Action::Read, &n).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            MlflowError::missing(format!("Registered Model with name={name} not found"))
        } else {
            e.into()
        }
    })
}

#[derive(Deserialize)]
pub struct NameQuery {
    #[serde(default)]
    name: String,
}

async fn get_registered_model(State(state): State<AppState>, who: Caller, Query(q): Query<NameQuery>) -> Answer {
    let m = visible(&state, &who, &q.name).await?;
    Ok(Json(json!({"registered_model": model_json(&state, &m).await?})))
}

/// The part of MLflow's search grammar this slice understands: clauses joined by `AND`, each
/// `name` or a tag (`tags.k`, `tag.k`, backticks allowed) compared with `=`, `!=`, `LIKE` or
/// `ILIKE` to a quoted value. (The client itself appends ``tag.`mlflow.prompt.is_prompt` !=
/// 'true'`` to every model search.)
#[derive(Debug, PartialEq, Eq)]
pub struct Filter(Vec<Clause>);

#[derive(Debug, PartialEq, Eq)]
pub struct Clause {
    /// `None`: the name; `Some(k)`: the tag `k`.
    tag: Option<String>,
    op: Op,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Like,
    ILike,
}

/// Split on `AND` outside quotes.
fn clauses(f: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote) = (Vec::new(), String::new(), None::<char>);
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' || c == '`' => quote = Some(c),
            None => {
                let rest: String = chars[i..].iter().take(5).collect();
                if rest.eq_ignore_ascii_case(" and ") {
                    out.push(std::mem::take(&mut cur));
                    i += 5;
                    continue;
                }
            }
        }
        cur.push(c);
        i += 1;
    }
    out.push(cur);
    out
}

impl Filter {
    /// # Errors
    /// Anything else, named.
    pub fn parse(filter: &str) -> Result<Self, String> {
        let f = filter.trim();
        if f.is_empty() {
            return Ok(Self(vec![]));
        }
        clauses(f).iter().map(|c| Clause::parse(c.trim())).collect::<Result<_, _>>().map(Self)
    }

    /// The filter on `name = '…'` alone, if that is all it says (a version search).
    pub fn name_only(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Clause { tag: None, op: Op::Eq, value }] => Some(value),
            _ => None,
        }
    }

    pub fn matches(&self, name: &str, tags: &std::collections::BTreeMap<String, String>) -> bool {
        self.0.iter().all(|c| {
            let have = match &c.tag {
                None => Some(name),
                Some(k) => tags.get(k).map(String::as_str),
            };
            match (c.op, have) {
                (Op::Eq, Some(h)) => h == c.value,
                (Op::Ne, h) => h != Some(c.value.as_str()),
                (Op::Like, Some(h)) => like(&c.value, h),
                (Op::ILike, Some(h)) => like(&c.value.to_lowercase(), &h.to_lowercase()),
                (_, None) => false,
            }
        })
    }
}

fn unquote(s: &str, q: char) -> Option<&str> {
    s.strip_prefix(q)?.strip_suffix(q)
}

impl Clause {
    fn parse(c: &str) -> Result<Self, String> {
        let unsupported = || {
            format!("unsupported filter clause {c:?}: name or tags.<key> with =, !=, LIKE or ILIKE and a quoted value")
        };
        // The identifier: up to the first space or operator character, backticks kept together.
        let mut end = 0;
        let mut in_tick = false;
        for (i, ch) in c.char_indices() {
            if ch == '`' {
                in_tick = !in_tick;
            } else if !in_tick && (ch.is_whitespace() || ch == '=' || ch == '!') {
                break;
            }
            end = i + ch.len_utf8();
        }
        let ident = c[..end].replace('`', "");
        let rest = c[end..].trim_start();
        let tag = match ident.as_str() {
            "name" => None,
            i => Some(i.strip_prefix("tags.").or_else(|| i.strip_prefix("tag.")).ok_or_else(unsupported)?.to_owned()),
        };
        let (op, value) = if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case("ILIKE") {
            (Op::ILike, &rest[5..])
        } else if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case("LIKE") {
            (Op::Like, &rest[4..])
        } else {
            return Err(unsupported());
        };
        let v = value.trim();
        let value = unquote(v, '\'').or_else(|| unquote(v, '"')).ok_or_else(unsupported)?.to_owned();
        Ok(Self { tag, op, value })
    }
}

/// SQL `LIKE`: `%` any run, `_` one character.
fn like(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    // reach[j]: the first i pattern characters can match the first j text characters.
    let mut reach = vec![false; t.len() + 1];
    reach[0] = true;
    for c in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            match c {
                '%' => next[j] = reach[j] || (j > 0 && next[j - 1]),
                '_' => next[j] = j > 0 && reach[j - 1],
                c => next[j] = j > 0 && reach[j - 1] && t[j - 1] == *c,
            }
        }
        reach = next;
    }
    reach[t.len()]
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    filter: String,
    max_results: Option<u32>,
    #[serde(default)]
    page_token: String,
}

/// Registered models of the caller's tenant and domains matching the filter, by name, paged
/// (the page token is the last name of the previous page).
async fn search_registered_models(State(state): State<AppState>, who: Caller, Query(q): Query<SearchQuery>) -> Answer {
    who.require(&state, Action::Read).await.map_err(MlflowError::from)?;
    let filter = Filter::parse(&q.filter).map_err(MlflowError::invalid)?;
    let max = q.max_results.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(MlflowError::invalid("max_results must be between 1 and 1000"));
    }
    let mut out = Vec::new();
    let mut after = q.page_token.clone();
    let mut next = None;
    'pages: loop {
        let page = state.store.list_models(&who.0.tenant, &after, 500).await?;
        let Some(last) = page.last().map(|m| m.name.clone()) else { break };
        for m in page {
            if who.0.may_use_domain(&m.domain) && filter.matches(&m.name, &m.labels) {
                if out.len() == max as usize {
                    next = Some(after.clone());
                    break 'pages;
                }
                after.clone_from(&m.name);
                out.push(model_json(&state, &m).await?);
            }
        }
        after = last;
    }
    let mut body = json!({"registered_models": out});
    if let Some(token) = next {
        body["next_page_token"] = json!(token);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct CreateModel {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
pub struct Tag {
    key: String,
    value: String,
}

/// Create a registered model: a Fulcrum model in the domain named by the tag `fulcrum.domain`,
/// or the caller's own domain when it has exactly one.
async fn create_registered_model(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(b): ApiJson<CreateModel>,
) -> Answer {
    // What MLflow answers first (its `register_model` relies on it): the name is taken.
    if visible(&state, &who, &b.name).await.is_ok() {
        return Err(MlflowError::exists(&b.name));
    }
    let domain = match b.tags.iter().find(|t| t.key == "fulcrum.domain") {
        Some(t) => t.value.clone(),
        None if who.0.domain != "*" => who.0.domain.clone(),
        None => return Err(MlflowError::invalid("name the model's domain with the tag fulcrum.domain")),
    };
    let labels =
        b.tags.iter().filter(|t| !t.key.starts_with("fulcrum.")).map(|t| (t.key.clone(), t.value.clone())).collect();
    let body = crate::dto::CreateModel {
        name: b.name.clone(),
        domain,
        description: b.description,
        owners: vec![],
        labels,
        tenant: None,
    };
    match crate::routes::models::create_model(State(state.clone()), who.clone(), ApiJson(body)).await {
        Ok(_) => {}
        Err(e) if e.status == StatusCode::CONFLICT => return Err(MlflowError::exists(&b.name)),
        Err(e) => return Err(e.into()),
    }
    let m = visible(&state, &who, &b.name).await?;
    Ok(Json(json!({"registered_model": model_json(&state, &m).await?})))
}

async fn refuse_delete() -> MlflowError {
    MlflowError::denied(
        "Fulcrum keeps every registered model and version: they are immutable and auditable (retire a version by revoking it)",
    )
}

#[derive(Deserialize)]
pub struct VersionQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
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

/// The aliases that point at `label`.
fn alias_names(aliases: &[fulcrum_store::AliasRecord], label: &str) -> Vec<String> {
    aliases.iter().filter(|a| a.version.as_deref() == Some(label)).map(|a| a.name.clone()).collect()
}

async fn aliases_naming(state: &AppState, model_id: i64, label: &str) -> Result<Vec<String>, MlflowError> {
    Ok(alias_names(&state.store.aliases_of(model_id).await?, label))
}

async fn get_model_version(State(state): State<AppState>, who: Caller, Query(q): Query<VersionQuery>) -> Answer {
    let (m, v) = version_of(&state, &who, &q.name, &q.version).await?;
    let aliases = aliases_naming(&state, m.id, &v.label).await?;
    Ok(Json(json!({"model_version": version_json(&m.name, &v, &aliases)})))
}

/// Versions of one model (`name = 'x'`): the search this slice supports.
async fn search_model_versions(State(state): State<AppState>, who: Caller, Query(q): Query<SearchQuery>) -> Answer {
    let filter = Filter::parse(&q.filter).map_err(MlflowError::invalid)?;
    let Some(name) = filter.name_only() else {
        return Err(MlflowError::invalid("search model versions with the filter name = '…'"));
    };
    let m = visible(&state, &who, name).await?;
    let max = q.max_results.unwrap_or(1000).clamp(1, 10_000);
    let after: u64 = if q.page_token.is_empty() {
        0
    } else {
        q.page_token.parse().map_err(|_| MlflowError::invalid("page_token is not one this registry gave"))?
    };
    let versions = state.store.list_versions(m.id, after, max + 1).await?;
    let aliases = state.store.aliases_of(m.id).await?;
    let more = versions.len() > max as usize;
    let shown: Vec<Value> = versions
        .iter()
        .take(max as usize)
        .map(|v| version_json(&m.name, v, &alias_names(&aliases, &v.label)))
        .collect();
    let mut body = json!({"model_versions": shown});
    if more {
        body["next_page_token"] = json!(versions[max as usize - 1].seq.to_string());
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct CreateVersion {
    name: String,
    source: String,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    description: String,
}

/// Most files one version imported from MLflow may have (each file is bounded by the blob limit).
const IMPORT_FILES: usize = 10_000;

/// The tracking server's answer to a GET (query parameters encoded here), as JSON.
async fn tracking_get(http: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
    let r = http
        .get(url)
        .query(query)
        .send()
        .await
        .map_err(|e| MlflowError::invalid(format!("the MLflow tracking server: {e}")))?;
    if !r.status().is_success() {
        return Err(MlflowError::invalid(format!("the MLflow tracking server answered {} for {url}", r.status())));
    }
    r.json().await.map_err(|e| MlflowError::invalid(format!("the MLflow tracking server's answer: {e}")))
}

/// The artifact path (under the tracking server's `mlflow-artifacts` root) a source names:
/// `models:/m-<id>` (a logged model, MLflow 3), `runs:/<run>/<path>`, or `mlflow-artifacts:/<path>`.
async fn artifact_root(http: &reqwest::Client, tracking: &str, source: &str) -> Result<String, MlflowError> {
    let uri = if let Some(id) = source.strip_prefix("models:/").filter(|id| id.starts_with("m-") && !id.contains('/')) {
        let id = id
            .strip_prefix("m-")
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric()))
            .ok_or_else(|| MlflowError::invalid(format!("source {source:?} names no logged model")))?;
        let v = tracking_get(http, &format!("{tracking}/api/2.0/mlflow/logged-models/m-{id}"), &[]).await?;
        v["model"]["info"]["artifact_uri"].as_str().unwrap_or_default().to_owned()
    } else if let Some(rest) = source.strip_prefix("runs:/") {
        let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
        let v = tracking_get(http, &format!("{tracking}/api/2.0/mlflow/runs/get"), &[("run_id", run)]).await?;
        format!("{}/{path}", v["run"]["info"]["artifact_uri"].as_str().unwrap_or_default())
    } else {
        source.to_owned()
    };
    let rel = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        MlflowError::invalid(format!(
            "source {source:?}: only models:/, runs:/ and mlflow-artifacts:/ sources are imported"
        ))
    })?;
    let rel = rel.trim_start_matches('/').trim_end_matches('/');
    if rel.split('/').any(|p| p == ".." || p.is_empty()) {
        return Err(MlflowError::invalid(format!("source {source:?} names no artifact path")));
    }
    Ok(rel.to_owned())
}

/// Copy every file under `root` on the tracking server into the blob store: (path, size, digest).
async fn import_files(
    state: &AppState,
    who: &Caller,
    http: &reqwest::Client,
    tracking: &str,
    root: &str,
) -> Result<Vec<crate::dto::FileDto>, MlflowError> {
    let mut out = Vec::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let path = if dir.is_empty() { root.to_owned() } else { format!("{root}/{dir}") };
        let listing =
            tracking_get(http, &format!("{tracking}/api/2.0/mlflow-artifacts/artifacts"), &[("path", &path)]).await?;
        for f in listing["files"].as_array().cloned().unwrap_or_default() {
            let name = f["path"].as_str().unwrap_or_default();
            if name.is_empty() || name.contains('/') || name == ".." || name == "." {
                return Err(MlflowError::invalid(format!("the tracking server listed an unsafe path {name:?}")));
            }
            let rel = if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") };
            if f["is_dir"].as_bool() == Some(true) {
                dirs.push(rel);
                continue;
            }
            if out.len() == IMPORT_FILES {
                return Err(MlflowError::invalid(format!("more than {IMPORT_FILES} files under the source")));
            }
            let mut url = reqwest::Url::parse(&format!("{tracking}/api/2.0/mlflow-artifacts/artifacts"))
                .map_err(|e| MlflowError::invalid(format!("--mlflow-tracking-uri: {e}")))?;
            url.path_segments_mut()
                .map_err(|()| MlflowError::invalid("--mlflow-tracking-uri cannot take a path"))?
                .extend(root.split('/').chain(rel.split('/')));
            let mut r = http
                .get(url)
                .send()
                .await
                .map_err(|e| MlflowError::invalid(format!("the MLflow tracking server: {e}")))?;
            if !r.status().is_success() {
                return Err(MlflowError::invalid(format!("the tracking server answered {} for {rel}", r.status())));
            }
            let mut w = state.blobs.writer(state.config.max_blob_bytes).await.map_err(ApiError::from)?;
            while let Some(chunk) = r.chunk().await.map_err(|e| MlflowError::invalid(format!("reading {rel}: {e}")))? {
                w.write(&chunk).await.map_err(ApiError::from)?;
            }
            let put = w.finish(None, None).await.map_err(ApiError::from)?;
            state.store.grant_blob(&who.0.tenant, &put.digest).await?;
            out.push(crate::dto::FileDto { path: rel, size: put.size, digest: put.digest.to_string() });
        }
    }
    Ok(out)
}

/// Register a version from an MLflow source: its files are copied from the tracking server into
/// the registry (digests computed here), the release gate runs, and the version is a Candidate
/// numbered after the model's highest numeric version. Where it came from is kept in its model
/// card (`mlflow`: source, run id) and reads back as the version's `source`.
async fn create_model_version(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(b): ApiJson<CreateVersion>,
) -> Answer {
    let tracking = state.config.mlflow_tracking_uri.clone().ok_or_else(|| {
        MlflowError::invalid("this registry names no MLflow tracking server (fulcrum serve --mlflow-tracking-uri)")
    })?;
    let tracking = tracking.trim_end_matches('/').to_owned();
    who.require(&state, Action::RegisterVersion).await.map_err(MlflowError::from)?;
    let m = visible(&state, &who, &b.name).await?;
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| MlflowError::invalid(format!("HTTP client: {e}")))?;
    let root = artifact_root(&http, &tracking, &b.source).await?;
    let files = import_files(&state, &who, &http, &tracking, &root).await?;
    if files.is_empty() {
        return Err(MlflowError::invalid(format!("no files under the source {}", b.source)));
    }
    let mut next = 1u64;
    let mut after = 0;
    loop {
        let page = state.store.list_versions(m.id, after, 500).await?;
        let Some(last) = page.last().map(|v| v.seq) else { break };
        next = page.iter().filter_map(|v| v.label.parse::<u64>().ok()).fold(next, |n, l| n.max(l + 1));
        after = last;
    }
    let mut card = serde_json::Map::new();
    card.insert("mlflow".into(), json!({"source": b.source, "run_id": b.run_id}));
    if !b.description.is_empty() {
        card.insert("description".into(), json!(b.description));
    }
    let body = crate::dto::RegisterVersion {
        version: next.to_string(),
        files,
        sbom: None,
        attestations: vec![],
        signatures: vec![],
        reference_profile: None,
        model_card: Some(card),
        dataset_snapshots: vec![],
        revalidate_by: None,
        chg_id: None,
    };
    let registered =
        crate::routes::models::register_version(State(state.clone()), who.clone(), Path(m.name.clone()), ApiJson(body));
    let _created = registered.await.map_err(MlflowError::from)?;
    let (m, v) = version_of(&state, &who, &m.name, &next.to_string()).await?;
    Ok(Json(json!({"model_version": version_json(&m.name, &v, &[])})))
}

#[derive(Deserialize)]
pub struct Transition {
    name: String,
    version: String,
    stage: String,
}

/// A stage transition is a governed promotion, one rung at a time: `Staging`, then `Production`
/// (= Approved: four-eyes and the policy's promotion gate; a change id may ride in the
/// `Fulcrum-Change-Id` header). Versions never go down the ladder; archiving is a revocation,
/// which needs a reason and an incident id MLflow's request cannot carry.
async fn transition_stage(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    ApiJson(b): ApiJson<Transition>,
) -> Answer {
    let to = match b.stage.to_ascii_lowercase().as_str() {
        "staging" => "Staging",
        "production" => "Approved",
        "archived" => {
            return Err(MlflowError::denied(
                "archiving is a revocation in Fulcrum: it needs a reason and an incident id (fulcrum version revoke)",
            ));
        }
        "none" => return Err(MlflowError::denied("versions never go down the ladder (no_demotion)")),
        other => {
            return Err(MlflowError::invalid(format!(
                "unknown stage {other:?}: None, Staging, Production or Archived"
            )));
        }
    };
    let chg_id = change_id(&headers);
    let body = crate::dto::PromoteBody { to: to.to_owned(), chg_id };
    let promoted = crate::routes::models::promote(
        State(state.clone()),
        who.clone(),
        Path((b.name.clone(), b.version.clone())),
        ApiJson(body),
    );
    let _promoted = promoted.await.map_err(MlflowError::from)?;
    let (m, v) = version_of(&state, &who, &b.name, &b.version).await?;
    let aliases = aliases_naming(&state, m.id, &v.label).await?;
    Ok(Json(json!({"model_version": version_json(&m.name, &v, &aliases)})))
}

#[derive(Deserialize)]
pub struct Latest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stages: Vec<String>,
}

/// The newest version per MLflow stage (all stages, or those asked for).
async fn latest_versions(state: &AppState, who: &Caller, q: Latest) -> Answer {
    let m = visible(state, who, &q.name).await?;
    let aliases = state.store.aliases_of(m.id).await?;
    let mut newest: std::collections::BTreeMap<&'static str, fulcrum_store::VersionRecord> = Default::default();
    let mut after = 0;
    loop {
        let page = state.store.list_versions(m.id, after, 500).await?;
        let Some(last) = page.last().map(|v| v.seq) else { break };
        for v in page {
            newest.insert(stage_of(v.stage, v.hold), v);
        }
        after = last;
    }
    let wanted: Vec<String> = q.stages.iter().map(|s| s.to_ascii_lowercase()).collect();
    let out: Vec<Value> = newest
        .iter()
        .filter(|(stage, _)| wanted.is_empty() || wanted.contains(&stage.to_ascii_lowercase()))
        .map(|(_, v)| version_json(&m.name, v, &alias_names(&aliases, &v.label)))
        .collect();
    Ok(Json(json!({"model_versions": out})))
}

async fn latest_versions_post(State(state): State<AppState>, who: Caller, ApiJson(q): ApiJson<Latest>) -> Answer {
    latest_versions(&state, &who, q).await
}

/// GET carries the request as query parameters (`stages` repeated).
async fn latest_versions_get(State(state): State<AppState>, who: Caller, uri: axum::http::Uri) -> Answer {
    let mut q = Latest { name: String::new(), stages: vec![] };
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "name" => q.name = v.into_owned(),
            "stages" => q.stages.push(v.into_owned()),
            _ => {}
        }
    }
    latest_versions(&state, &who, q).await
}

#[derive(Deserialize)]
pub struct AliasQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    alias: String,
}

async fn get_by_alias(State(state): State<AppState>, who: Caller, Query(q): Query<AliasQuery>) -> Answer {
    let m = visible(&state, &who, &q.name).await?;
    let a = state
        .store
        .aliases_of(m.id)
        .await?
        .into_iter()
        .find(|a| a.name == q.alias)
        .and_then(|a| a.version)
        .ok_or_else(|| MlflowError::missing(format!("Registered model alias {} not found.", q.alias)))?;
    let (m, v) = version_of(&state, &who, &m.name, &a).await?;
    let aliases = aliases_naming(&state, m.id, &v.label).await?;
    Ok(Json(json!({"model_version": version_json(&m.name, &v, &aliases)})))
}

#[derive(Deserialize)]
pub struct SetAlias {
    name: String,
    alias: String,
    version: String,
}

/// A governed alias move: the policy's environment rule, the lifecycle's anti-downgrade. A
/// change id may come in the `Fulcrum-Change-Id` header (MLflow's request has no field for it).
async fn set_alias(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SetAlias>,
) -> Response {
    let chg_id = change_id(&headers);
    let body = crate::dto::SetAliasBody { version: b.version, chg_id, allow_downgrade: false, env: None };
    match crate::routes::models::set_alias(State(state), who, Path((b.name, b.alias)), ApiJson(body)).await {
        Ok(_) => Json(json!({})).into_response(),
        Err(e) => MlflowError::from(e).into_response(),
    }
}

async fn delete_alias(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    Query(q): Query<AliasQuery>,
) -> Response {
    let chg_id = change_id(&headers);
    let body = crate::dto::ChangeBody { chg_id };
    let deleted = crate::routes::models::delete_alias(
        State(state),
        who,
        Path((q.name, q.alias)),
        crate::routes::ApiQuery(body),
        axum::body::Bytes::new(),
    )
    .await;
    match deleted {
        Ok(_) => Json(json!({})).into_response(),
        Err(e) => MlflowError::from(e).into_response(),
    }
}

/// Where the client downloads a version from: this registry's own artifact endpoint, which
/// serves only what the caller may load now.
async fn download_uri(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    Query(q): Query<VersionQuery>,
) -> Answer {
    let (m, v) = version_of(&state, &who, &q.name, &q.version).await?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let scheme = if state.config.https { "https" } else { "http" };
    Ok(Json(json!({"artifact_uri": format!("{scheme}://{host}{ARTIFACTS}/fulcrum/{}/{}", m.name, v.label)})))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    path: String,
}

/// MLflow's artifact listing, for `fulcrum/<model>/<version>[/<dir>]`: the version's files from
/// its manifest, for whoever may read the version (as its API record shows them); the download
/// gate decides each file's bytes.
async fn list_artifacts(State(state): State<AppState>, who: Caller, Query(q): Query<ListQuery>) -> Answer {
    let mut parts = q.path.trim_matches('/').splitn(4, '/');
    let (Some("fulcrum"), Some(model), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(MlflowError::missing(format!("no artifacts at {}", q.path)));
    };
    let dir = parts.next().unwrap_or("").trim_matches('/');
    let (_, v) = version_of(&state, &who, model, version).await?;
    let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    let mut files: Vec<Value> = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for f in &v.files {
        let Some(rest) = f.path.strip_prefix(&prefix) else { continue };
        match rest.split_once('/') {
            Some((d, _)) => {
                if !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_owned());
                }
            }
            None => files.push(json!({"path": rest, "is_dir": false, "file_size": f.size})),
        }
    }
    files.extend(dirs.into_iter().map(|d| json!({"path": d, "is_dir": true})));
    Ok(Json(json!({"files": files})))
}

/// One file of a version, through the download gate (hashed on the way out).
async fn download_artifact(
    State(state): State<AppState>,
    who: Caller,
    Path((model, version, path)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let found = async {
        let (_, v) = version_of(&state, &who, &model, &version).await?;
        let f =
            v.files.iter().find(|f| f.path == path).ok_or_else(|| MlflowError::missing(format!("no file {path}")))?;
        Ok::<_, MlflowError>(f.digest)
    }
    .await;
    let digest = match found {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let q = crate::routes::ApiQuery(crate::routes::blobs::BlobQuery { forensic: None });
    match crate::routes::blobs::get_blob(State(state), who, Path(digest.to_string()), q, headers).await {
        Ok(r) => r,
        Err(e) => MlflowError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_mlflow_clients_send() {
        let tags: std::collections::BTreeMap<String, String> = [("team".to_owned(), "risk".to_owned())].into();
        let none = std::collections::BTreeMap::new();
        let f = |s: &str| Filter::parse(s).unwrap();
        assert!(f("").matches("x", &none));
        assert_eq!(f("name = 'fraud'").name_only(), Some("fraud"));
        assert_eq!(f("name='fraud'").name_only(), Some("fraud"));
        assert!(f("name LIKE 'fra%'").matches("fraud", &none) && !f("name LIKE 'fra%'").matches("Fraud", &none));
        assert!(f("name ILIKE '%AUD'").matches("fraud", &none) && !f("name ILIKE '%AUD'").matches("frauds", &none));
        assert!(f("name like 'f_aud'").matches("fraud", &none));
        // What the client sends for every model search.
        let client = f("name LIKE 'fra%' AND tag.`mlflow.prompt.is_prompt` != 'true'");
        assert!(client.matches("fraud", &none) && !client.matches("churn", &none));
        assert!(client.name_only().is_none());
        assert!(f("tags.team = 'risk'").matches("any", &tags) && !f("tags.team = 'risk'").matches("any", &none));
        assert!(f("`tags`.`team` != 'ops' and name = 'a'").matches("a", &tags));
        assert!(f("name = 'a AND b'").matches("a AND b", &none), "AND inside quotes is a value");
        for bad in ["run_id = 'x'", "name = fraud", "name > 'x'", "name", "tags.k IN ('a')"] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

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
}
