//! Policy snapshots and decision logs.

use sqlx::Row;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError, append_event, ts};
use fulcrum_core::event::{EventKind, EventPayload};

#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    pub digest: String,
    pub body: Vec<u8>,
    pub envelope: Vec<u8>,
    pub installed_by: String,
    pub installed_at: String,
}

/// How a snapshot came to be in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallKind {
    /// A snapshot installed for the first time.
    Install,
    /// A snapshot installed before, put back in force by its digest.
    Rollback,
    /// The shipped default, put in force by the host operator's break-glass reset.
    Reset,
}

impl InstallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallKind::Install => "install",
            InstallKind::Rollback => "rollback",
            InstallKind::Reset => "reset",
        }
    }
}

/// What an install records besides the snapshot.
#[derive(Debug, Clone)]
pub struct PolicyInstall {
    /// `Install` also covers re-applying a stored snapshot (recorded as `Rollback`).
    pub kind: InstallKind,
    pub reason: Option<String>,
}

/// One row of the policy history.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyHistoryEntry {
    pub seq: i64,
    pub digest: String,
    pub kind: String,
    pub installed_by: String,
    pub installed_at: String,
    pub reason: Option<String>,
}

/// One decision to log, with what to index it by.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub decision_id: String,
    pub tenant: String,
    pub model: Option<String>,
    pub version: Option<String>,
    pub path: String,
    pub allow: bool,
    pub revision: String,
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    /// The OPA-shaped record, JSON.
    pub record: String,
}

#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub tenant: String,
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub decision_id: Option<String>,
    /// Rule path, e.g. `fulcrum/promotion/decision`. (Access decisions live in `access`.)
    pub path: Option<String>,
    pub after: i64,
    pub limit: u32,
}

/// Store a decision and append its leaf; its ledger index.
pub(crate) async fn insert_decision(tx: &mut crate::db::Conn, d: &DecisionRow) -> Result<u64> {
    let seq: i64 = sqlx::query(
        "INSERT INTO decisions (decision_id, tenant, model, version, path, allow, revision, chg_id, inc_id, record) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING seq",
    )
    .bind(&d.decision_id)
    .bind(&d.tenant)
    .bind(&d.model)
    .bind(&d.version)
    .bind(&d.path)
    .bind(i64::from(d.allow))
    .bind(&d.revision)
    .bind(&d.chg_id)
    .bind(&d.inc_id)
    .bind(&d.record)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    crate::ledger::append(tx, crate::ledger::LeafKind::Decision, seq, &d.tenant, d.record.as_bytes()).await
}

fn snapshot_from_row(r: &crate::db::Row) -> SnapshotRecord {
    SnapshotRecord {
        digest: r.get("digest"),
        body: r.get("body"),
        envelope: r.get("envelope"),
        installed_by: r.get("installed_by"),
        installed_at: r.get("installed_at"),
    }
}

