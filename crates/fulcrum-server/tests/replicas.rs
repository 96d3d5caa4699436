//! Several registries on one PostgreSQL database and bucket (SPEC §11, contract for replicas):
//! one of them leads the background work at a time, and another takes over within seconds when
//! the leader goes away.

mod common;

use common::Harness;
use reqwest::StatusCode;
use serde_json::json;

/// `fulcrum_leader` and `fulcrum_leader_term` of one registry.
async fn leadership(h: &Harness) -> (u64, u64) {
    let m = h.get("", "/metrics", StatusCode::OK).await;
    let m = m.as_str().unwrap();
    let gauge = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}: {m}"))
            .parse()
            .unwrap()
    };
    (gauge("fulcrum_leader"), gauge("fulcrum_leader_term"))
}

/// Wait (up to 10 s) until `f` holds.
async fn within_seconds<F: AsyncFn() -> bool>(what: &str, f: F) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not within 10 s: {what}");
}

/// A second registry on the same database and bucket. Replicas sign with one key (in production
/// a KMS/HSM key; here the first one's development key file).
async fn another_replica(first: &Harness) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let key = "data/signing-key.pk8";
    std::fs::copy(first.dir.path().join(key), dir.path().join(key)).unwrap();
    Harness::start_in(dir).await
}

/// The version a replica's signed answer for `fraud@production` names (empty while it knows no
/// such alias yet).
async fn serves(h: &Harness) -> String {
    let r = h.req("agent", reqwest::Method::GET, "/v1/resolve?ref=fraud@production&env=prod").send().await.unwrap();
    if r.status() == StatusCode::NOT_FOUND {
        return String::new();
    }
    assert_eq!(r.status(), StatusCode::OK);
    let doc: serde_json::Value = r.json().await.unwrap();
    doc["version"].as_str().unwrap().to_owned()
}

/// The kill switch across replicas: a version revoked through one registry is no longer in any
/// other's signed answers within a second — the second replica's cache follows the log instead
/// of signing what it loaded at start.
#[test]
fn a_revocation_through_one_replica_reaches_every_replicas_answers() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let one = Harness::start().await;
        let two = another_replica(&one).await;
        one.create_model("ci", "fraud").await;
        for v in ["v1", "v2"] {
            one.register("ci", "fraud", v, &[("w.bin", v.as_bytes())]).await;
            one.approve_fully("fraud", v).await;
            one.put(
                "rm",
                "/v1/models/fraud/aliases/production",
                json!({"version": v, "chg_id": format!("CHG-{v}")}),
                StatusCode::OK,
            )
            .await;
        }
        assert_eq!(serves(&one).await, "v2");
        within_seconds("replica two sees the alias set through replica one", async || serves(&two).await == "v2").await;

        one.post(
            "bo",
            "/v1/models/fraud/versions/v2/revocation",
            json!({"reason": "critical CVE", "inc_id": "INC-1"}),
            StatusCode::OK,
        )
        .await;
        let t0 = std::time::Instant::now();
        assert_eq!(serves(&one).await, "v1", "the replica that took the revocation rolls back at once");
        within_seconds("replica two rolls back", async || serves(&two).await == "v1").await;
        let took = t0.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "replica two still signed the revoked version after {took:?}"
        );
        // Pinned answers too: v2 by name is a signed deny on both.
        for h in [&one, &two] {
            let doc = h.get("agent", "/v1/resolve?ref=fraud@v2&env=prod", StatusCode::OK).await;
            assert_eq!((doc["decision"].as_str(), doc["revoked"].as_bool()), (Some("deny"), Some(true)), "{doc}");
        }
    });
}

/// The largest checkpoint stored (signed by the leader's background work; nothing here asks
/// for one through the API).
async fn stored_checkpoint(store: &fulcrum_store::Store) -> u64 {
    store.last_checkpoint().await.unwrap().map_or(0, |c| c.size)
}

