//! A real registry in-process on loopback, people to drive it, and an agent for it.
#![allow(dead_code)]

use std::path::Path;

use fulcrum_agent::fetch::Agent;
use fulcrum_agent::state::StateDir;
use fulcrum_client::Client;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_server::loopback::{Person, Setup};
use serde_json::{Value, json};

const PEOPLE: &[(&str, Role, Option<Env>)] = &[
    ("ci", Role::Publisher, None),
    ("rm", Role::ReleaseManager, None),
    ("ana", Role::Approver, None),
    ("bo", Role::SecurityOfficer, None),
    ("agent", Role::Serving, Some(Env::Prod)),
    ("keys", Role::KeyAdmin, None),
    ("policy", Role::PolicyAdmin, None),
];

pub struct Reg {
    pub url: String,
    pub dir: tempfile::TempDir,
    server: fulcrum_server::loopback::Running,
}

impl Reg {
    /// Take the registry down (graceful stop; the port no longer answers).
    pub async fn down(&mut self) {
        self.server.stop().await.unwrap();
    }
}

/// The test identities: token `tok-<who>`, tenant `acme`.
pub fn people() -> Vec<Person> {
    PEOPLE
        .iter()
        .map(|(who, role, env)| Person { subject: (*who).into(), token: format!("tok-{who}"), role: *role, env: *env })
        .collect()
}

pub async fn registry() -> Reg {
    registry_with_clock(std::sync::Arc::new(fulcrum_server::clock::SystemClock)).await
}

/// A registry whose configuration is adjusted by `tune` (e.g. PostgreSQL and S3 storage).
pub async fn registry_tuned(tune: impl FnOnce(&mut fulcrum_server::Config)) -> Reg {
    registry_full(std::sync::Arc::new(fulcrum_server::clock::SystemClock), tune).await
}

/// A registry whose time is `clock` (e.g. one running ahead, for clock-skew attacks).
pub async fn registry_with_clock(clock: std::sync::Arc<dyn fulcrum_server::clock::Clock>) -> Reg {
    registry_full(clock, |_| {}).await
}

async fn registry_full(
    clock: std::sync::Arc<dyn fulcrum_server::clock::Clock>,
    tune: impl FnOnce(&mut fulcrum_server::Config),
) -> Reg {
    registry_in(tempfile::tempdir().unwrap(), clock, tune).await
}

/// Another replica of `first` on the storage `tune` names (replicas sign with one key: here the
/// first one's key file, in production an HSM/KMS key).
pub async fn replica_of(first: &Reg, tune: impl FnOnce(&mut fulcrum_server::Config)) -> Reg {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let key = "data/signing-key.pk8";
    std::fs::copy(first.dir.path().join(key), dir.path().join(key)).unwrap();
    registry_in(dir, std::sync::Arc::new(fulcrum_server::clock::SystemClock), tune).await
}

async fn registry_in(
    dir: tempfile::TempDir,
    clock: std::sync::Arc<dyn fulcrum_server::clock::Clock>,
    tune: impl FnOnce(&mut fulcrum_server::Config),
) -> Reg {
    let people = people();
    let setup = Setup {
        data_dir: &dir.path().join("data"),
        tokens_file: &dir.path().join("tokens.json"),
        tenant: "acme",
        domain: "*",
        people: &people,
    };
    let server = fulcrum_server::loopback::start_with(&setup, clock, tune, None).await.unwrap();
    Reg { url: server.url.clone(), dir, server }
}

pub fn as_(r: &Reg, who: &str) -> Client {
    Client::new(&r.url, Some(format!("tok-{who}"))).unwrap()
}

pub async fn register(r: &Reg, version: &str, files: &[(&str, &[u8])]) {
    register_as(r, "fraud", version, files, json!({"owner": "fraud", "intended_use": "scoring"}), "production").await;
}

