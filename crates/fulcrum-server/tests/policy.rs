//! Policy as code through the API: the promotion gate decides with the policy in force and
//! logs OPA-shaped decisions (queryable by change id); a policy-admin installs new snapshots,
//! which must compile and pass their own tests, emit `policy_changed` and change the digest
//! that resolve documents carry; old snapshots stay fetchable for replay.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use fulcrum_core::resolve::ResolveDocument;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn register_bare(h: &Harness, version: &str) {
    let d = h.upload_any("ci", version.as_bytes()).await;
    h.post(
        "ci",
        "/v1/models/risk/versions",
        json!({"version": version, "files": [{"path": "w", "size": version.len(), "digest": d.to_string()}]}),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn promotion_gate_decisions_are_logged() {
    let h = Harness::start().await;
    h.create_model("ci", "risk").await;
    register_bare(&h, "v1").await;
    let v = "/v1/models/risk/versions/v1";
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging", "chg_id": "CHG-1"}), StatusCode::OK).await;
    h.post("ana", &format!("{v}/approvals"), json!({}), StatusCode::CREATED).await;
    h.post("bo", &format!("{v}/approvals"), json!({}), StatusCode::CREATED).await;
    // Four-eyes is met, but the version has no model card and no revalidation date.
    let p = h
        .post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-2"}), StatusCode::CONFLICT)
        .await;
    assert_eq!(p["code"], "policy_denied");
    let reasons: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["detail"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["model_card_missing:intended_use", "model_card_missing:owner", "revalidate_by_missing"]);
    assert_eq!(h.get("viewer", v, StatusCode::OK).await["stage"], "Staging", "nothing changed");

    // Both gate decisions (Staging allowed, Approved denied) are in the log, by change id.
    let d = h.get("rm", "/v1/decisions?model=risk&path=fulcrum/promotion/decision", StatusCode::OK).await;
    let decisions = d["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(
        (decisions[0]["result"]["allow"].as_bool(), decisions[0]["chg_id"].as_str()),
        (Some(true), Some("CHG-1"))
    );
    let denied = &h.get("auditor", "/v1/decisions?chg_id=CHG-2", StatusCode::OK).await["decisions"][0];
    assert_eq!(denied["result"]["allow"], false);
    assert_eq!(denied["path"], "fulcrum/promotion/decision");
    assert_eq!(denied["input"]["to"], "Approved");
    let digest = denied["bundles"]["fulcrum"]["revision"].as_str().unwrap().to_owned();
    // The snapshot the decision names is fetchable, so the decision can be replayed.
    let snap = h.get("auditor", &format!("/v1/policy/snapshots/{digest}"), StatusCode::OK).await;
    let payload = fulcrum_verify::b64_decode(snap["payload"].as_str().unwrap()).unwrap();
    let snapshot = fulcrum_policy::Snapshot::from_canonical_bytes(&payload).unwrap();
    assert_eq!(snapshot.digest(), digest);
    let replay = fulcrum_policy::Policy::compile(&snapshot).unwrap().decide("fulcrum.promotion", &denied["input"]);
    assert_eq!(serde_json::to_value(&replay).unwrap(), denied["result"]);
    // Other tenants and roles without the right see nothing.
    assert!(h.get("other-admin", "/v1/decisions", StatusCode::OK).await["decisions"].as_array().unwrap().is_empty());
    // …only the access decisions of their own calls.
    let theirs = h.get("other-admin", "/v1/decisions?path=fulcrum/authz/decision", StatusCode::OK).await;
    let theirs = theirs["decisions"].as_array().unwrap();
    assert!(!theirs.is_empty());
    assert!(theirs.iter().all(|d| d["path"] == "fulcrum/authz/decision" && d["input"]["principal"]["role"] == "admin"));
    h.get("ci", "/v1/decisions", StatusCode::FORBIDDEN).await;
    h.get("rm", "/v1/decisions?limit=0", StatusCode::BAD_REQUEST).await;
}

fn default_modules() -> BTreeMap<String, String> {
    fulcrum_policy::DEFAULT_MODULES.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect()
}

#[tokio::test]
async fn policy_admin_installs_snapshots() {
    let h = Harness::start().await;
    common::with_production(&h, "risk").await;
    let before: ResolveDocument = h
        .req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();

    // Refused uploads change nothing and say why.
    let broken = BTreeMap::from([("broken.rego".to_owned(), "package fulcrum.x\nallow if {\n".to_owned())]);
    let p =
        h.put("policy", "/v1/policy", json!({"modules": broken, "data": {}}), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["detail"].as_str().unwrap().contains("broken.rego"), "{p}");
    let failing = BTreeMap::from([("t.rego".to_owned(), "package fulcrum.t\ntest_no if false\n".to_owned())]);
    let p =
        h.put("policy", "/v1/policy", json!({"modules": failing, "data": {}}), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["detail"].as_str().unwrap().contains("test_no"), "{p}");
    h.put("policy", "/v1/policy", json!({"modules": {"../x.rego": ""}, "data": {}}), StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    h.put("admin", "/v1/policy", json!({"modules": default_modules(), "data": data}), StatusCode::FORBIDDEN).await;
    h.put("policy", "/v1/policy", json!({"modules": default_modules(), "data": data}), StatusCode::CONFLICT).await;
    assert!(!h.event_kinds("viewer").await.contains(&"policy_changed".to_owned()));

    // A stricter policy: a model card must also name a risk tier. Its own tests gate it: with the
    // data changed but the module's test fixture not, the upload is refused.
    data["fulcrum"]["required_card_fields"] = json!(["owner", "intended_use", "risk_tier"]);
    let p = h
        .put(
            "policy",
            "/v1/policy",
            json!({"modules": default_modules(), "data": data}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("test_clean_release_passes"), "{p}");
    let mut modules = default_modules();
    let promotion = modules.get_mut("promotion.rego").unwrap();
    *promotion = promotion.replace(
        r#""model_card": {"owner": "risk", "intended_use": "scoring"}"#,
        r#""model_card": {"owner": "risk", "intended_use": "scoring", "risk_tier": "high"}"#,
    );
    let ok = h.put("policy", "/v1/policy", json!({"modules": modules, "data": data}), StatusCode::CREATED).await;
    let digest = ok["policy_digest"].as_str().unwrap().to_owned();
    assert_ne!(digest, before.policy_digest);
    assert_eq!(h.event_kinds("viewer").await.last().unwrap(), "policy_changed");
    let after: ResolveDocument = h
        .req("agent", Method::GET, "/v1/resolve?ref=risk@production&env=prod")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after.policy_digest, digest, "resolve documents carry the new digest");
    // The old snapshot is still served (decisions made under it can be replayed).
    h.get("viewer", &format!("/v1/policy/snapshots/{}", before.policy_digest), StatusCode::OK).await;

    // The new gate applies: a version without risk_tier cannot reach Approved.
    h.register("ci", "risk", "v2", &[("w", b"two")]).await;
    let v = "/v1/models/risk/versions/v2";
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::OK).await;
    h.post("ana", &format!("{v}/approvals"), json!({}), StatusCode::CREATED).await;
    h.post("bo", &format!("{v}/approvals"), json!({}), StatusCode::CREATED).await;
    let p = h
        .post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::CONFLICT)
        .await;
    assert_eq!(p["errors"][0]["detail"], "model_card_missing:risk_tier");
    // And it survives a restart.
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
    assert_eq!(doc.policy_digest, digest);
}

