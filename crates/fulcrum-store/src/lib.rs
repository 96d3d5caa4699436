//! Fulcrum's persistence adapters.
//!
//! - [`Store`]: the SQL metadata store (SQLite on the embedded default, PostgreSQL to scale
//!   out; see [`db`]) with migrations. Every
//!   state change runs in one transaction that also appends its events to the event log (the
//!   transactional outbox), so an event exists if and only if its change was committed.
//! - [`blobs::BlobStore`]: the content-addressed blob store (a directory, or an S3 bucket).
//! - [`s3`] and [`worm`]: write-once evidence (a local directory, or S3 with Object Lock).
//!
//! Governance decisions are not made here: the store loads a model's [`ModelState`], asks
//! `fulcrum-core` to apply the command, and persists the resulting effects and events.
//!
//! # Invariants
//! - One writer at a time: SQLite has one writer connection (it never returns BUSY to a writer);
//!   every PostgreSQL write transaction first takes one advisory lock. A transaction sees a
//!   stable snapshot and sequence numbers follow commit order.
//! - Nothing is half-applied: a refusal or error rolls back the whole transaction.
//! - Versions, alias history and events are append-only (enforced again by SQL triggers).

pub mod access;
pub mod annotations;
pub mod blobs;
pub mod datasets;
pub mod db;
pub mod events;
pub mod findings;
pub mod incidents;
pub mod keys;
pub mod leader;
pub mod ledger;
pub mod policy;
mod records;
pub mod registrations;
pub mod replicas;
pub mod s3;
pub mod worm;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use fulcrum_core::event::{CloudEvent, EventKind, EventPayload};
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::{
    Actor, AliasCause, AliasEntry, AliasState, Approval, ApprovalKind, Command, Effect, Env, Hold, ModelState, Refusal,
    Stage, VersionGov, VersionId,
};
use fulcrum_core::names::{AliasName, VersionLabel};
use fulcrum_core::{Digest, Manifest};
use sqlx::{AnyPool, Row};

use crate::db::Conn;
pub use db::{Database, Dialect};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use findings::WaiverRecord;
pub use incidents::{IncidentRecord, IncidentVersion, NewIncident};
pub use keys::{BundleContent, BundleRecord, KeyRecord, SigstoreRootRecord};
pub use policy::{DecisionQuery, DecisionRow, InstallKind, PolicyHistoryEntry, PolicyInstall, SnapshotRecord};
pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The database failed; `transient` when retrying may succeed (busy, pool exhausted). The
    /// driver's error is kept as text: no database driver type is part of this crate's API.
    #[error("database error: {message}")]
    Db { message: String, transient: bool },
    #[error("migration failed: {0}")]
    Migrate(String),
    /// The storage settings are wrong (a bad URL, a password in the URL).
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The write did not happen (a group commit failed, or the store is closing); retry.
    #[error("the store could not write: {0}")]
    Unavailable(String),
    /// A background write of a leader whose term is no longer the newest: another replica
    /// leads now, and this one must stop.
    #[error("leadership term {term} was superseded by term {newest}: this replica no longer leads")]
    Fenced { term: i64, newest: i64 },
    /// The policy gate refused the change; the denial decision is handed back to be logged.
    #[error("the policy denies it: {}", .reasons.join(", "))]
    PolicyDenied { reasons: Vec<String>, decision: Box<DecisionRow> },
}

impl StoreError {
    /// A failure worth retrying (the database is busy), as opposed to a bug or corruption.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Db { transient: true, .. })
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let transient = matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
            || e.as_database_error().is_some_and(|d| {
                // SQLITE_BUSY / SQLITE_LOCKED; PostgreSQL serialization failure, deadlock, lock
                // or statement timeout, the server shutting down, connection failures (08…).
                let code = d.code();
                matches!(
                    code.as_deref(),
                    Some("5" | "6" | "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03")
                ) || code.is_some_and(|c| c.starts_with("08"))
            });
        StoreError::Db { message: e.to_string(), transient }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// SQLite `synchronous=FULL`: a commit survives power loss. Only bulk seeding turns it off.
    /// PostgreSQL's durability is the server's setting (`synchronous_commit`), not the store's.
    pub durable: bool,
    /// Reader connections (SQLite); PostgreSQL gets twice as many, and four writer connections
    /// that take turns under the write lock.
    pub read_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { durable: true, read_connections: 4 }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    dialect: Dialect,
    /// One builder of the ledger's subtree hashes at a time.
    ledger_build: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Events waiting for the group commit (see [`Store::record_event`]).
    group: tokio::sync::mpsc::Sender<GroupItem>,
    /// Group commits made so far.
    group_commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// An event handed to the group commit and where its outcome goes.
type GroupItem = (EventPayload, tokio::sync::oneshot::Sender<Result<StoredEvent>>);

/// Most events in one group commit.
const MAX_GROUP: usize = 512;

/// The group commit: events from concurrent requests that arrive while a commit is under way
/// are written together in the next transaction (event, outbox row and ledger leaf each), with
/// one fsync for all; each request is answered only after that commit. With one request at a
/// time a group is one event and nothing waits. A failed commit fails every event of its group
/// (none of them is stored).
async fn group_commit(
    write: AnyPool,
    dialect: Dialect,
    mut rx: tokio::sync::mpsc::Receiver<GroupItem>,
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut batch, MAX_GROUP).await > 0 {
        let (events, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let outcome = commit_group(&write, dialect, events).await;
        commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match outcome {
            Ok(stored) => {
                for (reply, s) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(s));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = replies.len(), "a group commit failed; none of its events is stored");
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
        }
    }
}

async fn commit_group(write: &AnyPool, dialect: Dialect, events: Vec<EventPayload>) -> Result<Vec<StoredEvent>> {
    let mut tx = db::begin_write(write, dialect).await?;
    let stored = append_events(&mut tx, events).await?;
    tx.commit().await?;
    Ok(stored)
}

