//! The Fulcrum registry server.
//!
//! [`Registry::open`] validates configuration and opens every adapter (SQLite store, blob store,
//! signing key, tokens) before anything listens; [`app`] builds the axum router for in-process
//! use; [`serve`] runs it on a listener until the shutdown future resolves.
//!
//! # Invariants
//! - Every error leaves as RFC 9457 problem+json (see [`problem`]); bad input is a 4xx.
//! - Every change goes through [`AppState::commit`]: under one gate, commit, apply the effects
//!   to this replica's caches, then wake the one log reader ([`follow`]), which hands the events
//!   to the streams and is how every other replica (and this one, for their commits) applies
//!   the change — so caches see changes in commit order on one process and on ten.
//! - `GET /v1/resolve` answers from the in-memory [`catalog::Catalog`]: no SQL, and no signing
//!   unless a pinned document is asked for the first time or has aged past half its lifetime.
//! - No secret (token, key) is ever logged or echoed.

pub mod access;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod deadline;
pub mod dto;
pub mod edge;
pub mod evidence;
pub mod fanout;
pub mod follow;
pub mod gates;
pub mod keyring;
pub mod ledger;
pub mod loopback;
pub mod metrics;
pub mod mlflow;
pub mod oci;
pub mod policy;
pub mod problem;
pub mod relay;
pub mod release;
mod routes;
pub mod siem;
pub mod signals;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tls;
pub mod ui;
pub mod watchers;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fulcrum_store::blobs::BlobStore;
use fulcrum_store::{Store, StoreOptions};
use tokio::sync::{Mutex, watch};

use crate::auth::{Identities, TokensFile};
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;

pub use routes::openapi;
pub use tls::{TlsFiles, serve_tls};

