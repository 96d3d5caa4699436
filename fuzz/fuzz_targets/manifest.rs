//! Canonical manifest parsing (bytes fetched by digest from a registry): never panics, and only
//! the exact canonical bytes are accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = fulcrum_core::Manifest::from_canonical_bytes(data) {
        assert_eq!(m.canonical_bytes(), data);
    }
});
