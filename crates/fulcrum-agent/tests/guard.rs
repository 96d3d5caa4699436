//! The guard against a real registry: a revocation of the served version quiesces it, purges
//! its files and cached blobs, and reloads the rolled-back version through the full check; the
//! timeline records each step in order.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{agent, as_, fraud_v1, read, register, registry, serving_guard, until};
use fulcrum_agent::guard::{Guard, Layout};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_quiesces_purges_and_rolls_back() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    register(&r, "v2", &[("weights.bin", b"weights-two")]).await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model");
    let guard =
        Arc::new(Guard::new(agent(&r, state.path()).await, "fraud@production", "prod", Layout::Dir(dest.clone())));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let g = guard.clone();
    let task = tokio::spawn(async move {
        g.run(async {
            let _ = stop_rx.await;
        })
        .await;
    });
    until("the first permit", || guard.is_ready()).await;
    assert_eq!(guard.loaded().unwrap().version, "v2");
    assert_eq!(read(&dest, "weights.bin"), b"weights-two");
    let v2_blob = state.path().join("blobs/sha256").join(fulcrum_core::Digest::of(b"weights-two").hex());
    assert!(v2_blob.exists());

    // T0: the revocation call. The guard must go not-ready, purge, then serve v1.
    let t0 = Instant::now();
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/v2/revocation", &json!({"reason": "drift", "inc_id": "INC-7"}))
        .await
        .unwrap();
    until("the rollback to v1", || guard.loaded().is_some_and(|d| d.version == "v1") && guard.is_ready()).await;
    let took = t0.elapsed();
    assert_eq!(read(&dest, "weights.bin"), b"weights-one");
    assert!(!v2_blob.exists(), "the revoked version's cached blob is purged");
    let steps: Vec<&'static str> = guard.timeline().iter().map(|s| s.step).collect();
    let after_first = &steps[steps.iter().position(|s| *s == "quiesce").expect("a quiesce step")..];
    assert_eq!(&after_first[..4], ["quiesce", "purge", "reload", "permit"], "{steps:?}");
    eprintln!("revocation → rolled back in {took:?}; timeline {steps:?}");
    let _ = stop_tx.send(());
    task.await.unwrap();
}

/// The `guard` command: `/readyz` answers 200 with the served version, then the rolled-back one
/// after a revocation; `/timeline` shows the quiesce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_command_serves_readiness_and_its_timeline() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    register(&r, "v2", &[("weights.bin", b"weights-two")]).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("token"), "tok-agent").unwrap();
    let bundle = as_(&r, "agent").trust_bundle().await.unwrap();
    std::fs::write(work.path().join("bundle.json"), serde_json::to_vec(&bundle).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fulcrum-agent"))
        .args(["--registry", &r.url, "--token-file"])
        .arg(work.path().join("token"))
        .arg("--bundle")
        .arg(work.path().join("bundle.json"))
        .arg("--state")
        .arg(work.path().join("state"))
        .args([
            "guard",
            "--ref",
            "fraud@production",
            "--env",
            "prod",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--dest",
        ])
        .arg(work.path().join("model"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let ready = |http: reqwest::Client| async move {
        let resp = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.ok()?;
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.ok()?;
        Some((status, v["loaded"][0]["version"].as_str().map(str::to_owned)))
    };
    let start = Instant::now();
    loop {
        if ready(http.clone()).await == Some((200, Some("v2".into()))) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the guard never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/v2/revocation", &json!({"reason": "drift", "inc_id": "INC-8"}))
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        if ready(http.clone()).await == Some((200, Some("v1".into()))) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the guard never rolled back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let timeline: serde_json::Value =
        http.get(format!("http://127.0.0.1:{port}/timeline")).send().await.unwrap().json().await.unwrap();
    let steps: Vec<&str> =
        timeline[0]["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert!(steps.contains(&"quiesce") && steps.contains(&"purge"), "{steps:?}");
    // Each step also reached the registry, with the agent's own time, so the timeline can be
    // drawn there: permit v2 → quiesce → purge → reload → permit v1.
    let start = Instant::now();
    let reported = loop {
        let page = as_(&r, "rm").get("/v1/events?types=agent_step&model=fraud").await.unwrap();
        let got: Vec<(String, String)> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let d = &e["data"];
                (d["reason"].as_str().unwrap_or("").to_owned(), d["observed_at"].as_str().unwrap_or("").to_owned())
            })
            .collect();
        if got.iter().filter(|(s, _)| s == "permit").count() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let order: Vec<&str> = reported.iter().map(|(s, _)| s.as_str()).collect();
    let at =
        |step: &str| order.iter().position(|s| *s == step).unwrap_or_else(|| panic!("{step} not reported: {order:?}"));
    assert!(at("permit") < at("quiesce") && at("quiesce") < at("purge") && at("purge") < at("reload"), "{order:?}");
    assert!(reported.iter().all(|(_, t)| !t.is_empty()), "every step carries the agent's time: {reported:?}");
    child.kill().await.unwrap();
}

/// The registry unreachable during a re-check says nothing against the served version: the last
/// permitted answer still verifies (degraded mode), so it keeps serving; the server is not
/// taken down by an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recheck_keeps_serving() {
    let mut r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let guard =
        Guard::new(agent(&r, state.path()).await, "fraud@production", "prod", Layout::Dir(out.path().join("model")));
    guard.load().await.unwrap();
    r.down().await;
    guard.on_event(r#"{"data": {"event": "policy_changed", "model": "*"}}"#).await;
    assert!(guard.is_ready());
    assert_eq!(guard.loaded().unwrap().version, "v1");
    let last = guard.timeline().last().cloned().unwrap();
    assert_eq!((last.step, last.detail.as_str()), ("recheck", "policy_changed: unchanged"), "{last:?}");
}

/// The hook is told `loaded` with the version placed, then `quiesce` for the revoked one before
/// its files go, then `loaded` for the rollback — in that order.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_hears_each_change_in_order() {
    use std::os::unix::fs::PermissionsExt;
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    register(&r, "v2", &[("weights.bin", b"weights-two")]).await;
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("hook.log");
    let hook = work.path().join("hook.sh");
    // The hook also records whether the files were still there when it was told to stop.
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf '%s %s %s\\n' \"$1\" \"$3\" \"$(cat \"$4/weights.bin\" 2>/dev/null)\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut g = Guard::new(
        agent(&r, &work.path().join("state")).await,
        "fraud@production",
        "prod",
        Layout::Dir(work.path().join("model")),
    );
    g.hook = Some(hook);
    let guard = Arc::new(g);
    let g2 = guard.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        g2.run(async {
            let _ = stop_rx.await;
        })
        .await;
    });
    until("the first permit", || guard.is_ready()).await;
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/v2/revocation", &json!({"reason": "drift", "inc_id": "INC-9"}))
        .await
        .unwrap();
    until("the rollback", || guard.loaded().is_some_and(|d| d.version == "v1") && guard.is_ready()).await;
    let _ = stop_tx.send(());
    task.await.unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(lines[..3], ["loaded v2 weights-two", "quiesce v2 weights-two", "loaded v1 weights-one"], "{lines:?}");
}

