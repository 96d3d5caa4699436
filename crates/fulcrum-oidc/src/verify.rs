//! The check of one bearer JWT against a key set and an issuer's rules, at a given time. Pure: no
//! I/O, no clock of its own.
//!
//! Closed by default: the algorithm comes from the key (never from the token), only asymmetric
//! algorithms on the issuer's allow-list are accepted (so `none` and HS256-with-a-public-key never
//! verify), `iss`, `aud`, `exp` and `iat` are required, `nbf` is honoured, the leeway is bounded,
//! and a token living longer than the issuer's maximum is refused even when its signature is good.
//! `typ`, when present, must be `JWT` or `at+jwt` (RFC 9068).

use std::collections::HashSet;

use base64::Engine as _;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

/// The largest clock leeway any issuer may be given, seconds.
pub const MAX_LEEWAY_S: u64 = 120;

/// Why a token was refused. [`TokenError::code`] is the problem's machine-readable `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token names a key its issuer does not publish")]
    UnknownKey,
    #[error("the token's type is not JWT or at+jwt")]
    Type,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by an issuer that is not trusted")]
    Issuer,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token lives longer than the {0} s accepted")]
    Lifetime(u64),
    #[error("the token's claims are incomplete: {0}")]
    Claims(String),
    #[error("the token's issuer keys cannot be fetched now")]
    IssuerUnavailable,
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
            TokenError::IssuerUnavailable => "token_issuer_unavailable",
        }
    }
}

/// What an issuer's tokens must satisfy.
#[derive(Debug, Clone)]
pub struct Rules {
    pub issuer: String,
    pub audience: String,
    /// Accepted algorithms; a key whose `alg` is not here is ignored.
    pub algorithms: Vec<Algorithm>,
    /// Longest accepted `exp - iat`, seconds.
    pub max_lifetime_s: u64,
    /// Clock leeway, seconds (capped at [`MAX_LEEWAY_S`]).
    pub leeway_s: u64,
}

impl Rules {
    /// ES256/ES384/EdDSA/RS256/PS256, one hour at most, 30 s of leeway.
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            algorithms: vec![Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256],
            max_lifetime_s: 3600,
            leeway_s: 30,
        }
    }
}

/// Parse an algorithm name; only asymmetric ones exist here.
///
/// # Errors
/// `HS*`, `none` and unknown names.
pub fn asymmetric_algorithm(name: &str) -> Result<Algorithm, String> {
    Ok(match name {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        other => return Err(format!("algorithm {other} is not accepted (asymmetric ones only)")),
    })
}

fn from_key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
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

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// An issuer's verification keys (from its JWKS). Keys without an asymmetric `alg` are skipped:
/// the algorithm must come from the key.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Keys of the JWKS that were not usable (no `alg`, symmetric, encryption keys), by kid.
    pub skipped: Vec<String>,
}

impl KeySet {
    /// # Errors
    /// A JWKS that does not parse.
    pub fn from_jwks(jwks: &[u8]) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_slice(jwks).map_err(|e| format!("JWKS: {e}"))?;
        let mut out = KeySet::default();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone();
            let usable = !matches!(jwk.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption));
            match (usable, jwk.common.key_algorithm.and_then(from_key_algorithm), DecodingKey::from_jwk(jwk)) {
                (true, Some(alg), Ok(key)) => out.keys.push(Key { kid, alg, key }),
                _ => out.skipped.push(kid.unwrap_or_default()),
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        v.sort_unstable();
        v
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    pub issued_at: u64,
    pub expires_at: u64,
    /// Every claim, for mapping to a principal.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    iat: Option<serde_json::Number>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
}

fn seconds(n: Option<&serde_json::Number>, name: &str) -> Result<Option<u64>, TokenError> {
    let Some(n) = n else { return Ok(None) };
    let v = n
        .as_f64()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| TokenError::Claims(format!("{name} is not a time")))?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Some(v.floor() as u64))
}

/// The bearer token of an `Authorization` header value.
///
/// # Errors
/// [`TokenError::Missing`] when there is none.
pub fn bearer(authorization: Option<&str>) -> Result<&str, TokenError> {
    authorization
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Missing)
}

