//! API tests through the real server on 127.0.0.1:0: every path of the registry core, roles
//! allowed and refused, tenant isolation, and bad input (always a 4xx problem, never a 5xx, and
//! nothing half-applied).

mod common;

use common::{Harness, with_production};
use fulcrum_core::resolve::ResolveDocument;
use fulcrum_core::{Digest, FileEntry, Manifest};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const S200: StatusCode = StatusCode::OK;
const S201: StatusCode = StatusCode::CREATED;

#[tokio::test]
async fn blobs_upload_download_range_and_isolation() {
    let h = Harness::start().await;
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let d = Digest::of(&data);
    let v = h.call(h.req("ci", Method::POST, "/v1/blobs").body(data.clone()), S201).await;
    assert_eq!(v["digest"], d.to_string());
    assert_eq!(v["size"], 1000);
    // Idempotent.
    h.call(h.req("ci", Method::POST, "/v1/blobs").body(data.clone()), S200).await;
    h.call(h.req("ci", Method::PUT, &format!("/v1/blobs/{d}")).body(data.clone()), S200).await;

    // Full and partial downloads.
    let resp = h.req("ci", Method::GET, &format!("/v1/blobs/{d}")).send().await.unwrap();
    assert_eq!(resp.status(), S200);
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data);
    let resp =
        h.req("ci", Method::GET, &format!("/v1/blobs/{d}")).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], "bytes 100-199/1000");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data[100..200].to_vec());
    let resp = h.req("ci", Method::GET, &format!("/v1/blobs/{d}")).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data[990..].to_vec());
    let p = h
        .call(
            h.req("ci", Method::GET, &format!("/v1/blobs/{d}")).header("range", "bytes=5000-"),
            StatusCode::RANGE_NOT_SATISFIABLE,
        )
        .await;
    assert_eq!(p["code"], "range_not_satisfiable");
    let resp = h.req("ci", Method::HEAD, &format!("/v1/blobs/{d}")).send().await.unwrap();
    assert_eq!(resp.status(), S200);
    assert_eq!(resp.headers()["content-length"], "1000");

    // Another tenant cannot see it, even knowing the digest; viewers cannot download.
    h.call(h.req("other-ci", Method::GET, &format!("/v1/blobs/{d}")), StatusCode::NOT_FOUND).await;
    h.call(h.req("other-ci", Method::HEAD, &format!("/v1/blobs/{d}")), StatusCode::NOT_FOUND).await;
    h.call(h.req("viewer", Method::GET, &format!("/v1/blobs/{d}")), StatusCode::FORBIDDEN).await;
    h.call(h.req("viewer", Method::POST, "/v1/blobs").body(vec![1, 2]), StatusCode::FORBIDDEN).await;
    h.call(h.req("", Method::POST, "/v1/blobs").body(vec![1, 2]), StatusCode::UNAUTHORIZED).await;
    h.call(h.req("", Method::POST, "/v1/blobs").bearer_auth("nope").body(vec![1, 2]), StatusCode::UNAUTHORIZED).await;

    // Content that does not hash to the named digest is refused and not stored.
    let wrong = Digest::of(b"something else");
    let p = h
        .call(
            h.req("ci", Method::PUT, &format!("/v1/blobs/{wrong}")).body(b"not it".to_vec()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["code"], "digest_mismatch");
    h.call(h.req("ci", Method::HEAD, &format!("/v1/blobs/{}", Digest::of(b"not it"))), StatusCode::NOT_FOUND).await;
    for bad in ["sha256:abc", "md5:00", "sha256:ZZZZ", "nope"] {
        let p = h
            .call(h.req("ci", Method::PUT, &format!("/v1/blobs/{bad}")).body(b"x".to_vec()), StatusCode::BAD_REQUEST)
            .await;
        assert_eq!(p["code"], "bad_digest");
        h.call(h.req("ci", Method::GET, &format!("/v1/blobs/{bad}")), StatusCode::BAD_REQUEST).await;
    }
    // Over the configured limit (8 MiB in tests).
    let big = vec![0u8; (8 << 20) + 1];
    let p = h.call(h.req("ci", Method::POST, "/v1/blobs").body(big), StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(p["code"], "too_large");
    let tmp_left = std::fs::read_dir(h.spool_dir()).unwrap().count();
    assert_eq!(tmp_left, 0, "refused uploads leave no temp files");
}

/// A body shorter than its Content-Length is a 400 and stores nothing.
#[tokio::test]
async fn wrong_content_length_is_refused() {
    let h = Harness::start().await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "POST /v1/blobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\nContent-Type: application/octet-stream\r\n\r\nonly-ten-b",
        common::token("ci")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    // Either the server answers 400, or it drops the connection; it never stores a blob or 5xxs.
    if !out.is_empty() {
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("application/problem+json"));
    }
    h.call(h.req("ci", Method::HEAD, &format!("/v1/blobs/{}", Digest::of(b"only-ten-b"))), StatusCode::NOT_FOUND).await;
    assert_eq!(std::fs::read_dir(h.spool_dir()).unwrap().count(), 0, "no spooled upload is left");
}

