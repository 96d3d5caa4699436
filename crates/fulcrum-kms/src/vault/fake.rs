//! An in-process Vault Transit fake for tests (no Vault server can be installed here). It follows
//! the documented wire format: `POST/GET /v1/transit/keys/:name`, `POST …/keys/:name/rotate`,
//! `POST /v1/transit/sign/:name[/:hash]` (`input`, `key_version`, `marshaling_algorithm`
//! asn1|jws, answer `vault:vN:<b64>`), `POST /v1/transit/verify/:name`, `GET
//! /v1/transit/export/signing-key/:name`, errors as `{"errors": [...]}`, and token policies
//! (an admin token, and a sign-only token that may call only `sign` and `verify`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use fulcrum_sign::{Alg, LocalKey, Signer};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Admin,
    SignOnly,
}

struct Key {
    alg: Alg,
    versions: Vec<LocalKey>,
}

#[derive(Clone, Default)]
struct Fake {
    keys: Arc<Mutex<HashMap<String, Key>>>,
    tokens: Arc<std::sync::RwLock<HashMap<String, Policy>>>,
}

pub struct VaultFake {
    pub addr: std::net::SocketAddr,
    pub admin_token: String,
    pub sign_token: String,
    tokens: Arc<std::sync::RwLock<HashMap<String, Policy>>>,
    _task: tokio::task::JoinHandle<()>,
}

fn errors(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"errors": [msg]}))).into_response()
}

fn policy(f: &Fake, h: &HeaderMap) -> Option<Policy> {
    h.get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| f.tokens.read().expect("tokens lock").get(t).copied())
}

fn deny() -> Response {
    errors(StatusCode::FORBIDDEN, "permission denied")
}

async fn create(State(f): State<Fake>, h: HeaderMap, Path(name): Path<String>, body: Option<Json<Value>>) -> Response {
    if policy(&f, &h) != Some(Policy::Admin) {
        return deny();
    }
    let alg = match body.as_ref().and_then(|b| b["type"].as_str()).unwrap_or("aes256-gcm96") {
        "ed25519" => Alg::Ed25519,
        "ecdsa-p256" => Alg::EcdsaP256Sha256,
        "ecdsa-p384" => Alg::EcdsaP384Sha384,
        other => return errors(StatusCode::BAD_REQUEST, &format!("unsupported key type {other} in this fake")),
    };
    let mut keys = f.keys.lock().expect("fake");
    keys.entry(name).or_insert_with(|| Key { alg, versions: vec![LocalKey::ephemeral(alg).expect("keygen")] });
    StatusCode::NO_CONTENT.into_response()
}

fn key_json(k: &Key) -> Value {
    let mut versions = serde_json::Map::new();
    for (i, v) in k.versions.iter().enumerate() {
        let pk = match k.alg {
            Alg::Ed25519 => B64.encode(&v.public_key().spki_der()[12..]),
            _ => v.public_key().to_pem(),
        };
        versions.insert(
            (i + 1).to_string(),
            json!({"public_key": pk, "creation_time": "2026-01-01T00:00:00Z", "name": ""}),
        );
    }
    let ty = match k.alg {
        Alg::Ed25519 => "ed25519",
        Alg::EcdsaP256Sha256 => "ecdsa-p256",
        Alg::EcdsaP384Sha384 => "ecdsa-p384",
    };
    json!({"data": {"type": ty, "keys": versions, "latest_version": k.versions.len(), "min_available_version": 0,
        "min_decryption_version": 1, "min_encryption_version": 0, "supports_signing": true, "exportable": false}})
}

async fn read(State(f): State<Fake>, h: HeaderMap, Path(name): Path<String>) -> Response {
    if policy(&f, &h) != Some(Policy::Admin) {
        return deny();
    }
    match f.keys.lock().expect("fake").get(&name) {
        Some(k) => Json(key_json(k)).into_response(),
        None => errors(StatusCode::NOT_FOUND, "key not found"),
    }
}

async fn rotate(State(f): State<Fake>, h: HeaderMap, Path(name): Path<String>) -> Response {
    if policy(&f, &h) != Some(Policy::Admin) {
        return deny();
    }
    let mut keys = f.keys.lock().expect("fake");
    match keys.get_mut(&name) {
        Some(k) => {
            let alg = k.alg;
            k.versions.push(LocalKey::ephemeral(alg).expect("keygen"));
            Json(key_json(k)).into_response()
        }
        None => errors(StatusCode::NOT_FOUND, "key not found"),
    }
}

