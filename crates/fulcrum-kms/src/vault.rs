//! Vault Transit (its documented HTTP API): `sign` for the registry's runtime token, `keys`
//! create/read/rotate for the key-admin's token. A kid names the mount, key and version
//! (`vault:transit/name:v3`) so verifiers never need to call Vault; the `vault:vN:` prefix of a
//! signature is checked against the version the registry meant to use.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use fulcrum_sign::{Alg, PublicKey, SignError, Signer};
use serde_json::{Value, json};

use crate::KmsError;
use crate::http::Endpoint;

#[derive(Clone)]
pub struct VaultConfig {
    pub endpoint: Endpoint,
    /// Re-read from its file when it changes (a rotated token is used without a restart).
    pub token: crate::Secret,
    pub mount: String,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("endpoint", &self.endpoint)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl VaultConfig {
    /// A configuration whose token is read from a file and whose TLS CA (for `https://`) is
    /// pinned from a PEM file.
    ///
    /// # Errors
    /// Bad addresses, unreadable files.
    pub fn from_files(
        addr: &str,
        token_file: &std::path::Path,
        mount: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, KmsError> {
        let ca = ca_file
            .map(|p| {
                std::fs::read(p)
                    .map_err(|e| KmsError::Config(format!("cannot read Vault CA file {}: {e}", p.display())))
            })
            .transpose()?;
        let endpoint =
            Endpoint::parse(addr, ca.as_deref()).map_err(|e| KmsError::Config(format!("Vault address: {e}")))?;
        Ok(Self { endpoint, token: crate::Secret::from_file(token_file)?, mount: mount.to_owned() })
    }
}

fn call(cfg: &VaultConfig, method: &str, path: &str, body: Option<&Value>) -> Result<Value, KmsError> {
    let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
    let (status, resp) = cfg
        .endpoint
        .request(method, &format!("/v1/{}/{path}", cfg.mount), &[("X-Vault-Token", &cfg.token.get())], bytes.as_deref())
        .map_err(KmsError::Vault)?;
    let v: Value = if resp.is_empty() { Value::Null } else { serde_json::from_slice(&resp).unwrap_or(Value::Null) };
    if !(200..300).contains(&status) {
        let errors = v["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
            .unwrap_or_default();
        return Err(KmsError::Vault(format!("{method} {path}: HTTP {status} {errors}")));
    }
    Ok(v)
}

fn vault_type(alg: Alg) -> &'static str {
    match alg {
        Alg::Ed25519 => "ed25519",
        Alg::EcdsaP256Sha256 => "ecdsa-p256",
        Alg::EcdsaP384Sha384 => "ecdsa-p384",
    }
}

/// `vault:<mount>/<name>:v<version>`.
pub fn kid(mount: &str, name: &str, version: u32) -> String {
    format!("vault:{mount}/{name}:v{version}")
}

/// Parse a backend reference `name:vN`.
///
/// # Errors
/// Anything else.
pub fn parse_ref(r: &str) -> Result<(String, u32), KmsError> {
    let (name, v) =
        r.rsplit_once(":v").ok_or_else(|| KmsError::Config(format!("vault key reference {r:?} must be name:vN")))?;
    let v: u32 = v.parse().map_err(|_| KmsError::Config(format!("vault key reference {r:?} must be name:vN")))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(KmsError::Config(format!("bad vault key name {name:?}")));
    }
    Ok((name.to_owned(), v))
}

/// The registry's runtime signer: a token that may only call `transit/sign/<name>`.
#[derive(Debug)]
pub struct VaultSigner {
    cfg: VaultConfig,
    name: String,
    version: u32,
    public: PublicKey,
    kid: String,
}

impl VaultSigner {
    /// `public` is the key as published by the key-admin; the registry proves it can sign with
    /// it before publishing (it needs no read access to Vault).
    pub fn new(cfg: VaultConfig, name: &str, version: u32, public: PublicKey) -> Self {
        Self { kid: kid(&cfg.mount, name, version), cfg, name: name.to_owned(), version, public }
    }
}

impl Signer for VaultSigner {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut body = json!({"input": B64.encode(msg), "key_version": self.version, "marshaling_algorithm": "asn1"});
        match self.public.alg() {
            Alg::EcdsaP256Sha256 => body["hash_algorithm"] = json!("sha2-256"),
            Alg::EcdsaP384Sha384 => body["hash_algorithm"] = json!("sha2-384"),
            Alg::Ed25519 => {}
        }
        let v = call(&self.cfg, "POST", &format!("sign/{}", self.name), Some(&body))
            .map_err(|e| SignError::Backend(e.to_string()))?;
        let sig = v["data"]["signature"]
            .as_str()
            .ok_or_else(|| SignError::Backend("Vault sign answer has no signature".into()))?;
        let rest = sig
            .strip_prefix("vault:v")
            .ok_or_else(|| SignError::Backend("signature lacks the vault:vN: prefix".into()))?;
        let (n, b64) =
            rest.split_once(':').ok_or_else(|| SignError::Backend("signature lacks the vault:vN: prefix".into()))?;
        if n.parse::<u32>().ok() != Some(self.version) {
            return Err(SignError::Backend(format!("Vault signed with key version {n}, not v{}", self.version)));
        }
        B64.decode(b64).map_err(|_| SignError::Backend("signature is not base64".into()))
    }
    fn is_development_key(&self) -> bool {
        false
    }
}

