//! Model versions through MLflow's API: registration from an MLflow source, reads and search,
//! descriptions and tags, governed stage transitions and alias moves, and the artifact endpoints
//! a client downloads a version through.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use fulcrum_core::identity::Action;
use fulcrum_store::annotations::{Annotations, Annotator, Change, Target};
use fulcrum_store::registrations::RegStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use super::models::SearchParams;
use super::search::{Filter, OrderBy, Over, SortKey, Subject, offset_of};
use super::sources::{self, Source};
use super::{
    ARTIFACTS, Answer, MlflowError, alias_names, annotate, change_id, check_description, check_tag, model_for,
    registration_json, stage_of, version_json, version_of, visible,
};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiError;
use crate::routes::ApiJson;
use crate::routes::blobs::store_stream;
use futures_util::TryStreamExt as _;

#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Deserialize)]
pub struct VersionQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

/// One version (or a registration that is not a version yet), with its aliases and notes.
async fn one(state: &AppState, who: &Caller, name: &str, version: &str) -> Answer {
    let m = visible(state, who, name).await?;
    if let Some(v) = state.store.get_version(m.id, version).await? {
        let aliases = alias_names(&state.store.aliases_of(m.id).await?, &v.label);
        let notes = state.store.annotations(m.id, Target::Version(&v.label)).await?;
        return Ok(Json(json!({"model_version": version_json(&m.name, &v, &aliases, &notes)})));
    }
    match state.store.mlflow_registration(m.id, version).await? {
        Some(r) => Ok(Json(json!({"model_version": super::registration_json(&m.name, &r, state.clock.now())}))),
        None => Err(MlflowError::missing(format!("Model Version (name={name}, version={version}) not found"))),
    }
}

pub(super) async fn get(State(state): State<AppState>, who: Caller, Query(q): Query<VersionQuery>) -> Answer {
    one(&state, &who, &q.name, &q.version).await
}

/// Versions matching the filter across the models the caller may read (one model when the
/// filter pins `name = '…'`), ordered as asked, a page at a time. Registrations that did not
/// become versions are listed too, as MLflow lists failed ones.
pub(super) async fn search(State(state): State<AppState>, who: Caller, uri: Uri) -> Answer {
    who.require(&state, Action::Read).await.map_err(MlflowError::from)?;
    let q = SearchParams::from_uri(&uri)?;
    let filter = Filter::parse(&q.filter, Over::Versions).map_err(MlflowError::invalid)?;
    let order = OrderBy::parse(&q.order_by, Over::Versions).map_err(MlflowError::invalid)?;
    let max = q.max_results.unwrap_or(10_000);
    if !(1..=200_000).contains(&max) {
        return Err(MlflowError::invalid("max_results must be between 1 and 200000"));
    }
    let offset = offset_of(&q.page_token).map_err(MlflowError::invalid)?;
    let models = match filter.pinned_name() {
        Some(name) => match visible(&state, &who, name).await {
            Ok(m) => vec![m],
            Err(e) if e.code == "RESOURCE_DOES_NOT_EXIST" => vec![],
            Err(e) => return Err(e),
        },
        None => super::readable_models(&state, &who).await?,
    };
    let now = state.clock.now();
    let mut found: Vec<(SortKey, Value)> = Vec::new();
    for m in &models {
        let aliases = state.store.aliases_of(m.id).await?;
        let notes = state.store.version_annotations(m.id).await?;
        let none = Annotations::default();
        let mut after = 0;
        loop {
            let page = state.store.list_versions(m.id, after, 500).await?;
            let Some(last) = page.last().map(|v| v.seq) else { break };
            for v in &page {
                let n = notes.get(&v.label).unwrap_or(&none);
                let card = &v.release["model_card"]["mlflow"];
                let shown = version_json(&m.name, v, &alias_names(&aliases, &v.label), n);
                let subject = Subject {
                    name: &m.name,
                    tags: Some(&n.tags),
                    run_id: card["run_id"].as_str().unwrap_or_default(),
                    source: shown["source"].as_str().unwrap_or_default(),
                    version: &v.label,
                };
                if filter.matches(&subject) {
                    let key = sort_key(&m.name, &v.label, &shown);
                    found.push((key, shown));
                }
            }
            after = last;
        }
        for r in state.store.mlflow_registrations(m.id).await? {
            if r.status == RegStatus::Ready {
                continue;
            }
            let empty = BTreeMap::new();
            let subject = Subject {
                name: &m.name,
                tags: Some(&empty),
                run_id: &r.run_id,
                source: &r.source,
                version: &r.version,
            };
            if filter.matches(&subject) {
                let shown = registration_json(&m.name, &r, now);
                found.push((sort_key(&m.name, &r.version, &shown), shown));
            }
        }
    }
    found.sort_by(|a, b| order.cmp(&a.0, &b.0));
    let more = found.len() > offset + max as usize;
    let shown: Vec<Value> = found.into_iter().skip(offset).take(max as usize).map(|(_, v)| v).collect();
    let mut body = json!({"model_versions": shown});
    if more {
        body["next_page_token"] = json!((offset + max as usize).to_string());
    }
    Ok(Json(body))
}

