//! A write-once store for evidence (SPEC §8 "WORM evidence"), on local disk — the embedded
//! default. An object is written once, with a retention date; until that date it cannot be
//! overwritten or deleted, and its retention can be extended but never shortened (the rules of
//! S3 Object Lock in COMPLIANCE mode). Each object's SHA-256 is kept beside it and checked on read.
//!
//! The rules hold for everyone going through this store; the files are also made read-only, but
//! an operator with the machine's root can still remove them — for evidence that must outlive
//! the machine's administrators, use S3 with Object Lock.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why the store refused.
#[derive(Debug, thiserror::Error)]
pub enum WormError {
    #[error("{0} already exists: objects are written once")]
    Exists(String),
    #[error("{0} is retained until {1}: it cannot be deleted or overwritten before")]
    Retained(String, String),
    #[error("{0}: retention can be extended, never shortened (it is {1})")]
    Shorten(String, String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} does not match the digest it was stored with")]
    Corrupt(String),
    #[error("object keys are letters, digits and . _ - / (no ..): {0}")]
    BadKey(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// What is kept beside each object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub retain_until: String,
    pub sha256: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct LocalWorm {
    dir: PathBuf,
}

pub(crate) fn check_key(key: &str) -> Result<(), WormError> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && !key.starts_with('/')
        && !key.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok { Ok(()) } else { Err(WormError::BadKey(key.to_owned())) }
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("formats")
}

impl LocalWorm {
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &Path) -> Result<Self, WormError> {
        std::fs::create_dir_all(dir).map_err(|e| WormError::Io(dir.display().to_string(), e))?;
        Ok(Self { dir: dir.to_owned() })
    }

    fn paths(&self, key: &str) -> Result<(PathBuf, PathBuf), WormError> {
        check_key(key)?;
        Ok((self.dir.join(key), self.dir.join(format!("{key}.retention.json"))))
    }

    fn write_new(path: &Path, bytes: &[u8]) -> Result<(), WormError> {
        use std::io::Write as _;
        let io = |e| WormError::Io(path.display().to_string(), e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                WormError::Exists(path.display().to_string())
            } else {
                io(e)
            }
        })?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        let mut perms = f.metadata().map_err(io)?.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(path, perms).map_err(io)
    }

    /// Store `bytes` under `key`, retained until `until`.
    ///
    /// # Errors
    /// An existing key (written once), a bad key, I/O failures.
    pub fn put(
        &self,
        key: &str,
        bytes: &[u8],
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Retention, WormError> {
        let (obj, ret) = self.paths(key)?;
        if obj.exists() || ret.exists() {
            return Err(WormError::Exists(key.to_owned()));
        }
        let r = Retention {
            retain_until: ts(until),
            sha256: fulcrum_core::Digest::of(bytes).to_string(),
            created_at: ts(now),
        };
        Self::write_new(&ret, &serde_json::to_vec(&r).expect("serialises"))?;
        Self::write_new(&obj, bytes)?;
        Ok(r)
    }

    /// An object's retention.
    ///
    /// # Errors
    /// Unknown keys, I/O failures.
    pub fn retention(&self, key: &str) -> Result<Retention, WormError> {
        let (_, ret) = self.paths(key)?;
        let bytes = std::fs::read(&ret).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => WormError::NotFound(key.to_owned()),
            _ => WormError::Io(ret.display().to_string(), e),
        })?;
        serde_json::from_slice(&bytes).map_err(|_| WormError::Corrupt(key.to_owned()))
    }

    /// Read an object, checked against its stored digest.
    ///
    /// # Errors
    /// Unknown keys, a changed object, I/O failures.
    pub fn get(&self, key: &str) -> Result<(Vec<u8>, Retention), WormError> {
        let r = self.retention(key)?;
        let (obj, _) = self.paths(key)?;
        let bytes = std::fs::read(&obj).map_err(|e| WormError::Io(obj.display().to_string(), e))?;
        if fulcrum_core::Digest::of(&bytes).to_string() != r.sha256 {
            return Err(WormError::Corrupt(key.to_owned()));
        }
        Ok((bytes, r))
    }

    /// Delete an object whose retention has ended.
    ///
    /// # Errors
    /// Retention not ended, unknown keys, I/O failures.
    pub fn delete(&self, key: &str, now: OffsetDateTime) -> Result<(), WormError> {
        let r = self.retention(key)?;
        let until = OffsetDateTime::parse(&r.retain_until, &Rfc3339).map_err(|_| WormError::Corrupt(key.to_owned()))?;
        if now < until {
            return Err(WormError::Retained(key.to_owned(), r.retain_until));
        }
        let (obj, ret) = self.paths(key)?;
        for p in [&obj, &ret] {
            std::fs::remove_file(p).map_err(|e| WormError::Io(p.display().to_string(), e))?;
        }
        Ok(())
    }

    /// Keep an object longer; shortening is refused.
    ///
    /// # Errors
    /// A shorter date, unknown keys, I/O failures.
    pub fn extend(&self, key: &str, until: OffsetDateTime) -> Result<Retention, WormError> {
        let mut r = self.retention(key)?;
        let current =
            OffsetDateTime::parse(&r.retain_until, &Rfc3339).map_err(|_| WormError::Corrupt(key.to_owned()))?;
        if until < current {
            return Err(WormError::Shorten(key.to_owned(), r.retain_until));
        }
        r.retain_until = ts(until);
        let (_, ret) = self.paths(key)?;
        let tmp = ret.with_extension("json.next");
        let _ = std::fs::remove_file(&tmp);
        Self::write_new(&tmp, &serde_json::to_vec(&r).expect("serialises"))?;
        std::fs::rename(&tmp, &ret).map_err(|e| WormError::Io(ret.display().to_string(), e))?;
        Ok(r)
    }
}