/// Registry configuration; validated fully by [`Registry::open`] before binding.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Where the metadata lives: `None` = SQLite at `<data-dir>/registry.db` (the embedded
    /// default), or a PostgreSQL database.
    pub database: Option<fulcrum_store::Database>,
    /// Where blobs live: `None` = `<data-dir>/blobs`, or an S3 bucket (downloads are then
    /// answered with pre-signed URLs).
    pub blob_store: Option<fulcrum_store::blobs::S3BlobConfig>,
    /// Lifetime of a pre-signed download URL.
    pub presign_ttl: Duration,
    /// `None` = `<data-dir>/tokens.json`, created with a bootstrap admin token when missing.
    pub tokens_file: Option<PathBuf>,
    /// Tenant of the bootstrap admin token.
    pub bootstrap_tenant: String,
    /// Lifetime of a signed resolve document.
    pub resolve_ttl: Duration,
    /// Largest accepted blob.
    pub max_blob_bytes: u64,
    /// Largest accepted JSON body.
    pub max_json_bytes: usize,
    /// Deadline for non-streaming requests.
    pub request_timeout: Duration,
    /// Longest pause between two chunks of a request body before the request is ended (408).
    pub body_idle_timeout: Duration,
    /// What releases must carry and whom to trust for it (development mode by default).
    pub release_policy: release::ReleasePolicy,
    /// How to reach OCI registries models are registered from (plain-HTTP registries, basic
    /// credentials).
    pub oci: fulcrum_oci::remote::Settings,
    /// The OCI registries (`host[:port]`) versions may be pulled from, besides the plain-HTTP
    /// ones in `oci`. None by default: the registry fetches from nowhere it was not told to.
    pub oci_registries: Vec<String>,
    /// KMS backends the registry's keys may live in (sign-only credentials).
    pub kms: keyring::KmsConfig,
    /// Which client certificates speak for which workloads, and which roles need both.
    pub client_identities: auth::ClientIdentities,
    /// Receivers every committed event is POSTed to, signed.
    pub webhooks: Vec<webhooks::WebhookConfig>,
    /// Write evidence to S3 with Object Lock instead of `<data-dir>/evidence`.
    pub evidence_s3: Option<fulcrum_store::s3::S3Config>,
    /// Relay every committed event to NATS JetStream.
    pub nats: Option<relay::NatsConfig>,
    /// Push decision logs to a SIEM endpoint (OPA's upload format).
    pub decision_log: Option<siem::DecisionLogConfig>,
    /// The web console's session key (32 bytes, shared by replicas so a session works on all);
    /// `None`: a key per process (sessions end when it restarts).
    pub ui_session_key_file: Option<PathBuf>,
    /// The audit ledger's origin (its checkpoints' first line and key name).
    pub ledger_origin: String,
    /// Trusted OIDC issuers; their JWT access tokens are accepted beside the tokens file.
    pub oidc: Vec<fulcrum_oidc::IssuerConfig>,
    /// The console's sign-in client (authorization code + PKCE) at one of the `oidc` issuers.
    pub console_login: Option<fulcrum_oidc::ConsoleLogin>,
    /// Served over HTTPS: URLs the registry hands out (MLflow download URIs) say so.
    pub https: bool,
    /// The MLflow tracking server MLflow clients register versions from.
    pub mlflow_tracking_uri: Option<String>,
    /// Development only: local-path MLflow sources are read from under this directory (without
    /// it they are refused).
    pub mlflow_local_source_root: Option<PathBuf>,
    /// Where `s3://` MLflow sources are read from, and with which keys.
    pub mlflow_s3: Option<mlflow::sources::S3Settings>,
    /// How long `create_model_version` waits for the copy and the release gate before it
    /// answers `PENDING_REGISTRATION` (the client then polls).
    pub mlflow_register_wait: Duration,
    /// The registry's URL as clients reach it (behind a proxy); URLs it hands out (MLflow
    /// download URIs) start with it. `None`: the request's own host.
    pub public_url: Option<String>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: None,
            blob_store: None,
            presign_ttl: Duration::from_secs(60),
            tokens_file: None,
            bootstrap_tenant: "default".into(),
            resolve_ttl: Duration::from_secs(300),
            max_blob_bytes: 64 << 30,
            max_json_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(15),
            release_policy: release::ReleasePolicy::default(),
            oci: fulcrum_oci::remote::Settings::default(),
            oci_registries: vec![],
            kms: keyring::KmsConfig::default(),
            oidc: vec![],
            console_login: None,
            https: false,
            mlflow_tracking_uri: None,
            mlflow_local_source_root: None,
            mlflow_s3: None,
            mlflow_register_wait: Duration::from_secs(10),
            public_url: None,
            ledger_origin: ledger::DEFAULT_ORIGIN.into(),
            nats: None,
            decision_log: None,
            ui_session_key_file: None,
            evidence_s3: None,
            webhooks: vec![],
            client_identities: auth::ClientIdentities::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Tokens(#[from] auth::TokensError),
    #[error("signing keys: {0}")]
    Keys(String),
    #[error("store: {0}")]
    Store(#[from] fulcrum_store::StoreError),
    #[error("blob store: {0}")]
    Blobs(#[from] fulcrum_store::blobs::BlobError),
    #[error("policy: {0}")]
    Policy(String),
    #[error("resolve TTL must be between 10 s and 1 day")]
    Ttl,
    #[error("OIDC: {0}")]
    Oidc(String),
    #[error("evidence store: {0}")]
    Evidence(String),
    #[error("{0}")]
    Config(String),
}

/// The start-up check (SPEC §8): the governance tables must be the projection of the ledgered
/// events. The events are folded from the ledger's leaves (each checked against its leaf hash;
/// a ledger whose events were edited or say impossible things breaks every model), the tables are
/// compared with the result, and every model with a disagreeing row is named in the log and
/// marked divergent in the resolve cache (its answers are signed denies, its governance refused).
/// The fold is handed to the checkpoint signer, which commits to it in the state map.
async fn state_check(store: &Store, catalog: &Catalog) -> Result<ledger::Ledger, OpenError> {
    let size = store.ledger_size().await?;
    let mut projection = fulcrum_core::projection::Projection::default();
    if let Err(e) = ledger::fold(store, &mut projection, 0, size).await {
        // Fail closed but stay inspectable: no answer is a permit, no change is made, no
        // checkpoint is signed; the entries and the last checkpoint stay readable for auditors.
        tracing::error!(error = %e, "the audit ledger gives no governance state: serving nothing until it is repaired");
        catalog.break_all(&format!("ledger_broken: {e}"));
        return Ok(ledger::Ledger::broken(e.to_string()));
    }
    let (versions, aliases) = store.governance_rows().await?;
    let mut by_model: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for d in projection.diff(&versions, &aliases) {
        tracing::error!(tenant = %d.tenant, model = %d.model, divergence = %d.what,
            "a governance row disagrees with the audit ledger: nothing is signed from it");
        by_model.entry((d.tenant, d.model)).or_default().push(d.what);
    }
    for ((tenant, model), whats) in by_model {
        let truth: Vec<_> = projection
            .versions
            .iter()
            .filter(|(k, _)| k.tenant == tenant && k.model == model)
            .map(|(k, v)| (k.version.clone(), v.stage, v.hold))
            .collect();
        catalog.mark_divergent(&tenant, &model, &whats.join("; "), &truth);
    }
    Ok(ledger::Ledger::with_projection(projection, size))
}

/// What happened at start-up that an operator must be told.
#[derive(Debug, Clone, Default)]
pub struct StartupNotes {
    /// The development key was created now.
    pub created_key: Option<PathBuf>,
    /// A tokens file was created now, holding this bootstrap admin token.
    pub created_tokens: Option<(PathBuf, String)>,
    pub development_key: bool,
    pub kid: String,
    /// A host operator's break-glass policy reset was carried out at this start.
    pub policy_reset: Option<policy::ResetRequest>,
}

/// Shared state of a running registry.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub blobs: BlobStore,
    pub keys: Arc<keyring::KeyRing>,
    pub identities: Identities,
    pub oidc: fulcrum_oidc::Issuers,
    pub cert_principals: auth::CertMemo,
    pub ledger: ledger::Ledger,
    /// The write-once evidence store (`<data-dir>/evidence`, or S3 with Object Lock).
    pub evidence: fulcrum_store::worm::EvidenceStore,
    pub catalog: Catalog,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub policies: Arc<policy::Policies>,
    pub access: access::Access,
    pub release_policy: Arc<release::ReleasePolicy>,
    pub write_gate: Mutex<()>,
    pub events_tx: watch::Sender<u64>,
    /// Every committed event, broadcast once to all event streams.
    pub events_fanout: tokio::sync::broadcast::Sender<Arc<fanout::Fanned>>,
    pub shutdown_rx: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    pub started_at: time::OffsetDateTime,
    /// Blobs whose stored bytes were found not to hash to their digest (served to no one until
    /// uploaded again).
    pub corrupt_blobs: std::sync::Mutex<std::collections::HashSet<fulcrum_core::Digest>>,
    /// The relay and the checkpoint signer run once per registry, however many listeners serve it.
    singletons_started: std::sync::atomic::AtomicBool,
    /// This replica's name in leadership terms (host, process, a random part).
    pub replica: String,
    /// The leadership term this replica holds, 0 when it does not lead.
    pub leader_term: std::sync::atomic::AtomicI64,
    /// When this replica last read the log (staleness bound, see [`follow`]).
    pub view: follow::View,
    /// Per-version serving and startup signals summed from the log (see [`signals`]).
    pub signals: signals::Signals,
    /// Seals the web console's session cookies and derives their CSRF tokens.
    pub ui_key: ui::SessionKey,
    /// The console's OIDC sign-in, when configured.
    pub ui_login: Option<fulcrum_oidc::LoginClient>,
    /// The console's dashboards kept between views (see [`ui::Folds`]).
    pub ui_folds: ui::Folds,
}

/// Bytes signed once and served many times.
#[derive(Debug)]
pub struct SignedBlob {
    pub body: axum::body::Bytes,
    pub signature: axum::http::HeaderValue,
    pub kid: axum::http::HeaderValue,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct Registry;

impl Registry {
    /// Open every adapter under the data dir. Nothing listens yet.
    ///
    /// # Errors
    /// Any configuration or adapter failure, with the file or setting named.
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<(AppState, StartupNotes), OpenError> {
        if config.resolve_ttl < Duration::from_secs(10) || config.resolve_ttl > Duration::from_secs(86_400) {
            return Err(OpenError::Ttl);
        }
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| OpenError::DataDir(dir.display().to_string(), e))?;
        let mut notes = StartupNotes::default();

        let tokens_path = config.tokens_file.clone().unwrap_or_else(|| dir.join("tokens.json"));
        if config.tokens_file.is_none() && !tokens_path.exists() {
            let token = TokensFile::bootstrap(&tokens_path, &config.bootstrap_tenant)?;
            notes.created_tokens = Some((tokens_path.clone(), token));
        }
        let identities = Identities::from_file(&TokensFile::load(&tokens_path)?)?;
        let oidc = fulcrum_oidc::Issuers::new(config.oidc.clone()).map_err(OpenError::Oidc)?;
        // An IdP down at start-up does not stop the registry: its tokens are refused until its
        // keys can be fetched.
        for (issuer, error) in oidc.prefetch().await {
            tracing::warn!(%issuer, %error, "cannot fetch the issuer's keys yet; its tokens are refused until then");
        }

        let database = config
            .database
            .clone()
            .unwrap_or_else(|| fulcrum_store::Database::Sqlite { path: dir.join("registry.db") });
        let store = Store::connect(&database, StoreOptions::default()).await?;
        let blobs = match &config.blob_store {
            None => BlobStore::open(&dir.join("blobs"))?,
            Some(s3) => BlobStore::open_s3(s3.clone(), &dir.join("blob-spool")).await?,
        };
        tracing::info!(database = %database.display(), blobs = %blobs.describe(), "storage opened");
        let evidence = match &config.evidence_s3 {
            None => fulcrum_store::worm::EvidenceStore::Local(
                fulcrum_store::worm::LocalWorm::open(&dir.join("evidence"))
                    .map_err(|e| OpenError::Evidence(e.to_string()))?,
            ),
            Some(c) => {
                let s3 = fulcrum_store::s3::S3Worm::new(c.clone()).map_err(|e| OpenError::Evidence(e.to_string()))?;
                s3.ensure_bucket().await.map_err(|e| OpenError::Evidence(e.to_string()))?;
                fulcrum_store::worm::EvidenceStore::S3(s3)
            }
        };
        let backends = Box::new(keyring::KmsBackends { data_dir: dir.clone(), kms: config.kms.clone() });
        let (keys, created_key) =
            keyring::KeyRing::load(&store, dir, backends, clock.now()).await.map_err(OpenError::Keys)?;
        let keys = Arc::new(keys);
        notes.created_key = created_key;
        notes.development_key = keys.current().is_development_key();
        notes.kid = keys.current().kid().to_owned();
        notes.policy_reset = policy::break_glass_reset(&store, keys.current().as_ref(), dir, clock.now())
            .await
            .map_err(|e| OpenError::Policy(e.to_string()))?;
        if let Some(r) = &notes.policy_reset {
            tracing::warn!(requested_by = %r.requested_by, requested_at = %r.requested_at, reason = %r.reason,
                "BREAK-GLASS: the shipped default policy is in force again (recorded and announced as policy_changed)");
        }
        let policies = policy::Policies::load(&store, keys.current().as_ref(), clock.now())
            .await
            .map_err(|e| OpenError::Policy(e.to_string()))?;
        let policies = Arc::new(policies);
        let ttl = time::Duration::try_from(config.resolve_ttl).map_err(|_| OpenError::Ttl)?;
        let catalog = Catalog::new(keys.clone(), policies.clone(), ttl);
        // Read before the cache loads: the follower replays from here, so a commit made by another
        // replica while this one loads is applied too.
        let followed_from = store.last_event_seq().await?;
        catalog.load_models(&store.all_models().await?);
        {
            use futures_util::TryStreamExt;
            let mut versions = std::pin::pin!(store.versions_brief());
            while let Some(v) = versions.try_next().await? {
                catalog.load_version(&v);
            }
        }
        catalog.load_aliases(store.all_aliases().await?);
        let ledger = state_check(&store, &catalog).await?;
        catalog.refresh_all(clock.now());

        let (events_tx, commits) = watch::channel(0);
        let events_fanout = fanout::channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let started_at = clock.now();
        let release_policy = Arc::new(config.release_policy.clone());
        let access = access::Access::start(store.clone());
        let ui_key = match &config.ui_session_key_file {
            Some(f) => {
                ui::SessionKey::from_file(f).map_err(|e| OpenError::Config(format!("--ui-session-key-file: {e}")))?
            }
            None => ui::SessionKey::random(),
        };
        let ui_login = match &config.console_login {
            Some(c) if config.oidc.iter().any(|i| i.issuer == c.issuer) => Some(
                fulcrum_oidc::LoginClient::new(c.clone())
                    .map_err(|e| OpenError::Config(format!("console login: {e}")))?,
            ),
            Some(c) => return Err(OpenError::Config(format!("console login: {} is not a trusted issuer", c.issuer))),
            None => None,
        };
        let state = AppState(Arc::new(Inner {
            ui_key,
            ui_login,
            ui_folds: ui::Folds::default(),
            release_policy,
            config,
            store,
            blobs,
            keys,
            identities,
            oidc,
            cert_principals: auth::CertMemo::default(),
            ledger,
            evidence,
            catalog,
            clock,
            metrics: Metrics::default(),
            access,
            policies,
            write_gate: Mutex::new(()),
            events_tx,
            events_fanout,
            shutdown_rx,
            shutdown_tx,
            started_at,
            corrupt_blobs: std::sync::Mutex::default(),
            singletons_started: std::sync::atomic::AtomicBool::new(false),
            replica: replica_name(),
            leader_term: std::sync::atomic::AtomicI64::new(0),
            view: follow::View::default(),
            signals: signals::Signals::default(),
        }));
        // The watchers' notices raised before this start (drift, revalidation): read back, so
        // none is raised twice and a detected drift can still be cleared.
        let mut raised = Vec::new();
        for kind in [
            fulcrum_core::event::EventKind::DriftDetected,
            fulcrum_core::event::EventKind::DriftCleared,
            fulcrum_core::event::EventKind::RevalidationDue,
            fulcrum_core::event::EventKind::RevalidationOverdue,
        ] {
            raised.extend(
                state.store.events_of_kind(kind, followed_from).await?.into_iter().map(|e| (e.seq, kind, e.body)),
            );
        }
        // In log order across kinds: a drift detected, cleared and detected again is detected.
        raised.sort_by_key(|(seq, ..)| *seq);
        for (_, kind, body) in raised {
            state.signals.observe(kind.as_str(), &body, state.clock.now());
        }
        follow::start(&state, followed_from, commits);
        Ok((state, notes))
    }

    /// Open with the system clock.
    ///
    /// # Errors
    /// As [`Registry::open`].
    pub async fn open_default(config: Config) -> Result<(AppState, StartupNotes), OpenError> {
        Self::open(config, Arc::new(SystemClock)).await
    }
}

impl AppState {
    /// Make one change the way every handler makes one (SPEC §11): under this replica's write
    /// gate, `write` runs (one store transaction, given the time of the change); its effect is
    /// applied to this replica's caches at once by `apply` (so a caller reads its own write on the
    /// replica it wrote through); then the log reader is woken, which hands the change's events
    /// to the event streams — and which is how every other replica applies the same change (see
    /// [`follow`]). The gate keeps a follower's reload from landing after a newer local apply.
    ///
    /// # Errors
    /// Whatever `write` returns; nothing is applied then.
    pub async fn commit<T, E>(
        &self,
        write: impl AsyncFnOnce(time::OffsetDateTime) -> Result<T, E>,
        apply: impl FnOnce(&T, time::OffsetDateTime),
    ) -> Result<T, E> {
        let gate = self.write_gate.lock().await;
        let at = self.clock.now();
        let out = write(at).await?;
        apply(&out, at);
        drop(gate);
        self.notify_events();
        Ok(out)
    }

    /// A version's reference profile by digest (read from the blob store once, then kept).
    ///
    /// # Errors
    /// The blob store failing, or bytes that are not a profile (they were checked when the
    /// version was registered: a 500 here means they changed).
    pub async fn reference_profile(
        &self,
        d: &fulcrum_core::Digest,
    ) -> Result<Arc<fulcrum_core::drift::Profile>, problem::ApiError> {
        if let Some(p) = self.signals.profile(d) {
            return Ok(p);
        }
        let bytes = self.blobs.read(d).await?;
        let p = Arc::new(
            fulcrum_core::drift::Profile::parse(&bytes)
                .map_err(|e| problem::ApiError::internal(&format!("reference profile {d}: {e}")))?,
        );
        self.signals.keep_profile(*d, p.clone());
        Ok(p)
    }

    /// Wake the log reader (and through it the event streams) after a commit.
    pub fn notify_events(&self) {
        self.events_tx.send_modify(|n| *n += 1);
    }

    /// After a change of signing key: re-sign the policy snapshot in force and every cached
    /// resolve document, so nothing handed out carries a signature a verifier would refuse.
    pub fn resign_everything(&self) {
        if let Err(e) = self.policies.resign(self.keys.current().as_ref()) {
            tracing::error!(error = %e, "re-signing the policy snapshot failed; it keeps the previous signature");
        }
        self.catalog.resign_all(self.clock.now());
    }

    /// Tell long-lived responses (event streams) to finish so shutdown can complete.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }
}

/// Run code that may block on a signing backend (PKCS#11, Vault over HTTP). On the
/// multi-threaded runtime the worker first hands its queued tasks to another thread
/// (`block_in_place`), so nothing waiting behind it starves — requests, event streams, or an
/// in-process Transit endpoint. On a current-thread runtime it simply runs.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What the listeners serve: the router behind the [edge](edge) (metrics, body deadlines).
pub fn app(state: AppState) -> edge::Edge {
    edge::Edge::new(routes::router(state.clone()), state)
}

/// How often the audit ledger's tree is built over new leaves and a checkpoint signed.
const LEDGER_EVERY: Duration = Duration::from_secs(1);

/// A replica's name: its host, its process and a random part (several registries may share a
/// process in tests and in `fulcrum demo`).
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map_or_else(|| "host".to_owned(), |h| h.trim().to_owned());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &nonce[..8])
}

