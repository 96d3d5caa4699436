//! A registry in this process for the serving benchmarks: loopback HTTP, its own SQLite and
//! key, the people who release models, and a serving identity for agents.

use fulcrum_client::Client;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_server::auth::{TokenEntry, TokensFile};
use fulcrum_server::{Config, Registry};
use fulcrum_sign::TrustBundle;
use serde_json::json;

const PEOPLE: &[(&str, Role, Option<Env>)] = &[
    ("ci", Role::Publisher, None),
    ("rm", Role::ReleaseManager, None),
    ("ana", Role::Approver, None),
    ("bo", Role::SecurityOfficer, None),
    ("agent", Role::Serving, Some(Env::Prod)),
];

pub fn who(url: &str, w: &str) -> anyhow::Result<Client> {
    Ok(Client::new(url, Some(format!("tok-{w}")))?)
}

pub async fn release(url: &str, model: &str, version: &str) -> anyhow::Result<()> {
    let ci = who(url, "ci")?;
    let bytes = format!("{model}-{version}").into_bytes();
    let n = bytes.len();
    let d = ci.upload_bytes(bytes).await?;
    ci.post(
        &format!("/v1/models/{model}/versions"),
        &json!({"version": version, "files": [{"path": "weights.bin", "size": n, "digest": d.to_string()}],
                "model_card": {"owner": "bench", "intended_use": "bench"}, "revalidate_by": "2099-01-01T00:00:00Z"}),
    )
    .await?;
    let v = format!("/v1/models/{model}/versions/{version}");
    who(url, "rm")?.post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await?;
    who(url, "ana")?.post(&format!("{v}/approvals"), &json!({})).await?;
    who(url, "bo")?.post(&format!("{v}/approvals"), &json!({})).await?;
    who(url, "rm")?.post(&format!("{v}/promotions"), &json!({"to": "Approved"})).await?;
    who(url, "rm")?
        .put(&format!("/v1/models/{model}/aliases/production"), &json!({"version": version, "chg_id": "CHG-B"}))
        .await?;
    Ok(())
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The registry's trust bundle, as an agent would pin it.
    pub bundle: TrustBundle,
}

impl Lab {
    /// # Errors
    /// The registry failing to start.
    pub async fn start() -> anyhow::Result<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let tokens = TokensFile {
            tokens: PEOPLE
                .iter()
                .map(|(w, role, env)| TokenEntry {
                    token: Some(format!("tok-{w}")),
                    token_sha256: None,
                    subject: (*w).into(),
                    role: *role,
                    tenant: "bench".into(),
                    domain: "*".into(),
                    env: *env,
                    purpose: None,
                })
                .collect(),
        };
        tokens.write_new(&dir.path().join("tokens.json"))?;
        let mut config = Config::new(dir.path().join("data"));
        config.tokens_file = Some(dir.path().join("tokens.json"));
        let (state, _) = Registry::open_default(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(fulcrum_server::serve(state, listener, std::future::pending()));
        let bundle = who(&url, "agent")?.trust_bundle().await?;
        Ok(Self { dir, url, bundle })
    }
}
