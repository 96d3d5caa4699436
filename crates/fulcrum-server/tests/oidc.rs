//! OIDC access tokens from a real OpenID Provider (npm `oidc-provider`, started per test): each
//! token a caller could present, with what the registry must conclude; then the IdP rotating its
//! key, and callers flooding the registry with made-up key ids.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::{Harness, ShiftedClock};
use fulcrum_oidc::IssuerConfig;
use fulcrum_oidc::test_idp::TestIdp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const AUD: &str = "urn:fulcrum";

fn client(id: &str, role: &str, tenant: &str, ttl: u64) -> Value {
    json!({"client_id": id, "client_secret": format!("{id}-secret"), "tenant_id": tenant, "domain": "*",
           "role": role, "purpose": "credit-scoring", "access_token_ttl": ttl})
}

fn issuer(idp: &TestIdp) -> IssuerConfig {
    let mut c = IssuerConfig::new(&idp.issuer, AUD);
    c.leeway_s = 5;
    c.tenants = Some(vec!["acme".into(), "globex".into()]);
    c.jwks_min_refresh_s = 2;
    c
}

async fn token(idp: &TestIdp, id: &str) -> String {
    idp.token(id, &format!("{id}-secret")).await
}

/// GET /v1/me with a raw bearer token: (status, body).
async fn me(h: &Harness, bearer: &str) -> (StatusCode, Value, Option<String>) {
    let resp = h.http.get(format!("{}/v1/me", h.url)).bearer_auth(bearer).send().await.unwrap();
    let status = resp.status();
    let www = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap(), www)
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn parts(jwt: &str) -> (Value, Value) {
    let mut it = jwt.split('.');
    let d =
        |s: &str| serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (d(it.next().unwrap()), d(it.next().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_real_idp_are_accepted_or_refused_as_they_should_be() {
    let clients = json!([
        client("ci", "publisher", "acme", 300),
        client("short", "viewer", "acme", 60),
        client("long", "viewer", "acme", 7200),
        client("wizard", "wizard", "acme", 300),
        client("initech", "admin", "initech", 300),
    ]);
    let Some(idp) = TestIdp::start("ES256", AUD, clients.clone()) else { return };
    let Some(stranger) = TestIdp::start("ES256", AUD, clients) else { return };
    let clock = Arc::new(ShiftedClock::default());
    let h = Harness::start_clocked(tempfile::tempdir().unwrap(), clock.clone(), |c| c.oidc = vec![issuer(&idp)]).await;

    let valid = token(&idp, "ci").await;
    let (header, payload) = parts(&valid);
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().unwrap().to_owned();
    let jwks = reqwest::get(format!("{}/jwks", idp.issuer)).await.unwrap().text().await.unwrap();
    let sig = valid.rsplit('.').next().unwrap();
    let with_header = |h: Value| format!("{}.{}.", b64(h.to_string().as_bytes()), valid.split('.').nth(1).unwrap());
    let hs256 = {
        let mut hd = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        hd.kid = Some(kid.clone());
        hd.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&hd, &payload, &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()).unwrap()).unwrap()
    };
    let mut raised = payload.clone();
    raised["role"] = json!("admin");
    let tampered = format!("{}.{}.{sig}", valid.split('.').next().unwrap(), b64(raised.to_string().as_bytes()));

    // (what, token, clock shift in seconds, expected: Ok(role) or Err(code))
    let rows: Vec<(&str, String, i64, Result<&str, &str>)> = vec![
        ("valid", valid.clone(), 0, Ok("publisher")),
        ("valid within the leeway after expiry", token(&idp, "short").await, 63, Ok("viewer")),
        ("expired", token(&idp, "short").await, 120, Err("token_expired")),
        ("not yet valid (issued in the registry's future)", valid.clone(), -600, Err("token_not_yet_valid")),
        (
            "wrong audience",
            idp.token_with("ci", "ci-secret", &[("resource", "https://another.example/api")]).await,
            0,
            Err("token_audience"),
        ),
        ("wrong issuer (an IdP not trusted)", token(&stranger, "ci").await, 0, Err("token_issuer")),
        ("over the maximum lifetime", token(&idp, "long").await, 0, Err("token_lifetime")),
        ("alg none", with_header(json!({"alg": "none", "typ": "at+jwt", "kid": kid})), 0, Err("token_malformed")),
        ("HS256 keyed with the public JWKS", hs256, 0, Err("token_algorithm")),
        ("claims changed after signing", tampered, 0, Err("token_signature")),
        ("a role Fulcrum does not have", token(&idp, "wizard").await, 0, Err("token_claims")),
        ("a tenant this issuer may not speak for", token(&idp, "initech").await, 0, Err("token_claims")),
        ("JWT-shaped garbage", "eyJhbGciOiJFUzI1NiJ9.eyJ9.c2ln".into(), 0, Err("token_malformed")),
    ];
    for (what, tok, shift, want) in rows {
        clock.shift(shift);
        let (status, body, www) = me(&h, &tok).await;
        match want {
            Ok(role) => {
                assert_eq!(status, StatusCode::OK, "{what}: {body}");
                assert_eq!(body["role"], role, "{what}");
                assert_eq!(body["tenant"], "acme", "{what}");
                assert_eq!(body["authenticated_by"], "oidc", "{what}");
                assert_eq!(body["issuer"], idp.issuer.as_str(), "{what}");
            }
            Err(code) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                assert_eq!(body["code"], code, "{what}: {body}");
                assert!(www.unwrap_or_default().contains("invalid_token"), "{what}");
            }
        }
    }
    clock.shift(0);

    // The principal is the one the authorization rules see: the publisher may create a model in
    // its tenant, and a viewer may not.
    let ok = h.http.post(format!("{}/v1/models", h.url)).bearer_auth(&valid);
    h.call(ok.json(&json!({"name": "fraud", "domain": "fraud"})), StatusCode::CREATED).await;
    let viewer = token(&idp, "short").await;
    let no = h.http.post(format!("{}/v1/models", h.url)).bearer_auth(&viewer);
    h.call(no.json(&json!({"name": "credit", "domain": "credit"})), StatusCode::FORBIDDEN).await;
    // The same model, seen with a token from the tokens file of the same tenant.
    h.get("viewer", "/v1/models/fraud", StatusCode::OK).await;

    // The tokens file keeps working beside the IdP.
    let (status, body, _) = me(&h, &common::token("admin")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["authenticated_by"], "token");

    // Refusals are counted by reason.
    let metrics = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fulcrum_auth_tokens_refused_total{reason=\"token_expired\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_key_rotation_is_followed_and_made_up_kids_are_rate_limited() {
    let Some(mut idp) = TestIdp::start("RS256", AUD, json!([client("ci", "publisher", "acme", 300)])) else { return };
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| c.oidc = vec![issuer(&idp)]).await;
    let line = format!("fulcrum_oidc_jwks_fetches_total{{issuer=\"{}\"}} ", idp.issuer);
    let fetches = || async {
        let m = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
        m.lines().find_map(|l| l.strip_prefix(line.as_str())).unwrap().parse::<u64>().unwrap()
    };
    let old = token(&idp, "ci").await;
    assert_eq!(me(&h, &old).await.0, StatusCode::OK);
    assert_eq!(fetches().await, 1, "the keys were fetched once, at start-up");

    // Fifty tokens naming made-up key ids at once: all refused, and the IdP is asked at most once.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (hd, _) = parts(&old);
    let forged: Vec<String> = (0..50)
        .map(|i| {
            let mut hd = hd.clone();
            hd["kid"] = json!(format!("made-up-{i}"));
            format!("{}.{}", b64(hd.to_string().as_bytes()), old.split_once('.').unwrap().1)
        })
        .collect();
    let answers = futures_util::future::join_all(forged.iter().map(|t| me(&h, t))).await;
    for (status, body, _) in &answers {
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "token_unknown_key", "{body}");
    }
    assert_eq!(fetches().await, 2, "fifty unknown kids cost one fetch");

    // The IdP rotates its key: a token with the new kid is accepted once the interval passed,
    // without restarting the registry; the old key is gone from the IdP, so is its token.
    idp.rotate_key();
    let new = token(&idp, "ci").await;
    assert_ne!(parts(&new).0["kid"], parts(&old).0["kid"]);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body, _) = me(&h, &new).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fetches().await, 3);
    let (status, body, _) = me(&h, &old).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_unknown_key")));
}