#[test]
fn one_replica_leads_and_another_takes_over_when_it_goes() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let first = Harness::start().await;
        let second = another_replica(&first).await;
        let db = common::scale_out::current().unwrap().database();
        let store = fulcrum_store::Store::connect(&db, fulcrum_store::StoreOptions::default()).await.unwrap();
        within_seconds("a leader", async || leadership(&first).await.0 + leadership(&second).await.0 == 1).await;
        let (a, b) = (leadership(&first).await, leadership(&second).await);
        assert_eq!(a.0 + b.0, 1, "exactly one leads: {a:?} {b:?}");
        let (leader, follower, term) = if a.0 == 1 { (first, second, a.1) } else { (second, first, b.1) };
        assert_eq!(leadership(&follower).await, (0, 0));
        assert_eq!(store.newest_term().await.unwrap().map(|t| t.term), Some(term as i64));

        // A commit through the follower is signed into a checkpoint by the leader.
        follower.create_model("ci", "fraud").await;
        let size = store.ledger_size().await.unwrap();
        within_seconds("the leader signs the new entries", async || stored_checkpoint(&store).await >= size).await;

        // The leader goes away; the other replica leads within seconds, with a newer term, and
        // the background work goes on there.
        leader.stop().await;
        within_seconds("the other replica leads", async || leadership(&follower).await.0 == 1).await;
        let (_, new_term) = leadership(&follower).await;
        assert!(new_term > term, "terms only grow: {term} then {new_term}");
        let signed = stored_checkpoint(&store).await;
        // A release is an event, so a new ledger leaf after everything signed so far.
        follower.register("ci", "fraud", "v1", &[("w.bin", b"weights")]).await;
        let size = store.ledger_size().await.unwrap();
        assert!(size > signed, "{size} > {signed}");
        within_seconds("the new leader signs", async || stored_checkpoint(&store).await >= size).await;
    });
}

/// Three replicas of one registry (same database and bucket, same signing key).
async fn three_replicas() -> [Harness; 3] {
    let one = Harness::start().await;
    let two = another_replica(&one).await;
    let three = another_replica(&one).await;
    [one, two, three]
}

/// The next event of a stream (within 5 s).
async fn next_event(
    s: &mut (impl futures_util::Stream<Item = fulcrum_client::Result<fulcrum_client::sse::SseEvent>> + Unpin),
) -> fulcrum_client::sse::SseEvent {
    use futures_util::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(5), s.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
        .expect("a well-formed event")
}

/// The positions of the events after `after` as the log itself lists them.
async fn positions_after(h: &Harness, after: i64) -> Vec<i64> {
    let page = h.get("viewer", &format!("/v1/events?after={after}&limit=1000"), StatusCode::OK).await;
    page["events"].as_array().unwrap().iter().map(|e| e["sequence"].as_str().unwrap().parse().unwrap()).collect()
}

