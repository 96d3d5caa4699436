//! in-toto statements and SLSA predicates from untrusted bytes: parsing never panics.
#![no_main]

use fulcrum_verify::intoto::Statement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for t in ["https://model_signing/signature/v1.0", "https://slsa.dev/provenance/v1"] {
        if let Ok(st) = Statement::parse(data, t) {
            let _ = st.has_sha256_subject("00");
        }
    }
    let _ = fulcrum_verify::slsa::sbom_format(data);
});
