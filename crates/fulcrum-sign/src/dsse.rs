//! DSSE v1 envelopes (secure-systems-lab/dsse), opened one way everywhere: the signature covers
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, never the bare
//! payload, and the payload type is checked after a signature verifies.
//!
//! Two trust decisions, one envelope type:
//! - [`Envelope::verify`]: signed by *this* key (a CI key, a trusted builder's key);
//! - [`Envelope::open_trusted`]: signed by a key of a trust bundle that is **not compromised**
//!   (what the registry signs: release records, policy snapshots, evidence) — used by the agent
//!   and by `fulcrum audit` alike.
//!
//! The `keyid` of a signature is an unauthenticated hint: it only picks which bundle key to try.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::{KeyStatus, PublicKey, SignError, Signer, TrustBundle, dsse_pae};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub sig: String,
    /// Unauthenticated hint; never drives a security decision on its own.
    #[serde(default)]
    pub keyid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// Why an envelope does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("not a DSSE envelope")]
    Malformed,
    #[error("the payload is not base64")]
    Encoding,
    #[error("no signature by the expected key")]
    BadSignature,
    #[error("no signature by a key of the pinned bundle (unknown or compromised keys do not count)")]
    Untrusted,
    #[error("unexpected payload type {0:?}")]
    PayloadType(String),
}

impl Envelope {
    /// Sign `payload` as `payload_type`.
    ///
    /// # Errors
    /// The signer failing.
    pub fn sign(payload_type: &str, payload: &[u8], signer: &dyn Signer, keyid: &str) -> Result<Self, SignError> {
        let sig = signer.sign(&dsse_pae(payload_type, payload))?;
        Ok(Self {
            payload: B64.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![Signature { sig: B64.encode(sig), keyid: keyid.to_owned() }],
        })
    }

    /// Parse envelope bytes.
    ///
    /// # Errors
    /// `Malformed`.
    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        serde_json::from_slice(bytes).map_err(|_| DsseError::Malformed)
    }

    fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        B64.decode(&self.payload).map_err(|_| DsseError::Encoding)
    }

    /// Some signature was made by `key` over PAE(payloadType, payload); then the payload type
    /// is `expected_type`. Returns the payload.
    ///
    /// # Errors
    /// `BadSignature`, then `PayloadType`.
    pub fn verify(&self, key: &PublicKey, expected_type: &str) -> Result<Vec<u8>, DsseError> {
        let payload = self.payload_bytes()?;
        let pae = dsse_pae(&self.payload_type, &payload);
        let ok = self.signatures.iter().any(|s| B64.decode(&s.sig).is_ok_and(|sig| key.verify(&pae, &sig).is_ok()));
        if !ok {
            return Err(DsseError::BadSignature);
        }
        if self.payload_type != expected_type {
            return Err(DsseError::PayloadType(self.payload_type.clone()));
        }
        Ok(payload)
    }

    /// Some signature was made by a key of `bundle` that is not compromised; then the payload
    /// type is `expected_type`. Returns the payload (what it says is the caller's to check).
    ///
    /// # Errors
    /// `Untrusted`, then `PayloadType`.
    pub fn open_trusted(&self, bundle: &TrustBundle, expected_type: &str) -> Result<Vec<u8>, DsseError> {
        let payload = self.payload_bytes()?;
        let pae = dsse_pae(&self.payload_type, &payload);
        let trusted = self.signatures.iter().any(|s| {
            bundle.keys.iter().any(|k| k.kid == s.keyid && k.status != KeyStatus::Compromised)
                && bundle.verify(&s.keyid, &pae, &s.sig).is_ok()
        });
        if !trusted {
            return Err(DsseError::Untrusted);
        }
        if self.payload_type != expected_type {
            return Err(DsseError::PayloadType(self.payload_type.clone()));
        }
        Ok(payload)
    }
}

/// Parse and open envelope bytes against a bundle ([`Envelope::open_trusted`]).
///
/// # Errors
/// As [`Envelope::parse`] and [`Envelope::open_trusted`].
pub fn open_trusted(bundle: &TrustBundle, envelope: &[u8], expected_type: &str) -> Result<Vec<u8>, DsseError> {
    Envelope::parse(envelope)?.open_trusted(bundle, expected_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Alg, LocalKey, PublishedKey};

    fn bundle(k: &LocalKey, status: KeyStatus) -> TrustBundle {
        TrustBundle {
            version: 1,
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
            keys: vec![PublishedKey {
                kid: k.kid().into(),
                alg: k.public_key().alg(),
                public_key: crate::b64(k.public_key().spki_der()),
                valid_from: "2026-01-01T00:00:00Z".into(),
                valid_until: None,
                status,
                development: false,
            }],
            sigstore: None,
        }
    }

    /// Every way an envelope must not open, as data, for both trust decisions.
    #[test]
    fn envelopes_open_only_for_the_right_key_and_type() {
        let k = LocalKey::ephemeral(Alg::Ed25519).unwrap();
        let other = LocalKey::ephemeral(Alg::Ed25519).unwrap();
        let env = Envelope::sign("t/v1", b"payload", &k, k.kid()).unwrap();
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(env.verify(k.public_key(), "t/v1").unwrap(), b"payload");
        assert_eq!(open_trusted(&bundle(&k, KeyStatus::Active), &bytes, "t/v1").unwrap(), b"payload");
        assert_eq!(open_trusted(&bundle(&k, KeyStatus::Retired), &bytes, "t/v1").unwrap(), b"payload");

        let mut tampered = env.clone();
        tampered.payload = B64.encode(b"payloaD");
        let by_other = Envelope::sign("t/v1", b"payload", &other, k.kid()).unwrap();
        type Row<'a> = (&'a str, Result<Vec<u8>, DsseError>, DsseError);
        let rows: Vec<Row> = vec![
            ("another key", env.verify(other.public_key(), "t/v1"), DsseError::BadSignature),
            ("another type", env.verify(k.public_key(), "t/v2"), DsseError::PayloadType("t/v1".into())),
            ("tampered payload", tampered.verify(k.public_key(), "t/v1"), DsseError::BadSignature),
            (
                "compromised key",
                open_trusted(&bundle(&k, KeyStatus::Compromised), &bytes, "t/v1"),
                DsseError::Untrusted,
            ),
            ("unknown key", open_trusted(&bundle(&other, KeyStatus::Active), &bytes, "t/v1"), DsseError::Untrusted),
            (
                "another key under the trusted kid",
                by_other.open_trusted(&bundle(&k, KeyStatus::Active), "t/v1"),
                DsseError::Untrusted,
            ),
            ("not an envelope", open_trusted(&bundle(&k, KeyStatus::Active), b"{}", "t/v1"), DsseError::Malformed),
            (
                "another type, trusted key",
                open_trusted(&bundle(&k, KeyStatus::Active), &bytes, "t/v2"),
                DsseError::PayloadType("t/v1".into()),
            ),
        ];
        for (what, got, want) in rows {
            assert_eq!(got, Err(want), "{what}");
        }
    }
}