/// Whether a bearer token has the shape of a JWS compact serialisation (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_some() && parts.next().is_none()
}

/// The `iss` and `kid` a token claims, before anything is verified — only to pick the issuer and
/// key; the check itself re-reads both from the verified token.
///
/// # Errors
/// Tokens that do not decode.
pub fn unverified_issuer_and_kid(token: &str) -> Result<(String, Option<String>), TokenError> {
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    Ok((iss.iss.ok_or_else(|| TokenError::Claims("iss is required".into()))?, header.kid))
}

/// Check `token` against `keys` and `rules` at `now` (Unix seconds).
///
/// # Errors
/// Why the token is refused.
pub fn check(token: &str, keys: &KeySet, rules: &Rules, now: u64) -> Result<Verified, TokenError> {
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    if let Some(typ) = &header.typ
        && !typ.eq_ignore_ascii_case("jwt")
        && !typ.eq_ignore_ascii_case("at+jwt")
    {
        return Err(TokenError::Type);
    }
    if !rules.algorithms.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    let candidates: Vec<&Key> = match &header.kid {
        Some(kid) => keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())).collect(),
        None if keys.keys.len() == 1 => keys.keys.iter().collect(),
        None => vec![],
    };
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    // The key decides the algorithm; a token asking for another one is refused.
    let key = candidates
        .into_iter()
        .find(|k| k.alg == header.alg && rules.algorithms.contains(&k.alg))
        .ok_or(TokenError::Algorithm)?;
    let mut v = Validation::new(key.alg);
    v.set_issuer(&[&rules.issuer]);
    v.set_audience(&[&rules.audience]);
    // Times are checked below against the caller's clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims = ["iss", "aud"].into_iter().map(str::to_owned).collect::<HashSet<_>>();
    let data = decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidIssuer => TokenError::Issuer,
            K::InvalidAudience => TokenError::Audience,
            K::InvalidSignature => TokenError::Signature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::Algorithm,
            K::MissingRequiredClaim(c) => TokenError::Claims(format!("{c} is required")),
            _ => TokenError::Malformed,
        }
    })?;
    let claims = data.claims;
    let times: Claims = serde_json::from_value(serde_json::Value::Object(claims.clone()))
        .map_err(|_| TokenError::Claims("sub, iat, exp or nbf has the wrong type".into()))?;
    let leeway = rules.leeway_s.min(MAX_LEEWAY_S);
    let iat = seconds(times.iat.as_ref(), "iat")?.ok_or_else(|| TokenError::Claims("iat is required".into()))?;
    let exp = seconds(times.exp.as_ref(), "exp")?.ok_or_else(|| TokenError::Claims("exp is required".into()))?;
    let nbf = seconds(times.nbf.as_ref(), "nbf")?;
    if exp.saturating_add(leeway) <= now {
        return Err(TokenError::Expired);
    }
    if iat > now.saturating_add(leeway) || nbf.is_some_and(|n| n > now.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    if exp < iat || exp - iat > rules.max_lifetime_s {
        return Err(TokenError::Lifetime(rules.max_lifetime_s));
    }
    Ok(Verified {
        issuer: rules.issuer.clone(),
        subject: times.sub.unwrap_or_default(),
        issued_at: iat,
        expires_at: exp,
        claims,
    })
}

#[cfg(test)]
mod tests {
    //! Every refusal of [`check`], as a table: each row is a token an attacker or a careless
    //! issuer could present, with the reason it must be refused for.

    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://idp.bank.example";
    const AUD: &str = "fulcrum";
    const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    struct Issuer {
        enc: EncodingKey,
        public: Vec<u8>,
    }

