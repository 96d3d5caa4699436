//! `fulcrum serve`: validate config, open every adapter, then listen until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use fulcrum_server::{Config, Registry};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// OCI registries versions are registered from (`POST /v1/models/{name}/oci-imports`).
    #[command(flatten)]
    oci: crate::oci::OciArgs,
    /// An OCI registry (`host[:port]`) versions may be pulled from over HTTPS (repeatable). None
    /// by default: a reference never makes the registry fetch from a host it was not told about.
    #[arg(long = "oci-registry")]
    oci_registries: Vec<String>,
    /// Address to listen on. Anything but loopback requires --tls-cert and --tls-key.
    #[arg(long, default_value = "127.0.0.1:8740")]
    listen: SocketAddr,
    /// Where the database, blobs and the development key live.
    #[arg(long, default_value = "./fulcrum-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    storage: StorageArgs,
    /// Local identities (token → subject, role, tenant, domain, env, purpose). Without it,
    /// <data-dir>/tokens.json is used, and created with a bootstrap admin token if missing.
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Trusted OIDC issuers (JSON: `{"issuers": [{"issuer", "audience", …}]}`); their JWT access
    /// tokens are accepted beside the tokens file. See docs/identity.md.
    #[arg(long)]
    oidc_config: Option<PathBuf>,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that issue client certificates: clients are asked for one, and
    /// one that is presented must chain to these (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// CRL (PEM) of the client CA; repeatable. Revoked client certificates fail the handshake.
    /// Re-read when it changes.
    #[arg(long, requires = "client_ca")]
    client_crl: Vec<PathBuf>,
    /// Refuse connections without a client certificate.
    #[arg(long, requires = "client_ca")]
    require_client_cert: bool,
    /// Which client certificates (by SAN) speak for which workloads, and which roles need a
    /// certificate and a token (JSON). See docs/identity.md.
    #[arg(long, requires = "client_ca")]
    client_identities: Option<PathBuf>,
    /// NATS server to relay every committed event to (JetStream stream FULCRUM, subjects
    /// `fulcrum.<tenant>.<model>.<event>`, `Nats-Msg-Id` = event id).
    #[arg(long)]
    nats_url: Option<String>,
    /// Webhook receivers (JSON: `{"webhooks": [{"name", "url", "secret_file", "tenants",
    /// "max_attempts", "first_retry_ms"}]}`): every event POSTed, HMAC-signed, retried, then
    /// dead-lettered.
    #[arg(long)]
    webhooks: Option<PathBuf>,
    /// Push decision logs to this endpoint in OPA's upload format (gzip JSON batches, in order,
    /// retried; masked as stored). OPA uploads go to `<service>/logs`.
    #[arg(long)]
    decision_log_url: Option<String>,
    /// A bearer token for the decision-log endpoint, read from this file.
    #[arg(long, requires = "decision_log_url")]
    decision_log_token_file: Option<PathBuf>,
    /// The MLflow tracking server whose runs and logged models MLflow clients register from
    /// (`create_model_version` imports the version's files from it).
    #[arg(long)]
    mlflow_tracking_uri: Option<String>,
    /// Development only: MLflow versions whose `source` is a local path are read from under this
    /// directory (without it, local sources are refused).
    #[arg(long)]
    mlflow_local_source_root: Option<PathBuf>,
    /// `s3://` MLflow sources: the S3-compatible endpoint (default: AWS itself), its region, and
    /// files holding the access key id and secret (re-read when rotated).
    #[arg(long)]
    mlflow_s3_endpoint: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    mlflow_s3_region: String,
    #[arg(long, requires = "mlflow_s3_secret_key_file")]
    mlflow_s3_access_key_file: Option<PathBuf>,
    #[arg(long, requires = "mlflow_s3_access_key_file")]
    mlflow_s3_secret_key_file: Option<PathBuf>,
    /// Seconds `create_model_version` waits for the copy and the release gate before answering
    /// `PENDING_REGISTRATION` (MLflow's client then polls until READY or FAILED_REGISTRATION).
    #[arg(long, default_value_t = 10)]
    mlflow_register_wait: u64,
    /// The registry's URL as clients reach it (e.g. behind a proxy): URLs it hands out (MLflow
    /// download URIs) start with it instead of the request's host.
    #[arg(long)]
    public_url: Option<String>,
    /// The web console's session key (at least 32 bytes; the same file on every replica so a
    /// console session works on all). Without it each process makes its own.
    #[arg(long)]
    ui_session_key_file: Option<PathBuf>,
    /// Write evidence archives to this S3 endpoint (bucket with Object Lock, COMPLIANCE) instead
    /// of <data-dir>/evidence; with --evidence-s3-bucket and the key files.
    #[arg(long, requires_all = ["evidence_s3_bucket", "evidence_s3_access_key_file", "evidence_s3_secret_key_file"])]
    evidence_s3_endpoint: Option<String>,
    #[arg(long)]
    evidence_s3_bucket: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    evidence_s3_region: String,
    /// Files holding the S3 access key id and secret (re-read when rotated).
    #[arg(long)]
    evidence_s3_access_key_file: Option<PathBuf>,
    #[arg(long)]
    evidence_s3_secret_key_file: Option<PathBuf>,
    /// Lifetime of signed resolve documents, in seconds.
    #[arg(long, default_value_t = 300)]
    resolve_ttl_secs: u64,
    /// Release policy (JSON): what a version must carry (signature, provenance, SBOM) and which
    /// CI keys and builders are trusted. Without it, the release gate runs in development mode.
    #[arg(long)]
    release_policy: Option<PathBuf>,
    /// PKCS#11 module for HSM-held keys; with --pkcs11-token-label and --pkcs11-pin-file (the
    /// user PIN: it can sign with existing keys only).
    #[arg(long, requires_all = ["pkcs11_token_label", "pkcs11_pin_file"])]
    pkcs11_module: Option<PathBuf>,
    #[arg(long)]
    pkcs11_token_label: Option<String>,
    #[arg(long)]
    pkcs11_pin_file: Option<PathBuf>,
    /// Vault address for Transit-held keys; with --vault-token-file (a sign-only token).
    #[arg(long, requires = "vault_token_file")]
    vault_addr: Option<String>,
    #[arg(long)]
    vault_token_file: Option<PathBuf>,
    #[arg(long, default_value = "transit")]
    vault_mount: String,
    /// CA certificate (PEM) that Vault's TLS certificate must chain to.
    #[arg(long)]
    vault_ca_file: Option<PathBuf>,
    /// Tenant of the bootstrap admin token written on first start.
    #[arg(long, default_value = "default")]
    bootstrap_tenant: String,
}

