//! The audit ledger's storage: leaves appended in the transaction of the record they stand for,
//! the tree's full-subtree hashes, signed checkpoints, and the reads proofs and audits need.
//!
//! A leaf's bytes are the record as stored — an event's CloudEvent body, a gate decision's
//! record, an access batch's canonical form ([`access_leaf`]) — read back from the record's own
//! table when entries are listed, so an edited, removed or swapped record no longer hashes to
//! its leaf.

use std::collections::HashMap;

use base64::Engine as _;
use fulcrum_ledger::Hash;
use fulcrum_ledger::merkle::{self, Node};
use sqlx::{Row as _, SqliteConnection};

use crate::{Result, Store, StoreError};

/// What a leaf stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    Event,
    Decision,
    Access,
}

impl LeafKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeafKind::Event => "event",
            LeafKind::Decision => "decision",
            LeafKind::Access => "access",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "event" => LeafKind::Event,
            "decision" => LeafKind::Decision,
            "access" => LeafKind::Access,
            _ => return Err(StoreError::Corrupt("ledger leaf kind".into())),
        })
    }
}

/// An access batch's leaf bytes: its columns in a fixed textual form.
pub fn access_leaf(tenant: &str, first_ns: i64, last_ns: i64, count: i64, inputs: &str, entries: &[u8]) -> Vec<u8> {
    let e = base64::engine::general_purpose::STANDARD.encode(entries);
    format!("access-batch\n{tenant}\n{first_ns}\n{last_ns}\n{count}\n{inputs}\n{e}").into_bytes()
}

fn hash_of(row: &sqlx::sqlite::SqliteRow) -> Result<Hash> {
    let b: Vec<u8> = row.get("hash");
    b.try_into().map_err(|_| StoreError::Corrupt("ledger node hash".into()))
}

/// Append a leaf for a record stored in this transaction; returns its index.
pub(crate) async fn append(
    tx: &mut SqliteConnection,
    kind: LeafKind,
    reference: i64,
    tenant: &str,
    data: &[u8],
) -> Result<u64> {
    let n: i64 = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetch_one(&mut *tx).await?.get(0);
    let n = n as u64;
    let mut siblings = HashMap::new();
    for s in merkle::append_siblings(n) {
        let row = sqlx::query("SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?")
            .bind(i64::from(s.level))
            .bind(s.index as i64)
            .fetch_one(&mut *tx)
            .await?;
        siblings.insert(s, hash_of(&row)?);
    }
    let written = merkle::append(n, merkle::leaf_hash(data), &|nd| siblings[&nd]);
    sqlx::query("INSERT INTO ledger_leaves (idx, kind, ref, tenant) VALUES (?,?,?,?)")
        .bind(n as i64)
        .bind(kind.as_str())
        .bind(reference)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    for (node, h) in written {
        sqlx::query("INSERT INTO ledger_nodes (level, idx, hash) VALUES (?,?,?)")
            .bind(i64::from(node.level))
            .bind(node.index as i64)
            .bind(h.as_slice())
            .execute(&mut *tx)
            .await?;
    }
    Ok(n)
}

/// One leaf as the audit API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub index: u64,
    pub kind: LeafKind,
    /// The record's position in its table (event seq, decision seq, batch seq).
    pub reference: i64,
    pub tenant: String,
    /// The leaf hash as stored in the tree.
    pub leaf_hash: Hash,
    /// The record's bytes as stored now; `None` when the record is gone.
    pub data: Option<Vec<u8>>,
}

/// A signed tree head as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub size: u64,
    pub root: Hash,
    pub note: String,
    pub kid: String,
    pub signed_at: String,
}

impl Store {
    /// Leaves in the tree.
    ///
    /// # Errors
    /// Database failures.
    pub async fn ledger_size(&self) -> Result<u64> {
        let n: i64 =
            sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetch_one(&self.read).await?.get(0);
        Ok(n as u64)
    }

