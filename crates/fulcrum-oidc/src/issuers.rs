//! Trusted OIDC issuers: their configuration, discovery, and a JWKS cache per issuer.
//!
//! Keys are fetched through the issuer's discovery document (or a configured `jwks_uri`) on first
//! use, again when they are older than `jwks_max_age_s`, and when a token names a `kid` the cache
//! does not hold — an IdP rotating its key is followed without a restart. Refreshes are
//! single-flight and rate-limited (`jwks_min_refresh_s`), so a flood of tokens with made-up kids
//! costs the IdP at most one request per interval. A failed refresh keeps the keys in hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fulcrum_core::identity::{Principal, Role};
use fulcrum_core::lifecycle::Env;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::verify::{self, KeySet, MAX_LEEWAY_S, Rules, TokenError, Verified};

/// Names of the claims that make a principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: String,
    pub tenant: String,
    pub domain: String,
    pub env: String,
    pub role: String,
    pub purpose: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            tenant: "tenant_id".into(),
            domain: "domain".into(),
            env: "env".into(),
            role: "role".into(),
            purpose: "purpose".into(),
        }
    }
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exactly the tokens' `iss`. `https://`, or `http://` on a loopback address only.
    pub issuer: String,
    /// The `aud` tokens must carry.
    pub audience: String,
    /// Where the keys are; `None` = the discovery document's `jwks_uri`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted algorithms (asymmetric only).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Longest accepted `exp - iat`, seconds: short-lived tokens are enforced, not assumed.
    #[serde(default = "default_max_lifetime")]
    pub max_token_lifetime_s: u64,
    /// Clock leeway, seconds (at most 120).
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    #[serde(default)]
    pub claims: ClaimNames,
    /// Tenants this issuer may speak for; `None` = any.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Fewest seconds between two key fetches caused by unknown kids.
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh_s: u64,
    /// Keys older than this are fetched again before use.
    #[serde(default = "default_max_age")]
    pub jwks_max_age_s: u64,
}

fn default_algorithms() -> Vec<String> {
    ["ES256", "ES384", "EdDSA", "RS256", "PS256"].into_iter().map(str::to_owned).collect()
}
fn default_max_lifetime() -> u64 {
    3600
}
fn default_leeway() -> u64 {
    30
}
fn default_min_refresh() -> u64 {
    30
}
fn default_max_age() -> u64 {
    3600
}

