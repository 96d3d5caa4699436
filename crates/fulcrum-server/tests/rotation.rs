//! Key rotation: a key-admin publishes a new key; the registry signs with it, reissues the trust
//! bundle with a higher version, emits `key_rotated`; signatures made inside the old key's
//! window stay valid, later ones and a compromised key's do not; unknown kids are refused.

mod common;

use common::{Harness, with_production};
use fulcrum_core::resolve::ResolveDocument;
use fulcrum_sign::{Alg, KeyStatus, LocalKey, Signer, TrustBundle, VerifyError};
use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

async fn bundle(h: &Harness) -> (TrustBundle, Vec<u8>, String, String) {
    let r = h.req("", Method::GET, "/v1/trust-bundle").send().await.unwrap();
    let kid = r.headers()["fulcrum-key-id"].to_str().unwrap().to_owned();
    let sig = r.headers()["fulcrum-signature"].to_str().unwrap().to_owned();
    let body = r.bytes().await.unwrap().to_vec();
    (serde_json::from_slice(&body).unwrap(), body, kid, sig)
}

async fn resolve(h: &Harness) -> (ResolveDocument, Vec<u8>, String, String) {
    let r = h.req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let kid = r.headers()["fulcrum-key-id"].to_str().unwrap().to_owned();
    let sig = r.headers()["fulcrum-signature"].to_str().unwrap().to_owned();
    let body = r.bytes().await.unwrap().to_vec();
    (serde_json::from_slice(&body).unwrap(), body, kid, sig)
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

#[tokio::test]
async fn rotation_windows_and_compromise() {
    let h = Harness::start().await;
    with_production(&h, "risk").await;
    let (b1, body1, kid1, sig1) = bundle(&h).await;
    b1.verify(&kid1, &body1, &sig1).unwrap();
    assert_eq!((b1.version, b1.keys.len()), (1, 1));
    let (doc1, docbody1, dkid1, dsig1) = resolve(&h).await;
    assert_eq!(dkid1, kid1);

    // The key-admin makes a new key (with the key-admin's own access) and publishes it.
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(data.join("keys")).unwrap();
    let k2 = LocalKey::generate(&data.join("keys/k2.pk8"), Alg::EcdsaP256Sha256).unwrap();
    let pem = k2.public_key().to_pem();
    let req = json!({"public_key": pem, "backend": "local", "backend_ref": "keys/k2.pk8", "kid": "local-k2"});
    // Separation of duties: not even an admin may publish keys; the key-admin may do nothing else.
    h.post("admin", "/v1/keys", req.clone(), StatusCode::FORBIDDEN).await;
    h.post("keys", "/v1/models", json!({"name": "x", "domain": "d"}), StatusCode::FORBIDDEN).await;
    h.post("keys", "/v1/models/risk/versions/v1/promotions", json!({"to": "Staging"}), StatusCode::FORBIDDEN).await;
    // The registry publishes only a key it can sign with, and only the one that was named.
    let p = h
        .post(
            "keys",
            "/v1/keys",
            json!({"public_key": pem, "backend": "local", "backend_ref": "../k2.pk8"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["code"], "key_unusable");
    let other = LocalKey::generate(&data.join("keys/other.pk8"), Alg::Ed25519).unwrap();
    let p = h
        .post(
            "keys",
            "/v1/keys",
            json!({"public_key": other.public_key().to_pem(), "backend": "local", "backend_ref": "keys/k2.pk8"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["code"], "key_unusable");
    h.post(
        "keys",
        "/v1/keys",
        json!({"public_key": "not a key", "backend": "local", "backend_ref": "keys/k2.pk8"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.post(
        "keys",
        "/v1/keys",
        json!({"public_key": pem, "backend": "hsm9000", "backend_ref": "x"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(bundle(&h).await.0.version, 1, "refusals change nothing");

    let ack = h.post("keys", "/v1/keys", req.clone(), StatusCode::CREATED).await;
    assert_eq!((ack["kid"].as_str(), ack["trust_bundle_version"].as_u64()), (Some("local-k2"), Some(2)));
    h.post("keys", "/v1/keys", req, StatusCode::CONFLICT).await;

    // Bundle v2: both keys, the old one's window closed, signed by the new key.
    let (b2, body2, kid2, sig2) = bundle(&h).await;
    assert_eq!((b2.version, kid2.as_str()), (2, "local-k2"));
    b2.verify(&kid2, &body2, &sig2).unwrap();
    let old = b2.keys.iter().find(|k| k.kid == kid1).unwrap();
    assert_eq!(old.status, KeyStatus::Retired);
    let closed_at = at(old.valid_until.as_deref().unwrap());
    assert!(b2.expires_at.is_some());

    // Resolve answers are re-signed with the new key.
    let (doc2, docbody2, dkid2, dsig2) = resolve(&h).await;
    assert_eq!((dkid2.as_str(), doc2.kid.as_str()), ("local-k2", "local-k2"));
    b2.verify_at(&dkid2, &docbody2, &dsig2, at(&doc2.issued_at)).unwrap();
    // The old answer, signed inside the old key's window, still verifies with the new bundle.
    b2.verify_at(&dkid1, &docbody1, &dsig1, at(&doc1.issued_at)).unwrap();
    // A signature by the old key after its window closed does not.
    let old_key = LocalKey::load_or_create(&data.join("signing-key.pk8")).unwrap().0;
    let late = fulcrum_sign::b64(&old_key.sign(b"forged later").unwrap());
    assert_eq!(
        b2.verify_at(&kid1, b"forged later", &late, closed_at + time::Duration::seconds(1)),
        Err(VerifyError::KeyNotValidAt(kid1.clone()))
    );
    // Unknown kid.
    assert_eq!(
        b2.verify_at("local-nope", &docbody2, &dsig2, at(&doc2.issued_at)),
        Err(VerifyError::UnknownKid("local-nope".into()))
    );

    // The active key cannot be retired; the old one is marked compromised: nothing it signed counts.
    h.post("keys", "/v1/keys/local-k2/retire", json!({"reason": "x"}), StatusCode::CONFLICT).await;
    h.post("keys", "/v1/keys/local-nope/retire", json!({"reason": "x"}), StatusCode::NOT_FOUND).await;
    h.post("admin", &format!("/v1/keys/{kid1}/retire"), json!({"reason": "x"}), StatusCode::FORBIDDEN).await;
    let ack = h
        .post(
            "keys",
            &format!("/v1/keys/{kid1}/retire"),
            json!({"reason": "laptop stolen", "compromised": true}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(ack["trust_bundle_version"], 3);
    let (b3, ..) = bundle(&h).await;
    assert_eq!(
        b3.verify_at(&dkid1, &docbody1, &dsig1, at(&doc1.issued_at)),
        Err(VerifyError::KeyCompromised(kid1.clone()))
    );

    let kinds = h.event_kinds("viewer").await;
    assert!(kinds.contains(&"key_rotated".to_owned()) && kinds.contains(&"key_retired".to_owned()), "{kinds:?}");
    let list = h.get("keys", "/v1/keys", StatusCode::OK).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    h.get("viewer", "/v1/keys", StatusCode::FORBIDDEN).await;

    // After a restart the registry still signs with the new key and the bundle version holds.
    let dir = h.stop().await;
    let h = Harness::start_in(dir).await;
    let (b, ..) = bundle(&h).await;
    assert_eq!(b.version, 3);
    assert_eq!(resolve(&h).await.2, "local-k2");
}

/// The policy snapshot is signed by the active key, fetchable by the digest resolve documents
/// carry, and re-signed when the key rotates.
#[tokio::test]
async fn policy_snapshot_is_signed_and_follows_rotation() {
    let h = Harness::start().await;
    with_production(&h, "risk").await;
    let (doc, ..) = resolve(&h).await;
    let check = |env: &serde_json::Value, bundle: &TrustBundle| -> String {
        let env: fulcrum_verify::dsse::Envelope = serde_json::from_value(env.clone()).unwrap();
        let kid = env.signatures[0].keyid.clone();
        let key = bundle.keys.iter().find(|k| k.kid == kid).unwrap().key().unwrap();
        let payload = env.verify(&key, fulcrum_server::policy::SNAPSHOT_MEDIA_TYPE).unwrap();
        assert_eq!(
            fulcrum_core::Digest::of(&payload).to_string(),
            doc.policy_digest,
            "the digest resolve carries is the snapshot's"
        );
        kid
    };
    let (b1, ..) = bundle(&h).await;
    let current = h.get("agent", "/v1/policy/current", StatusCode::OK).await;
    let kid1 = check(&current, &b1);
    let by_digest = h.get("viewer", &format!("/v1/policy/snapshots/{}", doc.policy_digest), StatusCode::OK).await;
    assert_eq!(by_digest, current);
    h.get("viewer", &format!("/v1/policy/snapshots/sha256:{}", "0".repeat(64)), StatusCode::NOT_FOUND).await;
    h.get("viewer", "/v1/policy/snapshots/nope", StatusCode::BAD_REQUEST).await;
    h.get("keys", "/v1/policy/current", StatusCode::FORBIDDEN).await;
    h.get("", "/v1/policy/current", StatusCode::UNAUTHORIZED).await;

    let data = h.dir.path().join("data");
    std::fs::create_dir_all(data.join("keys")).unwrap();
    let k2 = LocalKey::generate(&data.join("keys/k2.pk8"), Alg::Ed25519).unwrap();
    h.post(
        "keys",
        "/v1/keys",
        json!({"public_key": k2.public_key().to_pem(), "backend": "local", "backend_ref": "keys/k2.pk8"}),
        StatusCode::CREATED,
    )
    .await;
    let (b2, ..) = bundle(&h).await;
    let kid2 = check(&h.get("agent", "/v1/policy/current", StatusCode::OK).await, &b2);
    assert_ne!(kid1, kid2, "re-signed with the new key");
}
