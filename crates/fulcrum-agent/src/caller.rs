//! Callers' bearer tokens at the gateway: a JWT signed by the company IdP (its JWKS given to the
//! gateway), validated before anything else, whose `purpose` claim is what the model card's
//! allowed purposes are checked against.
//!
//! Closed by default: the algorithm comes from the key (never from the token), only asymmetric
//! algorithms are accepted, `iss`, `aud`, `exp`, `iat` are required, `nbf` is honoured, the
//! leeway is bounded, and a token living longer than the configured maximum is refused even if
//! its signature is good. `typ`, when present, must be `JWT` or `at+jwt`.

use std::collections::HashSet;

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

/// Why a caller's token was refused. [`TokenError::code`] is the problem's `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token names a key the gateway does not know")]
    UnknownKey,
    #[error("the token's type is not JWT or at+jwt")]
    Type,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token lives longer than the {0} s this gateway accepts")]
    Lifetime(u64),
    #[error("the token's claims are incomplete: {0}")]
    Claims(String),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed => "token_malformed",
            TokenError::Algorithm => "token_algorithm",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::Type => "token_type",
            TokenError::Signature => "token_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::Issuer => "token_issuer",
            TokenError::Audience => "token_audience",
            TokenError::Lifetime(_) => "token_lifetime",
            TokenError::Claims(_) => "token_claims",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    /// The declared purposes (the `purpose` claim: a string or a list of strings).
    pub purposes: Vec<String>,
}

#[derive(Debug)]
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// How callers' tokens are checked.
#[derive(Debug)]
pub struct CallerAuth {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
    /// Longest accepted `exp - iat`, seconds.
    pub max_lifetime: u64,
    /// Clock leeway, seconds (at most 120).
    pub leeway: u64,
    /// The claim naming the caller's purpose.
    pub purpose_claim: String,
}

fn accepted(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    iat: Option<u64>,
    exp: Option<u64>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl CallerAuth {
    /// From the IdP's JWKS (JSON). Every key must name an accepted asymmetric `alg`.
    ///
    /// # Errors
    /// A JWKS that does not parse, a key without an accepted algorithm, or no key at all.
    pub fn from_jwks(jwks: &[u8], issuer: &str, audience: &str) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_slice(jwks).map_err(|e| format!("JWKS: {e}"))?;
        let mut keys = vec![];
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone();
            let alg = jwk
                .common
                .key_algorithm
                .and_then(accepted)
                .ok_or_else(|| format!("JWKS key {kid:?}: no accepted asymmetric alg"))?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key {kid:?}: {e}"))?;
            keys.push(Key { kid, alg, key });
        }
        if keys.is_empty() {
            return Err("the JWKS holds no key".into());
        }
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            max_lifetime: 3600,
            leeway: 30,
            purpose_claim: "purpose".into(),
        })
    }

    /// Check an `Authorization` header value.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn check(&self, authorization: Option<&str>) -> Result<Caller, TokenError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing)?;
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("jwt")
            && !typ.eq_ignore_ascii_case("at+jwt")
        {
            return Err(TokenError::Type);
        }
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())).collect(),
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => vec![],
        };
        if candidates.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        // The key decides the algorithm; a token asking for another one is refused.
        let key = candidates.into_iter().find(|k| k.alg == header.alg).ok_or(TokenError::Algorithm)?;
        let mut v = Validation::new(key.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.leeway = self.leeway.min(120);
        v.validate_nbf = true;
        v.required_spec_claims = ["exp", "iat", "iss", "aud"].into_iter().map(str::to_owned).collect::<HashSet<_>>();
        let data = decode::<Claims>(token, &key.key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidIssuer => TokenError::Issuer,
                K::InvalidAudience => TokenError::Audience,
                K::InvalidSignature => TokenError::Signature,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::Algorithm,
                K::MissingRequiredClaim(c) => TokenError::Claims(format!("{c} is required")),
                _ => TokenError::Malformed,
            }
        })?;
        let c = data.claims;
        let (iat, exp) = (c.iat.unwrap_or(0), c.exp.unwrap_or(0));
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        if iat > now + self.leeway.min(120) {
            return Err(TokenError::NotYetValid);
        }
        if exp.saturating_sub(iat) > self.max_lifetime {
            return Err(TokenError::Lifetime(self.max_lifetime));
        }
        let purposes = match c.rest.get(&self.purpose_claim) {
            None | Some(serde_json::Value::Null) => vec![],
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| TokenError::Claims(format!("{} must hold strings", self.purpose_claim)))?,
            Some(_) => return Err(TokenError::Claims(format!("{} must be a string or a list", self.purpose_claim))),
        };
        Ok(Caller { subject: c.sub, purposes })
    }
}
