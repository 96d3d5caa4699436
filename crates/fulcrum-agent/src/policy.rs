//! The policy snapshot a resolve answer names (`policy_digest`): fetched by digest, accepted
//! only as a DSSE envelope signed by a key of the pinned bundle (not a compromised one) whose
//! payload hashes to exactly that digest. A resolve answer and a policy from different
//! points in time (mix-and-match) therefore cannot pass together.
//!
//! The snapshot is then **evaluated here**: its environment rule (`fulcrum.env`) decides the
//! version for this environment with the same input the registry uses, so a version the policy
//! does not allow is refused even if an answer says permit. The agent runs the policy engine
//! only; it never installs or authors policy.

use fulcrum_core::Digest;
use fulcrum_sign::TrustBundle;

use crate::check::Deny;

/// The payload type of a registry-signed policy snapshot.
pub use fulcrum_policy::SNAPSHOT_MEDIA_TYPE;

/// Verify a snapshot envelope against the pinned bundle and the digest the answer names;
/// returns the snapshot's canonical bytes.
///
/// # Errors
/// `Deny::PolicyUnverified` naming what did not hold.
pub fn verify_snapshot(bundle: &TrustBundle, envelope: &[u8], digest: &str) -> Result<Vec<u8>, Deny> {
    let bad = |why: &str| Deny::PolicyUnverified(format!("{digest}: {why}"));
    let want: Digest = digest.parse().map_err(|_| bad("not a digest"))?;
    let payload =
        fulcrum_sign::dsse::open_trusted(bundle, envelope, SNAPSHOT_MEDIA_TYPE).map_err(|e| bad(&e.to_string()))?;
    if Digest::of(&payload) != want {
        return Err(bad("the signed snapshot has another digest"));
    }
    Ok(payload)
}

/// The environment rule's input for a resolve answer: what the registry evaluates for it.
pub fn env_input(doc: &fulcrum_core::resolve::ResolveDocument) -> serde_json::Value {
    let hold = if doc.revoked {
        "revoked"
    } else if doc.quarantined {
        "quarantined"
    } else {
        "none"
    };
    serde_json::json!({
        "env": doc.env,
        "alias": doc.alias,
        "model": {"name": doc.name, "tenant": doc.tenant, "domain": doc.domain},
        "version": {"label": doc.version, "seq": doc.seq, "stage": doc.stage, "hold": hold},
    })
}

/// Compiled snapshots by digest (a snapshot never changes, so neither does its compilation).
static COMPILED: std::sync::Mutex<Option<(String, std::sync::Arc<fulcrum_policy::Policy>)>> =
    std::sync::Mutex::new(None);

fn compiled(snapshot: &[u8], digest: &str) -> Result<std::sync::Arc<fulcrum_policy::Policy>, Deny> {
    // Whatever the cache holds, these bytes must be that snapshot.
    if Digest::of(snapshot).to_string() != digest {
        return Err(Deny::PolicyUnverified(format!("{digest}: the bytes are another snapshot")));
    }
    if let Some((d, p)) = COMPILED.lock().expect("policy cache").as_ref()
        && d == digest
    {
        return Ok(p.clone());
    }
    let bad = |why: String| Deny::PolicyUnverified(format!("{digest}: {why}"));
    let s = fulcrum_policy::Snapshot::from_canonical_bytes(snapshot).map_err(|e| bad(e.to_string()))?;
    if s.digest() != digest {
        return Err(bad("the snapshot has another digest".into()));
    }
    let p = std::sync::Arc::new(fulcrum_policy::Policy::compile(&s).map_err(|e| bad(e.to_string()))?);
    *COMPILED.lock().expect("policy cache") = Some((digest.to_owned(), p.clone()));
    Ok(p)
}

/// Evaluate the verified snapshot's environment rule for `doc`.
///
/// # Errors
/// `Deny::PolicyDenies` with the policy's reasons; `Deny::PolicyUnverified` for a snapshot
/// that does not compile or pass its own tests.
pub fn evaluate(snapshot: &[u8], doc: &fulcrum_core::resolve::ResolveDocument) -> Result<(), Deny> {
    let policy = compiled(snapshot, &doc.policy_digest)?;
    let out = policy.decide("fulcrum.env", &env_input(doc));
    if out.allow { Ok(()) } else { Err(Deny::PolicyDenies(out.deny.join(","))) }
}