/// The metadata database (without a URL: SQLite in the data dir).
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL 15+ for the metadata: `postgres://USER@HOST:PORT/DB[?sslmode=verify-full]`
    /// (no password in the URL: give it with --database-password-file).
    #[arg(long, env = "FULCRUM_DATABASE_URL")]
    database_url: Option<String>,
    /// File holding the database password (re-read when it changes).
    #[arg(long, env = "FULCRUM_DATABASE_PASSWORD_FILE", requires = "database_url")]
    database_password_file: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The database these arguments name.
    ///
    /// # Errors
    /// An unreadable password file.
    pub fn database(&self, data_dir: &std::path::Path) -> anyhow::Result<fulcrum_store::Database> {
        Ok(match &self.database_url {
            None => fulcrum_store::Database::Sqlite { path: data_dir.join("registry.db") },
            Some(url) => fulcrum_store::Database::Postgres {
                url: url.clone(),
                password: self
                    .database_password_file
                    .as_deref()
                    .map(fulcrum_kms::Secret::from_file)
                    .transpose()
                    .context("database password")?,
            },
        })
    }
}

/// Where metadata and blobs live. Without any of these, both stay in the data dir (SQLite and a
/// content-addressed directory): the embedded default.
#[derive(Debug, Args)]
pub struct StorageArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// S3-compatible object storage for blobs: `s3://BUCKET?endpoint=URL&region=R` (AWS when no
    /// endpoint). Downloads are then answered with short-lived pre-signed URLs.
    #[arg(long, env = "FULCRUM_BLOB_STORE", requires_all = ["s3_access_key_file", "s3_secret_key_file"])]
    blob_store: Option<String>,
    /// Files holding the object store's access key id and secret (re-read when rotated).
    #[arg(long, env = "FULCRUM_S3_ACCESS_KEY_FILE", requires = "blob_store")]
    s3_access_key_file: Option<PathBuf>,
    #[arg(long, env = "FULCRUM_S3_SECRET_KEY_FILE", requires = "blob_store")]
    s3_secret_key_file: Option<PathBuf>,
    /// Lifetime of a pre-signed download URL, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    presign_ttl_secs: u64,
}

