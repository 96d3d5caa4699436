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

/// A JSON identities file, named for errors.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(String, T), TokensError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| TokensError::Io(name.clone(), e))?;
    let file = serde_json::from_slice(&bytes).map_err(|e| TokensError::Invalid(name.clone(), e.to_string()))?;
    Ok((name, file))
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
        let (name, file): (_, TokensFile) = read_json(path)?;
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

/// Workload identities by client certificate: which certificates (by SAN) speak for which
/// principal, and which roles must present both a certificate and a token.
///
/// The file is JSON: `{"identities": [{"match": "uri:spiffe://acme/serving/prod/*", "role":
/// "serving", "tenant": "acme", "domain": "*", "env": "prod"}], "certificate_and_token_for":
/// ["admin", "key_admin"]}`. A pattern is `uri:` or `dns:` and a SAN: exact, or a URI prefix
/// ending in `*`, or a DNS suffix starting with `*.`. The first match wins; the principal's
/// subject is the certificate's SAN.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentities {
    pub identities: Vec<CertIdentity>,
    /// Roles that must present a verified, mapped client certificate and a token.
    #[serde(default)]
    pub certificate_and_token_for: Vec<Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertIdentity {
    #[serde(rename = "match")]
    pub pattern: String,
    pub role: Role,
    pub tenant: String,
    #[serde(default = "any_domain")]
    pub domain: String,
    #[serde(default)]
    pub env: Option<Env>,
    #[serde(default)]
    pub purpose: Option<String>,
}

/// A subject alternative name of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Uri(String),
    Dns(String),
}

impl CertIdentity {
    fn matches(&self, san: &San) -> bool {
        let (kind, value) = match san {
            San::Uri(v) => ("uri:", v.as_str()),
            San::Dns(v) => ("dns:", v.as_str()),
        };
        let Some(p) = self.pattern.strip_prefix(kind) else { return false };
        if kind == "uri:"
            && let Some(prefix) = p.strip_suffix('*')
        {
            return value.starts_with(prefix) && value.len() > prefix.len();
        }
        if kind == "dns:"
            && let Some(suffix) = p.strip_prefix("*.")
        {
            return value.len() > suffix.len() + 1
                && value.to_ascii_lowercase().ends_with(&format!(".{}", suffix.to_ascii_lowercase()));
        }
        if kind == "dns:" { value.eq_ignore_ascii_case(p) } else { value == p }
    }
}

impl ClientIdentities {
    /// # Errors
    /// Unreadable or invalid files (bad JSON, unknown role, bad patterns or identifiers).
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let (name, file): (_, ClientIdentities) = read_json(path)?;
        for i in &file.identities {
            let ok = i.pattern.strip_prefix("uri:").or_else(|| i.pattern.strip_prefix("dns:")).is_some_and(|p| {
                let core = p.trim_end_matches('*').trim_start_matches("*.");
                !core.is_empty() && !core.contains('*')
            });
            if !ok {
                return Err(TokensError::Invalid(name, format!("bad match pattern {:?}", i.pattern)));
            }
            fulcrum_core::names::check_identifier("tenant", &i.tenant)
                .map_err(|e| TokensError::Invalid(name.clone(), e.to_string()))?;
            if i.domain != "*" {
                fulcrum_core::names::check_identifier("domain", &i.domain)
                    .map_err(|e| TokensError::Invalid(name.clone(), e.to_string()))?;
            }
        }
        Ok(file)
    }

    /// The SANs of a DER certificate (URIs first, then DNS names).
    pub fn sans(der: &[u8]) -> Vec<San> {
        use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
        let Ok((_, cert)) = X509Certificate::from_der(der) else { return vec![] };
        let Ok(Some(ext)) = cert.subject_alternative_name() else { return vec![] };
        let mut uris = vec![];
        let mut dns = vec![];
        for n in &ext.value.general_names {
            match n {
                GeneralName::URI(u) => uris.push(San::Uri((*u).to_owned())),
                GeneralName::DNSName(d) => dns.push(San::Dns((*d).to_owned())),
                _ => {}
            }
        }
        uris.extend(dns);
        uris
    }

    /// The principal a verified client certificate speaks for, if any identity matches.
    pub fn principal(&self, der: &[u8]) -> Option<(String, Principal)> {
        for san in Self::sans(der) {
            let Some(id) = self.identities.iter().find(|i| i.matches(&san)) else { continue };
            let (San::Uri(subject) | San::Dns(subject)) = san;
            if fulcrum_core::names::check_identifier("subject", &subject).is_err() {
                continue;
            }
            let p = Principal {
                subject: subject.clone(),
                role: id.role,
                tenant: id.tenant.clone(),
                domain: id.domain.clone(),
                env: id.env,
                purpose: id.purpose.clone(),
            };
            return Some((subject, p));
        }
        None
    }
}

