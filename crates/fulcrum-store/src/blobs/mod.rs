//! The content-addressed blob store: model files, manifests, release records, SBOMs,
//! attestations and signatures, each under the SHA-256 digest of its bytes.
//!
//! Two backends behind one enum (two is all there is; an enum keeps calls static and the
//! differences in view): a directory on the registry's disk (the embedded default) and an
//! S3-compatible bucket (scale-out). No file path leaves this module: callers stat, stream
//! (from an offset, for Range reads), read small blobs whole, re-hash and upload.
//!
//! Uploads are spooled to a local temp file while they are hashed (the only time an uploaded
//! file is hashed), fsync'd, checked against what the client declared, then published: renamed
//! into place (directory) or uploaded under `sha256/<hex>` (S3). A blob therefore either exists
//! whole under its true digest or not at all; a crash leaves at most a temp file, swept on open.
//!
//! # Invariants
//! - The bytes published under a digest hash to that digest. Bytes changed behind the store's
//!   back (disk faults, an intruder with bucket access) are caught by readers that hash while they
//!   stream and by [`BlobStore::rehash`] (the scrub), and repaired by uploading the true bytes.
//! - Blobs are never deleted through this API, and only ever replaced by bytes with their digest.
//! - A pre-signed URL is only a way to fetch bytes: whoever uses it still checks them against
//!   the signed digest.

mod dir;
mod s3;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use fulcrum_core::Digest;
use fulcrum_core::digest::Hasher;
use futures_util::stream::BoxStream;
use tokio::io::AsyncWriteExt;

pub use s3::S3BlobConfig;

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
    /// The object store failed or cannot be reached.
    #[error("object store: {0}")]
    Remote(String),
    #[error("blob store configuration: {0}")]
    Config(String),
}

/// Where blobs live.
#[derive(Debug, Clone)]
pub enum BlobStore {
    Dir(dir::DirBlobs),
    S3(s3::S3Blobs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    pub digest: Digest,
    pub size: u64,
    /// False when the blob already existed (uploads are idempotent).
    pub created: bool,
}

/// A stream of a blob's bytes.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

impl BlobStore {
    /// Open (creating if needed) the directory store under `root`, sweeping leftover temp files.
    ///
    /// # Errors
    /// I/O failures.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        Ok(Self::Dir(dir::DirBlobs::open(root)?))
    }

    /// Open the S3 store; uploads are spooled under `spool` (a local dir) before they are sent.
    /// The bucket must exist and be reachable.
    ///
    /// # Errors
    /// A bad configuration or an unreachable bucket.
    pub async fn open_s3(cfg: S3BlobConfig, spool: &Path) -> Result<Self, BlobError> {
        Ok(Self::S3(s3::S3Blobs::open(cfg, spool).await?))
    }

