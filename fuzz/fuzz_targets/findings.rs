//! Scanner reports (Grype, osv-scanner, Fulcrum JSON) from untrusted bytes: parsing never
//! panics and what it returns is bounded and validated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in ["grype", "osv", "fulcrum"] {
        if let Ok(findings) = fulcrum_core::findings::parse(format, data) {
            assert!(findings.len() <= fulcrum_core::findings::MAX_FINDINGS);
            for f in &findings {
                assert!(fulcrum_core::findings::check_id(&f.id).is_ok());
            }
        }
    }
});
