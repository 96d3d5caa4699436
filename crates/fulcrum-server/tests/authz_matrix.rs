//! The authorization matrix, end to end: every role × every action × own/other tenant ×
//! sensitive/not, each through its real endpoint, with the expected outcome as data (the table
//! below is the contract; the shipped policy must agree with it). Then separation of duties and
//! DLP: purpose checks on resolve and download, extra approvals, logged decisions.

mod common;

use common::{Harness, PEOPLE, token};
use fulcrum_core::Digest;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_server::auth::{TokenEntry, TokensFile};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Which actions each role may take on its own tenant (Y) or not (.), in the column order of
/// `ACTIONS`. Admin may not administer keys or policy, nor read forensically; key-admins may do
/// nothing but keys.
const TABLE: &str = "
                  read upload download create register approve promote quarantine lift set_alias delete_alias resolve report read_events read_keys admin_keys admin_policy read_decisions findings waiver forensic scrub revoke redeliver
admin             Y    Y      Y        Y      Y        Y       Y       Y          Y    Y         Y            Y       Y      Y           Y         .          .            Y              Y        Y      .        Y     Y      Y
viewer            Y    .      .        .      .        .       .       .          .    .         .            Y       .      Y           .         .          .            .              .        .      .        .     .      .
auditor           Y    .      .        .      .        .       .       .          .    .         .            .       .      Y           Y         .          .            Y              .        .      Y        .     .      .
publisher         Y    Y      Y        Y      Y        .       .       .          .    .         .            .       .      Y           .         .          .            .              Y        .      .        .     .      .
approver          Y    .      .        .      .        Y       .       .          .    .         .            Y       .      Y           .         .          .            .              .        .      .        .     .      .
release-manager   Y    .      Y        .      .        Y       Y       Y          Y    Y         Y            Y       .      Y           .         .          .            Y              Y        .      .        .     Y      .
security-officer  Y    .      .        .      .        Y       .       Y          Y    .         .            Y       .      Y           .         .          .            Y              Y        Y      Y        Y     Y      .
serving           Y    .      Y        .      .        .       .       .          .    .         .            Y       Y      Y           .         .          .            .              .        .      .        .     .      .
key-admin         .    .      .        .      .        .       .       .          .    .         .            .       .      .           Y         Y          .            .              .        .      .        .     .      .
policy-admin      Y    .      .        .      .        .       .       .          .    .         .            .       .      Y           .         .          Y            Y              .        .      .        .     .      .
";

/// A request: method, path, JSON body (a string = raw bytes to upload).
type Request = (Method, String, Option<Value>);

/// An action's request. `model` is `None` for collection-level actions (no other tenant's
/// resource can be named there).
struct Act {
    name: &'static str,
    on_model: bool,
    req: fn(&Ctx, &str, &str) -> Request,
}

