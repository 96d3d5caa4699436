//! Fulcrum's Merkle code against an independent RFC 6962 implementation (`ct-merkle`) as the
//! oracle, over random tree sizes: roots, inclusion proofs and consistency proofs must be the
//! same bytes, and each side's proofs must verify with the other's verifier.

use std::collections::HashMap;

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof};
use fulcrum_ledger::Hash;
use fulcrum_ledger::merkle::{self, Node};
use proptest::prelude::*;
use sha2::Sha256;

struct Both {
    oracle: MemoryBackedTree<Sha256, Vec<u8>>,
    nodes: HashMap<Node, Hash>,
    leaves: Vec<Vec<u8>>,
}

fn build(n: u64) -> Both {
    let mut oracle = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut nodes = HashMap::new();
    let mut leaves = Vec::new();
    for i in 0..n {
        let data = format!("event {i}").into_bytes();
        oracle.push(data.clone());
        let written = merkle::append(i, merkle::leaf_hash(&data), &|nd| nodes[&nd]);
        nodes.extend(written);
        leaves.push(data);
    }
    Both { oracle, nodes, leaves }
}

fn flat(hs: &[Hash]) -> Vec<u8> {
    hs.iter().flatten().copied().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn same_roots_and_proofs_as_the_oracle(n in 1u64..1200, picks in proptest::collection::vec(0.0f64..1.0, 4)) {
        let t = build(n);
        let get = |nd| t.nodes[&nd];
        let root = merkle::root(n, &get);
        let oracle_root = t.oracle.root();
        prop_assert_eq!(root.as_slice(), oracle_root.as_bytes().as_slice());
        for p in &picks {
            let m = ((n as f64 * p) as u64).min(n - 1);
            // Inclusion: same bytes, and each verifier accepts the other's proof.
            let ours: Vec<Hash> = merkle::inclusion_path(m, n).into_iter().map(|r| merkle::range_hash(r, &get)).collect();
            let theirs = t.oracle.prove_inclusion(m as usize);
            prop_assert_eq!(flat(&ours), theirs.as_bytes().to_vec());
            let leaf = merkle::leaf_hash(&t.leaves[m as usize]);
            let proof: Vec<Hash> = theirs.as_bytes().chunks(32).map(|c| c.try_into().unwrap()).collect();
            prop_assert!(merkle::verify_inclusion(m, n, &leaf, &proof, &root).is_ok());
            prop_assert!(t.oracle.root().verify_inclusion(&t.leaves[m as usize], m, &InclusionProof::<Sha256>::from_bytes(flat(&ours))).is_ok());
            // Consistency from a smaller tree of m + 1 leaves (ct-merkle proves "old + additions").
            let first = m + 1;
            if first < n {
                let ours: Vec<Hash> = merkle::consistency_path(first, n).into_iter().map(|r| merkle::range_hash(r, &get)).collect();
                let theirs = t.oracle.prove_consistency((n - first) as usize);
                prop_assert_eq!(flat(&ours), theirs.as_bytes().to_vec());
                let first_root = merkle::root(first, &get);
                prop_assert!(merkle::verify_consistency(first, n, &first_root, &root, &ours).is_ok());
                let mut old = MemoryBackedTree::<Sha256, Vec<u8>>::new();
                for l in &t.leaves[..first as usize] { old.push(l.clone()); }
                prop_assert!(t.oracle.root().verify_consistency(&old.root(), &ConsistencyProof::<Sha256>::try_from_bytes(flat(&ours)).unwrap()).is_ok());
            }
        }
    }
}