impl IssuerConfig {
    /// An issuer with the defaults.
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            jwks_uri: None,
            algorithms: default_algorithms(),
            max_token_lifetime_s: default_max_lifetime(),
            leeway_s: default_leeway(),
            claims: ClaimNames::default(),
            tenants: None,
            jwks_min_refresh_s: default_min_refresh(),
            jwks_max_age_s: default_max_age(),
        }
    }

    /// # Errors
    /// The first setting that is not acceptable.
    pub fn rules(&self) -> Result<Rules, String> {
        let who = &self.issuer;
        check_url(&self.issuer).map_err(|e| format!("issuer {who}: {e}"))?;
        if let Some(u) = &self.jwks_uri {
            check_url(u).map_err(|e| format!("issuer {who}: jwks_uri: {e}"))?;
        }
        if self.audience.is_empty() {
            return Err(format!("issuer {who}: audience is empty"));
        }
        let algorithms = self
            .algorithms
            .iter()
            .map(|a| verify::asymmetric_algorithm(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("issuer {who}: {e}"))?;
        if algorithms.is_empty() {
            return Err(format!("issuer {who}: no algorithm accepted"));
        }
        if !(60..=86_400).contains(&self.max_token_lifetime_s) {
            return Err(format!("issuer {who}: max_token_lifetime_s must be 60..=86400"));
        }
        if self.leeway_s > MAX_LEEWAY_S {
            return Err(format!("issuer {who}: leeway_s must be at most {MAX_LEEWAY_S}"));
        }
        if self.jwks_min_refresh_s == 0 || self.jwks_max_age_s < self.jwks_min_refresh_s {
            return Err(format!("issuer {who}: need 1 <= jwks_min_refresh_s <= jwks_max_age_s"));
        }
        let c = &self.claims;
        if [&c.subject, &c.tenant, &c.domain, &c.env, &c.role, &c.purpose].iter().any(|n| n.is_empty()) {
            return Err(format!("issuer {who}: a claim name is empty"));
        }
        Ok(Rules {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            algorithms,
            max_lifetime_s: self.max_token_lifetime_s,
            leeway_s: self.leeway_s,
        })
    }

    /// The principal a verified token speaks for.
    ///
    /// # Errors
    /// [`TokenError::Claims`] naming the first missing or unacceptable claim.
    pub fn principal(&self, t: &Verified) -> Result<Principal, TokenError> {
        let names = &self.claims;
        let text = |name: &str, required: bool| -> Result<Option<String>, TokenError> {
            match t.claims.get(name) {
                None | Some(serde_json::Value::Null) if !required => Ok(None),
                None | Some(serde_json::Value::Null) => Err(TokenError::Claims(format!("{name} is required"))),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                // A list of exactly one string is the same as the string.
                Some(serde_json::Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                    Ok(a[0].as_str().map(str::to_owned))
                }
                Some(_) => Err(TokenError::Claims(format!("{name} must be one string"))),
            }
        };
        let ident = |what: &'static str, name: &str, v: String| -> Result<String, TokenError> {
            fulcrum_core::names::check_identifier(what, &v)
                .map_err(|_| TokenError::Claims(format!("{name} is not a valid {what}")))?;
            Ok(v)
        };
        let subject = ident("subject", &names.subject, text(&names.subject, true)?.unwrap_or_default())?;
        let tenant = ident("tenant", &names.tenant, text(&names.tenant, true)?.unwrap_or_default())?;
        if let Some(allowed) = &self.tenants
            && !allowed.contains(&tenant)
        {
            return Err(TokenError::Claims(format!("this issuer may not speak for tenant {tenant}")));
        }
        let domain = text(&names.domain, true)?.unwrap_or_default();
        let domain = if domain == "*" { domain } else { ident("domain", &names.domain, domain)? };
        let role: Role = text(&names.role, true)?
            .unwrap_or_default()
            .parse()
            .map_err(|()| TokenError::Claims(format!("{} names no Fulcrum role", names.role)))?;
        let env = match text(&names.env, false)? {
            None => None,
            Some(e) => {
                Some(e.parse::<Env>().map_err(|()| TokenError::Claims(format!("{} names no environment", names.env)))?)
            }
        };
        let purpose = text(&names.purpose, false)?;
        if let Some(p) = &purpose {
            fulcrum_core::names::check_identifier("purpose", p)
                .map_err(|_| TokenError::Claims(format!("{} is not a valid purpose", names.purpose)))?;
        }
        Ok(Principal { subject, role, tenant, domain, env, purpose })
    }
}

/// The client every request to an IdP goes through: short timeouts, no redirects followed.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

pub(crate) fn check_url(u: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("{u} is not a URL: {e}"))?;
    let loopback = url.host_str().is_some_and(|h| {
        h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{u} must be https (http only on loopback)")),
    }
}