fn sort_key(model: &str, version: &str, shown: &Value) -> SortKey {
    SortKey {
        name: model.to_owned(),
        version: version.to_owned(),
        created: shown["creation_timestamp"].as_i64().unwrap_or(0),
        updated: shown["last_updated_timestamp"].as_i64().unwrap_or(0),
    }
}

#[derive(Deserialize)]
pub struct Describe {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
}

pub(super) async fn update(State(state): State<AppState>, who: Caller, ApiJson(b): ApiJson<Describe>) -> Answer {
    check_description(&b.description)?;
    annotate(&state, &who, &b.name, Target::Version(&b.version), Change::Describe { text: &b.description }).await?;
    one(&state, &who, &b.name, &b.version).await
}

#[derive(Deserialize)]
pub struct SetTag {
    name: String,
    version: String,
    key: String,
    value: String,
}

#[derive(Deserialize)]
pub struct DeleteTag {
    name: String,
    version: String,
    key: String,
}

pub(super) async fn set_tag(State(state): State<AppState>, who: Caller, ApiJson(b): ApiJson<SetTag>) -> Answer {
    check_tag(&b.key, Some(&b.value))?;
    annotate(&state, &who, &b.name, Target::Version(&b.version), Change::SetTag { key: &b.key, value: &b.value })
        .await?;
    Ok(Json(json!({})))
}

