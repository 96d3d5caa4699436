//! The data catalog: which versions used a dataset snapshot (URI + digest), per tenant. Rows are
//! written with the version (one transaction) and never change.

use sqlx::Row;

use crate::{Result, Store};

/// One version that used a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetUse {
    /// Position for paging (the row's version id).
    pub version_id: i64,
    pub model: String,
    pub domain: String,
    pub version: String,
    pub stage: String,
    pub hold: String,
    pub artifact_digest: String,
    /// The URI(s) the version named the snapshot by.
    pub uris: Vec<String>,
    pub registered_at: String,
}

impl Store {
    /// Versions of `tenant` that used the snapshot `digest`, in registration order, after the
    /// version id `after`, at most `limit`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn dataset_uses(&self, tenant: &str, digest: &str, after: i64, limit: u32) -> Result<Vec<DatasetUse>> {
        let uris = self.dialect.json_array_agg("u.uri");
        let sql = format!(
            "SELECT u.version_id, {uris}, m.name, m.domain, v.label, v.stage, v.hold, v.artifact_digest, v.created_at
             FROM dataset_uses u JOIN versions v ON v.id = u.version_id JOIN models m ON m.id = v.model_id
             WHERE u.tenant = $1 AND u.digest = $2 AND u.version_id > $3
             GROUP BY u.version_id, m.name, m.domain, v.label, v.stage, v.hold, v.artifact_digest, v.created_at
             ORDER BY u.version_id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(digest)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| DatasetUse {
                version_id: r.get(0),
                uris: serde_json::from_str(r.get::<&str, _>(1)).unwrap_or_default(),
                model: r.get(2),
                domain: r.get(3),
                version: r.get(4),
                stage: r.get(5),
                hold: r.get(6),
                artifact_digest: r.get(7),
                registered_at: r.get(8),
            })
            .collect())
    }

    /// Versions of `tenant` registered from the OCI manifest `digest` (any repository), oldest
    /// first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn oci_sources(&self, tenant: &str, digest: &str) -> Result<Vec<OciSource>> {
        let rows = sqlx::query(
            "SELECT o.version_id, o.repository, m.name, m.domain, v.label, v.stage, v.hold, v.artifact_digest, v.created_at
             FROM oci_sources o JOIN versions v ON v.id = o.version_id JOIN models m ON m.id = v.model_id
             WHERE o.tenant = $1 AND o.digest = $2 ORDER BY o.version_id LIMIT 100",
        )
        .bind(tenant)
        .bind(digest)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| OciSource {
                version_id: r.get(0),
                repository: r.get(1),
                model: r.get(2),
                domain: r.get(3),
                version: r.get(4),
                stage: r.get(5),
                hold: r.get(6),
                artifact_digest: r.get(7),
                registered_at: r.get(8),
            })
            .collect())
    }
}

/// One version registered from an OCI manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSource {
    pub version_id: i64,
    /// `registry/repository` it was pulled from.
    pub repository: String,
    pub model: String,
    pub domain: String,
    pub version: String,
    pub stage: String,
    pub hold: String,
    pub artifact_digest: String,
    pub registered_at: String,
}
