//! The seed's two flows in the web console, through the real binaries and a real browser: a
//! `fulcrum serve` process that signs people in through the test IdP (authorization code with
//! PKCE), the `fulcrum` CLI registering versions, a guarded serving replica (real MLServer behind
//! the gateway) feeding the dashboard, and headless Chromium clicking as each role.
//!
//! Flow 1 (promotion): ci registers (CLI) → a release manager promotes to Staging after seeing the
//! gate's decision → two people approve → the promotion to Approved is shown refused without a
//! change id, then allowed and confirmed → `production` is moved the same way → the dashboard
//! fills from gateway traffic. Flow 2 (revocation): v2 released → a security officer revokes it
//! with an incident id → the open version page flips by itself and the incident's timeline
//! completes. Around it: a viewer sees no action and a forged one is refused (403), an auditor
//! sees the policy and verifies the ledger in the browser, another tenant sees nothing.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::serving::{as_, replica, served_by};
use common::{Server, ok, run_as, serve_listening};
use fulcrum_oidc::test_idp::TestIdp;
use fulcrum_testkit::browser::{self, Browser};
use fulcrum_testkit::mlserver;
use serde_json::json;

/// The people of the test IdP: account → claims.
fn people() -> serde_json::Value {
    let p = |role: &str, tenant: &str| json!({"tenant_id": tenant, "domain": "*", "role": role});
    json!({
        "rosa": p("release-manager", "acme"), "ana": p("approver", "acme"), "bo": p("security-officer", "acme"),
        "vera": p("viewer", "acme"), "aud": p("auditor", "acme"), "eve": p("admin", "globex"),
    })
}

/// The IdP and a registry whose console signs in through it (the callback names the registry's
/// port, so both start again on new ports when the chosen one was taken meanwhile).
fn start() -> Option<(TestIdp, Server)> {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let callback = format!("http://127.0.0.1:{port}/ui/login/callback");
        let console = json!([{"client_id": "fulcrum-console", "grant_types": ["authorization_code"],
            "response_types": ["code"], "redirect_uris": [callback], "token_endpoint_auth_method": "none"}]);
        let idp = TestIdp::start_with_users("ES256", "urn:fulcrum", console, &people())?;
        let dir = tempfile::tempdir().unwrap();
        let oidc = dir.path().join("oidc.json");
        std::fs::write(
            &oidc,
            json!({"issuers": [{"issuer": idp.issuer, "audience": "urn:fulcrum", "tenants": ["acme", "globex"]}],
                   "console": {"issuer": idp.issuer, "client_id": "fulcrum-console", "redirect_uri": callback}})
            .to_string(),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{port}");
        if let Some(s) = serve_listening(&listen, &["--oidc-config", oidc.to_str().unwrap()], dir) {
            return Some((idp, s));
        }
    }
    panic!("no free port for the registry after 5 tries");
}

/// A model directory from trained files, with its card and reference profile beside it.
fn model_dir(root: &Path, files: &[(String, Vec<u8>)]) -> String {
    let dir = root.join("model");
    for (path, bytes) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    dir.to_str().unwrap().to_owned()
}

fn register(s: &Server, work: &Path, version: &str, files: &[(String, Vec<u8>)]) {
    let root = work.join(format!("v{version}"));
    let dir = model_dir(&root, files);
    std::fs::write(root.join("card.json"), json!({"owner": "fraud", "intended_use": "scoring"}).to_string()).unwrap();
    // The gateway bins the input tensor against this profile (the dashboard's PSI).
    let values: Vec<String> = (-20..=20).map(|i| (f64::from(i) / 10.0).to_string()).collect();
    let profile = fulcrum_core::drift::Profile::build(&[("input-0".into(), values)], 4).unwrap();
    std::fs::write(root.join("profile.json"), profile.to_bytes()).unwrap();
    ok(&run_as(
        s,
        "ci",
        &[
            "version",
            "register",
            "fraud",
            version,
            "--dir",
            &dir,
            "--model-card",
            root.join("card.json").to_str().unwrap(),
            "--profile",
            root.join("profile.json").to_str().unwrap(),
            "--revalidate-by",
            "2099-01-01T00:00:00Z",
            "--dataset",
            "s3://datasets/fraud/2026-11=sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
        ],
    ));
}

/// Sign in through the IdP's page as `account`; forgets the previous person's cookies first.
async fn sign_in(b: &Browser, s: &Server, account: &str) {
    b.goto(&format!("{}/ui/login", s.url)).await;
    b.delete_cookies().await;
    b.goto(&format!("{}/ui/login", s.url)).await;
    b.click("#idp").await;
    b.wait_for_url_containing("/interaction/").await;
    b.type_into("#account", account).await;
    b.click("#signin").await;
    b.wait_for_url("/ui/").await;
    assert!(b.text("header").await.contains(account), "signed in as {account}");
}