pub(super) async fn delete_tag(State(state): State<AppState>, who: Caller, uri: Uri, body: Bytes) -> Answer {
    let b: DeleteTag = super::fields(&uri, &body)?;
    check_tag(&b.key, None)?;
    annotate(&state, &who, &b.name, Target::Version(&b.version), Change::DeleteTag { key: &b.key }).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct CreateVersion {
    name: String,
    source: String,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<Tag>,
}

/// Register a version from an MLflow source. Its number is reserved at once (the next after the
/// model's highest numeric version), then the files are copied into the registry (digests
/// computed here) and the release gate runs, in a task of its own: the answer is the version
/// as it stands after `--mlflow-register-wait` — `READY` (a Candidate), `FAILED_REGISTRATION`
/// with the gate's reasons, or `PENDING_REGISTRATION`, which MLflow's client polls. Where it came
/// from is kept in its model card (`mlflow`: source, run id) and reads back as its `source`.
pub(super) async fn create(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(mut b): ApiJson<CreateVersion>,
) -> Answer {
    who.require(&state, Action::RegisterVersion).await.map_err(MlflowError::from)?;
    let m = model_for(&state, &who, Action::RegisterVersion, &b.name).await?;
    check_description(&b.description)?;
    let mut inputs = super::registration_inputs(b.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())))
        .map_err(MlflowError::invalid)?;
    // Fulcrum's own facts (which `copy_model_version` sends back from the source version) are
    // the registry's to state again for the new version.
    b.tags.retain(|t| !super::reserved(&t.key));
    for t in &b.tags {
        check_tag(&t.key, Some(&t.value))?;
    }
    // Everything that can be refused before a number is taken is refused here.
    let source = Source::parse(&b.source).map_err(MlflowError::invalid)?;
    let from = match source {
        Source::Tracking(t) => {
            let uri = state.config.mlflow_tracking_uri.as_deref().ok_or_else(|| {
                MlflowError::invalid(
                    "this registry names no MLflow tracking server (fulcrum serve --mlflow-tracking-uri)",
                )
            })?;
            From::Tracking(sources::Tracking::new(uri, None).map_err(MlflowError::invalid)?, t)
        }
        Source::Registered { name, version } => {
            // Only what the caller may read, and bytes its tenant already holds.
            let (_, v) = version_of(&state, &who, &name, &version).await?;
            if v.hold != fulcrum_core::lifecycle::Hold::None {
                return Err(MlflowError::denied(format!(
                    "{name} {version} is {}: its bytes are not copied into a new version",
                    v.hold.as_str()
                )));
            }
            // A copy keeps the source's model card and revalidation date (tags sent may add to them).
            if let Some(card) = v.release["model_card"].as_object() {
                for (k, val) in card.iter().filter(|(k, _)| k.as_str() != "mlflow") {
                    inputs.card.entry(k.clone()).or_insert_with(|| val.clone());
                }
            }
            if inputs.revalidate_by.is_none() {
                inputs.revalidate_by = v.release["revalidate_by"].as_str().map(str::to_owned);
            }
            From::Registered(
                v.files
                    .iter()
                    .map(|f| crate::dto::FileDto { path: f.path.clone(), size: f.size, digest: f.digest.to_string() })
                    .collect(),
            )
        }
        Source::S3 { bucket, prefix } => {
            let s3 = state.config.mlflow_s3.as_ref().ok_or_else(|| {
                MlflowError::invalid(
                    "this registry has no S3 settings for MLflow sources (fulcrum serve --mlflow-s3-…)",
                )
            })?;
            From::S3(sources::S3Reader::new(s3, &bucket, &prefix).map_err(MlflowError::invalid)?)
        }
        Source::Local(p) => From::Local(
            sources::local_dir(&p, state.config.mlflow_local_source_root.as_deref()).map_err(MlflowError::denied)?,
        ),
    };
    let now = state.clock.now();
    let label = state.store.reserve_mlflow_version(m.id, &b.source, &b.run_id, &who.0.subject, now).await?;
    let task = tokio::spawn(register(state.clone(), who.clone(), m.clone(), label.clone(), from, b, inputs));
    // The task goes on if this answer stops waiting.
    let _ = tokio::time::timeout(state.config.mlflow_register_wait, task).await;
    one(&state, &who, &m.name, &label).await
}

/// Where a registration's files are read from.
enum From {
    Tracking(sources::Tracking, sources::TrackingSource),
    S3(sources::S3Reader),
    Registered(Vec<crate::dto::FileDto>),
    Local(std::path::PathBuf),
}

/// The registration task: copy, register (the release gate), settle the reservation.
async fn register(
    state: AppState,
    who: Caller,
    m: fulcrum_store::ModelRecord,
    label: String,
    from: From,
    b: CreateVersion,
    inputs: super::RegistrationInputs,
) {
    let outcome = async {
        let files = copy_files(&state, &who, from).await?;
        let mut card = inputs.card;
        card.insert("mlflow".into(), json!({"source": b.source, "run_id": b.run_id}));
        if !b.description.is_empty() {
            card.insert("description".into(), json!(b.description));
        }
        let body = crate::dto::RegisterVersion {
            version: label.clone(),
            files,
            oci: None,
            sbom: None,
            attestations: vec![],
            signatures: vec![],
            reference_profile: None,
            model_card: Some(card),
            dataset_snapshots: vec![],
            revalidate_by: inputs.revalidate_by,
            chg_id: None,
        };
        let registered = crate::routes::models::register_version(
            State(state.clone()),
            who.clone(),
            Path(m.name.clone()),
            ApiJson(body),
        );
        let _created = registered.await.map_err(MlflowError::from)?;
        let by = Annotator { tenant: &m.tenant, domain: &m.domain, model: &m.name, model_id: m.id, by: &who.0.subject };
        for t in &b.tags {
            let change = Change::SetTag { key: &t.key, value: &t.value };
            state.store.annotate(&by, Target::Version(&label), change, state.clock.now()).await?;
        }
        Ok::<_, MlflowError>(())
    }
    .await;
    let (status, message) = match &outcome {
        Ok(()) => (RegStatus::Ready, String::new()),
        Err(e) => (RegStatus::Failed, e.message().to_owned()),
    };
    if let Err(e) = state.store.settle_mlflow_registration(m.id, &label, status, &message, state.clock.now()).await {
        tracing::error!(model = %m.name, version = %label, error = %e, "could not record how an MLflow registration ended");
    }
}

