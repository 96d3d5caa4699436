//! The directory backend: `<root>/sha256/<2 hex>/<62 hex>`, uploads spooled in `<root>/tmp/`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use fulcrum_core::Digest;
use fulcrum_core::digest::Hasher;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::{BlobError, ByteStream};

/// Bytes read from disk per chunk of a stream.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct DirBlobs {
    root: PathBuf,
}

impl DirBlobs {
    pub(super) fn open(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("sha256"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { root: root.to_owned() })
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn spool(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where a blob lives on disk (inside this module and its tests only).
    pub(crate) fn path_of(&self, d: &Digest) -> PathBuf {
        let h = d.hex();
        self.root.join("sha256").join(&h[..2]).join(&h[2..])
    }

    pub(super) async fn stat(&self, d: &Digest) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path_of(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn stream(&self, d: &Digest, from: u64) -> Result<ByteStream, BlobError> {
        let mut f = tokio::fs::File::open(self.path_of(d)).await?;
        if from > 0 {
            f.seek(std::io::SeekFrom::Start(from)).await?;
        }
        let s = futures_util::stream::unfold(Some(f), |f| async move {
            let mut f = f?;
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(Box::pin(s))
    }

    pub(super) async fn rehash(&self, d: &Digest) -> Result<Option<(Digest, u64)>, BlobError> {
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

    /// Move a checked, fsync'd temp file into place and make the rename durable.
    pub(super) async fn publish(&self, tmp: &Path, digest: &Digest) -> Result<bool, BlobError> {
        let dest = self.path_of(digest);
        let created = !tokio::fs::try_exists(&dest).await?;
        let parent = dest.parent().expect("blob path has a parent").to_owned();
        tokio::fs::create_dir_all(&parent).await?;
        // A reader still streaming the old file keeps its open inode.
        tokio::fs::rename(tmp, &dest).await?;
        tokio::task::spawn_blocking(move || std::fs::File::open(&parent).and_then(|d| d.sync_all()))
            .await
            .map_err(std::io::Error::other)??;
        Ok(created)
    }
}