#[derive(Debug, Default)]
struct Cache {
    keys: Arc<KeySet>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

#[derive(Debug)]
struct Issuer {
    /// `config.issuer`, shared with every principal's authentication record.
    name: Arc<str>,
    config: IssuerConfig,
    rules: Rules,
    cache: RwLock<Cache>,
    refresh: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

/// The trusted issuers and their key caches.
#[derive(Debug)]
pub struct Issuers {
    issuers: Vec<Issuer>,
    http: reqwest::Client,
    /// Tokens verified already, by SHA-256: a token is checked once, then only its times.
    verified: RwLock<HashMap<[u8; 32], Arc<Accepted>>>,
}

/// A token that verified, with what is re-checked on every use.
#[derive(Debug)]
struct Accepted {
    issuer: usize,
    principal: Arc<Principal>,
    issued_at: u64,
    expires_at: u64,
    not_before: Option<u64>,
}

/// Most verified tokens remembered; past it the ones expired are dropped, then all.
const VERIFIED_CAP: usize = 16_384;

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Largest discovery document or JWKS read.
const MAX_DOC_BYTES: usize = 1 << 20;

impl Issuers {
    /// # Errors
    /// A configuration that is not acceptable (see [`IssuerConfig::rules`]) or an issuer listed
    /// twice.
    pub fn new(configs: Vec<IssuerConfig>) -> Result<Self, String> {
        let mut issuers = Vec::with_capacity(configs.len());
        for config in configs {
            let rules = config.rules()?;
            if issuers.iter().any(|i: &Issuer| i.config.issuer == config.issuer) {
                return Err(format!("issuer {} is listed twice", config.issuer));
            }
            issuers.push(Issuer {
                name: config.issuer.as_str().into(),
                config,
                rules,
                cache: RwLock::default(),
                refresh: tokio::sync::Mutex::new(()),
                fetches: AtomicU64::new(0),
            });
        }
        Ok(Self { issuers, http: http_client()?, verified: RwLock::default() })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// How many times the keys of `issuer` were fetched (successfully or not).
    pub fn fetches(&self, issuer: &str) -> u64 {
        self.issuers.iter().find(|i| i.config.issuer == issuer).map_or(0, |i| i.fetches.load(Ordering::Relaxed))
    }

    /// (issuer, key fetches so far) for each issuer, for `/metrics`.
    pub fn fetch_counts(&self) -> Vec<(String, u64)> {
        self.issuers.iter().map(|i| (i.config.issuer.clone(), i.fetches.load(Ordering::Relaxed))).collect()
    }

    /// Fetch every issuer's keys now (at start-up). Failures are returned, not fatal: tokens of
    /// an issuer without keys are refused until a later fetch works.
    pub async fn prefetch(&self) -> Vec<(String, String)> {
        let mut failed = vec![];
        for i in &self.issuers {
            if let Err(e) = self.refresh(i, None, true).await {
                failed.push((i.config.issuer.clone(), e));
            }
        }
        failed
    }

    /// Verify `token` at `now` (Unix seconds) and map it to a principal; with the issuer.
    ///
    /// # Errors
    /// Why the token is refused.
    ///
    /// A token that verified before is not verified again: its signature and claims cannot have
    /// changed, so only its times are checked against `now`. The memory is dropped whenever an
    /// issuer's keys change (a key withdrawn by the IdP stops its tokens at the next fetch).
    pub async fn verify_principal(&self, token: &str, now: u64) -> Result<(Arc<str>, Arc<Principal>), TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let hit = self.verified.read().expect("verified lock").get(&key).cloned();
        if let Some(a) = hit {
            let issuer = &self.issuers[a.issuer];
            let leeway = issuer.rules.leeway_s.min(MAX_LEEWAY_S);
            if a.expires_at.saturating_add(leeway) <= now {
                return Err(TokenError::Expired);
            }
            if a.issued_at > now.saturating_add(leeway) || a.not_before.is_some_and(|n| n > now.saturating_add(leeway))
            {
                return Err(TokenError::NotYetValid);
            }
            return Ok((issuer.name.clone(), a.principal.clone()));
        }
        let (config, verified) = self.verify(token, now).await?;
        let principal = Arc::new(config.principal(&verified)?);
        let index = self.issuers.iter().position(|i| i.config.issuer == config.issuer).expect("an issuer of ours");
        let not_before = verified.claims.get("nbf").and_then(serde_json::Value::as_f64).map(|n| n as u64);
        let accepted = Arc::new(Accepted {
            issuer: index,
            principal: principal.clone(),
            issued_at: verified.issued_at,
            expires_at: verified.expires_at,
            not_before,
        });
        let mut memo = self.verified.write().expect("verified lock");
        if memo.len() >= VERIFIED_CAP {
            let leeway = MAX_LEEWAY_S;
            memo.retain(|_, a| a.expires_at.saturating_add(leeway) > now);
            if memo.len() >= VERIFIED_CAP {
                memo.clear();
            }
        }
        memo.insert(key, accepted);
        Ok((self.issuers[index].name.clone(), principal))
    }

