//! The state map: which versions exist and what their governance state is, committed in each
//! checkpoint (the `fulcrum-state` extension line), so a permit can be proven *current*.
//!
//! The map is every version's [`StateLeaf`], sorted by (tenant, model, version), hashed as an
//! RFC 6962 tree of its own (same leaf/node hashing as the ledger). A checkpoint of the ledger at
//! size `n` carries the map's size and root *as the ledger's first `n` entries imply it* — the
//! registry folds its lifecycle events, never its tables — and the time it was signed. An agent
//! holding a permit asks for its version's leaf and inclusion proof under a checkpoint signed
//! after the permit was issued: if the leaf still says `hold none` at the permitted stage, no
//! revocation or quarantine of that version is in the ledger up to that checkpoint. An auditor
//! replays the events and recomputes the root, so a registry that commits a map the ledger does
//! not imply is caught.
//!
//! # Invariants
//! - A leaf's bytes are one canonical text; parsing accepts exactly what [`StateLeaf::bytes`]
//!   writes.
//! - The map is sorted and has one leaf per version; a proof is an ordinary inclusion proof.

use crate::Hash;
use crate::merkle::{self, Node};

const LEAF_TAG: &str = "fulcrum-state-leaf v1";

/// One version's state, as the ledger implies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StateLeaf {
    pub tenant: String,
    pub model: String,
    pub version: String,
    pub seq: u64,
    pub artifact_digest: String,
    /// `Candidate`, `Staging` or `Approved`.
    pub stage: String,
    /// `none`, `quarantined` or `revoked`.
    pub hold: String,
}

