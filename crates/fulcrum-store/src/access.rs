//! Access decisions, stored packed (migration 0005): each distinct masked input + result is
//! stored once (`decision_inputs`); each writer batch of one tenant's decisions is one
//! `access_batches` row whose blob holds 27 bytes per decision. Records are assembled into
//! OPA's decision-log shape when read.

use std::collections::HashMap;

use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Result, Store};

/// Bytes per packed decision: id 16, time 8, input index 2, verdict 1.
pub const ENTRY_LEN: usize = 27;
/// Decisions per batch row at most (the cursor keeps the index in 16 bits).
pub const MAX_BATCH: usize = 4096;
/// The rule path access decisions evaluate.
pub const ACCESS_PATH: &str = "fulcrum/authz/decision";

/// A (masked) decision input and its result under one policy revision.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    pub digest: String,
    pub revision: String,
    /// The resource's model, if the decision was about one (for filtering).
    pub model: Option<String>,
    /// JSON.
    pub input: String,
    /// JSON `{"allow": …, "deny": […]}`.
    pub result: String,
    /// JSON `{"erased": […], "labels": {…}}`.
    pub extra: String,
}

/// One access decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessEntry {
    /// UUIDv7 bytes.
    pub id: [u8; 16],
    pub at_ns: i64,
    /// Index into the batch's input digests.
    pub input: u16,
    pub allow: bool,
}

/// One tenant's decisions from one writer batch.
#[derive(Debug, Clone, Default)]
pub struct AccessBatch {
    pub tenant: String,
    /// Digests of the inputs `entries` refer to, by index.
    pub inputs: Vec<String>,
    pub entries: Vec<AccessEntry>,
}

/// Pack entries, 27 bytes each, little-endian.
pub fn pack(entries: &[AccessEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(&e.id);
        out.extend_from_slice(&e.at_ns.to_le_bytes());
        out.extend_from_slice(&e.input.to_le_bytes());
        out.push(u8::from(e.allow));
    }
    out
}

/// Unpack what [`pack`] wrote; `None` for a blob that is not a whole number of entries.
pub fn unpack(blob: &[u8]) -> Option<Vec<AccessEntry>> {
    if !blob.len().is_multiple_of(ENTRY_LEN) {
        return None;
    }
    Some(
        blob.chunks_exact(ENTRY_LEN)
            .map(|c| AccessEntry {
                id: c[..16].try_into().expect("16 bytes"),
                at_ns: i64::from_le_bytes(c[16..24].try_into().expect("8 bytes")),
                input: u16::from_le_bytes(c[24..26].try_into().expect("2 bytes")),
                allow: c[26] != 0,
            })
            .collect(),
    )
}

/// Filters for reading access decisions of one tenant.
#[derive(Debug, Clone, Default)]
pub struct AccessQuery {
    pub tenant: String,
    pub model: Option<String>,
    pub decision_id: Option<uuid::Uuid>,
    /// Cursor: `batch seq << 16 | index` of the last decision seen.
    pub after: i64,
    pub limit: u32,
}