fn shot(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots").join(format!("flow-{name}.png"))
}

/// The page is served, shows no server error, no broken image, nothing on the console, and axe
/// finds no serious violation.
async fn clean(b: &Browser, axe: &str, name: &str) {
    b.screenshot(&shot(name)).await;
    let src = b.source().await;
    assert!(!src.contains("Internal Server Error") && !src.contains("could not be rendered"), "{name}: {src}");
    let broken = b
        .execute("return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length", json!([]))
        .await;
    assert_eq!(broken, json!(0), "{name}: broken images");
    assert_eq!(b.console_errors().await, Vec::<String>::new(), "{name}: console errors");
    let v = b.accessibility_violations(axe).await;
    assert!(v.is_empty(), "{name}: {v:?}");
}

/// Submit the version page's check form, then the preview's confirmation when it is offered.
async fn preview(b: &Browser, form: &str, fields: &[(&str, &str)]) -> (bool, String) {
    for (css, value) in fields {
        b.type_into(css, value).await;
    }
    b.click(&format!("{form} button")).await;
    b.wait_for_url_containing("/preview/").await;
    let verdict = b.text("#verdict").await;
    let allowed = verdict.contains("would allow");
    let detail = if allowed { b.text("#effects").await } else { b.text("#reasons").await };
    (allowed, detail)
}

