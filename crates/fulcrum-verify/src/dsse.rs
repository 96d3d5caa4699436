//! DSSE v1 envelopes (secure-systems-lab/dsse): the signature covers
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, never the bare payload.

use crate::Failure;

pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Pre-authentication encoding (one implementation, in `fulcrum-sign`, shared with the agent).
pub use fulcrum_sign::dsse_pae as pae;

/// The envelope and its two openers live in `fulcrum-sign` (one implementation for the registry,
/// the agent and the CLI); this crate's checks map its errors to [`Failure`].
pub use fulcrum_sign::dsse::{DsseError, Envelope, Signature};

impl From<DsseError> for Failure {
    fn from(e: DsseError) -> Self {
        match e {
            DsseError::Malformed => Failure::Malformed("not a DSSE envelope".into()),
            DsseError::Encoding => Failure::Malformed("payload is not base64".into()),
            DsseError::BadSignature | DsseError::Untrusted => Failure::BadSignature,
            DsseError::PayloadType(t) => Failure::PayloadType(t),
        }
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
                let _ = crate::b64_decode(&e.payload);
            }
        }
    }
}
