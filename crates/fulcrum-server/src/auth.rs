//! Local identities from a tokens file (SPEC §10), and the request extractor that turns a bearer
//! token into a [`Principal`].
//!
//! The file is JSON: `{"tokens":[{"token"|"token_sha256", "subject", "role", "tenant", "domain",
//! "env", "purpose"}]}`. Only SHA-256 hashes of tokens are kept in memory. On a first start
//! without a file, [`TokensFile::bootstrap`] writes one (mode 0600) with a random admin token.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use fulcrum_core::identity::{Action, Principal, Role};
use fulcrum_core::lifecycle::Env;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::access::Resource;
use crate::problem::{ApiError, CheckFailure};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    pub subject: String,
    pub role: Role,
    pub tenant: String,
    #[serde(default = "any_domain")]
    pub domain: String,
    #[serde(default)]
    pub env: Option<Env>,
    #[serde(default)]
    pub purpose: Option<String>,
}

fn any_domain() -> String {
    "*".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    pub tokens: Vec<TokenEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {0}: {1}")]
    Io(String, std::io::Error),
    #[error("tokens file {0} is not valid: {1}")]
    Invalid(String, String),
}

/// Random URL-safe token with 256 bits of entropy.
pub fn random_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("ftk_{a}{b}")
}

impl TokensFile {
    /// # Errors
    /// Unreadable or invalid files (bad JSON, unknown role, duplicate token, bad identifiers).
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| TokensError::Io(name.clone(), e))?;
        let file: TokensFile =
            serde_json::from_slice(&bytes).map_err(|e| TokensError::Invalid(name.clone(), e.to_string()))?;
        for t in &file.tokens {
            if t.token.is_some() == t.token_sha256.is_some() {
                return Err(TokensError::Invalid(
                    name,
                    format!("entry for {} needs exactly one of token, token_sha256", t.subject),
                ));
            }
            for (what, v) in [("subject", &t.subject), ("tenant", &t.tenant), ("domain", &t.domain)] {
                if v != "*" || what != "domain" {
                    fulcrum_core::names::check_identifier(what, v)
                        .map_err(|e| TokensError::Invalid(name.clone(), e.to_string()))?;
                }
            }
        }
        Ok(file)
    }

    /// Write a new tokens file (mode 0600, never overwriting) holding one admin token.
    ///
    /// # Errors
    /// I/O failures, including an existing file.
    pub fn bootstrap(path: &Path, tenant: &str) -> Result<String, TokensError> {
        let token = random_token();
        let file = TokensFile {
            tokens: vec![TokenEntry {
                token: Some(token.clone()),
                token_sha256: None,
                subject: "bootstrap-admin".into(),
                role: Role::Admin,
                tenant: tenant.into(),
                domain: "*".into(),
                env: None,
                purpose: None,
            }],
        };
        file.write_new(path)?;
        Ok(token)
    }

    /// # Errors
    /// I/O failures, including an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), TokensError> {
        let io = |e| TokensError::Io(path.display().to_string(), e);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("serialises")).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

/// Token hash → principal.
#[derive(Debug, Default)]
pub struct Identities {
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
}

impl Identities {
    /// # Errors
    /// Bad hashes or duplicated tokens.
    pub fn from_file(file: &TokensFile) -> Result<Self, TokensError> {
        let mut by_hash = HashMap::new();
        for t in &file.tokens {
            let hash: [u8; 32] = match (&t.token, &t.token_sha256) {
                (Some(tok), _) => Sha256::digest(tok.as_bytes()).into(),
                (None, Some(h)) => {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h, &mut out).map_err(|_| {
                        TokensError::Invalid("tokens".into(), format!("bad token_sha256 for {}", t.subject))
                    })?;
                    out
                }
                (None, None) => unreachable!("checked on load"),
            };
            let p = Principal {
                subject: t.subject.clone(),
                role: t.role,
                tenant: t.tenant.clone(),
                domain: t.domain.clone(),
                env: t.env,
                purpose: t.purpose.clone(),
            };
            if by_hash.insert(hash, Arc::new(p)).is_some() {
                return Err(TokensError::Invalid("tokens".into(), format!("token for {} is listed twice", t.subject)));
            }
        }
        Ok(Self { by_hash })
    }

    pub fn lookup(&self, token: &str) -> Option<Arc<Principal>> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&h).cloned()
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authn {
    /// A bearer token from the tokens file.
    pub local_token: bool,
    /// The issuer of a verified JWT.
    pub issuer: Option<String>,
    /// The identity (SAN URI or DNS name) of a verified client certificate.
    pub certificate: Option<String>,
}

impl Authn {
    pub fn label(&self) -> String {
        let token = if self.issuer.is_some() {
            Some("oidc")
        } else if self.local_token {
            Some("token")
        } else {
            None
        };
        match (&self.certificate, token) {
            (Some(_), Some(t)) => format!("certificate+{t}"),
            (Some(_), None) => "certificate".into(),
            (None, Some(t)) => t.into(),
            (None, None) => "none".into(),
        }
    }
}

/// The authenticated caller and how it authenticated. Extracting it fails with 401
/// problem+json.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>, pub Authn);

impl Caller {
    /// The access decision for an action on the caller's own tenant, taken by the policy in
    /// force and logged. 403 naming the policy's reasons; 404 for other tenants' resources.
    ///
    /// # Errors
    /// When the policy does not allow it.
    pub async fn require(&self, state: &AppState, action: Action) -> Result<(), ApiError> {
        self.require_on(state, action, Resource::tenant(&self.0.tenant)).await
    }

    /// As [`Caller::require`] for a named resource.
    ///
    /// # Errors
    /// When the policy does not allow it.
    pub async fn require_on(&self, state: &AppState, action: Action, res: Resource<'_>) -> Result<(), ApiError> {
        let policy = state.policies.current();
        let out = state.access.check(&policy, state.clock.now(), &self.0, action, res).await;
        if out.allow {
            return Ok(());
        }
        if out.deny.iter().any(|r| r == "other_tenant" || r == "other_domain") {
            return Err(ApiError::not_found(res.model.map_or("resource", |_| "model")));
        }
        let errors = out.deny.iter().map(|r| CheckFailure { check: "policy".into(), detail: r.clone() }).collect();
        Err(ApiError::forbidden(format!(
            "the policy does not let role {} {}: {}",
            self.0.role,
            action.as_str(),
            out.deny.join(", ")
        ))
        .with_errors(errors))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(ApiError::unauthorized)?;
        let token = fulcrum_oidc::verify::bearer(header.to_str().ok()).map_err(|_| ApiError::unauthorized())?;
        // A JWT goes to the trusted issuers; anything else is a local token.
        if !state.oidc.is_empty() && fulcrum_oidc::verify::looks_like_jwt(token) {
            let now = u64::try_from(state.clock.now().unix_timestamp()).unwrap_or(0);
            return match state.oidc.verify_principal(token, now).await {
                Ok((issuer, p)) => Ok(Caller(Arc::new(p), Authn { issuer: Some(issuer), ..Authn::default() })),
                Err(e) => {
                    tracing::info!(code = e.code(), "bearer token refused");
                    state.metrics.token_refused(e.code());
                    Err(ApiError::bad_token(&e))
                }
            };
        }
        let p = state.identities.lookup(token).ok_or_else(ApiError::unauthorized)?;
        Ok(Caller(p, Authn { local_token: true, ..Authn::default() }))
    }
}
