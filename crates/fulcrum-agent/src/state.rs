//! What the agent keeps on disk: the high-water marks (`marks.json`, replaced atomically) and
//! a cache of verified blobs by digest (`blobs/sha256/<hex>`).

use std::io::Write;
use std::path::{Path, PathBuf};

use fulcrum_core::Digest;

use crate::check::Marks;

/// A signed resolve answer as received: the body bytes, the key id and the signature.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SavedAnswer {
    pub body: String,
    pub kid: String,
    pub signature: String,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("blobs").join("sha256"))?;
        std::fs::create_dir_all(root.join("answers"))?;
        Ok(Self { root: root.to_owned() })
    }

    fn marks_path(&self) -> PathBuf {
        self.root.join("marks.json")
    }

    /// The marks; none yet is the empty set. A marks file that does not parse is an error,
    /// never a silent reset (that would reopen every rollback).
    ///
    /// # Errors
    /// Unreadable or malformed marks.
    pub fn marks(&self) -> std::io::Result<Marks> {
        match std::fs::read(self.marks_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", self.marks_path().display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Marks::default()),
            Err(e) => Err(e),
        }
    }

    /// Replace the marks: write a temporary file, fsync, rename, fsync the directory.
    ///
    /// # Errors
    /// I/O failures.
    pub fn save_marks(&self, m: &Marks) -> std::io::Result<()> {
        let tmp = self.root.join(format!(".marks.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(m).expect("marks serialise"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.marks_path())?;
        std::fs::File::open(&self.root)?.sync_all()
    }

    fn answer_path(&self, reference: &str, env: &str) -> PathBuf {
        self.root.join("answers").join(format!("{}.json", Digest::of(format!("{reference}|{env}").as_bytes()).hex()))
    }

    /// Keep the last permitted signed answer for a reference and env, exactly as received, for
    /// degraded mode (registry unreachable).
    ///
    /// # Errors
    /// I/O failures.
    pub fn save_answer(&self, reference: &str, env: &str, a: &SavedAnswer) -> std::io::Result<()> {
        let path = self.answer_path(reference, env);
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(a).expect("answers serialise"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    }

    /// The last permitted signed answer, if any. It is re-verified like a fresh one.
    ///
    /// # Errors
    /// Unreadable files (a malformed one reads as none: it will not verify anyway).
    pub fn answer(&self, reference: &str, env: &str) -> std::io::Result<Option<SavedAnswer>> {
        match std::fs::read(self.answer_path(reference, env)) {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The newest trust bundle adopted through a verified chain, if any.
    ///
    /// # Errors
    /// Unreadable or malformed file (a malformed one is an error, never a silent fallback).
    pub fn adopted_bundle(&self) -> std::io::Result<Option<fulcrum_sign::TrustBundle>> {
        let path = self.root.join("bundle.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keep a bundle adopted through a verified chain (atomic replace).
    ///
    /// # Errors
    /// I/O failures.
    pub fn save_adopted_bundle(&self, b: &fulcrum_sign::TrustBundle) -> std::io::Result<()> {
        let tmp = self.root.join(format!(".bundle.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(b).expect("bundles serialise"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.root.join("bundle.json"))?;
        std::fs::File::open(&self.root)?.sync_all()
    }

    /// Where a verified blob lives in the cache.
    pub fn blob(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(d.hex())
    }

    /// Where a blob being downloaded lives until it verifies.
    pub fn partial(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(format!("{}.partial", d.hex()))
    }
}