/// Key administration (key-admin token only).
pub mod admin {
    use super::*;

    fn public_of(v: &Value, version: u32, alg: Alg) -> Result<PublicKey, KmsError> {
        let pk = v["data"]["keys"][version.to_string()]["public_key"]
            .as_str()
            .ok_or_else(|| KmsError::Vault(format!("no public key for version {version}")))?;
        match alg {
            Alg::Ed25519 => {
                PublicKey::from_ed25519_raw(&B64.decode(pk).map_err(|_| KmsError::Vault("bad ed25519 key".into()))?)
            }
            _ => PublicKey::from_pem(pk.as_bytes()),
        }
        .map_err(|e| KmsError::Vault(format!("public key: {e}")))
    }

    /// The latest version of a key and its public key.
    ///
    /// # Errors
    /// Vault refusing or answering something unexpected.
    pub fn read(cfg: &VaultConfig, name: &str) -> Result<(u32, PublicKey), KmsError> {
        let v = call(cfg, "GET", &format!("keys/{name}"), None)?;
        let alg = match v["data"]["type"].as_str() {
            Some("ed25519") => Alg::Ed25519,
            Some("ecdsa-p256") => Alg::EcdsaP256Sha256,
            Some("ecdsa-p384") => Alg::EcdsaP384Sha384,
            other => return Err(KmsError::Vault(format!("unsupported key type {other:?}"))),
        };
        let latest =
            v["data"]["latest_version"].as_u64().ok_or_else(|| KmsError::Vault("no latest_version".into()))? as u32;
        Ok((latest, public_of(&v, latest, alg)?))
    }

    /// # Errors
    /// Vault refusing (e.g. a sign-only token).
    pub fn create(cfg: &VaultConfig, name: &str, alg: Alg) -> Result<(u32, PublicKey), KmsError> {
        call(cfg, "POST", &format!("keys/{name}"), Some(&json!({"type": vault_type(alg)})))?;
        read(cfg, name)
    }

    /// # Errors
    /// Vault refusing (e.g. a sign-only token).
    pub fn rotate(cfg: &VaultConfig, name: &str) -> Result<(u32, PublicKey), KmsError> {
        call(cfg, "POST", &format!("keys/{name}/rotate"), None)?;
        read(cfg, name)
    }

    /// Try to export the private key (Transit refuses for non-exportable keys).
    ///
    /// # Errors
    /// Always, for keys Fulcrum creates.
    pub fn export(cfg: &VaultConfig, name: &str) -> Result<Value, KmsError> {
        call(cfg, "GET", &format!("export/signing-key/{name}"), None)
    }
}

#[cfg(feature = "test-support")]
pub mod fake;
