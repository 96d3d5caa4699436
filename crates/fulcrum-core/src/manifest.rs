//! The canonical file manifest of a model artifact (SPEC §3).
//!
//! An artifact is a set of files; its `artifact_digest` is the SHA-256 of the manifest's canonical
//! bytes: compact JSON, files sorted by path (bytewise), fixed key order, no whitespace:
//!
//! ```text
//! {"mediaType":"application/vnd.fulcrum.manifest.v1+json","files":[{"path":"a","size":1,"digest":"sha256:…"}]}
//! ```
//!
//! Because the digest covers each file's own digest and size, files can be fetched and verified
//! in parallel and each is checked on arrival. The manifest is itself stored as a blob, so it is
//! fetched by `artifact_digest` like any other content.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.fulcrum.manifest.v1+json";
/// Upper bounds that keep a hostile manifest from exhausting memory.
pub const MAX_FILES: usize = 10_000;
pub const MAX_PATH_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub digest: Digest,
}

/// A validated manifest: paths are relative, normalised, unique, and sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("a manifest lists at least one file")]
    Empty,
    #[error("a manifest lists at most {MAX_FILES} files")]
    TooManyFiles,
    #[error("file path {0:?} is not a clean relative path")]
    BadPath(String),
    #[error("file path {0:?} is listed twice")]
    Duplicate(String),
    #[error("manifest bytes are not a canonical Fulcrum manifest")]
    NotCanonical,
}

fn check_path(p: &str) -> Result<(), ManifestError> {
    let bad = || ManifestError::BadPath(p.to_owned());
    if p.is_empty() || p.len() > MAX_PATH_LEN || p.starts_with('/') || p.ends_with('/') || p.contains('\\') {
        return Err(bad());
    }
    // Control characters, and characters that make a path display as something else (U+202E
    // turns `exe.txt` into `txt.exe` on screen), are refused.
    if p.chars().any(|c| c.is_control() || crate::names::is_bidi_control(c)) {
        return Err(bad());
    }
    for seg in p.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad());
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(rename = "mediaType")]
    media_type: std::borrow::Cow<'a, str>,
    files: Vec<FileEntry>,
}