/// Open critical/high findings block promotion unless an unexpired waiver covers them; an
/// expired waiver blocks with a reason that names it (runbook "expired waiver").
#[tokio::test]
async fn findings_and_waivers_gate_promotion() {
    let h = Harness::start().await;
    h.create_model("ci", "risk").await;
    h.register("ci", "risk", "v1", &[("w", b"one")]).await;
    let v = "/v1/models/risk/versions/v1";
    let grype = json!({"matches": [{"vulnerability": {"id": "CVE-2026-4242", "severity": "Critical"}, "artifact": {"name": "tokenizers"}},
                                   {"vulnerability": {"id": "CVE-2026-0001", "severity": "Low"}, "artifact": {"name": "numpy"}}]});
    let recorded =
        h.post("ci", &format!("{v}/findings"), json!({"format": "grype", "report": grype}), StatusCode::CREATED).await;
    assert_eq!(recorded.as_array().unwrap().len(), 2);
    h.post(
        "ci",
        &format!("{v}/findings"),
        json!({"format": "grype", "report": {"nope": 1}}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.post("viewer", &format!("{v}/findings"), json!({"format": "grype", "report": grype}), StatusCode::FORBIDDEN)
        .await;

    // Even Staging is blocked by an open critical finding.
    let p = h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::CONFLICT).await;
    assert_eq!(p["errors"][0]["detail"], "open_cve:CVE-2026-4242");

    // A waiver that has expired blocks, and is named.
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    h.post(
        "ci",
        "/v1/models/risk/waivers",
        json!({"id": "W-1", "finding": "CVE-2026-4242", "justification": "x", "expires_at": soon}),
        StatusCode::FORBIDDEN,
    )
    .await;
    h.post(
        "bo",
        "/v1/models/risk/waivers",
        json!({"id": "W-0", "finding": "CVE-2026-4242", "justification": "x", "expires_at": "2001-01-01T00:00:00Z"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    h.post("bo", "/v1/models/risk/waivers", json!({"id": "W-1", "finding": "CVE-2026-4242", "version": "v1", "justification": "not reachable from the scoring path", "expires_at": soon}), StatusCode::CREATED).await;
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::OK).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    h.post("ana", &format!("{v}/approvals"), json!({}), StatusCode::CREATED).await;
    h.post("bo", &format!("{v}/approvals"), json!({}), StatusCode::CREATED).await;
    let p = h
        .post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-9"}), StatusCode::CONFLICT)
        .await;
    assert_eq!(p["errors"][0]["detail"], "waiver_expired:W-1:CVE-2026-4242");
    // Renewal is a new waiver; then the gate passes.
    h.post("bo", "/v1/models/risk/waivers", json!({"id": "W-1", "finding": "CVE-2026-4242", "justification": "again", "expires_at": "2099-01-01T00:00:00Z"}), StatusCode::CONFLICT).await;
    h.post("bo", "/v1/models/risk/waivers", json!({"id": "W-2", "finding": "CVE-2026-4242", "justification": "renewed after review", "expires_at": "2099-01-01T00:00:00Z"}), StatusCode::CREATED).await;
    assert_eq!(
        h.get("viewer", "/v1/models/risk/waivers?version=v1", StatusCode::OK).await.as_array().unwrap().len(),
        2
    );
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-10"}), StatusCode::OK).await;
    let allowed = &h.get("rm", "/v1/decisions?chg_id=CHG-10", StatusCode::OK).await["decisions"][0];
    assert_eq!(allowed["result"]["allow"], true);
    assert_eq!(allowed["input"]["waivers"].as_array().unwrap().len(), 2, "the decision records what it saw");
}

/// Decision inputs are stored with the policy's masking rule applied.
#[tokio::test]
async fn decision_logs_erase_personal_data() {
    let h = Harness::start().await;
    h.create_model("ci", "risk").await;
    let d = h.upload_any("ci", b"weights").await;
    h.post("ci", "/v1/models/risk/versions", json!({"version": "v1", "files": [{"path": "w", "size": 7, "digest": d.to_string()}],
        "model_card": {"owner": "risk", "intended_use": "scoring", "contact": "jane.doe@bank.example"}, "revalidate_by": "2099-01-01T00:00:00Z"}), StatusCode::CREATED).await;
    h.post("rm", "/v1/models/risk/versions/v1/promotions", json!({"to": "Staging", "chg_id": "CHG-5"}), StatusCode::OK)
        .await;
    let rec = &h.get("auditor", "/v1/decisions?chg_id=CHG-5", StatusCode::OK).await["decisions"][0];
    assert_eq!(rec["erased"], json!(["/input/version/model_card/contact"]));
    assert!(rec["input"]["version"]["model_card"].get("contact").is_none());
    assert_eq!(rec["input"]["version"]["model_card"]["owner"], "risk");
}

/// Alias moves pass the policy's environment rule, logged; a policy can be stricter than the
/// built-in rule (here: a change freeze).
#[tokio::test]
async fn alias_moves_are_gated_and_logged() {
    let h = Harness::start().await;
    common::with_production(&h, "risk").await;
    let d = h.get("rm", "/v1/decisions?chg_id=CHG-9", StatusCode::OK).await;
    let rec = &d["decisions"][0];
    assert_eq!((rec["path"].as_str(), rec["result"]["allow"].as_bool()), (Some("fulcrum/env/decision"), Some(true)));
    assert_eq!((rec["input"]["env"].as_str(), rec["input"]["alias"].as_str()), (Some("prod"), Some("production")));

    let mut modules = default_modules();
    modules.insert(
        "freeze.rego".into(),
        "package fulcrum.env\n\ndeny contains \"change_freeze\" if input.model.name in data.fulcrum.frozen\n".into(),
    );
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    data["fulcrum"]["frozen"] = json!(["risk"]);
    h.put("policy", "/v1/policy", json!({"modules": modules, "data": data}), StatusCode::CREATED).await;
    h.register("ci", "risk", "v2", &[("w", b"two")]).await;
    h.approve_fully("risk", "v2").await;
    let p = h
        .put(
            "rm",
            "/v1/models/risk/aliases/production",
            json!({"version": "v2", "chg_id": "CHG-50"}),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!((p["code"].as_str(), p["errors"][0]["detail"].as_str()), (Some("policy_denied"), Some("change_freeze")));
    assert_eq!(
        h.get("viewer", "/v1/models/risk/aliases/production", StatusCode::OK).await["version"],
        "v1",
        "nothing moved"
    );
    let denied = &h.get("rm", "/v1/decisions?chg_id=CHG-50", StatusCode::OK).await["decisions"][0];
    assert_eq!(denied["result"]["deny"], json!(["change_freeze"]));
}

async fn resolve_doc(h: &Harness, who: &str, path: &str) -> ResolveDocument {
    h.req(who, Method::GET, path).send().await.unwrap().json().await.unwrap()
}

/// Every API call is an access decision taken by the policy in force (`fulcrum.authz`) and
/// logged; a new snapshot's rules apply to the very next call; the download gate (the
/// environment rule in resolve documents) is the policy's too, and a policy can only be
/// stricter than the lifecycle.
#[tokio::test]
async fn access_and_download_decisions_follow_the_policy_in_force() {
    let h = Harness::start().await;
    common::with_production(&h, "risk").await;

    // A refused call names the policy's reason, machine-readably, and is logged as a denial.
    let p = h
        .post("viewer", "/v1/models/risk/versions/v1/promotions", json!({"to": "Staging"}), StatusCode::FORBIDDEN)
        .await;
    assert_eq!(p["errors"][0], json!({"check": "policy", "detail": "role_forbids:promote"}));
    h.get("viewer", "/v1/models/risk", StatusCode::OK).await;
    let access = h.get("auditor", "/v1/decisions?path=fulcrum/authz/decision&limit=1000", StatusCode::OK).await;
    let access = access["decisions"].as_array().unwrap().clone();
    let by_viewer: Vec<&Value> = access.iter().filter(|d| d["input"]["principal"]["role"] == "viewer").collect();
    let denied = by_viewer.iter().find(|d| d["input"]["action"] == "promote").expect("the denial is logged");
    assert_eq!(denied["result"], json!({"allow": false, "deny": ["role_forbids:promote"]}));
    assert!(by_viewer.iter().any(|d| d["input"]["action"] == "read" && d["result"]["allow"] == true));
    // The decision names the snapshot it was taken under, so it replays.
    let digest = denied["bundles"]["fulcrum"]["revision"].as_str().unwrap();
    let snap = h.get("auditor", &format!("/v1/policy/snapshots/{digest}"), StatusCode::OK).await;
    let payload = fulcrum_verify::b64_decode(snap["payload"].as_str().unwrap()).unwrap();
    let replay = fulcrum_policy::Policy::compile(&fulcrum_policy::Snapshot::from_canonical_bytes(&payload).unwrap())
        .unwrap()
        .decide("fulcrum.authz", &denied["input"]);
    assert_eq!(serde_json::to_value(&replay).unwrap(), denied["result"]);
    // Looked up by id (as `fulcrum explain` does) without naming the kind.
    let id = denied["decision_id"].as_str().unwrap();
    let one = h.get("auditor", &format!("/v1/decisions?decision_id={id}"), StatusCode::OK).await;
    assert_eq!(one["decisions"].as_array().unwrap().as_slice(), [(*denied).clone()]);
    // Paged one at a time, the cursor walks every record once, in order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = h
            .get("auditor", &format!("/v1/decisions?path=fulcrum/authz/decision&limit=1&after={after}"), StatusCode::OK)
            .await;
        let items = page["decisions"].as_array().unwrap();
        if items.is_empty() || seen.len() > access.len() {
            break;
        }
        seen.push(items[0]["decision_id"].as_str().unwrap().to_owned());
        after = page["next_after"].as_i64().unwrap();
    }
    let all: Vec<&str> = access.iter().map(|d| d["decision_id"].as_str().unwrap()).collect();
    assert_eq!(seen[..all.len()], all[..]);
    // Decisions about resolve are logged too, one per call.
    let before = access.iter().filter(|d| d["input"]["action"] == "resolve").count();
    let doc = resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await;
    assert_eq!(doc.decision, fulcrum_core::resolve::Decision::Permit);
    let after = h.get("auditor", "/v1/decisions?path=fulcrum/authz/decision&limit=1000", StatusCode::OK).await;
    let after = after["decisions"].as_array().unwrap().iter().filter(|d| d["input"]["action"] == "resolve").count();
    assert_eq!(after, before + 1);

    // A stricter snapshot: viewers lose resolve, and the production environment is frozen for
    // `risk` (a change freeze), while its version stays Approved.
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    let viewer = data["fulcrum"]["roles"]["viewer"].as_array_mut().unwrap();
    viewer.retain(|a| a != "resolve");
    data["fulcrum"]["frozen"] = json!({"prod": ["risk"]});
    let mut modules = default_modules();
    let env = modules.get_mut("env.rego").unwrap();
    *env = env.replace(
        "allow if {\n\tinput.version.hold == \"none\"\n",
        "frozen if input.model.name in object.get(data.fulcrum.frozen, input.env, [])\n\n\
         deny contains \"change_freeze\" if frozen\n\n\
         allow if {\n\tnot frozen\n\tinput.version.hold == \"none\"\n",
    );
    assert!(env.contains("change_freeze"), "the module edit applied");
    let ok = h.put("policy", "/v1/policy", json!({"modules": modules, "data": data}), StatusCode::CREATED).await;
    let p = h.get("viewer", "/v1/resolve?ref=risk@production&env=prod", StatusCode::FORBIDDEN).await;
    assert_eq!(p["errors"][0]["detail"], "role_forbids:resolve");
    let doc = resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await;
    assert_eq!(doc.policy_digest, ok["policy_digest"].as_str().unwrap());
    assert_eq!(doc.stage, "Approved");
    assert_eq!(doc.decision, fulcrum_core::resolve::Decision::Deny);
    assert_eq!(doc.deny_reason.as_deref(), Some("change_freeze"));
    // Staging is not frozen.
    let doc = resolve_doc(&h, "rm", "/v1/resolve?ref=risk@production&env=staging").await;
    assert_eq!(doc.decision, fulcrum_core::resolve::Decision::Permit);
}

/// The release gate is policy too: what a version must bring is the release-policy file's
/// requirements plus the policy's own per domain; an allowed registration is logged with it, a
/// refused one alone, and nothing is stored.
#[tokio::test]
async fn release_gate_requirements_come_from_the_policy() {
    let h = Harness::start().await;
    h.create_model("ci", "risk").await;
    h.register("ci", "risk", "v1", &[("w", b"one")]).await;
    let allowed = h.get("auditor", "/v1/decisions?path=fulcrum/release/decision", StatusCode::OK).await;
    let allowed = allowed["decisions"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["result"], json!({"allow": true, "deny": []}));
    assert_eq!(allowed[0]["input"]["version"]["label"], "v1");
    assert_eq!(allowed[0]["chg_id"], "CHG-1");

    // This tenant's models (any domain) must now carry an SBOM.
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    data["fulcrum"]["release_required"] = json!({"*": ["sbom"]});
    h.put("policy", "/v1/policy", json!({"modules": default_modules(), "data": data}), StatusCode::CREATED).await;
    let d = h.upload("ci", b"two").await;
    let p = h
        .post(
            "ci",
            "/v1/models/risk/versions",
            json!({"version": "v2", "files": [{"path": "w", "size": 3, "digest": d.to_string()}], "chg_id": "CHG-2"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["code"], "release_gate_failed");
    assert_eq!(p["errors"][0]["check"], "sbom");
    assert!(p["errors"][0]["detail"].as_str().unwrap().starts_with("missing:"), "{p}");
    h.get("viewer", "/v1/models/risk/versions/v2", StatusCode::NOT_FOUND).await;
    let all = h.get("auditor", "/v1/decisions?path=fulcrum/release/decision", StatusCode::OK).await;
    let denied = &all["decisions"].as_array().unwrap()[1];
    assert_eq!(denied["result"], json!({"allow": false, "deny": ["missing:sbom"]}));
    assert_eq!(denied["chg_id"], "CHG-2");
}

/// One `policy apply` must never lock everyone out: an empty snapshot, or one module that is
/// not `fulcrum.authz`/`fulcrum.env`, compiles and passes its own (absent) tests, yet is refused
/// by Fulcrum's conformance tests; the policy admin and serving keep working. Re-applying an
/// earlier snapshot is a rollback (by content or by digest), recorded in the history.
#[tokio::test]
async fn a_policy_apply_cannot_lock_everyone_out_and_rolls_back() {
    let h = Harness::start().await;
    common::with_production(&h, "risk").await;
    let shipped = resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await.policy_digest;

    let p = h.put("policy", "/v1/policy", json!({"modules": {}, "data": {}}), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["code"], "policy_nonconformant");
    for entry in ["fulcrum.authz", "fulcrum.env", "fulcrum.promotion", "fulcrum.release"] {
        assert!(p["detail"].as_str().unwrap().contains(entry), "{entry}: {p}");
    }
    let stray = json!({"modules": {"x.rego": "package other\nallow := true\n"}, "data": {}});
    assert_eq!(
        h.put("policy", "/v1/policy", stray, StatusCode::UNPROCESSABLE_ENTITY).await["code"],
        "policy_nonconformant"
    );
    // Dropping the policy admin's own right is the same lockout, one step removed.
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    data["fulcrum"]["roles"]["policy-admin"] = json!(["read"]);
    let p = h
        .put(
            "policy",
            "/v1/policy",
            json!({"modules": default_modules(), "data": data}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("policy-admin can install policies"), "{p}");
    // Nothing changed: serving still resolves, nothing was announced.
    let doc = resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await;
    assert_eq!((doc.policy_digest.as_str(), doc.decision), (shipped.as_str(), fulcrum_core::resolve::Decision::Permit));
    assert!(!h.event_kinds("viewer").await.contains(&"policy_changed".to_owned()));

    // A stricter snapshot, then the shipped one again: a rollback, not a 409.
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    data["fulcrum"]["release_required"] = json!({"*": ["sbom"]});
    let strict =
        h.put("policy", "/v1/policy", json!({"modules": default_modules(), "data": data}), StatusCode::CREATED).await;
    assert_eq!(strict["kind"], "install");
    let shipped_data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    let back = h
        .put(
            "policy",
            "/v1/policy",
            json!({"modules": default_modules(), "data": shipped_data, "reason": "INC-3 rollback"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!((back["kind"].as_str(), back["policy_digest"].as_str()), (Some("rollback"), Some(shipped.as_str())));
    assert_eq!(resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await.policy_digest, shipped);
    // By digest, through its own endpoint.
    let digest = strict["policy_digest"].as_str().unwrap();
    let again = h.post("policy", "/v1/policy/rollback", json!({"digest": digest}), StatusCode::CREATED).await;
    assert_eq!(again["kind"], "rollback");
    h.post("policy", "/v1/policy/rollback", json!({"digest": digest}), StatusCode::CONFLICT).await;
    let unknown = format!("sha256:{}", "0".repeat(64));
    h.post("policy", "/v1/policy/rollback", json!({"digest": unknown}), StatusCode::NOT_FOUND).await;
    h.post("admin", "/v1/policy/rollback", json!({"digest": shipped}), StatusCode::FORBIDDEN).await;
    let history = h.get("viewer", "/v1/policy/history", StatusCode::OK).await;
    let kinds: Vec<&str> =
        history["installs"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["rollback", "rollback", "install", "install"], "{history}");
    assert_eq!(history["installs"][1]["reason"], "INC-3 rollback");
    // It survives a restart.
    let dir = h.stop().await;
    let h = Harness::start_in(dir).await;
    assert_eq!(resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await.policy_digest, digest);
}

/// The host operator's break glass: with the registry stopped, `request_reset` (what
/// `fulcrum policy reset --data-dir` runs) leaves a request; the next start puts the shipped
/// default in force, records it as a reset in the history and announces it as
/// `policy_changed` (an event, so a ledger leaf), and removes the request.
#[tokio::test]
async fn break_glass_reset_restores_the_shipped_policy_and_says_so() {
    let h = Harness::start().await;
    common::with_production(&h, "risk").await;
    let shipped = resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await.policy_digest;
    let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    data["fulcrum"]["release_required"] = json!({"*": ["sbom"]});
    h.put("policy", "/v1/policy", json!({"modules": default_modules(), "data": data}), StatusCode::CREATED).await;
    let dir = h.stop().await;

    let data_dir = dir.path().join("data");
    let e = fulcrum_server::policy::request_reset(&dir.path().join("nowhere"), "x").unwrap_err();
    assert!(e.to_string().contains("holds no registry"), "{e}");
    assert!(fulcrum_server::policy::request_reset(&data_dir, "").is_err());
    let req = fulcrum_server::policy::request_reset(&data_dir, "policy admins locked out (INC-77)").unwrap();
    assert!(data_dir.join(fulcrum_server::policy::RESET_MARKER).exists());

    let h = Harness::start_in(dir).await;
    assert!(!h.dir.path().join("data").join(fulcrum_server::policy::RESET_MARKER).exists(), "done once");
    assert_eq!(resolve_doc(&h, "agent", "/v1/resolve?ref=risk@production&env=prod").await.policy_digest, shipped);
    let history = h.get("auditor", "/v1/policy/history", StatusCode::OK).await;
    let top = &history["installs"][0];
    assert_eq!((top["kind"].as_str(), top["digest"].as_str()), (Some("reset"), Some(shipped.as_str())));
    assert_eq!(top["installed_by"], format!("break-glass:{}", req.requested_by));
    let ev = h.events("viewer").await.into_iter().rev().find(|e| e["data"]["event"] == "policy_changed").unwrap();
    assert_eq!(ev["data"]["detail"], "reset");
    assert!(ev["data"]["reason"].as_str().unwrap().contains("INC-77"), "{ev}");
    // The announcement is in the audit ledger (registry-wide entries are readable by every tenant).
    let size = h.get("auditor", "/v1/ledger/entries?start=0&end=0", StatusCode::OK).await["size"].as_u64().unwrap();
    let mut entries = Vec::new();
    for start in (0..size).step_by(1000) {
        let page = h
            .get(
                "auditor",
                &format!("/v1/ledger/entries?start={start}&end={}", (start + 1000).min(size)),
                StatusCode::OK,
            )
            .await;
        entries
            .extend(page["entries"].as_array().unwrap().iter().filter_map(|e| e["data"].as_str().map(str::to_owned)));
    }
    let entries = entries.join("\n");
    assert!(entries.contains("INC-77") && entries.contains("break-glass"), "the reset's event is a ledger leaf");
}

// The same tests on PostgreSQL + S3.
on_scale_out!(
    promotion_gate_decisions_are_logged,
    policy_admin_installs_snapshots,
    findings_and_waivers_gate_promotion,
);
