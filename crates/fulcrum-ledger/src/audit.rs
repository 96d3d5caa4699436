//! An auditor's check of the whole ledger, without trusting the registry's database: the
//! entries (each record's bytes as stored, and the leaf hash stored for it) are recomputed into
//! the tree and held against a checkpoint the registry signed, and against what this auditor
//! verified before (its [`Witness`]). The first bad entry is named.

use crate::checkpoint::Checkpoint;
use crate::merkle::{Frontier, leaf_hash};
use crate::{Hash, merkle};

/// One leaf as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub index: u64,
    /// The leaf hash stored in the tree.
    pub stored: Hash,
    /// The record's bytes as stored now: `None` when the record is gone.
    pub data: Option<Vec<u8>>,
    /// False for records of other tenants, whose bytes this auditor may not see (only their
    /// leaf hashes are checked).
    pub visible: bool,
}

/// What an auditor keeps between runs: the last checkpoint it verified and every leaf hash up
/// to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Witness {
    pub size: u64,
    pub root: Hash,
    pub leaves: Vec<Hash>,
}

/// The first thing wrong, by entry index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("entry {index}: the record was edited (its bytes no longer hash to its leaf)")]
    Edited { index: u64 },
    #[error("entry {index}: the record is gone")]
    Missing { index: u64 },
    #[error("entry {index}: missing from the list (entries were removed or reordered)")]
    Gap { index: u64 },
    #[error(
        "entry {index}: the ledger was rolled back or truncated (the registry signed {signed} entries, lists {listed}; this auditor saw {seen})"
    )]
    Truncated { index: u64, listed: u64, signed: u64, seen: u64 },
    #[error("entry {index}: its leaf differs from the one this auditor verified before (history rewritten)")]
    Rewritten { index: u64 },
    #[error("the entries do not make the root the registry signed for {size} entries")]
    RootMismatch { size: u64 },
}

impl Problem {
    /// The entry the problem starts at, if one can be named.
    pub fn index(&self) -> Option<u64> {
        match self {
            Problem::Edited { index }
            | Problem::Missing { index }
            | Problem::Gap { index }
            | Problem::Truncated { index, .. }
            | Problem::Rewritten { index } => Some(*index),
            Problem::RootMismatch { .. } => None,
        }
    }
}

/// Check `leaves` (the first `checkpoint.size` entries, in order) against the signed
/// `checkpoint` and the auditor's `witness`; the new witness when all holds.
///
/// # Errors
/// The first problem, by entry index.
pub fn verify(checkpoint: &Checkpoint, leaves: &[Leaf], witness: &Witness) -> Result<Witness, Problem> {
    let signed = checkpoint.size;
    let mut first: Option<Problem> = None;
    let mut note = |p: Problem| {
        if first.as_ref().is_none_or(|f| p.index().unwrap_or(u64::MAX) < f.index().unwrap_or(u64::MAX)) {
            first = Some(p);
        }
    };
    let listed = leaves.iter().take_while(|l| l.index < signed).count() as u64;
    if signed < witness.size || listed < signed {
        // The first entry the registry no longer stands behind.
        let index = listed.min(signed);
        note(Problem::Truncated { index, listed, signed, seen: witness.size });
    }
    for (i, l) in leaves.iter().take(signed as usize).enumerate() {
        let i = i as u64;
        if l.index != i {
            note(Problem::Gap { index: i });
            break;
        }
        match &l.data {
            None if l.visible => note(Problem::Missing { index: i }),
            Some(d) if leaf_hash(d) != l.stored => note(Problem::Edited { index: i }),
            _ => {}
        }
        if let Some(w) = witness.leaves.get(i as usize)
            && *w != l.stored
        {
            note(Problem::Rewritten { index: i });
        }
    }
    if let Some(p) = first {
        return Err(p);
    }
    let mut f = Frontier::default();
    for l in &leaves[..signed as usize] {
        f.push(l.stored);
        if f.size() == witness.size && witness.size > 0 && f.root() != witness.root {
            return Err(Problem::RootMismatch { size: witness.size });
        }
    }
    if f.root() != checkpoint.root {
        return Err(Problem::RootMismatch { size: signed });
    }
    Ok(Witness {
        size: signed,
        root: checkpoint.root,
        leaves: leaves[..signed as usize].iter().map(|l| l.stored).collect(),
    })
}

