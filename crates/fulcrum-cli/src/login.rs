//! `fulcrum login`: access tokens from the company IdP for the command line.
//!
//! Pipelines log in with the client-credentials grant: the client secret stays in its file
//! (written by a secret manager, re-read at every refresh). People log in with the device flow
//! (RFC 8628), when the IdP offers it: the CLI shows a code to approve in a browser, at the IdP,
//! and polls for the token. Only the short-lived access token, the refresh token if any, and where
//! to get the next ones are kept in the credentials file (mode 0600). Every command that talks
//! to the registry refreshes the token when it has less than a minute left — with the refresh
//! token if the IdP gave one, otherwise by asking again with the client's secret.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A token with less than this left is refreshed before use.
const REFRESH_BEFORE_S: i64 = 60;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The IdP's issuer URL (its discovery document names the token endpoint).
    #[arg(long)]
    issuer: String,
    #[arg(long)]
    client_id: String,
    /// File holding the client secret (client credentials, for pipelines). Re-read at every
    /// refresh, so a rotated secret is picked up.
    #[arg(long, required_unless_present = "device", conflicts_with = "device")]
    client_secret_file: Option<PathBuf>,
    /// Log a person in with the device flow: approve the code shown, in a browser, at the IdP.
    #[arg(long)]
    device: bool,
    /// The audience to ask for (an RFC 8707 resource indicator), if the IdP needs one.
    #[arg(long)]
    resource: Option<String>,
    #[arg(long)]
    scope: Option<String>,
}

/// What the credentials file keeps: never the client secret itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub issuer: String,
    pub token_endpoint: String,
    pub client_id: String,
    /// `None` for a public client (the device flow).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// The default credentials file: `$XDG_CONFIG_HOME/fulcrum/credentials.json` or
/// `~/.config/fulcrum/credentials.json`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("fulcrum/credentials.json"))
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let s =
        std::fs::read_to_string(path).with_context(|| format!("cannot read client secret file {}", path.display()))?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        bail!("client secret file {} is empty", path.display());
    }
    Ok(s)
}

/// A token endpoint's answer: access token, its expiry (Unix s), the refresh token if any.
type Tokens = (String, i64, Option<String>);

/// Why the IdP refused: its error code (`invalid_client`, `authorization_pending`, …) and text.
#[derive(Debug, thiserror::Error)]
#[error("the IdP refused the token request: {code}{description}")]
struct Refused {
    code: String,
    description: String,
}

/// Ask the token endpoint, as a confidential client (`secret`) or a public one. The IdP's
/// refusal is named, never the secret.
async fn token_request(c: &Credentials, form: &[(&str, &str)], secret: Option<&str>) -> anyhow::Result<Tokens> {
    let mut form = form.to_vec();
    let mut rb = http()?.post(&c.token_endpoint);
    match secret {
        Some(s) => rb = rb.basic_auth(&c.client_id, Some(s)),
        None => form.push(("client_id", &c.client_id)),
    }
    let resp = rb.form(&form).send().await.with_context(|| format!("cannot reach the IdP at {}", c.token_endpoint))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = body["error"].as_str().unwrap_or("no error code").to_owned();
        let description = body["error_description"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
        return Err(Refused { code, description }.into());
    }
    let token = body["access_token"].as_str().context("the IdP's answer has no access_token")?.to_owned();
    let expires_in = body["expires_in"].as_i64().unwrap_or(300);
    Ok((token, now() + expires_in, body["refresh_token"].as_str().map(str::to_owned)))
}

/// Get a fresh access token for `c`: with the refresh token if there is one, else by client
/// credentials.
async fn obtain(c: &Credentials) -> anyhow::Result<Tokens> {
    let secret = c.client_secret_file.as_deref().map(read_secret).transpose()?;
    if let Some(rt) = &c.refresh_token {
        let refreshed =
            token_request(c, &[("grant_type", "refresh_token"), ("refresh_token", rt)], secret.as_deref()).await;
        match (refreshed, &secret) {
            (Ok(t), _) => return Ok(t),
            // A public client has nothing else to try.
            (Err(e), None) => return Err(e),
            (Err(_), Some(_)) => {}
        }
    }
    let Some(secret) = secret else { bail!("no refresh token and no client secret") };
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(r) = &c.resource {
        form.push(("resource", r));
    }
    if let Some(s) = &c.scope {
        form.push(("scope", s));
    }
    token_request(c, &form, Some(&secret)).await
}

