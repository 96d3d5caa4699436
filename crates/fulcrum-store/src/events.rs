//! A model's events read back by kind, by the version they name, or by position: an incident's
//! serving steps, a version page's history, a dashboard's windows. (The log itself is appended
//! in `lib.rs`; these only read it.)

use sqlx::Row;

use crate::db::Row as SqlRow;
use crate::{Result, Store, StoredEvent};

/// `'kind', …` for an `IN (…)` clause (kinds are Fulcrum's own names, never input).
fn kinds_in(kinds: &[fulcrum_core::event::EventKind]) -> String {
    kinds.iter().map(|k| format!("'{}'", k.as_str())).collect::<Vec<_>>().join(",")
}

/// `(seq, body)` rows as stored events.
pub(crate) fn stored(rows: &[SqlRow]) -> Vec<StoredEvent> {
    rows.iter().map(|r| StoredEvent { seq: r.get(0), ledger_index: None, body: r.get(1) }).collect()
}

impl Store {
    /// A model's events of the given kinds in the position range `(after, upto]`, oldest
    /// first, at most `limit` (an incident's serving steps and figures).
    ///
    /// # Errors
    /// Database failures.
    pub async fn model_events_between(
        &self,
        tenant: &str,
        model: &str,
        kinds: &[fulcrum_core::event::EventKind],
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

    /// The newest `limit` events of the given kinds that name `version` (an alias move names its
    /// target), oldest first: a version page's history.
    ///
    /// # Errors
    /// Database failures.
    pub async fn version_events(
        &self,
        tenant: &str,
        model: &str,
        version: &str,
        kinds: &[fulcrum_core::event::EventKind],
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let kinds = kinds_in(kinds);
        let named = self.dialect.json_text_lenient("body", &["data", "version"]);
        let sql = format!(
            "SELECT seq, body FROM events WHERE tenant = $1 AND model = $2 AND {named} = $3 AND kind IN ({kinds})
             ORDER BY seq DESC LIMIT $4",
        );
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
        kinds: &[fulcrum_core::event::EventKind],
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