/// A version registered through replica 1, promoted through replica 2 and resolved through
/// replica 3; an event stream on replica 2 sees every replica's commits in outbox order and
/// resumes on another replica with `Last-Event-ID`; `GET /v1/cluster` shows the three, one
/// leader, and their lag.
#[test]
fn three_replicas_share_one_log_in_commit_order() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let [one, two, three] = three_replicas().await;
        let head =
            two.get("viewer", "/v1/events?after=0&limit=1000", StatusCode::OK).await["next_after"].as_i64().unwrap();
        let viewer = |h: &Harness| fulcrum_client::Client::new(&h.url, Some(common::token("viewer"))).unwrap();
        let mut stream = Box::pin(viewer(&two).event_stream(Some(head)).await.unwrap());

        one.create_model("ci", "fraud").await;
        one.register("ci", "fraud", "v1", &[("w.bin", b"one")]).await;
        let v = "/v1/models/fraud/versions/v1";
        two.post("rm", &format!("{v}/promotions"), json!({"to": "Staging", "chg_id": "CHG-1"}), StatusCode::OK).await;
        three.post("ana", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
        one.post("bo", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
        two.post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-2"}), StatusCode::OK).await;
        three
            .put(
                "rm",
                "/v1/models/fraud/aliases/production",
                json!({"version": "v1", "chg_id": "CHG-3"}),
                StatusCode::OK,
            )
            .await;
        assert_eq!(serves(&three).await, "v1", "the replica that moved the alias answers with it at once");
        within_seconds("replica one follows", async || serves(&one).await == "v1").await;

        // Replica two's stream: every commit, whichever replica made it, in the log's order.
        let logged = positions_after(&one, head).await;
        assert!(logged.len() >= 6, "{logged:?}");
        let mut seen = Vec::new();
        while seen.len() < logged.len() {
            seen.push(next_event(&mut stream).await.id.unwrap().parse::<i64>().unwrap());
        }
        assert_eq!(seen, logged, "the stream on replica two is the log, in order");
        drop(stream);

        // Commits while no one listens, then the stream resumes on replica one from where it
        // stopped on replica two: the rest, in order, nothing twice.
        let last_seen = *seen.last().unwrap();
        for (h, step) in [(&three, "permit"), (&one, "permit"), (&two, "permit")] {
            h.post(
                "agent",
                "/v1/startup-reports",
                json!({"ref": "fraud@production", "env": "prod", "decision": step}),
                StatusCode::CREATED,
            )
            .await;
        }
        let rest = positions_after(&three, last_seen).await;
        assert_eq!(rest.len(), 3, "{rest:?}");
        let mut resumed = Box::pin(viewer(&one).event_stream(Some(last_seen)).await.unwrap());
        let mut again = Vec::new();
        while again.len() < rest.len() {
            again.push(next_event(&mut resumed).await.id.unwrap().parse::<i64>().unwrap());
        }
        assert_eq!(again, rest);

        // The cluster as any replica sees it: three alive, one leader, all caught up.
        within_seconds("three replicas, one leader, no lag", async || {
            let c = two.get("admin", "/v1/cluster", StatusCode::OK).await;
            let rs = c["replicas"].as_array().unwrap();
            rs.len() == 3
                && rs.iter().all(|r| r["alive"] == true && r["lag_events"] == 0)
                && rs.iter().filter(|r| r["leader"] == true).count() == 1
                && c["leader"]["replica"] == rs.iter().find(|r| r["leader"] == true).unwrap()["name"]
        })
        .await;
        let c = one.get("admin", "/v1/cluster", StatusCode::OK).await;
        assert_eq!(c["head"].as_i64(), rest.last().copied(), "{c}");
        two.get("viewer", "/v1/cluster", StatusCode::FORBIDDEN).await;
        two.get("rm", "/v1/cluster", StatusCode::FORBIDDEN).await;

        // Per-version signals are the cluster's: gateways report to whichever replica, every
        // replica's /metrics shows the sums.
        for (h, requests) in [(&one, 10u64), (&two, 5)] {
            let mut buckets = [0u64; 15];
            buckets[3] = requests;
            h.post(
                "agent",
                "/v1/agent-reports",
                json!({"ref": "fraud@production", "env": "prod", "kind": "stats", "version": "v1",
                       "stats": {"window_s": 10, "requests": requests, "errors": 1, "refused": 0, "p50_us": 3000,
                                 "p99_us": 4000, "latency_buckets": buckets, "latency_sum_us": requests * 3000}}),
                StatusCode::CREATED,
            )
            .await;
        }
        three
            .post(
                "agent",
                "/v1/startup-reports",
                json!({"ref": "fraud@v1", "env": "prod", "decision": "deny", "reason": "signature_invalid", "version": "v1"}),
                StatusCode::CREATED,
            )
            .await;
        let l = r#"tenant="acme",model="fraud",version="v1",alias="production",env="prod""#;
        for h in [&one, &two, &three] {
            within_seconds("every replica sums the reports", async || {
                let m = h.get("", "/metrics", StatusCode::OK).await;
                let m = m.as_str().unwrap();
                m.contains(&format!("fulcrum_version_requests_total{{{l}}} 15\n"))
                    && m.contains(&format!("fulcrum_version_errors_total{{{l}}} 2\n"))
                    && m.contains(&format!("fulcrum_version_latency_seconds_bucket{{{l},le=\"0.005\"}} 15\n"))
                    && m.contains(r#"decision="deny",reason="signature_invalid"} 1"#)
            })
            .await;
        }
    });
}

