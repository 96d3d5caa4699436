//! Replica heartbeats (scale-out, SPEC §11): every registry on a database writes, every second,
//! what it has applied of the event log and whether it leads, so an operator sees the cluster
//! from any one of them (`GET /v1/cluster`). Operational state, not governance: not ledgered,
//! rows replaced in place, and a replica silent for [`FORGET_AFTER`] is removed.
//!
//! A heartbeat does not take the write lock: it orders nothing and must not queue behind
//! governance writes.

use sqlx::Row as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Result, Store};

/// A replica silent for this long is removed from the table.
pub const FORGET_AFTER: time::Duration = time::Duration::hours(1);

/// One replica's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub name: String,
    pub started_at: OffsetDateTime,
    pub seen_at: OffsetDateTime,
    /// The last event position its caches and streams applied.
    pub applied_seq: i64,
    /// How long before `seen_at` it last read the log.
    pub view_age_ms: i64,
    /// The leadership term it holds, 0 when it does not lead.
    pub leader_term: i64,
    /// The build it runs (package version).
    pub build: String,
}

/// Whole seconds in UTC, so stored times compare as text.
fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("0 is a nanosecond")
        .format(&Rfc3339)
        .expect("a time formats")
}

impl Store {
    /// Record `b` (replacing this replica's previous heartbeat) and forget replicas silent for
    /// [`FORGET_AFTER`].
    ///
    /// # Errors
    /// Database failures.
    pub async fn heartbeat(&self, b: &Beat) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (name, started_at, seen_at, applied_seq, view_age_ms, leader_term, build)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at, applied_seq = excluded.applied_seq,
               view_age_ms = excluded.view_age_ms, leader_term = excluded.leader_term, build = excluded.build",
        )
        .bind(&b.name)
        .bind(rfc3339(b.started_at))
        .bind(rfc3339(b.seen_at))
        .bind(b.applied_seq)
        .bind(b.view_age_ms)
        .bind(b.leader_term)
        .bind(&b.build)
        .execute(&self.write)
        .await?;
        sqlx::query("DELETE FROM replicas WHERE seen_at < $1")
            .bind(rfc3339(b.seen_at - FORGET_AFTER))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Every replica's last heartbeat, by name.
    ///
    /// # Errors
    /// Database failures, or a row whose times do not parse.
    pub async fn replicas(&self) -> Result<Vec<Beat>> {
        let rows = sqlx::query(
            "SELECT name, started_at, seen_at, applied_seq, view_age_ms, leader_term, build FROM replicas ORDER BY name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let at = |i: usize| {
                    OffsetDateTime::parse(&r.get::<String, _>(i), &Rfc3339)
                        .map_err(|e| crate::StoreError::Corrupt(format!("replica heartbeat time: {e}")))
                };
                Ok(Beat {
                    name: r.get(0),
                    started_at: at(1)?,
                    seen_at: at(2)?,
                    applied_seq: r.get(3),
                    view_age_ms: r.get(4),
                    leader_term: r.get(5),
                    build: r.get(6),
                })
            })
            .collect()
    }
}
