//! The audit ledger's pure core (SPEC §8 "Audit ledger").
//!
//! - [`merkle`]: RFC 6962 / RFC 9162 hashing, the subtree ranges an inclusion or consistency
//!   proof is made of, the stored nodes an append completes, and the proof verifiers.
//! - [`checkpoint`]: signed tree heads as C2SP tlog checkpoints (signed notes), with the state
//!   map's head as an extension line.
//! - [`state`]: the state map (every version's governance state as the ledger implies it), its
//!   tree and proofs: what makes a permit provably current.
//!
//! # Invariants
//! - Leaves and interior nodes are hashed with different prefixes (0x00 / 0x01): a leaf can
//!   never pass for a node.
//! - A stored node is the root of a *full, aligned* subtree, so it never changes once written;
//!   any other range's hash is folded from them.
//! - Proofs are bounded (64 hashes) before any work is done on them.
//! - No I/O: storage reads nodes by [`merkle::Node`] and hands them in.

pub mod audit;
pub mod checkpoint;
pub mod merkle;
pub mod state;

/// A SHA-256 hash.
pub type Hash = [u8; 32];