/// `policy_changed`: a new policy that no longer allows the served version (a change freeze on
/// prod) stops it — quiesce, purge, and no reload while the freeze holds; the next policy lifts
/// it and the guard serves again. The snapshot each answer names is verified and evaluated by
/// the agent itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_no_longer_allows_the_served_version_stops_it() {
    let r = fraud_v1().await;
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dest = out.path().join("model");
    let guard = serving_guard(&r, state.path(), dest.clone(), |g| {
        g.reload_jitter = Duration::from_millis(50);
        g.poll = Duration::from_millis(300);
    })
    .await;

    let modules: std::collections::BTreeMap<String, String> =
        fulcrum_policy::DEFAULT_MODULES.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect();
    let mut frozen = modules.clone();
    frozen.insert(
        "freeze.rego".into(),
        "package fulcrum.env\n\ndeny contains \"change_freeze\" if input.model.name in data.fulcrum.frozen\n".into(),
    );
    let mut data: serde_json::Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    data["fulcrum"]["frozen"] = json!(["fraud"]);
    as_(&r, "policy").put("/v1/policy", &json!({"modules": frozen, "data": data})).await.unwrap();
    until("the quiesce", || !guard.is_ready()).await;
    until("the purge", || !dest.exists()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!guard.is_ready() && guard.loaded().is_none(), "nothing serves while the freeze holds");
    let steps = guard.timeline();
    let q = steps.iter().find(|s| s.step == "quiesce").unwrap();
    assert!(q.detail.contains("change_freeze"), "{q:?}");

    data["fulcrum"]["frozen"] = json!([]);
    as_(&r, "policy").put("/v1/policy", &json!({"modules": frozen, "data": data})).await.unwrap();
    until("serving again after the freeze", || guard.is_ready()).await;
    assert_eq!(read(&dest, "weights.bin"), b"weights-one");
}

/// A placed file changed on disk while serving (or one added beside them): the guard's periodic
/// check against the signed manifest stops the version and places it again from verified bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changed_on_disk_while_serving_are_caught_and_replaced() {
    let r = fraud_v1().await;
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dest = out.path().join("model");
    let guard = serving_guard(&r, state.path(), dest.clone(), |g| {
        g.poll = Duration::from_millis(100);
        g.verify_every = Some(Duration::from_millis(200));
        g.reload_jitter = Duration::ZERO;
    })
    .await;
    assert!(guard.verify_placed().await, "untouched files pass");

    std::fs::write(dest.join("weights.bin"), b"weights-0ne").unwrap();
    until("the tampered file caught", || guard.timeline().iter().any(|s| s.step == "quiesce")).await;
    until("placed again", || guard.is_ready() && read(&dest, "weights.bin") == b"weights-one").await;
    let q = guard.timeline().into_iter().find(|s| s.step == "quiesce").unwrap();
    assert!(q.detail.contains("weights.bin changed on disk"), "{q:?}");

    std::fs::write(dest.join("backdoor.py"), b"import os").unwrap();
    until("the extra file caught", || guard.timeline().iter().filter(|s| s.step == "quiesce").count() == 2).await;
    until("placed again without it", || guard.is_ready() && !dest.join("backdoor.py").exists()).await;
}