/// Copy every file of the source into the blob store: (path, size, digest). A file whose size
/// differs from the source's listing is refused. Bytes go in as any upload's do
/// ([`crate::routes::blobs::store_stream`]).
async fn copy_files(state: &AppState, who: &Caller, from: From) -> Result<Vec<crate::dto::FileDto>, MlflowError> {
    let unreadable = |path: &str| {
        let path = path.to_owned();
        move |e: String| ApiError::bad_request("source_unreadable", format!("reading {path}: {e}"))
    };
    let mut out = Vec::new();
    match from {
        From::Registered(files) => out = files,
        From::Tracking(t, src) => {
            let root = t.artifact_root(&src).await.map_err(MlflowError::invalid)?;
            for f in t.list(&root).await.map_err(MlflowError::invalid)? {
                let bytes = t.open(&root, &f.path).await.map_err(MlflowError::invalid)?.bytes_stream();
                let bytes = bytes.map_err(|e| e.to_string());
                let put = store_stream(state, who, bytes, None, f.size, unreadable(&f.path)).await?;
                out.push(file(f.path, &put));
            }
        }
        From::S3(s3) => {
            for f in s3.list().await.map_err(MlflowError::invalid)? {
                let bytes = s3.open(&f.path).await.map_err(MlflowError::invalid)?.map_err(|e| e.to_string());
                let put = store_stream(state, who, bytes, None, f.size, unreadable(&f.path)).await?;
                out.push(file(f.path, &put));
            }
        }
        From::Local(dir) => {
            for (f, path) in sources::list_local(&dir).map_err(MlflowError::invalid)? {
                let opened = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| MlflowError::invalid(format!("{}: {e}", path.display())))?;
                let bytes = tokio_util::io::ReaderStream::new(opened).map_err(|e| e.to_string());
                let put = store_stream(state, who, bytes, None, f.size, unreadable(&f.path)).await?;
                out.push(file(f.path, &put));
            }
        }
    }
    if out.is_empty() {
        return Err(MlflowError::invalid("no files under the source"));
    }
    Ok(out)
}

fn file(path: String, put: &fulcrum_store::blobs::PutOutcome) -> crate::dto::FileDto {
    crate::dto::FileDto { path, size: put.size, digest: put.digest.to_string() }
}