/// Why leaf bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a state leaf: {0}")]
pub struct LeafError(&'static str);

fn field_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

impl StateLeaf {
    /// The canonical bytes: a tag line and one line per field.
    pub fn bytes(&self) -> Vec<u8> {
        format!(
            "{LEAF_TAG}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.tenant, self.model, self.version, self.seq, self.artifact_digest, self.stage, self.hold
        )
        .into_bytes()
    }

    pub fn hash(&self) -> Hash {
        merkle::leaf_hash(&self.bytes())
    }

    /// Parse canonical bytes.
    ///
    /// # Errors
    /// Anything [`StateLeaf::bytes`] would not have written.
    pub fn parse(bytes: &[u8]) -> Result<Self, LeafError> {
        if bytes.len() > 2048 {
            return Err(LeafError("too long"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| LeafError("not UTF-8"))?;
        let f: Vec<&str> = s.split('\n').collect();
        if f.len() != 8 || f[0] != LEAF_TAG {
            return Err(LeafError("wrong shape"));
        }
        if !f[1..].iter().all(|x| field_ok(x)) {
            return Err(LeafError("an empty or unprintable field"));
        }
        let seq = f[4];
        if (seq.len() > 1 && seq.starts_with('0')) || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LeafError("seq is not a decimal number"));
        }
        let leaf = Self {
            tenant: f[1].into(),
            model: f[2].into(),
            version: f[3].into(),
            seq: seq.parse().map_err(|_| LeafError("seq is out of range"))?,
            artifact_digest: f[5].into(),
            stage: f[6].into(),
            hold: f[7].into(),
        };
        if leaf.bytes() != bytes {
            return Err(LeafError("not canonical"));
        }
        Ok(leaf)
    }

    fn key(&self) -> (&str, &str, &str) {
        (&self.tenant, &self.model, &self.version)
    }
}

/// The map as a tree held in memory: every full aligned subtree's hash, for proofs in O(log n).
#[derive(Debug, Clone, Default)]
pub struct StateMap {
    leaves: Vec<StateLeaf>,
    /// `levels[l][j]`: the hash of leaves `[j·2^l, (j+1)·2^l)`.
    levels: Vec<Vec<Hash>>,
}

impl StateMap {
    /// Build the map from every version's leaf (any order; sorted here).
    ///
    /// # Panics
    /// Never for distinct keys; two leaves for one version are a caller's bug (debug-asserted).
    pub fn build(mut leaves: Vec<StateLeaf>) -> Self {
        leaves.sort_by(|a, b| a.key().cmp(&b.key()));
        debug_assert!(leaves.windows(2).all(|w| w[0].key() != w[1].key()), "one leaf per version");
        let mut levels = vec![leaves.iter().map(StateLeaf::hash).collect::<Vec<Hash>>()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("non-empty");
            let up: Vec<Hash> = below.chunks_exact(2).map(|p| merkle::node_hash(&p[0], &p[1])).collect();
            levels.push(up);
        }
        Self { leaves, levels }
    }

    fn get(&self, n: Node) -> Hash {
        self.levels[n.level as usize][n.index as usize]
    }

    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    pub fn root(&self) -> Hash {
        merkle::root(self.len(), &|n| self.get(n))
    }

    /// A version's leaf, its index and its inclusion proof.
    pub fn prove(&self, tenant: &str, model: &str, version: &str) -> Option<(u64, &StateLeaf, Vec<Hash>)> {
        let i = self.leaves.binary_search_by(|l| l.key().cmp(&(tenant, model, version))).ok()?;
        let proof = merkle::inclusion_path(i as u64, self.len())
            .into_iter()
            .map(|r| merkle::range_hash(r, &|n| self.get(n)))
            .collect();
        Some((i as u64, &self.leaves[i], proof))
    }
}

/// What a checkpoint says of the state map: its size, its root, and when the registry signed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateHead {
    pub count: u64,
    pub root: Hash,
    /// Unix seconds at signing.
    pub signed_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(model: &str, version: &str, hold: &str) -> StateLeaf {
        StateLeaf {
            tenant: "acme".into(),
            model: model.into(),
            version: version.into(),
            seq: 1,
            artifact_digest: format!("sha256:{}", "a".repeat(64)),
            stage: "Approved".into(),
            hold: hold.into(),
        }
    }

    #[test]
    fn leaves_round_trip_and_refuse_anything_else() {
        let l = leaf("fraud", "v1", "none");
        assert_eq!(StateLeaf::parse(&l.bytes()).unwrap(), l);
        let good = String::from_utf8(l.bytes()).unwrap();
        for (what, bad) in [
            ("extra line", format!("{good}\nx")),
            ("missing line", good.rsplit_once('\n').unwrap().0.to_owned()),
            ("other tag", good.replacen("v1\n", "v2\n", 1)),
            ("leading zero", good.replacen("\n1\n", "\n01\n", 1)),
            ("empty field", good.replacen("\nfraud\n", "\n\n", 1)),
            ("carriage return", good.replacen("fraud", "fr\raud", 1)),
        ] {
            assert!(StateLeaf::parse(bad.as_bytes()).is_err(), "{what}");
        }
    }

    proptest::proptest! {
        /// Any bytes: parsing never panics, and what parses is exactly what `bytes` writes;
        /// any leaf of printable fields round-trips.
        #[test]
        fn leaf_parsing_is_total_and_exact(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            f in proptest::collection::vec("[ -~]{1,20}", 6),
            seq in proptest::num::u64::ANY,
        ) {
            if let Ok(l) = StateLeaf::parse(&raw) {
                proptest::prop_assert_eq!(l.bytes(), raw);
            }
            let leaf = StateLeaf {
                tenant: f[0].clone(), model: f[1].clone(), version: f[2].clone(), seq,
                artifact_digest: f[3].clone(), stage: f[4].clone(), hold: f[5].clone(),
            };
            proptest::prop_assert_eq!(StateLeaf::parse(&leaf.bytes()).unwrap(), leaf);
        }
    }

    /// Every leaf's proof verifies against the root with the ledger's verifier, for every size
    /// up to 40; another leaf's bytes at the same index do not.
    #[test]
    fn proofs_verify_with_the_ledger_verifier() {
        for n in 1..=40u64 {
            let leaves: Vec<StateLeaf> = (0..n).map(|i| leaf(&format!("m{i:03}"), "v1", "none")).collect();
            let map = StateMap::build(leaves.iter().rev().cloned().collect());
            let root = map.root();
            for l in &leaves {
                let (i, got, proof) = map.prove("acme", &l.model, "v1").unwrap();
                assert_eq!(got, l);
                merkle::verify_inclusion(i, n, &l.hash(), &proof, &root).unwrap();
                let revoked = StateLeaf { hold: "revoked".into(), ..l.clone() };
                assert!(merkle::verify_inclusion(i, n, &revoked.hash(), &proof, &root).is_err());
            }
            assert!(map.prove("acme", "absent", "v1").is_none());
        }
        assert_eq!(StateMap::build(vec![]).root(), merkle::empty_root());
    }
}