impl Store {
    /// Store a writer batch in one transaction: all or none. `inputs` are those first used by
    /// this batch (repeats are ignored).
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_access(&self, inputs: &[DecisionInput], batches: &[AccessBatch]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for i in inputs {
            sqlx::query(
                "INSERT INTO decision_inputs (digest, revision, model, input, result, extra) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING",
            )
            .bind(&i.digest)
            .bind(&i.revision)
            .bind(&i.model)
            .bind(&i.input)
            .bind(&i.result)
            .bind(&i.extra)
            .execute(&mut *tx)
            .await?;
        }
        for b in batches {
            for part in b.entries.chunks(MAX_BATCH) {
                let first = part.iter().map(|e| e.at_ns).min().unwrap_or(0);
                let last = part.iter().map(|e| e.at_ns).max().unwrap_or(0);
                let inputs = serde_json::to_string(&b.inputs).expect("strings serialise");
                let packed = pack(part);
                let seq: i64 = sqlx::query(
                    "INSERT INTO access_batches (tenant, first_ns, last_ns, count, inputs, entries) VALUES ($1,$2,$3,$4,$5,$6) RETURNING seq",
                )
                .bind(&b.tenant)
                .bind(first)
                .bind(last)
                .bind(part.len() as i64)
                .bind(&inputs)
                .bind(&packed)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
                let leaf = crate::ledger::access_leaf(&b.tenant, first, last, part.len() as i64, &inputs, &packed);
                crate::ledger::append(&mut tx, crate::ledger::LeafKind::Access, seq, &b.tenant, &leaf).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Access decisions of a tenant, oldest first, as OPA decision-log records with their
    /// cursors.
    ///
    /// # Errors
    /// Database failures.
    pub async fn access_decisions(&self, q: &AccessQuery) -> Result<Vec<(i64, String)>> {
        let (after_seq, after_idx) = (q.after >> 16, q.after & 0xffff);
        // A UUIDv7 names its millisecond: only batches spanning it can hold the decision.
        let window = q.decision_id.and_then(|id| id.get_timestamp()).map(|ts| {
            let (s, n) = ts.to_unix();
            let ns = i64::try_from(s).unwrap_or(i64::MAX / 2) * 1_000_000_000 + i64::from(n);
            (ns - 1_000_000, ns + 1_000_000)
        });
        let mut out = Vec::new();
        let mut inputs: HashMap<String, Option<StoredInput>> = HashMap::new();
        let mut cursor = after_seq;
        'batches: loop {
            let rows = sqlx::query(
                "SELECT seq, inputs, entries FROM access_batches
                  WHERE tenant = $1 AND seq >= $2 AND ($3 IS NULL OR (first_ns <= $4 AND last_ns >= $5))
                  ORDER BY seq LIMIT 64",
            )
            .bind(&q.tenant)
            .bind(cursor)
            .bind(window.map(|w| w.0))
            .bind(window.map(|w| w.1))
            .bind(window.map(|w| w.0))
            .fetch_all(&self.read)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let seq: i64 = r.get(0);
                cursor = seq + 1;
                let digests: Vec<String> = serde_json::from_str(&r.get::<String, _>(1)).unwrap_or_default();
                let Some(entries) = unpack(&r.get::<Vec<u8>, _>(2)) else {
                    tracing::error!(seq, "an access decision batch is malformed; skipped");
                    continue;
                };
                for (idx, e) in entries.iter().enumerate() {
                    if seq == after_seq && (idx as i64) <= after_idx && q.after > 0 {
                        continue;
                    }
                    if q.decision_id.is_some_and(|id| id.as_bytes() != &e.id) {
                        continue;
                    }
                    let Some(digest) = digests.get(usize::from(e.input)) else { continue };
                    if !inputs.contains_key(digest) {
                        let row = sqlx::query(
                            "SELECT revision, model, input, result, extra FROM decision_inputs WHERE digest = $1",
                        )
                        .bind(digest)
                        .fetch_optional(&self.read)
                        .await?;
                        let stored = row.map(|r| StoredInput {
                            revision: r.get(0),
                            model: r.get(1),
                            input: r.get(2),
                            result: r.get(3),
                            extra: r.get(4),
                        });
                        inputs.insert(digest.clone(), stored);
                    }
                    let Some(Some(stored)) = inputs.get(digest) else { continue };
                    if q.model.is_some() && q.model != stored.model {
                        continue;
                    }
                    out.push(((seq << 16) | idx as i64, assemble(e, stored)));
                    if out.len() >= q.limit as usize {
                        break 'batches;
                    }
                }
            }
            if q.decision_id.is_some() && !out.is_empty() {
                break;
            }
        }
        Ok(out)
    }
}

struct StoredInput {
    revision: String,
    model: Option<String>,
    input: String,
    result: String,
    extra: String,
}

fn assemble(e: &AccessEntry, s: &StoredInput) -> String {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let extra = parse(&s.extra);
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut rec = serde_json::json!({
        "decision_id": uuid::Uuid::from_bytes(e.id).to_string(),
        "path": ACCESS_PATH,
        "input": parse(&s.input),
        "result": parse(&s.result),
        "bundles": {"fulcrum": {"revision": s.revision}},
        "timestamp": at.format(&Rfc3339).expect("formats"),
        "labels": extra["labels"],
    });
    if extra["erased"].as_array().is_some_and(|a| !a.is_empty()) {
        rec["erased"] = extra["erased"].clone();
    }
    rec.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_round_trips(raw in proptest::collection::vec((any::<[u8; 16]>(), any::<i64>(), any::<u16>(), any::<bool>()), 0..64)) {
            let entries: Vec<AccessEntry> =
                raw.into_iter().map(|(id, at_ns, input, allow)| AccessEntry { id, at_ns, input, allow }).collect();
            let packed = pack(&entries);
            prop_assert_eq!(packed.len(), entries.len() * ENTRY_LEN);
            prop_assert_eq!(unpack(&packed), Some(entries));
        }

        #[test]
        fn unpack_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..200)) {
            let out = unpack(&blob);
            prop_assert_eq!(out.is_some(), blob.len() % ENTRY_LEN == 0);
        }
    }
}
