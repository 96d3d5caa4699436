//! RFC 6962 / RFC 9162 Merkle trees over stored full subtrees.
//!
//! The tree is kept as the hashes of its full, aligned subtrees ([`Node`]): leaf `i` is
//! `(level 0, index i)`, and `(level l, index j)` covers leaves `[j·2^l, (j+1)·2^l)`. Those never
//! change once the last of their leaves is appended, so an append writes O(1) amortised nodes
//! ([`append`]) and any range the proofs need is folded from at most log₂ n of them
//! ([`pieces`], [`range_hash`]).

use sha2::{Digest as _, Sha256};

use crate::Hash;

/// The longest proof accepted: a tree of 2^64 leaves needs at most 64 hashes.
pub const MAX_PROOF: usize = 64;

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A full, aligned subtree: leaves `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub level: u8,
    pub index: u64,
}

/// A range of leaves `[start, end)`.
pub type Range = (u64, u64);

/// The largest power of two strictly below `n` (`n ≥ 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The full subtrees `[start, end)` is made of, largest first. For the ranges that occur in
/// RFC 6962 trees (the left edge of each split is aligned to the split) this is exactly the
/// decomposition the tree's recursive definition uses.
pub fn pieces((start, end): Range) -> Vec<Node> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let align = if at == 0 { 63 } else { at.trailing_zeros() };
        let fit = 63 - (end - at).leading_zeros();
        let level = align.min(fit);
        out.push(Node { level: level as u8, index: at >> level });
        at += 1 << level;
    }
    out
}

/// `MTH(D[start:end])` from the stored full subtrees (`get`), for a non-empty range whose
/// pieces are stored.
pub fn range_hash(range: Range, get: &impl Fn(Node) -> Hash) -> Hash {
    let ps = pieces(range);
    let (last, rest) = ps.split_last().expect("a non-empty range");
    rest.iter().rev().fold(get(*last), |acc, p| node_hash(&get(*p), &acc))
}

/// The root of a tree of `size` leaves.
pub fn root(size: u64, get: &impl Fn(Node) -> Hash) -> Hash {
    if size == 0 { empty_root() } else { range_hash((0, size), get) }
}