/// The sign-in's own checks, as an attacker would probe them: the start sets a short-lived,
/// `HttpOnly; Secure; SameSite=Lax` cookie holding the state and verifier (sealed) and sends the
/// browser to the IdP with an S256 challenge; a callback without that cookie, with another
/// state, or carrying the IdP's refusal signs nobody in.
async fn sign_in_is_bound_to_this_browser(s: &Server) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(format!("{}/ui/login/start", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    for part in ["response_type=code", "code_challenge_method=S256", "client_id=fulcrum-console", "state="] {
        assert!(to.contains(part), "{part} missing: {to}");
    }
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["fulcrum_ui_login=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/ui/login", "Max-Age=600"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    let state = to.split("state=").nth(1).unwrap().split('&').next().unwrap();
    assert!(!set.contains(state), "the state is sealed in the cookie, not readable");
    let pending = set.split(';').next().unwrap().to_owned();
    let callback = |query: String, cookie: Option<String>| {
        let mut rb = http.get(format!("{}/ui/login/callback?{query}", s.url));
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        async move {
            let r = rb.send().await.unwrap();
            let signed_in =
                r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("fulcrum_ui="));
            (r.status().as_u16(), signed_in, r.text().await.unwrap())
        }
    };
    let (st, signed_in, body) = callback(format!("code=abc&state={state}"), None).await;
    assert!(st == 401 && !signed_in && body.contains("not started here"), "{st} {body}");
    let (st, signed_in, body) = callback("code=abc&state=forged".into(), Some(pending.clone())).await;
    assert!(st == 401 && !signed_in && body.contains("does not belong to this sign-in"), "{st} {body}");
    let (st, signed_in, body) = callback(format!("error=access_denied&state={state}"), Some(pending.clone())).await;
    assert!(st == 401 && !signed_in && body.contains("access_denied"), "{st} {body}");
    // A made-up code with the right state: the IdP refuses the exchange.
    let (st, signed_in, body) = callback(format!("code=made-up&state={state}"), Some(pending)).await;
    assert!(st == 401 && !signed_in && body.contains("invalid_grant"), "{st} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seeds_two_flows_in_a_browser_as_each_role() {
    let Some(bin) = mlserver::bin() else { return };
    let Some(driver) = browser::chromedriver() else { return };
    let Some(axe) = browser::axe() else { return };
    let axe = std::fs::read_to_string(axe).unwrap();
    let Some((_idp, s)) = start() else { return };
    let python = bin.with_file_name("python");
    let work = tempfile::tempdir().unwrap();
    let v1 = mlserver::train(&python, &work.path().join("train/1"), "1", false);
    let v2 = mlserver::train(&python, &work.path().join("train/2"), "2", true);
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "fraud"]));
    register(&s, work.path(), "1", &v1);
    sign_in_is_bound_to_this_browser(&s).await;
    let b = Browser::start(&driver).await;
    let page = |v: &str| format!("{}/ui/models/fraud/versions/{v}", s.url);

    // ---- Flow 1: promotion, as the people who do it.
    sign_in(&b, &s, "rosa").await;
    clean(&b, &axe, "models").await;
    b.goto(&page("1")).await;
    assert_eq!(b.text("#stage").await, "Candidate");
    assert!(b.text("#gate").await.contains("Release policy"), "what the gate verified is shown");
    assert!(b.text("#datasets").await.contains("s3://datasets/fraud/2026-11"));
    assert!(b.text("#profile").await.contains("input-0"));
    assert!(b.text("#revalidate-by").await.starts_with("2099-01-01"));
    clean(&b, &axe, "version-candidate").await;
    let (allowed, effects) = preview(&b, "#promote", &[]).await;
    assert!(allowed && effects.contains("Candidate → Staging"), "{effects}");
    clean(&b, &axe, "preview-allowed").await;
    b.click("#confirm button").await;
    b.wait_for_text("#stage", "Staging").await;
    // Without approvals the gate's refusal is shown before anything is sent for real.
    let (allowed, reasons) = preview(&b, "#promote", &[("#chg-promote", "CHG-1")]).await;
    assert!(!allowed && reasons.contains("Two approvals by different people"), "{reasons}");
    clean(&b, &axe, "preview-refused").await;
    let still = {
        b.goto(&page("1")).await;
        b.text("#still-approve").await
    };
    assert!(still.contains("2 more approval(s)") && still.contains("not ci (the publisher)"), "{still}");

    for who in ["ana", "bo"] {
        sign_in(&b, &s, who).await;
        b.goto(&page("1")).await;
        b.click("form[action$='/approve'] button").await;
        b.wait_for_text_containing("#approvals", who).await;
    }
    assert_eq!(b.text("#still-approve").await, "Four-eyes is met.");
    // A second approval by the same person: refused, with the lifecycle's reason, and logged.
    b.click("form[action$='/approve'] button").await;
    b.wait_for_text_containing("main", "already_approved_by_subject").await;
    assert_eq!(b.text("h1").await, "Conflict");
    // The refusal's status is the browser's only complaint.
    assert!(b.console_errors().await.iter().all(|e| e.contains("409 (Conflict)")));

    sign_in(&b, &s, "rosa").await;
    b.goto(&page("1")).await;
    let (allowed, reasons) = preview(&b, "#promote", &[]).await;
    assert!(!allowed && reasons.contains("change id"), "a change id is required for Approved: {reasons}");
    b.goto(&page("1")).await;
    let (allowed, _) = preview(&b, "#promote", &[("#chg-promote", "CHG-1")]).await;
    assert!(allowed);
    b.click("#confirm button").await;
    b.wait_for_text("#stage", "Approved").await;
    // Moving production: refused without a change id, then confirmed with one.
    let (allowed, reasons) = preview(&b, "#move-alias", &[("#alias-name", "production")]).await;
    assert!(!allowed && reasons.contains("chg_id_required"), "{reasons}");
    b.goto(&page("1")).await;
    let (allowed, effects) =
        preview(&b, "#move-alias", &[("#alias-name", "production"), ("#chg-alias", "CHG-2")]).await;
    assert!(allowed && effects.contains("production (prod)"), "{effects}");
    b.click("#confirm button").await;
    b.wait_for_url("/versions/1").await;
    let history = b.text("#events").await;
    assert!(history.contains("alias production moved (none) → 1") && history.contains("CHG-2"), "{history}");
    let decisions = b.text("#decisions").await;
    for logged in ["fulcrum/promotion/decision", "fulcrum/env/decision", "allowed", "denied"] {
        assert!(decisions.contains(logged), "{logged}: {decisions}");
    }
    assert!(decisions.contains("This person has already approved this version."), "in plain words: {decisions}");
    clean(&b, &axe, "version-approved").await;
    assert_eq!(
        as_(&s, "viewer").get("/v1/models/fraud/aliases/production").await.unwrap()["version"],
        "1",
        "the console's moves are the API's"
    );

    // Traffic through a guarded replica fills the dashboard.
    let r = replica(&s, &bin, work.path(), "replica-a").await;
    let http = reqwest::Client::new();
    served_by(&http, &r.gateway, "1").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (http, stop, gw) = (http.clone(), stop.clone(), r.gateway.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                mlserver::infer(&http, &gw).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let start = Instant::now();
    loop {
        b.goto(&format!("{}/dashboard?range=15m", page("1"))).await;
        let rows = b.find_all("#traffic tbody tr").await;
        // The gateway reports its traffic and its binned inputs as separate events: wait for both.
        let psi_rows = b.find_all("#psi tbody tr").await;
        if !rows.is_empty()
            && b.text("#traffic tbody td.requests").await.parse::<u64>().unwrap_or(0) > 0
            && !psi_rows.is_empty()
            && !b.text("#psi tbody").await.contains('—')
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the dashboard never showed traffic and PSI");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(b.text("#traffic").await.contains("production"));
    b.wait_for_attribute("[data-dashboard]", "data-loaded", "true").await;
    assert!(!b.find_all("[data-chart='latency'][data-drawn='true'] canvas").await.is_empty(), "uPlot drew");
    let psi = b.text("#psi").await;
    assert!(psi.contains("input-0") && !psi.contains("—"), "PSI from gateway inputs: {psi}");
    clean(&b, &axe, "dashboard").await;

    // ---- Flow 2: revocation with an incident id; the open page flips, the timeline completes.
    register(&s, work.path(), "2", &v2);
    let v = "/v1/models/fraud/versions/2";
    as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
    as_(&s, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(&s, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
    as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-3"})).await.unwrap();
    as_(&s, "rm")
        .put("/v1/models/fraud/aliases/production", &json!({"version": "2", "chg_id": "CHG-4"}))
        .await
        .unwrap();
    served_by(&http, &r.gateway, "2").await;

    sign_in(&b, &s, "vera").await;
    b.goto(&page("2")).await;
    assert!(b.find_all(".actions form").await.is_empty(), "a viewer is offered no action");
    // A forged revocation from the viewer's own page (its session, its CSRF token): 403.
    let forged = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const csrf = document.querySelector('input[name=csrf]').value;
             fetch(location.pathname + '/revoke', {method: 'POST', body: new URLSearchParams({csrf, reason: 'forged', inc_id: 'INC-X'})})
               .then(r => r.text().then(t => done([r.status, t])));",
            json!([]),
        )
        .await;
    assert_eq!(forged[0], 403, "{forged}");
    assert!(forged[1].as_str().unwrap().contains("role_forbids:revoke"), "{forged}");
    // The refused fetch is the browser's only complaint.
    assert!(b.console_errors().await.iter().all(|e| e.contains("403 (Forbidden)")));
    clean(&b, &axe, "version-viewer").await;

    sign_in(&b, &s, "bo").await;
    b.goto(&page("2")).await;
    b.type_into("#reason-revoke", "critical CVE in tokenizer").await;
    b.type_into("#inc-revoke", "INC-4711").await;
    b.click("form[action$='/revoke'] button").await;
    b.wait_for_text("#hold", "revoked: critical CVE in tokenizer").await;
    served_by(&http, &r.gateway, "1").await;
    let start = Instant::now();
    loop {
        b.goto(&format!("{}/ui/incidents/INC-4711", s.url)).await;
        if b.text("#complete").await == "true" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the timeline never completed: {}",
            b.text("#timeline").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let steps = b.text("#timeline").await;
    for step in ["revocation", "quiesce", "reload", "validated"] {
        assert!(steps.contains(step), "{step} missing: {steps}");
    }
    clean(&b, &axe, "incident").await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    // ---- An auditor: the policy in force, the ledger verified in this browser, a proof.
    sign_in(&b, &s, "aud").await;
    b.goto(&format!("{}/ui/policy", s.url)).await;
    assert!(b.text("#policy-digest").await.starts_with("sha256:"));
    clean(&b, &axe, "policy").await;
    b.goto(&format!("{}/ui/audit", s.url)).await;
    assert!(b.text("#signature").await.contains("valid under"));
    b.wait_for_attribute("#browser-verdict", "data-verified", "true").await;
    clean(&b, &axe, "audit").await;
    b.goto(&page("2")).await;
    b.click("#events a[href^='/ui/audit/proof/']").await;
    b.wait_for_url_containing("/ui/audit/proof/").await;
    assert!(b.text("#inclusion").await.contains("proven"), "{}", b.text("#inclusion").await);
    assert!(b.text("#record").await.contains("release_published"));
    clean(&b, &axe, "proof").await;
    let proof_url = b.url().await;

    // ---- Another tenant's admin sees none of it, on any page.
    sign_in(&b, &s, "eve").await;
    assert!(!b.source().await.contains("/ui/models/fraud"), "not in the model list");
    for path in [
        "/ui/models/fraud".to_owned(),
        "/ui/models/fraud/versions/1".to_owned(),
        "/ui/models/fraud/versions/1/dashboard".to_owned(),
        "/ui/incidents/INC-4711".to_owned(),
        proof_url.trim_start_matches(&s.url).to_owned(),
    ] {
        b.goto(&format!("{}{path}", s.url)).await;
        assert_eq!(b.text("h1").await, "Not Found", "{path}");
        assert!(!b.source().await.contains("critical CVE"), "{path}");
    }
    b.goto(&format!("{}/ui/incidents", s.url)).await;
    assert!(!b.source().await.contains("INC-4711"));
}
