//! Proof that what the agent acts on is on the registry's audit ledger (SPEC §8), demanded with
//! `--require-ledger-proof`. Pure: the checkpoint, entry and proof come from the registry, but
//! none is believed until it verifies against the pinned trust bundle.
//!
//! Two leaves are proven before a version is served:
//! - the resolve answer's `ledger_index`: the lifecycle event behind the answer. The agent reads
//!   the event's bytes, checks that it names the answer's tenant, model and version, and that
//!   its leaf is in the tree of a checkpoint signed by a trusted key;
//! - the release record's `release_gate_decision`: the release gate's decision, named in the
//!   signed record by index and leaf hash (its content is for auditors); the leaf at that index
//!   must have that hash, proven the same way.
//!
//! So an answer the registry did not also write into its append-only, witnessed log is refused:
//! a registry that serves one story to agents and keeps another for auditors is caught.
//!
//! And the permit is proven *current*: the version's leaf in the state map
//! (`fulcrum_ledger::state`) that a checkpoint signed after the answer was issued commits to
//! must still say `hold none` at the answer's stage. A revocation or quarantine anywhere in the
//! ledger up to that checkpoint — or a database row edited to undo one, which the state map
//! never reads — refuses the permit (`permit_not_current`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fulcrum_core::resolve::ResolveDocument;
use fulcrum_ledger::Hash;
use fulcrum_ledger::checkpoint::Checkpoint;
use fulcrum_ledger::merkle;
use fulcrum_ledger::state::StateLeaf;
use fulcrum_sign::TrustBundle;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::check::Deny;

/// A checkpoint as the registry sends it: the signed note, its origin and the signing key.
#[derive(Debug, Clone, Copy)]
pub struct SignedCheckpoint<'a> {
    pub note: &'a str,
    pub origin: &'a str,
    pub kid: &'a str,
}

/// The gate decision a release record names (`release_gate_decision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateLeaf {
    pub index: u64,
    pub leaf_hash: Hash,
}

fn unproven(why: impl Into<String>) -> Deny {
    Deny::LedgerUnproven(why.into())
}

/// The checkpoint, once its note verifies with a key of the trusted bundle that is not
/// compromised.
///
/// # Errors
/// `ledger_unproven` naming why.
pub fn open_checkpoint(bundle: &TrustBundle, cp: SignedCheckpoint<'_>) -> Result<Checkpoint, Deny> {
    Checkpoint::verify_trusted(cp.note, cp.origin, cp.kid, bundle).map_err(|e| unproven(e.to_string()))
}

/// The proof's hashes, base64 as the registry sends them.
///
/// # Errors
/// `ledger_unproven` for anything but 32-byte hashes.
pub fn decode_hashes(b64: &[String]) -> Result<Vec<Hash>, Deny> {
    b64.iter().map(|h| decode_hash(h)).collect()
}

fn decode_hash(h: &str) -> Result<Hash, Deny> {
    B64.decode(h)
        .ok()
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .ok_or_else(|| unproven("a proof hash is not 32 bytes of base64"))
}

/// The answer's event leaf: it must be an event of the answer's tenant, model and version, and
/// its leaf (hashed here from the bytes) must be in the checkpoint's tree.
///
/// # Errors
/// `ledger_unproven` naming what did not hold.
pub fn check_answer_leaf(doc: &ResolveDocument, cp: &Checkpoint, data: &[u8], proof: &[Hash]) -> Result<(), Deny> {
    let index = doc.ledger_index.ok_or_else(|| unproven("the answer names no ledger entry"))?;
    if index >= cp.size {
        return Err(unproven(format!("entry {index} is not in the checkpoint of {} entries", cp.size)));
    }
    let ev: serde_json::Value =
        serde_json::from_slice(data).map_err(|_| unproven(format!("entry {index} is not an event")))?;
    let d = &ev["data"];
    let names = |field: &str, want: &str| d[field].as_str() == Some(want);
    if ev["specversion"] != "1.0" || !names("tenant", &doc.tenant) || !names("model", &doc.name) {
        return Err(unproven(format!("entry {index} is not an event of {}/{}", doc.tenant, doc.name)));
    }
    if !names("version", &doc.version) {
        return Err(unproven(format!("entry {index} is about another version than {}", doc.version)));
    }
    merkle::verify_inclusion(index, cp.size, &merkle::leaf_hash(data), proof, &cp.root)
        .map_err(|e| unproven(format!("entry {index} is not in the signed tree: {e}")))
}

