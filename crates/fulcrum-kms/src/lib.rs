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
    Ok(fulcrum_secret::read_secret(path)?)
}

pub use fulcrum_secret::Secret;

impl From<fulcrum_secret::SecretError> for KmsError {
    fn from(e: fulcrum_secret::SecretError) -> Self {
        KmsError::Config(e.0)
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
