//! DSSE v1 envelopes (secure-systems-lab/dsse): the signature covers
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, never the bare payload.

use fulcrum_sign::{PublicKey, Signer};
use serde::{Deserialize, Serialize};

use crate::{Failure, b64_decode};

pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Pre-authentication encoding (one implementation, in `fulcrum-sign`, shared with the agent).
pub use fulcrum_sign::dsse_pae as pae;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub sig: String,
    /// Unauthenticated hint; never drives a security decision.
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

impl Envelope {
    /// Sign `payload` as `payload_type`.
    ///
    /// # Errors
    /// The signer failing.
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        signer: &dyn Signer,
        keyid: &str,
    ) -> Result<Self, fulcrum_sign::SignError> {
        let sig = signer.sign(&pae(payload_type, payload))?;
        Ok(Self {
            payload: fulcrum_sign::b64(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![Signature { sig: fulcrum_sign::b64(&sig), keyid: keyid.to_owned() }],
        })
    }

    /// Verify that some signature was made by `key` over PAE(payloadType, payload), then check
    /// the payload type; returns the payload bytes.
    ///
    /// # Errors
    /// No verifying signature, or another payload type than `expected_type`.
    pub fn verify(&self, key: &PublicKey, expected_type: &str) -> Result<Vec<u8>, Failure> {
        let payload = b64_decode(&self.payload)?;
        let pae = pae(&self.payload_type, &payload);
        let ok = self.signatures.iter().any(|s| b64_decode(&s.sig).is_ok_and(|sig| key.verify(&pae, &sig).is_ok()));
        if !ok {
            return Err(Failure::BadSignature);
        }
        if self.payload_type != expected_type {
            return Err(Failure::PayloadType(self.payload_type.clone()));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    proptest! {
        #[test]
        fn pae_is_injective_on_the_type_body_split(t1 in "[a-z/+.]{0,12}", b1 in proptest::collection::vec(any::<u8>(), 0..24),
                                                     t2 in "[a-z/+.]{0,12}", b2 in proptest::collection::vec(any::<u8>(), 0..24)) {
            if (t1.as_str(), &b1) != (t2.as_str(), &b2) {
                prop_assert_ne!(pae(&t1, &b1), pae(&t2, &b2));
            }
        }

        #[test]
        fn envelope_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(e) = serde_json::from_slice::<Envelope>(&bytes) {
                let _ = b64_decode(&e.payload);
            }
        }
    }
}
