//! A registry in this process for the serving benchmarks: loopback HTTP, its own SQLite and
//! key, the people who release models, and a serving identity for agents.

use fulcrum_client::Client;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_server::loopback::{Person, Setup};
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

/// Candidate → Staging → Approved, with four eyes.
pub async fn approve(url: &str, model: &str, version: &str) -> anyhow::Result<()> {
    let v = format!("/v1/models/{model}/versions/{version}");
    who(url, "rm")?.post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await?;
    who(url, "ana")?.post(&format!("{v}/approvals"), &json!({})).await?;
    who(url, "bo")?.post(&format!("{v}/approvals"), &json!({})).await?;
    who(url, "rm")?.post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-T"})).await?;
    Ok(())
}

/// Model `model` with version `v1` of one uploaded file (`weights.bin`), Approved.
pub async fn approved_file(url: &str, model: &str, d: fulcrum_core::Digest, size: u64) -> anyhow::Result<()> {
    let ci = who(url, "ci")?;
    ci.post("/v1/models", &json!({"name": model, "domain": "bench"})).await?;
    ci.post(
        &format!("/v1/models/{model}/versions"),
        &json!({"version": "v1", "files": [{"path": "weights.bin", "size": size, "digest": d.to_string()}],
                "model_card": {"owner": "bench", "intended_use": "bench"}, "revalidate_by": "2099-01-01T00:00:00Z"}),
    )
    .await?;
    approve(url, model, "v1").await
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
    approve(url, model, version).await?;
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
    /// The same registry over HTTPS, when started with TLS files.
    pub tls_url: Option<String>,
    _server: fulcrum_server::loopback::Running,
}

impl Lab {
    /// # Errors
    /// The registry failing to start.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}, None).await
    }

    /// A registry whose configuration `tune` adjusts, also served over HTTPS given TLS files.
    ///
    /// # Errors
    /// The registry failing to start.
    pub async fn start_with(
        tune: impl FnOnce(&mut fulcrum_server::Config),
        tls: Option<fulcrum_server::TlsFiles>,
    ) -> anyhow::Result<Self> {
        Self::start_in(tempfile::tempdir()?, tune, tls).await
    }

    /// Another replica of `first` (same signing key) on the storage `tune` names.
    ///
    /// # Errors
    /// The registry failing to start.
    pub async fn replica_of(first: &Lab, tune: impl FnOnce(&mut fulcrum_server::Config)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        std::fs::copy(first.dir.path().join("data/signing-key.pk8"), dir.path().join("data/signing-key.pk8"))?;
        Self::start_in(dir, tune, None).await
    }

    /// A registry on an existing dir (its data under `<dir>/data`, e.g. seeded by `seed`).
    ///
    /// # Errors
    /// The registry failing to start.
    pub async fn start_on(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        Self::start_in(dir, |_| {}, None).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        tune: impl FnOnce(&mut fulcrum_server::Config),
        tls: Option<fulcrum_server::TlsFiles>,
    ) -> anyhow::Result<Self> {
        let people: Vec<Person> = PEOPLE
            .iter()
            .map(|(w, role, env)| Person { subject: (*w).into(), token: format!("tok-{w}"), role: *role, env: *env })
            .collect();
        let setup = Setup {
            data_dir: &dir.path().join("data"),
            tokens_file: &dir.path().join("tokens.json"),
            tenant: "bench",
            domain: "*",
            people: &people,
        };
        let clock = std::sync::Arc::new(fulcrum_server::clock::SystemClock);
        let server =
            fulcrum_server::loopback::start_with(&setup, clock, tune, tls).await.map_err(anyhow::Error::msg)?;
        let url = server.url.clone();
        let bundle = who(&url, "agent")?.trust_bundle().await?;
        Ok(Self { dir, url, bundle, tls_url: server.tls_url.clone(), _server: server })
    }
}
