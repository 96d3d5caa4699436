//! Audit ledger inputs from untrusted bytes: checkpoint notes (parsing never panics; what parses
//! re-encodes to the note's own text — its state line included — and carries a bounded number of
//! signatures), state-map leaves (what parses re-encodes to the same bytes) and proofs
//! (verification of arbitrary hashes never panics and never accepts a proof of the wrong length).
#![no_main]

use fulcrum_ledger::checkpoint::{Checkpoint, MAX_SIGNATURES};
use fulcrum_ledger::merkle;
use fulcrum_ledger::state::StateLeaf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(leaf) = StateLeaf::parse(data) {
        assert_eq!(leaf.bytes(), data);
    }
    if let Ok(note) = std::str::from_utf8(data)
        && let Ok((cp, sigs)) = Checkpoint::parse(note)
    {
        assert!(note.starts_with(&cp.text()));
        assert!(sigs.len() <= MAX_SIGNATURES);
    }
    if data.len() >= 16 {
        let a = u64::from_le_bytes(data[..8].try_into().unwrap());
        let b = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let hashes: Vec<[u8; 32]> = data[16..].chunks_exact(32).map(|c| c.try_into().unwrap()).collect();
        let (root, rest) = match hashes.split_first() {
            Some((r, rest)) => (*r, rest),
            None => ([0; 32], &[][..]),
        };
        if merkle::verify_inclusion(a, b, &root, rest, &root).is_ok() {
            assert!(a < b && rest.len() <= 64);
        }
        let _ = merkle::verify_consistency(a, b, &root, &root, rest);
    }
});
