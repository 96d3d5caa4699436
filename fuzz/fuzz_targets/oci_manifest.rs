//! OCI manifests and cosign signatures from untrusted bytes: recognising a manifest never
//! panics and accepts only safe paths; a fuzzed signature never verifies.
#![no_main]

use std::sync::OnceLock;

use fulcrum_oci::cosign::{self, Trust};
use fulcrum_oci::layout::{self, Source};
use fulcrum_sign::{Alg, LocalKey, PublicKey, Signer};
use libfuzzer_sys::fuzz_target;

const DIGEST: &str = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

fn keys() -> &'static [PublicKey] {
    static K: OnceLock<Vec<PublicKey>> = OnceLock::new();
    K.get_or_init(|| vec![LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap().public_key().clone()])
}

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = layout::classify(data) {
        for l in a.layers {
            if let Source::Raw { path } = l.source {
                assert!(layout::safe_path(&path).is_ok(), "an unsafe path was accepted: {path:?}");
            }
        }
    }
    let trust = Trust { keys: keys(), keyless: &[], root: None };
    assert!(cosign::verify_bundle(data, DIGEST, trust).is_err(), "a fuzzed bundle verified");
    let text = String::from_utf8_lossy(data);
    assert!(cosign::verify_simple_signing(data, &text, DIGEST, trust).is_err(), "a fuzzed signature verified");
});