/// Deleting a version: the policy is asked (`delete_version`, granted by no built-in role), so
/// the refusal carries its reason. Where a site policy grants it, a version that was never served
/// — a Candidate without a hold that no alias ever named — is **retired**: revoked with that
/// reason (its record, history and bytes stay, as every version's do). Anything else is kept.
pub(super) async fn delete(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Answer {
    let b: VersionQuery = super::fields(&uri, &body)?;
    let m = model_for(&state, &who, Action::DeleteVersion, &b.name).await.map_err(super::refused_deletion)?;
    let v = state.store.get_version(m.id, &b.version).await?.ok_or_else(|| {
        MlflowError::missing(format!("Model Version (name={}, version={}) not found", b.name, b.version))
    })?;
    let mut named = false;
    for a in state.store.aliases_of(m.id).await? {
        named |= state.store.alias_history(m.id, &a.name).await?.iter().any(|h| h.version.as_deref() == Some(&v.label));
    }
    if v.stage != fulcrum_core::lifecycle::Stage::Candidate || v.hold != fulcrum_core::lifecycle::Hold::None || named {
        return Err(MlflowError::denied(format!(
            "{}: {} {} was promoted, held or named by an alias, so it is kept (revoke it to withdraw it)",
            super::IMMUTABLE,
            m.name,
            v.label
        )));
    }
    let body = crate::dto::HoldBody {
        reason: "retired through MLflow's delete_model_version (a never-served Candidate)".into(),
        chg_id: change_id(&headers),
        inc_id: None,
    };
    let revoked = crate::routes::models::revoke(State(state), who, Path((m.name, v.label)), ApiJson(body));
    let _retired = revoked.await.map_err(MlflowError::from)?;
    Ok(Json(json!({})))
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
pub(super) async fn transition_stage(
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
    one(&state, &who, &b.name, &b.version).await
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
    let notes = state.store.version_annotations(m.id).await?;
    let none = Annotations::default();
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
        .map(|(_, v)| version_json(&m.name, v, &alias_names(&aliases, &v.label), notes.get(&v.label).unwrap_or(&none)))
        .collect();
    Ok(Json(json!({"model_versions": out})))
}

pub(super) async fn latest_post(State(state): State<AppState>, who: Caller, ApiJson(q): ApiJson<Latest>) -> Answer {
    latest_versions(&state, &who, q).await
}

/// GET carries the request as query parameters (`stages` repeated).
pub(super) async fn latest_get(State(state): State<AppState>, who: Caller, uri: axum::http::Uri) -> Answer {
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

pub(super) async fn get_by_alias(State(state): State<AppState>, who: Caller, Query(q): Query<AliasQuery>) -> Answer {
    let m = visible(&state, &who, &q.name).await?;
    let a = state
        .store
        .aliases_of(m.id)
        .await?
        .into_iter()
        .find(|a| a.name == q.alias)
        .and_then(|a| a.version)
        .ok_or_else(|| MlflowError::missing(format!("Registered model alias {} not found.", q.alias)))?;
    one(&state, &who, &m.name, &a).await
}

#[derive(Deserialize)]
pub struct SetAlias {
    name: String,
    alias: String,
    version: String,
}

/// A governed alias move: the policy's environment rule, the lifecycle's anti-downgrade. A
/// change id may come in the `Fulcrum-Change-Id` header (MLflow's request has no field for it).
pub(super) async fn set_alias(
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

pub(super) async fn delete_alias(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let q: AliasQuery = match super::fields(&uri, &body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let chg_id = change_id(&headers);
    let body = crate::dto::ChangeBody { chg_id };
    let deleted = crate::routes::models::delete_alias(
        State(state),
        who,
        Path((q.name, q.alias)),
        crate::routes::ApiQuery(body),
        Bytes::new(),
    )
    .await;
    match deleted {
        Ok(_) => Json(json!({})).into_response(),
        Err(e) => MlflowError::from(e).into_response(),
    }
}

/// Where the client downloads a version from: this registry's own artifact endpoint, which
/// serves only what the caller may load now.
pub(super) async fn download_uri(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    Query(q): Query<VersionQuery>,
) -> Answer {
    let (m, v) = version_of(&state, &who, &q.name, &q.version).await?;
    let base = match &state.config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            format!("{}://{host}", if state.config.https { "https" } else { "http" })
        }
    };
    Ok(Json(json!({"artifact_uri": format!("{base}{ARTIFACTS}/fulcrum/{}/{}", m.name, v.label)})))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    path: String,
}

/// MLflow's artifact listing, for `fulcrum/<model>/<version>[/<dir>]`: the version's files from
/// its manifest, for whoever may read the version (as its API record shows them); the download
/// gate decides each file's bytes.
pub(super) async fn list_artifacts(State(state): State<AppState>, who: Caller, Query(q): Query<ListQuery>) -> Answer {
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
pub(super) async fn download_artifact(
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
