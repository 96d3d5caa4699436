//! Callers' tokens at the gateway, as data: each token a caller could send, with what the gateway
//! must conclude. Then the gateway end to end: the purpose comes from the verified token, and the
//! token is not passed on to the model server.

mod common;

use std::time::Duration;

use base64::Engine as _;
use fulcrum_agent::caller::CallerAuth;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const ISS: &str = "https://idp.bank.example";
const AUD: &str = "fulcrum-gateway";

struct Idp {
    kid: String,
    key: EncodingKey,
    jwks: Value,
    /// The public key as PEM (what an attacker would use as an HMAC secret).
    public_pem: String,
}

fn idp(kid: &str) -> Idp {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]});
    Idp { kid: kid.into(), key: EncodingKey::from_ec_der(&kp.serialize_der()), jwks, public_pem: kp.public_key_pem() }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(purpose: Value) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "scoring-service", "iat": now(), "exp": now() + 300, "purpose": purpose})
}

fn token(i: &Idp, typ: Option<&str>, c: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(i.kid.clone());
    h.typ = typ.map(str::to_owned);
    encode(&h, c, &i.key).unwrap()
}

fn auth(i: &Idp) -> CallerAuth {
    let mut a = CallerAuth::from_jwks(i.jwks.to_string().as_bytes(), ISS, AUD).unwrap();
    a.rules.max_lifetime_s = 3600;
    a
}

/// (what, the token sent, the purposes it grants or the refusal codes acceptable)
type Row = (&'static str, Option<String>, Result<Vec<&'static str>, &'static [&'static str]>);

#[tokio::test]
async fn callers_tokens_are_accepted_or_refused_as_they_should_be() {
    let i = idp("k1");
    let other = idp("k1"); // same kid, another key: a forgery
    let a = auth(&i);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(json!("credit-scoring"));
        f(&mut c);
        token(&i, Some("at+jwt"), &c)
    };
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(json!("credit-scoring"))));
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        encode(&h, &claims(json!("credit-scoring")), &EncodingKey::from_secret(i.public_pem.as_bytes()).unwrap())
            .unwrap()
    };
    let mut unknown_kid = Header::new(Algorithm::ES256);
    unknown_kid.kid = Some("k9".into());
    let rows: Vec<Row> = vec![
        ("valid at+jwt", Some(with(&|_| {})), Ok(vec!["credit-scoring"])),
        ("valid, plain JWT type", Some(token(&i, Some("JWT"), &claims(json!(["a", "b"])))), Ok(vec!["a", "b"])),
        ("no token", None, Err(&["token_missing"])),
        ("expired", Some(with(&|c| c["exp"] = json!(now() - 600))), Err(&["token_expired"])),
        ("not yet valid", Some(with(&|c| c["nbf"] = json!(now() + 600))), Err(&["token_not_yet_valid"])),
        ("issued in the future", Some(with(&|c| c["iat"] = json!(now() + 600))), Err(&["token_not_yet_valid"])),
        ("wrong audience", Some(with(&|c| c["aud"] = json!("another-api"))), Err(&["token_audience"])),
        ("wrong issuer", Some(with(&|c| c["iss"] = json!("https://evil.example"))), Err(&["token_issuer"])),
        ("over the maximum lifetime", Some(with(&|c| c["exp"] = json!(now() + 86_400))), Err(&["token_lifetime"])),
        (
            "no exp",
            Some(with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            Err(&["token_claims"]),
        ),
        (
            "signed by another key under the same kid",
            Some(token(&other, None, &claims(json!("x")))),
            Err(&["token_signature"]),
        ),
        ("unknown kid", Some(encode(&unknown_kid, &claims(json!("x")), &i.key).unwrap()), Err(&["token_unknown_key"])),
        ("alg none", Some(none), Err(&["token_malformed", "token_algorithm"])),
        ("HS256 with the public key as secret", Some(hs256), Err(&["token_algorithm"])),
        ("another type", Some(token(&i, Some("id+jwt"), &claims(json!("x")))), Err(&["token_type"])),
        ("garbage", Some("not.a.jwt".into()), Err(&["token_malformed"])),
    ];
    for (what, tok, want) in rows {
        let header = tok.map(|t| format!("Bearer {t}"));
        let got = a.check(header.as_deref()).await;
        match want {
            Ok(purposes) => assert_eq!(got.expect(what).purposes, purposes, "{what}"),
            Err(codes) => {
                let e = got.expect_err(what);
                assert!(codes.contains(&e.code()), "{what}: {} ({e})", e.code());
            }
        }
    }
}