/// RFC 8628: ask for a user code, show it, poll until the person approved it at the IdP.
async fn device_flow(c: &Credentials, device_endpoint: &str) -> anyhow::Result<Tokens> {
    let scope = c.scope.clone().unwrap_or_else(|| "openid offline_access".into());
    let mut form = vec![("client_id", c.client_id.as_str()), ("scope", scope.as_str())];
    if let Some(r) = &c.resource {
        form.push(("resource", r));
    }
    let resp = http()?
        .post(device_endpoint)
        .form(&form)
        .send()
        .await
        .with_context(|| format!("cannot reach the IdP at {device_endpoint}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the IdP refused the device authorization: {}", body["error"].as_str().unwrap_or("no error code"));
    }
    let device_code = body["device_code"].as_str().context("no device_code in the IdP's answer")?;
    let user_code = body["user_code"].as_str().context("no user_code in the IdP's answer")?;
    let uri = body["verification_uri_complete"].as_str().or(body["verification_uri"].as_str()).unwrap_or("the IdP");
    let mut interval = body["interval"].as_u64().unwrap_or(5).max(1);
    let deadline = now() + body["expires_in"].as_i64().unwrap_or(600);
    eprintln!("fulcrum: to log in, open {uri} and approve the code {user_code} (waiting…)");
    let grant = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", device_code)];
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
        match token_request(c, &grant, None).await {
            Ok(t) => return Ok(t),
            Err(e) => match e.downcast_ref::<Refused>().map(|r| r.code.as_str()) {
                Some("authorization_pending") if now() < deadline => {}
                Some("slow_down") if now() < deadline => interval += 5,
                Some("authorization_pending" | "slow_down" | "expired_token") => {
                    bail!("the code {user_code} was not approved in time")
                }
                Some("access_denied") => bail!("the login was denied at the IdP"),
                _ => return Err(e),
            },
        }
    }
}

fn save(path: &Path, c: &Credentials) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(c)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `fulcrum login`: discover the token endpoint, obtain a token, keep it in `path`.
///
/// # Errors
/// Discovery or the token request failing, with the IdP's reason.
pub async fn login(a: LoginArgs, path: &Path) -> anyhow::Result<String> {
    let issuer = a.issuer.trim_end_matches('/').to_owned();
    let url = format!("{issuer}/.well-known/openid-configuration");
    let doc: Value = http()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the IdP at {url}"))?
        .error_for_status()
        .with_context(|| format!("no discovery document at {url}"))?
        .json()
        .await
        .with_context(|| format!("{url} is not a discovery document"))?;
    if doc["issuer"].as_str() != Some(issuer.as_str()) {
        bail!("the discovery document at {url} names another issuer: {}", doc["issuer"]);
    }
    let token_endpoint = doc["token_endpoint"].as_str().context("the discovery document has no token_endpoint")?;
    let mut c = Credentials {
        issuer,
        token_endpoint: token_endpoint.to_owned(),
        client_id: a.client_id,
        client_secret_file: a.client_secret_file.as_deref().map(std::path::absolute).transpose()?,
        resource: a.resource,
        scope: a.scope,
        access_token: String::new(),
        expires_at: 0,
        refresh_token: None,
    };
    let (token, expires_at, refresh) = if a.device {
        let endpoint = doc["device_authorization_endpoint"]
            .as_str()
            .context("the IdP does not offer the device flow (no device_authorization_endpoint)")?;
        device_flow(&c, endpoint).await?
    } else {
        obtain(&c).await?
    };
    (c.access_token, c.expires_at, c.refresh_token) = (token.clone(), expires_at, refresh);
    save(path, &c)?;
    Ok(token)
}

/// The access token of the credentials file, refreshed when it has less than a minute left;
/// `None` when there is no credentials file.
///
/// # Errors
/// An unreadable file, or a refresh the IdP refuses.
pub async fn current_token(path: &Path) -> anyhow::Result<Option<String>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read credentials {}", path.display())),
    };
    let mut c: Credentials =
        serde_json::from_slice(&bytes).with_context(|| format!("credentials {} are not valid", path.display()))?;
    if c.expires_at - now() > REFRESH_BEFORE_S {
        return Ok(Some(c.access_token));
    }
    let (token, expires_at, refresh) =
        obtain(&c).await.context("the login expired and could not be refreshed (run fulcrum login)")?;
    (c.access_token, c.expires_at) = (token.clone(), expires_at);
    if refresh.is_some() {
        c.refresh_token = refresh;
    }
    save(path, &c)?;
    Ok(Some(token))
}
