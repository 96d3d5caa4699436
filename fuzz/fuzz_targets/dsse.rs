//! DSSE envelopes from untrusted bytes: parsing and verification never panic, and nothing but a
//! real signature by the key verifies.
#![no_main]

use std::sync::OnceLock;

use fulcrum_sign::{Alg, LocalKey};
use fulcrum_verify::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static LocalKey {
    static K: OnceLock<LocalKey> = OnceLock::new();
    K.get_or_init(|| LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<Envelope>(data) {
        let _ = fulcrum_verify::dsse::pae(&env.payload_type, env.payload.as_bytes());
        assert!(
            env.verify(fulcrum_sign::Signer::public_key(key()), INTOTO_PAYLOAD_TYPE).is_err(),
            "a fuzzed envelope verified"
        );
    }
});
