//! Callers' bearer tokens at the gateway: a JWT signed by the company IdP (its JWKS given to the
//! gateway), validated before anything else, whose `purpose` claim is what the model card's
//! allowed purposes are checked against.
//!
//! The check itself is the registry's ([`fulcrum_oidc::verify`]): the algorithm comes from the
//! key, asymmetric algorithms only, `iss`/`aud`/`exp`/`iat` required, `nbf` honoured, bounded
//! leeway, a maximum lifetime, `typ` `JWT` or `at+jwt`. The keys are either a JWKS file given to
//! the gateway, or the IdP's own, found by discovery and refreshed on an unknown `kid` (an IdP
//! rotating its key is followed without a restart).

pub use fulcrum_oidc::TokenError;
use fulcrum_oidc::verify::{self, KeySet, Rules};
use fulcrum_oidc::{IssuerConfig, Issuers};

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    /// The declared purposes (the `purpose` claim: a string or a list of strings).
    pub purposes: Vec<String>,
}

/// How callers' tokens are checked.
#[derive(Debug)]
pub struct CallerAuth {
    keys: Keys,
    /// Issuer, audience, algorithms, maximum lifetime and leeway (with a JWKS file).
    pub rules: Rules,
    /// The claim naming the caller's purpose.
    pub purpose_claim: String,
}

#[derive(Debug)]
enum Keys {
    /// A JWKS file.
    File(KeySet),
    /// The IdP's published keys (discovery, cached, refreshed on an unknown kid).
    Discovered(Issuers),
}

impl CallerAuth {
    /// From the IdP's JWKS (JSON). Every key must name an accepted asymmetric `alg`.
    ///
    /// # Errors
    /// A JWKS that does not parse, a key without an accepted algorithm, or no key at all.
    pub fn from_jwks(jwks: &[u8], issuer: &str, audience: &str) -> Result<Self, String> {
        let keys = KeySet::from_jwks(jwks)?;
        if let Some(kid) = keys.skipped.first() {
            return Err(format!("JWKS key {kid:?}: no accepted asymmetric alg"));
        }
        if keys.is_empty() {
            return Err("the JWKS holds no key".into());
        }
        Ok(Self { keys: Keys::File(keys), rules: Rules::new(issuer, audience), purpose_claim: "purpose".into() })
    }

    /// From the IdP itself: its discovery document names its keys, fetched now and again when a
    /// token names a `kid` not seen yet (rate-limited). An IdP unreachable now is not fatal:
    /// tokens are refused (`token_issuer_unavailable`) until its keys can be fetched.
    ///
    /// # Errors
    /// A configuration that is not acceptable (e.g. a non-https issuer off loopback).
    pub async fn discover(config: IssuerConfig) -> Result<Self, String> {
        let rules = config.rules()?;
        let issuers = Issuers::new(vec![config])?;
        for (issuer, e) in issuers.prefetch().await {
            eprintln!("fulcrum-agent: cannot fetch the keys of {issuer} yet: {e}");
        }
        Ok(Self { keys: Keys::Discovered(issuers), rules, purpose_claim: "purpose".into() })
    }

    /// Check an `Authorization` header value now.
    ///
    /// # Errors
    /// Why the token is refused.
    pub async fn check(&self, authorization: Option<&str>) -> Result<Caller, TokenError> {
        let token = verify::bearer(authorization)?;
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        let t = match &self.keys {
            Keys::File(keys) => verify::check(token, keys, &self.rules, now)?,
            Keys::Discovered(issuers) => issuers.verify(token, now).await?.1,
        };
        let purposes = match t.claims.get(&self.purpose_claim) {
            None | Some(serde_json::Value::Null) => vec![],
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| TokenError::Claims(format!("{} must hold strings", self.purpose_claim)))?,
            Some(_) => return Err(TokenError::Claims(format!("{} must be a string or a list", self.purpose_claim))),
        };
        Ok(Caller { subject: t.subject, purposes })
    }
}