/// Register a version of `model` with `card`, take it to Approved and point `alias` at it.
pub async fn register_as(r: &Reg, model: &str, version: &str, files: &[(&str, &[u8])], card: Value, alias: &str) {
    let ci = as_(r, "ci");
    let mut entries = vec![];
    for (path, bytes) in files {
        let d = ci.upload_bytes(bytes.to_vec()).await.unwrap();
        entries.push(json!({"path": path, "size": bytes.len(), "digest": d.to_string()}));
    }
    ci.post(
        &format!("/v1/models/{model}/versions"),
        &json!({"version": version, "files": entries, "model_card": card, "revalidate_by": "2099-01-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    approve_and_alias(r, model, version, alias).await;
}

/// Take a registered version to Approved (two approvals, a change id) and point `alias` at it.
pub async fn approve_and_alias(r: &Reg, model: &str, version: &str, alias: &str) {
    let v = format!("/v1/models/{model}/versions/{version}");
    as_(r, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
    as_(r, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(r, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(r, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-T"})).await.unwrap();
    as_(r, "rm")
        .put(&format!("/v1/models/{model}/aliases/{alias}"), &json!({"version": version, "chg_id": "CHG-1"}))
        .await
        .unwrap();
}

pub async fn agent(r: &Reg, state: &Path) -> Agent {
    let client = as_(r, "agent");
    let bundle = client.trust_bundle().await.unwrap();
    Agent::new(client, bundle, StateDir::open(state).unwrap(), time::Duration::seconds(30), "test-agent".into())
}

pub fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap()
}

/// A key-admin rotates the registry onto a new local key (written under its data dir); returns
/// the new trust bundle version.
pub async fn rotate_key(r: &Reg) -> u64 {
    let dir = r.dir.path().join("data/keys");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("k{}.pk8", std::fs::read_dir(&dir).unwrap().count());
    use fulcrum_sign::Signer as _;
    let key = fulcrum_sign::LocalKey::generate(&dir.join(&name), fulcrum_sign::Alg::Ed25519).unwrap();
    let ack = as_(r, "keys")
        .post(
            "/v1/keys",
            &json!({"public_key": key.public_key().to_pem(), "backend": "local", "backend_ref": format!("keys/{name}")}),
        )
        .await
        .unwrap();
    ack["trust_bundle_version"].as_u64().unwrap_or_else(|| panic!("{ack}"))
}

/// A registry with model `fraud` whose `production` alias serves `v1` (`weights.bin` =
/// `weights-one`).
pub async fn fraud_v1() -> Reg {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    r
}

/// A guard on `fraud@production` placing into `dest`, adjusted by `tune`, running until the test
/// ends, and ready (its first permit).
pub async fn serving_guard(
    r: &Reg,
    state: &Path,
    dest: std::path::PathBuf,
    tune: impl FnOnce(&mut fulcrum_agent::guard::Guard),
) -> std::sync::Arc<fulcrum_agent::guard::Guard> {
    use fulcrum_agent::guard::{Guard, Layout};
    let mut g = Guard::new(agent(r, state).await, "fraud@production", "prod", Layout::Dir(dest));
    tune(&mut g);
    let guard = std::sync::Arc::new(g);
    let run = guard.clone();
    tokio::spawn(async move { run.run(std::future::pending::<()>()).await });
    until("the first permit", || guard.is_ready()).await;
    guard
}

/// Wait (5 ms steps, at most 20 s) until `f` holds.
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// How a pinned bundle names `k`: valid from `from` until `until`, with `status`.
pub fn published(
    k: &fulcrum_sign::LocalKey,
    from: &str,
    until: Option<&str>,
    status: fulcrum_sign::KeyStatus,
) -> fulcrum_sign::PublishedKey {
    use fulcrum_sign::Signer as _;
    fulcrum_sign::PublishedKey {
        kid: k.kid().to_owned(),
        alg: k.public_key().alg(),
        public_key: fulcrum_sign::b64(k.public_key().spki_der()),
        valid_from: from.into(),
        valid_until: until.map(str::to_owned),
        status,
        development: false,
    }
}

/// What a man in the middle answers instead of the registry, by path and query: headers and body.
pub type Canned = std::sync::Arc<dyn Fn(&str) -> Option<(Vec<(String, String)>, Vec<u8>)> + Send + Sync>;

/// A man in the middle in front of a registry: every request is passed through, except those
/// `canned` answers itself. Returns the proxy's URL.
pub async fn proxy(registry: &str, canned: Canned) -> String {
    use axum::body::Body;
    use axum::extract::Request;
    let upstream = registry.to_owned();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (client, upstream, canned) = (client.clone(), upstream.clone(), canned.clone());
        async move {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
            if req.method() == axum::http::Method::GET
                && let Some((headers, body)) = canned(&target)
            {
                let mut out = axum::response::Response::builder().status(200).header("content-length", body.len());
                for (k, v) in headers {
                    out = out.header(k, v);
                }
                return out.body(Body::from(body)).unwrap();
            }
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
            let mut rb = client.request(parts.method.clone(), format!("{upstream}{target}"));
            for (k, v) in &parts.headers {
                if k != "host" {
                    rb = rb.header(k, v);
                }
            }
            let resp = rb.body(body).send().await.unwrap();
            let mut out = axum::response::Response::builder().status(resp.status().as_u16());
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            out.body(Body::from(resp.bytes().await.unwrap())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A man in the middle that answers `GET /v1/blobs/<digest>` with `bytes` (so the agent's own
/// verification is what stands between it and altered files).
pub async fn lying_proxy(registry: &str, digest: fulcrum_core::Digest, bytes: &'static [u8]) -> String {
    let lie = format!("/v1/blobs/{digest}");
    proxy(registry, std::sync::Arc::new(move |t: &str| (t == lie).then(|| (vec![], bytes.to_vec())))).await
}

/// A man in the middle that answers every resolve with one recorded answer (body, kid,
/// signature), byte for byte.
pub async fn replaying_proxy(registry: &str, answer: (Vec<u8>, String, String)) -> String {
    let (body, kid, sig) = answer;
    proxy(
        registry,
        std::sync::Arc::new(move |t: &str| {
            t.starts_with("/v1/resolve?").then(|| {
                let headers = vec![
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("fulcrum-key-id".to_owned(), kid.clone()),
                    ("fulcrum-signature".to_owned(), sig.clone()),
                ];
                (headers, body.clone())
            })
        }),
    )
    .await
}

/// An agent for the registry behind `url` (e.g. a proxy), trusting the registry `r`'s bundle.
pub async fn agent_via(r: &Reg, url: &str, state: &Path) -> Agent {
    let bundle = as_(r, "agent").trust_bundle().await.unwrap();
    let client = Client::new(url, Some("tok-agent".into())).unwrap();
    Agent::new(client, bundle, StateDir::open(state).unwrap(), time::Duration::seconds(30), "test-agent".into())
}
