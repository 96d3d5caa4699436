//! The deployment examples pin every container image and every OCI model source by digest:
//! a tag can be moved to other bytes, and what decides what may be served must itself be fixed.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "yaml" | "yml" | "json")) {
            out.push(p);
        }
    }
}

fn pinned(reference: &str) -> bool {
    reference.split_once("@sha256:").is_some_and(|(_, hex)| {
        let hex: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
        hex.len() == 64
    })
}

#[test]
fn every_image_and_oci_model_in_the_deployment_examples_is_pinned_by_digest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut all = vec![root.join("README.md")];
    files(&root.join("docs"), &mut all);
    files(&root.join("deploy"), &mut all);
    let mut unpinned = vec![];
    let mut seen = 0;
    for f in &all {
        for (n, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let t = line.trim().trim_start_matches("- ");
            let value = t
                .strip_prefix("image:")
                .or_else(|| t.strip_prefix("storageUri:").filter(|v| v.trim().starts_with("oci://")));
            if let Some(v) = value {
                seen += 1;
                if !pinned(v.trim()) {
                    unpinned.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(seen >= 2, "the examples name images (found {seen})");
    assert!(unpinned.is_empty(), "pin these by digest:\n{}", unpinned.join("\n"));
    assert!(pinned("r/x@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"));
    assert!(!pinned("r/x:0.1.0") && !pinned("r/x@sha256:<digest>"));
}