pub(crate) fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("RFC 3339 formats every UTC time")
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl Store {
    /// Open (creating if missing) the SQLite database at `path` and run migrations.
    ///
    /// # Errors
    /// Database and migration failures.
    pub async fn open(path: &Path, opts: StoreOptions) -> Result<Self> {
        Self::connect(&Database::Sqlite { path: path.to_owned() }, opts).await
    }

    /// Connect to `db` and bring its schema up to date (replicas starting together on
    /// PostgreSQL migrate once, under a lock).
    ///
    /// # Errors
    /// Connection, configuration and migration failures.
    pub async fn connect(db: &Database, opts: StoreOptions) -> Result<Self> {
        let pools = db::connect(db, opts.durable, opts.read_connections).await?;
        let applied = db::migrate(&pools.write, db.dialect()).await?;
        if !applied.is_empty() {
            tracing::info!(database = %db.display(), ?applied, "schema migrations applied");
        }
        let (group, rx) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
        let store = Self {
            write: pools.write,
            read: pools.read,
            dialect: db.dialect(),
            ledger_build: std::sync::Arc::default(),
            group,
            group_commits: std::sync::Arc::default(),
        };
        tokio::spawn(group_commit(store.write.clone(), store.dialect, rx, std::sync::Arc::clone(&store.group_commits)));
        let added = store.backfill_ledger().await?;
        if added > 0 {
            tracing::info!(leaves = added, "records stored before the audit ledger existed were added to it");
        }
        Ok(store)
    }

    /// Bring `db`'s schema up to date and return the migrations applied now (`fulcrum db migrate`).
    ///
    /// # Errors
    /// Connection and migration failures.
    pub async fn migrate(db: &Database) -> Result<Vec<i64>> {
        let pools = db::connect(db, true, 1).await?;
        let applied = db::migrate(&pools.write, db.dialect()).await;
        pools.read.close().await;
        pools.write.close().await;
        applied
    }

    /// Which engine holds the metadata.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Begin a write transaction (see [`db::begin_write`]).
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        db::begin_write(&self.write, self.dialect).await
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    // ------------------------------------------------------------------ models

    /// # Errors
    /// `Conflict` when the name is taken in the tenant.
    pub async fn create_model(&self, m: NewModel, actor: &str, now: OffsetDateTime) -> Result<ModelRecord> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM models WHERE tenant = $1 AND name = $2")
            .bind(&m.tenant)
            .bind(m.name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!("model {} already exists", m.name)));
        }
        let owners = serde_json::to_string(&m.owners).expect("strings serialise");
        let labels = serde_json::to_string(&m.labels).expect("strings serialise");
        let id: i64 = sqlx::query(
            "INSERT INTO models (tenant, name, domain, description, owners, labels, created_by, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING id",
        )
        .bind(&m.tenant)
        .bind(m.name.as_str())
        .bind(&m.domain)
        .bind(&m.description)
        .bind(&owners)
        .bind(&labels)
        .bind(actor)
        .bind(ts(now))
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        tx.commit().await?;
        Ok(ModelRecord {
            id,
            tenant: m.tenant,
            name: m.name.to_string(),
            domain: m.domain,
            description: m.description,
            owners: m.owners,
            labels: m.labels,
            created_by: actor.to_owned(),
            created_at: ts(now),
        })
    }

    /// # Errors
    /// Database failures.
    pub async fn get_model(&self, tenant: &str, name: &str) -> Result<Option<ModelRecord>> {
        let row = sqlx::query("SELECT * FROM models WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| ModelRecord::from_row(&r)).transpose()
    }

    /// Models of one tenant, by name, after `after` (keyset pagination).
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_models(&self, tenant: &str, after: &str, limit: u32) -> Result<Vec<ModelRecord>> {
        let rows = sqlx::query("SELECT * FROM models WHERE tenant = $1 AND name > $2 ORDER BY name LIMIT $3")
            .bind(tenant)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(ModelRecord::from_row).collect()
    }

    /// Every model (for building the resolve cache at start-up).
    ///
    /// # Errors
    /// Database failures.
    pub async fn all_models(&self) -> Result<Vec<ModelRecord>> {
        let rows = sqlx::query("SELECT * FROM models ORDER BY id").fetch_all(&self.read).await?;
        rows.iter().map(ModelRecord::from_row).collect()
    }

    // ---------------------------------------------------------------- versions

    /// Register a version as `Candidate` and emit `release_published`, in one transaction.
    ///
    /// # Errors
    /// `NotFound` for an unknown model, `Conflict` for a taken label (or one that is an alias).
    pub async fn register_version(
        &self,
        tenant: &str,
        model: &str,
        v: NewVersion,
        policy_digest: &Digest,
        now: OffsetDateTime,
    ) -> Result<VersionRecord> {
        let mut tx = self.begin_write().await?;
        let m = model_in_tx(&mut tx, tenant, model).await?;
        let taken = sqlx::query("SELECT 1 FROM versions WHERE model_id = $1 AND label = $2")
            .bind(m.id)
            .bind(v.label.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "version {} of {} already exists; versions are immutable",
                v.label, model
            )));
        }
        let is_alias = sqlx::query("SELECT 1 FROM aliases WHERE model_id = $1 AND name = $2")
            .bind(m.id)
            .bind(v.label.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if is_alias.is_some() {
            return Err(StoreError::Conflict(format!(
                "'{}' is an alias of {}; versions and aliases must not share names",
                v.label, model
            )));
        }
        let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE model_id = $1")
            .bind(m.id)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        let files = serde_json::to_string(v.manifest.files()).expect("manifest serialises");
        let release = serde_json::to_string(&v.release).expect("json serialises");
        let artifact_digest = v.manifest.digest();
        let id: i64 = sqlx::query(
            "INSERT INTO versions (model_id, label, seq, artifact_digest, record_digest, files, release, stage, hold, publisher, chg_id, created_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,'Candidate','none',$8,$9,$10) RETURNING id",
        )
        .bind(m.id)
        .bind(v.label.as_str())
        .bind(seq)
        .bind(artifact_digest.to_string())
        .bind(v.record_digest.to_string())
        .bind(&files)
        .bind(&release)
        .bind(&v.publisher)
        .bind(&v.chg_id)
        .bind(ts(now))
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let mut ev = EventPayload::new(EventKind::ReleasePublished, now, tenant, &m.domain, model);
        ev.version = Some(v.label.to_string());
        ev.to = Some(Stage::Candidate.as_str().into());
        ev.artifact_digest = Some(artifact_digest.to_string());
        ev.policy_digest = Some(policy_digest.to_string());
        ev.chg_id.clone_from(&v.chg_id);
        ev.seq = Some(seq as u64);
        ev.actor = Some(v.publisher.clone());
        let published = append_event(&mut tx, ev).await?;
        let ledger_index = published.ledger_index;
        sqlx::query("UPDATE versions SET ledger_index = $1 WHERE id = $2")
            .bind(ledger_index.map(|i| i as i64))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for ds in v.release["dataset_snapshots"].as_array().into_iter().flatten() {
            if let (Some(digest), Some(uri)) = (ds["digest"].as_str(), ds["uri"].as_str()) {
                sqlx::query("INSERT INTO dataset_uses (tenant, digest, uri, version_id) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING")
                    .bind(tenant)
                    .bind(digest)
                    .bind(uri)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let oci = &v.release["release_gate"]["oci"];
        if let (Some(digest), Some(repository)) = (oci["digest"].as_str(), oci["repository"].as_str()) {
            sqlx::query("INSERT INTO oci_sources (tenant, digest, repository, version_id) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING")
                .bind(tenant)
                .bind(digest)
                .bind(repository)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        // Every blob the version names is its: the download gate serves each one only for a
        // version the caller may resolve now (a revoked version's manifest and record stop too).
        for d in version_blobs(&v.manifest, &v.record_digest, &v.release) {
            sqlx::query("INSERT INTO blob_uses (tenant, digest, version_id) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING")
                .bind(tenant)
                .bind(d)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for d in [artifact_digest, v.record_digest] {
            sqlx::query("INSERT INTO blob_grants (tenant, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(tenant)
                .bind(d.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(VersionRecord {
            id,
            model_id: m.id,
            label: v.label.to_string(),
            seq: seq as u64,
            artifact_digest,
            record_digest: v.record_digest,
            files: v.manifest.files().to_vec(),
            release: v.release,
            stage: Stage::Candidate,
            hold: Hold::None,
            hold_reason: None,
            publisher: v.publisher,
            chg_id: v.chg_id,
            created_at: ts(now),
            approvals: vec![],
            ledger_index,
        })
    }

    /// # Errors
    /// Database failures.
    pub async fn get_version(&self, model_id: i64, label: &str) -> Result<Option<VersionRecord>> {
        let row = sqlx::query("SELECT * FROM versions WHERE model_id = $1 AND label = $2")
            .bind(model_id)
            .bind(label)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut v = VersionRecord::from_row(&row)?;
        let approvals = sqlx::query("SELECT * FROM approvals WHERE version_id = $1 ORDER BY id")
            .bind(v.id)
            .fetch_all(&self.read)
            .await?;
        v.approvals = approvals.iter().map(ApprovalRecord::from_row).collect::<Result<_>>()?;
        Ok(Some(v))
    }

    /// Versions of a model by `seq`, after `after_seq` (keyset pagination). Approvals are not
    /// loaded here; fetch one version for those.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_versions(&self, model_id: i64, after_seq: u64, limit: u32) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query("SELECT * FROM versions WHERE model_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(model_id)
            .bind(after_seq as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(VersionRecord::from_row).collect()
    }

    /// A model's newest versions, newest first, at most `limit` (the console's model page).
    ///
    /// # Errors
    /// Database failures.
    pub async fn latest_versions(&self, model_id: i64, limit: u32) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query("SELECT * FROM versions WHERE model_id = $1 ORDER BY seq DESC LIMIT $2")
            .bind(model_id)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(VersionRecord::from_row).collect()
    }

    /// Every version without its file list, streamed row by row (for building the resolve
    /// cache at start-up without holding every row in memory at once).
    pub fn versions_brief(&self) -> impl futures_util::Stream<Item = Result<VersionBrief>> + '_ {
        use futures_util::StreamExt;
        let card = self.dialect.json_text("release", &["model_card"]);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, model_id, label, seq, artifact_digest, record_digest, stage, hold, ledger_index, {card} AS card FROM versions ORDER BY id",
        )))
        .fetch(&self.read)
        .map(|row| VersionBrief::from_row(&row?))
    }

    /// One model's versions, briefly (a replica reloading the model after another one changed it).
    ///
    /// # Errors
    /// Database failures.
    pub async fn versions_brief_of(&self, model_id: i64) -> Result<Vec<VersionBrief>> {
        let card = self.dialect.json_text("release", &["model_card"]);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, model_id, label, seq, artifact_digest, record_digest, stage, hold, ledger_index, {card} AS card FROM versions WHERE model_id = $1 ORDER BY id",
        )))
        .bind(model_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(VersionBrief::from_row).collect()
    }

    /// Every version's governance row and every alias's target, as the tables hold them now:
    /// what the start-up check compares with the ledger's projection.
    ///
    /// # Errors
    /// Database failures, or a stored stage/hold outside the schema.
    pub async fn governance_rows(
        &self,
    ) -> Result<(Vec<fulcrum_core::projection::VersionRow>, Vec<(fulcrum_core::projection::AliasKey, Option<String>)>)>
    {
        use fulcrum_core::projection::{AliasKey, VersionKey, VersionRow};
        let rows = sqlx::query(
            "SELECT m.tenant, m.name, v.label, v.seq, v.artifact_digest, v.stage, v.hold
             FROM versions v JOIN models m ON m.id = v.model_id ORDER BY v.id",
        )
        .fetch_all(&self.read)
        .await?;
        let versions = rows
            .iter()
            .map(|r| {
                Ok(VersionRow {
                    key: VersionKey { tenant: r.get(0), model: r.get(1), version: r.get(2) },
                    seq: r.get::<i64, _>(3) as u64,
                    artifact_digest: r.get(4),
                    stage: r.get::<String, _>(5).parse().map_err(|()| records::corrupt("stage"))?,
                    hold: r.get::<String, _>(6).parse().map_err(|()| records::corrupt("hold"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT m.tenant, m.name, a.name, v.label FROM aliases a JOIN models m ON m.id = a.model_id
             LEFT JOIN versions v ON v.id = a.version_id ORDER BY a.model_id, a.name",
        )
        .fetch_all(&self.read)
        .await?;
        let aliases = rows
            .iter()
            .map(|r| (AliasKey { tenant: r.get(0), model: r.get(1), alias: r.get(2) }, r.get::<Option<String>, _>(3)))
            .collect();
        Ok((versions, aliases))
    }

    // ------------------------------------------------------------------ aliases

    /// Aliases with their latest history entry; `?1` a model id and `?2` an alias name, or NULL.
    const ALIASES_SQL: &'static str = "SELECT a.model_id, a.name, a.env, a.version_id, v.label, a.ledger_index,
        (SELECT MAX(position) FROM alias_history h WHERE h.model_id = a.model_id AND h.alias = a.name) AS position,
        (SELECT chg_id FROM alias_history h WHERE h.model_id = a.model_id AND h.alias = a.name ORDER BY position DESC LIMIT 1) AS chg_id,
        (SELECT cause FROM alias_history h WHERE h.model_id = a.model_id AND h.alias = a.name ORDER BY position DESC LIMIT 1) AS cause,
        (SELECT inc_id FROM alias_history h WHERE h.model_id = a.model_id AND h.alias = a.name ORDER BY position DESC LIMIT 1) AS inc_id
     FROM aliases a LEFT JOIN versions v ON v.id = a.version_id
     WHERE ($1 IS NULL OR a.model_id = $1) AND ($2 IS NULL OR a.name = $2)
     ORDER BY a.model_id, a.name";

    /// Every alias (for building the resolve cache at start-up).
    ///
    /// # Errors
    /// Database failures.
    pub async fn all_aliases(&self) -> Result<Vec<AliasRecord>> {
        let rows = sqlx::query(Self::ALIASES_SQL).bind(None::<i64>).bind(None::<String>).fetch_all(&self.read).await?;
        rows.iter().map(AliasRecord::from_row).collect()
    }

    /// Every alias of one model.
    ///
    /// # Errors
    /// Database failures.
    pub async fn aliases_of(&self, model_id: i64) -> Result<Vec<AliasRecord>> {
        let rows = sqlx::query(Self::ALIASES_SQL).bind(model_id).bind(None::<String>).fetch_all(&self.read).await?;
        rows.iter().map(AliasRecord::from_row).collect()
    }

    /// One alias of one model.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_alias(&self, model_id: i64, alias: &str) -> Result<Option<AliasRecord>> {
        let row = sqlx::query(Self::ALIASES_SQL).bind(model_id).bind(alias).fetch_optional(&self.read).await?;
        row.as_ref().map(AliasRecord::from_row).transpose()
    }

    /// # Errors
    /// Database failures.
    pub async fn alias_history(&self, model_id: i64, alias: &str) -> Result<Vec<AliasHistoryRecord>> {
        let rows = sqlx::query(
            "SELECT h.*, v.label, v.seq FROM alias_history h LEFT JOIN versions v ON v.id = h.version_id
             WHERE h.model_id = $1 AND h.alias = $2 ORDER BY h.position",
        )
        .bind(model_id)
        .bind(alias)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(AliasHistoryRecord::from_row).collect()
    }

    // --------------------------------------------------------------- governance

    /// Apply one governance command to a model in one transaction: load its state, let the core
    /// decide, persist the effects and their events, commit.
    ///
    /// # Errors
    /// `NotFound` for unknown models/versions, `Refused` with the core's reason.
    pub async fn govern(
        &self,
        tenant: &str,
        model: &str,
        actor: &Actor,
        cmd: Govern,
        ctx: &GovernCtx,
        now: OffsetDateTime,
    ) -> Result<Governed> {
        self.govern_gated(tenant, model, actor, cmd, ctx, None, now).await
    }

    /// [`Store::govern`] with a policy gate: the gate sees the state inside the transaction; an
    /// allowed decision is written in the same transaction as the change it allowed, a denied one
    /// is returned in `PolicyDenied` and nothing changes.
    ///
    /// # Errors
    /// As [`Store::govern`], plus `PolicyDenied`.
    #[allow(clippy::too_many_arguments)]
    pub async fn govern_gated(
        &self,
        tenant: &str,
        model: &str,
        actor: &Actor,
        cmd: Govern,
        ctx: &GovernCtx,
        gate: Option<Gate<'_>>,
        now: OffsetDateTime,
    ) -> Result<Governed> {
        let mut tx = self.begin_write().await?;
        let m = model_in_tx(&mut tx, tenant, model).await?;
        let mut state = load_state(&mut tx, m.id).await?;
        let id_of = |label: &str| -> Result<VersionId> {
            state
                .versions
                .iter()
                .find(|v| v.label.as_str() == label)
                .map(|v| v.id)
                .ok_or(StoreError::NotFound("version"))
        };
        let command = match &cmd {
            Govern::Approve { version } => Command::Approve { version: id_of(version)? },
            Govern::Promote { version, to } => Command::Promote { version: id_of(version)?, to: *to },
            Govern::Quarantine { version } => {
                Command::Quarantine { version: id_of(version)?, inc_id: ctx.inc_id.clone(), chg_id: ctx.chg_id.clone() }
            }
            Govern::LiftQuarantine { version } => {
                Command::LiftQuarantine { version: id_of(version)?, chg_id: ctx.chg_id.clone() }
            }
            Govern::Revoke { version } => {
                Command::Revoke { version: id_of(version)?, inc_id: ctx.inc_id.clone(), chg_id: ctx.chg_id.clone() }
            }
            Govern::SetAlias { alias, version, env, allow_downgrade } => Command::SetAlias {
                alias: alias.clone(),
                version: id_of(version)?,
                env: *env,
                chg_id: ctx.chg_id.clone(),
                allow_downgrade: *allow_downgrade,
            },
            Govern::DeleteAlias { alias } => {
                if !state.alias_live(alias) {
                    return Err(StoreError::NotFound("alias"));
                }
                Command::DeleteAlias { alias: alias.clone(), chg_id: ctx.chg_id.clone() }
            }
        };
        // The lifecycle's own rules refuse first (with their named reasons); the policy gate
        // then decides on the state as it was before the command.
        let before = gate.map(|_| state.clone());
        let effects = state.apply(actor, command.clone(), now)?;
        let gated = gate.zip(before.as_ref()).and_then(|(g, before)| g(before, &command));
        if let Some(g) = &gated {
            if !g.allow {
                return Err(StoreError::PolicyDenied {
                    reasons: g.reasons.clone(),
                    decision: Box::new(g.decision.clone()),
                });
            }
            if !ctx.dry_run {
                policy::insert_decision(&mut tx, &g.decision).await?;
            }
        }
        if ctx.dry_run {
            // Dropped, not committed: nothing of the preview is kept.
            drop(tx);
            let labels = state.versions.iter().map(|v| (v.id, v.label.to_string())).collect();
            return Ok(Governed { model_id: m.id, effects, ledger: vec![], labels });
        }
        let label = |id: VersionId| state.version(id).map(|v| v.label.to_string());
        let mut ledger = Vec::with_capacity(effects.len());
        for fx in &effects {
            persist_effect(&mut tx, m.id, fx, ctx, now).await?;
            let names = fulcrum_core::event::ModelNames { tenant: &m.tenant, domain: &m.domain, name: &m.name };
            let ev = fulcrum_core::event::lifecycle_event(&state, names, fx, actor, ctx, now, &label);
            let stored = append_event(&mut tx, ev).await?;
            // The lifecycle event that records the change (and names its approvals and change id)
            // stands behind it; the policy decision that allowed it is the leaf just before.
            let leaf = stored.ledger_index.expect("an appended event has a leaf");
            link_ledger(&mut tx, m.id, fx, leaf).await?;
            ledger.push(leaf);
        }
        // A withdrawal under an incident files its version there in the same transaction.
        if let (Some(inc), Command::Revoke { version, .. } | Command::Quarantine { version, .. }) =
            (&ctx.inc_id, &command)
        {
            let via = if matches!(command, Command::Revoke { .. }) { "revocation" } else { "quarantine" };
            let label = state.version(*version).map(|v| v.label.to_string()).unwrap_or_default();
            let title = ctx.reason.clone().unwrap_or_else(|| format!("{via} of {}@{label}", m.name));
            incidents::file_withdrawal(&mut tx, &m.tenant, inc, &m.name, &label, via, &actor.subject, &title, now)
                .await?;
        }
        tx.commit().await?;
        let labels = state.versions.iter().map(|v| (v.id, v.label.to_string())).collect();
        Ok(Governed { model_id: m.id, effects, ledger, labels })
    }

    // -------------------------------------------------------------------- blobs

    /// Let `tenant` read the blob `digest` (idempotent).
    ///
    /// # Errors
    /// Database failures.
    pub async fn grant_blob(&self, tenant: &str, digest: &Digest) -> Result<()> {
        sqlx::query("INSERT INTO blob_grants (tenant, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(tenant)
            .bind(digest.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The blobs a tenant may read, in digest order after `after`, at most `limit` (a scrub's page).
    ///
    /// # Errors
    /// Database failures.
    pub async fn tenant_blobs(&self, tenant: &str, after: Option<&Digest>, limit: u32) -> Result<Vec<Digest>> {
        let rows =
            sqlx::query("SELECT digest FROM blob_grants WHERE tenant = $1 AND digest > $2 ORDER BY digest LIMIT $3")
                .bind(tenant)
                .bind(after.map(ToString::to_string).unwrap_or_default())
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(|r| r.get::<String, _>(0).parse().map_err(|_| records::corrupt("blob digest"))).collect()
    }

    /// The tenants that may read a blob (each is told when its bytes are found damaged).
    ///
    /// # Errors
    /// Database failures.
    pub async fn blob_tenants(&self, digest: &Digest) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT tenant FROM blob_grants WHERE digest = $1 ORDER BY tenant")
            .bind(digest.to_string())
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// # Errors
    /// Database failures.
    pub async fn tenant_has_blob(&self, tenant: &str, digest: &Digest) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM blob_grants WHERE tenant = $1 AND digest = $2")
            .bind(tenant)
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await?
            .is_some())
    }

    /// The versions of `tenant` that name the blob `digest` (a file, the manifest, the release
    /// record, the SBOM, an attestation or a signature), with what the download gate reads:
    /// model name, domain and labels, the version's label, seq, stage, hold and model card.
    ///
    /// # Errors
    /// Database failures.
    pub async fn blob_uses(&self, tenant: &str, digest: &Digest) -> Result<Vec<BlobUse>> {
        let card = self.dialect.json_text("v.release", &["model_card"]);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT m.name, m.domain, m.labels, v.label, v.seq, v.stage, v.hold, {card} AS card
             FROM blob_uses u JOIN versions v ON v.id = u.version_id JOIN models m ON m.id = v.model_id
             WHERE u.tenant = $1 AND u.digest = $2 ORDER BY v.id",
        )))
        .bind(tenant)
        .bind(digest.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let labels: BTreeMap<String, String> =
                    serde_json::from_str(r.get("labels")).map_err(|_| records::corrupt("labels"))?;
                let card: Option<String> = r.get("card");
                let card: serde_json::Value = card
                    .map(|c| serde_json::from_str(&c))
                    .transpose()
                    .map_err(|_| records::corrupt("model_card"))?
                    .unwrap_or_default();
                let (card_labels, purposes) = records::card_dlp(&card);
                Ok(BlobUse {
                    model: r.get("name"),
                    domain: r.get("domain"),
                    version: r.get("label"),
                    seq: r.get::<i64, _>("seq") as u64,
                    stage: r.get::<String, _>("stage").parse().map_err(|()| records::corrupt("stage"))?,
                    hold: r.get::<String, _>("hold").parse().map_err(|()| records::corrupt("hold"))?,
                    labels: fulcrum_core::dlp::version_labels(&labels, &card_labels),
                    purposes,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------- events

    /// Append an event that is not tied to a state change (agent reports), durably: it returns
    /// once the event, its outbox row and its ledger leaf are committed — together with the
    /// events of concurrent callers (group commit), so a fleet of reporters shares fsyncs.
    ///
    /// # Errors
    /// `Unavailable` when the commit failed (nothing of the event is stored).
    pub async fn record_event(&self, ev: EventPayload) -> Result<StoredEvent> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let closing = || StoreError::Unavailable("the store is closing".into());
        self.group.send((ev, tx)).await.map_err(|_| closing())?;
        rx.await.map_err(|_| closing())?
    }

    /// The outbox position of the event with CloudEvent id `id`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn event_seq(&self, id: &str) -> Result<Option<i64>> {
        Ok(sqlx::query("SELECT seq FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .map(|r| r.get(0)))
    }

    /// Group commits made since the store was opened (events / commits = the mean group size).
    pub fn group_commits(&self) -> u64 {
        self.group_commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where `sink` is in the outbox: the last event position it had acknowledged (0: none).
    ///
    /// # Errors
    /// Database failures.
    pub async fn sink_position(&self, sink: &str) -> Result<i64> {
        Ok(sqlx::query("SELECT seq FROM sink_positions WHERE sink = $1")
            .bind(sink)
            .fetch_optional(&self.read)
            .await?
            .map_or(0, |r| r.get(0)))
    }

    /// Move `sink` forward to `seq` (never back).
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_sink_position(&self, sink: &str, seq: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO sink_positions (sink, seq) VALUES ($1, $2)
             ON CONFLICT (sink) DO UPDATE
             SET seq = CASE WHEN excluded.seq > sink_positions.seq THEN excluded.seq ELSE sink_positions.seq END",
        )
        .bind(sink)
        .bind(seq)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Keep an event a sink gave up on.
    ///
    /// # Errors
    /// Database failures.
    pub async fn add_dead_letter(&self, d: &DeadLetter) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_dead_letters (sink, tenant, seq, event_id, attempts, last_error, at) VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(&d.sink)
        .bind(&d.tenant)
        .bind(d.seq)
        .bind(&d.event_id)
        .bind(i64::from(d.attempts))
        .bind(&d.last_error)
        .bind(&d.at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// One dead letter of a tenant (or a registry-wide one).
    ///
    /// # Errors
    /// Database failures.
    pub async fn dead_letter(&self, tenant: &str, id: i64) -> Result<Option<DeadLetter>> {
        let row = sqlx::query("SELECT * FROM webhook_dead_letters WHERE id = $1 AND (tenant = $2 OR tenant = '*')")
            .bind(id)
            .bind(tenant)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(dead_letter_from_row))
    }

    /// After a re-delivery: resolved (`Ok`) by `by`, or one more failed attempt (`Err(error)`).
    ///
    /// # Errors
    /// Database failures.
    pub async fn settle_dead_letter(
        &self,
        id: i64,
        outcome: std::result::Result<(), &str>,
        by: &str,
        at: &str,
    ) -> Result<()> {
        let q = match outcome {
            Ok(()) => sqlx::query(
                "UPDATE webhook_dead_letters SET resolved_at = $1, resolved_by = $2, attempts = attempts + 1 WHERE id = $3",
            )
            .bind(at)
            .bind(by),
            Err(e) => sqlx::query(
                "UPDATE webhook_dead_letters SET at = $1, last_error = $2, attempts = attempts + 1 WHERE id = $3",
            )
            .bind(at)
            .bind(e),
        };
        q.bind(id).execute(&self.write).await?;
        Ok(())
    }

    /// The stored CloudEvent at outbox position `seq`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn event_body(&self, seq: i64) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT body FROM events WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.read)
            .await?
            .map(|r| r.get(0)))
    }

    /// Dead letters of a tenant (and registry-wide ones), newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn dead_letters(&self, tenant: &str, limit: u32) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_dead_letters WHERE tenant = $1 OR tenant = '*' ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(dead_letter_from_row).collect())
    }

    /// Events after position `after`, oldest first; `tenant = None` reads every tenant.
    ///
    /// # Errors
    /// Database failures.
    pub async fn events_after(&self, tenant: Option<&str>, after: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        // Registry-wide events (key rotation) carry tenant '*' and are visible to every tenant.
        let rows = match tenant {
            Some(t) => sqlx::query(
                "SELECT seq, body FROM events WHERE (tenant = $1 OR tenant = '*') AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(t)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?,
            None => {
                sqlx::query("SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?
            }
        };
        Ok(rows.iter().map(|r| StoredEvent { seq: r.get(0), ledger_index: None, body: r.get(1) }).collect())
    }

    /// The events of one kind up to position `upto`, oldest first (indexed by kind; for the
    /// few kinds a registry reads back at start, such as the notices its watchers raised).
    ///
    /// # Errors
    /// Database failures.
    pub async fn events_of_kind(&self, kind: EventKind, upto: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT seq, body FROM events WHERE kind = $1 AND seq <= $2 ORDER BY seq")
            .bind(kind.as_str())
            .bind(upto)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(|r| StoredEvent { seq: r.get(0), ledger_index: None, body: r.get(1) }).collect())
    }

    /// # Errors
    /// Database failures.
    pub async fn last_event_seq(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM events").fetch_one(&self.read).await?.get(0))
    }
}

/// A policy gate run inside the governance transaction, on the state the command will change.
/// `None` = no gate for this command.
pub type Gate<'a> = &'a (dyn Fn(&ModelState, &Command) -> Option<GateResult> + Sync);

/// A gate's decision and the record to log for it.
#[derive(Debug, Clone)]
pub struct GateResult {
    pub allow: bool,
    pub reasons: Vec<String>,
    pub decision: DecisionRow,
}

/// A governance command, addressed by labels as the API receives them.
#[derive(Debug, Clone)]
pub enum Govern {
    Approve { version: String },
    Promote { version: String, to: Stage },
    Quarantine { version: String },
    LiftQuarantine { version: String },
    Revoke { version: String },
    SetAlias { alias: AliasName, version: String, env: Option<Env>, allow_downgrade: bool },
    DeleteAlias { alias: AliasName },
}

/// Context carried into events and records (defined with the event mapping, in the core).
pub use fulcrum_core::event::GovernCtx;

#[derive(Debug, Clone)]
pub struct Governed {
    pub model_id: i64,
    pub effects: Vec<Effect>,
    /// For each effect, the ledger leaf of the lifecycle event that records it.
    pub ledger: Vec<u64>,
    /// Version id → label, for every version of the model.
    pub labels: BTreeMap<VersionId, String>,
}

async fn model_in_tx(tx: &mut Conn, tenant: &str, name: &str) -> Result<ModelRecord> {
    let row = sqlx::query("SELECT * FROM models WHERE tenant = $1 AND name = $2")
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| ModelRecord::from_row(&r)).transpose()?.ok_or(StoreError::NotFound("model"))
}

async fn load_state(tx: &mut Conn, model_id: i64) -> Result<ModelState> {
    let rows = sqlx::query("SELECT id, label, seq, artifact_digest, stage, hold, hold_epoch, publisher FROM versions WHERE model_id = $1 ORDER BY seq")
        .bind(model_id)
        .fetch_all(&mut *tx)
        .await?;
    let mut versions = Vec::with_capacity(rows.len());
    for r in &rows {
        versions.push(VersionGov {
            id: r.get("id"),
            label: VersionLabel::parse(r.get::<&str, _>("label")).map_err(|_| corrupt("version label"))?,
            seq: r.get::<i64, _>("seq") as u64,
            artifact_digest: r.get::<&str, _>("artifact_digest").parse().map_err(|_| corrupt("artifact digest"))?,
            stage: r.get::<&str, _>("stage").parse().map_err(|()| corrupt("stage"))?,
            hold: r.get::<&str, _>("hold").parse().map_err(|()| corrupt("hold"))?,
            hold_epoch: r.get::<i64, _>("hold_epoch") as u32,
            publisher: r.get("publisher"),
            approvals: vec![],
        });
    }
    let approvals = sqlx::query(
        "SELECT a.version_id, a.subject, a.role, a.kind, a.epoch FROM approvals a JOIN versions v ON v.id = a.version_id WHERE v.model_id = $1 ORDER BY a.id",
    )
    .bind(model_id)
    .fetch_all(&mut *tx)
    .await?;
    for r in &approvals {
        let vid: i64 = r.get("version_id");
        let a = Approval {
            subject: r.get("subject"),
            role: Role::from_str(r.get::<&str, _>("role")).map_err(|()| corrupt("role"))?,
            kind: if r.get::<&str, _>("kind") == "lift" { ApprovalKind::Lift } else { ApprovalKind::Promotion },
            epoch: r.get::<i64, _>("epoch") as u32,
        };
        if let Some(v) = versions.iter_mut().find(|v| v.id == vid) {
            v.approvals.push(a);
        }
    }
    let mut aliases = BTreeMap::new();
    for r in sqlx::query("SELECT name, env, version_id FROM aliases WHERE model_id = $1")
        .bind(model_id)
        .fetch_all(&mut *tx)
        .await?
    {
        let name = AliasName::parse(r.get::<&str, _>("name")).map_err(|_| corrupt("alias name"))?;
        let env = Env::from_str(r.get::<&str, _>("env")).map_err(|()| corrupt("env"))?;
        aliases.insert(name, AliasState { env, target: r.get("version_id"), history: vec![] });
    }
    for r in sqlx::query("SELECT * FROM alias_history WHERE model_id = $1 ORDER BY alias, position")
        .bind(model_id)
        .fetch_all(&mut *tx)
        .await?
    {
        let name = AliasName::parse(r.get::<&str, _>("alias")).map_err(|_| corrupt("alias name"))?;
        let entry = AliasEntry {
            position: r.get::<i64, _>("position") as u64,
            version: r.get("version_id"),
            cause: AliasCause::from_str(r.get::<&str, _>("cause")).map_err(|()| corrupt("alias cause"))?,
            chg_id: r.get("chg_id"),
            inc_id: r.get("inc_id"),
            actor: r.get("actor"),
            at: OffsetDateTime::parse(r.get::<&str, _>("created_at"), &Rfc3339).map_err(|_| corrupt("time"))?,
        };
        aliases.get_mut(&name).ok_or_else(|| corrupt("history without alias"))?.history.push(entry);
    }
    Ok(ModelState { versions, aliases })
}

/// Remember which ledger leaf stands behind a version's stage/hold or an alias's target.
async fn link_ledger(tx: &mut Conn, model_id: i64, fx: &Effect, leaf: u64) -> Result<()> {
    match fx {
        Effect::Approved { .. } => {}
        Effect::StageChanged { version, .. } | Effect::HoldChanged { version, .. } => {
            sqlx::query("UPDATE versions SET ledger_index = $1 WHERE id = $2")
                .bind(leaf as i64)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        Effect::AliasMoved { alias, .. } => {
            sqlx::query("UPDATE aliases SET ledger_index = $1 WHERE model_id = $2 AND name = $3")
                .bind(leaf as i64)
                .bind(model_id)
                .bind(alias.as_str())
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

async fn persist_effect(tx: &mut Conn, model_id: i64, fx: &Effect, ctx: &GovernCtx, now: OffsetDateTime) -> Result<()> {
    match fx {
        Effect::Approved { version, approval } => {
            sqlx::query("INSERT INTO approvals (version_id, subject, role, kind, epoch, comment, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7)")
                .bind(version)
                .bind(&approval.subject)
                .bind(approval.role.as_str())
                .bind(match approval.kind {
                    ApprovalKind::Promotion => "promotion",
                    ApprovalKind::Lift => "lift",
                })
                .bind(i64::from(approval.epoch))
                .bind(ctx.comment.as_deref().unwrap_or(""))
                .bind(ts(now))
                .execute(&mut *tx)
                .await?;
        }
        Effect::StageChanged { version, to, .. } => {
            sqlx::query("UPDATE versions SET stage = $1 WHERE id = $2")
                .bind(to.as_str())
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        Effect::HoldChanged { version, to, epoch, .. } => {
            sqlx::query("UPDATE versions SET hold = $1, hold_epoch = $2, hold_reason = $3 WHERE id = $4")
                .bind(to.as_str())
                .bind(i64::from(*epoch))
                .bind(&ctx.reason)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        Effect::AliasMoved { alias, env, to, entry, .. } => {
            sqlx::query(
                "INSERT INTO aliases (model_id, name, env, version_id) VALUES ($1,$2,$3,$4)
                 ON CONFLICT (model_id, name) DO UPDATE SET version_id = excluded.version_id",
            )
            .bind(model_id)
            .bind(alias.as_str())
            .bind(env.as_str())
            .bind(to)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO alias_history (model_id, alias, position, version_id, cause, chg_id, inc_id, actor, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
            )
            .bind(model_id)
            .bind(alias.as_str())
            .bind(entry.position as i64)
            .bind(entry.version)
            .bind(entry.cause.as_str())
            .bind(&entry.chg_id)
            .bind(&entry.inc_id)
            .bind(&entry.actor)
            .bind(ts(entry.at))
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Rows per multi-row INSERT (6 bound values each, well under SQLite's variable limit).
const ROWS_PER_INSERT: usize = 128;

/// Append several events (and their ledger leaves) with a few multi-row statements: positions
/// and leaves follow in order, exactly as one [`append_event`] after another would give them.
pub(crate) async fn append_events(tx: &mut Conn, evs: Vec<EventPayload>) -> Result<Vec<StoredEvent>> {
    if evs.is_empty() {
        return Ok(vec![]);
    }
    let first_seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetch_one(&mut *tx).await?.get(0);
    let first_idx: i64 =
        sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetch_one(&mut *tx).await?.get(0);
    let rows: Vec<(i64, String, String, String, &'static str, String)> = evs
        .into_iter()
        .zip(first_seq..)
        .map(|(ev, seq)| {
            let (tenant, model, kind) = (ev.tenant.clone(), ev.model.clone(), ev.event.as_str());
            let ce = CloudEvent::wrap(uuid::Uuid::now_v7().to_string(), seq, ev);
            let body = serde_json::to_string(&ce).expect("events serialise");
            (seq, ce.id, tenant, model, kind, body)
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO events (seq, id, tenant, model, kind, body) VALUES {}",
            db::numbered_rows("(?,?,?,?,?,?)", chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())); // placeholders only
        for (seq, id, tenant, model, kind, body) in chunk {
            q = q.bind(seq).bind(id).bind(tenant).bind(model).bind(*kind).bind(body);
        }
        q.execute(&mut *tx).await?;
        let sql = format!(
            "INSERT INTO ledger_leaves (idx, kind, ref, tenant, hash) VALUES {}",
            db::numbered_rows("(?,'event',?,?,?)", chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())); // placeholders only
        for (seq, _, tenant, _, _, body) in chunk {
            let hash = fulcrum_ledger::merkle::leaf_hash(body.as_bytes());
            q = q.bind(first_idx + (seq - first_seq)).bind(seq).bind(tenant).bind(hash.to_vec());
        }
        q.execute(&mut *tx).await?;
    }
    Ok(rows
        .into_iter()
        .map(|(seq, _, _, _, _, body)| StoredEvent {
            seq,
            ledger_index: Some((first_idx + (seq - first_seq)) as u64),
            body,
        })
        .collect())
}

fn dead_letter_from_row(r: &db::Row) -> DeadLetter {
    DeadLetter {
        id: r.get("id"),
        sink: r.get("sink"),
        tenant: r.get("tenant"),
        seq: r.get("seq"),
        event_id: r.get("event_id"),
        attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(0),
        last_error: r.get("last_error"),
        at: r.get("at"),
        resolved_at: r.get("resolved_at"),
        resolved_by: r.get("resolved_by"),
    }
}

/// Append one event (and its ledger leaf).
pub(crate) async fn append_event(tx: &mut Conn, ev: EventPayload) -> Result<StoredEvent> {
    Ok(append_events(tx, vec![ev]).await?.pop().expect("one event in, one out"))
}

/// Every blob a version names: its files, its manifest, its release record and the SBOM,
/// reference profile, attestations and signatures its record lists (as migration 0014
/// backfills them; reference profiles came later and were never backfilled: none existed).
fn version_blobs(manifest: &Manifest, record: &Digest, release: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = manifest.files().iter().map(|f| f.digest.to_string()).collect();
    out.push(manifest.digest().to_string());
    out.push(record.to_string());
    out.extend(release["sbom"].as_str().map(str::to_owned));
    out.extend(release["reference_profile"]["digest"].as_str().map(str::to_owned));
    for list in ["attestations", "signatures"] {
        out.extend(release[list].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(str::to_owned)));
    }
    out
}

/// A manifest plus what CI submitted, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub label: VersionLabel,
    pub manifest: Manifest,
    /// Digest of the release-record blob (SBOM, attestations, signatures, card, datasets).
    pub record_digest: Digest,
    pub release: serde_json::Value,
    pub publisher: String,
    pub chg_id: Option<String>,
}