/// Certificates seen → whom they speak for, so a connection's certificate is parsed once rather
/// than on every request (bounded; forgotten wholesale when full).
#[derive(Debug, Default)]
pub struct CertMemo(std::sync::RwLock<HashMap<Vec<u8>, Option<Workload>>>);

/// A certificate's identity (its SAN) and the principal it speaks for.
pub type Workload = (Arc<str>, Arc<Principal>);

/// Most certificates remembered.
const CERT_MEMO_CAP: usize = 4096;

impl CertMemo {
    /// The principal of a verified client certificate under `ids`.
    pub fn principal(&self, ids: &ClientIdentities, der: &[u8]) -> Option<Workload> {
        if let Some(hit) = self.0.read().expect("cert memo lock").get(der) {
            return hit.clone();
        }
        let found = ids.principal(der).map(|(san, p)| (Arc::<str>::from(san), Arc::new(p)));
        let mut memo = self.0.write().expect("cert memo lock");
        if memo.len() >= CERT_MEMO_CAP {
            memo.clear();
        }
        memo.insert(der.to_vec(), found.clone());
        found
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authn {
    /// A bearer token from the tokens file.
    pub local_token: bool,
    /// The issuer of a verified JWT.
    pub issuer: Option<Arc<str>>,
    /// The identity (SAN URI or DNS name) of a verified client certificate.
    pub certificate: Option<Arc<str>>,
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

/// The principal of a bearer token: a JWT goes to the trusted issuers, anything else is a local
/// token.
async fn token_principal(state: &AppState, token: &str) -> Result<(Arc<Principal>, Authn), ApiError> {
    if !state.oidc.is_empty() && fulcrum_oidc::verify::looks_like_jwt(token) {
        let now = u64::try_from(state.clock.now().unix_timestamp()).unwrap_or(0);
        return match state.oidc.verify_principal(token, now).await {
            Ok((issuer, p)) => Ok((p, Authn { issuer: Some(issuer), ..Authn::default() })),
            Err(e) => {
                tracing::info!(code = e.code(), "bearer token refused");
                state.metrics.token_refused(e.code());
                Err(ApiError::bad_token(&e))
            }
        };
    }
    let p = state.identities.lookup(token).ok_or_else(ApiError::unauthorized)?;
    Ok((p, Authn { local_token: true, ..Authn::default() }))
}

fn refused(state: &AppState, code: &'static str, detail: &str) -> ApiError {
    tracing::info!(code, "caller refused");
    state.metrics.token_refused(code);
    let mut e = ApiError::new(axum::http::StatusCode::UNAUTHORIZED, code, detail);
    e.extra_headers.push((axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer")));
    e
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // A client certificate reaching here was verified at the handshake (chain to a client
        // CA, validity, clientAuth usage, CRLs); what remains is whom it speaks for.
        let cert = parts
            .extensions
            .get::<Arc<axum_server::tls::TlsInfo>>()
            .and_then(|i| i.peer_certificates.first())
            .map(|der| state.cert_principals.principal(&state.config.client_identities, der));
        let both = &state.config.client_identities.certificate_and_token_for;
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        let Some(header) = header else {
            return match cert {
                Some(Some((_, p))) if both.contains(&p.role) => {
                    Err(refused(state, "token_required", &format!("role {} must also present a token", p.role)))
                }
                Some(Some((san, p))) => Ok(Caller(p, Authn { certificate: Some(san), ..Authn::default() })),
                Some(None) => {
                    Err(refused(state, "certificate_unmapped", "the client certificate names no known workload"))
                }
                None => Err(ApiError::unauthorized()),
            };
        };
        let token = fulcrum_oidc::verify::bearer(header.to_str().ok()).map_err(|_| ApiError::unauthorized())?;
        let (p, mut authn) = token_principal(state, token).await?;
        match cert {
            // A certificate beside a token must speak for the same tenant.
            Some(Some((_, c))) if c.tenant != p.tenant => {
                return Err(refused(state, "certificate_mismatch", "the client certificate belongs to another tenant"));
            }
            Some(Some((san, _))) => authn.certificate = Some(san),
            _ => {}
        }
        if both.contains(&p.role) && authn.certificate.is_none() {
            return Err(refused(
                state,
                "certificate_required",
                &format!("role {} must present a client certificate of its tenant as well", p.role),
            ));
        }
        Ok(Caller(p, authn))
    }
}
