//! Walking and hashing a model directory, as OpenSSF model-signing defines it.
//!
//! Resources are files (`files` method, one digest per file; a single-file model is named `.`)
//! or shards (`shards` method, `path:start:end` with end exclusive; empty files yield no shard).
//! They are sorted component-wise by path, which `Path`'s ordering gives. Symlinks and special
//! files are refused. Hashing runs on every core: files or shards are spread over worker
//! threads; BLAKE3 hashes each file with all cores (memory-mapped).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::Digest as _;

use crate::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    /// BLAKE2b-512.
    Blake2b,
    Blake3,
}

impl HashAlg {
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Blake2b => "blake2b",
            HashAlg::Blake3 => "blake3",
        }
    }

    /// # Errors
    /// Names outside the closed list.
    pub fn from_name(s: &str) -> Result<Self, Failure> {
        match s {
            "sha256" => Ok(HashAlg::Sha256),
            "blake2b" => Ok(HashAlg::Blake2b),
            "blake3" => Ok(HashAlg::Blake3),
            other => Err(Failure::HashAlgorithm(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Files,
    Shards(u64),
}

impl Method {
    /// The `algorithm` string of each resource under this method.
    pub fn algorithm(self, alg: HashAlg) -> String {
        match self {
            Method::Files => alg.name().to_owned(),
            Method::Shards(size) => format!("{}-sharded-{size}", alg.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// POSIX path relative to the model root (`.` for a single-file model).
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    /// The file's SHA-256 when it is already known and trusted (a registry's content-addressed
    /// blob, checked when it was uploaded): files/SHA-256 signatures are then checked without
    /// reading the file again. Other methods (shards, BLAKE2b, BLAKE3) still read it.
    pub known_sha256: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    pub algorithm: String,
    pub digest: Vec<u8>,
}

fn io(e: impl std::fmt::Display) -> Failure {
    Failure::Io(e.to_string())
}

fn ignored(rel: &str, ignore: &[String]) -> bool {
    ignore.iter().any(|i| {
        let i = i.trim_end_matches('/');
        rel == i || rel.strip_prefix(i).is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Every regular file of the model, sorted component-wise by path.
///
/// # Errors
/// Symlinks, special files, I/O errors.
pub fn walk(root: &Path, ignore: &[String]) -> Result<Vec<Entry>, Failure> {
    let meta = std::fs::symlink_metadata(root).map_err(io)?;
    if meta.file_type().is_symlink() {
        return Err(Failure::Symlink(root.display().to_string()));
    }
    if meta.is_file() {
        return Ok(vec![Entry { rel: ".".into(), path: root.to_owned(), size: meta.len(), known_sha256: None }]);
    }
    let mut out = Vec::new();
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().into_string().map_err(|n| Failure::Io(format!("{n:?} is not UTF-8")))?;
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            if ignored(&rel, ignore) {
                continue;
            }
            let ft = entry.file_type().map_err(io)?;
            if ft.is_symlink() {
                return Err(Failure::Symlink(rel));
            } else if ft.is_dir() {
                stack.push((entry.path(), rel));
            } else if ft.is_file() {
                let size = entry.metadata().map_err(io)?.len();
                out.push(Entry { rel, path: entry.path(), size, known_sha256: None });
            } else {
                return Err(Failure::Io(format!("{rel} is not a regular file")));
            }
        }
    }
    out.sort_by(|a, b| Path::new(&a.rel).cmp(Path::new(&b.rel)));
    Ok(out)
}

struct Task<'a> {
    entry: &'a Entry,
    start: u64,
    end: u64,
    name: String,
}

const CHUNK: usize = 1 << 20;

/// One task's digest, filled in by whichever worker ran it.
type Slot = Option<Result<Vec<u8>, Failure>>;

fn hash_range(path: &Path, start: u64, end: u64, alg: HashAlg, whole: bool) -> Result<Vec<u8>, Failure> {
    if alg == HashAlg::Blake3 && whole {
        let mut h = blake3::Hasher::new();
        if end > 0 {
            h.update_mmap_rayon(path).map_err(io)?;
        }
        return Ok(h.finalize().as_bytes().to_vec());
    }
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut left = end - start;
    let mut buf = vec![0u8; CHUNK];
    let mut sha = sha2::Sha256::new();
    let mut b2 = blake2::Blake2b512::new();
    let mut b3 = blake3::Hasher::new();
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).expect("chunk fits");
        let n = f.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            return Err(Failure::Io(format!("{} changed while it was hashed", path.display())));
        }
        match alg {
            HashAlg::Sha256 => sha.update(&buf[..n]),
            HashAlg::Blake2b => b2.update(&buf[..n]),
            HashAlg::Blake3 => {
                b3.update_rayon(&buf[..n]);
            }
        }
        left -= n as u64;
    }
    Ok(match alg {
        HashAlg::Sha256 => sha.finalize().to_vec(),
        HashAlg::Blake2b => b2.finalize().to_vec(),
        HashAlg::Blake3 => b3.finalize().as_bytes().to_vec(),
    })
}

/// Hash the entries as resources of `method`, in parallel, in entry order.
///
/// # Errors
/// I/O errors, files changing under the hasher.
pub fn hash(entries: &[Entry], method: Method, alg: HashAlg) -> Result<Vec<Resource>, Failure> {
    let mut tasks = Vec::new();
    for e in entries {
        match method {
            Method::Files => tasks.push(Task { entry: e, start: 0, end: e.size, name: e.rel.clone() }),
            Method::Shards(size) => {
                let mut start = 0;
                while start < e.size {
                    let end = (start + size).min(e.size);
                    tasks.push(Task { entry: e, start, end, name: format!("{}:{start}:{end}", e.rel) });
                    start = end;
                }
            }
        }
    }
    let algorithm = method.algorithm(alg);
    if method == Method::Files && alg == HashAlg::Sha256 && entries.iter().all(|e| e.known_sha256.is_some()) {
        return Ok(entries
            .iter()
            .map(|e| Resource {
                name: e.rel.clone(),
                algorithm: algorithm.clone(),
                digest: e.known_sha256.expect("checked above").to_vec(),
            })
            .collect());
    }
    let results: Mutex<Vec<Slot>> = Mutex::new((0..tasks.len()).map(|_| None).collect());
    // BLAKE3 parallelises inside each file; everything else across files/shards.
    let workers = if alg == HashAlg::Blake3 {
        1
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get()).min(tasks.len().max(1))
    };
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = tasks.get(i) else { return };
                    let whole = method == Method::Files;
                    let r = hash_range(&t.entry.path, t.start, t.end, alg, whole);
                    results.lock().expect("results lock")[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().expect("results lock");
    tasks
        .iter()
        .zip(results)
        .map(|(t, r)| {
            Ok(Resource { name: t.name.clone(), algorithm: algorithm.clone(), digest: r.expect("every task ran")? })
        })
        .collect()
}

/// The model-signing subject digest: SHA-256 over the concatenated raw resource digests.
pub fn root_digest(resources: &[Resource]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for r in resources {
        h.update(&r.digest);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known digests (a registry's upload-verified blobs) answer a files/SHA-256 check without
    /// reading; any other method still reads the bytes (here: there are none to read).
    #[test]
    fn known_digests_are_used_only_for_files_sha256() {
        let e = Entry { rel: "w.bin".into(), path: "/nonexistent/w.bin".into(), size: 3, known_sha256: Some([7; 32]) };
        let r = hash(std::slice::from_ref(&e), Method::Files, HashAlg::Sha256).unwrap();
        assert_eq!((r[0].name.as_str(), r[0].digest.as_slice()), ("w.bin", &[7u8; 32][..]));
        assert!(matches!(hash(std::slice::from_ref(&e), Method::Shards(2), HashAlg::Sha256), Err(Failure::Io(_))));
        let unknown = Entry { known_sha256: None, ..e };
        assert!(matches!(hash(&[unknown], Method::Files, HashAlg::Sha256), Err(Failure::Io(_))));
    }

    #[test]
    fn component_wise_order_and_shards() {
        let d = tempfile::tempdir().unwrap();
        for p in ["a.txt", "a-b.txt", "a b.txt", "a/b.txt", "B.txt"] {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, p).unwrap();
        }
        std::fs::write(d.path().join("empty.bin"), b"").unwrap();
        let names: Vec<String> = walk(d.path(), &[]).unwrap().into_iter().map(|e| e.rel).collect();
        assert_eq!(names, ["B.txt", "a/b.txt", "a b.txt", "a-b.txt", "a.txt", "empty.bin"]);
        let entries = walk(d.path(), &["a".into()]).unwrap();
        assert!(entries.iter().all(|e| !e.rel.starts_with("a/")));
        let shards = hash(&entries, Method::Shards(4), HashAlg::Sha256).unwrap();
        assert_eq!(
            shards.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            [
                "B.txt:0:4",
                "B.txt:4:5",
                "a b.txt:0:4",
                "a b.txt:4:7",
                "a-b.txt:0:4",
                "a-b.txt:4:7",
                "a.txt:0:4",
                "a.txt:4:5"
            ]
        );
        assert_eq!(shards[0].digest, sha2::Sha256::digest(b"B.tx").to_vec());
        let files = hash(&entries, Method::Files, HashAlg::Blake3).unwrap();
        assert_eq!(files.last().unwrap().digest, blake3::hash(b"").as_bytes().to_vec());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("a.txt"), d.path().join("link")).unwrap();
            assert_eq!(walk(d.path(), &[]), Err(Failure::Symlink("link".into())));
        }
    }
}