#[tokio::test]
async fn models_create_list_get_and_bad_input() {
    let h = Harness::start().await;
    let m = h.create_model("ci", "risk-default").await;
    assert_eq!((m["tenant"].as_str(), m["created_by"].as_str()), (Some("acme"), Some("ci")));
    let p = h.post("ci", "/v1/models", json!({"name": "risk-default", "domain": "risk"}), StatusCode::CONFLICT).await;
    assert_eq!(p["code"], "conflict");
    // Bad names, unknown fields, malformed JSON, wrong media type, oversized body, wrong tenant.
    for bad in ["Risk", "-x", "a/b", "", "latest/../x"] {
        let p = h.post("ci", "/v1/models", json!({"name": bad, "domain": "risk"}), StatusCode::BAD_REQUEST).await;
        assert_eq!(p["code"], "bad_name");
    }
    let p = h
        .post(
            "ci",
            "/v1/models",
            json!({"name": "x", "domain": "risk", "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");
    let p = h
        .call(
            h.req("ci", Method::POST, "/v1/models").header("content-type", "application/json").body("{\"name\": "),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(p["code"], "malformed_json");
    h.call(
        h.req("ci", Method::POST, "/v1/models").header("content-type", "text/plain").body("{}"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let huge = json!({"name": "x", "domain": "risk", "description": "a".repeat(2 << 20)});
    let p = h.call(h.req("ci", Method::POST, "/v1/models").json(&huge), StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(p["code"], "too_large");
    h.post("ci", "/v1/models", json!({"name": "x", "domain": "risk", "tenant": "globex"}), StatusCode::FORBIDDEN).await;
    h.post("fraud-ci", "/v1/models", json!({"name": "x", "domain": "risk"}), StatusCode::FORBIDDEN).await;
    h.post("viewer", "/v1/models", json!({"name": "x", "domain": "risk"}), StatusCode::FORBIDDEN).await;
    h.post("keys", "/v1/models", json!({"name": "x", "domain": "risk"}), StatusCode::FORBIDDEN).await;

    // Pagination and visibility.
    for n in ["a1", "a2", "a3"] {
        h.create_model("ci", n).await;
    }
    let page = h.get("viewer", "/v1/models?limit=2", S200).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_owned();
    let page2 = h.get("viewer", &format!("/v1/models?limit=2&after={next}"), S200).await;
    let names: Vec<&str> = page2["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a3", "risk-default"]);
    h.get("viewer", "/v1/models?limit=0", StatusCode::BAD_REQUEST).await;
    h.get("viewer", "/v1/models?bogus=1", StatusCode::BAD_REQUEST).await;
    h.get("viewer", "/v1/models/risk-default", S200).await;
    // Other tenants' models do not exist for them; a restricted domain does not see other domains.
    h.get("other-admin", "/v1/models/risk-default", StatusCode::NOT_FOUND).await;
    assert_eq!(h.get("other-admin", "/v1/models", S200).await["items"].as_array().unwrap().len(), 0);
    h.get("fraud-ci", "/v1/models/risk-default", StatusCode::NOT_FOUND).await;
    h.get("viewer", "/v1/models/Bad!", StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn registration_gates_and_nothing_half_applied() {
    let h = Harness::start().await;
    h.create_model("ci", "m").await;
    let d = h.upload("ci", b"weights").await;
    let missing = Digest::of(b"never uploaded");
    let other_tenant = h.upload("other-ci", b"globex weights").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!([{"path": "w.bin", "size": 7, "digest": missing.to_string()}]), "file_missing"),
        (json!([{"path": "w.bin", "size": 14, "digest": other_tenant.to_string()}]), "file_missing"),
        (json!([{"path": "w.bin", "size": 8, "digest": d.to_string()}]), "file_size_mismatch"),
        (json!([{"path": "../w.bin", "size": 7, "digest": d.to_string()}]), "manifest_invalid"),
        (json!([]), "manifest_invalid"),
        (
            json!([{"path": "a", "size": 7, "digest": d.to_string()}, {"path": "a", "size": 7, "digest": d.to_string()}]),
            "manifest_invalid",
        ),
        (json!([{"path": "w.bin", "size": 7, "digest": "sha256:nothex"}]), "file_digest_invalid"),
    ];
    for (files, check) in cases {
        let p = h
            .post(
                "ci",
                "/v1/models/m/versions",
                json!({"version": "v1", "files": files}),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(p["code"], "release_gate_failed");
        let checks: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["check"].as_str().unwrap()).collect();
        assert!(checks.contains(&check), "{check} not in {checks:?}");
    }
    let good = json!([{"path": "w.bin", "size": 7, "digest": d.to_string()}]);
    let p = h.post("ci", "/v1/models/m/versions", json!({"version": "v1", "files": good, "revalidate_by": "2001-01-01T00:00:00Z", "sbom": missing.to_string()}), StatusCode::UNPROCESSABLE_ENTITY).await;
    let checks: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["check"].as_str().unwrap()).collect();
    assert_eq!(checks, ["sbom_missing", "revalidate_by_past"], "every failed gate is listed by name");
    h.post("ci", "/v1/models/m/versions", json!({"version": "latest", "files": good}), StatusCode::BAD_REQUEST).await;
    h.post(
        "ci",
        "/v1/models/m/versions",
        json!({"version": "v1", "files": good, "extra": 1}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.post("ci", "/v1/models/nope/versions", json!({"version": "v1", "files": good}), StatusCode::NOT_FOUND).await;
    h.post("other-ci", "/v1/models/m/versions", json!({"version": "v1", "files": good}), StatusCode::NOT_FOUND).await;
    h.post("ana", "/v1/models/m/versions", json!({"version": "v1", "files": good}), StatusCode::FORBIDDEN).await;
    // Nothing was stored by any refusal.
    assert_eq!(h.get("viewer", "/v1/models/m/versions", S200).await["items"].as_array().unwrap().len(), 0);
    assert!(h.events("viewer").await.is_empty());

    // A good registration: Candidate, seq 1, digest of the canonical manifest, release_published.
    let sbom = h.upload("ci", br#"{"bomFormat":"CycloneDX","specVersion":"1.6"}"#).await;
    let v = h
        .post("ci", "/v1/models/m/versions", json!({"version": "v1", "files": good, "sbom": sbom.to_string(), "model_card": {"owner": "risk"}, "dataset_snapshots": [{"uri": "s3://lake/loans", "digest": d.to_string()}]}), S201)
        .await;
    let manifest = Manifest::new(vec![FileEntry { path: "w.bin".into(), size: 7, digest: d }]).unwrap();
    assert_eq!(
        (v["stage"].as_str(), v["seq"].as_u64(), v["hold"].as_str()),
        (Some("Candidate"), Some(1), Some("none"))
    );
    assert_eq!(v["artifact_digest"], manifest.digest().to_string());
    // The manifest itself is a blob under the artifact digest; the release record too.
    let bytes = h
        .req("ci", Method::GET, &format!("/v1/blobs/{}", manifest.digest()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.to_vec(), manifest.canonical_bytes());
    // The release attestation: a DSSE envelope signed by the registry over an in-toto statement
    // whose subject is the artifact digest.
    let env: fulcrum_verify::dsse::Envelope = h
        .req("ci", Method::GET, v["uris"]["attestation"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bundle: fulcrum_sign::TrustBundle =
        h.req("", Method::GET, "/v1/trust-bundle").send().await.unwrap().json().await.unwrap();
    let key = bundle.keys[0].key().unwrap();
    let payload = env.verify(&key, fulcrum_verify::dsse::INTOTO_PAYLOAD_TYPE).unwrap();
    let st = fulcrum_verify::intoto::Statement::parse(&payload, fulcrum_server::release::RELEASE_PREDICATE).unwrap();
    assert!(st.has_sha256_subject(&manifest.digest().hex()));
    assert_eq!(st.predicate["sbom"], sbom.to_string());
    assert_eq!(st.predicate["publisher"], "ci");
    assert_eq!(st.predicate["release_gate"]["sbom"]["format"], "cyclonedx");
    assert_eq!(st.predicate["release_gate"]["mode"], "development");
    // Immutable: the same label again is a conflict, and changes nothing.
    h.post("ci", "/v1/models/m/versions", json!({"version": "v1", "files": good}), StatusCode::CONFLICT).await;
    let (v2, _) = h.register("ci", "m", "v2", &[("a/b.bin", b"bee"), ("c.json", b"{}")]).await;
    assert_eq!(v2["seq"], 2);
    assert_eq!(h.event_kinds("viewer").await, ["release_published", "release_published"]);
    let ev = &h.events("viewer").await[0];
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["type"], "io.fulcrum.registry.release_published");
    for k in [
        "event",
        "ts",
        "model",
        "version",
        "from",
        "to",
        "artifact_digest",
        "policy_digest",
        "tenant",
        "domain",
        "env",
        "chg_id",
        "approvals",
    ] {
        assert!(ev["data"].get(k).is_some(), "seed field {k} missing: {ev}");
    }
    let page = h.get("viewer", "/v1/models/m/versions?limit=1", S200).await;
    assert_eq!(page["next"], "1");
    let page = h.get("viewer", "/v1/models/m/versions?limit=1&after=1", S200).await;
    assert_eq!(page["items"][0]["version"], "v2");
    h.get("viewer", "/v1/models/m/versions?after=x", StatusCode::BAD_REQUEST).await;
    h.get("viewer", "/v1/models/m/versions/v9", StatusCode::NOT_FOUND).await;
    h.get("other-admin", "/v1/models/m/versions/v1", StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn promotion_ladder_roles_and_four_eyes() {
    let h = Harness::start().await;
    h.create_model("ci", "m").await;
    h.register("ci", "m", "v1", &[("w", b"1")]).await;
    let v = "/v1/models/m/versions/v1";
    let before = h.events("viewer").await.len();
    let p = h
        .post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::CONFLICT)
        .await;
    assert_eq!(p["code"], "not_next_rung");
    h.post("ci", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::FORBIDDEN).await;
    h.post("keys", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::FORBIDDEN).await;
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Production"}), StatusCode::UNPROCESSABLE_ENTITY).await;
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging", "chg_id": "bad id!"}), StatusCode::BAD_REQUEST)
        .await;
    h.post("other-admin", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::NOT_FOUND).await;
    assert_eq!(h.events("viewer").await.len(), before, "refusals emit nothing");

    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging", "chg_id": "CHG-1"}), S200).await;
    // Four-eyes: publisher cannot approve; one approval is not enough; the same person twice is refused.
    assert_eq!(h.post("ci", &format!("{v}/approvals"), json!({}), StatusCode::FORBIDDEN).await["code"], "forbidden");
    h.post("ana", &format!("{v}/approvals"), json!({"comment": "looks good"}), S201).await;
    assert_eq!(
        h.post("ana", &format!("{v}/approvals"), json!({}), StatusCode::CONFLICT).await["code"],
        "already_approved_by_subject"
    );
    let p = h
        .post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::CONFLICT)
        .await;
    assert_eq!(p["code"], "four_eyes");
    h.post("bo", &format!("{v}/approvals"), json!({}), S201).await;
    let out = h.post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-10234"}), S200).await;
    assert_eq!(out["stage"], "Approved");
    let approvals: Vec<&str> =
        out["approvals"].as_array().unwrap().iter().map(|a| a["subject"].as_str().unwrap()).collect();
    assert_eq!(approvals, ["ana", "bo"]);
    assert_eq!(
        h.post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::CONFLICT)
            .await["code"],
        "already_at_stage"
    );
    let evs = h.events("viewer").await;
    let last = evs.last().unwrap();
    assert_eq!(
        (last["data"]["event"].as_str(), last["data"]["from"].as_str(), last["data"]["to"].as_str()),
        (Some("promotion"), Some("Staging"), Some("Approved"))
    );
    assert_eq!(last["data"]["approvals"], json!(["approver:ana", "security-officer:bo"]));
    assert_eq!(last["data"]["chg_id"], "CHG-10234");
    assert_eq!(last["data"]["env"], "prod");
}

fn verify_resolve(
    bundle: &fulcrum_sign::TrustBundle,
    resp_headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> ResolveDocument {
    let kid = resp_headers["fulcrum-key-id"].to_str().unwrap();
    let sig = resp_headers["fulcrum-signature"].to_str().unwrap();
    bundle.verify(kid, body, sig).expect("resolve answers are signed by a key of the trust bundle");
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn resolve_is_signed_cached_and_obeys_env_rules() {
    let h = Harness::start().await;
    with_production(&h, "risk").await;
    h.register("ci", "risk", "v2", &[("weights.bin", b"two")]).await;
    h.post("rm", "/v1/models/risk/versions/v2/promotions", json!({"to": "Staging"}), S200).await;

    let bresp = h.req("", Method::GET, "/v1/trust-bundle").send().await.unwrap();
    let (kid, sig) = (
        bresp.headers()["fulcrum-key-id"].to_str().unwrap().to_owned(),
        bresp.headers()["fulcrum-signature"].to_str().unwrap().to_owned(),
    );
    let bbody = bresp.bytes().await.unwrap();
    let bundle: fulcrum_sign::TrustBundle = serde_json::from_slice(&bbody).unwrap();
    bundle.verify(&kid, &bbody, &sig).unwrap();
    assert_eq!(bundle.keys.len(), 1);
    assert!(bundle.keys[0].development);

    let misses = |m: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with("fulcrum_resolve_cache_misses_total "))
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let metrics0 = h.get("", "/metrics", S200).await;
    let resp = h.req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod").send().await.unwrap();
    assert_eq!(resp.status(), S200);
    assert_eq!(resp.headers()["content-type"], "application/vnd.fulcrum.resolve.v1+json");
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let doc = verify_resolve(&bundle, &headers, &body);
    // The seed's fields with exactly their names and types, first and in order.
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.starts_with("{\"name\":"), "{text}");
    let seed = [
        "name",
        "version",
        "stage",
        "artifact_digest",
        "policy_digest",
        "revoked",
        "quarantined",
        "uris",
        "model_card_ref",
    ];
    let at: Vec<usize> = seed.iter().map(|k| text.find(&format!("\"{k}\":")).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "seed fields come first, in order: {text}");
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert!(raw["revoked"].is_boolean() && raw["quarantined"].is_boolean() && raw["stage"].is_string());
    assert_eq!((doc.name.as_str(), doc.version.as_str(), doc.stage.as_str(), doc.seq), ("risk", "v1", "Approved", 1));
    assert_eq!(doc.model_card_ref, "MC-risk-v1");
    assert!(doc.uris.artifact.ends_with(&doc.artifact_digest));
    assert_eq!(
        (doc.tenant.as_str(), doc.alias.as_deref(), doc.alias_position, doc.env.as_str()),
        ("acme", Some("production"), Some(1), "prod")
    );
    assert_eq!(doc.decision, fulcrum_core::resolve::Decision::Permit);
    assert!(doc.expires_at > doc.issued_at);
    // Alias answers come from the cache: no signing on request.
    h.req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod").send().await.unwrap();
    let metrics1 = h.get("", "/metrics", S200).await;
    assert_eq!(misses(metrics1.as_str().unwrap()), misses(metrics0.as_str().unwrap()));

    // Pinned references: by version and by digest.
    let by_digest = h
        .req("agent", Method::GET, &format!("/v1/resolve?ref=risk@{}&env=prod", doc.artifact_digest))
        .send()
        .await
        .unwrap();
    let hd = by_digest.headers().clone();
    let d2 = verify_resolve(&bundle, &hd, &by_digest.bytes().await.unwrap());
    assert_eq!((d2.version.as_str(), d2.alias.as_deref()), ("v1", None));

    // A prod caller asking for a Staging version gets a signed deny with a reason, not a 500.
    let r = h.req("agent", Method::GET, "/v1/resolve?ref=risk@v2&env=prod").send().await.unwrap();
    assert_eq!(r.status(), S200);
    let hd = r.headers().clone();
    let deny = verify_resolve(&bundle, &hd, &r.bytes().await.unwrap());
    assert_eq!(
        (deny.decision, deny.deny_reason.as_deref()),
        (fulcrum_core::resolve::Decision::Deny, Some("stage_not_allowed"))
    );
    // ...while dev may load it.
    let r = h.req("agent-dev", Method::GET, "/v1/resolve?ref=risk@v2&env=dev").send().await.unwrap();
    let hd = r.headers().clone();
    assert_eq!(
        verify_resolve(&bundle, &hd, &r.bytes().await.unwrap()).decision,
        fulcrum_core::resolve::Decision::Permit
    );

    // Bad references and env misuse.
    for (q, code) in [
        ("ref=risk@latest&env=prod", "bad_reference"),
        ("ref=risk:latest&env=prod", "bad_reference"),
        ("ref=/models/risk&env=prod", "bad_reference"),
        ("ref=risk&env=prod", "bad_reference"),
        ("ref=risk@sha256:12&env=prod", "bad_reference"),
        ("ref=risk@production&env=qa", "bad_env"),
    ] {
        let p = h.get("agent", &format!("/v1/resolve?{q}"), StatusCode::BAD_REQUEST).await;
        assert_eq!(p["code"], code, "{q}");
    }
    h.get("agent", "/v1/resolve?ref=risk@production&env=dev", StatusCode::FORBIDDEN).await;
    h.get("viewer", "/v1/resolve?ref=risk@production", StatusCode::BAD_REQUEST).await;
    for q in ["env=prod", "ref=risk@production&ref=risk@v1&env=prod", "ref=risk@production&env=prod&debug=1"] {
        let p = h.get("agent", &format!("/v1/resolve?{q}"), StatusCode::BAD_REQUEST).await;
        assert_eq!(p["code"], "bad_query", "{q}");
    }
    h.get("agent", "/v1/resolve?ref=risk@v7&env=prod", StatusCode::NOT_FOUND).await;
    h.get("agent", "/v1/resolve?ref=nope@production&env=prod", StatusCode::NOT_FOUND).await;
    h.get("other-admin", "/v1/resolve?ref=risk@production&env=prod", StatusCode::NOT_FOUND).await;
    h.get("fraud-ci", "/v1/resolve?ref=risk@production&env=prod", StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn aliases_downgrade_revocation_rollback_and_quarantine() {
    let h = Harness::start().await;
    with_production(&h, "risk").await;
    h.register("ci", "risk", "v2", &[("weights.bin", b"two")]).await;
    let a = "/v1/models/risk/aliases/production";
    // A Candidate cannot go to a prod alias; nothing changes.
    assert_eq!(h.put("rm", a, json!({"version": "v2"}), StatusCode::CONFLICT).await["code"], "stage_not_allowed");
    h.approve_fully("risk", "v2").await;
    h.put("ci", a, json!({"version": "v2"}), StatusCode::FORBIDDEN).await;
    h.put("rm", a, json!({"version": "v2", "chg_id": "CHG-20"}), S200).await;
    // Downgrade needs allow_downgrade AND a chg_id.
    assert_eq!(
        h.put("rm", a, json!({"version": "v1", "allow_downgrade": true}), StatusCode::CONFLICT).await["code"],
        "downgrade_needs_change"
    );
    assert_eq!(
        h.put("rm", a, json!({"version": "v1", "chg_id": "CHG-21"}), StatusCode::CONFLICT).await["code"],
        "downgrade_needs_change"
    );
    let got = h.get("viewer", a, S200).await;
    assert_eq!((got["version"].as_str(), got["position"].as_u64()), (Some("v2"), Some(2)));
    // Bad alias names, unknown versions, aliases shadowing version labels, and env changes.
    h.put("rm", "/v1/models/risk/aliases/latest", json!({"version": "v2"}), StatusCode::BAD_REQUEST).await;
    h.put("rm", "/v1/models/risk/aliases/Prod", json!({"version": "v2"}), StatusCode::BAD_REQUEST).await;
    h.put("rm", a, json!({"version": "v9"}), StatusCode::NOT_FOUND).await;
    assert_eq!(
        h.put("rm", "/v1/models/risk/aliases/v1", json!({"version": "v2"}), StatusCode::CONFLICT).await["code"],
        "alias_shadows_version"
    );
    assert_eq!(
        h.put("rm", a, json!({"version": "v2", "env": "dev"}), StatusCode::CONFLICT).await["code"],
        "alias_env_fixed"
    );
    h.put("rm", "/v1/models/risk/aliases/canary", json!({"version": "v2", "chg_id": "CHG-C"}), S200).await;

    // Revocation rolls both aliases back to v1, with the incident id, in the same transaction.
    h.post("bo", "/v1/models/risk/versions/v2/revocation", json!({"reason": "critical CVE", "inc_id": "INC-7"}), S200)
        .await;
    let hist = h.get("viewer", &format!("{a}/history"), S200).await;
    let last = hist.as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["cause"].as_str(), last["version"].as_str(), last["inc_id"].as_str()),
        (Some("rollback"), Some("v1"), Some("INC-7"))
    );
    assert_eq!(hist.as_array().unwrap().len(), 3);
    // canary only ever pointed at v2: no healthy Approved version in its history, so it is emptied.
    assert_eq!(h.get("viewer", "/v1/models/risk/aliases/canary", S200).await["version"], Value::Null);
    let kinds = h.event_kinds("viewer").await;
    // The revocation named INC-7, which had no record yet: it opened one, after the change.
    assert_eq!(&kinds[kinds.len() - 4..], ["revocation", "alias_updated", "alias_updated", "incident_opened"]);
    let doc: ResolveDocument = h
        .req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((doc.version.as_str(), doc.alias_position), ("v1", Some(3)));
    let revoked: ResolveDocument =
        h.req("agent", Method::GET, "/v1/resolve?ref=risk@v2&env=prod").send().await.unwrap().json().await.unwrap();
    assert!(revoked.revoked);
    assert_eq!(revoked.deny_reason.as_deref(), Some("revoked"));
    // Revocation is terminal.
    assert_eq!(
        h.post(
            "bo",
            "/v1/models/risk/versions/v2/revocation",
            json!({"reason": "again", "chg_id": "CHG-1"}),
            StatusCode::CONFLICT
        )
        .await["code"],
        "revoked"
    );
    h.post("bo", "/v1/models/risk/versions/v2/revocation", json!({"reason": "x"}), StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    h.post(
        "bo",
        "/v1/models/risk/versions/v1/revocation",
        json!({"reason": "", "inc_id": "INC-1"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.post(
        "ci",
        "/v1/models/risk/versions/v1/revocation",
        json!({"reason": "x", "inc_id": "INC-1"}),
        StatusCode::FORBIDDEN,
    )
    .await;

    // Quarantining v1 leaves no healthy Approved version: the alias empties and resolve says why.
    h.post("bo", "/v1/models/risk/versions/v1/quarantine", json!({"reason": "drift", "inc_id": "INC-8"}), S200).await;
    let p = h.get("agent", "/v1/resolve?ref=risk@production&env=prod", StatusCode::NOT_FOUND).await;
    assert_eq!(p["code"], "alias_empty");
    assert_eq!(h.get("viewer", a, S200).await["version"], Value::Null);
    // Lifting needs an approval from someone else during this quarantine, and a chg_id.
    let q = "/v1/models/risk/versions/v1/quarantine";
    assert_eq!(
        h.delete("bo", q, json!({"chg_id": "CHG-30"}), StatusCode::CONFLICT).await["code"],
        "lift_needs_approval"
    );
    h.post("ana", "/v1/models/risk/versions/v1/approvals", json!({"comment": "drift explained"}), S201).await;
    h.delete("bo", q, json!({}), StatusCode::UNPROCESSABLE_ENTITY).await;
    let call = h.req("bo", Method::DELETE, &format!("{q}?chg_id=CHG-30"));
    assert_eq!(h.call(call, S200).await["hold"], "none");
    assert_eq!(h.event_kinds("viewer").await.last().unwrap(), "quarantine_released");
    // The alias stays empty until an operator points it again.
    h.put("rm", a, json!({"version": "v1", "chg_id": "CHG-31"}), S200).await;
    // Delete keeps the history.
    h.delete("rm", a, json!({"chg_id": "CHG-32"}), StatusCode::NO_CONTENT).await;
    h.get("viewer", a, StatusCode::NOT_FOUND).await;
    h.delete("rm", a, json!({}), StatusCode::NOT_FOUND).await;
    let hist = h.get("viewer", &format!("{a}/history"), S200).await;
    let causes: Vec<&str> = hist.as_array().unwrap().iter().map(|e| e["cause"].as_str().unwrap()).collect();
    assert_eq!(causes, ["set", "set", "rollback", "cleared", "set", "deleted"]);
    h.get("other-admin", &format!("{a}/history"), StatusCode::NOT_FOUND).await;
    h.get("viewer", "/v1/models/risk/aliases/nope/history", StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn events_pages_stream_resume_and_startup_reports() {
    let h = Harness::start().await;
    with_production(&h, "risk").await;
    let all = h.events("viewer").await;
    assert_eq!(all.len(), 6);
    let seqs: Vec<i64> = all.iter().map(|e| e["sequence"].as_str().unwrap().parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    let page = h.get("viewer", "/v1/events?after=2&limit=2", S200).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after"], 4);
    h.get("viewer", "/v1/events?limit=5000", StatusCode::BAD_REQUEST).await;
    h.get("viewer", "/v1/events?after=-1", StatusCode::BAD_REQUEST).await;
    assert!(h.events("other-admin").await.is_empty(), "other tenants see none of these events");
    h.get("keys", "/v1/events", StatusCode::FORBIDDEN).await;
    // Filters: one model, some types.
    h.create_model("ci", "other").await;
    let only = h.get("viewer", "/v1/events?model=risk&types=promotion,alias_updated", S200).await;
    let kinds: Vec<&str> =
        only["events"].as_array().unwrap().iter().map(|e| e["data"]["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["promotion", "promotion", "alias_updated"]);
    let other = h.get("viewer", "/v1/events?model=other", S200).await;
    assert!(other["events"].as_array().unwrap().iter().all(|e| e["data"]["model"] == "other"));

    // Startup reports.
    let ack = h
        .post(
            "agent",
            "/v1/startup-reports",
            json!({"ref": "risk@production", "env": "prod", "decision": "permit", "version": "v1", "agent": "pod-1"}),
            S201,
        )
        .await;
    assert_eq!(ack["event"], "startup_permit");
    h.post(
        "agent",
        "/v1/startup-reports",
        json!({"ref": "risk@production", "env": "prod", "decision": "deny"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.post(
        "agent",
        "/v1/startup-reports",
        json!({"ref": "risk@production", "env": "prod", "decision": "maybe", "reason": "x"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.post(
        "agent",
        "/v1/startup-reports",
        json!({"ref": "risk@production", "env": "dev", "decision": "permit"}),
        StatusCode::FORBIDDEN,
    )
    .await;
    h.post(
        "ci",
        "/v1/startup-reports",
        json!({"ref": "risk@production", "env": "prod", "decision": "permit"}),
        StatusCode::FORBIDDEN,
    )
    .await;
    h.post(
        "agent",
        "/v1/startup-reports",
        json!({"ref": "nope@production", "env": "prod", "decision": "permit"}),
        StatusCode::NOT_FOUND,
    )
    .await;
    h.post("agent", "/v1/startup-reports", json!({"ref": "risk@production", "env": "prod", "decision": "deny", "reason": "signature_invalid", "artifact_digest": "sha256:xx"}), StatusCode::BAD_REQUEST).await;
    let ack = h
        .post(
            "agent",
            "/v1/startup-reports",
            json!({"ref": "risk@production", "env": "prod", "decision": "deny", "reason": "signature_invalid"}),
            S201,
        )
        .await;
    let deny_seq = ack["sequence"].as_i64().unwrap();
    let last = h.events("viewer").await.last().unwrap().clone();
    assert_eq!(
        (last["data"]["event"].as_str(), last["data"]["reason"].as_str()),
        (Some("startup_deny"), Some("signature_invalid"))
    );

    // SSE: resume from Last-Event-ID gets exactly what followed, then live events.
    let client = fulcrum_client::Client::new(&h.url, Some(common::token("viewer"))).unwrap();
    let mut stream = Box::pin(client.event_stream(Some(5)).await.unwrap());
    use futures_util::StreamExt;
    let mut ids = Vec::new();
    for _ in 0..(deny_seq - 5) {
        let ev =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
        ids.push(ev.id.unwrap().parse::<i64>().unwrap());
    }
    assert_eq!(ids, (6..=deny_seq).collect::<Vec<_>>());
    h.post("bo", "/v1/models/risk/versions/v1/quarantine", json!({"reason": "drift", "inc_id": "INC-1"}), S200).await;
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((ev.id.as_deref(), ev.event.as_deref()), (Some(&*(deny_seq + 1).to_string()), Some("quarantined")));
    let body: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(body["data"]["inc_id"], "INC-1");
    let p = h
        .call(h.req("viewer", Method::GET, "/v1/events/stream").header("last-event-id", "abc"), StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(p["code"], "bad_last_event_id");
}

#[tokio::test]
async fn ops_endpoints_and_openapi_cover_every_path() {
    let h = Harness::start().await;
    assert_eq!(h.get("", "/healthz", S200).await["status"], "ok");
    assert_eq!(h.get("", "/readyz", S200).await["status"], "ready");
    let m = h.get("", "/metrics", S200).await;
    assert!(m.as_str().unwrap().contains("fulcrum_resolve_total{decision=\"permit\"}"));
    let api = h.get("", "/openapi.json", S200).await;
    let paths = api["paths"].as_object().unwrap();
    for p in [
        "/v1/blobs",
        "/v1/blobs/{digest}",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions",
        "/v1/models/{name}/versions/{version}",
        "/v1/models/{name}/versions/{version}/approvals",
        "/v1/models/{name}/versions/{version}/promotions",
        "/v1/models/{name}/versions/{version}/revocation",
        "/v1/models/{name}/versions/{version}/quarantine",
        "/v1/models/{name}/aliases/{alias}",
        "/v1/models/{name}/aliases/{alias}/history",
        "/v1/resolve",
        "/v1/startup-reports",
        "/v1/events",
        "/v1/events/stream",
        "/v1/trust-bundle",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} missing from openapi.json");
    }
    assert!(paths["/v1/models/{name}/versions/{version}/quarantine"].get("delete").is_some());
    let params: Vec<(&str, &str, bool)> = paths["/v1/resolve"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap(), p["required"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(params, [("ref", "query", true), ("env", "query", false)]);
    assert_eq!(h.get("", "/v1/nothing", StatusCode::NOT_FOUND).await["code"], "no_route");
    assert_eq!(
        h.call(h.req("admin", Method::PATCH, "/v1/models"), StatusCode::METHOD_NOT_ALLOWED).await["code"],
        "method_not_allowed"
    );

    // Every answer above is counted under its route's template, method and status; paths that
    // match no route share one label, so clients cannot grow the label set.
    h.get("viewer", "/v1/models/risk", StatusCode::NOT_FOUND).await;
    h.get("viewer", "/v1/models/risk/versions/v9", StatusCode::NOT_FOUND).await;
    h.get("", "/wp-admin/x.php", StatusCode::NOT_FOUND).await;
    let m = h.get("", "/metrics", S200).await;
    let m = m.as_str().unwrap();
    let count = |route: &str, method: &str, status: u16| -> u64 {
        let key = format!("fulcrum_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} ");
        m.lines().find_map(|l| l.strip_prefix(&key)).map_or(0, |n| n.parse().unwrap())
    };
    assert_eq!(count("/healthz", "GET", 200), 1, "{m}");
    assert_eq!(count("/metrics", "GET", 200), 1, "{m}");
    assert_eq!(count("/openapi.json", "GET", 200), 1, "{m}");
    assert_eq!(count("/v1/models/{name}", "GET", 404), 1, "{m}");
    assert_eq!(count("/v1/models/{name}/versions/{version}", "GET", 404), 1, "{m}");
    assert_eq!(count("/v1/models", "OTHER", 405), 1, "{m}");
    assert_eq!(count("unmatched", "GET", 404), 2, "{m}");
    assert!(!m.contains("route=\"/v1/models/risk") && !m.contains("wp-admin"), "raw paths are never labels: {m}");
    assert!(
        m.contains("fulcrum_http_request_duration_seconds_count{route=\"/v1/models/{name}\",method=\"GET\"} 1"),
        "{m}"
    );
}

/// Garbage at every endpoint: the registry answers 4xx problems, never 5xx.
#[tokio::test]
async fn garbage_never_yields_a_5xx() {
    let h = Harness::start().await;
    with_production(&h, "risk").await;
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "{\"version\":1}",
        "\u{0}\u{1}",
        "{\"to\":\"Staging\",\"chg_id\":\"\\u0000\"}",
        &"[".repeat(10_000),
    ];
    let paths = [
        "/v1/models",
        "/v1/models/risk/versions",
        "/v1/models/risk/versions/v1/approvals",
        "/v1/models/risk/versions/v1/promotions",
        "/v1/models/risk/versions/v1/revocation",
        "/v1/models/risk/versions/v1/quarantine",
        "/v1/models/risk/aliases/production",
        "/v1/startup-reports",
        "/v1/resolve?ref=%00&env=prod",
        "/v1/models/%ff%fe/versions/%00",
    ];
    for who in ["admin", "agent", "viewer"] {
        for p in paths {
            for m in [Method::POST, Method::PUT, Method::DELETE, Method::GET] {
                if who == "admin" && m == Method::DELETE {
                    continue; // an empty DELETE of an alias is a valid request, not garbage
                }
                for b in bodies {
                    let resp = h
                        .req(who, m.clone(), p)
                        .header("content-type", "application/json")
                        .body(b.to_owned())
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().as_u16() < 500, "{m} {p} {b:?} as {who} -> {}", resp.status());
                }
            }
        }
    }
    // The state is intact: production still resolves to v1.
    let doc: ResolveDocument = h
        .req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc.version, "v1");
}

/// The cache is rebuilt from the database on restart and serves the same state.
#[tokio::test]
async fn restart_restores_state_and_bootstrap_tokens() {
    let h = Harness::start().await;
    with_production(&h, "risk").await;
    let dir = h.stop().await;
    let h = Harness::start_in(dir).await;
    let doc: ResolveDocument = h
        .req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((doc.version.as_str(), doc.alias_position), ("v1", Some(1)));
    assert_eq!(h.events("viewer").await.len(), 6);

    // First start without a tokens file: one is written (0600) with a working admin token.
    let dir = tempfile::tempdir().unwrap();
    let (state, notes) = fulcrum_server::Registry::open_default(fulcrum_server::Config::new(dir.path())).await.unwrap();
    let (path, token) = notes.created_tokens.clone().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(state.identities.lookup(&token).unwrap().role, fulcrum_core::Role::Admin);
    assert!(notes.created_key.is_some() && notes.development_key);
    drop(state);
    let (_, notes) = fulcrum_server::Registry::open_default(fulcrum_server::Config::new(dir.path())).await.unwrap();
    assert!(
        notes.created_tokens.is_none() && notes.created_key.is_none(),
        "second start reuses the token file and the key"
    );
}

/// A report names what its reference names: `name@version` the version (even when the report
/// carries none), `name@alias` the alias, `name@sha256:…` the artifact.
#[tokio::test]
async fn startup_reports_name_the_version_the_alias_or_the_digest() {
    let h = Harness::start().await;
    common::with_production(&h, "risk").await;
    let report = |r: &str| json!({"ref": r, "env": "prod", "decision": "deny", "reason": "registry_deny"});
    let digest =
        h.get("viewer", "/v1/models/risk/versions/v1", S200).await["artifact_digest"].as_str().unwrap().to_owned();
    for r in ["risk@v1", "risk@production", &format!("risk@{digest}")] {
        h.post("agent", "/v1/startup-reports", report(r), S201).await;
    }
    let evs = h.events("viewer").await;
    let deny: Vec<&Value> = evs.iter().filter(|e| e["data"]["event"] == "startup_deny").collect();
    let seen: Vec<(Value, Value, Value)> = deny
        .iter()
        .map(|e| (e["data"]["version"].clone(), e["data"]["alias"].clone(), e["data"]["artifact_digest"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!("v1"), Value::Null, Value::Null),
            (Value::Null, json!("production"), Value::Null),
            (Value::Null, Value::Null, json!(digest)),
        ]
    );
}

/// One identifier rule, applied at every entry: what a promotion accepts, evidence can name; a
/// change id that walks up directories, label keys with NUL, paths that differ only by case or
/// hide their extension behind U+202E, and reasons with control characters are refused with a
/// 4xx at the first door, and nothing is stored.
#[tokio::test]
async fn hostile_names_are_refused_at_the_first_door() {
    let h = Harness::start().await;
    let p = h
        .post(
            "ci",
            "/v1/models",
            json!({"name": "labels", "domain": "risk", "labels": {"pii\u{0}": "x"}}),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(p["code"], "bad_identifier");
    h.post(
        "ci",
        "/v1/models",
        json!({"name": "labels", "domain": "risk", "labels": {"a:b": "c"}}),
        StatusCode::BAD_REQUEST,
    )
    .await;
    h.post(
        "ci",
        "/v1/models",
        json!({"name": "labels", "domain": "risk", "description": "x\u{202E}y"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.get("viewer", "/v1/models/labels", StatusCode::NOT_FOUND).await;

    h.create_model("ci", "risk").await;
    let a = h.upload("ci", b"a").await;
    let b = h.upload("ci", b"b").await;
    for files in [
        json!([{"path": "Weights.bin", "size": 1, "digest": a.to_string()}, {"path": "weights.bin", "size": 1, "digest": b.to_string()}]),
        json!([{"path": "report\u{202E}fdp.exe", "size": 1, "digest": a.to_string()}]),
    ] {
        let p = h
            .post(
                "ci",
                "/v1/models/risk/versions",
                json!({"version": "v1", "files": files}),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert!(p["detail"].as_str().is_some(), "{p}");
    }
    h.get("viewer", "/v1/models/risk/versions/v1", StatusCode::NOT_FOUND).await;

    h.register("ci", "risk", "v1", &[("w", b"one")]).await;
    let v = "/v1/models/risk/versions/v1";
    for bad in ["../../x", "/etc", ".hidden"] {
        let p = h
            .post("rm", &format!("{v}/promotions"), json!({"to": "Staging", "chg_id": bad}), StatusCode::BAD_REQUEST)
            .await;
        assert_eq!(p["code"], "bad_identifier", "{bad}");
    }
    h.post(
        "bo",
        &format!("{v}/quarantine"),
        json!({"reason": "look\u{1b}[2J", "inc_id": "INC-1"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(h.get("viewer", v, S200).await["stage"], "Candidate", "nothing applied");
    // Whatever an id the API took, evidence names it.
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging", "chg_id": "CHG:7/a+b@x"}), S200).await;
    let r = h.post("auditor", "/v1/audit/evidence", json!({"chg_id": "CHG:7/a+b@x"}), S201).await;
    assert!(r["key"].as_str().unwrap().starts_with("acme/chg-CHG_7_a_b_x-"), "{r}");
}

on_scale_out!(
    blobs_upload_download_range_and_isolation,
    wrong_content_length_is_refused,
    models_create_list_get_and_bad_input,
    registration_gates_and_nothing_half_applied,
    promotion_ladder_roles_and_four_eyes,
    resolve_is_signed_cached_and_obeys_env_rules,
    aliases_downgrade_revocation_rollback_and_quarantine,
    events_pages_stream_resume_and_startup_reports,
    ops_endpoints_and_openapi_cover_every_path,
    garbage_never_yields_a_5xx,
    restart_restores_state_and_bootstrap_tokens,
    startup_reports_name_the_version_the_alias_or_the_digest,
    hostile_names_are_refused_at_the_first_door,
);