/// Is the entry `leaf` at `index` in the signed tree? (An inclusion proof from the registry.)
///
/// # Errors
/// Why not.
pub fn check_inclusion(
    index: u64,
    data: &[u8],
    proof: &[Hash],
    checkpoint: &Checkpoint,
) -> Result<(), merkle::ProofError> {
    merkle::verify_inclusion(index, checkpoint.size, &leaf_hash(data), proof, &checkpoint.root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(n: u64) -> (Checkpoint, Vec<Leaf>) {
        let leaves: Vec<Leaf> = (0..n)
            .map(|i| {
                let data = format!("record {i}").into_bytes();
                Leaf { index: i, stored: leaf_hash(&data), data: Some(data), visible: true }
            })
            .collect();
        let mut f = Frontier::default();
        leaves.iter().for_each(|l| f.push(l.stored));
        (Checkpoint { origin: "o".into(), size: n, root: f.root(), state: None }, leaves)
    }

    #[test]
    fn tampering_is_named_at_its_first_entry() {
        let (cp, good) = ledger(20);
        let w = verify(&cp, &good, &Witness::default()).unwrap();
        assert_eq!((w.size, w.leaves.len()), (20, 20));
        // (what, tamper, the problem expected)
        type Tamper = Box<dyn Fn(&mut Vec<Leaf>)>;
        let cases: Vec<(&str, Tamper, Problem)> = vec![
            ("edited", Box::new(|l| l[7].data = Some(b"changed".to_vec())), Problem::Edited { index: 7 }),
            ("removed record", Box::new(|l| l[5].data = None), Problem::Missing { index: 5 }),
            (
                "removed entry",
                Box::new(|l| {
                    l.remove(9);
                }),
                Problem::Gap { index: 9 },
            ),
            (
                "swapped records",
                Box::new(|l| {
                    let (a, b) = (l[3].data.clone(), l[11].data.clone());
                    l[3].data = b;
                    l[11].data = a;
                }),
                Problem::Edited { index: 3 },
            ),
            (
                "truncated",
                Box::new(|l| l.truncate(12)),
                Problem::Truncated { index: 12, listed: 12, signed: 20, seen: 20 },
            ),
            (
                "leaf and record both rewritten",
                Box::new(|l| {
                    l[4].data = Some(b"forged".to_vec());
                    l[4].stored = leaf_hash(b"forged");
                }),
                Problem::Rewritten { index: 4 },
            ),
        ];
        for (what, tamper, want) in cases {
            let mut l = good.clone();
            tamper(&mut l);
            assert_eq!(verify(&cp, &l, &w), Err(want), "{what}");
        }
        // Without a witness, a rewritten leaf is caught by the signed root.
        let mut l = good.clone();
        l[4].data = Some(b"forged".to_vec());
        l[4].stored = leaf_hash(b"forged");
        assert_eq!(verify(&cp, &l, &Witness::default()), Err(Problem::RootMismatch { size: 20 }));
        // A registry rolled back to a backup signs a smaller tree than the auditor saw.
        let (old_cp, old) = ledger(15);
        assert_eq!(verify(&old_cp, &old, &w), Err(Problem::Truncated { index: 15, listed: 15, signed: 15, seen: 20 }));
        // Other tenants' records are checked by their leaf only.
        let mut l = good.clone();
        l[2].data = None;
        l[2].visible = false;
        assert!(verify(&cp, &l, &w).is_ok());
        // Growth is fine, and the new witness covers it.
        let (cp30, more) = ledger(30);
        assert_eq!(verify(&cp30, &more, &w).unwrap().size, 30);
    }
}
