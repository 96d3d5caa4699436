//! Row types returned by the store, and their decoding from SQL rows.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::db::Row as SqlRow;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::{AliasCause, Env, Hold, Stage};
use fulcrum_core::names::ModelName;
use fulcrum_core::{Digest, FileEntry};
use serde::Serialize;
use sqlx::Row;

use crate::{Result, StoreError};

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn digest(r: &SqlRow, col: &str) -> Result<Digest> {
    r.get::<&str, _>(col).parse().map_err(|_| corrupt(col))
}

#[derive(Debug, Clone)]
pub struct NewModel {
    pub tenant: String,
    pub name: ModelName,
    pub domain: String,
    pub description: String,
    pub owners: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRecord {
    #[serde(skip)]
    pub id: i64,
    pub tenant: String,
    pub name: String,
    pub domain: String,
    pub description: String,
    pub owners: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub created_by: String,
    pub created_at: String,
}

impl ModelRecord {
    pub(crate) fn from_row(r: &SqlRow) -> Result<Self> {
        Ok(Self {
            id: r.get("id"),
            tenant: r.get("tenant"),
            name: r.get("name"),
            domain: r.get("domain"),
            description: r.get("description"),
            owners: serde_json::from_str(r.get("owners")).map_err(|_| corrupt("owners"))?,
            labels: serde_json::from_str(r.get("labels")).map_err(|_| corrupt("labels"))?,
            created_by: r.get("created_by"),
            created_at: r.get("created_at"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ApprovalRecord {
    pub subject: String,
    pub role: Role,
    pub kind: String,
    pub comment: String,
    pub created_at: String,
}

impl ApprovalRecord {
    pub(crate) fn from_row(r: &SqlRow) -> Result<Self> {
        Ok(Self {
            subject: r.get("subject"),
            role: Role::from_str(r.get("role")).map_err(|()| corrupt("role"))?,
            kind: r.get("kind"),
            comment: r.get("comment"),
            created_at: r.get("created_at"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub id: i64,
    pub model_id: i64,
    pub label: String,
    pub seq: u64,
    pub artifact_digest: Digest,
    pub record_digest: Digest,
    pub files: Vec<FileEntry>,
    pub release: serde_json::Value,
    pub stage: Stage,
    pub hold: Hold,
    pub hold_reason: Option<String>,
    pub publisher: String,
    pub chg_id: Option<String>,
    pub created_at: String,
    pub approvals: Vec<ApprovalRecord>,
    /// The ledger leaf behind its stage and hold (see [`VersionBrief::ledger_index`]).
    pub ledger_index: Option<u64>,
}

impl VersionRecord {
    pub(crate) fn from_row(r: &SqlRow) -> Result<Self> {
        Ok(Self {
            ledger_index: ledger_index(r),
            id: r.get("id"),
            model_id: r.get("model_id"),
            label: r.get("label"),
            seq: r.get::<i64, _>("seq") as u64,
            artifact_digest: digest(r, "artifact_digest")?,
            record_digest: digest(r, "record_digest")?,
            files: serde_json::from_str(r.get("files")).map_err(|_| corrupt("files"))?,
            release: serde_json::from_str(r.get("release")).map_err(|_| corrupt("release"))?,
            stage: Stage::from_str(r.get("stage")).map_err(|()| corrupt("stage"))?,
            hold: Hold::from_str(r.get("hold")).map_err(|()| corrupt("hold"))?,
            hold_reason: r.get("hold_reason"),
            publisher: r.get("publisher"),
            chg_id: r.get("chg_id"),
            created_at: r.get("created_at"),
            approvals: vec![],
        })
    }
}

/// An event a sink (a webhook) gave up on after every retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its row (0 before it is stored).
    pub id: i64,
    pub sink: String,
    pub tenant: String,
    pub seq: i64,
    pub event_id: String,
    pub attempts: u32,
    pub last_error: String,
    pub at: String,
    /// When and by whom it was re-delivered successfully.
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

/// A version holding a blob, as the download gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUse {
    pub model: String,
    pub domain: String,
    pub version: String,
    pub seq: u64,
    pub stage: fulcrum_core::Stage,
    pub hold: fulcrum_core::Hold,
    /// The model's labels (`key:value`) and the version's card labels.
    pub labels: Vec<String>,
    /// The purposes the version's card allows.
    pub purposes: Vec<String>,
}

/// What the resolve cache needs of a version.
#[derive(Debug, Clone)]
pub struct VersionBrief {
    pub id: i64,
    pub model_id: i64,
    pub label: String,
    pub seq: u64,
    pub artifact_digest: Digest,
    pub record_digest: Digest,
    pub stage: Stage,
    pub hold: Hold,
    /// The model card's labels (DLP).
    pub card_labels: Vec<String>,
    /// The purposes the model card allows (DLP).
    pub card_purposes: Vec<String>,
    /// The ledger leaf of the lifecycle event that last set the version's stage or hold
    /// (`release_published` at first); `None` only for records older than the ledger.
    pub ledger_index: Option<u64>,
}

fn ledger_index(r: &SqlRow) -> Option<u64> {
    r.try_get::<Option<i64>, _>("ledger_index").ok().flatten().and_then(|i| u64::try_from(i).ok())
}

/// (labels, purposes) of a model card; a card stored before labels were checked counts as
/// carrying none it could not name.
pub(crate) fn card_dlp(card: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let labels = fulcrum_core::dlp::card_labels(card).unwrap_or_default();
    let purposes = fulcrum_core::dlp::card_purposes(card, &labels);
    (labels, purposes)
}

impl VersionBrief {
    pub(crate) fn from_row(r: &SqlRow) -> Result<Self> {
        let card: Option<String> = r.get("card");
        let card = card.map(|c| serde_json::from_str(&c)).transpose().map_err(|_| corrupt("model_card"))?;
        let (card_labels, card_purposes) = card.as_ref().map(card_dlp).unwrap_or_default();
        Ok(Self {
            card_labels,
            card_purposes,
            ledger_index: ledger_index(r),
            id: r.get("id"),
            model_id: r.get("model_id"),
            label: r.get("label"),
            seq: r.get::<i64, _>("seq") as u64,
            artifact_digest: digest(r, "artifact_digest")?,
            record_digest: digest(r, "record_digest")?,
            stage: Stage::from_str(r.get("stage")).map_err(|()| corrupt("stage"))?,
            hold: Hold::from_str(r.get("hold")).map_err(|()| corrupt("hold"))?,
        })
    }
}

impl From<&VersionRecord> for VersionBrief {
    fn from(v: &VersionRecord) -> Self {
        let (card_labels, card_purposes) = card_dlp(&v.release["model_card"]);
        Self {
            card_labels,
            card_purposes,
            ledger_index: v.ledger_index,
            id: v.id,
            model_id: v.model_id,
            label: v.label.clone(),
            seq: v.seq,
            artifact_digest: v.artifact_digest,
            record_digest: v.record_digest,
            stage: v.stage,
            hold: v.hold,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AliasRecord {
    pub model_id: i64,
    pub name: String,
    pub env: Env,
    pub version_id: Option<i64>,
    pub version: Option<String>,
    pub position: u64,
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    pub cause: AliasCause,
    /// The ledger leaf of the lifecycle event that last moved it.
    pub ledger_index: Option<u64>,
}

impl AliasRecord {
    pub(crate) fn from_row(r: &SqlRow) -> Result<Self> {
        Ok(Self {
            model_id: r.get("model_id"),
            name: r.get("name"),
            env: Env::from_str(r.get("env")).map_err(|()| corrupt("env"))?,
            version_id: r.get("version_id"),
            version: r.get("label"),
            position: r.get::<Option<i64>, _>("position").unwrap_or(0) as u64,
            chg_id: r.get("chg_id"),
            inc_id: r.get("inc_id"),
            ledger_index: ledger_index(r),
            cause: AliasCause::from_str(r.get::<Option<&str>, _>("cause").unwrap_or("set"))
                .map_err(|()| corrupt("cause"))?,
        })
    }

    pub fn is_deleted(&self) -> bool {
        self.cause == AliasCause::Deleted
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AliasHistoryRecord {
    pub position: u64,
    pub version: Option<String>,
    pub seq: Option<u64>,
    pub cause: String,
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    pub actor: String,
    pub at: String,
}

impl AliasHistoryRecord {
    pub(crate) fn from_row(r: &SqlRow) -> Result<Self> {
        Ok(Self {
            position: r.get::<i64, _>("position") as u64,
            version: r.get("label"),
            seq: r.get::<Option<i64>, _>("seq").map(|s| s as u64),
            cause: r.get("cause"),
            chg_id: r.get("chg_id"),
            inc_id: r.get("inc_id"),
            actor: r.get("actor"),
            at: r.get("created_at"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    /// Its leaf in the audit ledger (known when it was just appended).
    pub ledger_index: Option<u64>,
    /// The CloudEvent as stored, JSON.
    pub body: String,
}
