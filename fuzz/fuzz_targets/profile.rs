//! Reference profiles (drift): parsing never panics; what parses serialises back to itself, bins
//! every finite value into one of its bins, and gives a finite, non-negative drift index.
#![no_main]

use fulcrum_core::drift::{Profile, Value, psi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Profile::parse(data) else { return };
    assert_eq!(Profile::parse(&p.to_bytes()).expect("a checked profile parses again"), p);
    for f in &p.features {
        let mut counts = vec![0u64; f.bins()];
        for x in [-1e300, -1.0, 0.0, 0.5, 1.0, 1e300] {
            if let Some(b) = f.bin(Value::Number(x)) {
                counts[b] += 1;
            }
        }
        if let Some(b) = f.bin(Value::Text("x")) {
            counts[b] += 1;
        }
        if let Some(v) = psi(&f.proportions, &counts) {
            assert!(v.is_finite() && v >= -1e-9, "{v}");
        }
    }
});