impl StorageArgs {
    fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if self.database.database_url.is_some() {
            config.database = Some(self.database.database(&config.data_dir)?);
        }
        if let (Some(url), Some(ak), Some(sk)) = (&self.blob_store, &self.s3_access_key_file, &self.s3_secret_key_file)
        {
            config.blob_store = Some(fulcrum_store::blobs::S3BlobConfig::parse(
                url,
                fulcrum_kms::Secret::from_file(ak).context("S3 access key")?,
                fulcrum_kms::Secret::from_file(sk).context("S3 secret key")?,
            )?);
        }
        config.presign_ttl = Duration::from_secs(self.presign_ttl_secs);
        Ok(())
    }
}

/// `fulcrum db …`: the metadata database, offline (no registry needs to run).
#[derive(Debug, clap::Subcommand)]
pub enum DbCmd {
    /// Bring the schema up to date (replicas also migrate at start, once, under a lock).
    Migrate {
        /// The data dir whose SQLite database to migrate (when no --database-url is given).
        #[arg(long, default_value = "./fulcrum-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub async fn db(cmd: DbCmd) -> anyhow::Result<()> {
    match cmd {
        DbCmd::Migrate { data_dir, database } => {
            let db = database.database(&data_dir)?;
            if let fulcrum_store::Database::Sqlite { path } = &db {
                std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))
                    .with_context(|| format!("cannot create {}", data_dir.display()))?;
            }
            let applied =
                fulcrum_store::Store::migrate(&db).await.with_context(|| format!("migrating {}", db.display()))?;
            if applied.is_empty() {
                println!("{}: the schema is up to date", db.display());
            } else {
                let list: Vec<String> = applied.iter().map(ToString::to_string).collect();
                println!("{}: applied migrations {}", db.display(), list.join(", "));
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    if !a.listen.ip().is_loopback() && a.tls_cert.is_none() {
        bail!("refusing to listen on {} without TLS; pass --tls-cert and --tls-key, or listen on 127.0.0.1", a.listen);
    }
    let mut config = Config::new(&a.data_dir);
    a.storage.apply(&mut config)?;
    config.tokens_file = a.tokens_file.clone();
    config.resolve_ttl = Duration::from_secs(a.resolve_ttl_secs);
    config.bootstrap_tenant = a.bootstrap_tenant.clone();
    if let (Some(endpoint), Some(bucket), Some(ak), Some(sk)) =
        (&a.evidence_s3_endpoint, &a.evidence_s3_bucket, &a.evidence_s3_access_key_file, &a.evidence_s3_secret_key_file)
    {
        config.evidence_s3 = Some(fulcrum_server::evidence::S3Config {
            endpoint: endpoint.clone(),
            bucket: bucket.clone(),
            region: a.evidence_s3_region.clone(),
            access_key: fulcrum_kms::Secret::from_file(ak)?,
            secret_key: fulcrum_kms::Secret::from_file(sk)?,
        });
    }
    if let Some(p) = &a.webhooks {
        config.webhooks =
            fulcrum_server::webhooks::WebhooksFile::load(p).map_err(|e| anyhow::anyhow!("webhooks {e}"))?.webhooks;
    }
    if let Some(url) = &a.nats_url {
        config.nats = Some(fulcrum_server::relay::NatsConfig::new(url));
    }
    config.ui_session_key_file.clone_from(&a.ui_session_key_file);
    if let Some(url) = &a.decision_log_url {
        let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("--decision-log-url {url}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("--decision-log-url {url}: the URL must be http(s)");
        }
        config.decision_log = Some(fulcrum_server::siem::DecisionLogConfig {
            url: url.clone(),
            token_file: a.decision_log_token_file.clone(),
            batch: 500,
        });
    }
    if let Some(p) = &a.client_identities {
        config.client_identities = fulcrum_server::auth::ClientIdentities::load(p)?;
    }
    config.https = a.tls_cert.is_some();
    config.mlflow_tracking_uri.clone_from(&a.mlflow_tracking_uri);
    config.mlflow_local_source_root.clone_from(&a.mlflow_local_source_root);
    if let (Some(ak), Some(sk)) = (&a.mlflow_s3_access_key_file, &a.mlflow_s3_secret_key_file) {
        if let Some(e) = &a.mlflow_s3_endpoint {
            let u = reqwest::Url::parse(e).map_err(|err| anyhow::anyhow!("--mlflow-s3-endpoint {e}: {err}"))?;
            if !matches!(u.scheme(), "http" | "https") {
                anyhow::bail!("--mlflow-s3-endpoint {e}: http(s) only");
            }
        }
        config.mlflow_s3 = Some(fulcrum_server::mlflow::sources::S3Settings {
            endpoint: a.mlflow_s3_endpoint.clone(),
            region: a.mlflow_s3_region.clone(),
            access_key: fulcrum_kms::Secret::from_file(ak).map_err(|e| anyhow::anyhow!("MLflow S3 access key: {e}"))?,
            secret_key: fulcrum_kms::Secret::from_file(sk).map_err(|e| anyhow::anyhow!("MLflow S3 secret key: {e}"))?,
        });
    } else if a.mlflow_s3_endpoint.is_some() {
        anyhow::bail!("--mlflow-s3-endpoint needs --mlflow-s3-access-key-file and --mlflow-s3-secret-key-file");
    }
    config.mlflow_register_wait = std::time::Duration::from_secs(a.mlflow_register_wait);
    if let Some(u) = &a.public_url {
        let parsed = reqwest::Url::parse(u).map_err(|e| anyhow::anyhow!("--public-url {u}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            anyhow::bail!("--public-url {u}: an http(s) URL without a query");
        }
        config.public_url = Some(u.clone());
    }
    if let Some(p) = &a.oidc_config {
        let file = fulcrum_oidc::OidcFile::load(p).map_err(|e| anyhow::anyhow!("OIDC settings {e}"))?;
        config.oidc = file.issuers;
        config.console_login = file.console;
    }
    config.oci = a.oci.settings()?;
    config.oci_registries = a.oci_registries.clone();
    if let Some(p) = &a.release_policy {
        config.release_policy =
            fulcrum_server::release::ReleasePolicy::load(p).map_err(|e| anyhow::anyhow!("release policy {e}"))?;
    }
    if let (Some(module), Some(label), Some(pin)) = (&a.pkcs11_module, &a.pkcs11_token_label, &a.pkcs11_pin_file) {
        config.kms.pkcs11 = Some(fulcrum_kms::pkcs11::Pkcs11Config::from_files(module, label, pin)?);
    }
    if let (Some(addr), Some(token)) = (&a.vault_addr, &a.vault_token_file) {
        config.kms.vault =
            Some(fulcrum_kms::vault::VaultConfig::from_files(addr, token, &a.vault_mount, a.vault_ca_file.as_deref())?);
    }
    if config.release_policy.is_development() {
        tracing::warn!(
            "RELEASE GATE IN DEVELOPMENT MODE: versions may be registered without a signature, provenance or SBOM (pass --release-policy to require them)"
        );
    } else {
        tracing::info!(required = ?config.release_policy.required(), "release gate enforcing");
    }
    let (state, notes) = Registry::open_default(config).await.context("cannot start the registry")?;
    if let Some(p) = &notes.created_key {
        tracing::warn!(path = %p.display(), kid = %notes.kid, "created a new LOCAL DEVELOPMENT signing key");
    }
    if notes.development_key {
        tracing::warn!(
            kid = %notes.kid,
            "SIGNING WITH A LOCAL DEVELOPMENT KEY: it is a file on this disk, not in a KMS/HSM. Do not use this registry for production models."
        );
    }
    if let Some((path, _token)) = &notes.created_tokens {
        // The token itself is never printed or logged: it is in the file, readable by this user only.
        eprintln!(
            "fulcrum: wrote a bootstrap admin token to {} (mode 0600). Use it with: export FULCRUM_TOKEN_FILE={}",
            path.display(),
            path.display()
        );
    }
    match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            tracing::info!(addr = %a.listen, "fulcrum registry listening (HTTPS)");
            let mut files = fulcrum_server::TlsFiles::new(cert, key);
            if let Some(ca) = &a.client_ca {
                files.client_auth = Some(fulcrum_server::tls::ClientAuthFiles {
                    ca: ca.clone(),
                    crls: a.client_crl.clone(),
                    required: a.require_client_cert,
                });
            }
            let listener =
                std::net::TcpListener::bind(a.listen).with_context(|| format!("cannot listen on {}", a.listen))?;
            fulcrum_server::serve_tls(state, listener, &files, shutdown_signal()).await.context("server failed")?;
        }
        _ => {
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("cannot listen on {}", a.listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "fulcrum registry listening (HTTP, loopback only)");
            crate::outln!("fulcrum: listening on http://{addr}");
            fulcrum_server::serve(state, listener, shutdown_signal()).await.context("server failed")?;
        }
    }
    Ok(())
}
