//! Evidence bundles (SPEC §8 "WORM evidence"): everything the ledger holds about one change or
//! incident — its events and gate decisions (with the inputs they decided on), each with its
//! inclusion proof against a fresh signed checkpoint, the checkpoint, the trust bundle naming the
//! key, and the signed documents they name: each version's release record (the registry's DSSE
//! attestation listing the artifact's signatures, provenance and SBOM) and each policy snapshot
//! that decided — signed by the registry (DSSE) and written once to the evidence store with a
//! retention date.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fulcrum_ledger::merkle;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::problem::ApiError;

pub use fulcrum_store::s3::S3Config;

/// The DSSE payload type of an evidence bundle.
pub const EVIDENCE_MEDIA_TYPE: &str = "application/vnd.fulcrum.evidence.v1+json";

/// What was written.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EvidenceReceipt {
    /// The object's key in the evidence store.
    pub key: String,
    /// SHA-256 of the stored archive.
    pub digest: String,
    pub retain_until: String,
    pub records: usize,
    /// The size of the checkpoint the proofs are against.
    pub checkpoint_size: u64,
}

/// Build, sign and store the evidence of `chg_id` or `inc_id` for `tenant`.
///
/// # Errors
/// No record names it (404), the ledger or the signer failing (503), the store refusing.
pub async fn write(
    state: &AppState,
    tenant: &str,
    chg_id: Option<&str>,
    inc_id: Option<&str>,
    retention: time::Duration,
) -> Result<EvidenceReceipt, ApiError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "evidence");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "evidence_unavailable",
            "the evidence cannot be written now",
        )
    };
    let mut records = state.store.evidence_records(tenant, chg_id, inc_id).await?;
    if records.is_empty() {
        return Err(ApiError::not_found("change or incident"));
    }
    // An incident's evidence carries its timeline T0→T+N, and every event the timeline was
    // drawn from (serving figures carry no incident id) with its proof like the rest.
    let timeline = match (chg_id, inc_id) {
        (None, Some(i)) => {
            let t = crate::routes::incidents::timeline_of(state, tenant, i).await?;
            let have: std::collections::BTreeSet<u64> = records.iter().map(|r| r.index).collect();
            let seqs: Vec<i64> = t.steps.iter().map(|s| s.seq).collect();
            let more = state.store.event_records(tenant, &seqs).await?;
            records.extend(more.into_iter().filter(|r| !have.contains(&r.index)));
            records.sort_by_key(|r| r.index);
            Some(t)
        }
        _ => None,
    };
    let cp = state.ledger.checkpoint(state, time::Duration::ZERO).await.map_err(|e| unavailable(&e))?;
    // Every record's proof from one read of the stored subtrees.
    let paths: Vec<Vec<merkle::Range>> = records.iter().map(|r| merkle::inclusion_path(r.index, cp.size)).collect();
    let all: Vec<merkle::Range> = paths.iter().flatten().copied().collect();
    let mut hashes = state.store.ledger_ranges(&all).await.map_err(|e| unavailable(&e))?.into_iter();
    let mut out = Vec::with_capacity(records.len());
    for (r, path) in records.iter().zip(&paths) {
        let proof: Vec<fulcrum_ledger::Hash> = hashes.by_ref().take(path.len()).collect();
        out.push(json!({
            "index": r.index,
            "kind": r.kind.as_str(),
            "data": String::from_utf8_lossy(&r.data),
            "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        }));
    }
    let attachments = attachments(state, tenant, &records).await?;
    let now = state.clock.now();
    let bundle: Value = serde_json::from_slice(&state.keys.bundle().body).map_err(|e| unavailable(&e))?;
    let payload = serde_json::to_vec(&json!({
        "kind": "fulcrum-evidence/v1",
        "tenant": tenant,
        "chg_id": chg_id,
        "inc_id": inc_id,
        "created_at": now.format(&Rfc3339).expect("formats"),
        "checkpoint": {"origin": state.config.ledger_origin, "size": cp.size, "root": B64.encode(cp.root),
                       "note": cp.note, "kid": cp.kid},
        "trust_bundle": bundle,
        "records": out,
        "attachments": attachments,
        "timeline": timeline,
    }))
    .expect("json serialises");
    let signer = state.keys.current();
    let pae = fulcrum_sign::dsse_pae(EVIDENCE_MEDIA_TYPE, &payload);
    let sig = crate::blocking(|| signer.sign(&pae)).map_err(|e| unavailable(&e))?;
    let envelope = serde_json::to_vec_pretty(&json!({
        "payloadType": EVIDENCE_MEDIA_TYPE,
        "payload": B64.encode(&payload),
        "signatures": [{"keyid": signer.kid(), "sig": B64.encode(sig)}],
    }))
    .expect("json serialises");
    // One identifier rule holds everywhere (`check_identifier`), and the key is built from it
    // with `key_safe`, so whatever a change id the API took names an object here. The stamp has
    // nanoseconds and a random tail: two bundles of one change are two objects, never a clash.
    let which = match (chg_id, inc_id) {
        (Some(c), _) => format!("chg-{}", fulcrum_core::names::key_safe(c)),
        (None, Some(i)) => format!("inc-{}", fulcrum_core::names::key_safe(i)),
        (None, None) => unreachable!("asked for a change or an incident"),
    };
    let stamp = now
        .format(&time::macros::format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:9]"))
        .expect("formats");
    let tail = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let key = format!("{}/{which}-{stamp}-{tail}.dsse.json", fulcrum_core::names::key_safe(tenant));
    let until = now + retention;
    let r = state.evidence.put(&key, &envelope, until, now).await.map_err(|e| match e {
        fulcrum_store::worm::WormError::Exists(_) => {
            ApiError::conflict("evidence_exists", format!("{key} was already written"))
        }
        fulcrum_store::worm::WormError::BadKey(_) => {
            ApiError::bad_request("bad_identifier", "the change or incident id cannot name an object")
        }
        other => unavailable(&other),
    })?;
    Ok(EvidenceReceipt {
        key,
        digest: r.sha256,
        retain_until: r.retain_until,
        records: records.len(),
        checkpoint_size: cp.size,
    })
}

/// The signed documents the records name, each as its stored bytes with their digest: the
/// release records of the versions named by events, and the policy snapshots named by events
/// (`policy_digest`) and decisions (`bundles.fulcrum.revision`).
async fn attachments(
    state: &AppState,
    tenant: &str,
    records: &[fulcrum_store::ledger::EvidenceRecord],
) -> Result<Value, ApiError> {
    let mut versions = std::collections::BTreeSet::new();
    let mut policies = std::collections::BTreeSet::new();
    for r in records {
        let Ok(v) = serde_json::from_slice::<Value>(&r.data) else { continue };
        if let (Some(m), Some(ver)) = (v["data"]["model"].as_str(), v["data"]["version"].as_str()) {
            versions.insert((m.to_owned(), ver.to_owned()));
        }
        for p in [&v["data"]["policy_digest"], &v["bundles"]["fulcrum"]["revision"]] {
            if let Some(d) = p.as_str() {
                policies.insert(d.to_owned());
            }
        }
    }
    let mut releases = vec![];
    for (model, version) in versions {
        let Some(m) = state.store.get_model(tenant, &model).await? else { continue };
        let Some(v) = state.store.get_version(m.id, &version).await? else { continue };
        let bytes = state.blobs.read(&v.record_digest).await?;
        releases.push(json!({"model": model, "version": version, "digest": v.record_digest.to_string(),
                             "envelope": String::from_utf8_lossy(&bytes)}));
    }
    let mut snapshots = vec![];
    for digest in policies {
        if let Some(s) = state.store.policy_by_digest(&digest).await? {
            snapshots.push(json!({"digest": digest, "envelope": String::from_utf8_lossy(&s.envelope)}));
        }
    }
    Ok(json!({"release_records": releases, "policy_snapshots": snapshots}))
}