/// How often a replica that does not lead tries to, and how often the leader confirms it still
/// does (its session answers and no newer term exists).
const LEAD_EVERY: Duration = Duration::from_secs(1);

/// The work one replica does for all (the event relay, webhooks, audit checkpoints): started by
/// whichever replica holds leadership (`fulcrum_store::leader`), stopped the moment it learns it
/// lost it, and started by the next leader. On SQLite the only process always leads.
fn spawn_singletons(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut shutdown = state.shutdown_rx.clone();
        loop {
            match state.store.try_lead(&state.replica, state.clock.now()).await {
                Ok(Some(lease)) => {
                    if lead(&state, lease).await == Led::UntilShutdown {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot reach the database to take leadership; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(LEAD_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

#[derive(Debug, PartialEq, Eq)]
enum Led {
    UntilShutdown,
    UntilLost,
}

/// Run the background work while `lease` holds; abort it when leadership is lost (its writes are
/// idempotent or fenced, so the successor resumes from what was stored).
async fn lead(state: &AppState, mut lease: fulcrum_store::leader::Lease) -> Led {
    tracing::info!(term = lease.term(), replica = %state.replica, "this replica leads the background work");
    state.leader_term.store(lease.term(), std::sync::atomic::Ordering::SeqCst);
    let mut jobs = Vec::new();
    if let Some(cfg) = state.config.nats.clone() {
        jobs.push(relay::spawn(state.clone(), cfg));
    }
    for cfg in state.config.webhooks.clone() {
        let name = cfg.name.clone();
        match webhooks::spawn(state.clone(), cfg) {
            Ok(job) => jobs.push(job),
            Err(e) => tracing::error!(webhook = %name, error = %e, "webhook not started: its secret cannot be read"),
        }
    }
    if let Some(cfg) = state.config.decision_log.clone() {
        jobs.push(siem::spawn(state.clone(), cfg));
    }
    jobs.push(watchers::spawn(state.clone()));
    let fence = lease.fence();
    let signer = state.clone();
    jobs.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEDGER_EVERY).await;
            if let Err(e) = signer.ledger.checkpoint_as(&signer, time::Duration::ZERO, Some(fence)).await {
                tracing::error!(error = %e, "signing an audit checkpoint failed");
            }
        }
    }));
    let mut shutdown = state.shutdown_rx.clone();
    let led = loop {
        tokio::select! {
            () = tokio::time::sleep(LEAD_EVERY) => {}
            _ = shutdown.changed() => break Led::UntilShutdown,
        }
        match state.store.still_leads(&mut lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(term = lease.term(), "leadership lost: this replica stops the background work");
                break Led::UntilLost;
            }
            Err(e) => {
                tracing::warn!(term = lease.term(), error = %e, "leadership cannot be confirmed: this replica stops the background work");
                break Led::UntilLost;
            }
        }
    };
    for job in jobs {
        job.abort();
    }
    state.leader_term.store(0, std::sync::atomic::Ordering::SeqCst);
    led
}

