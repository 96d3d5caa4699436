//! Signing people in to the web console: OpenID Connect authorization code flow with PKCE (RFC
//! 7636, `S256` only) against one of the trusted issuers.
//!
//! The registry is the client. It sends the browser to the issuer's authorization endpoint with a
//! fresh `state` and code challenge, and on the way back exchanges the code (with the verifier
//! only it knows) at the token endpoint for an access token — which is then checked exactly like
//! any bearer token ([`crate::Issuers`]): the console trusts no claim the API would not.
//!
//! The randomness (`state`, verifier) is the caller's; this module builds URLs, talks to the
//! token endpoint and checks what comes back.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

/// The console's client at one issuer (the `console` section of the OIDC settings file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleLogin {
    /// One of the trusted issuers (`issuers[].issuer`): its access tokens are what the console
    /// accepts.
    pub issuer: String,
    pub client_id: String,
    /// A confidential client's secret (sent with HTTP Basic); none for a public client, which
    /// PKCE alone protects.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Exactly the callback registered at the IdP: `https://<registry>/ui/login/callback`.
    pub redirect_uri: String,
    /// Scopes asked for (`openid` is always sent).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator for IdPs that mint the access token's audience from it.
    #[serde(default)]
    pub resource: Option<String>,
}

/// The issuer's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// Why a sign-in did not complete (shown to the person in words; never a token).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider's answer is not usable: {0}")]
    Answer(String),
    #[error("the identity provider refused: {0}")]
    Refused(String),
}

/// The console's OIDC client.
#[derive(Debug)]
pub struct LoginClient {
    config: ConsoleLogin,
    secret: Option<String>,
    http: reqwest::Client,
    endpoints: OnceCell<Endpoints>,
}

/// The `S256` challenge of a verifier.
pub fn challenge_of(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl LoginClient {
    /// # Errors
    /// An unreadable secret file or a redirect URI that is not https (http on loopback only).
    pub fn new(config: ConsoleLogin) -> Result<Self, String> {
        crate::issuers::check_url(&config.redirect_uri)?;
        let secret = match &config.client_secret_file {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?.trim().to_owned()),
            None => None,
        };
        Ok(Self { config, secret, http: crate::issuers::http_client()?, endpoints: OnceCell::new() })
    }

    pub fn config(&self) -> &ConsoleLogin {
        &self.config
    }

    async fn endpoints(&self) -> Result<&Endpoints, LoginError> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
                let resp = self.http.get(&url).send().await.map_err(|e| LoginError::Unreachable(e.to_string()))?;
                if !resp.status().is_success() {
                    return Err(LoginError::Unreachable(format!("GET {url}: {}", resp.status())));
                }
                let doc: Endpoints = resp.json().await.map_err(|e| LoginError::Answer(format!("discovery: {e}")))?;
                if doc.issuer != self.config.issuer {
                    return Err(LoginError::Answer(format!("discovery names issuer {}", doc.issuer)));
                }
                for u in [&doc.authorization_endpoint, &doc.token_endpoint] {
                    crate::issuers::check_url(u).map_err(LoginError::Answer)?;
                }
                Ok(doc)
            })
            .await
    }

    /// Where to send the browser: the authorization endpoint with `state` and the verifier's
    /// challenge.
    ///
    /// # Errors
    /// The issuer's discovery document cannot be read.
    pub async fn authorize_url(&self, state: &str, verifier: &str) -> Result<String, LoginError> {
        let ep = self.endpoints().await?;
        let mut url = reqwest::Url::parse(&ep.authorization_endpoint).map_err(|e| LoginError::Answer(e.to_string()))?;
        let mut scope = vec!["openid".to_owned()];
        scope.extend(self.config.scopes.iter().filter(|s| *s != "openid").cloned());
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", &self.config.redirect_uri)
                .append_pair("scope", &scope.join(" "))
                .append_pair("state", state)
                .append_pair("code_challenge", &challenge_of(verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(r) = &self.config.resource {
                q.append_pair("resource", r);
            }
        }
        Ok(url.into())
    }

    /// Exchange the code for an access token (to be verified by the caller like any bearer).
    ///
    /// # Errors
    /// The token endpoint is unreachable, refuses, or answers without an access token.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<String, LoginError> {
        let ep = self.endpoints().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        if let Some(r) = &self.config.resource {
            form.push(("resource", r));
        }
        if self.secret.is_none() {
            form.push(("client_id", &self.config.client_id));
        }
        let mut req = self.http.post(&ep.token_endpoint).form(&form);
        if let Some(s) = &self.secret {
            req = req.basic_auth(&self.config.client_id, Some(s));
        }
        let resp = req.send().await.map_err(|e| LoginError::Unreachable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| LoginError::Unreachable(e.to_string()))?;
        if bytes.len() > 1 << 20 {
            return Err(LoginError::Answer("token answer larger than 1 MiB".into()));
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| LoginError::Answer(format!("token endpoint answered {status}: {e}")))?;
        match (answer.access_token, answer.error) {
            (Some(t), None) if status.is_success() => Ok(t),
            (_, Some(e)) => Err(LoginError::Refused(match answer.error_description {
                Some(d) => format!("{e}: {d}"),
                None => e,
            })),
            _ => Err(LoginError::Answer(format!("token endpoint answered {status} without an access token"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_plain_http_callback_off_loopback_is_refused() {
        let c = ConsoleLogin {
            issuer: "https://idp.example".into(),
            client_id: "console".into(),
            client_secret_file: None,
            redirect_uri: "http://registry.example/ui/login/callback".into(),
            scopes: vec![],
            resource: None,
        };
        assert!(LoginClient::new(c).unwrap_err().contains("must be https"));
    }
}