/// A registry serving `fraud` v1 (its card allows `credit-scoring`), a guard, an upstream that
/// says whether it saw a token, and a gateway checking callers with `callers`.
struct Serving {
    url: String,
    _registry: common::Reg,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn gateway(callers: fulcrum_agent::caller::CallerAuth) -> Serving {
    use common::{agent, as_, register_as, registry};
    use fulcrum_agent::gateway::{Gateway, Protocol, Route};
    use fulcrum_agent::guard::{Guard, Layout};
    use std::sync::Arc;

    // An upstream that tells whether it saw an Authorization header.
    let app = axum::Router::new().fallback(|h: axum::http::HeaderMap| async move {
        axum::Json(json!({"model_version": "1", "saw_token": h.contains_key("authorization")}))
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });

    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    let card = json!({"owner": "fraud", "intended_use": "scoring", "guardrails": {"purposes": ["credit-scoring"]}});
    register_as(&r, "fraud", "1", &[("model.bin", b"one")], card, "production").await;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let g = Arc::new(Guard::new(
        agent(&r, dirs.0.path()).await,
        "fraud@production",
        "prod",
        Layout::Repository(dirs.1.path().to_owned()),
    ));
    let run = g.clone();
    tokio::spawn(async move { run.run(std::future::pending::<()>()).await });
    let mut gw =
        Gateway::new(vec![Route { alias: "production".into(), weight: 1, guard: g.clone() }], &up, Protocol::Oip)
            .unwrap();
    gw.callers = Some(callers);
    let gw = Arc::new(gw);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(fulcrum_agent::gateway::serve(gw, l));
    let start = std::time::Instant::now();
    while !g.is_ready() {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Serving { url, _registry: r, _dirs: dirs }
}

/// Call the gateway's inference route: (status, body).
async fn call(url: &str, bearer: Option<String>, purpose_header: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{url}/v2/models/fraud/infer")).body("{}");
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(p) = purpose_header {
        req = req.header("x-fulcrum-purpose", p);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_takes_the_purpose_from_a_verified_token_only() {
    let i = idp("k1");
    let g = gateway(auth(&i)).await;
    let url = &g.url;
    let (s, v) = call(url, Some(token(&i, Some("at+jwt"), &claims(json!("credit-scoring")))), None).await;
    assert_eq!((s, v["saw_token"].as_bool()), (200, Some(false)), "{v}");
    // A purpose header does not stand in for a token once the gateway checks tokens.
    let (s, v) = call(url, None, Some("credit-scoring")).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("token_missing")), "{v}");
    let (s, v) = call(url, Some(token(&i, None, &claims(json!("marketing")))), Some("credit-scoring")).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("purpose_not_allowed")), "{v}");
    let mut expired = claims(json!("credit-scoring"));
    expired["exp"] = json!(now() - 600);
    let (s, v) = call(url, Some(token(&i, None, &expired)), None).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("token_expired")), "{v}");
}

/// The gateway finds the company IdP's keys by discovery (a real OpenID Provider) and follows
/// its key rotation without a restart; the purpose comes from the IdP's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_the_idps_published_keys() {
    use fulcrum_oidc::test_idp::TestIdp;
    let clients = json!([
        {"client_id": "scoring", "client_secret": "scoring-secret", "purpose": "credit-scoring"},
        {"client_id": "ads", "client_secret": "ads-secret", "purpose": "marketing"},
    ]);
    let Some(mut idp) = TestIdp::start("ES256", "urn:fulcrum-gateway", clients) else { return };
    let mut config = fulcrum_oidc::IssuerConfig::new(&idp.issuer, "urn:fulcrum-gateway");
    config.jwks_min_refresh_s = 1;
    let g = gateway(fulcrum_agent::caller::CallerAuth::discover(config).await.unwrap()).await;
    let url = &g.url;
    let (s, v) = call(url, Some(idp.token("scoring", "scoring-secret").await), None).await;
    assert_eq!((s, v["saw_token"].as_bool()), (200, Some(false)), "{v}");
    let (s, v) = call(url, Some(idp.token("ads", "ads-secret").await), None).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("purpose_not_allowed")), "{v}");
    idp.rotate_key();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, v) = call(url, Some(idp.token("scoring", "scoring-secret").await), None).await;
    assert_eq!(s, 200, "a token under the IdP's new key: {v}");
}
