//! `name@alias|version|sha256:…` parsing: never panics, and what parses prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(r) = s.parse::<fulcrum_core::Reference>()
    {
        let again: fulcrum_core::Reference = r.to_string().parse().expect("a printed reference parses");
        assert_eq!(again, r);
    }
});
