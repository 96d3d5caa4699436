//! The upstream sigstore-conformance bundle-verify cases (`tests/vectors/sigstore-conformance`),
//! read once for every suite that runs them (the library's and the binary's).

use std::path::{Path, PathBuf};

/// The identity a case expects when it names none (the upstream suite's default).
pub const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
/// The issuer a case expects when it names none.
pub const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The repository's `tests/vectors` directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// One bundle-verify case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// Must be refused (the directory name ends in `_fail`).
    pub should_fail: bool,
    pub bundle: PathBuf,
    /// The signed artifact (for DSSE, the statement's subject).
    pub artifact: PathBuf,
    pub identity: String,
    pub issuer: String,
    /// A managed key's PEM file, when the case verifies with a key.
    pub key: Option<PathBuf>,
    /// The case's own trusted root; otherwise Sigstore's production root.
    pub trusted_root: Option<PathBuf>,
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// Every case, sorted by name.
///
/// # Panics
/// When the vectors are missing or incomplete (fewer than the 70 upstream cases).
pub fn sigstore_conformance() -> Vec<Case> {
    let root = dir().join("sigstore-conformance/test/assets/bundle-verify");
    let mut cases: Vec<Case> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("bundle.sigstore.json").exists())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let existing = |f: &str| Some(p.join(f)).filter(|x| x.exists());
            Case {
                should_fail: name.ends_with("_fail"),
                bundle: p.join("bundle.sigstore.json"),
                artifact: existing("artifact").unwrap_or_else(|| root.join("a.txt")),
                identity: read_trimmed(&p.join("identity")).unwrap_or_else(|| DEFAULT_IDENTITY.into()),
                issuer: read_trimmed(&p.join("issuer")).unwrap_or_else(|| DEFAULT_ISSUER.into()),
                key: existing("key.pub"),
                trusted_root: existing("trusted_root.json"),
                name,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 70, "expected the whole upstream set, found {} cases", cases.len());
    cases
}
