//! The audit ledger's storage: leaves appended in the transaction of the record they stand for
//! (one `INSERT`: the leaf and its hash), the tree's full-subtree hashes built from the leaves in
//! order by one builder ([`Store::ledger_build`], before a checkpoint is signed or a proof is
//! made), signed checkpoints, and the reads proofs and audits need.
//!
//! A leaf's bytes are the record as stored — an event's CloudEvent body, a gate decision's
//! record, an access batch's canonical form ([`access_leaf`]) — read back from the record's own
//! table when entries are listed, so an edited, removed or swapped record no longer hashes to
//! its leaf.

use std::collections::HashMap;

use base64::Engine as _;
use fulcrum_ledger::Hash;
use fulcrum_ledger::merkle::{self, Node};
use sqlx::Row as _;

use crate::db::{self, Conn};

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

fn hash_of(row: &crate::db::Row) -> Result<Hash> {
    let b: Vec<u8> = row.get("hash");
    b.try_into().map_err(|_| StoreError::Corrupt("ledger node hash".into()))
}

/// Append a leaf for a record stored in this transaction.
pub(crate) async fn append(tx: &mut Conn, kind: LeafKind, reference: i64, tenant: &str, data: &[u8]) -> Result<u64> {
    let idx: i64 = sqlx::query(
        "INSERT INTO ledger_leaves (idx, kind, ref, tenant, hash)
         SELECT COALESCE(MAX(idx) + 1, 0), $1, $2, $3, $4 FROM ledger_leaves RETURNING idx",
    )
    .bind(kind.as_str())
    .bind(reference)
    .bind(tenant)
    .bind(merkle::leaf_hash(data).as_slice())
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    Ok(idx as u64)
}

