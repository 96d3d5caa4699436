//! Registered models through MLflow's API: read, search (filter, `order_by`, pages), create,
//! describe and tag. Renames and deletes are refused: a model's name is its identity in signed
//! records, aliases, agents' pins and the ledger.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use fulcrum_core::identity::Action;
use fulcrum_store::annotations::{Annotations, Change, Target};
use serde::Deserialize;
use serde_json::{Value, json};

use super::search::{Column, Filter, OrderBy, Over, SortKey, Subject, offset_of};
use super::{Answer, MlflowError, annotate, check_description, check_tag, millis, tag_list, version_json, visible};
use crate::AppState;
use crate::auth::Caller;
use crate::routes::ApiJson;

/// A model's tags as MLflow shows them: its labels (set at creation, governance inputs) and
/// its annotations; a label wins over an annotation of the same key.
fn tags_of(m: &fulcrum_store::ModelRecord, notes: &Annotations) -> std::collections::BTreeMap<String, String> {
    let mut tags = notes.tags.clone();
    tags.extend(m.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

/// When a model last changed, as MLflow reports it: created, its newest version, its newest note.
fn newest_of(created: i64, newest: Option<&fulcrum_store::VersionRecord>, notes: &Annotations) -> i64 {
    newest
        .map(|v| millis(&v.created_at))
        .into_iter()
        .chain(notes.updated_at.as_deref().map(millis))
        .fold(created, i64::max)
}

async fn updated_at(state: &AppState, m: &fulcrum_store::ModelRecord, notes: &Annotations) -> Result<i64, MlflowError> {
    Ok(newest_of(millis(&m.created_at), state.store.latest_versions(m.id, 1).await?.first(), notes))
}

pub(super) async fn model_json(state: &AppState, m: &fulcrum_store::ModelRecord) -> Result<Value, MlflowError> {
    let notes = state.store.annotations(m.id, Target::Model).await?;
    let aliases = state.store.aliases_of(m.id).await?;
    let latest = state.store.latest_versions(m.id, 1).await?;
    let created = millis(&m.created_at);
    let updated = newest_of(created, latest.first(), &notes);
    Ok(json!({
        "name": m.name,
        "creation_timestamp": created,
        "last_updated_timestamp": updated,
        "description": notes.description.as_deref().unwrap_or(&m.description),
        "user_id": m.created_by,
        "tags": tag_list(tags_of(m, &notes).iter()),
        "aliases": aliases
            .iter()
            .filter_map(|a| a.version.as_ref().map(|v| json!({"alias": a.name, "version": v})))
            .collect::<Vec<_>>(),
        "latest_versions": latest.iter().map(|v| version_json(&m.name, v, &[], &Annotations::default())).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
pub struct NameQuery {
    #[serde(default)]
    name: String,
}

pub(super) async fn get(State(state): State<AppState>, who: Caller, Query(q): Query<NameQuery>) -> Answer {
    let m = visible(&state, &who, &q.name).await?;
    Ok(Json(json!({"registered_model": model_json(&state, &m).await?})))
}

/// A search's parameters from the query string (`order_by` may repeat).
pub(super) struct SearchParams {
    pub filter: String,
    pub max_results: Option<u32>,
    pub page_token: String,
    pub order_by: Vec<String>,
}

impl SearchParams {
    pub(super) fn from_uri(uri: &Uri) -> Result<Self, MlflowError> {
        let mut p = Self { filter: String::new(), max_results: None, page_token: String::new(), order_by: vec![] };
        for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "filter" => p.filter = v.into_owned(),
                "max_results" => {
                    p.max_results = Some(v.parse().map_err(|_| MlflowError::invalid("max_results is a number"))?);
                }
                "page_token" => p.page_token = v.into_owned(),
                "order_by" => p.order_by.push(v.into_owned()),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Registered models of the caller's tenant and domains matching the filter, ordered as asked
/// (by name by default), a page at a time (the token is the next offset).
pub(super) async fn search(State(state): State<AppState>, who: Caller, uri: Uri) -> Answer {
    who.require(&state, Action::Read).await.map_err(MlflowError::from)?;
    let q = SearchParams::from_uri(&uri)?;
    let filter = Filter::parse(&q.filter, Over::Models).map_err(MlflowError::invalid)?;
    let order = OrderBy::parse(&q.order_by, Over::Models).map_err(MlflowError::invalid)?;
    let max = q.max_results.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(MlflowError::invalid("max_results must be between 1 and 1000"));
    }
    let offset = offset_of(&q.page_token).map_err(MlflowError::invalid)?;
    let mut found: Vec<(SortKey, fulcrum_store::ModelRecord)> = Vec::new();
    for m in super::readable_models(&state, &who).await? {
        // Tags and update times cost a query each: read only when the search needs them.
        let notes = if filter.uses_tags() || order.uses(Column::Updated) {
            state.store.annotations(m.id, Target::Model).await?
        } else {
            Annotations::default()
        };
        let tags = tags_of(&m, &notes);
        if !filter.matches(&Subject { name: &m.name, tags: Some(&tags), ..Subject::default() }) {
            continue;
        }
        let created = millis(&m.created_at);
        let updated = if order.uses(Column::Updated) { updated_at(&state, &m, &notes).await? } else { created };
        found.push((SortKey { name: m.name.clone(), version: String::new(), created, updated }, m));
    }
    found.sort_by(|a, b| order.cmp(&a.0, &b.0));
    let mut out = Vec::new();
    for (_, m) in found.iter().skip(offset).take(max as usize) {
        out.push(model_json(&state, m).await?);
    }
    let mut body = json!({"registered_models": out});
    if found.len() > offset + max as usize {
        body["next_page_token"] = json!((offset + max as usize).to_string());
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct CreateModel {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<super::versions::Tag>,
}

/// Create a registered model: a Fulcrum model in the domain named by the tag `fulcrum.domain`,
/// or the caller's own domain when it has exactly one; its other tags become its labels.
pub(super) async fn create(State(state): State<AppState>, who: Caller, ApiJson(b): ApiJson<CreateModel>) -> Answer {
    // What MLflow answers first (its `register_model` relies on it): the name is taken.
    if visible(&state, &who, &b.name).await.is_ok() {
        return Err(MlflowError::exists(&b.name));
    }
    check_description(&b.description)?;
    let domain = match b.tags.iter().find(|t| t.key == "fulcrum.domain") {
        Some(t) => t.value.clone(),
        None if who.0.domain != "*" => who.0.domain.clone(),
        None => return Err(MlflowError::invalid("name the model's domain with the tag fulcrum.domain")),
    };
    let mut labels = std::collections::BTreeMap::new();
    for t in b.tags.iter().filter(|t| t.key != "fulcrum.domain") {
        check_tag(&t.key, Some(&t.value))?;
        labels.insert(t.key.clone(), t.value.clone());
    }
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

#[derive(Deserialize)]
pub struct Describe {
    name: String,
    #[serde(default)]
    description: String,
}

/// A new description (an annotation: the model's created record keeps its own).
pub(super) async fn update(State(state): State<AppState>, who: Caller, ApiJson(b): ApiJson<Describe>) -> Answer {
    check_description(&b.description)?;
    let m = annotate(&state, &who, &b.name, Target::Model, Change::Describe { text: &b.description }).await?;
    Ok(Json(json!({"registered_model": model_json(&state, &m).await?})))
}

/// A registered model is never deleted. The policy is asked first (`delete_version`), so the
/// refusal carries its reason; even where it grants that, only never-served Candidates are
/// retired, one version at a time.
pub(super) async fn delete(State(state): State<AppState>, who: Caller, uri: Uri, body: Bytes) -> MlflowError {
    let b: NameQuery = match super::fields(&uri, &body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    match super::model_for(&state, &who, Action::DeleteVersion, &b.name).await {
        Err(e) => super::refused_deletion(e),
        Ok(_) => MlflowError::denied(format!(
            "{}: a registered model is never deleted (its never-served Candidates can be retired one by one with delete_model_version)",
            super::IMMUTABLE
        )),
    }
}

pub(super) async fn rename() -> MlflowError {
    MlflowError::denied(
        "a registered model's name is its identity in signed release records, aliases, serving pins and the ledger: \
         it is never renamed (create a model under the new name and register versions there)",
    )
}

#[derive(Deserialize)]
pub struct SetTag {
    name: String,
    key: String,
    value: String,
}

#[derive(Deserialize)]
pub struct DeleteTag {
    name: String,
    key: String,
}

/// Tag a model: an annotation. A key that is one of its labels is refused (labels are inputs to
/// the policy and data rules, set when the model was created).
pub(super) async fn set_tag(State(state): State<AppState>, who: Caller, ApiJson(b): ApiJson<SetTag>) -> Answer {
    check_tag(&b.key, Some(&b.value))?;
    annotate(&state, &who, &b.name, Target::Model, Change::SetTag { key: &b.key, value: &b.value }).await?;
    Ok(Json(json!({})))
}

pub(super) async fn delete_tag(State(state): State<AppState>, who: Caller, uri: Uri, body: Bytes) -> Answer {
    let b: DeleteTag = super::fields(&uri, &body)?;
    check_tag(&b.key, None)?;
    annotate(&state, &who, &b.name, Target::Model, Change::DeleteTag { key: &b.key }).await?;
    Ok(Json(json!({})))
}
