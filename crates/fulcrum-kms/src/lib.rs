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