/// Where evidence is written: a local directory (the embedded default) or S3 with Object Lock.
#[derive(Debug, Clone)]
pub enum EvidenceStore {
    Local(LocalWorm),
    S3(crate::s3::S3Worm),
}

impl EvidenceStore {
    /// Write `bytes` once under `key`, retained until `until`.
    ///
    /// # Errors
    /// An existing key, a bad key, the store failing.
    pub async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Retention, WormError> {
        match self {
            EvidenceStore::Local(l) => l.put(key, bytes, until, now),
            EvidenceStore::S3(s) => s.put(key, bytes, until).await,
        }
    }

    /// Read an object back, checked against its digest, with its retention.
    ///
    /// # Errors
    /// Unknown keys, a changed object, the store failing.
    pub async fn get(&self, key: &str) -> Result<(Vec<u8>, Retention), WormError> {
        match self {
            EvidenceStore::Local(l) => l.get(key),
            EvidenceStore::S3(s) => {
                let (_, r) = s.head(key).await?;
                Ok((s.get(key).await?, r))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn write_once_and_retention_rules_as_data() {
        let dir = tempfile::tempdir().unwrap();
        let w = LocalWorm::open(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let day = now + Duration::days(1);
        w.put("evidence/chg-1.json", b"proof", day, now).unwrap();
        assert_eq!(w.get("evidence/chg-1.json").unwrap().0, b"proof");
        // Before retention ends: no overwrite, no delete, no shortening.
        assert!(matches!(w.put("evidence/chg-1.json", b"other", day, now), Err(WormError::Exists(_))));
        assert!(matches!(w.delete("evidence/chg-1.json", now), Err(WormError::Retained(..))));
        assert!(matches!(w.extend("evidence/chg-1.json", now + Duration::hours(1)), Err(WormError::Shorten(..))));
        // Extending is allowed, and then binds.
        w.extend("evidence/chg-1.json", now + Duration::days(2)).unwrap();
        assert!(matches!(
            w.delete("evidence/chg-1.json", now + Duration::days(1) + Duration::hours(1)),
            Err(WormError::Retained(..))
        ));
        // After it, deletion works.
        w.delete("evidence/chg-1.json", now + Duration::days(3)).unwrap();
        assert!(matches!(w.get("evidence/chg-1.json"), Err(WormError::NotFound(_))));
        // Keys cannot climb out of the store.
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "a b", ""] {
            assert!(matches!(w.put(bad, b"x", day, now), Err(WormError::BadKey(_))), "{bad}");
        }
        // A changed object is noticed on read.
        w.put("e2", b"original", day, now).unwrap();
        let p = dir.path().join("e2");
        let mut perms = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&p, perms).unwrap();
        std::fs::write(&p, b"tampered").unwrap();
        assert!(matches!(w.get("e2"), Err(WormError::Corrupt(_))));
    }
}
