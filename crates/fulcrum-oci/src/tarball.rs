//! Unpacking a tar layer into regular files only. Directories are implied; links (symbolic or
//! hard), devices, FIFOs and overlay whiteouts are refused, as are paths that leave the model
//! and a path given twice. Each file is written under a numbered name in `out` (never at a path
//! taken from the archive), so nothing in the archive chooses where bytes land.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::OciError;
use crate::layout::{Compression, safe_path};

/// One unpacked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Its path inside the model.
    pub path: String,
    /// Where its bytes are now.
    pub file: PathBuf,
    pub size: u64,
}

/// Unpack `reader` (a tar, gzip-compressed or not) into `out`. With `under`, only entries below
/// that directory are the model (a modelcar's `models/`), named relative to it; the rest of the
/// image is skipped whatever it holds.
///
/// # Errors
/// `OciError` naming the entry: unsafe path, not a regular file, a duplicate, or unreadable.
pub fn unpack(
    reader: impl Read,
    compression: Compression,
    under: Option<&str>,
    out: &Path,
    max_total: u64,
) -> Result<Vec<Unpacked>, OciError> {
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
    };
    let mut archive = tar::Archive::new(reader);
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0u64;
    let io = |e: std::io::Error| OciError::Io(e.to_string());
    for (n, entry) in archive.entries().map_err(io)?.enumerate() {
        let mut entry = entry.map_err(io)?;
        let raw = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| OciError::UnsafePath("<not UTF-8>".into()))?;
        let trimmed = raw.trim_start_matches("./").trim_end_matches('/');
        let rel = match under {
            Some(root) => {
                match trimmed.strip_prefix(root).or_else(|| (trimmed == root.trim_end_matches('/')).then_some("")) {
                    Some(r) => r,
                    None => continue,
                }
            }
            None => trimmed,
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() && (rel.is_empty() || safe_path(rel).is_ok()) {
            continue;
        }
        let path = safe_path(rel)?;
        if path.rsplit('/').next().is_some_and(|name| name.starts_with(".wh.")) {
            return Err(OciError::NotRegular(path));
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(OciError::NotRegular(path));
        }
        if !seen.insert(path.clone()) {
            return Err(OciError::DuplicatePath(path));
        }
        let size = entry.header().size().map_err(io)?;
        total = total.saturating_add(size);
        if total > max_total {
            return Err(OciError::TooLarge(format!("the unpacked layer ({total} bytes so far)")));
        }
        let file = out.join(format!("f{n:08}"));
        let mut w = std::fs::File::create(&file).map_err(io)?;
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut w).map_err(io)?;
        if copied != size {
            return Err(OciError::Io(format!("{path}: truncated ({copied} of {size} bytes)")));
        }
        files.push(Unpacked { path, file, size });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
            }
            // Raw bytes into the name field, so unsafe names reach the reader as written.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *bytes).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn regular_files_unpack_and_everything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ok = tar_of(&[
            ("model/", tar::EntryType::Directory, b""),
            ("model/w.bin", tar::EntryType::Regular, b"weights"),
            ("./cfg.json", tar::EntryType::Regular, b"{}"),
        ]);
        let got = unpack(&ok[..], Compression::None, None, dir.path(), 1 << 20).unwrap();
        assert_eq!(
            got.iter().map(|u| (u.path.as_str(), u.size)).collect::<Vec<_>>(),
            [("model/w.bin", 7), ("cfg.json", 2)]
        );
        assert_eq!(std::fs::read(&got[0].file).unwrap(), b"weights");
        for (entries, code) in [
            (vec![("../escape", tar::EntryType::Regular, &b"x"[..])], "oci_unsafe_path"),
            (vec![("/abs", tar::EntryType::Regular, &b"x"[..])], "oci_unsafe_path"),
            (vec![("link", tar::EntryType::Symlink, &b""[..])], "oci_not_regular_file"),
            (vec![("dev", tar::EntryType::Char, &b""[..])], "oci_not_regular_file"),
            (vec![("d/.wh.gone", tar::EntryType::Regular, &b""[..])], "oci_not_regular_file"),
            (
                vec![("a", tar::EntryType::Regular, &b"1"[..]), ("./a", tar::EntryType::Regular, &b"2"[..])],
                "oci_duplicate_path",
            ),
        ] {
            let e = unpack(&tar_of(&entries)[..], Compression::None, None, dir.path(), 1 << 20).unwrap_err();
            assert_eq!(e.code(), code, "{entries:?}: {e}");
        }
        let big = tar_of(&[("a", tar::EntryType::Regular, &[0u8; 100][..])]);
        assert_eq!(unpack(&big[..], Compression::None, None, dir.path(), 10).unwrap_err().code(), "oci_too_large");
    }

    #[test]
    fn a_modelcar_keeps_only_its_models_directory() {
        let dir = tempfile::tempdir().unwrap();
        let image = tar_of(&[
            ("bin/sh", tar::EntryType::Symlink, b""),
            ("etc/passwd", tar::EntryType::Regular, b"root"),
            ("models/", tar::EntryType::Directory, b""),
            ("models/model.onnx", tar::EntryType::Regular, b"onnx"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &image).unwrap();
        let got = unpack(&gz.finish().unwrap()[..], Compression::Gzip, Some("models/"), dir.path(), 1 << 20).unwrap();
        assert_eq!(got.iter().map(|u| u.path.as_str()).collect::<Vec<_>>(), ["model.onnx"]);
    }
}