    /// The stored hashes of `nodes` (all must exist).
    ///
    /// # Errors
    /// Database failures, or a node missing (a tree that was tampered with).
    pub async fn ledger_nodes(&self, nodes: &[Node]) -> Result<HashMap<Node, Hash>> {
        let mut out = HashMap::with_capacity(nodes.len());
        let mut conn = self.read.acquire().await?;
        for n in nodes {
            let row = sqlx::query("SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?")
                .bind(i64::from(n.level))
                .bind(n.index as i64)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("ledger node {}/{} is missing", n.level, n.index)))?;
            out.insert(*n, hash_of(&row)?);
        }
        Ok(out)
    }

    /// The root of the tree's first `size` leaves.
    ///
    /// # Errors
    /// As [`Store::ledger_nodes`].
    pub async fn ledger_root(&self, size: u64) -> Result<Hash> {
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        let nodes = self.ledger_nodes(&merkle::pieces((0, size))).await?;
        Ok(merkle::root(size, &|n| nodes[&n]))
    }

    /// The hashes of `ranges` (each a range a proof names).
    ///
    /// # Errors
    /// As [`Store::ledger_nodes`].
    pub async fn ledger_ranges(&self, ranges: &[merkle::Range]) -> Result<Vec<Hash>> {
        let nodes = self.ledger_nodes(&merkle::nodes_for(ranges)).await?;
        Ok(ranges.iter().map(|r| merkle::range_hash(*r, &|n| nodes[&n])).collect())
    }

    /// Leaves `[start, end)` with their records' bytes as stored now.
    ///
    /// # Errors
    /// Database failures.
    pub async fn ledger_entries(&self, start: u64, end: u64) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT l.idx, l.kind, l.ref, l.tenant, n.hash,
                    e.body AS event, d.record AS decision,
                    a.tenant AS a_tenant, a.first_ns, a.last_ns, a.count, a.inputs, a.entries
             FROM ledger_leaves l
             JOIN ledger_nodes n ON n.level = 0 AND n.idx = l.idx
             LEFT JOIN events e ON l.kind = 'event' AND e.seq = l.ref
             LEFT JOIN decisions d ON l.kind = 'decision' AND d.seq = l.ref
             LEFT JOIN access_batches a ON l.kind = 'access' AND a.seq = l.ref
             WHERE l.idx >= ? AND l.idx < ? ORDER BY l.idx",
        )
        .bind(start as i64)
        .bind(end as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let kind = LeafKind::parse(r.get("kind"))?;
                let data = match kind {
                    LeafKind::Event => r.get::<Option<String>, _>("event").map(String::into_bytes),
                    LeafKind::Decision => r.get::<Option<String>, _>("decision").map(String::into_bytes),
                    LeafKind::Access => r.get::<Option<String>, _>("a_tenant").map(|t| {
                        access_leaf(
                            &t,
                            r.get("first_ns"),
                            r.get("last_ns"),
                            r.get("count"),
                            r.get("inputs"),
                            &r.get::<Vec<u8>, _>("entries"),
                        )
                    }),
                };
                Ok(LedgerEntry {
                    index: r.get::<i64, _>("idx") as u64,
                    kind,
                    reference: r.get("ref"),
                    tenant: r.get("tenant"),
                    leaf_hash: hash_of(r)?,
                    data,
                })
            })
            .collect()
    }

    /// The newest signed checkpoint.
    ///
    /// # Errors
    /// Database failures.
    pub async fn last_checkpoint(&self) -> Result<Option<CheckpointRecord>> {
        let row = sqlx::query("SELECT * FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(CheckpointRecord {
                size: r.get::<i64, _>("size") as u64,
                root: r
                    .get::<Vec<u8>, _>("root")
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("checkpoint root".into()))?,
                note: r.get("note"),
                kid: r.get("kid"),
                signed_at: r.get("signed_at"),
            })
        })
        .transpose()
    }

    /// Keep a signed checkpoint. Sizes only grow: one not larger than the newest is refused.
    ///
    /// # Errors
    /// Database failures, or a checkpoint that does not grow the log.
    pub async fn store_checkpoint(&self, c: &CheckpointRecord) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let last: Option<i64> =
            sqlx::query("SELECT MAX(size) FROM ledger_checkpoints").fetch_one(&mut *tx).await?.get(0);
        if last.is_some_and(|l| l as u64 >= c.size) {
            return Err(StoreError::Conflict(format!("a checkpoint of size {} is not newer than the last", c.size)));
        }
        sqlx::query("INSERT INTO ledger_checkpoints (size, root, note, kid, signed_at) VALUES (?,?,?,?,?)")
            .bind(c.size as i64)
            .bind(c.root.as_slice())
            .bind(&c.note)
            .bind(&c.kid)
            .bind(&c.signed_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records stored before the ledger existed become its first leaves (events, then gate
    /// decisions, then access batches, each in its own order), once, at start-up.
    pub(crate) async fn backfill_ledger(&self) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let size: i64 = sqlx::query("SELECT COUNT(*) FROM ledger_leaves").fetch_one(&mut *tx).await?.get(0);
        if size > 0 {
            return Ok(0);
        }
        let mut added = 0;
        let events = sqlx::query("SELECT seq, tenant, body FROM events ORDER BY seq").fetch_all(&mut *tx).await?;
        for r in &events {
            append(&mut tx, LeafKind::Event, r.get("seq"), r.get("tenant"), r.get::<String, _>("body").as_bytes())
                .await?;
            added += 1;
        }
        let decisions =
            sqlx::query("SELECT seq, tenant, record FROM decisions ORDER BY seq").fetch_all(&mut *tx).await?;
        for r in &decisions {
            append(&mut tx, LeafKind::Decision, r.get("seq"), r.get("tenant"), r.get::<String, _>("record").as_bytes())
                .await?;
            added += 1;
        }
        let batches = sqlx::query("SELECT * FROM access_batches ORDER BY seq").fetch_all(&mut *tx).await?;
        for r in &batches {
            let tenant: String = r.get("tenant");
            let data = access_leaf(
                &tenant,
                r.get("first_ns"),
                r.get("last_ns"),
                r.get("count"),
                r.get("inputs"),
                &r.get::<Vec<u8>, _>("entries"),
            );
            append(&mut tx, LeafKind::Access, r.get("seq"), &tenant, &data).await?;
            added += 1;
        }
        tx.commit().await?;
        Ok(added)
    }
}

