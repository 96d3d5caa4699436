//! Secret settings read from files (Vault Agent style) and re-read when they change: PINs, tokens,
//! database passwords, object-store keys. One small crate so every adapter (KMS backends, the
//! store's S3 and database clients) uses the same type without depending on each other.
//!
//! # Invariants
//! - A secret's value never appears in `Debug` output, logs or error messages (errors name the
//!   file, never its content).
//! - A file that becomes unreadable or empty keeps the last good value.

/// Why a secret file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// Read a secret (PIN, token) from a file, trimming the trailing newline.
///
/// # Errors
/// Unreadable or empty files (the error names the file, never its content).
pub fn read_secret(path: &std::path::Path) -> Result<String, SecretError> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| SecretError(format!("cannot read secret file {}: {e}", path.display())))?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    if s.is_empty() {
        return Err(SecretError(format!("secret file {} is empty", path.display())));
    }
    Ok(s)
}

/// A secret setting (Vault token, PKCS#11 PIN, …): a literal, or a file (Vault Agent style) that
/// is **re-read when it changes**, so a rotated credential is used without a restart. It never
/// prints its value; a file that becomes unreadable or empty keeps the last good value.
#[derive(Clone)]
pub struct Secret {
    file: Option<std::sync::Arc<SecretFile>>,
    literal: String,
}

struct SecretFile {
    path: std::path::PathBuf,
    /// (value, the file's modification time and length when it was read)
    cached: std::sync::Mutex<(String, Option<(std::time::SystemTime, u64)>)>,
}

fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Secret {
    /// Read from `path` now (it must hold a non-empty secret) and again whenever it changes.
    ///
    /// # Errors
    /// An unreadable or empty file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SecretError> {
        let stamped = stamp(path);
        let value = read_secret(path)?;
        Ok(Self {
            file: Some(std::sync::Arc::new(SecretFile {
                path: path.to_owned(),
                cached: std::sync::Mutex::new((value, stamped)),
            })),
            literal: String::new(),
        })
    }

    /// The current value.
    pub fn get(&self) -> String {
        let Some(f) = &self.file else { return self.literal.clone() };
        let mut c = f.cached.lock().expect("secret lock");
        let now = stamp(&f.path);
        if now.is_some()
            && now != c.1
            && let Ok(v) = read_secret(&f.path)
        {
            *c = (v, now);
        }
        c.0.clone()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self { file: None, literal: s }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self { file: None, literal: s.to_owned() }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "Secret(file {})", file.path.display()),
            None => f.write_str("Secret(literal, redacted)"),
        }
    }
}

#[cfg(test)]
mod secret_tests {
    use super::Secret;

    #[test]
    fn a_secret_file_is_reread_when_it_changes_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n").unwrap();
        let s = Secret::from_file(&p).unwrap();
        assert_eq!(s.get(), "1234");
        std::fs::write(&p, "98765\n").unwrap();
        assert_eq!(s.get(), "98765", "re-read after a change");
        std::fs::write(&p, "").unwrap();
        assert_eq!(s.get(), "98765", "an emptied file keeps the last good value");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(s.get(), "98765", "a removed file keeps the last good value");
        assert!(!format!("{s:?}").contains("98765"));
        assert!(!format!("{:?}", Secret::from("hvs.x")).contains("hvs.x"));
        assert!(Secret::from_file(&dir.path().join("missing")).is_err());
    }
}
