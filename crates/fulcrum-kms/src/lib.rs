//! KMS signing backends: PKCS#11 (any HSM; SoftHSM2 in tests) and Vault Transit.
//!
//! Each backend has two sides, used by two different people with two different credentials:
//! - the **runtime** side ([`pkcs11::Pkcs11Signer`], [`vault::VaultSigner`]) is what the registry
//!   holds: it can *sign* with an existing key and nothing else (a read-only PKCS#11 session with
//!   the user PIN, or a Vault token whose policy allows only `transit/sign`);
//! - the **administration** side ([`pkcs11::admin`], [`vault::admin`]) creates and rotates keys
//!   and is used only by `fulcrum keys …` with the key-admin's credential.
//!
//! # Invariants
//! - Private keys never leave the KMS: PKCS#11 keys are generated sensitive and non-extractable.
//! - Secrets (PINs, tokens) are never logged or put in error messages.

pub mod http;
pub mod pkcs11;
pub mod vault;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    #[error("Vault: {0}")]
    Vault(String),
    #[error("{0}")]
    Config(String),
}

/// Read a secret (PIN, token) from a file, trimming the trailing newline.
///
/// # Errors
/// Unreadable or empty files (the error names the file, never its content).
pub fn read_secret(path: &std::path::Path) -> Result<String, KmsError> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| KmsError::Config(format!("cannot read secret file {}: {e}", path.display())))?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    if s.is_empty() {
        return Err(KmsError::Config(format!("secret file {} is empty", path.display())));
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
    pub fn from_file(path: &std::path::Path) -> Result<Self, KmsError> {
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

/// Test support: a fresh SoftHSM2 token per test process.
#[cfg(feature = "test-support")]
pub mod testing {
    use std::path::PathBuf;
    use std::process::Command;

    use crate::pkcs11::Pkcs11Config;

    /// The SoftHSM2 module, or a panic naming how to install it (tests never skip silently).
    pub fn softhsm_module() -> PathBuf {
        ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("SoftHSM2 is not installed (no libsofthsm2.so): run `bash scripts/test.sh`, which installs it")
            })
    }

    /// Initialise a new token labelled `<prefix>-<pid>` with user PIN `pin`, under the directory
    /// of `SOFTHSM2_CONF` (which scripts/test.sh sets; the file is written here if missing).
    pub fn softhsm_token(prefix: &str, pin: &str) -> Pkcs11Config {
        let conf = PathBuf::from(std::env::var_os("SOFTHSM2_CONF").unwrap_or_else(|| {
            panic!("SOFTHSM2_CONF is not set: run `bash scripts/test.sh`, which installs SoftHSM2 and sets it")
        }));
        let dir = conf.parent().expect("SOFTHSM2_CONF names a file").to_owned();
        std::fs::create_dir_all(dir.join("tokens")).expect("token directory");
        if !conf.exists() {
            let text = format!(
                "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                dir.display()
            );
            std::fs::write(&conf, text).expect("softhsm2.conf");
        }
        let label = format!("{prefix}-{}", std::process::id());
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label, "--so-pin", "87654321", "--pin", pin])
            .output()
            .expect("softhsm2-util is not installed: run `bash scripts/test.sh`");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Pkcs11Config { module: softhsm_module(), token_label: label, pin: pin.into() }
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
