//! Test harness: a real registry on 127.0.0.1:0 with a temp data dir and one identity per role.

#![allow(dead_code)]

use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_core::{Digest, FileEntry, Manifest};
use fulcrum_server::auth::{TokenEntry, TokensFile};
use fulcrum_server::{Config, Registry};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub struct Harness {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub const PEOPLE: &[(&str, Role, &str, &str, Option<Env>)] = &[
    ("admin", Role::Admin, "acme", "*", None),
    ("ci", Role::Publisher, "acme", "*", None),
    ("ana", Role::Approver, "acme", "*", None),
    ("bo", Role::SecurityOfficer, "acme", "*", None),
    ("rm", Role::ReleaseManager, "acme", "*", None),
    ("viewer", Role::Viewer, "acme", "*", None),
    ("agent", Role::Serving, "acme", "*", Some(Env::Prod)),
    ("agent-dev", Role::Serving, "acme", "*", Some(Env::Dev)),
    ("keys", Role::KeyAdmin, "acme", "*", None),
    ("policy", Role::PolicyAdmin, "acme", "*", None),
    ("auditor", Role::Auditor, "acme", "*", None),
    ("fraud-ci", Role::Publisher, "acme", "fraud", None),
    ("other-admin", Role::Admin, "globex", "*", None),
    ("other-ci", Role::Publisher, "globex", "*", None),
];

/// System time moved by a settable number of seconds.
#[derive(Debug, Default)]
pub struct ShiftedClock(pub std::sync::atomic::AtomicI64);

impl ShiftedClock {
    pub fn shift(&self, secs: i64) {
        self.0.store(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl fulcrum_server::clock::Clock for ShiftedClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::seconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// The tests' HTTP client: a request that gets no answer fails after a minute instead of hanging.
fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap()
}

pub fn token(who: &str) -> String {
    format!("test-token-{who}")
}

impl Harness {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_with(dir, |_| {}).await
    }

    /// Start with a config adjusted by `tune` (e.g. a release policy).
    pub async fn start_with(dir: tempfile::TempDir, tune: impl FnOnce(&mut Config)) -> Self {
        Self::start_clocked(dir, std::sync::Arc::new(fulcrum_server::clock::SystemClock), tune).await
    }

    /// As [`Harness::start_with`], with the registry reading time from `clock`.
    pub async fn start_clocked(
        dir: tempfile::TempDir,
        clock: std::sync::Arc<dyn fulcrum_server::clock::Clock>,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_full(dir, clock, None, tune).await
    }

    /// Serve HTTPS (and mutual TLS, if `tls` asks for client certificates) at
    /// `https://localhost:<port>`; `http` is a plain client (tests build their own TLS clients).
    pub async fn start_tls(
        dir: tempfile::TempDir,
        tls: fulcrum_server::TlsFiles,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_full(dir, std::sync::Arc::new(fulcrum_server::clock::SystemClock), Some(tls), tune).await
    }

    /// Where uploads are spooled before they are published (empty between uploads).
    pub fn spool_dir(&self) -> std::path::PathBuf {
        let rel = if scale_out::current().is_some() { "data/blob-spool" } else { "data/blobs/tmp" };
        self.dir.path().join(rel)
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    async fn start_full(
        dir: tempfile::TempDir,
        clock: std::sync::Arc<dyn fulcrum_server::clock::Clock>,
        tls: Option<fulcrum_server::TlsFiles>,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tokens_path = dir.path().join("tokens.json");
        if !tokens_path.exists() {
            let file = TokensFile {
                tokens: PEOPLE
                    .iter()
                    .map(|(who, role, tenant, domain, env)| TokenEntry {
                        token: Some(token(who)),
                        token_sha256: None,
                        subject: (*who).into(),
                        role: *role,
                        tenant: (*tenant).into(),
                        domain: (*domain).into(),
                        env: *env,
                        purpose: None,
                    })
                    .collect(),
            };
            file.write_new(&tokens_path).unwrap();
        }
        let mut config = Config::new(dir.path().join("data"));
        config.tokens_file = Some(tokens_path);
        config.max_blob_bytes = 8 << 20;
        if let Some(s) = scale_out::current() {
            s.configure(&mut config);
        }
        tune(&mut config);
        let (state, _) = Registry::open(config, clock).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async {
            let _ = rx.await;
        };
        let (url, task) = match tls {
            None => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                (url, tokio::spawn(fulcrum_server::serve(state, listener, stop)))
            }
            Some(files) => {
                // Bound here and handed over: the address is ours before the server task runs.
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port();
                let task = tokio::spawn(async move { fulcrum_server::serve_tls(state, listener, &files, stop).await });
                (format!("https://localhost:{port}"), task)
            }
        };
        Self { url, dir, http: client(), stop: Some(tx), task: Some(task) }
    }

    /// Stop the server gracefully and hand back its data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        self.dir
    }

    pub fn req(&self, who: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.url, path));
        if who.is_empty() { rb } else { rb.bearer_auth(token(who)) }
    }

    /// Send, assert the status, return the JSON body (or Null). Every error must be problem+json.
    pub async fn call(&self, rb: reqwest::RequestBuilder, expect: StatusCode) -> Value {
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let text = resp.text().await.unwrap();
        assert_eq!(status, expect, "unexpected status; body: {text}");
        if !status.is_success() {
            assert_eq!(ctype, "application/problem+json", "errors are problem+json: {text}");
            if text.is_empty() {
                return Value::Null; // HEAD answers carry no body
            }
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["type"].as_str().unwrap().starts_with("urn:fulcrum:problem:"), "{v}");
            assert_eq!(v["status"], status.as_u16());
            return v;
        }
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    pub async fn get(&self, who: &str, path: &str, expect: StatusCode) -> Value {
        self.call(self.req(who, Method::GET, path), expect).await
    }
    pub async fn post(&self, who: &str, path: &str, body: Value, expect: StatusCode) -> Value {
        self.call(self.req(who, Method::POST, path).json(&body), expect).await
    }
    pub async fn put(&self, who: &str, path: &str, body: Value, expect: StatusCode) -> Value {
        self.call(self.req(who, Method::PUT, path).json(&body), expect).await
    }
    pub async fn delete(&self, who: &str, path: &str, body: Value, expect: StatusCode) -> Value {
        self.call(self.req(who, Method::DELETE, path).json(&body), expect).await
    }

    pub async fn upload(&self, who: &str, bytes: &[u8]) -> Digest {
        let v = self.call(self.req(who, Method::POST, "/v1/blobs").body(bytes.to_vec()), StatusCode::CREATED).await;
        v["digest"].as_str().unwrap().parse().unwrap()
    }

    /// Upload bytes that may already be stored; returns their digest.
    pub async fn upload_any(&self, who: &str, bytes: &[u8]) -> Digest {
        let resp = self.req(who, Method::POST, "/v1/blobs").body(bytes.to_vec()).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        Digest::of(bytes)
    }

    pub async fn create_model(&self, who: &str, name: &str) -> Value {
        self.post(
            who,
            "/v1/models",
            json!({"name": name, "domain": "risk", "description": "test"}),
            StatusCode::CREATED,
        )
        .await
    }

    /// Upload files and register a version; returns (body, manifest).
    pub async fn register(&self, who: &str, model: &str, version: &str, files: &[(&str, &[u8])]) -> (Value, Manifest) {
        let mut entries = Vec::new();
        for (path, bytes) in files {
            let d = Digest::of(bytes);
            // 201 for new bytes, 200 for bytes another version already brought.
            let resp = self.req(who, Method::PUT, &format!("/v1/blobs/{d}")).body(bytes.to_vec()).send().await.unwrap();
            assert!(matches!(resp.status(), StatusCode::CREATED | StatusCode::OK), "{}", resp.status());
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["size"], bytes.len());
            entries.push(FileEntry { path: (*path).into(), size: bytes.len() as u64, digest: d });
        }
        let m = Manifest::new(entries).unwrap();
        let body = self
            .post(
                who,
                &format!("/v1/models/{model}/versions"),
                json!({"version": version, "files": m.files(), "chg_id": "CHG-1",
                       "model_card": {"owner": "risk-analytics", "intended_use": "credit scoring"},
                       "revalidate_by": "2099-01-01T00:00:00Z"}),
                StatusCode::CREATED,
            )
            .await;
        (body, m)
    }

    /// Candidate → Staging → Approved with four-eyes.
    pub async fn approve_fully(&self, model: &str, version: &str) {
        let v = format!("/v1/models/{model}/versions/{version}");
        self.post("rm", &format!("{v}/promotions"), json!({"to": "Staging", "chg_id": "CHG-2"}), StatusCode::OK).await;
        self.post("ana", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
        self.post("bo", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
        self.post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-3"}), StatusCode::OK).await;
    }

    pub async fn events(&self, who: &str) -> Vec<Value> {
        self.get(who, "/v1/events?after=0&limit=1000", StatusCode::OK).await["events"].as_array().unwrap().clone()
    }

    pub async fn event_kinds(&self, who: &str) -> Vec<String> {
        self.events(who).await.iter().map(|e| e["data"]["event"].as_str().unwrap().to_owned()).collect()
    }
}

/// Convenience: a registered, fully approved model version with `production` pointing at it.
pub async fn with_production(h: &Harness, model: &str) {
    h.create_model("ci", model).await;
    h.register("ci", model, "v1", &[("weights.bin", b"one")]).await;
    h.approve_fully(model, "v1").await;
    h.put(
        "rm",
        &format!("/v1/models/{model}/aliases/production"),
        json!({"version": "v1", "chg_id": "CHG-9"}),
        StatusCode::OK,
    )
    .await;
}

/// The scale-out storage (PostgreSQL + S3 on SeaweedFS) for a suite written for the embedded
/// default: `on_scale_out!(test_a, test_b)` adds `scale_out::test_a` … which run the same test
/// bodies with every registry the harness starts on one private PostgreSQL database and one S3
/// bucket (kept across the restarts a test makes, removed when it ends).
pub mod scale_out {
    use std::sync::{Arc, Mutex};

    pub use fulcrum_server::testing::ScaleOut as Services;

    static CURRENT: Mutex<Option<Arc<Services>>> = Mutex::new(None);

    /// The services in use by this test process, if a scale-out test started them.
    pub fn current() -> Option<Arc<Services>> {
        CURRENT.lock().unwrap().clone()
    }

    /// Stops the services when the test ends (also when it panics).
    pub struct Guard(#[allow(dead_code)] Arc<Services>);

    impl Drop for Guard {
        fn drop(&mut self) {
            CURRENT.lock().unwrap().take();
        }
    }

    /// Start PostgreSQL and SeaweedFS (`None` only locally, when they are not installed).
    pub fn start() -> Option<Guard> {
        let s = Arc::new(Services::start_blocking()?);
        *CURRENT.lock().unwrap() = Some(s.clone());
        Some(Guard(s))
    }
}

/// Run the named tests again on the scale-out storage (see [`scale_out`]).
#[macro_export]
macro_rules! on_scale_out {
    ($($t:ident),* $(,)?) => {
        mod scale_out {
            $(
                #[test]
                fn $t() {
                    let Some(_services) = $crate::common::scale_out::start() else { return };
                    super::$t();
                }
            )*
        }
    };
}