async fn sign(State(f): State<Fake>, h: HeaderMap, Path(path): Path<Vec<String>>, Json(body): Json<Value>) -> Response {
    if policy(&f, &h).is_none() {
        return deny();
    }
    let name = &path[0];
    let keys = f.keys.lock().expect("fake");
    let Some(k) = keys.get(name) else { return errors(StatusCode::BAD_REQUEST, "signing key not found") };
    let Some(input) = body["input"].as_str().and_then(|i| B64.decode(i).ok()) else {
        return errors(StatusCode::BAD_REQUEST, "missing input");
    };
    let version = match body["key_version"].as_u64().unwrap_or(0) {
        0 => k.versions.len(),
        v => v as usize,
    };
    let Some(key) = k.versions.get(version.wrapping_sub(1)) else {
        return errors(StatusCode::BAD_REQUEST, "requested version not available");
    };
    if k.alg != Alg::Ed25519 && body["prehashed"].as_bool() == Some(true) {
        return errors(StatusCode::BAD_REQUEST, "prehashed input is not supported by this fake");
    }
    let der = key.sign(&input).expect("sign");
    let encoded = match body["marshaling_algorithm"].as_str().unwrap_or("asn1") {
        "jws" if k.alg != Alg::Ed25519 => URL_SAFE_NO_PAD.encode(der_to_raw(&der)),
        _ => B64.encode(&der),
    };
    Json(json!({"data": {"signature": format!("vault:v{version}:{encoded}"), "key_version": version}})).into_response()
}

fn der_to_raw(der: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER r, INTEGER s } → r‖s, 32 bytes each (P-256) — enough for the fake.
    let mut out = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        let len = usize::from(der[i + 1]);
        let v = &der[i + 2..i + 2 + len];
        let v = if v.len() > 32 { &v[v.len() - 32..] } else { v };
        out.extend(std::iter::repeat_n(0, 32 - v.len()));
        out.extend_from_slice(v);
        i += 2 + len;
    }
    out
}

async fn verify(
    State(f): State<Fake>,
    h: HeaderMap,
    Path(path): Path<Vec<String>>,
    Json(body): Json<Value>,
) -> Response {
    if policy(&f, &h).is_none() {
        return deny();
    }
    let keys = f.keys.lock().expect("fake");
    let Some(k) = keys.get(&path[0]) else { return errors(StatusCode::BAD_REQUEST, "key not found") };
    let input = body["input"].as_str().and_then(|i| B64.decode(i).ok()).unwrap_or_default();
    let sig = body["signature"].as_str().unwrap_or("");
    let valid = sig
        .strip_prefix("vault:v")
        .and_then(|r| r.split_once(':'))
        .and_then(|(v, b)| Some((v.parse::<usize>().ok()?, B64.decode(b).ok()?)))
        .and_then(|(v, s)| k.versions.get(v.wrapping_sub(1)).map(|key| key.public_key().verify(&input, &s).is_ok()))
        .unwrap_or(false);
    Json(json!({"data": {"valid": valid}})).into_response()
}

async fn export(State(f): State<Fake>, h: HeaderMap, Path(_name): Path<String>) -> Response {
    match policy(&f, &h) {
        Some(Policy::Admin) => errors(StatusCode::BAD_REQUEST, "key is not exportable"),
        _ => deny(),
    }
}

impl VaultFake {
    /// Start on 127.0.0.1:0 with a fresh admin token and a sign-only token.
    pub async fn start() -> Self {
        let admin_token = format!("hvs.admin-{}", std::process::id());
        let sign_token = format!("hvs.sign-{}", std::process::id());
        let tokens = Arc::new(std::sync::RwLock::new(HashMap::from([
            (admin_token.clone(), Policy::Admin),
            (sign_token.clone(), Policy::SignOnly),
        ])));
        let fake = Fake { keys: Arc::default(), tokens: tokens.clone() };
        let app = axum::Router::new()
            .route("/v1/transit/keys/{name}", post(create).get(read))
            .route("/v1/transit/keys/{name}/rotate", post(rotate))
            .route("/v1/transit/sign/{*path}", post(sign))
            .route("/v1/transit/verify/{*path}", post(verify))
            .route("/v1/transit/export/signing-key/{name}", get(export))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, admin_token, sign_token, tokens, _task: task }
    }

    /// Revoke every sign-only token and issue a new one (what a token rotation does); returns it.
    pub fn rotate_sign_token(&self) -> String {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let new = format!("hvs.sign-{}-{n}", std::process::id());
        let mut t = self.tokens.write().expect("tokens lock");
        t.retain(|_, p| *p != Policy::SignOnly);
        t.insert(new.clone(), Policy::SignOnly);
        new
    }
}