/// What the requests need: each model's file digest.
struct Ctx {
    files: Vec<(&'static str, Digest)>,
}

impl Ctx {
    fn file(&self, model: &str) -> Digest {
        self.files.iter().find(|(m, _)| *m == model).unwrap().1
    }
}

fn v1(model: &str, rest: &str) -> String {
    format!("/v1/models/{model}/versions/v1/{rest}")
}

/// Every action, destructive ones last (revoke is terminal).
const ACTIONS: &[Act] = &[
    Act { name: "read", on_model: true, req: |_, m, _| (Method::GET, format!("/v1/models/{m}"), None) },
    Act { name: "upload", on_model: false, req: |_, _, who| (Method::POST, "/v1/blobs".into(), Some(json!(who))) },
    Act { name: "download", on_model: true, req: |c, m, _| (Method::GET, format!("/v1/blobs/{}", c.file(m)), None) },
    Act {
        name: "create",
        on_model: false,
        req: |_, _, who| {
            (Method::POST, "/v1/models".into(), Some(json!({"name": format!("new-{who}"), "domain": "risk"})))
        },
    },
    Act {
        name: "register",
        on_model: true,
        req: |_, m, _| (Method::POST, format!("/v1/models/{m}/versions"), Some(json!({"version": "v9", "files": []}))),
    },
    Act {
        name: "approve",
        on_model: true,
        req: |_, m, _| (Method::POST, v1(m, "approvals"), Some(json!({"comment": "ok"}))),
    },
    Act {
        name: "promote",
        on_model: true,
        req: |_, m, _| (Method::POST, v1(m, "promotions"), Some(json!({"to": "Staging"}))),
    },
    Act {
        name: "quarantine",
        on_model: true,
        req: |_, m, _| (Method::POST, v1(m, "quarantine"), Some(json!({"reason": "matrix"}))),
    },
    Act { name: "lift", on_model: true, req: |_, m, _| (Method::DELETE, v1(m, "quarantine"), None) },
    Act {
        name: "set_alias",
        on_model: true,
        req: |_, m, _| (Method::PUT, format!("/v1/models/{m}/aliases/canary"), Some(json!({"version": "v1"}))),
    },
    Act {
        name: "delete_alias",
        on_model: true,
        req: |_, m, _| (Method::DELETE, format!("/v1/models/{m}/aliases/canary"), None),
    },
    Act {
        name: "resolve",
        on_model: true,
        req: |_, m, _| (Method::GET, format!("/v1/resolve?ref={m}@v1&env=prod"), None),
    },
    Act {
        name: "report",
        on_model: true,
        req: |_, m, _| {
            (
                Method::POST,
                "/v1/startup-reports".into(),
                Some(json!({"ref": format!("{m}@v1"), "env": "prod", "decision": "deny", "reason": "matrix"})),
            )
        },
    },
    Act { name: "read_events", on_model: false, req: |_, _, _| (Method::GET, "/v1/events?limit=1".into(), None) },
    Act { name: "read_keys", on_model: false, req: |_, _, _| (Method::GET, "/v1/keys".into(), None) },
    Act {
        name: "admin_keys",
        on_model: false,
        req: |_, _, _| {
            (
                Method::POST,
                "/v1/keys".into(),
                Some(json!({"public_key": "not a key", "backend": "local", "backend_ref": "x"})),
            )
        },
    },
    Act {
        name: "admin_policy",
        on_model: false,
        req: |_, _, _| (Method::PUT, "/v1/policy".into(), Some(json!({"modules": {"x.rego": "not rego"}, "data": {}}))),
    },
    Act { name: "read_decisions", on_model: false, req: |_, _, _| (Method::GET, "/v1/decisions?limit=1".into(), None) },
    Act {
        name: "findings",
        on_model: true,
        req: |_, m, _| (Method::POST, v1(m, "findings"), Some(json!({"format": "not-a-format", "report": {}}))),
    },
    Act {
        name: "waiver",
        on_model: true,
        req: |_, m, _| {
            (
                Method::POST,
                format!("/v1/models/{m}/waivers"),
                Some(
                    json!({"id": "W-1", "finding": "CVE-1", "justification": "matrix", "expires_at": "2099-01-01T00:00:00Z"}),
                ),
            )
        },
    },
    Act {
        name: "forensic",
        on_model: true,
        req: |c, m, _| (Method::GET, format!("/v1/blobs/{}?forensic=INC-1", c.file(m)), None),
    },
    Act { name: "scrub", on_model: false, req: |_, _, _| (Method::POST, "/v1/blobs/scrub?limit=1".into(), None) },
    Act {
        name: "revoke",
        on_model: true,
        req: |_, m, _| (Method::POST, v1(m, "revocation"), Some(json!({"reason": "matrix"}))),
    },
    Act {
        name: "redeliver",
        on_model: false,
        req: |_, _, _| (Method::POST, "/v1/webhooks/dead-letters/999999/redelivery".into(), None),
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The access rules let it through (whatever the lifecycle or validation said next).
    Allowed,
    Forbidden,
    /// 404: the resource does not exist for this caller.
    Invisible,
}

/// Matrix identities: `m-<tenant>-<role>`, plus serving agents declaring a purpose.
fn identities() -> Vec<TokenEntry> {
    let mut out: Vec<TokenEntry> =
        PEOPLE.iter().map(|(who, role, tenant, domain, env)| entry(who, *role, tenant, domain, *env, None)).collect();
    for tenant in ["acme", "globex"] {
        for role in Role::ALL {
            // Bound to no environment: the download gate holds them to `dev`'s rule, so the
            // Candidates here are theirs to download (a `prod` identity's case is kill_switch.rs).
            out.push(entry(&format!("m-{tenant}-{}", role.as_str()), role, tenant, "*", None, None));
        }
    }
    out.push(entry("care-agent", Role::Serving, "acme", "*", None, Some("care-planning")));
    out.push(entry("ads-agent", Role::Serving, "acme", "*", None, Some("marketing")));
    out
}

fn entry(who: &str, role: Role, tenant: &str, domain: &str, env: Option<Env>, purpose: Option<&str>) -> TokenEntry {
    TokenEntry {
        token: Some(token(who)),
        token_sha256: None,
        subject: who.into(),
        role,
        tenant: tenant.into(),
        domain: domain.into(),
        env,
        purpose: purpose.map(str::to_owned),
    }
}

/// `scoring` (no labels) and `patients` (`pii:restricted`, its card allowing `care-planning`),
/// each with a registered v1.
async fn registry() -> (Harness, Ctx) {
    let dir = tempfile::tempdir().unwrap();
    TokensFile { tokens: identities() }.write_new(&dir.path().join("tokens.json")).unwrap();
    let h = Harness::start_in(dir).await;
    h.create_model("ci", "scoring").await;
    let (_, scoring) = h.register("ci", "scoring", "v1", &[("weights.bin", b"scoring weights")]).await;
    h.post(
        "ci",
        "/v1/models",
        json!({"name": "patients", "domain": "risk", "labels": {"pii": "restricted"}}),
        StatusCode::CREATED,
    )
    .await;
    let d = h.upload("ci", b"patients weights").await;
    let files = json!([{"path": "weights.bin", "size": 16, "digest": d.to_string()}]);
    h.post(
        "ci",
        "/v1/models/patients/versions",
        json!({"version": "v1", "files": files, "revalidate_by": "2099-01-01T00:00:00Z",
               "model_card": {"owner": "care", "intended_use": "triage", "guardrails": {"purposes": ["care-planning"]}}}),
        StatusCode::CREATED,
    )
    .await;
    let ctx = Ctx { files: vec![("scoring", scoring.files()[0].digest), ("patients", d)] };
    (h, ctx)
}

async fn seen(h: &Harness, who: &str, (method, path, body): Request) -> (Seen, Value) {
    let mut rb = h.req(who, method, &path);
    match body {
        Some(Value::String(s)) => rb = rb.body(format!("bytes of {s}")),
        Some(b) => rb = rb.json(&b),
        None => {}
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_ne!(status, StatusCode::UNAUTHORIZED, "{who} {path}: {body}");
    let invisible = status == StatusCode::NOT_FOUND
        && ["model not found", "blob not found", "resource not found"].contains(&body["detail"].as_str().unwrap_or(""));
    let s = match status {
        StatusCode::FORBIDDEN => Seen::Forbidden,
        _ if invisible => Seen::Invisible,
        _ => Seen::Allowed,
    };
    (s, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_action_tenant_and_sensitivity_as_data() {
    let (h, ctx) = registry().await;
    let mut lines = TABLE.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ACTIONS.iter().map(|a| a.name).collect::<Vec<_>>(), "the table's columns are the actions");
    let table: Vec<(Role, Vec<bool>)> = lines
        .map(|l| {
            let mut cells = l.split_whitespace();
            let role: Role = cells.next().unwrap().parse().unwrap();
            (role, cells.map(|c| c == "Y").collect())
        })
        .collect();
    assert_eq!(table.len(), Role::ALL.len(), "every role has a row");

    let mut cells = 0;
    let mut failures = vec![];
    for (col, act) in ACTIONS.iter().enumerate() {
        let models: &[&str] = if act.on_model { &["scoring", "patients"] } else { &["-"] };
        for model in models {
            let sensitive = *model == "patients";
            // DLP: a sensitive version is resolved and downloaded only for a purpose its card allows.
            let purpose_checked = sensitive && ["resolve", "download"].contains(&act.name);
            for (role, allowed) in &table {
                for tenant in ["acme", "globex"] {
                    if tenant == "globex" && !act.on_model {
                        continue; // nothing of another tenant can be named
                    }
                    let who = format!("m-{tenant}-{}", role.as_str());
                    let want = match (allowed[col], tenant) {
                        (false, _) => Seen::Forbidden,
                        (true, "globex") => Seen::Invisible,
                        (true, _) if purpose_checked => Seen::Forbidden,
                        (true, _) => Seen::Allowed,
                    };
                    let (got, body) = seen(&h, &who, (act.req)(&ctx, model, &who)).await;
                    cells += 1;
                    if got != want {
                        failures.push(format!("{who} {} on {model}: want {want:?}, got {got:?} {body}", act.name));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells differ:\n{}", failures.len(), failures.join("\n"));
    assert!(cells > 500, "{cells} cells");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_models_leave_only_for_an_allowed_purpose_and_each_check_is_logged() {
    let (h, ctx) = registry().await;
    let patients = ctx.file("patients");
    // Resolve and download: the card allows care-planning.
    for (who, want, reason) in [
        ("care-agent", StatusCode::OK, None),
        ("ads-agent", StatusCode::FORBIDDEN, Some("purpose_not_allowed")),
        ("m-acme-serving", StatusCode::FORBIDDEN, Some("purpose_required")),
    ] {
        for path in ["/v1/resolve?ref=patients@v1&env=prod".to_owned(), format!("/v1/blobs/{patients}")] {
            let resp = h.req(who, Method::GET, &path).send().await.unwrap();
            assert_eq!(resp.status(), want, "{who} {path}");
            if let Some(r) = reason {
                let p: Value = resp.json().await.unwrap();
                assert_eq!(p["errors"][0], json!({"check": "policy", "detail": r}), "{who} {path}");
            }
        }
        // The same agent reaches the model without labels.
        let resp = h.req(who, Method::GET, "/v1/resolve?ref=scoring@v1&env=prod").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{who} on scoring");
    }
    // The same bytes in a version without sensitive labels leave under that version's rules.
    let d = h.upload_any("ci", b"patients weights").await;
    assert_eq!(d, patients);
    let files = json!([{"path": "weights.bin", "size": 16, "digest": d.to_string()}]);
    h.post("ci", "/v1/models/scoring/versions", json!({"version": "v2", "files": files}), StatusCode::CREATED).await;
    let resp = h.req("m-acme-serving", Method::GET, &format!("/v1/blobs/{patients}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "also a file of scoring v2");

    // Each check is a logged decision naming the labels and allowed purposes it was taken on.
    let log = h.get("auditor", "/v1/decisions?path=fulcrum/authz/decision&limit=1000", StatusCode::OK).await;
    let denied: Vec<&Value> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["input"]["principal"]["subject"] == "ads-agent" && d["result"]["allow"] == false)
        .collect();
    assert_eq!(denied.len(), 2, "one resolve and one download: {denied:?}");
    for d in denied {
        assert_eq!(d["result"]["deny"], json!(["purpose_not_allowed"]));
        assert_eq!(d["input"]["resource"]["labels"], json!(["pii:restricted"]));
        assert_eq!(d["input"]["resource"]["allowed_purposes"], json!(["care-planning"]));
        assert!(d["input"]["principal"].get("purpose").is_none(), "the declared purpose is masked in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separation_of_duties() {
    let (h, _) = registry().await;
    // Key administration is its own role: an admin cannot publish a key, a key-admin cannot promote.
    let key = json!({"public_key": "not a key", "backend": "local", "backend_ref": "x"});
    let p = h.post("admin", "/v1/keys", key, StatusCode::FORBIDDEN).await;
    assert_eq!(p["errors"][0]["detail"], "role_forbids:administer_keys");
    let p = h.post("keys", &v1("scoring", "promotions"), json!({"to": "Staging"}), StatusCode::FORBIDDEN).await;
    assert_eq!(p["errors"][0]["detail"], "role_forbids:promote");
    // The publisher of a version cannot approve it, even in an approving role, and one approval
    // is not four eyes.
    h.post("m-acme-admin", "/v1/models", json!({"name": "selfie", "domain": "risk"}), StatusCode::CREATED).await;
    let d = h.upload("m-acme-admin", b"selfie weights").await;
    let files = json!([{"path": "w.bin", "size": 14, "digest": d.to_string()}]);
    let card = json!({"owner": "risk", "intended_use": "scoring"});
    let body = json!({"version": "v1", "files": files, "model_card": card, "revalidate_by": "2099-01-01T00:00:00Z"});
    h.post("m-acme-admin", "/v1/models/selfie/versions", body, StatusCode::CREATED).await;
    let v = "/v1/models/selfie/versions/v1";
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::OK).await;
    let p = h.post("m-acme-admin", &format!("{v}/approvals"), json!({"comment": "mine"}), StatusCode::CONFLICT).await;
    assert_eq!(p["code"], "publisher_cannot_approve");
    h.post("ana", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
    let p = h
        .post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::CONFLICT)
        .await;
    assert_eq!(p["code"], "four_eyes", "{p}");
    h.post("bo", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::OK).await;

    // A sensitive version needs a third approver (data.fulcrum.dlp.extra_approvals = 1).
    let v = "/v1/models/patients/versions/v1";
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Staging"}), StatusCode::OK).await;
    h.post("ana", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
    h.post("bo", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
    let p = h
        .post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::CONFLICT)
        .await;
    assert_eq!(p["errors"][0]["detail"], "sensitive_needs_approvals:3", "{p}");
    h.post("rm", &format!("{v}/approvals"), json!({"comment": "ok"}), StatusCode::CREATED).await;
    h.post("rm", &format!("{v}/promotions"), json!({"to": "Approved", "chg_id": "CHG-T"}), StatusCode::OK).await;
}

/// The resource's attributes reach the access rules, so a policy can use them: here one that
/// lets only a release-manager touch `prod` aliases and stops anyone quarantining a version that
/// is still a Candidate, installed by the policy-admin and in force at the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_attributes_reach_the_access_rules() {
    let (h, _) = registry().await;
    let mut modules: std::collections::BTreeMap<String, String> =
        fulcrum_policy::DEFAULT_MODULES.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect();
    let authz = modules.get_mut("authz.rego").unwrap();
    // A deny reason alone refuses: only `allow` with no reason lets a call through.
    authz.push_str(
        "\ndeny contains \"prod_alias_needs_release_manager\" if {\n\tinput.action == \"set_alias\"\n\tinput.resource.env == \"prod\"\n\tinput.principal.role != \"release-manager\"\n}\n\n\
         deny contains \"candidate_not_quarantinable\" if {\n\tinput.action == \"quarantine\"\n\tinput.resource.stage == \"Candidate\"\n}\n",
    );
    let data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
    h.put("policy", "/v1/policy", json!({"modules": modules, "data": data}), StatusCode::CREATED).await;

    let alias = |env: &str| json!({"version": "v1", "env": env});
    let p = h.put("m-acme-admin", "/v1/models/scoring/aliases/canary", alias("prod"), StatusCode::FORBIDDEN).await;
    assert_eq!(p["errors"][0]["detail"], "prod_alias_needs_release_manager", "{p}");
    // The same admin for a dev alias passes the access rule (the lifecycle decides the rest).
    h.put("m-acme-admin", "/v1/models/scoring/aliases/canary", alias("dev"), StatusCode::OK).await;
    let p = h
        .post("bo", &v1("scoring", "quarantine"), json!({"reason": "look", "inc_id": "INC-7"}), StatusCode::FORBIDDEN)
        .await;
    assert_eq!(p["errors"][0]["detail"], "candidate_not_quarantinable", "{p}");
    h.post("rm", &v1("scoring", "promotions"), json!({"to": "Staging"}), StatusCode::OK).await;
    h.post("bo", &v1("scoring", "quarantine"), json!({"reason": "look", "inc_id": "INC-7"}), StatusCode::OK).await;
}
