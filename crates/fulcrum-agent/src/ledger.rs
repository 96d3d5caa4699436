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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fulcrum_core::resolve::ResolveDocument;
use fulcrum_ledger::Hash;
use fulcrum_ledger::checkpoint::Checkpoint;
use fulcrum_ledger::merkle;
use fulcrum_sign::TrustBundle;

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