impl Manifest {
    /// Validate and sort a list of files.
    ///
    /// # Errors
    /// Empty lists, too many files, unclean or duplicate paths.
    pub fn new(mut files: Vec<FileEntry>) -> Result<Self, ManifestError> {
        if files.is_empty() {
            return Err(ManifestError::Empty);
        }
        if files.len() > MAX_FILES {
            return Err(ManifestError::TooManyFiles);
        }
        for f in &files {
            check_path(&f.path)?;
        }
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let mut seen = BTreeSet::new();
        for f in &files {
            if !seen.insert(f.path.as_str()) {
                return Err(ManifestError::Duplicate(f.path.clone()));
            }
        }
        // Paths that differ only by case are one file on a case-insensitive filesystem (macOS,
        // Windows, some volumes): which bytes land there would depend on the order of writes.
        let mut folded = BTreeSet::new();
        for f in &files {
            if !folded.insert(f.path.to_lowercase()) {
                return Err(ManifestError::Duplicate(f.path.clone()));
            }
        }
        // A file and a directory of the same name cannot both exist on disk.
        for f in &files {
            let mut prefix = f.path.as_str();
            while let Some((head, _)) = prefix.rsplit_once('/') {
                if seen.contains(head) {
                    return Err(ManifestError::BadPath(f.path.clone()));
                }
                prefix = head;
            }
        }
        Ok(Self { files })
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The canonical bytes whose SHA-256 is the artifact digest.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let wire = Wire { media_type: MANIFEST_MEDIA_TYPE.into(), files: self.files.clone() };
        serde_json::to_vec(&wire).expect("manifest serialises")
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.canonical_bytes())
    }

    /// Parse manifest bytes fetched by digest; refuses anything but the exact canonical form,
    /// so two different byte strings can never describe the same artifact.
    ///
    /// # Errors
    /// `NotCanonical` for bytes that are not exactly what `canonical_bytes` would produce.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        let wire: Wire<'_> = serde_json::from_slice(bytes).map_err(|_| ManifestError::NotCanonical)?;
        if wire.media_type != MANIFEST_MEDIA_TYPE {
            return Err(ManifestError::NotCanonical);
        }
        let m = Self::new(wire.files)?;
        if m.canonical_bytes() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &str, data: &[u8]) -> FileEntry {
        FileEntry { path: path.into(), size: data.len() as u64, digest: Digest::of(data) }
    }

    #[test]
    fn order_does_not_change_the_digest() {
        let a = Manifest::new(vec![entry("b", b"2"), entry("a/x", b"1")]).unwrap();
        let b = Manifest::new(vec![entry("a/x", b"1"), entry("b", b"2")]).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.files()[0].path, "a/x");
    }

    #[test]
    fn canonical_form_is_pinned() {
        let m = Manifest::new(vec![entry("weights.bin", b"")]).unwrap();
        assert_eq!(
            String::from_utf8(m.canonical_bytes()).unwrap(),
            r#"{"mediaType":"application/vnd.fulcrum.manifest.v1+json","files":[{"path":"weights.bin","size":0,"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}"#
        );
    }

    #[test]
    fn bad_paths_refused() {
        for p in ["", "/abs", "a/../b", "a//b", "./a", "a/", "a\\b", "a\nb", ".."] {
            assert!(matches!(Manifest::new(vec![entry(p, b"x")]), Err(ManifestError::BadPath(_))), "{p:?}");
        }
        assert_eq!(Manifest::new(vec![]), Err(ManifestError::Empty));
        assert_eq!(Manifest::new(vec![entry("a", b"1"), entry("a", b"2")]), Err(ManifestError::Duplicate("a".into())));
        assert!(
            matches!(
                Manifest::new(vec![entry("Weights.bin", b"1"), entry("weights.bin", b"2")]),
                Err(ManifestError::Duplicate(_))
            ),
            "paths that differ only by case"
        );
        for p in ["report\u{202E}fdp.exe", "a/\u{2066}b", "x\u{200F}"] {
            assert!(matches!(Manifest::new(vec![entry(p, b"x")]), Err(ManifestError::BadPath(_))), "{p:?}");
        }
        assert!(matches!(Manifest::new(vec![entry("a", b"1"), entry("a/b", b"2")]), Err(ManifestError::BadPath(_))));
    }

    #[test]
    fn non_canonical_bytes_refused() {
        let m = Manifest::new(vec![entry("a", b"1")]).unwrap();
        let mut bytes = m.canonical_bytes();
        assert_eq!(Manifest::from_canonical_bytes(&bytes).unwrap(), m);
        bytes.push(b' ');
        assert_eq!(Manifest::from_canonical_bytes(&bytes), Err(ManifestError::NotCanonical));
        let pretty =
            serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&m.canonical_bytes()).unwrap())
                .unwrap();
        assert_eq!(Manifest::from_canonical_bytes(&pretty), Err(ManifestError::NotCanonical));
    }

    proptest! {
        #[test]
        fn digest_is_order_independent_and_content_sensitive(
            names in proptest::collection::btree_set("[a-z]{1,8}", 1..20),
            flip in 0usize..20,
        ) {
            let files: Vec<_> = names.iter().map(|n| entry(n, n.as_bytes())).collect();
            let mut rev = files.clone();
            rev.reverse();
            let a = Manifest::new(files.clone()).unwrap();
            let b = Manifest::new(rev).unwrap();
            prop_assert_eq!(a.digest(), b.digest());
            // Changing one file's size changes the artifact digest.
            let mut changed = files;
            let i = flip % changed.len();
            changed[i].size += 1;
            prop_assert_ne!(Manifest::new(changed).unwrap().digest(), a.digest());
            // Canonical bytes round-trip.
            prop_assert_eq!(Manifest::from_canonical_bytes(&a.canonical_bytes()).unwrap(), a);
        }

        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::from_canonical_bytes(&bytes);
        }
    }
}
