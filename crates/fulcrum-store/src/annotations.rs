//! Annotations: tags and descriptions set on a model or a version after it was created (the
//! MLflow door's `set_*_tag`, `delete_*_tag`, `update_*`). They inform people; they are never
//! governance inputs — a model's labels and a version's signed record stay as they were made.
//! Every change appends an `annotated` event (ledgered) in the same transaction.

use fulcrum_core::event::{EventKind, EventPayload};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError, ts};

/// Longest annotation value kept (MLflow's own limit for a tag value is 5,000 characters in its
/// SQL store; a description may be longer).
pub const MAX_VALUE: usize = 65_536;

/// What is annotated: the model itself or one of its versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Model,
    Version(&'a str),
}

impl Target<'_> {
    /// The stored `version` column: `''` for the model itself.
    fn version(self) -> String {
        match self {
            Target::Model => String::new(),
            Target::Version(v) => v.to_owned(),
        }
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    SetTag { key: &'a str, value: &'a str },
    DeleteTag { key: &'a str },
    Describe { text: &'a str },
}

/// Who made a change, and where (for its event).
#[derive(Debug, Clone)]
pub struct Annotator<'a> {
    pub tenant: &'a str,
    pub domain: &'a str,
    pub model: &'a str,
    pub model_id: i64,
    pub by: &'a str,
}

/// A model's or version's annotations as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// Tags by key, in key order.
    pub tags: std::collections::BTreeMap<String, String>,
    pub description: Option<String>,
    /// When the newest change was made (RFC 3339), if any.
    pub updated_at: Option<String>,
}

impl Store {
    /// Apply one change, with its `annotated` event, in one transaction.
    ///
    /// Keys and values are checked by the caller (the API bounds them).
    ///
    /// # Errors
    /// `NotFound` when deleting a tag that is not there (nothing is logged then).
    pub async fn annotate(
        &self,
        who: &Annotator<'_>,
        target: Target<'_>,
        change: Change<'_>,
        now: OffsetDateTime,
    ) -> Result<()> {
        let (kind, key, value) = match change {
            Change::SetTag { key, value } => ("tag", key, Some(value)),
            Change::DeleteTag { key } => ("tag", key, None),
            Change::Describe { text } => ("description", "", Some(text)),
        };
        let version = target.version();
        let mut tx = self.begin_write().await?;
        let detail = match value {
            Some(v) => {
                sqlx::query(
                    "INSERT INTO annotations (model_id, version, kind, key, value, set_by, set_at) VALUES ($1,$2,$3,$4,$5,$6,$7)
                     ON CONFLICT (model_id, version, kind, key) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, set_at = excluded.set_at",
                )
                .bind(who.model_id)
                .bind(&version)
                .bind(kind)
                .bind(key)
                .bind(v)
                .bind(who.by)
                .bind(ts(now))
                .execute(&mut *tx)
                .await?;
                if kind == "tag" { format!("tag {key} set") } else { "description updated".to_owned() }
            }
            None => {
                let gone = sqlx::query(
                    "DELETE FROM annotations WHERE model_id = $1 AND version = $2 AND kind = 'tag' AND key = $3",
                )
                .bind(who.model_id)
                .bind(&version)
                .bind(key)
                .execute(&mut *tx)
                .await?;
                if gone.rows_affected() == 0 {
                    return Err(StoreError::NotFound("tag"));
                }
                format!("tag {key} deleted")
            }
        };
        let mut ev = EventPayload::new(EventKind::Annotated, now, who.tenant, who.domain, who.model);
        if let Target::Version(v) = target {
            ev.version = Some(v.to_owned());
        }
        ev.actor = Some(who.by.to_owned());
        ev.detail = Some(detail);
        crate::append_event(&mut tx, ev).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The annotations of a model (`Target::Model`) or of one version.
    ///
    /// # Errors
    /// Database failures.
    pub async fn annotations(&self, model_id: i64, target: Target<'_>) -> Result<Annotations> {
        let rows = sqlx::query(
            "SELECT kind, key, value, set_at FROM annotations WHERE model_id = $1 AND version = $2 ORDER BY kind, key",
        )
        .bind(model_id)
        .bind(target.version())
        .fetch_all(&self.read)
        .await?;
        Ok(fold(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))))
    }

    /// The annotations of every version of a model that has any, by version label (one query for
    /// a page of versions).
    ///
    /// # Errors
    /// Database failures.
    pub async fn version_annotations(&self, model_id: i64) -> Result<std::collections::BTreeMap<String, Annotations>> {
        let rows = sqlx::query(
            "SELECT version, kind, key, value, set_at FROM annotations WHERE model_id = $1 AND version <> '' ORDER BY version, kind, key",
        )
        .bind(model_id)
        .fetch_all(&self.read)
        .await?;
        let mut by: std::collections::BTreeMap<String, Vec<(String, String, String, String)>> = Default::default();
        for r in &rows {
            by.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3), r.get(4)));
        }
        Ok(by.into_iter().map(|(v, rows)| (v, fold(rows.into_iter()))).collect())
    }
}

fn fold(rows: impl Iterator<Item = (String, String, String, String)>) -> Annotations {
    let mut a = Annotations::default();
    for (kind, key, value, at) in rows {
        if kind == "description" {
            a.description = Some(value);
        } else {
            a.tags.insert(key, value);
        }
        if a.updated_at.as_ref().is_none_or(|u| *u < at) {
            a.updated_at = Some(at);
        }
    }
    a
}
