//! Catalog lookups by what a version came from, per tenant: which versions used a dataset
//! snapshot (URI + digest), and which were registered from an OCI manifest. Rows are written
//! with the version (one transaction) and never change.

use sqlx::Row;

use crate::{Result, Store};

/// A version as a catalog lookup lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedVersion {
    /// Position for paging (the row's version id).
    pub version_id: i64,
    pub model: String,
    pub domain: String,
    pub version: String,
    pub stage: String,
    pub hold: String,
    pub artifact_digest: String,
    pub registered_at: String,
}

/// The columns every lookup selects first, in this order.
const LISTED: &str = "v.id, m.name, m.domain, v.label, v.stage, v.hold, v.artifact_digest, v.created_at";

fn listed(r: &crate::db::Row) -> ListedVersion {
    ListedVersion {
        version_id: r.get(0),
        model: r.get(1),
        domain: r.get(2),
        version: r.get(3),
        stage: r.get(4),
        hold: r.get(5),
        artifact_digest: r.get(6),
        registered_at: r.get(7),
    }
}

/// One version that used a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetUse {
    pub listed: ListedVersion,
    /// The URI(s) the version named the snapshot by.
    pub uris: Vec<String>,
}

/// One version registered from an OCI manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSource {
    pub listed: ListedVersion,
    /// `registry/repository` it was pulled from.
    pub repository: String,
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
            "SELECT {LISTED}, {uris}
             FROM dataset_uses u JOIN versions v ON v.id = u.version_id JOIN models m ON m.id = v.model_id
             WHERE u.tenant = $1 AND u.digest = $2 AND u.version_id > $3
             GROUP BY v.id, m.name, m.domain, v.label, v.stage, v.hold, v.artifact_digest, v.created_at
             ORDER BY v.id LIMIT $4"
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
                listed: listed(r),
                uris: serde_json::from_str(r.get::<&str, _>(8)).unwrap_or_default(),
            })
            .collect())
    }

    /// Versions of `tenant` registered from the OCI manifest `digest` (any repository), oldest
    /// first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn oci_sources(&self, tenant: &str, digest: &str) -> Result<Vec<OciSource>> {
        let sql = format!(
            "SELECT {LISTED}, o.repository
             FROM oci_sources o JOIN versions v ON v.id = o.version_id JOIN models m ON m.id = v.model_id
             WHERE o.tenant = $1 AND o.digest = $2 ORDER BY v.id LIMIT 100"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(digest).fetch_all(&self.read).await?;
        Ok(rows.iter().map(|r| OciSource { listed: listed(r), repository: r.get(8) }).collect())
    }
}