    fn issuer() -> Issuer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Issuer { enc: EncodingKey::from_ed_der(pkcs8.as_ref()), public: pair.public_key().as_ref().to_vec() }
    }

    fn jwk(i: &Issuer, kid: &str, alg: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(&i.public), "alg": alg, "kid": kid, "use": "sig"})
    }

    fn keys(jwks: &[Value]) -> KeySet {
        KeySet::from_jwks(json!({"keys": jwks}).to_string().as_bytes()).unwrap()
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": "ci-risk", "iat": NOW - 10, "exp": NOW + 300})
    }

    fn token(i: &Issuer, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = kid.map(str::to_owned);
        encode(&h, claims, &i.enc).unwrap()
    }

    fn with(f: impl FnOnce(&mut Value)) -> Value {
        let mut c = claims();
        f(&mut c);
        c
    }

    /// A token whose header or payload is replaced after signing (the signature kept).
    fn reforged(t: &str, header: Option<Value>, payload: Option<Value>) -> String {
        let parts: Vec<&str> = t.split('.').collect();
        let h = header.map_or(parts[0].to_owned(), |h| B64URL.encode(h.to_string()));
        let p = payload.map_or(parts[1].to_owned(), |p| B64URL.encode(p.to_string()));
        format!("{h}.{p}.{}", parts[2])
    }

    #[test]
    fn every_refusal_as_data() {
        let good = issuer();
        let other = issuer();
        let set = keys(&[jwk(&good, "k1", "EdDSA")]);
        let rules = Rules::new(ISS, AUD);
        let ok = token(&good, Some("k1"), &claims());
        let v = check(&ok, &set, &rules, NOW).expect("the good token");
        assert_eq!((v.subject.as_str(), v.issuer.as_str()), ("ci-risk", ISS));

        // HS256 keyed with the issuer's *public* key: the classic confusion.
        let hs = encode(
            &{
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("k1".into());
                h
            },
            &claims(),
            &EncodingKey::from_secret(&good.public).unwrap(),
        )
        .unwrap();
        let none = format!(
            "{}.{}.",
            B64URL.encode(json!({"alg": "none", "kid": "k1"}).to_string()),
            B64URL.encode(claims().to_string())
        );
        let two_keys = keys(&[jwk(&good, "k1", "EdDSA"), jwk(&other, "k2", "EdDSA")]);
        let es_only = keys(&[jwk(&good, "k1", "ES256")]);
        let long = Rules { max_lifetime_s: 60, ..Rules::new(ISS, AUD) };
        let lax = Rules { leeway_s: 100_000, ..Rules::new(ISS, AUD) };
        let cases: Vec<(&str, String, &KeySet, &Rules, TokenError)> = vec![
            ("garbage", "not-a-jwt".into(), &set, &rules, TokenError::Malformed),
            ("alg none", none, &set, &rules, TokenError::Malformed),
            ("HS256 keyed with the public key", hs, &set, &rules, TokenError::Algorithm),
            (
                "typ that is not a JWT",
                reforged(&ok, Some(json!({"alg": "EdDSA", "kid": "k1", "typ": "JOSE+JSON"})), None),
                &set,
                &rules,
                TokenError::Type,
            ),
            ("unknown kid", token(&good, Some("k9"), &claims()), &set, &rules, TokenError::UnknownKey),
            ("no kid among several keys", token(&good, None, &claims()), &two_keys, &rules, TokenError::UnknownKey),
            ("key published for another algorithm", ok.clone(), &es_only, &rules, TokenError::Algorithm),
            (
                "another key's signature under k1",
                token(&other, Some("k1"), &claims()),
                &set,
                &rules,
                TokenError::Signature,
            ),
            (
                "claims changed after signing",
                reforged(&ok, None, Some(with(|c| c["sub"] = json!("admin")))),
                &set,
                &rules,
                TokenError::Signature,
            ),
            (
                "another issuer",
                token(&good, Some("k1"), &with(|c| c["iss"] = json!("https://evil"))),
                &set,
                &rules,
                TokenError::Issuer,
            ),
            (
                "another audience",
                token(&good, Some("k1"), &with(|c| c["aud"] = json!("other"))),
                &set,
                &rules,
                TokenError::Audience,
            ),
            (
                "no audience",
                token(&good, Some("k1"), &with(|c| drop(c.as_object_mut().unwrap().remove("aud")))),
                &set,
                &rules,
                TokenError::Claims("aud is required".into()),
            ),
            (
                "expired",
                token(&good, Some("k1"), &with(|c| c["exp"] = json!(NOW - 31))),
                &set,
                &rules,
                TokenError::Expired,
            ),
            (
                "expired beyond the capped leeway",
                token(
                    &good,
                    Some("k1"),
                    &with(|c| {
                        c["iat"] = json!(NOW - 400);
                        c["exp"] = json!(NOW - MAX_LEEWAY_S - 1);
                    }),
                ),
                &set,
                &lax,
                TokenError::Expired,
            ),
            (
                "issued in the future",
                token(&good, Some("k1"), &with(|c| c["iat"] = json!(NOW + 31))),
                &set,
                &rules,
                TokenError::NotYetValid,
            ),
            (
                "not before the future",
                token(&good, Some("k1"), &with(|c| c["nbf"] = json!(NOW + 31))),
                &set,
                &rules,
                TokenError::NotYetValid,
            ),
            ("lives too long", ok.clone(), &set, &long, TokenError::Lifetime(60)),
            (
                "exp before iat",
                token(
                    &good,
                    Some("k1"),
                    &with(|c| {
                        c["iat"] = json!(NOW + 20);
                        c["exp"] = json!(NOW + 10);
                    }),
                ),
                &set,
                &rules,
                TokenError::Lifetime(3600),
            ),
            (
                "no iat",
                token(&good, Some("k1"), &with(|c| drop(c.as_object_mut().unwrap().remove("iat")))),
                &set,
                &rules,
                TokenError::Claims("iat is required".into()),
            ),
            (
                "no exp",
                token(&good, Some("k1"), &with(|c| drop(c.as_object_mut().unwrap().remove("exp")))),
                &set,
                &rules,
                TokenError::Claims("exp is required".into()),
            ),
            (
                "exp that is not a time",
                token(&good, Some("k1"), &with(|c| c["exp"] = json!("tomorrow"))),
                &set,
                &rules,
                TokenError::Claims("sub, iat, exp or nbf has the wrong type".into()),
            ),
            (
                "negative iat",
                token(&good, Some("k1"), &with(|c| c["iat"] = json!(-5))),
                &set,
                &rules,
                TokenError::Claims("iat is not a time".into()),
            ),
        ];
        for (what, t, keys, rules, want) in cases {
            assert_eq!(check(&t, keys, rules, NOW), Err(want), "{what}");
        }
        // Within the leeway still passes: expired 29 s ago, issued 29 s ahead.
        let expired_29 = with(|c| {
            c["iat"] = json!(NOW - 100);
            c["exp"] = json!(NOW - 29);
        });
        assert!(check(&token(&good, Some("k1"), &expired_29), &set, &rules, NOW).is_ok());
        assert!(check(&token(&good, Some("k1"), &with(|c| c["iat"] = json!(NOW + 29))), &set, &rules, NOW).is_ok());
        // One key and no kid: that key.
        assert!(check(&token(&good, None, &claims()), &set, &rules, NOW).is_ok());
    }

    #[test]
    fn keys_without_an_asymmetric_alg_are_skipped_and_bearer_headers_parse() {
        let i = issuer();
        let mut no_alg = jwk(&i, "k0", "EdDSA");
        no_alg.as_object_mut().unwrap().remove("alg");
        let enc = json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(&i.public), "alg": "EdDSA", "kid": "k2", "use": "enc"});
        let set = keys(&[no_alg, enc, jwk(&i, "k1", "EdDSA")]);
        assert_eq!((set.kids(), set.skipped.clone()), (vec!["k1"], vec!["k0".to_owned(), "k2".to_owned()]));
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        for bad in [None, Some(""), Some("Basic abc"), Some("Bearer   ")] {
            assert_eq!(bearer(bad), Err(TokenError::Missing), "{bad:?}");
        }
        assert!(
            looks_like_jwt("a.b.c")
                && !looks_like_jwt("a.b")
                && !looks_like_jwt("a.b.c.d")
                && !looks_like_jwt("a b.c.d")
        );
        assert!(asymmetric_algorithm("HS256").is_err() && asymmetric_algorithm("none").is_err());
    }
}
