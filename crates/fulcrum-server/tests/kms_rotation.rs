//! Rotating the registry onto KMS keys: a key-admin creates a key in Vault Transit (fake) or on
//! a SoftHSM2 token with the admin credential; the registry, holding only a sign-only
//! credential, publishes it and signs everything with it from then on.

mod common;

use common::{Harness, with_production};
use fulcrum_kms::http::Endpoint;
use fulcrum_kms::pkcs11::admin as hsm_admin;
use fulcrum_kms::vault::fake::VaultFake;
use fulcrum_kms::vault::{VaultConfig, admin as vault_admin};
use fulcrum_server::keyring::KmsConfig;
use fulcrum_sign::{Alg, PublicKey, TrustBundle};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn signed_resolve_kid(h: &Harness) -> String {
    let b = h.req("", Method::GET, "/v1/trust-bundle").send().await.unwrap();
    let (bkid, bsig) = (
        b.headers()["fulcrum-key-id"].to_str().unwrap().to_owned(),
        b.headers()["fulcrum-signature"].to_str().unwrap().to_owned(),
    );
    let bbody = b.bytes().await.unwrap();
    let bundle: TrustBundle = serde_json::from_slice(&bbody).unwrap();
    bundle.verify(&bkid, &bbody, &bsig).unwrap();
    let r = h.req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod").send().await.unwrap();
    let (kid, sig) = (
        r.headers()["fulcrum-key-id"].to_str().unwrap().to_owned(),
        r.headers()["fulcrum-signature"].to_str().unwrap().to_owned(),
    );
    bundle.verify(&kid, &r.bytes().await.unwrap(), &sig).unwrap();
    assert_eq!(kid, bkid, "documents and the bundle are signed by the active key");
    kid
}

/// A registry holding `registry_cfg` (a sign-only Vault credential) with `risk` in production,
/// and a Transit key the key-admin created with the admin token: its version and public key.
async fn registry_with_a_vault_key(fake: &VaultFake, registry_cfg: VaultConfig) -> (Harness, u32, PublicKey) {
    let admin_cfg = VaultConfig {
        endpoint: Endpoint::parse(&format!("http://{}", fake.addr), None).unwrap(),
        token: fake.admin_token.clone().into(),
        mount: "transit".into(),
    };
    let kms = KmsConfig { vault: Some(registry_cfg), pkcs11: None };
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| c.kms = kms).await;
    with_production(&h, "risk").await;
    let (version, public) = tokio::task::spawn_blocking(move || {
        vault_admin::create(&admin_cfg, "registry-signing", Alg::EcdsaP256Sha256).unwrap()
    })
    .await
    .unwrap();
    (h, version, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_onto_vault_transit() {
    let fake = VaultFake::start().await;
    let endpoint = Endpoint::parse(&format!("http://{}", fake.addr), None).unwrap();
    let registry_cfg = VaultConfig { endpoint, token: fake.sign_token.clone().into(), mount: "transit".into() };
    let (h, version, public) = registry_with_a_vault_key(&fake, registry_cfg).await;
    let kid = format!("vault:transit/registry-signing:v{version}");
    // A reference to a version that does not exist cannot be published.
    let p = h
        .post("keys", "/v1/keys", json!({"public_key": public.to_pem(), "backend": "vault", "backend_ref": "registry-signing:v7", "kid": "vault:transit/registry-signing:v7"}), StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    assert_eq!(p["code"], "key_unusable");
    h.post("keys", "/v1/keys", json!({"public_key": public.to_pem(), "backend": "vault", "backend_ref": format!("registry-signing:v{version}"), "kid": kid}), StatusCode::CREATED)
        .await;
    assert_eq!(signed_resolve_kid(&h).await, kid);
    let keys = h.get("keys", "/v1/keys", StatusCode::OK).await;
    let vault_key = keys.as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    assert_eq!((vault_key["status"].as_str(), vault_key["development"].as_bool()), (Some("active"), Some(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_onto_a_softhsm_key() {
    let cfg = fulcrum_kms::testing::softhsm_token("registry", "1234");
    let kms = KmsConfig { pkcs11: Some(cfg.clone()), vault: None };
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| c.kms = kms).await;
    with_production(&h, "risk").await;

    let public = hsm_admin::generate(&cfg, "registry-2026", Alg::EcdsaP256Sha256).unwrap();
    h.post(
        "keys",
        "/v1/keys",
        json!({"public_key": public.to_pem(), "backend": "pkcs11", "backend_ref": "no-such-label"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let ack = h
        .post(
            "keys",
            "/v1/keys",
            json!({"public_key": public.to_pem(), "backend": "pkcs11", "backend_ref": "registry-2026"}),
            StatusCode::CREATED,
        )
        .await;
    let kid = ack["kid"].as_str().unwrap().to_owned();
    assert!(kid.starts_with("pkcs11-"));
    assert_eq!(signed_resolve_kid(&h).await, kid);
    // Restart: the registry reopens the HSM key with its PIN and keeps signing with it.
    let dir = h.stop().await;
    let kms = KmsConfig { pkcs11: Some(cfg), vault: None };
    let h = Harness::start_with(dir, |c| c.kms = kms).await;
    assert_eq!(signed_resolve_kid(&h).await, kid);
}

/// Secrets from files: the registry's Vault token is re-read when its file changes. After the
/// token is rotated in Vault, signing fails until the file holds the new one, then works again
/// — no restart, and nothing half-applied in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_vault_token_is_read_from_its_file() {
    let fake = VaultFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("vault-token");
    std::fs::write(&token_file, format!("{}\n", fake.sign_token)).unwrap();
    let registry_cfg = VaultConfig::from_files(&format!("http://{}", fake.addr), &token_file, "transit", None).unwrap();
    let (h, version, public) = registry_with_a_vault_key(&fake, registry_cfg).await;
    let kid = format!("vault:transit/registry-signing:v{version}");
    h.post("keys", "/v1/keys", json!({"public_key": public.to_pem(), "backend": "vault", "backend_ref": format!("registry-signing:v{version}"), "kid": kid}), StatusCode::CREATED)
        .await;
    h.register("ci", "risk", "v2", &[("w", b"two")]).await;

    // The token is rotated in Vault: the old one is refused, so signing (and the registration
    // that needs it) fails with a 503 and stores nothing.
    let new_token = fake.rotate_sign_token();
    let d = h.upload("ci", b"three").await;
    let body = json!({"version": "v3", "files": [{"path": "w", "size": 5, "digest": d.to_string()}],
        "model_card": {"owner": "o", "intended_use": "u"}, "revalidate_by": "2099-01-01T00:00:00Z"});
    let p = h.post("ci", "/v1/models/risk/versions", body.clone(), StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(p["code"], "signer_unavailable");
    assert!(!p.to_string().contains(&new_token) && !p.to_string().contains(&fake.sign_token), "no secret echoed");
    h.get("viewer", "/v1/models/risk/versions/v3", StatusCode::NOT_FOUND).await;
    // The file is rewritten (as Vault Agent does): the next signature uses the new token.
    std::fs::write(&token_file, format!("{new_token}\n")).unwrap();
    h.post("ci", "/v1/models/risk/versions", body, StatusCode::CREATED).await;
    assert_eq!(signed_resolve_kid(&h).await, kid);
}
