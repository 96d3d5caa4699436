//! MLflow search filters and orderings as clients send them: never panics, whatever the text.
#![no_main]

use fulcrum_core::mlflow_search::{Filter, OrderBy, Over, Subject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let tags = std::collections::BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        for over in [Over::Models, Over::Versions] {
            if let Ok(f) = Filter::parse(s, over) {
                let _ =
                    f.matches(&Subject { name: "fraud", tags: Some(&tags), run_id: "r", source: "s", version: "3" });
            }
            let _ = OrderBy::parse(&s.split(',').map(str::to_owned).collect::<Vec<_>>(), over);
        }
    }
});
