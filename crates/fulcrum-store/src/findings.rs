//! Findings and waivers.

use fulcrum_core::findings::{Finding, Severity};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError, ts};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WaiverRecord {
    pub id: String,
    pub model: String,
    pub version: Option<String>,
    pub finding: String,
    pub justification: String,
    pub approver: String,
    pub expires_at: String,
    pub created_at: String,
}

impl Store {
    /// Record findings for a version (a finding already recorded is updated to the new report),
    /// with `event` (`findings_recorded`) appended to the log in the same transaction.
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_findings(
        &self,
        version_id: i64,
        findings: &[Finding],
        source: &str,
        who: &str,
        now: OffsetDateTime,
        event: fulcrum_core::event::EventPayload,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        crate::append_event(&mut tx, event).await?;
        for f in findings {
            sqlx::query(
                "INSERT INTO findings (version_id, finding, severity, status, package, source, reported_by, reported_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
                 ON CONFLICT (version_id, finding) DO UPDATE SET severity = excluded.severity, status = excluded.status,
                   package = excluded.package, source = excluded.source, reported_by = excluded.reported_by, reported_at = excluded.reported_at",
            )
            .bind(version_id)
            .bind(&f.id)
            .bind(f.severity.as_str())
            .bind(&f.status)
            .bind(&f.package)
            .bind(source)
            .bind(who)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// # Errors
    /// Database failures.
    pub async fn findings(&self, version_id: i64) -> Result<Vec<Finding>> {
        let rows = sqlx::query(
            "SELECT finding, severity, status, package FROM findings WHERE version_id = $1 ORDER BY finding",
        )
        .bind(version_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Finding {
                id: r.get(0),
                severity: Severity::parse(r.get::<&str, _>(1)),
                status: r.get(2),
                package: r.get(3),
            })
            .collect())
    }

    /// Grant a waiver, with `event` (`waiver_granted`) appended to the log in the same
    /// transaction.
    ///
    /// # Errors
    /// `Conflict` for a waiver id already used.
    #[allow(clippy::too_many_arguments)]
    pub async fn grant_waiver(
        &self,
        tenant: &str,
        model_id: i64,
        version_id: Option<i64>,
        w: &WaiverRecord,
        now: OffsetDateTime,
        event: fulcrum_core::event::EventPayload,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 FROM waivers WHERE id = $1").bind(&w.id).fetch_optional(&mut *tx).await?.is_some() {
            return Err(StoreError::Conflict(format!("waiver {} already exists", w.id)));
        }
        crate::append_event(&mut tx, event).await?;
        sqlx::query("INSERT INTO waivers (id, tenant, model_id, version_id, finding, justification, approver, expires_at, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)")
            .bind(&w.id)
            .bind(tenant)
            .bind(model_id)
            .bind(version_id)
            .bind(&w.finding)
            .bind(&w.justification)
            .bind(&w.approver)
            .bind(&w.expires_at)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Approved versions that serve (no hold) and have open findings of a blocking severity
    /// (critical, high): what the leader's findings watcher looks at, as (tenant, model id,
    /// model name, version id, version label).
    ///
    /// # Errors
    /// Database failures.
    pub async fn serving_versions_with_blocking_findings(&self) -> Result<Vec<(String, i64, String, i64, String)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT m.tenant, m.id, m.name, v.id, v.label FROM findings f
               JOIN versions v ON v.id = f.version_id JOIN models m ON m.id = v.model_id
             WHERE f.status = 'open' AND lower(f.severity) IN ('critical', 'high')
               AND v.stage = 'Approved' AND v.hold = 'none'
             ORDER BY m.tenant, m.name, v.label",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect())
    }

    /// Open findings by severity of every Approved version without a hold: (tenant, model,
    /// version, severity, count). What the findings gauge shows.
    ///
    /// # Errors
    /// Database failures.
    pub async fn open_findings_of_serving(&self) -> Result<Vec<(String, String, String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT m.tenant, m.name, v.label, lower(f.severity), COUNT(*) FROM findings f
               JOIN versions v ON v.id = f.version_id JOIN models m ON m.id = v.model_id
             WHERE f.status = 'open' AND v.stage = 'Approved' AND v.hold = 'none'
             GROUP BY m.tenant, m.name, v.label, lower(f.severity)
             ORDER BY m.tenant, m.name, v.label",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect())
    }

    /// Approved versions not revoked whose release record names a `revalidate_by` date at or
    /// before `until` (RFC 3339, compared as instants here): (tenant, model, domain, version,
    /// revalidate_by). What the revalidation watcher looks at.
    ///
    /// # Errors
    /// Database failures.
    pub async fn revalidations_before(
        &self,
        until: OffsetDateTime,
    ) -> Result<Vec<(String, String, String, String, OffsetDateTime)>> {
        let rb = self.dialect.json_text("v.release", &["revalidate_by"]);
        let sql = format!(
            "SELECT m.tenant, m.name, m.domain, v.label, {rb} FROM versions v JOIN models m ON m.id = v.model_id
             WHERE v.stage = 'Approved' AND v.hold <> 'revoked' AND {rb} IS NOT NULL
             ORDER BY m.tenant, m.name, v.seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.read).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let at = OffsetDateTime::parse(&r.get::<String, _>(4), &time::format_description::well_known::Rfc3339)
                    .ok()?;
                (at <= until).then(|| (r.get(0), r.get(1), r.get(2), r.get(3), at))
            })
            .collect())
    }

    /// Waivers that apply to a model (and, when given, one of its versions).
    ///
    /// # Errors
    /// Database failures.
    pub async fn waivers(&self, model_id: i64, version_id: Option<i64>) -> Result<Vec<WaiverRecord>> {
        let rows = sqlx::query(
            "SELECT w.*, m.name AS model_name, v.label AS version_label FROM waivers w JOIN models m ON m.id = w.model_id
             LEFT JOIN versions v ON v.id = w.version_id
             WHERE w.model_id = $1 AND (w.version_id IS NULL OR $2 IS NULL OR w.version_id = $3) ORDER BY w.created_at, w.id",
        )
        .bind(model_id)
        .bind(version_id)
        .bind(version_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| WaiverRecord {
                id: r.get("id"),
                model: r.get("model_name"),
                version: r.get("version_label"),
                finding: r.get("finding"),
                justification: r.get("justification"),
                approver: r.get("approver"),
                expires_at: r.get("expires_at"),
                created_at: r.get("created_at"),
            })
            .collect())
    }
}