impl Store {
    /// Benchmarks only: append `count` leaves (hashes of their index, standing for no record)
    /// in large batches, computing the tree's nodes in memory. Not for a registry's data.
    ///
    /// # Errors
    /// Database failures.
    pub async fn seed_ledger_for_bench(&self, count: u64) -> Result<()> {
        let start = self.ledger_size().await?;
        if start != 0 {
            return Err(StoreError::Conflict("the ledger is not empty".into()));
        }
        // The roots of the full subtrees built so far, largest first, as (level, index, hash).
        let mut stack: Vec<(u8, u64, Hash)> = Vec::new();
        let mut i = 0u64;
        while i < count {
            let end = (i + 20_000).min(count);
            let mut leaves: Vec<u64> = Vec::with_capacity((end - i) as usize);
            let mut nodes: Vec<(u8, u64, Hash)> = Vec::with_capacity(2 * (end - i) as usize);
            for n in i..end {
                let mut cur = (0u8, n, merkle::leaf_hash(&n.to_be_bytes()));
                nodes.push(cur);
                while let Some(&(level, _, left)) = stack.last() {
                    if level != cur.0 {
                        break;
                    }
                    stack.pop();
                    cur = (level + 1, cur.1 >> 1, merkle::node_hash(&left, &cur.2));
                    nodes.push(cur);
                }
                stack.push(cur);
                leaves.push(n);
            }
            let mut tx = self.write.begin().await?;
            for chunk in leaves.chunks(300) {
                let sql = format!(
                    "INSERT INTO ledger_leaves (idx, kind, ref, tenant) VALUES {}",
                    vec!["(?, 'event', ?, 'bench')"; chunk.len()].join(",")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for n in chunk {
                    q = q.bind(*n as i64).bind(*n as i64);
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in nodes.chunks(300) {
                let sql = format!(
                    "INSERT INTO ledger_nodes (level, idx, hash) VALUES {}",
                    vec!["(?,?,?)"; chunk.len()].join(",")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (level, idx, h) in chunk {
                    q = q.bind(i64::from(*level)).bind(*idx as i64).bind(h.to_vec());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            i = end;
        }
        Ok(())
    }

    /// Append several events in one transaction (one commit for all: what a busy registry's
    /// group commit does); their leaves follow in order.
    ///
    /// # Errors
    /// Database failures (nothing is stored then).
    pub async fn record_events(&self, evs: Vec<fulcrum_core::event::EventPayload>) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let n = evs.len() as u64;
        for ev in evs {
            crate::append_event(&mut tx, ev).await?;
        }
        tx.commit().await?;
        Ok(n)
    }
}
