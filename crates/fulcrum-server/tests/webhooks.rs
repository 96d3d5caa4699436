//! Webhooks against a real HTTP receiver on loopback: every event in outbox order, signed with
//! HMAC-SHA256 under the secret file (rotated while the registry runs), a receiver failing for a
//! while retried with backoff, a receiver refusing one event for good → that event in the
//! dead-letter view and the ones after it still delivered; once the receiver is fixed, an admin
//! re-delivers it.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as Status};
use common::Harness;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Default)]
struct Received {
    /// (headers, body) of each accepted delivery, in arrival order.
    accepted: Vec<(HeaderMap, String)>,
    attempts: HashMap<String, u32>,
    /// The receiver was fixed: it takes the poisoned event too.
    cured: bool,
}

/// A receiver that fails the first two tries of a `flaky` step and every try of a `poison` one.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap();
                let id = v["id"].as_str().unwrap().to_owned();
                let mut r = g.lock().unwrap();
                let n = {
                    let a = r.attempts.entry(id).or_default();
                    *a += 1;
                    *a
                };
                match v["data"]["detail"].as_str() {
                    Some("poison") if !r.cured => Status::INTERNAL_SERVER_ERROR,
                    Some("flaky") if n <= 2 => Status::SERVICE_UNAVAILABLE,
                    _ => {
                        r.accepted.push((headers, body));
                        Status::OK
                    }
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, got)
}

async fn step(h: &Harness, detail: &str) {
    let body = json!({"ref": "fraud@production", "env": "prod", "kind": "step", "step": "permit",
                      "observed_at": "2026-11-29T00:00:00Z", "detail": detail});
    h.post("agent", "/v1/agent-reports", body, StatusCode::CREATED).await;
}

fn verify(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let sig = headers["fulcrum-signature"].to_str().unwrap();
    let t: i64 = sig.split(',').next().unwrap().strip_prefix("t=").unwrap().parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    (now - t).abs() < 60 && sig == fulcrum_server::webhooks::signature(secret.as_bytes(), t, body.as_bytes())
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_retried_dead_lettered_and_kept_in_order() {
    let (url, got) = receiver().await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("siem.key");
    std::fs::write(&secret_file, "first-secret\n").unwrap();
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| {
        c.webhooks = vec![fulcrum_server::webhooks::WebhookConfig {
            name: "siem".into(),
            url,
            secret_file: secret_file.clone(),
            tenants: Some(vec!["acme".into()]),
            max_attempts: 3,
            first_retry_ms: 50,
        }];
    })
    .await;
    common::with_production(&h, "fraud").await;
    for d in ["a", "flaky", "b", "poison", "c"] {
        step(&h, d).await;
    }
    let last_of = |d: &str| {
        let d = d.to_owned();
        let got = got.clone();
        move || got.lock().unwrap().accepted.iter().any(|(_, b)| b.contains(&format!("\"detail\":\"{d}\"")))
    };
    until("the last event arrives after the retries and the dead letter", last_of("c")).await;

    let committed =
        h.get("admin", "/v1/events?after=0&limit=1000", StatusCode::OK).await["events"].as_array().unwrap().clone();
    let poison = committed.iter().find(|e| e["data"]["detail"] == "poison").unwrap()["id"].as_str().unwrap().to_owned();
    let flaky = committed.iter().find(|e| e["data"]["detail"] == "flaky").unwrap()["id"].as_str().unwrap().to_owned();
    {
        let r = got.lock().unwrap();
        let ids: Vec<String> =
            r.accepted.iter().map(|(hd, _)| hd["fulcrum-event-id"].to_str().unwrap().to_owned()).collect();
        let want: Vec<String> =
            committed.iter().map(|e| e["id"].as_str().unwrap().to_owned()).filter(|id| *id != poison).collect();
        assert_eq!(ids, want, "every event but the poisoned one, once, in outbox order");
        for (hd, body) in &r.accepted {
            assert!(verify("first-secret", hd, body), "signed with the secret");
            assert_eq!(hd["content-type"], "application/cloudevents+json");
        }
        assert_eq!(r.attempts[&flaky], 3, "two failures, then delivered");
        assert_eq!(r.attempts[&poison], 3, "max_attempts, then given up");
    }
    let dead = h.get("auditor", "/v1/webhooks/dead-letters", StatusCode::OK).await;
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    assert_eq!((dead[0]["event_id"].as_str(), dead[0]["attempts"].as_u64()), (Some(poison.as_str()), Some(3)));
    assert_eq!((dead[0]["sink"].as_str(), dead[0]["last_error"].as_str()), (Some("webhook:siem"), Some("HTTP 500")));

    // The secret rotated in its file: the next events are signed with the new one.
    std::fs::write(&secret_file, "second-secret\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    step(&h, "d").await;
    until("the event after the rotation arrives", last_of("d")).await;
    {
        let r = got.lock().unwrap();
        let (hd, body) = r.accepted.last().unwrap();
        assert!(verify("second-secret", hd, body) && !verify("first-secret", hd, body));
    }

    // Re-delivery of the dead letter: an admin's act, once, with the outcome kept.
    let id = dead[0]["id"].as_i64().unwrap();
    let path = format!("/v1/webhooks/dead-letters/{id}/redelivery");
    h.post("auditor", &path, json!(null), StatusCode::FORBIDDEN).await;
    let still = h.post("admin", &path, json!(null), StatusCode::OK).await;
    assert_eq!((still["delivered"].as_bool(), still["error"].as_str()), (Some(false), Some("HTTP 500")), "{still}");
    assert_eq!(
        (still["dead_letter"]["attempts"].as_u64(), still["dead_letter"]["resolved_at"].as_str()),
        (Some(4), None)
    );
    got.lock().unwrap().cured = true;
    let done = h.post("admin", &path, json!(null), StatusCode::OK).await;
    assert_eq!(done["delivered"], true, "{done}");
    assert_eq!(done["dead_letter"]["resolved_by"], "admin");
    {
        let r = got.lock().unwrap();
        let (hd, body) = r.accepted.last().unwrap();
        assert_eq!(hd["fulcrum-event-id"].to_str().unwrap(), poison);
        assert_eq!(hd["fulcrum-redelivery"], "true");
        assert!(verify("second-secret", hd, body), "signed with the receiver's current secret");
        let original = committed.iter().find(|e| e["id"] == poison.as_str()).unwrap();
        assert_eq!(&serde_json::from_str::<Value>(body).unwrap(), original, "the event as committed");
    }
    let again = h.post("admin", &path, json!(null), StatusCode::CONFLICT).await;
    assert_eq!(again["code"], "already_resolved");
    h.post("admin", "/v1/webhooks/dead-letters/424242/redelivery", json!(null), StatusCode::NOT_FOUND).await;
    let listed = h.get("auditor", "/v1/webhooks/dead-letters", StatusCode::OK).await;
    assert_eq!(listed[0]["resolved_by"], "admin", "{listed}");
}