/// The hashes of `nodes` (level 0 from the leaves, above from the built subtrees), in one query
/// per table.
async fn fetch_nodes(conn: &mut Conn, dialect: db::Dialect, nodes: &[Node]) -> Result<HashMap<Node, Hash>> {
    let mut out = HashMap::with_capacity(nodes.len());
    for chunk in nodes.chunks(400) {
        let (leaves, upper): (Vec<&Node>, Vec<&Node>) = chunk.iter().partition(|n| n.level == 0);
        if !leaves.is_empty() {
            let sql = format!(
                "SELECT 0 AS level, idx, {} AS hash FROM ledger_leaves WHERE idx IN ({})",
                dialect.bytes("hash"),
                db::numbered_rows("?", leaves.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in &leaves {
                q = q.bind(n.index as i64);
            }
            for r in q.fetch_all(&mut *conn).await? {
                out.insert(Node { level: 0, index: r.get::<i64, _>("idx") as u64 }, hash_of(&r)?);
            }
        }
        if !upper.is_empty() {
            let sql = format!(
                "SELECT level, idx, {} AS hash FROM ledger_nodes WHERE (level, idx) IN (VALUES {})",
                dialect.bytes("hash"),
                db::numbered_rows("(?,?)", upper.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in &upper {
                q = q.bind(i64::from(n.level)).bind(n.index as i64);
            }
            for r in q.fetch_all(&mut *conn).await? {
                let level =
                    u8::try_from(r.get::<i64, _>("level")).map_err(|_| StoreError::Corrupt("node level".into()))?;
                out.insert(Node { level, index: r.get::<i64, _>("idx") as u64 }, hash_of(&r)?);
            }
        }
    }
    if let Some(n) = nodes.iter().find(|n| !out.contains_key(n)) {
        return Err(StoreError::Corrupt(format!("ledger node {}/{} is missing", n.level, n.index)));
    }
    Ok(out)
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

    /// The stored hashes of `nodes` (all must exist: built up to where they reach).
    ///
    /// # Errors
    /// Database failures, or a node missing (a tree that was tampered with, or not built yet).
    pub async fn ledger_nodes(&self, nodes: &[Node]) -> Result<HashMap<Node, Hash>> {
        let mut conn = self.read.acquire().await?;
        fetch_nodes(&mut conn, self.dialect, nodes).await
    }

    /// Build the subtree hashes over the leaves up to `upto` (or all there are); returns how
    /// many leaves they cover. One builder at a time; each batch commits with its progress.
    ///
    /// # Errors
    /// Database failures, or stored hashes that do not form a tree.
    pub async fn ledger_build(&self, upto: u64) -> Result<u64> {
        // Proofs and roots ask for what is built already: answer from a read, no lock, no write.
        let built = sqlx::query("SELECT built FROM ledger_state").fetch_one(&self.read).await?.get::<i64, _>(0) as u64;
        if built >= upto {
            return Ok(built);
        }
        let _one = self.ledger_build.lock().await;
        loop {
            let mut tx = self.begin_write().await?;
            let built =
                sqlx::query("SELECT built FROM ledger_state").fetch_one(&mut *tx).await?.get::<i64, _>(0) as u64;
            let size = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves")
                .fetch_one(&mut *tx)
                .await?
                .get::<i64, _>(0) as u64;
            let target = upto.min(size);
            if built >= target {
                return Ok(built);
            }
            let end = target.min(built + 50_000);
            // Resume the builder from the stored full subtrees over [0, built).
            let have = fetch_nodes(&mut tx, self.dialect, &merkle::pieces((0, built))).await?;
            let mut frontier = merkle::Frontier::resume(built, |n| have[&n]);
            let sql = format!(
                "SELECT idx, {} AS hash FROM ledger_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                self.dialect.bytes("hash")
            );
            let leaves =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(built as i64).bind(end as i64).fetch_all(&mut *tx).await?;
            let mut nodes: Vec<(u8, u64, Hash)> = Vec::with_capacity(leaves.len());
            for (expect, r) in (built..end).zip(&leaves) {
                if r.get::<i64, _>("idx") as u64 != expect {
                    return Err(StoreError::Corrupt(format!("ledger leaf {expect} is missing")));
                }
                nodes.extend(frontier.push_nodes(hash_of(r)?).into_iter().map(|(n, h)| (n.level, n.index, h)));
            }
            if (leaves.len() as u64) < end - built {
                return Err(StoreError::Corrupt(format!("ledger leaf {} is missing", built + leaves.len() as u64)));
            }
            for chunk in nodes.chunks(300) {
                let sql = format!(
                    "INSERT INTO ledger_nodes (level, idx, hash) VALUES {}",
                    db::numbered_rows("(?,?,?)", chunk.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (level, idx, h) in chunk {
                    q = q.bind(i64::from(*level)).bind(*idx as i64).bind(h.to_vec());
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE ledger_state SET built = $1").bind(end as i64).execute(&mut *tx).await?;
            tx.commit().await?;
        }
    }

    /// The root of the tree's first `size` leaves.
    ///
    /// # Errors
    /// As [`Store::ledger_nodes`].
    pub async fn ledger_root(&self, size: u64) -> Result<Hash> {
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        self.ledger_build(size).await?;
        let nodes = self.ledger_nodes(&merkle::pieces((0, size))).await?;
        Ok(merkle::root(size, &|n| nodes[&n]))
    }

    /// The hashes of `ranges` (each a range a proof names).
    ///
    /// # Errors
    /// As [`Store::ledger_nodes`].
    pub async fn ledger_ranges(&self, ranges: &[merkle::Range]) -> Result<Vec<Hash>> {
        if let Some(end) = ranges.iter().map(|r| r.1).max() {
            self.ledger_build(end).await?;
        }
        let nodes = self.ledger_nodes(&merkle::nodes_for(ranges)).await?;
        Ok(ranges.iter().map(|r| merkle::range_hash(*r, &|n| nodes[&n])).collect())
    }

    /// The stored hashes of leaves `[start, end)`, in order (a browser recomputing the root).
    ///
    /// # Errors
    /// Database failures, or a stored hash that is not 32 bytes.
    pub async fn ledger_leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>> {
        let hash = self.dialect.bytes("hash");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {hash} AS hash FROM ledger_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx"
        )))
        .bind(start as i64)
        .bind(end as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let b: Vec<u8> = r.get("hash");
                b.try_into().map_err(|_| crate::records::corrupt("leaf hash"))
            })
            .collect()
    }

    /// Leaves `[start, end)` with their records' bytes as stored now.
    ///
    /// # Errors
    /// Database failures.
    pub async fn ledger_entries(&self, start: u64, end: u64) -> Result<Vec<LedgerEntry>> {
        let (hash, entries) = (self.dialect.bytes("l.hash"), self.dialect.bytes("a.entries"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT l.idx, l.kind, l.ref, l.tenant, {hash} AS hash,
                    e.body AS event, d.record AS decision,
                    a.tenant AS a_tenant, a.first_ns, a.last_ns, a.count, a.inputs, {entries} AS entries
             FROM ledger_leaves l
             LEFT JOIN events e ON l.kind = 'event' AND e.seq = l.ref
             LEFT JOIN decisions d ON l.kind = 'decision' AND d.seq = l.ref
             LEFT JOIN access_batches a ON l.kind = 'access' AND a.seq = l.ref
             WHERE l.idx >= $1 AND l.idx < $2 ORDER BY l.idx"
        )))
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

    /// The lifecycle events among leaves `[start, end)` (the ones that move governance state:
    /// publication, promotion, holds, alias moves), with their stored leaf hash and body, in
    /// ledger order — what the state projection folds.
    ///
    /// # Errors
    /// Database failures.
    pub async fn ledger_lifecycle_events(&self, start: u64, end: u64) -> Result<Vec<(u64, Hash, Vec<u8>)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT l.idx, {} AS hash, e.body FROM ledger_leaves l JOIN events e ON e.seq = l.ref
             WHERE l.kind = 'event' AND l.idx >= $1 AND l.idx < $2
               AND e.kind IN ('release_published', 'promotion', 'revocation', 'quarantined', 'quarantine_released', 'alias_updated')
             ORDER BY l.idx",
            self.dialect.bytes("l.hash")
        ))
        )
        .bind(start as i64)
        .bind(end as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.get::<i64, _>("idx") as u64, hash_of(r)?, r.get::<String, _>("body").into_bytes())))
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

    /// Keep a signed checkpoint. Sizes only grow: one not larger than the newest is refused,
    /// except the newest's own tree again (same size and root), which is already kept.
    ///
    /// # Errors
    /// Database failures, or a checkpoint that does not grow the log.
    pub async fn store_checkpoint(&self, c: &CheckpointRecord) -> Result<()> {
        self.checkpoint_under(c, None).await
    }

    /// [`Store::store_checkpoint`] by a leader, under its lease's fence: refused with
    /// [`StoreError::Fenced`] once another replica took a newer term.
    ///
    /// # Errors
    /// As [`Store::store_checkpoint`], plus `Fenced`.
    pub async fn store_checkpoint_as(&self, c: &CheckpointRecord, fence: crate::leader::Fence) -> Result<()> {
        self.checkpoint_under(c, Some(fence)).await
    }

    async fn checkpoint_under(&self, c: &CheckpointRecord, fence: Option<crate::leader::Fence>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if let Some(f) = fence {
            crate::leader::fence(&mut tx, f).await?;
        }
        let last = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT size, {} AS root FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
            self.dialect.bytes("root")
        )))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(l) = last {
            let (size, root): (i64, Vec<u8>) = (l.get(0), l.get(1));
            // Two replicas signing the same tree (the leader's signer and an auditor's request on
            // another replica): the second finds it stored already.
            if size as u64 == c.size && root == c.root {
                return Ok(());
            }
            if size as u64 >= c.size {
                return Err(StoreError::Conflict(format!(
                    "a checkpoint of size {} is not newer than the last",
                    c.size
                )));
            }
        }
        sqlx::query("INSERT INTO ledger_checkpoints (size, root, note, kid, signed_at) VALUES ($1,$2,$3,$4,$5)")
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
        let mut tx = self.begin_write().await?;
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
        // The links of versions and aliases to their leaves (migration 0012 ran before these
        // leaves existed): the migration's own backfill, now that there are leaves to find.
        if added > 0 {
            sqlx::raw_sql(links_backfill()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(added)
    }
}

