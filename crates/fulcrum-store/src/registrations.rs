//! Versions registered through the MLflow door (`create_model_version`): the number is reserved
//! first — so two registrations at once never take the same one — then the server copies the
//! files and runs the release gate, and the row ends `READY` (the version exists) or
//! `FAILED_REGISTRATION` with the reasons, as MLflow's clients expect to poll for.

use sqlx::Row;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError, ts};

/// MLflow's `ModelVersionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegStatus {
    Pending,
    Ready,
    Failed,
}

impl RegStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RegStatus::Pending => "PENDING_REGISTRATION",
            RegStatus::Ready => "READY",
            RegStatus::Failed => "FAILED_REGISTRATION",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        [RegStatus::Pending, RegStatus::Ready, RegStatus::Failed]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("registration status {s:?}")))
    }
}

/// One registration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub model_id: i64,
    pub version: String,
    pub source: String,
    pub run_id: String,
    pub status: RegStatus,
    pub message: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

fn from_row(r: &crate::db::Row) -> Result<Registration> {
    Ok(Registration {
        model_id: r.get("model_id"),
        version: r.get("version"),
        source: r.get("source"),
        run_id: r.get("run_id"),
        status: RegStatus::parse(&r.get::<String, _>("status"))?,
        message: r.get("message"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// The next MLflow version number after every numeric label in use (versions and registrations).
fn next_number<'a>(labels: impl Iterator<Item = &'a str>) -> u64 {
    labels.filter_map(|l| l.parse::<u64>().ok()).max().map_or(1, |n| n.saturating_add(1))
}

impl Store {
    /// Reserve the model's next MLflow version number as `PENDING_REGISTRATION`.
    ///
    /// # Errors
    /// `Conflict` when reservations keep colliding (many registrations of one model at once).
    pub async fn reserve_mlflow_version(
        &self,
        model_id: i64,
        source: &str,
        run_id: &str,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<String> {
        for _ in 0..8 {
            let mut tx = self.begin_write().await?;
            let rows = sqlx::query(
                "SELECT label FROM versions WHERE model_id = $1 UNION ALL SELECT version FROM mlflow_registrations WHERE model_id = $2",
            )
            .bind(model_id)
            .bind(model_id)
            .fetch_all(&mut *tx)
            .await?;
            let labels: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let version = next_number(labels.iter().map(String::as_str)).to_string();
            let taken = sqlx::query(
                "INSERT INTO mlflow_registrations (model_id, version, source, run_id, status, message, created_by, created_at, updated_at)
                 VALUES ($1,$2,$3,$4,'PENDING_REGISTRATION','',$5,$6,$6) ON CONFLICT (model_id, version) DO NOTHING",
            )
            .bind(model_id)
            .bind(&version)
            .bind(source)
            .bind(run_id)
            .bind(by)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() == 1 {
                tx.commit().await?;
                return Ok(version);
            }
        }
        Err(StoreError::Conflict("too many registrations of this model at once; try again".into()))
    }

    /// End a pending registration: `Ready` once the version exists, `Failed` with the reasons.
    ///
    /// # Errors
    /// `NotFound` when no pending registration has that number.
    pub async fn settle_mlflow_registration(
        &self,
        model_id: i64,
        version: &str,
        status: RegStatus,
        message: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE mlflow_registrations SET status = $1, message = $2, updated_at = $3
             WHERE model_id = $4 AND version = $5 AND status = 'PENDING_REGISTRATION'",
        )
        .bind(status.as_str())
        .bind(message)
        .bind(ts(now))
        .bind(model_id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("pending registration"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// One registration by number.
    ///
    /// # Errors
    /// Database failures.
    pub async fn mlflow_registration(&self, model_id: i64, version: &str) -> Result<Option<Registration>> {
        sqlx::query("SELECT * FROM mlflow_registrations WHERE model_id = $1 AND version = $2")
            .bind(model_id)
            .bind(version)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// A model's registrations, by number (the ones not `READY` are versions MLflow shows that
    /// Fulcrum does not hold).
    ///
    /// # Errors
    /// Database failures.
    pub async fn mlflow_registrations(&self, model_id: i64) -> Result<Vec<Registration>> {
        let rows = sqlx::query("SELECT * FROM mlflow_registrations WHERE model_id = $1")
            .bind(model_id)
            .fetch_all(&self.read)
            .await?;
        let mut out: Vec<Registration> = rows.iter().map(from_row).collect::<Result<_>>()?;
        out.sort_by_key(|r| (r.version.parse::<u64>().unwrap_or(u64::MAX), r.version.clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_follow_the_highest_numeric_label() {
        assert_eq!(super::next_number([].into_iter()), 1);
        assert_eq!(super::next_number(["1", "2", "v3", "10"].into_iter()), 11);
        assert_eq!(super::next_number(["rc-1"].into_iter()), 1);
    }
}
