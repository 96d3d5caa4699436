//! Verified records: skip re-reading an unchanged model that was already verified.
//!
//! After a full verification, the verifier writes a record: the bundle's SHA-256, the signer's
//! key fingerprint, and for every file its device, inode, size, modification time and
//! status-change time (ctime). Re-verifying the same bundle first checks the bundle signature
//! (cheap), then compares every file's metadata with the record; if all match and the file set
//! is identical, no file content is read.
//!
//! How the record is protected:
//! - It is MACed (HMAC-SHA256) with a 256-bit key kept in a separate file (mode 0600) owned by
//!   the verifier; an edited, swapped or forged record fails the MAC and forces a full
//!   verification.
//! - ctime cannot be set by an unprivileged process: any write, truncate, rename or
//!   `utime`/`touch` bumps it, so content changed through the filesystem is always detected
//!   even if size and mtime are restored.
//! - The limit: someone who can write the raw block device or reset the clock and ctime as
//!   root can defeat metadata checks; a verifier that must resist that re-verifies fully
//!   (the record is an optimisation, never a trust root).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::Failure;
use crate::model_signing::{self, SignedModel, Trust, VerifyOptions};
use crate::modeldir;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    rel: String,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    bundle_sha256: String,
    signer: String,
    stamps: Vec<Stamp>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    record: Record,
    mac: String,
}

/// Whether the content was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The record matched: only metadata was read.
    Hit,
    /// Full verification (no record, a stale one, or one that failed its MAC).
    Full,
}

fn stamps(root: &Path, ignore: &[String]) -> Result<Vec<Stamp>, Failure> {
    modeldir::walk(root, ignore)?
        .into_iter()
        .map(|e| {
            let m = std::fs::symlink_metadata(&e.path).map_err(|err| Failure::Io(err.to_string()))?;
            Ok(Stamp {
                rel: e.rel,
                dev: m.dev(),
                ino: m.ino(),
                size: m.len(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            })
        })
        .collect()
}

fn mac_key(path: &Path) -> Result<hmac::Key, Failure> {
    let io = |e: std::io::Error| Failure::Io(format!("record key {}: {e}", path.display()));
    let bytes = match std::fs::read(path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) => return Err(Failure::Io(format!("record key {} is not 32 bytes", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = vec![0u8; 32];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| Failure::Io("no randomness".into()))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            std::io::Write::write_all(&mut opts.open(path).map_err(io)?, &b).map_err(io)?;
            b
        }
        Err(e) => return Err(io(e)),
    };
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

fn seal(key: &hmac::Key, r: &Record) -> String {
    hex::encode(hmac::sign(key, &serde_json::to_vec(r).expect("records serialise")).as_ref())
}

/// Verify `root` against a bundle, reusing a verified record at `record_path` when the model is
/// unchanged. `key_path` holds the record MAC key (created, mode 0600, on first use).
///
/// # Errors
/// As [`model_signing::verify`].
pub fn verify(
    root: &Path,
    bundle: &[u8],
    trust: Trust<'_>,
    opts: &VerifyOptions,
    record_path: &Path,
    key_path: &Path,
) -> Result<(SignedModel, Outcome), Failure> {
    let key = mac_key(key_path)?;
    let bundle_sha256 = hex::encode(sha2::Sha256::digest(bundle));
    // The signature and statement are always checked; only file contents may be skipped.
    let signed = model_signing::open(bundle, trust)?;
    let mut ignore = signed.ignore_paths.clone();
    ignore.extend(model_signing::GIT_PATHS.iter().map(|s| (*s).to_owned()));
    if let Some(sig) = &opts.signature_path
        && let (Ok(r), Ok(s)) = (std::fs::canonicalize(root), std::fs::canonicalize(sig))
        && let Ok(rel) = s.strip_prefix(&r)
    {
        ignore.push(rel.to_string_lossy().into_owned());
    }
    if let Ok(bytes) = std::fs::read(record_path)
        && let Ok(sealed) = serde_json::from_slice::<Sealed>(&bytes)
        && hmac::verify(
            &key,
            &serde_json::to_vec(&sealed.record).expect("records serialise"),
            &hex::decode(&sealed.mac).unwrap_or_default(),
        )
        .is_ok()
        && sealed.record.bundle_sha256 == bundle_sha256
        && sealed.record.signer == signed.signer.fingerprint()
        && stamps(root, &ignore)? == sealed.record.stamps
    {
        return Ok((signed, Outcome::Hit));
    }
    let before = stamps(root, &ignore)?;
    let verified = model_signing::verify(root, bundle, trust, opts)?;
    // Only record what did not change while it was being hashed.
    if stamps(root, &ignore)? == before {
        let record = Record { bundle_sha256, signer: verified.signer.fingerprint(), stamps: before };
        let sealed = Sealed { mac: seal(&key, &record), record };
        let tmp = record_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&sealed).expect("records serialise"))
            .map_err(|e| Failure::Io(e.to_string()))?;
        std::fs::rename(&tmp, record_path).map_err(|e| Failure::Io(e.to_string()))?;
    }
    Ok((verified, Outcome::Full))
}
