//! Sigstore bundles from untrusted bytes, verified offline against the production trusted root:
//! never a panic, and never a verified signature (nobody here holds a Fulcio-issued key).
#![no_main]

use std::sync::OnceLock;

use fulcrum_verify::keyless::{self, KeylessSigner, Signers, Subject, TrustedRoot};
use libfuzzer_sys::fuzz_target;

fn root() -> &'static TrustedRoot {
    static R: OnceLock<TrustedRoot> = OnceLock::new();
    R.get_or_init(TrustedRoot::production)
}

fuzz_target!(|data: &[u8]| {
    let signers = [KeylessSigner::pattern("https://token.actions.githubusercontent.com", ".*").unwrap()];
    let r = keyless::verify(root(), data, Subject::Bytes(b"a"), Signers::Keyless(&signers));
    assert!(r.is_err(), "a fuzzed bundle verified");
    let _ = keyless::is_keyless(data);
    let _ = TrustedRoot::from_json(data);
});
