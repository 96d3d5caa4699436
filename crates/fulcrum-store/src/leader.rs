//! Leadership of the background work (scale-out, SPEC §11): the event relay, webhooks, ledger
//! checkpoints and trust-bundle re-issue run on one replica at a time.
//!
//! - **PostgreSQL**: a session advisory lock held on a connection of its own (taken out of the
//!   pool). The lock belongs to the session, so a leader whose connection or process dies loses
//!   it at once and another replica's next attempt wins.
//! - **Fencing**: every new leader takes the next *term* (`leader_terms`, append-only). A
//!   background write made under a [`Lease`] checks, inside its write transaction (so under the
//!   write lock), that the lease's term is still the newest. A leader that was paused (GC, a
//!   frozen VM) and lost its lock meanwhile is refused with [`StoreError::Fenced`] instead of
//!   acting next to its successor.
//! - **SQLite** is one process per file: its store always leads, and still takes a term per
//!   lease so the same code path runs on both engines.

use sqlx::Row as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::db::{Conn, Dialect};
use crate::{Result, Store, StoreError};

/// The advisory lock key of leadership ("FLEADER"), apart from the write lock's.
const LEADER_LOCK: i64 = 0x0046_4c45_4144_4552;

/// How long a liveness probe of the lease's connection may take before leadership is given up.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Leadership held by this replica. Dropping it gives the lock up (its connection closes).
#[derive(Debug)]
pub struct Lease {
    term: i64,
    holder: String,
    /// The session that holds the advisory lock (PostgreSQL only).
    session: Option<Conn>,
}

impl Lease {
    /// The fencing term: larger than every earlier leader's.
    pub fn term(&self) -> i64 {
        self.term
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// What background writes carry to be refused once this lease is superseded.
    pub fn fence(&self) -> Fence {
        Fence(self.term)
    }
}

/// A lease's term, carried by the background writes made under it (see [`fence`]). Only a
/// [`Lease`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence(i64);

/// The newest leadership term as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub term: i64,
    pub holder: String,
    pub started_at: String,
}

impl Store {
    /// Become the leader if no other replica is: `None` when another holds leadership.
    ///
    /// # Errors
    /// Database failures.
    pub async fn try_lead(&self, holder: &str, now: OffsetDateTime) -> Result<Option<Lease>> {
        let session = match self.dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => {
                let mut conn = self.write.acquire().await?.detach();
                let won: bool =
                    sqlx::query("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut conn).await?.get(0);
                if !won {
                    return Ok(None);
                }
                Some(conn)
            }
        };
        let mut tx = self.begin_write().await?;
        let term: i64 = sqlx::query("INSERT INTO leader_terms (holder, started_at) VALUES ($1, $2) RETURNING term")
            .bind(holder)
            .bind(now.format(&Rfc3339).expect("a time formats"))
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        tx.commit().await?;
        Ok(Some(Lease { term, holder: holder.to_owned(), session }))
    }

    /// Whether `lease` still leads: its session answers (PostgreSQL) and no newer term exists.
    /// A lease found lost stays lost (its session is closed).
    ///
    /// # Errors
    /// Database failures reading the newest term (the caller should then stop leading).
    pub async fn still_leads(&self, lease: &mut Lease) -> Result<bool> {
        if let Some(conn) = lease.session.as_mut() {
            let probe = tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(conn)).await;
            if !matches!(probe, Ok(Ok(_))) {
                lease.session = None;
                lease.term = 0;
                return Ok(false);
            }
        }
        if lease.term == 0 {
            return Ok(false);
        }
        Ok(self.newest_term().await?.is_some_and(|t| t.term == lease.term))
    }

    /// The newest term: who leads (or led last).
    ///
    /// # Errors
    /// Database failures.
    pub async fn newest_term(&self) -> Result<Option<Term>> {
        let row = sqlx::query("SELECT term, holder, started_at FROM leader_terms ORDER BY term DESC LIMIT 1")
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| Term { term: r.get(0), holder: r.get(1), started_at: r.get(2) }))
    }
}

/// Inside a write transaction: refuse unless the fence's term is the newest.
pub(crate) async fn fence(conn: &mut Conn, Fence(term): Fence) -> Result<()> {
    let newest: Option<i64> = sqlx::query("SELECT MAX(term) FROM leader_terms").fetch_one(&mut *conn).await?.get(0);
    match newest {
        Some(n) if n == term => Ok(()),
        n => Err(StoreError::Fenced { term, newest: n.unwrap_or(0) }),
    }
}