/// How often a replica records its heartbeat (`GET /v1/cluster`).
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// Record this replica's heartbeat every [`BEAT_EVERY`] until shutdown.
fn spawn_heartbeat(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut shutdown = state.shutdown_rx.clone();
        loop {
            let beat = fulcrum_store::replicas::Beat {
                name: state.replica.clone(),
                started_at: state.started_at,
                seen_at: state.clock.now(),
                applied_seq: state.view.applied(),
                view_age_ms: i64::try_from(state.view.age().as_millis()).unwrap_or(i64::MAX),
                leader_term: state.leader_term.load(std::sync::atomic::Ordering::SeqCst),
                build: env!("CARGO_PKG_VERSION").into(),
            };
            // A database away is reported by the follower and the leader; the beat just waits.
            if let Err(e) = state.store.heartbeat(&beat).await {
                tracing::debug!(error = %e, "recording this replica's heartbeat failed");
            }
            tokio::select! {
                () = tokio::time::sleep(BEAT_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// Run the background tasks (resolve document refresh; once per registry, the event relay and
/// audit checkpoints) until shutdown.
pub fn spawn_background(state: &AppState) -> tokio::task::JoinHandle<()> {
    if !state.singletons_started.swap(true, std::sync::atomic::Ordering::SeqCst) {
        spawn_singletons(state);
        spawn_heartbeat(state);
    }
    let state = state.clone();
    tokio::spawn(async move {
        let period = (state.catalog.ttl() / 4i32).unsigned_abs();
        let mut shutdown = state.shutdown_rx.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {
                    let now = state.clock.now();
                    state.catalog.refresh_all(now);
                    // The leader re-issues the trust bundle at half its lifetime; the others
                    // take the newest one stored (a re-issue is not an event).
                    if state.leader_term.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                        if let Err(e) = state.keys.refresh_bundle(&state.store, now).await {
                            tracing::error!(error = %e, "re-issuing the trust bundle failed");
                        }
                    } else {
                        match state.keys.follow(&state.store).await {
                            Ok(false) => {}
                            Ok(true) => state.resign_everything(),
                            Err(e) => tracing::warn!(error = %e, "reading the newest trust bundle failed"),
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Serve plain HTTP on `listener` until `shutdown` resolves, then drain in-flight requests.
///
/// # Errors
/// Listener failures.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bg = spawn_background(&state);
    let st = state.clone();
    let state_for_flush = state.clone();
    let result = axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(app(state)),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        st.begin_shutdown();
    })
    .await;
    bg.abort();
    state_for_flush.access.flush().await;
    result
}
