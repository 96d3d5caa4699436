//! The policy snapshot a resolve answer names (`policy_digest`): fetched by digest, accepted
//! only as a DSSE envelope signed by a key of the pinned bundle (not a compromised one) whose
//! payload hashes to exactly that digest. A resolve answer and a policy from different
//! points in time (mix-and-match) therefore cannot pass together.

use base64::Engine as _;
use fulcrum_core::Digest;
use fulcrum_sign::{KeyStatus, TrustBundle};
use serde::Deserialize;

use crate::check::Deny;

/// The payload type of a registry-signed policy snapshot.
pub const SNAPSHOT_MEDIA_TYPE: &str = "application/vnd.fulcrum.policy-snapshot.v2+json";

#[derive(Debug, Deserialize)]
struct Envelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<Sig>,
}

#[derive(Debug, Deserialize)]
struct Sig {
    #[serde(default)]
    keyid: String,
    sig: String,
}

/// DSSE pre-authentication encoding.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Open a DSSE envelope of `payload_type` signed by a key of the pinned bundle that is not
/// compromised; returns the payload. What the payload says is the caller's to check.
///
/// # Errors
/// What did not hold, in words.
pub fn open_envelope(bundle: &TrustBundle, envelope: &[u8], payload_type: &str) -> Result<Vec<u8>, &'static str> {
    let env: Envelope = serde_json::from_slice(envelope).map_err(|_| "not a DSSE envelope")?;
    if env.payload_type != payload_type {
        return Err("another payload type");
    }
    let payload = base64::engine::general_purpose::STANDARD.decode(&env.payload).map_err(|_| "payload encoding")?;
    let signed = pae(&env.payload_type, &payload);
    let trusted = env.signatures.iter().any(|s| {
        bundle.keys.iter().any(|k| k.kid == s.keyid && k.status != KeyStatus::Compromised)
            && bundle.verify(&s.keyid, &signed, &s.sig).is_ok()
    });
    if !trusted {
        return Err("no signature by a key of the pinned bundle");
    }
    Ok(payload)
}

/// Verify a snapshot envelope against the pinned bundle and the digest the answer names;
/// returns the snapshot's canonical bytes.
///
/// # Errors
/// `Deny::PolicyUnverified` naming what did not hold.
pub fn verify_snapshot(bundle: &TrustBundle, envelope: &[u8], digest: &str) -> Result<Vec<u8>, Deny> {
    let bad = |why: &str| Deny::PolicyUnverified(format!("{digest}: {why}"));
    let want: Digest = digest.parse().map_err(|_| bad("not a digest"))?;
    let payload = open_envelope(bundle, envelope, SNAPSHOT_MEDIA_TYPE).map_err(bad)?;
    if Digest::of(&payload) != want {
        return Err(bad("the signed snapshot has another digest"));
    }
    Ok(payload)
}