/// The ranges whose hashes make the inclusion proof of leaf `m` in a tree of `n` leaves
/// (RFC 6962 §2.1.1 `PATH`), from the leaf up. `m < n`.
pub fn inclusion_path(m: u64, n: u64) -> Vec<Range> {
    fn path(m: u64, (start, end): Range, out: &mut Vec<Range>) {
        if end - start <= 1 {
            return;
        }
        let k = split(end - start);
        if m < start + k {
            path(m, (start, start + k), out);
            out.push((start + k, end));
        } else {
            path(m, (start + k, end), out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if m < n {
        path(m, (0, n), &mut out);
    }
    out
}

/// The ranges whose hashes make the consistency proof between trees of `m` and `n` leaves
/// (RFC 6962 §2.1.2 `PROOF`). Empty when `m` is 0 or `m == n`. `m ≤ n`.
pub fn consistency_path(m: u64, n: u64) -> Vec<Range> {
    fn sub(m: u64, (start, end): Range, whole: bool, out: &mut Vec<Range>) {
        let len = end - start;
        if m == len {
            if !whole {
                out.push((start, end));
            }
            return;
        }
        let k = split(len);
        if m <= k {
            sub(m, (start, start + k), whole, out);
            out.push((start + k, end));
        } else {
            sub(m - k, (start + k, end), false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if m > 0 && m < n {
        sub(m, (0, n), true, &mut out);
    }
    out
}

/// Every stored node a set of ranges needs, sorted and without duplicates.
pub fn nodes_for(ranges: &[Range]) -> Vec<Node> {
    let mut v: Vec<Node> = ranges.iter().flat_map(|r| pieces(*r)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The stored nodes appending leaf `n` (0-based) needs: the left siblings it completes.
pub fn append_siblings(n: u64) -> Vec<Node> {
    (0..n.trailing_ones()).map(|l| Node { level: l as u8, index: (n >> l) - 1 }).collect()
}

/// The nodes appending leaf `n` with hash `leaf` writes: the leaf, then each subtree it
/// completes. `get` answers the nodes [`append_siblings`] names.
pub fn append(n: u64, leaf: Hash, get: &impl Fn(Node) -> Hash) -> Vec<(Node, Hash)> {
    let mut out = vec![(Node { level: 0, index: n }, leaf)];
    let (mut level, mut index, mut h) = (0u8, n, leaf);
    while index & 1 == 1 {
        h = node_hash(&get(Node { level, index: index - 1 }), &h);
        level += 1;
        index >>= 1;
        out.push((Node { level, index }, h));
    }
    out
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the leaf index {0} is not in a tree of {1}")]
    OutOfRange(u64, u64),
    #[error("the proof is longer than {MAX_PROOF} hashes")]
    TooLong,
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the root")]
    Mismatch,
    #[error("the second tree is smaller than the first")]
    Shrunk,
}

/// RFC 9162 §2.1.3.2: is `leaf` at `index` in the tree of `size` leaves with `root`?
///
/// # Errors
/// Why not.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(index, size));
    }
    if proof.len() > MAX_PROOF {
        return Err(ProofError::TooLong);
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: is the tree of `second` leaves with `second_root` an append-only
/// extension of the tree of `first` leaves with `first_root`?
///
/// # Errors
/// Why not.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::Shrunk);
    }
    if proof.len() > MAX_PROOF {
        return Err(ProofError::TooLong);
    }
    if first == second {
        return if !proof.is_empty() {
            Err(ProofError::WrongLength)
        } else if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if first == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(ProofError::WrongLength) };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The tree's definition, recursively, as the oracle for everything stored.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<Hash>, HashMap<Node, Hash>) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut nodes = HashMap::new();
        for (i, l) in leaves.iter().enumerate() {
            let got = append(i as u64, *l, &|nd| nodes[&nd]);
            for s in append_siblings(i as u64) {
                assert!(nodes.contains_key(&s), "sibling {s:?} of leaf {i} is stored");
            }
            nodes.extend(got);
        }
        (leaves, nodes)
    }

    #[test]
    fn stored_nodes_fold_to_the_trees_definition() {
        let (leaves, nodes) = build(70);
        for n in 0..=70u64 {
            assert_eq!(root(n, &|nd| nodes[&nd]), mth(&leaves[..n as usize]), "size {n}");
            for start in 0..n {
                // Every range a proof can name folds correctly.
                for (a, b) in inclusion_path(start, n).into_iter().chain(consistency_path(start, n)) {
                    assert_eq!(range_hash((a, b), &|nd| nodes[&nd]), mth(&leaves[a as usize..b as usize]));
                }
            }
        }
    }

    #[test]
    fn proofs_verify_and_tampering_fails() {
        let (leaves, nodes) = build(40);
        let get = |nd| nodes[&nd];
        for n in 1..=40u64 {
            let root_n = root(n, &get);
            for m in 0..n {
                let proof: Vec<Hash> = inclusion_path(m, n).into_iter().map(|r| range_hash(r, &get)).collect();
                verify_inclusion(m, n, &leaves[m as usize], &proof, &root_n).unwrap();
                let other = (m + 1) % n;
                if other != m {
                    assert!(verify_inclusion(other, n, &leaves[m as usize], &proof, &root_n).is_err());
                }
            }
            for m in 0..=n {
                let proof: Vec<Hash> = consistency_path(m, n).into_iter().map(|r| range_hash(r, &get)).collect();
                let root_m = root(m, &get);
                verify_consistency(m, n, &root_m, &root_n, &proof).unwrap();
                if m > 0 && m < n {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_consistency(m, n, &root_m, &root_n, &bad).is_err());
                }
            }
        }
    }

    #[test]
    fn rfc_9162_edge_cases() {
        let (_, nodes) = build(8);
        let get = |nd| nodes[&nd];
        let r = |n| root(n, &get);
        // size 0: nothing is in it, and it is consistent with every tree.
        assert_eq!(r(0), empty_root());
        assert!(matches!(verify_inclusion(0, 0, &r(1), &[], &r(0)), Err(ProofError::OutOfRange(0, 0))));
        verify_consistency(0, 8, &r(0), &r(8), &[]).unwrap();
        assert!(verify_consistency(0, 8, &r(0), &r(8), &[r(1)]).is_err());
        // first == second: an empty proof and equal roots.
        verify_consistency(5, 5, &r(5), &r(5), &[]).unwrap();
        assert!(verify_consistency(5, 5, &r(5), &r(6), &[]).is_err());
        assert!(verify_consistency(5, 5, &r(5), &r(5), &[r(1)]).is_err());
        // first a power of two: its root is not in the proof, the verifier prepends it.
        let proof: Vec<Hash> = consistency_path(4, 8).into_iter().map(|x| range_hash(x, &get)).collect();
        assert_eq!(proof.len(), 1);
        verify_consistency(4, 8, &r(4), &r(8), &proof).unwrap();
        // shrinking, and over-long proofs, are refused before any work.
        assert!(matches!(verify_consistency(8, 4, &r(8), &r(4), &[]), Err(ProofError::Shrunk)));
        assert!(matches!(verify_inclusion(0, 8, &r(1), &[[0; 32]; 65], &r(8)), Err(ProofError::TooLong)));
    }

    /// The Certificate Transparency reference vectors for RFC 6962 (eight leaves, the roots of
    /// each prefix), as every CT implementation checks them.
    #[test]
    fn known_vectors() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        };
        let inputs =
            ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
        let roots = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut nodes = HashMap::new();
        let mut f = Frontier::default();
        assert_eq!(root(0, &|nd| nodes[&nd]).to_vec(), hex(roots[0]));
        for (i, input) in inputs.iter().enumerate() {
            let leaf = leaf_hash(&hex(input));
            nodes.extend(append(i as u64, leaf, &|nd| nodes[&nd]));
            f.push(leaf);
            let n = i as u64 + 1;
            assert_eq!(root(n, &|nd| nodes[&nd]).to_vec(), hex(roots[i + 1]), "size {n}");
            assert_eq!(f.root().to_vec(), hex(roots[i + 1]), "frontier, size {n}");
        }
    }

    #[test]
    fn the_frontier_matches_the_definition_at_every_size() {
        let mut f = Frontier::default();
        let mut leaves = vec![];
        assert_eq!(f.root(), empty_root());
        for i in 0..300u64 {
            let l = leaf_hash(&i.to_le_bytes());
            f.push(l);
            leaves.push(l);
            assert_eq!(f.root(), mth(&leaves), "size {}", i + 1);
        }
        assert_eq!(f.size(), 300);
    }

    #[test]
    fn a_leaf_is_not_a_node() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_ne!(leaf_hash(&joined), node_hash(&a, &b));
    }

    proptest::proptest! {
        #[test]
        fn paths_are_short_and_verify(n in 1u64..5000, m_frac in 0.0f64..1.0) {
            let m = ((n as f64 * m_frac) as u64).min(n - 1);
            let p = inclusion_path(m, n);
            proptest::prop_assert!(p.len() <= 64 - (n - 1).leading_zeros() as usize + 1);
            for (a, b) in &p {
                proptest::prop_assert!(a < b && *b <= n);
                proptest::prop_assert!(pieces((*a, *b)).len() <= 13);
            }
            let c = consistency_path(m, n);
            for (a, b) in &c {
                proptest::prop_assert!(a < b && *b <= n);
            }
        }
    }
}

#[cfg(test)]
mod builder_tests {
    use std::collections::HashMap;

    use super::*;

    proptest::proptest! {
        /// A builder resumed anywhere writes exactly the nodes `append` computes, and its root is
        /// the tree's.
        #[test]
        fn a_resumed_frontier_completes_the_same_nodes(n in 0u64..300, resume_at in 0u64..300) {
            let resume_at = resume_at.min(n);
            let leaf = |i: u64| leaf_hash(&i.to_be_bytes());
            let mut stored: HashMap<Node, Hash> = HashMap::new();
            for i in 0..resume_at {
                for (node, h) in append(i, leaf(i), &|x| stored[&x]) {
                    stored.insert(node, h);
                }
            }
            let mut f = Frontier::resume(resume_at, |x| stored[&x]);
            for i in resume_at..n {
                let want: Vec<(Node, Hash)> = append(i, leaf(i), &|x| stored[&x]).into_iter().skip(1).collect();
                let got = f.push_nodes(leaf(i));
                proptest::prop_assert_eq!(&got, &want);
                stored.insert(Node { level: 0, index: i }, leaf(i));
                stored.extend(got);
            }
            proptest::prop_assert_eq!(f.root(), root(n, &|x| stored[&x]));
        }
    }
}

/// A tree built leaf by leaf in O(log n) memory: the roots of its full subtrees, largest first.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    stack: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves whose full subtrees are stored (`get` answers the
    /// nodes [`pieces`]`((0, size))` names): where a builder resumes.
    pub fn resume(size: u64, get: impl Fn(Node) -> Hash) -> Self {
        let stack = pieces((0, size)).into_iter().map(|n| (n.level, get(n))).collect();
        Self { size, stack }
    }

    pub fn push(&mut self, leaf: Hash) {
        self.push_nodes(leaf);
    }

    /// Append a leaf and return the interior nodes (level ≥ 1) it completes, lowest first —
    /// exactly what a store of full subtrees must write for it (as [`append`] computes from
    /// stored siblings).
    pub fn push_nodes(&mut self, leaf: Hash) -> Vec<(Node, Hash)> {
        let mut done = Vec::new();
        let mut cur = (0u8, self.size, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != cur.0 {
                break;
            }
            self.stack.pop();
            cur = (level + 1, cur.1 >> 1, node_hash(&left, &cur.2));
            done.push((Node { level: cur.0, index: cur.1 }, cur.2));
        }
        self.stack.push((cur.0, cur.2));
        self.size += 1;
        done
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let Some((last, rest)) = self.stack.split_last() else { return empty_root() };
        rest.iter().rev().fold(last.1, |acc, (_, h)| node_hash(h, &acc))
    }
}