    /// Which backend, for status pages and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(d) => format!("directory {}", d.root().display()),
            Self::S3(s) => s.describe(),
        }
    }

    /// Size of a stored blob, or `None`.
    ///
    /// # Errors
    /// I/O failures other than "not found".
    pub async fn stat(&self, d: &Digest) -> Result<Option<u64>, BlobError> {
        match self {
            Self::Dir(x) => x.stat(d).await,
            Self::S3(x) => x.stat(d).await,
        }
    }

    /// The blob's bytes from `from` to its end, in chunks.
    ///
    /// # Errors
    /// Not found, I/O failures.
    pub async fn stream(&self, d: &Digest, from: u64) -> Result<ByteStream, BlobError> {
        match self {
            Self::Dir(x) => x.stream(d, from).await,
            Self::S3(x) => x.stream(d, from).await,
        }
    }

    /// A short-lived URL that fetches the blob straight from object storage, or `None` when the
    /// registry serves the bytes itself (the directory store).
    ///
    /// # Errors
    /// The object store cannot sign.
    pub async fn presign(&self, d: &Digest, ttl: Duration) -> Result<Option<String>, BlobError> {
        match self {
            Self::Dir(_) => Ok(None),
            Self::S3(x) => x.presign(d, ttl).await.map(Some),
        }
    }

    /// Start an upload. Nothing is visible until [`BlobWriter::finish`] succeeds.
    ///
    /// # Errors
    /// I/O failures.
    pub async fn writer(&self, limit: u64) -> Result<BlobWriter, BlobError> {
        let tmp = self.spool_dir().join(uuid::Uuid::new_v4().to_string());
        let file = tokio::fs::File::create(&tmp).await?;
        Ok(BlobWriter { store: self.clone(), tmp, file: Some(file), hasher: Hasher::new(), size: 0, limit })
    }

    /// Where bytes wait before they are stored (on the store's own disk, or its local scratch
    /// for S3): also the place for other large temporary files.
    pub fn spool_dir(&self) -> PathBuf {
        match self {
            Self::Dir(x) => x.spool(),
            Self::S3(x) => x.spool(),
        }
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

    /// Hash what is stored under `d`: `None` when nothing is stored, else the digest the bytes
    /// really have and their size (a scrub compares it with `d`).
    ///
    /// # Errors
    /// I/O failures other than "not found".
    pub async fn rehash(&self, d: &Digest) -> Result<Option<(Digest, u64)>, BlobError> {
        if let Self::Dir(x) = self {
            // Off the async workers: hashing is CPU-bound.
            return x.rehash(d).await;
        }
        use futures_util::StreamExt;
        let mut s = match self.stream(d, 0).await {
            Ok(s) => s,
            Err(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (mut h, mut size) = (Hasher::new(), 0u64);
        while let Some(chunk) = s.next().await {
            let chunk = chunk?;
            h.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok(Some((h.finish(), size)))
    }

    /// Read a whole blob into memory (only for small blobs).
    ///
    /// # Errors
    /// I/O failures, including not found.
    pub async fn read(&self, d: &Digest) -> Result<Vec<u8>, BlobError> {
        use futures_util::TryStreamExt;
        let chunks: Vec<Bytes> = self.stream(d, 0).await?.try_collect().await?;
        Ok(chunks.concat())
    }

    /// Local files holding `digests`, for verifiers that must read files (model-signing
    /// signatures over shards or BLAKE hashes): the directory store lends its own files; the S3
    /// store downloads them into its spool, removed when the view is dropped.
    ///
    /// # Errors
    /// Not found, I/O failures.
    pub async fn local_view(&self, digests: &[Digest]) -> Result<LocalView, BlobError> {
        let mut view = LocalView::default();
        for d in digests {
            if view.files.contains_key(d) {
                continue;
            }
            match self {
                Self::Dir(x) => {
                    view.files.insert(*d, x.path_of(d));
                }
                Self::S3(x) => {
                    use futures_util::StreamExt;
                    let tmp = x.spool().join(format!("view-{}", uuid::Uuid::new_v4()));
                    view.owned.push(tmp.clone());
                    let mut f = tokio::fs::File::create(&tmp).await?;
                    let mut s = self.stream(d, 0).await?;
                    while let Some(chunk) = s.next().await {
                        f.write_all(&chunk?).await?;
                    }
                    f.flush().await?;
                    view.files.insert(*d, tmp);
                }
            }
        }
        Ok(view)
    }

    async fn publish(&self, tmp: &Path, digest: &Digest, size: u64) -> Result<bool, BlobError> {
        match self {
            Self::Dir(x) => x.publish(tmp, digest).await,
            Self::S3(x) => x.publish(tmp, digest, size).await,
        }
    }
}

/// See [`BlobStore::local_view`].
#[derive(Debug, Default)]
pub struct LocalView {
    files: std::collections::HashMap<Digest, PathBuf>,
    owned: Vec<PathBuf>,
}

impl LocalView {
    /// The local file holding `d` (one of the digests the view was made for).
    pub fn path(&self, d: &Digest) -> Option<&Path> {
        self.files.get(d).map(PathBuf::as_path)
    }
}

impl Drop for LocalView {
    fn drop(&mut self) {
        for p in &self.owned {
            let _ = std::fs::remove_file(p);
        }
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
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        // Bytes that hash to the digest always go in place, even over an existing blob: the
        // upload is idempotent for callers, and a damaged blob is repaired by uploading its true
        // bytes again.
        let created = self.store.publish(&self.tmp, &digest, self.size).await?;
        Ok(PutOutcome { digest, size: self.size, created })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Unfinished or refused uploads leave nothing behind (a published one was moved or sent).
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
        let BlobStore::Dir(x) = &store else { unreachable!() };
        std::fs::write(x.path_of(&d), b"weighTs").unwrap();
        assert_eq!(store.rehash(&d).await.unwrap(), Some((Digest::of(b"weighTs"), 7)));
        let again = store.put_bytes(b"weights").await.unwrap();
        assert!(!again.created, "the digest was known");
        assert_eq!(store.rehash(&d).await.unwrap(), Some((d, 7)), "repaired");
        assert_eq!(store.rehash(&Digest::of(b"absent")).await.unwrap(), None);
    }
}