/// The policy in force and the signing key are followed too: a policy installed through replica
/// one governs replica three's answers, and a key rotated through replica one signs replica
/// three's, within a second.
#[test]
fn the_policy_and_the_signing_key_follow_across_replicas() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let [one, _two, three] = three_replicas().await;
        common::with_production(&one, "risk").await;
        let resolve = async |h: &Harness, who: &str| {
            let r = h.req(who, reqwest::Method::GET, "/v1/resolve?ref=risk@production&env=prod").send().await.unwrap();
            let status = r.status();
            let kid = r.headers().get("fulcrum-key-id").map(|v| v.to_str().unwrap().to_owned());
            (status, kid, r.json::<serde_json::Value>().await.unwrap())
        };
        within_seconds("replica three serves risk", async || resolve(&three, "viewer").await.0 == StatusCode::OK).await;

        // Viewers lose resolve: installed through one, in force on three.
        let mut data: serde_json::Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
        data["fulcrum"]["roles"]["viewer"].as_array_mut().unwrap().retain(|a| a != "resolve");
        let modules: std::collections::BTreeMap<String, String> =
            fulcrum_policy::DEFAULT_MODULES.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect();
        let ok = one.put("policy", "/v1/policy", json!({"modules": modules, "data": data}), StatusCode::CREATED).await;
        let digest = ok["policy_digest"].as_str().unwrap().to_owned();
        let t0 = std::time::Instant::now();
        within_seconds("replica three refuses viewers", async || {
            resolve(&three, "viewer").await.0 == StatusCode::FORBIDDEN
        })
        .await;
        let (_, _, doc) = resolve(&three, "agent").await;
        assert_eq!(doc["policy_digest"].as_str(), Some(digest.as_str()), "three signs under the new policy");
        let policy_took = t0.elapsed();

        // A new key, reachable by every replica (in production: one HSM/KMS key).
        use fulcrum_sign::Signer as _;
        let key_file = one.dir.path().join("data/keys/k2.pk8");
        std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
        let pem =
            fulcrum_sign::LocalKey::generate(&key_file, fulcrum_sign::Alg::Ed25519).unwrap().public_key().to_pem();
        for h in [&_two, &three] {
            let dir = h.dir.path().join("data/keys");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&key_file, dir.join("k2.pk8")).unwrap();
        }
        let ack = one
            .post(
                "keys",
                "/v1/keys",
                json!({"public_key": pem, "backend": "local", "backend_ref": "keys/k2.pk8", "kid": "local-k2"}),
                StatusCode::CREATED,
            )
            .await;
        assert_eq!(ack["kid"], "local-k2");
        let t0 = std::time::Instant::now();
        within_seconds("replica three signs with the new key", async || {
            resolve(&three, "agent").await.1.as_deref() == Some("local-k2")
        })
        .await;
        let key_took = t0.elapsed();
        let bundle = three.get("agent", "/v1/trust-bundle", StatusCode::OK).await;
        assert_eq!(bundle["version"].as_u64(), ack["trust_bundle_version"].as_u64(), "{bundle}");
        assert!(
            policy_took < std::time::Duration::from_secs(1) && key_took < std::time::Duration::from_secs(1),
            "policy followed in {policy_took:?}, key in {key_took:?}"
        );
    });
}

