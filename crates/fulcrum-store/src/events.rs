//! A model's events read back by kind, by the version they name, or by position: an incident's
//! serving steps, a version page's history, a dashboard's windows. (The log itself is appended
//! in `lib.rs`; these only read it.)

use fulcrum_core::event::EventKind;
use sqlx::Row;

use crate::db::Row as SqlRow;
use crate::{Result, Store, StoredEvent};

/// `'kind', …` for an `IN (…)` clause (kinds are Fulcrum's own names, never input).
fn kinds_in(kinds: &[EventKind]) -> String {
    kinds.iter().map(|k| format!("'{}'", k.as_str())).collect::<Vec<_>>().join(", ")
}

/// The governance kinds of a version's history, in the order the partial index
/// `events_by_version` (sqlite 0023, postgres 0008) lists them: change both together, or the
/// index is no longer used.
pub const VERSION_HISTORY: [EventKind; 7] = [
    EventKind::ReleasePublished,
    EventKind::Approval,
    EventKind::Promotion,
    EventKind::Quarantined,
    EventKind::QuarantineReleased,
    EventKind::Revocation,
    EventKind::AliasUpdated,
];

/// `(seq, body)` rows as stored events.
pub(crate) fn stored(rows: &[SqlRow]) -> Vec<StoredEvent> {
    rows.iter().map(|r| StoredEvent { seq: r.get(0), ledger_index: None, body: r.get(1) }).collect()
}

impl Store {
    /// The query behind [`Store::version_events`] (the partial index `events_by_version` must
    /// answer it: see the test below).
    fn version_events_sql(&self) -> String {
        let kinds = kinds_in(&VERSION_HISTORY);
        let named = self.dialect.json_text_lenient("body", &["data", "version"]);
        format!(
            "SELECT seq, body FROM events WHERE tenant = $1 AND model = $2 AND {named} = $3 AND kind IN ({kinds})
             ORDER BY seq DESC LIMIT $4"
        )
    }

    /// A model's events of the given kinds in the position range `(after, upto]`, oldest
    /// first, at most `limit` (an incident's serving steps and figures).
    ///
    /// # Errors
    /// Database failures.
    pub async fn model_events_between(
        &self,
        tenant: &str,
        model: &str,
        kinds: &[EventKind],
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let kinds = kinds_in(kinds);
        let sql = format!(
            "SELECT seq, body FROM events WHERE tenant = $1 AND model = $2 AND seq > $3 AND seq <= $4
               AND kind IN ({kinds}) ORDER BY seq LIMIT $5",
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(model)
            .bind(after)
            .bind(upto)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        Ok(stored(&rows))
    }

    /// The newest `limit` governance events ([`VERSION_HISTORY`]) that name `version` (an alias
    /// move names its target), oldest first: a version page's history.
    ///
    /// # Errors
    /// Database failures.
    pub async fn version_events(
        &self,
        tenant: &str,
        model: &str,
        version: &str,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let sql = self.version_events_sql();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(model)
            .bind(version)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        let mut out = stored(&rows);
        out.reverse();
        Ok(out)
    }

    /// A model's newest `limit` events of the given kinds in the position range `(after, before)`
    /// (`0, i64::MAX` for all), newest first: a dashboard reading back page by page until its
    /// range's start, or only what was logged since its last view.
    ///
    /// # Errors
    /// Database failures.
    pub async fn model_events_newest(
        &self,
        tenant: &str,
        model: &str,
        kinds: &[EventKind],
        (after, before): (i64, i64),
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let kinds = kinds_in(kinds);
        let sql = format!(
            "SELECT seq, body FROM events WHERE tenant = $1 AND model = $2 AND kind IN ({kinds}) AND seq > $3 AND seq < $4
             ORDER BY seq DESC LIMIT $5",
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(model)
            .bind(after)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        Ok(stored(&rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's query and the partial expression index agree (same expression, same kinds): a
    /// change to one without the other would leave every version page scanning the model's log.
    #[tokio::test]
    async fn a_version_history_is_read_through_its_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Database::Sqlite { path: dir.path().join("registry.db") };
        let s = Store::connect(&db, crate::StoreOptions { durable: false, read_connections: 1 }).await.unwrap();
        let plan = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", s.version_events_sql())))
            .bind("acme")
            .bind("fraud")
            .bind("1")
            .bind(500_i64)
            .fetch_all(&s.read)
            .await
            .unwrap();
        let detail: Vec<String> = plan.iter().map(|r| r.get::<String, _>(3)).collect();
        assert!(detail.iter().any(|d| d.contains("USING INDEX events_by_version")), "{detail:?}");
        assert!(!detail.iter().any(|d| d.contains("TEMP B-TREE")), "ordered by the index: {detail:?}");
    }
}
