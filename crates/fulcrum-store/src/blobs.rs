//! The local content-addressed blob store.
//!
//! Layout: `<dir>/sha256/<2 hex>/<62 hex>`; uploads stream into `<dir>/tmp/`, are hashed as they
//! arrive, fsync'd, then renamed into place and the directory fsync'd. A blob therefore either
//! exists whole under its true digest or not at all; a crash leaves at most a temp file, which is
//! swept on open.
//!
//! # Invariants
//! - The bytes written under a digest hash to that digest. Bytes changed behind the store's back
//!   (disk faults, an intruder) are caught by readers that hash while they stream and by
//!   [`BlobStore::rehash`] (the scrub), and repaired by uploading the true bytes again.
//! - Blobs are never deleted through this API, and only ever replaced by bytes with their digest.

use std::path::{Path, PathBuf};

use fulcrum_core::Digest;
use fulcrum_core::digest::Hasher;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("content hashes to {actual}, not the expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content exceeds the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("content length {actual} does not match the declared {declared}")]
    LengthMismatch { declared: u64, actual: u64 },
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    pub digest: Digest,
    pub size: u64,
    /// False when the blob already existed (uploads are idempotent).
    pub created: bool,
}

impl BlobStore {
    /// Open (creating if needed) the store under `root`, sweeping leftover temp files.
    ///
    /// # Errors
    /// I/O failures.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("sha256"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { root: root.to_owned() })
    }

    pub fn path_of(&self, d: &Digest) -> PathBuf {
        let h = d.hex();
        self.root.join("sha256").join(&h[..2]).join(&h[2..])
    }

    /// Size of a stored blob, or `None`.
    ///
    /// # Errors
    /// I/O failures other than "not found".
    pub async fn stat(&self, d: &Digest) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path_of(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Start an upload. Nothing is visible until [`BlobWriter::finish`] succeeds.
    ///
    /// # Errors
    /// I/O failures.
    pub async fn writer(&self, limit: u64) -> Result<BlobWriter, BlobError> {
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let file = tokio::fs::File::create(&tmp).await?;
        Ok(BlobWriter { store: self.clone(), tmp, file: Some(file), hasher: Hasher::new(), size: 0, limit })
    }

    /// Convenience for small in-memory blobs (manifests, release records).
    ///
    /// # Errors
    /// I/O failures.
    pub async fn put_bytes(&self, bytes: &[u8]) -> Result<PutOutcome, BlobError> {
        let mut w = self.writer(u64::MAX).await?;
        w.write(bytes).await?;
        w.finish(None, None).await
    }

    /// Hash what is stored under `d`, off the async workers: `None` when nothing is stored,
    /// else the digest the bytes really have and their size (a scrub compares it with `d`).
    ///
    /// # Errors
    /// I/O failures other than "not found".
    pub async fn rehash(&self, d: &Digest) -> Result<Option<(Digest, u64)>, BlobError> {
        let path = self.path_of(d);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut h = Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                size += n as u64;
            }
            Ok(Some((h.finish(), size)))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Read a whole blob into memory (only for small blobs).
    ///
    /// # Errors
    /// I/O failures, including not found.
    pub async fn read(&self, d: &Digest) -> Result<Vec<u8>, BlobError> {
        Ok(tokio::fs::read(self.path_of(d)).await?)
    }
}

pub struct BlobWriter {
    store: BlobStore,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    hasher: Hasher,
    size: u64,
    limit: u64,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter").field("size", &self.size).finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// # Errors
    /// I/O failures; `TooLarge` past the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        self.file.as_mut().expect("open until finish").write_all(chunk).await?;
        Ok(())
    }

    /// Check and publish the blob.
    ///
    /// # Errors
    /// `DigestMismatch` / `LengthMismatch` when the content is not what was declared; the temp
    /// file is removed and nothing is stored.
    pub async fn finish(
        mut self,
        expected: Option<Digest>,
        declared_len: Option<u64>,
    ) -> Result<PutOutcome, BlobError> {
        let mut file = self.file.take().expect("finish once");
        let digest = std::mem::take(&mut self.hasher).finish();
        if let Some(declared) = declared_len
            && declared != self.size
        {
            return Err(BlobError::LengthMismatch { declared, actual: self.size });
        }
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(BlobError::DigestMismatch { expected, actual: digest });
        }
        let dest = self.store.path_of(&digest);
        // Bytes that hash to the digest always go in place, even over an existing blob: the
        // upload is idempotent for callers, and a blob damaged on disk is repaired by uploading
        // its true bytes again (a reader still streaming the old file keeps its open inode).
        let created = !tokio::fs::try_exists(&dest).await?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let parent = dest.parent().expect("blob path has a parent").to_owned();
        tokio::fs::create_dir_all(&parent).await?;
        tokio::fs::rename(&self.tmp, &dest).await?;
        // Make the rename itself durable.
        tokio::task::spawn_blocking(move || std::fs::File::open(&parent).and_then(|d| d.sync_all()))
            .await
            .map_err(std::io::Error::other)??;
        Ok(PutOutcome { digest, size: self.size, created })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Unfinished or refused uploads leave nothing behind (rename already moved a finished one).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_is_idempotent_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.put_bytes(b"weights").await.unwrap();
        assert!(a.created);
        assert_eq!(a.digest, Digest::of(b"weights"));
        let b = store.put_bytes(b"weights").await.unwrap();
        assert!(!b.created);
        assert_eq!(store.read(&a.digest).await.unwrap(), b"weights");

        let mut w = store.writer(100).await.unwrap();
        w.write(b"other").await.unwrap();
        let err = w.finish(Some(a.digest), None).await.unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }));
        assert_eq!(store.stat(&Digest::of(b"other")).await.unwrap(), None, "refused content is not stored");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temp file left");

        let mut w = store.writer(3).await.unwrap();
        assert!(matches!(w.write(b"toolong").await, Err(BlobError::TooLarge { limit: 3 })));
    }

    /// Bytes altered on disk are seen by a re-hash and repaired by uploading the true bytes.
    #[tokio::test]
    async fn damage_is_found_by_rehash_and_repaired_by_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"weights").await.unwrap().digest;
        assert_eq!(store.rehash(&d).await.unwrap(), Some((d, 7)));
        std::fs::write(store.path_of(&d), b"weighTs").unwrap();
        assert_eq!(store.rehash(&d).await.unwrap(), Some((Digest::of(b"weighTs"), 7)));
        let again = store.put_bytes(b"weights").await.unwrap();
        assert!(!again.created, "the digest was known");
        assert_eq!(store.rehash(&d).await.unwrap(), Some((d, 7)), "repaired");
        assert_eq!(store.rehash(&Digest::of(b"absent")).await.unwrap(), None);
    }
}