impl Store {
    /// The snapshot in force (the one the newest install, rollback or reset names).
    ///
    /// # Errors
    /// Database failures.
    pub async fn current_policy(&self) -> Result<Option<SnapshotRecord>> {
        let row = sqlx::query(
            "SELECT s.* FROM policy_installs i JOIN policy_snapshots s ON s.digest = i.digest ORDER BY i.seq DESC LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(snapshot_from_row))
    }

    /// # Errors
    /// Database failures.
    pub async fn policy_by_digest(&self, digest: &str) -> Result<Option<SnapshotRecord>> {
        let row = sqlx::query("SELECT * FROM policy_snapshots WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(snapshot_from_row))
    }

    /// Put a snapshot in force and emit `policy_changed` (unless `emit` is false: the first
    /// start's shipped default), in one transaction. A new snapshot is stored; one stored before
    /// is put back in force (a rollback: `kind` becomes `Rollback`). The snapshot already in
    /// force is refused, except for a break-glass reset, which is always recorded and announced.
    /// Returns the kind recorded.
    ///
    /// # Errors
    /// `Conflict` for the snapshot already in force (install or rollback).
    pub async fn install_policy(
        &self,
        s: &SnapshotRecord,
        install: &PolicyInstall,
        emit: bool,
        now: OffsetDateTime,
    ) -> Result<InstallKind> {
        let mut tx = self.begin_write().await?;
        let current: Option<String> = sqlx::query("SELECT digest FROM policy_installs ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        if current.as_deref() == Some(s.digest.as_str()) && install.kind != InstallKind::Reset {
            return Err(StoreError::Conflict(format!("policy snapshot {} is already in force", s.digest)));
        }
        let stored = sqlx::query("SELECT 1 FROM policy_snapshots WHERE digest = $1")
            .bind(&s.digest)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let kind = match install.kind {
            InstallKind::Install if stored => InstallKind::Rollback,
            k => k,
        };
        if !stored {
            sqlx::query(
                "INSERT INTO policy_snapshots (digest, body, envelope, installed_by, installed_at) VALUES ($1,$2,$3,$4,$5)",
            )
            .bind(&s.digest)
            .bind(&s.body)
            .bind(&s.envelope)
            .bind(&s.installed_by)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO policy_installs (digest, kind, installed_by, installed_at, reason) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(&s.digest)
        .bind(kind.as_str())
        .bind(&s.installed_by)
        .bind(ts(now))
        .bind(&install.reason)
        .execute(&mut *tx)
        .await?;
        if emit {
            let mut ev = EventPayload::new(EventKind::PolicyChanged, now, "*", "*", "_registry");
            ev.from.clone_from(&current);
            ev.to = Some(s.digest.clone());
            ev.policy_digest = Some(s.digest.clone());
            ev.actor = Some(s.installed_by.clone());
            ev.detail = Some(kind.as_str().to_owned());
            ev.reason.clone_from(&install.reason);
            append_event(&mut tx, ev).await?;
        }
        tx.commit().await?;
        Ok(kind)
    }

    /// Every install, rollback and reset, newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn policy_history(&self, limit: u32) -> Result<Vec<PolicyHistoryEntry>> {
        let rows = sqlx::query(
            "SELECT seq, digest, kind, installed_by, installed_at, reason FROM policy_installs ORDER BY seq DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PolicyHistoryEntry {
                seq: r.get("seq"),
                digest: r.get("digest"),
                kind: r.get("kind"),
                installed_by: r.get("installed_by"),
                installed_at: r.get("installed_at"),
                reason: r.get("reason"),
            })
            .collect())
    }

    /// Log a decision on its own (a denial, whose change was not applied, or a release gate's
    /// allow that the release attestation then names); its ledger index.
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_decision(&self, d: &DecisionRow) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let idx = insert_decision(&mut tx, d).await?;
        tx.commit().await?;
        Ok(idx)
    }

    /// Decision records of every tenant after position `after`, oldest first, at most `limit`
    /// (what the SIEM push sends, in order).
    ///
    /// # Errors
    /// Database failures.
    pub async fn decisions_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT seq, record FROM decisions WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The newest `limit` decision records about one version (gates and lifecycle refusals),
    /// oldest first: a version page.
    ///
    /// # Errors
    /// Database failures.
    pub async fn version_decisions(
        &self,
        tenant: &str,
        model: &str,
        version: &str,
        limit: u32,
    ) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT seq, record FROM decisions WHERE tenant = $1 AND model = $2 AND version = $3 ORDER BY seq DESC LIMIT $4",
        )
        .bind(tenant)
        .bind(model)
        .bind(version)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().rev().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Decision records of a tenant, oldest first, filtered.
    ///
    /// # Errors
    /// Database failures.
    pub async fn decisions(&self, q: &DecisionQuery) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT seq, record FROM decisions WHERE tenant = $1 AND seq > $2
               AND ($3 IS NULL OR chg_id = $4) AND ($5 IS NULL OR inc_id = $6) AND ($7 IS NULL OR model = $8)
               AND ($9 IS NULL OR version = $10) AND ($11 IS NULL OR decision_id = $12) AND ($13 IS NULL OR path = $14)
             ORDER BY seq LIMIT $15",
        )
        .bind(&q.tenant)
        .bind(q.after)
        .bind(&q.chg_id)
        .bind(&q.chg_id)
        .bind(&q.inc_id)
        .bind(&q.inc_id)
        .bind(&q.model)
        .bind(&q.model)
        .bind(&q.version)
        .bind(&q.version)
        .bind(&q.decision_id)
        .bind(&q.decision_id)
        .bind(&q.path)
        .bind(&q.path)
        .bind(i64::from(q.limit))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
