//! The registry on PostgreSQL + S3 when the database goes away: requests that need it answer a
//! 503 problem (never hang, never a half-applied change), resolves are served from memory until
//! the replica's view of the log is too old (then refused, fail closed), and everything serves
//! again when the database returns.

mod common;

use common::Harness;
use reqwest::StatusCode;
use serde_json::json;

/// A registry on the scale-out storage with `fraud` v1 Approved.
async fn released() -> Harness {
    let h = Harness::start().await;
    h.create_model("ci", "fraud").await;
    h.register("ci", "fraud", "v1", &[("w.bin", b"weights")]).await;
    h.approve_fully("fraud", "v1").await;
    h
}

#[test]
fn a_database_that_goes_away_gives_503_and_service_resumes() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let h = released().await;
        h.put("rm", "/v1/models/fraud/aliases/production", json!({"version": "v1", "chg_id": "CHG-1"}), StatusCode::OK)
            .await;

        // A second replica of the same registry, and load on both all along: resolves and reads.
        let two = {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            let key = "data/signing-key.pk8";
            std::fs::copy(h.dir.path().join(key), dir.path().join(key)).unwrap();
            Harness::start_in(dir).await
        };
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        // One lane per replica and kind of request: resolves (from memory) and reads (from the
        // database) each at their own pace.
        let load = {
            let mut lanes = Vec::new();
            for u in [h.url.clone(), two.url.clone()] {
                for (who, path) in [("agent", "/v1/resolve?ref=fraud@production&env=prod"), ("ci", "/v1/models")] {
                    let (u, running) = (u.clone(), running.clone());
                    lanes.push(tokio::spawn(async move {
                        let http =
                            reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
                        let mut seen = Vec::new();
                        while running.load(std::sync::atomic::Ordering::SeqCst) {
                            let t = std::time::Instant::now();
                            let r = http.get(format!("{u}{path}")).bearer_auth(common::token(who)).send().await;
                            seen.push((r.map(|r| r.status()).map_err(|e| e.to_string()), t.elapsed()));
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        seen
                    }));
                }
            }
            lanes
        };

        common::scale_out::current().unwrap().pg.stop();
        let started = std::time::Instant::now();
        // Resolve is answered from memory while the view is fresh: agents keep starting through
        // a short database blip.
        h.get("agent", "/v1/resolve?ref=fraud@production&env=prod", StatusCode::OK).await;
        let p = h
            .post(
                "ci",
                "/v1/models",
                json!({"name": "other", "domain": "risk", "description": "x"}),
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await;
        assert_eq!(p["code"], "busy", "{p}");
        let p = h.get("auditor", "/v1/events?after=0", StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(p["code"], "busy", "{p}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "no hang: {:?}", started.elapsed());
        // Past the staleness bound the replica cannot know what was revoked meanwhile: no permit
        // leaves it, and it is not ready.
        let mut p = serde_json::Value::Null;
        for _ in 0..100 {
            let resp =
                h.req("agent", reqwest::Method::GET, "/v1/resolve?ref=fraud@production&env=prod").send().await.unwrap();
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                p = resp.json().await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(p["code"], "stale_view", "resolves stop once the view is too old: {p}");
        assert!(
            started.elapsed() >= fulcrum_server::follow::STALE_AFTER,
            "not before the bound: {:?}",
            started.elapsed()
        );
        assert_eq!(h.get("", "/readyz", StatusCode::SERVICE_UNAVAILABLE).await["code"], "stale_view");

        assert_eq!(two.get("", "/readyz", StatusCode::SERVICE_UNAVAILABLE).await["code"], "stale_view");
        // The database stays away ten seconds in all.
        while started.elapsed() < std::time::Duration::from_secs(10) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        common::scale_out::current().unwrap().pg.restart();
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..50 {
            let resp = h
                .req("ci", reqwest::Method::POST, "/v1/models")
                .json(&json!({"name": "other", "domain": "risk", "description": "x"}))
                .send()
                .await
                .unwrap();
            status = resp.status();
            if status != StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(status, StatusCode::CREATED, "service resumes when the database is back");
        let models = h.get("ci", "/v1/models", StatusCode::OK).await;
        let names: Vec<&str> =
            models["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(
            names.iter().filter(|n| **n == "other").count(),
            1,
            "the refused create left nothing behind: {names:?}"
        );
        assert!(names.contains(&"fraud"), "{names:?}");
        // The view is read again: resolves and readiness come back without a restart.
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..50 {
            status = h
                .req("agent", reqwest::Method::GET, "/v1/resolve?ref=fraud@production&env=prod")
                .send()
                .await
                .unwrap()
                .status();
            if status == StatusCode::OK {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, StatusCode::OK);
        h.get("", "/readyz", StatusCode::OK).await;
        // The other replica comes back by itself too.
        for _ in 0..50 {
            if two.req("", reqwest::Method::GET, "/readyz").send().await.unwrap().status() == StatusCode::OK {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        two.get("", "/readyz", StatusCode::OK).await;
        two.get("agent", "/v1/resolve?ref=fraud@production&env=prod", StatusCode::OK).await;

        // Under the load: every answer a 200 or a 503 problem, none slower than the database's
        // acquire timeout plus a margin (no hangs).
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut seen = Vec::new();
        for lane in load {
            seen.extend(lane.await.unwrap());
        }
        let unavailable = seen.iter().filter(|(s, _)| *s == Ok(StatusCode::SERVICE_UNAVAILABLE)).count();
        assert!(unavailable > 0 && seen.len() > unavailable, "{} answers, {unavailable} 503", seen.len());
        for (status, took) in &seen {
            assert!(
                matches!(status, Ok(s) if *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
                "{status:?}"
            );
            assert!(*took < std::time::Duration::from_secs(8), "an answer took {took:?}");
        }
        let slowest = seen.iter().map(|(_, t)| *t).max().unwrap();
        eprintln!(
            "{} answers under a 10 s database outage, {unavailable} of them 503; slowest {slowest:?}",
            seen.len()
        );
    });
}

/// The audit side on PostgreSQL + S3: checkpoint, entries, inclusion and consistency proofs that
/// verify against the signed root, and an evidence archive for a change (its release record
/// read from the bucket).
#[test]
fn ledger_proofs_and_evidence_on_postgres_and_s3() {
    use base64::Engine as _;
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let h = released().await;
        let cp = h.get("auditor", "/v1/ledger/checkpoint", StatusCode::OK).await;
        let size = cp["size"].as_u64().unwrap();
        assert!(size >= 5, "{cp}");
        let b64 = |v: &serde_json::Value| -> [u8; 32] {
            base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
        };
        let root = b64(&cp["root"]);
        let entries = h.get("auditor", &format!("/v1/ledger/entries?start=0&end={size}"), StatusCode::OK).await;
        assert_eq!(entries["entries"].as_array().unwrap().len() as u64, size);
        for i in [0, size / 2, size - 1] {
            let p = h
                .get("auditor", &format!("/v1/ledger/proofs/inclusion?index={i}&tree_size={size}"), StatusCode::OK)
                .await;
            let hashes: Vec<[u8; 32]> = p["hashes"].as_array().unwrap().iter().map(b64).collect();
            fulcrum_ledger::merkle::verify_inclusion(i, size, &b64(&p["leaf_hash"]), &hashes, &root).unwrap();
        }
        // The tree of size 1 is its first leaf: consistency from there to the signed root.
        let first = b64(&entries["entries"][0]["leaf_hash"]);
        let p = h.get("auditor", &format!("/v1/ledger/proofs/consistency?first=1&second={size}"), StatusCode::OK).await;
        let hashes: Vec<[u8; 32]> = p["hashes"].as_array().unwrap().iter().map(b64).collect();
        fulcrum_ledger::merkle::verify_consistency(1, size, &first, &root, &hashes).unwrap();
        let r = h.post("auditor", "/v1/audit/evidence", json!({"chg_id": "CHG-1"}), StatusCode::CREATED).await;
        assert!(r["records"].as_u64().unwrap() >= 1, "{r}");
        let key = r["key"].as_str().unwrap();
        let resp =
            h.req("auditor", reqwest::Method::GET, &format!("/v1/audit/evidence?key={key}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(!resp.bytes().await.unwrap().is_empty());
    });
}
