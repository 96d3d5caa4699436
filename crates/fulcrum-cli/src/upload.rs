//! Upload a model directory: walk it, hash every file, upload what the registry lacks (with a
//! progress bar on a terminal), and return the manifest entries for registration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use fulcrum_client::Client;
use fulcrum_core::{Digest, FileEntry, Manifest};
use indicatif::{ProgressBar, ProgressStyle};

/// Every regular file under `dir`, as (relative path with `/`, absolute path). Symlinks are
/// refused: an artifact is what is in the directory, not what it points at. Git metadata is not
/// part of a model (as in OpenSSF model-signing, so bundles and manifests list the same files).
fn walk(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let path = entry.path();
            if d == dir && fulcrum_verify::model_signing::GIT_PATHS.iter().any(|g| entry.file_name() == *g) {
                continue;
            }
            if ft.is_symlink() {
                bail!("{} is a symlink; model directories must hold regular files only", path.display());
            } else if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let rel = path.strip_prefix(dir).expect("under dir");
                let rel = rel
                    .to_str()
                    .with_context(|| format!("{} is not valid UTF-8", rel.display()))?
                    .replace(std::path::MAIN_SEPARATOR, "/");
                out.push((rel, path));
            }
        }
    }
    if out.is_empty() {
        bail!("{} holds no files", dir.display());
    }
    out.sort();
    Ok(out)
}

/// The manifest of a local directory, without uploading (for attestations).
///
/// # Errors
/// Walking or hashing failures.
pub fn local_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let mut entries = Vec::new();
    for (rel, path) in walk(dir)? {
        let (digest, size) =
            fulcrum_client::hash_file(&path).with_context(|| format!("cannot hash {}", path.display()))?;
        entries.push(FileEntry { path: rel, size, digest });
    }
    Ok(Manifest::new(entries)?)
}

pub async fn upload_dir(client: &Client, dir: &Path) -> anyhow::Result<Manifest> {
    let files = walk(dir)?;
    let total: u64 = files.iter().map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let bar = Arc::new(ProgressBar::new(total * 2));
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("hashing");
    let mut entries = Vec::with_capacity(files.len());
    for (rel, path) in &files {
        let p = path.clone();
        let (digest, size): (Digest, u64) = tokio::task::spawn_blocking(move || fulcrum_client::hash_file(&p))
            .await?
            .with_context(|| format!("cannot hash {}", path.display()))?;
        bar.inc(size);
        entries.push((FileEntry { path: rel.clone(), size, digest }, path.clone()));
    }
    bar.set_message("uploading");
    for (entry, path) in &entries {
        if client.has_blob(&entry.digest).await? {
            bar.inc(entry.size);
            continue;
        }
        let (b, base) = (bar.clone(), bar.position());
        client
            .upload_file(path, &entry.digest, move |sent| b.set_position(base + sent))
            .await
            .with_context(|| format!("uploading {}", entry.path))?;
        bar.set_position(base + entry.size);
    }
    bar.finish_and_clear();
    Ok(Manifest::new(entries.into_iter().map(|(e, _)| e).collect())?)
}