/// Fifty conflicting governance changes (alias moves and promotions) spread over three replicas
/// at once: each is answered 2xx or 409, never 5xx; the outcome is a serial order — the alias
/// history is a chain whose last link is what every replica serves, and a promotion asked many
/// times happens exactly once.
#[test]
fn conflicting_changes_through_three_replicas_serialize() {
    let Some(_services) = common::scale_out::start() else { return };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let [one, two, three] = three_replicas().await;
        one.create_model("ci", "fraud").await;
        for v in ["v1", "v2", "v3", "v4"] {
            one.register("ci", "fraud", v, &[("w.bin", v.as_bytes())]).await;
            one.approve_fully("fraud", v).await;
        }
        one.register("ci", "fraud", "v5", &[("w.bin", b"v5")]).await;
        let v5 = "/v1/models/fraud/versions/v5";
        one.post("rm", &format!("{v5}/promotions"), json!({"to": "Staging", "chg_id": "CHG-5"}), StatusCode::OK).await;
        one.post("ana", &format!("{v5}/approvals"), json!({}), StatusCode::CREATED).await;
        one.post("bo", &format!("{v5}/approvals"), json!({}), StatusCode::CREATED).await;
        let replicas = [&one, &two, &three];
        let calls = (0..50).map(|i| {
            let h = replicas[i % 3];
            async move {
                let r = if i % 5 == 4 {
                    h.req("rm", reqwest::Method::POST, &format!("{v5}/promotions"))
                        .json(&json!({"to": "Approved", "chg_id": format!("CHG-P{i}")}))
                } else {
                    let version = ["v1", "v2", "v3", "v4"][(i * 7) % 4];
                    h.req("rm", reqwest::Method::PUT, "/v1/models/fraud/aliases/production")
                        .json(&json!({"version": version, "chg_id": format!("CHG-A{i}"), "allow_downgrade": true}))
                };
                let r = r.send().await.unwrap();
                (i, r.status(), r.text().await.unwrap())
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut promoted = 0;
        for (i, status, body) in &answers {
            assert!(status.is_success() || *status == StatusCode::CONFLICT, "call {i}: {status} {body}");
            if i % 5 == 4 && status.is_success() {
                promoted += 1;
            }
        }
        assert_eq!(promoted, 1, "the promotion happened once: {answers:?}");
        let v = one.get("viewer", v5, StatusCode::OK).await;
        assert_eq!(v["stage"], "Approved");

        // The alias history is a chain of moves: consecutive positions, each link a change from
        // the one before (a call naming the version already served is answered but moves
        // nothing), each made by a call that was answered 2xx — nothing refused left a trace.
        let history = two.get("viewer", "/v1/models/fraud/aliases/production/history", StatusCode::OK).await;
        let history = history.as_array().unwrap();
        let answered: std::collections::BTreeSet<String> = answers
            .iter()
            .filter(|(i, s, _)| i % 5 != 4 && s.is_success())
            .map(|(i, _, _)| format!("CHG-A{i}"))
            .collect();
        assert!(!history.is_empty() && history.len() <= answered.len(), "{history:?}");
        let positions: Vec<u64> = history.iter().map(|e| e["position"].as_u64().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[1] == w[0] + 1), "positions are a chain: {positions:?}");
        assert!(history.windows(2).all(|w| w[0]["version"] != w[1]["version"]), "every link moves: {history:?}");
        assert!(history.iter().all(|e| answered.contains(e["chg_id"].as_str().unwrap())), "{history:?}");
        let chg_ids: std::collections::BTreeSet<&str> = history.iter().map(|e| e["chg_id"].as_str().unwrap()).collect();
        assert_eq!(chg_ids.len(), history.len(), "no call moved the alias twice");
        let last = history.iter().max_by_key(|e| e["position"].as_u64()).unwrap()["version"].as_str().unwrap();
        for h in replicas {
            within_seconds("every replica serves the last move", async || serves(h).await == last).await;
        }
    });
}
