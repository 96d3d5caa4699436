//! OpenSSF model-signing bundles from untrusted bytes: `open` never panics and never accepts
//! a bundle the key did not sign.
#![no_main]

use std::sync::OnceLock;

use fulcrum_sign::{Alg, LocalKey, Signer};
use fulcrum_verify::model_signing::{self, Trust};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static LocalKey {
    static K: OnceLock<LocalKey> = OnceLock::new();
    K.get_or_init(|| LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap())
}

fuzz_target!(|data: &[u8]| {
    assert!(model_signing::open(data, Trust::Key(key().public_key())).is_err(), "a fuzzed bundle verified");
    let _ = model_signing::open(data, Trust::Roots(&[]));
});
