//! Incidents, the T0→T+N timeline, fallback on deny and the runbooks, through the real binaries:
//! a `fulcrum serve` process, serving replicas (guard + gateway, as `fulcrum-agent` runs them)
//! in front of real MLServer processes, and the `fulcrum` CLI an operator would type.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::serving::{agent, as_, replica, served_by};
use common::{Server, ok, one_error_line, run_as, serve};
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::report::Reporter;
use fulcrum_testkit::mlserver;
use serde_json::{Value, json};

/// Register `version` of `model` with `files`, take it to Approved and point `production` at it.
async fn release(s: &Server, model: &str, version: &str, files: &[(String, Vec<u8>)]) {
    approve(s, model, version, files).await;
    as_(s, "rm")
        .put(&format!("/v1/models/{model}/aliases/production"), &json!({"version": version, "chg_id": "CHG-2"}))
        .await
        .unwrap();
}

/// Register `version` of `model` with `files` and take it to Approved.
async fn approve(s: &Server, model: &str, version: &str, files: &[(String, Vec<u8>)]) {
    let ci = as_(s, "ci");
    let mut entries = vec![];
    for (path, bytes) in files {
        let d = ci.upload_bytes(bytes.clone()).await.unwrap();
        entries.push(json!({"path": path, "size": bytes.len(), "digest": d.to_string()}));
    }
    ci.post(
        &format!("/v1/models/{model}/versions"),
        &json!({"version": version, "files": entries, "revalidate_by": "2099-01-01T00:00:00Z",
                "model_card": {"owner": "fraud", "intended_use": "scoring"}}),
    )
    .await
    .unwrap();
    let v = format!("/v1/models/{model}/versions/{version}");
    as_(s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
    as_(s, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(s, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-1"})).await.unwrap();
}

/// Make `dir` impossible to remove, the way a read-only mount would: as root an immutable
/// file inside (root ignores permissions), otherwise a read-only directory. Returns the undo.
fn pin_down(dir: &Path) -> impl FnOnce() + use<> {
    let root = std::process::Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0");
    let file = dir.join("model.joblib");
    if root {
        let st = std::process::Command::new("chattr").arg("+i").arg(&file).status().unwrap();
        assert!(st.success(), "chattr +i {} (the purge-failure case needs it when running as root)", file.display());
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let dir = dir.to_owned();
    move || {
        if root {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&file).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}

/// Seed §5.2 on two guarded replicas with real MLServer: revoke with an incident id → the
/// timeline names T0, each replica's quiesce, purge (one fails: its version folder cannot be
/// removed), unload, the verified reload of v1 and its post-backout validation from gateway
/// traffic, with delays; a replica that served v2 and stayed silent is named missing; the
/// incident's evidence bundle carries the timeline and verifies offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_timeline_on_two_guarded_replicas_with_a_failed_purge_and_a_silent_one() {
    let Some(bin) = mlserver::bin() else { return };
    let python = bin.with_file_name("python");
    let work = tempfile::tempdir().unwrap();
    let v1 = mlserver::train(&python, &work.path().join("train/1"), "1", false);
    let v2 = mlserver::train(&python, &work.path().join("train/2"), "2", true);
    let s = serve();
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "fraud"]));
    release(&s, "fraud", "1", &v1).await;
    let (a, b) = tokio::join!(replica(&s, &bin, work.path(), "replica-a"), replica(&s, &bin, work.path(), "replica-b"));
    let http = reqwest::Client::new();
    served_by(&http, &a.gateway, "1").await;
    served_by(&http, &b.gateway, "1").await;
    release(&s, "fraud", "2", &v2).await;
    served_by(&http, &a.gateway, "2").await;
    served_by(&http, &b.gateway, "2").await;
    // A third replica served v2 too (its permit is on the record) and will say nothing.
    as_(&s, "agent")
        .post(
            "/v1/startup-reports",
            &json!({"ref": "fraud@production", "env": "prod", "decision": "permit", "version": "2", "agent": "replica-c"}),
        )
        .await
        .unwrap();
    let undo = pin_down(&b.repo.join("fraud/2"));
    // Traffic keeps flowing through both gateways (what validates the rollback).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for gw in [a.gateway.clone(), b.gateway.clone()] {
        let (http, stop) = (http.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                mlserver::infer(&http, &gw).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    ok(&run_as(
        &s,
        "bo",
        &["version", "revoke", "fraud", "2", "--reason", "critical CVE in tokenizer", "--inc-id", "INC-4711"],
    ));
    served_by(&http, &a.gateway, "1").await;
    served_by(&http, &b.gateway, "1").await;
    let start = Instant::now();
    let t = loop {
        let t = ok(&run_as(&s, "auditor", &["incident", "timeline", "INC-4711", "--output", "json"]));
        let validated = t["replicas"].as_array().unwrap().iter().filter(|r| r["validated_ms"].is_i64()).count();
        if validated == 2 {
            break t;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "both replicas never validated: {t:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    undo();
    assert!(a.guard.is_ready() && b.guard.is_ready(), "both serve v1 again");
    assert!(b.guard.timeline().iter().any(|st| st.step == "purge_failed"), "b's own timeline says it too");
    assert!(t["t0"].is_string());
    assert_eq!(t["withdrawn"], json!(["fraud@2"]));
    let rep = |n: &str| {
        t["replicas"].as_array().unwrap().iter().find(|r| r["name"] == format!("agent/{n}")).cloned().unwrap()
    };
    let (ra, rb) = (rep("replica-a"), rep("replica-b"));
    assert_eq!(ra["status"], "validated", "{t:#}");
    for k in ["quiesce_ms", "purge_ms", "unload_ms", "reload_ms", "validated_ms"] {
        assert!(ra[k].as_i64().is_some_and(|ms| (0..30_000).contains(&ms)), "{k}: {ra}");
    }
    assert!(
        ra["quiesce_ms"].as_i64() <= ra["reload_ms"].as_i64()
            && ra["reload_ms"].as_i64() <= ra["validated_ms"].as_i64()
    );
    assert_eq!(ra["reloaded"], "1");
    assert!(ra["validated_requests"].as_u64().unwrap() > ra["validated_errors"].as_u64().unwrap());
    assert_eq!(rb["status"], "purge_failed", "{t:#}");
    assert!(rb["purge_error"].as_str().is_some_and(|e| e.contains("fraud/2")), "{rb}");
    assert_eq!(rb["reloaded"], "1", "the failed purge did not stop the rollback");
    assert_eq!(t["missing"], json!(["agent/replica-c"]));
    assert_eq!(t["complete"], false, "a failed purge and a silent replica: not complete");
    // Agents' steps carry the incident id that caused them.
    let steps = t["steps"].as_array().unwrap();
    let quiesces: Vec<&Value> = steps.iter().filter(|s| s["step"] == "quiesce").collect();
    assert_eq!(quiesces.len(), 2, "both replicas quiesced: {steps:?}");
    assert!(quiesces.iter().all(|s| s["inc_id"] == "INC-4711"), "{steps:?}");
    assert!(steps.iter().any(|s| s["step"] == "revocation" && s["delay_ms"] == 0));
    // In words, for an operator.
    let text = String::from_utf8(run_as(&s, "auditor", &["incident", "timeline", "INC-4711"]).stdout).unwrap();
    assert!(text.contains("purge_failed") && text.contains("missing") && text.contains("agent/replica-c"), "{text}");

    // The incident is a record naming the version; closing needs a role the policy names.
    let i = ok(&run_as(&s, "auditor", &["incident", "show", "INC-4711", "--output", "json"]));
    assert_eq!((i["severity"].as_str(), i["source"].as_str()), (Some("critical"), Some("revocation")));
    assert_eq!(i["versions"][0]["version"], "2");
    let err = one_error_line(&run_as(&s, "ana", &["incident", "close", "INC-4711", "--resolution", "rolled back"]));
    assert!(err.contains("close_incident"), "{err}");
    ok(&run_as(&s, "bo", &["incident", "close", "INC-4711", "--resolution", "rolled back to 1; purge on b by hand"]));

    // The evidence bundle carries the timeline and its records, and verifies offline.
    let file = work.path().join("inc-4711.dsse.json");
    let out = ok(&run_as(
        &s,
        "auditor",
        &["audit", "evidence", "--inc", "INC-4711", "--out", file.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out["verified"], true);
    let checked = ok(&common::fulcrum(&["audit", "check-evidence", file.to_str().unwrap(), "--output", "json"], &[]));
    assert_eq!(checked["verified"], true);
    let env: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.decode(env["payload"].as_str().unwrap()).unwrap();
    let doc: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(doc["timeline"]["inc_id"], "INC-4711");
    assert_eq!(doc["timeline"]["replicas"].as_array().unwrap().len(), 3);
    // A timeline step edited in the archive no longer verifies (the signature covers it, and each
    // step must match its proven record).
    let mut forged = doc.clone();
    forged["timeline"]["steps"][1]["step"] = json!("validated");
    let forged_env = json!({"payloadType": env["payloadType"], "signatures": env["signatures"],
        "payload": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&forged).unwrap())});
    let bad = work.path().join("forged.json");
    std::fs::write(&bad, serde_json::to_vec(&forged_env).unwrap()).unwrap();
    let err = one_error_line(&common::fulcrum(&["audit", "check-evidence", bad.to_str().unwrap()], &[]));
    assert!(err.contains("signature"), "{err}");
}

fn files(tag: &str) -> Vec<(String, Vec<u8>)> {
    vec![("weights.bin".to_owned(), format!("weights-{tag}").into_bytes())]
}

/// A new target with bytes that no longer match their signed digest: the guard keeps serving the
/// version it verified (still permitted), reports a deny naming both, and `fulcrum explain
/// startup-deny` names the failed check. Then the old version is revoked too: nothing to fall
/// back on, nothing served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_target_leaves_the_verified_version_serving_and_explain_names_the_check() {
    let s = serve();
    let work = tempfile::tempdir().unwrap();
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "fraud"]));
    release(&s, "fraud", "1", &files("one")).await;
    let mut g = Guard::new(
        agent(&s, &work.path().join("state"), "replica-a").await,
        "fraud@production",
        "prod",
        Layout::Dir(work.path().join("serving")),
    );
    g.reload_jitter = Duration::ZERO;
    g.reporter = Some(Arc::new(Reporter::start(as_(&s, "agent"))));
    let guard = Arc::new(g);
    let run = guard.clone();
    tokio::spawn(async move { run.run(std::future::pending::<()>()).await });
    let start = Instant::now();
    while !guard.is_ready() {
        assert!(start.elapsed() < Duration::from_secs(10), "v1 never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // v2 is approved, then a byte of its weights flips in the registry's store; the alias moves.
    approve(&s, "fraud", "2", &files("two")).await;
    let d = fulcrum_core::Digest::of(b"weights-two");
    let stored = s.dir.path().join("data/blobs/sha256").join(&d.hex()[..2]).join(&d.hex()[2..]);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&stored, bytes).unwrap();
    // The registry's scrub finds it, so the registry refuses those bytes by name from now on.
    let _ = run_as(&s, "bo", &["blobs", "scrub"]);
    ok(&run_as(&s, "rm", &["alias", "set", "fraud", "production", "2", "--chg-id", "CHG-7"]));
    let start = Instant::now();
    while !guard.timeline().iter().any(|st| st.step == "fallback") {
        assert!(start.elapsed() < Duration::from_secs(10), "no fallback: {:?}", guard.timeline());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(guard.is_ready(), "still serving");
    assert_eq!(guard.loaded().unwrap().version, "1");
    assert_eq!(std::fs::read(work.path().join("serving/weights.bin")).unwrap(), b"weights-one");

    // The registry has the deny, naming the refused version and digest and the fallback kept.
    let start = Instant::now();
    let deny = loop {
        let evs = as_(&s, "rm").get("/v1/events?types=startup_deny").await.unwrap();
        if let Some(e) = evs["events"].as_array().unwrap().last().cloned() {
            break e;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no startup_deny reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let data = &deny["data"];
    assert_eq!(data["version"], "2");
    assert_eq!(data["reason"], "blob_corrupt");
    assert!(data["artifact_digest"].as_str().is_some_and(|d| d.starts_with("sha256:")));
    let detail = data["detail"].as_str().unwrap();
    assert!(detail.contains("kept serving fraud@1 (sha256:"), "{detail}");
    let seq = deny["sequence"].as_str().unwrap();
    let e = ok(&run_as(&s, "rm", &["explain", "startup-deny", seq, "--output", "json"]));
    assert_eq!((e["check"].as_str(), e["reason"].as_str()), (Some("signature"), Some("blob_corrupt")));
    assert_eq!(e["evidence"]["version"], "2");
    assert!(e["next"].as_str().unwrap().contains("fulcrum blobs scrub"), "{e}");
    let text = String::from_utf8(run_as(&s, "rm", &["explain", "startup-deny", seq]).stdout).unwrap();
    assert!(text.contains("the signature check failed") && text.contains("agent/replica-a"), "{text}");
    // Not a startup deny: said so, in one line.
    let err = one_error_line(&run_as(&s, "rm", &["explain", "startup-deny", "1"]));
    assert!(err.contains("not a startup_deny"), "{err}");

    // The fallback must itself still be permitted: revoke v1, and nothing is served.
    ok(&run_as(&s, "bo", &["version", "revoke", "fraud", "1", "--reason", "also bad", "--inc-id", "INC-8"]));
    let start = Instant::now();
    while guard.is_ready() {
        assert!(start.elapsed() < Duration::from_secs(10), "still serving a revoked version");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each runbook on a live registry: it prints its plan, refuses to act unconfirmed without a
/// terminal, and with --yes makes ordinary governed calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbooks_act_through_governed_calls_and_only_when_confirmed() {
    let s = serve();
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "fraud"]));
    release(&s, "fraud", "1", &files("one")).await;
    release(&s, "fraud", "2", &files("two")).await;

    // cve: unconfirmed → nothing changes.
    let o = run_as(&s, "bo", &["runbook", "cve", "fraud", "2", "--inc", "INC-9", "--finding", "CVE-2026-1"]);
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("1. open incident INC-9") && said.contains("2. quarantine (liftable) fraud@2"),
        "the plan: {said}"
    );
    assert!(said.trim_end().lines().last().unwrap().starts_with("error: not confirmed"), "{said}");
    let v = ok(&run_as(&s, "bo", &["version", "get", "fraud", "2", "--output", "json"]));
    assert_eq!(v["hold"], "none", "nothing was done");
    assert!(!run_as(&s, "bo", &["incident", "show", "INC-9"]).status.success(), "no incident either");
    // A viewer cannot run it: the first governed call is refused.
    assert!(!run_as(&s, "viewer", &["runbook", "cve", "fraud", "2", "--inc", "INC-9", "--yes"]).status.success());
    // Confirmed: incident opened, version quarantined, the alias rolled back to 1.
    let r = ok(&run_as(
        &s,
        "bo",
        &["runbook", "cve", "fraud", "2", "--inc", "INC-9", "--finding", "CVE-2026-1", "--yes", "--output", "json"],
    ));
    assert_eq!(r["action"], "quarantined");
    let prod = r["aliases"].as_array().unwrap().iter().find(|a| a["alias"] == "production").cloned().unwrap();
    assert_eq!(prod["version"], "1", "{r}");
    let i = ok(&run_as(&s, "bo", &["incident", "show", "INC-9", "--output", "json"]));
    assert_eq!((i["severity"].as_str(), i["source"].as_str()), (Some("critical"), Some("operator")));
    let named: Vec<&str> = i["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(named, ["2"]);

    // policy-changed: which agents report the digest in force and which an old one.
    let hist = ok(&run_as(&s, "policy", &["policy", "history", "--output", "json"]));
    let digest = hist["installs"][0]["digest"].as_str().unwrap().to_owned();
    let step = |agent: &str, policy: &str| {
        json!({"ref": "fraud@production", "env": "prod", "kind": "step", "step": "recheck", "agent": agent,
               "version": "1", "policy_digest": policy, "detail": "policy_changed"})
    };
    let old = format!("sha256:{}", "0".repeat(64));
    as_(&s, "agent").post("/v1/agent-reports", &step("fresh", &digest)).await.unwrap();
    as_(&s, "agent").post("/v1/agent-reports", &step("stale", &old)).await.unwrap();
    let p = ok(&run_as(&s, "admin", &["runbook", "policy-changed", "--output", "json"]));
    assert_eq!(p["policy_digest"], digest.as_str());
    let agents = |k: &str| -> Vec<String> {
        p[k].as_array().unwrap().iter().map(|a| a["agent"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(agents("rechecked"), ["agent/fresh"]);
    assert_eq!(agents("old_digest"), ["agent/stale"]);
    assert!(p["registries"].as_array().unwrap().iter().all(|r| r["applied"] == true), "{p}");
    let err = one_error_line(&run_as(&s, "admin", &["runbook", "policy-changed", "--rollback", "--yes"]));
    assert!(err.contains("no earlier snapshot"), "{err}");

    // waiver-expired: a medium finding on 1 waived for two seconds; once the waiver expired the
    // runbook wants an incident, then quarantines 1.
    let report = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(report.path(), r#"{"findings": [{"id": "CVE-2026-77", "severity": "medium", "status": "open"}]}"#)
        .unwrap();
    ok(&run_as(
        &s,
        "bo",
        &["findings", "add", "fraud", "1", "--file", report.path().to_str().unwrap(), "--format", "fulcrum"],
    ));
    let until = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    ok(&run_as(
        &s,
        "bo",
        &[
            "waivers",
            "add",
            "fraud",
            "--id",
            "W-1",
            "--finding",
            "CVE-2026-77",
            "--version",
            "1",
            "--justification",
            "vendor fix due",
            "--expires",
            &until,
        ],
    ));
    let none = ok(&run_as(&s, "bo", &["runbook", "waiver-expired", "fraud", "--output", "json"]));
    assert_eq!(none["affected"], json!([]), "not expired yet");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let o = run_as(&s, "bo", &["runbook", "waiver-expired", "fraud", "--yes"]);
    assert!(!o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("quarantine fraud@1") && said.trim_end().ends_with("or --renew-until to renew the waiver"),
        "{said}"
    );
    let w =
        ok(&run_as(&s, "bo", &["runbook", "waiver-expired", "fraud", "--inc", "INC-10", "--yes", "--output", "json"]));
    assert_eq!(w["done"][0]["version"], "1");
    let v = ok(&run_as(&s, "bo", &["version", "get", "fraud", "1", "--output", "json"]));
    assert_eq!(v["hold"], "quarantined");
    let i = ok(&run_as(&s, "bo", &["incident", "show", "INC-10", "--output", "json"]));
    assert_eq!(i["source"], "quarantine", "the quarantine opened its incident");
}