/// The release record's gate-decision leaf, from its signed predicate.
///
/// # Errors
/// `ledger_unproven` when the record names none (or not in the expected shape).
pub fn gate_leaf(predicate: &serde_json::Value) -> Result<GateLeaf, Deny> {
    let g = &predicate["release_gate_decision"];
    let index = g["ledger_index"].as_u64().ok_or_else(|| unproven("the release record names no gate decision leaf"))?;
    let leaf_hash = decode_hash(g["leaf_hash"].as_str().unwrap_or_default())?;
    Ok(GateLeaf { index, leaf_hash })
}

/// The gate decision's leaf, by the hash the signed record names, is in the checkpoint's tree.
///
/// # Errors
/// `ledger_unproven` naming what did not hold.
pub fn check_gate_leaf(leaf: &GateLeaf, cp: &Checkpoint, proof: &[Hash]) -> Result<(), Deny> {
    if leaf.index >= cp.size {
        return Err(unproven(format!("entry {} is not in the checkpoint of {} entries", leaf.index, cp.size)));
    }
    merkle::verify_inclusion(leaf.index, cp.size, &leaf.leaf_hash, proof, &cp.root).map_err(|e| {
        unproven(format!("the release gate's decision (entry {}) is not in the signed tree: {e}", leaf.index))
    })
}

/// A version's proven leaf in a checkpoint's state map, as the registry sends it.
#[derive(Debug, Clone, Copy)]
pub struct StateProof<'a> {
    pub leaf: &'a [u8],
    pub index: u64,
    pub count: u64,
    pub hashes: &'a [Hash],
}

/// Is the answer still current per the ledger? The checkpoint (already trusted) must commit to a
/// state map, be signed no earlier than the answer, and cover the answer's entry; the leaf must
/// be the answer's version (tenant, model, label, seq, artifact), at the answer's stage and not
/// held; and it must be in the map.
///
/// # Errors
/// `ledger_unproven` when it cannot be shown; `permit_not_current` when the ledger says the
/// version is held or at another stage.
pub fn check_current(doc: &ResolveDocument, cp: &Checkpoint, p: StateProof<'_>) -> Result<(), Deny> {
    let head = cp.state.ok_or_else(|| unproven("the checkpoint commits to no state map"))?;
    let issued = OffsetDateTime::parse(&doc.issued_at, &Rfc3339)
        .map_err(|_| unproven("the answer's issue time does not parse"))?
        .unix_timestamp();
    if i64::try_from(head.signed_at).unwrap_or(i64::MAX) < issued {
        return Err(unproven(format!(
            "the state map was signed at {} s, before the answer was issued ({issued} s)",
            head.signed_at
        )));
    }
    let index = doc.ledger_index.ok_or_else(|| unproven("the answer names no ledger entry"))?;
    if index >= cp.size {
        return Err(unproven(format!("entry {index} is not in the checkpoint of {} entries", cp.size)));
    }
    let leaf = StateLeaf::parse(p.leaf).map_err(|e| unproven(e.to_string()))?;
    let same = leaf.tenant == doc.tenant
        && leaf.model == doc.name
        && leaf.version == doc.version
        && leaf.seq == doc.seq
        && leaf.artifact_digest == doc.artifact_digest;
    if !same {
        return Err(unproven(format!("the state leaf is not {}/{} {}", doc.tenant, doc.name, doc.version)));
    }
    merkle::verify_inclusion(p.index, head.count, &merkle::leaf_hash(p.leaf), p.hashes, &head.root)
        .map_err(|e| unproven(format!("the state leaf is not in the signed state map: {e}")))?;
    if leaf.hold != "none" {
        return Err(Deny::NotCurrent(format!("the ledger says {} {} is {}", doc.name, doc.version, leaf.hold)));
    }
    if leaf.stage != doc.stage {
        return Err(Deny::NotCurrent(format!(
            "the ledger says {} {} is {}, the answer {}",
            doc.name, doc.version, leaf.stage, doc.stage
        )));
    }
    Ok(())
}