    /// Verify `token` at `now` (Unix seconds).
    ///
    /// # Errors
    /// Why the token is refused.
    pub async fn verify(&self, token: &str, now: u64) -> Result<(&IssuerConfig, Verified), TokenError> {
        let (iss, kid) = verify::unverified_issuer_and_kid(token)?;
        let issuer = self.issuers.iter().find(|i| i.config.issuer == iss).ok_or(TokenError::Issuer)?;
        let (keys, stale) = {
            let c = issuer.cache.read().expect("cache lock");
            let max_age = Duration::from_secs(issuer.config.jwks_max_age_s);
            (c.keys.clone(), c.fetched.is_none_or(|f| f.elapsed() > max_age))
        };
        let unknown = kid.as_deref().is_some_and(|k| !keys.has_kid(k));
        let keys = if stale || unknown {
            // Stale keys are fetched again; an unknown kid only when the last try is old enough.
            match self.refresh(issuer, kid.as_deref(), false).await {
                Ok(()) => issuer.cache.read().expect("cache lock").keys.clone(),
                Err(e) => {
                    tracing::warn!(issuer = %issuer.config.issuer, error = %e, "fetching the issuer's keys failed; using the keys in hand");
                    keys
                }
            }
        } else {
            keys
        };
        if keys.is_empty() {
            return Err(TokenError::IssuerUnavailable);
        }
        let verified = verify::check(token, &keys, &issuer.rules, now)?;
        Ok((&issuer.config, verified))
    }

    /// Fetch the issuer's keys, unless the last try (by any task) is younger than the minimum
    /// interval or already brought the `kid` asked for. `now` skips the interval (start-up).
    async fn refresh(&self, issuer: &Issuer, kid: Option<&str>, now: bool) -> Result<(), String> {
        let _one = issuer.refresh.lock().await;
        {
            let c = issuer.cache.read().expect("cache lock");
            let min = Duration::from_secs(issuer.config.jwks_min_refresh_s);
            let recent = c.attempted.is_some_and(|a| a.elapsed() < min);
            let answered = kid.is_some_and(|k| c.keys.has_kid(k));
            if answered || (recent && !now) {
                return Ok(());
            }
        }
        issuer.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch(&issuer.config).await;
        let mut c = issuer.cache.write().expect("cache lock");
        let now = Instant::now();
        c.attempted = Some(now);
        let keys = result?;
        tracing::info!(issuer = %issuer.config.issuer, keys = keys.len(), skipped = keys.skipped.len(), "issuer keys fetched");
        if keys.kids() != c.keys.kids() {
            // Keys were withdrawn or added: tokens are verified afresh against what is published.
            self.verified.write().expect("verified lock").clear();
        }
        c.keys = Arc::new(keys);
        c.fetched = Some(now);
        Ok(())
    }

    async fn fetch(&self, config: &IssuerConfig) -> Result<KeySet, String> {
        let jwks_uri = match &config.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/'));
                let doc: Discovery =
                    serde_json::from_slice(&self.get(&url).await?).map_err(|e| format!("discovery document: {e}"))?;
                if doc.issuer != config.issuer {
                    return Err(format!("discovery document names issuer {}, not {}", doc.issuer, config.issuer));
                }
                check_url(&doc.jwks_uri)?;
                doc.jwks_uri
            }
        };
        KeySet::from_jwks(&self.get(&jwks_uri).await?)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self.http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_DOC_BYTES as u64) {
            return Err(format!("GET {url}: larger than {MAX_DOC_BYTES} bytes"));
        }
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOC_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOC_BYTES} bytes"));
        }
        Ok(body.to_vec())
    }
}

/// The registry's OIDC settings file: `{"issuers": [IssuerConfig, …]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    pub issuers: Vec<IssuerConfig>,
    /// The web console's sign-in client at one of these issuers (authorization code + PKCE).
    #[serde(default)]
    pub console: Option<crate::login::ConsoleLogin>,
}

impl OidcFile {
    /// Read and check the file (every issuer's settings, no duplicates).
    ///
    /// # Errors
    /// Unreadable, invalid JSON, or an unacceptable setting, with the file named.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let name = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
        let file: OidcFile = serde_json::from_slice(&bytes).map_err(|e| format!("{name}: {e}"))?;
        Issuers::new(file.issuers.clone()).map_err(|e| format!("{name}: {e}"))?;
        if let Some(c) = &file.console {
            if !file.issuers.iter().any(|i| i.issuer == c.issuer) {
                return Err(format!("{name}: console.issuer {} is not one of the trusted issuers", c.issuer));
            }
            crate::login::LoginClient::new(c.clone()).map_err(|e| format!("{name}: console: {e}"))?;
        }
        Ok(file)
    }
}
