//! Policy snapshots (SPEC §7). Until Rego policies arrive, the snapshot is the built-in rule set
//! this build enforces (environment rule, stage ladder, four-eyes, alias rules), in a canonical
//! JSON form; `policy_digest` is the SHA-256 of those bytes. The registry signs the snapshot as a
//! DSSE envelope with its active key (re-signed when the key rotates), so an agent can fetch it by
//! digest and check both the digest and the signature.

use std::sync::{Arc, RwLock};

use fulcrum_core::Digest;
use fulcrum_sign::Signer;
use fulcrum_verify::dsse::Envelope;

pub const SNAPSHOT_MEDIA_TYPE: &str = "application/vnd.fulcrum.policy-snapshot.v1+json";

/// The canonical bytes of the built-in snapshot.
pub fn builtin_snapshot() -> Vec<u8> {
    let doc = serde_json::json!({
        "mediaType": SNAPSHOT_MEDIA_TYPE,
        "name": "builtin",
        "rules": {
            "env": {"dev": ["Candidate", "Staging", "Approved"], "staging": ["Staging", "Approved"], "prod": ["Approved"], "held": "deny"},
            "promotion": {"ladder": ["Candidate", "Staging", "Approved"], "approved": "two distinct subjects, distinct roles, not the publisher"},
            "alias": {"downgrade": "allow_downgrade + chg_id", "on_hold": "rollback to previous healthy Approved"},
        },
    });
    serde_json::to_vec(&doc).expect("serialises")
}

#[derive(Debug)]
pub struct SignedSnapshot {
    pub digest: Digest,
    pub snapshot: Vec<u8>,
    /// DSSE envelope (JSON) over the snapshot bytes.
    pub envelope: Vec<u8>,
}

#[derive(Debug)]
pub struct Policies {
    current: RwLock<Arc<SignedSnapshot>>,
}

fn sign(snapshot: Vec<u8>, signer: &dyn Signer) -> Result<SignedSnapshot, fulcrum_sign::SignError> {
    let env = Envelope::sign(SNAPSHOT_MEDIA_TYPE, &snapshot, signer, signer.kid())?;
    Ok(SignedSnapshot {
        digest: Digest::of(&snapshot),
        envelope: serde_json::to_vec(&env).expect("serialises"),
        snapshot,
    })
}

impl Policies {
    /// # Errors
    /// The signer failing.
    pub fn builtin(signer: &dyn Signer) -> Result<Self, fulcrum_sign::SignError> {
        Ok(Self { current: RwLock::new(Arc::new(sign(builtin_snapshot(), signer)?)) })
    }

    pub fn current(&self) -> Arc<SignedSnapshot> {
        self.current.read().expect("policy lock").clone()
    }

    /// Re-sign the current snapshot with a new key.
    ///
    /// # Errors
    /// The signer failing.
    pub fn resign(&self, signer: &dyn Signer) -> Result<(), fulcrum_sign::SignError> {
        let snap = self.current().snapshot.clone();
        *self.current.write().expect("policy lock") = Arc::new(sign(snap, signer)?);
        Ok(())
    }
}