/// Migration 0012, whose second part links versions and aliases to their event leaves.
const LINKS_MIGRATION: &str = include_str!("../migrations/sqlite/0012_ledger_links.sql");

/// The statements of migration 0012 after its backfill mark.
fn links_backfill() -> &'static str {
    let mark = "-- Records kept before this migration";
    LINKS_MIGRATION
        .find(mark)
        .map_or_else(|| unreachable!("migration 0012 keeps its backfill mark"), |i| &LINKS_MIGRATION[i..])
}

impl Store {
    /// Benchmarks only: append `count` leaves (hashes of their index, standing for no record)
    /// in large batches, then build the tree. Not for a registry's data.
    ///
    /// # Errors
    /// Database failures.
    pub async fn seed_ledger_for_bench(&self, count: u64) -> Result<()> {
        if self.ledger_size().await? != 0 {
            return Err(StoreError::Conflict("the ledger is not empty".into()));
        }
        let mut i = 0u64;
        while i < count {
            let end = (i + 50_000).min(count);
            let mut tx = self.begin_write().await?;
            let all: Vec<u64> = (i..end).collect();
            for chunk in all.chunks(200) {
                let sql = format!(
                    "INSERT INTO ledger_leaves (idx, kind, ref, tenant, hash) VALUES {}",
                    db::numbered_rows("(?, 'event', ?, 'bench', ?)", chunk.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for n in chunk {
                    q = q.bind(*n as i64).bind(*n as i64).bind(merkle::leaf_hash(&n.to_be_bytes()).to_vec());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            i = end;
        }
        self.ledger_build(count).await?;
        Ok(())
    }

    /// Append several events in one transaction (one commit for all: what a busy registry's
    /// group commit does); their leaves follow in order.
    ///
    /// # Errors
    /// Database failures (nothing is stored then).
    pub async fn record_events(&self, evs: Vec<fulcrum_core::event::EventPayload>) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = crate::append_events(&mut tx, evs).await?.len() as u64;
        tx.commit().await?;
        Ok(n)
    }
}

/// A record that belongs in a change's or incident's evidence: its ledger index and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    pub index: u64,
    pub kind: LeafKind,
    pub data: Vec<u8>,
}

impl Store {
    /// The events and gate decisions of `tenant` naming the change `chg_id` or the incident
    /// `inc_id`, in ledger order.
    ///
    /// # Errors
    /// Database failures.
    pub async fn evidence_records(
        &self,
        tenant: &str,
        chg_id: Option<&str>,
        inc_id: Option<&str>,
    ) -> Result<Vec<EvidenceRecord>> {
        let (chg, inc) = (
            self.dialect.json_text("e.body", &["data", "chg_id"]),
            self.dialect.json_text("e.body", &["data", "inc_id"]),
        );
        let sql = format!(
            "SELECT l.idx, l.kind, e.body AS event, d.record AS decision
             FROM ledger_leaves l
             LEFT JOIN events e ON l.kind = 'event' AND e.seq = l.ref
             LEFT JOIN decisions d ON l.kind = 'decision' AND d.seq = l.ref
             WHERE l.tenant = $1 AND (
               (l.kind = 'event' AND ({chg} = $2 OR {inc} = $3))
               OR (l.kind = 'decision' AND (d.chg_id = $2 OR d.inc_id = $3)))
             ORDER BY l.idx"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(chg_id).bind(inc_id).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let kind = LeafKind::parse(r.get("kind"))?;
                let data: Option<String> = match kind {
                    LeafKind::Event => r.get("event"),
                    _ => r.get("decision"),
                };
                Ok(EvidenceRecord {
                    index: r.get::<i64, _>("idx") as u64,
                    kind,
                    data: data.ok_or_else(|| StoreError::Corrupt("an evidence record is gone".into()))?.into_bytes(),
                })
            })
            .collect()
    }

    /// The ledger records of these events (by position), for evidence that names events
    /// beyond a change's or incident's own (an incident timeline's serving figures).
    ///
    /// # Errors
    /// Database failures.
    pub async fn event_records(&self, tenant: &str, seqs: &[i64]) -> Result<Vec<EvidenceRecord>> {
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(500) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let sql = format!(
                "SELECT l.idx, e.body FROM ledger_leaves l JOIN events e ON l.kind = 'event' AND e.seq = l.ref
                 WHERE l.tenant = $1 AND l.kind = 'event' AND l.ref IN ({}) ORDER BY l.idx",
                list.join(",")
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).fetch_all(&self.read).await?;
            out.extend(rows.iter().map(|r| EvidenceRecord {
                index: r.get::<i64, _>(0) as u64,
                kind: LeafKind::Event,
                data: r.get::<String, _>(1).into_bytes(),
            }));
        }
        Ok(out)
    }
}
