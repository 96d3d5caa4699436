//! The web console over HTTP (its browser tests drive Chromium separately): sign-in by token
//! paste, the session cookie's flags, security headers on every page, pages scoped like the API,
//! actions only with the session's CSRF token from this origin, and the policy's refusals shown.

mod common;

use common::{Harness, token, with_production};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn assert_headers(h: &HeaderMap) {
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
}

/// Sign in as `who`; the session cookie (`name=value`).
async fn sign_in(h: &Harness, who: &str) -> String {
    let r = browser().post(format!("{}/ui/login", h.url)).form(&[("token", token(who))]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/ui", "Max-Age=900"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains(&token(who)), "the token is sealed, not stored in the clear");
    set.split(';').next().unwrap().to_owned()
}

async fn page(h: &Harness, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = browser().get(format!("{}{path}", h.url)).header("cookie", cookie).send().await.unwrap();
    assert_headers(r.headers());
    let status = r.status();
    (status, r.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..at + 32].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_pages_and_governed_actions() {
    let h = Harness::start().await;
    with_production(&h, "fraud").await;
    let b = browser();

    // Not signed in: to the sign-in page, which carries the headers too.
    let r = b.get(format!("{}/ui/", h.url)).send().await.unwrap();
    assert!(r.headers().contains_key(LOCATION), "{:?} {:?}", r.status(), r.headers());
    assert_eq!((r.status(), r.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/ui/login"));
    let r = b.get(format!("{}/ui/login", h.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_headers(r.headers());
    assert!(r.text().await.unwrap().contains("<label for=\"token\">"));
    let r = b.post(format!("{}/ui/login", h.url)).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // A forged or edited cookie is no session.
    let r = b.get(format!("{}/ui/", h.url)).header("cookie", "fulcrum_ui=AAAA").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // A viewer reads every page and is offered no action.
    let viewer = sign_in(&h, "viewer").await;
    let (s, list) = page(&h, &viewer, "/ui/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.contains("href=\"/ui/models/fraud\"") && list.contains("viewer · viewer · acme"), "{list}");
    let (s, model) = page(&h, &viewer, "/ui/models/fraud").await;
    assert_eq!(s, StatusCode::OK);
    assert!(model.contains("production") && model.contains("/ui/models/fraud/versions/v1"), "{model}");
    let (s, v) = page(&h, &viewer, "/ui/models/fraud/versions/v1").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.contains("<dd id=\"stage\">Approved</dd>"), "{v}");
    assert!(!v.contains("/versions/v1/revoke") && !v.contains("/versions/v1/approve"), "no action for a viewer");
    // A forged action (the viewer's own CSRF token, this origin): the policy refuses it.
    let csrf = csrf_of(&v);
    let r = b
        .post(format!("{}/ui/models/fraud/versions/v1/revoke", h.url))
        .header("cookie", &viewer)
        .form(&[("csrf", csrf.as_str()), ("reason", "forged"), ("inc_id", "INC-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("role_forbids:revoke"));
    // Another tenant's model: not found, like the API says.
    let other = sign_in(&h, "other-admin").await;
    assert_eq!(page(&h, &other, "/ui/models/fraud").await.0, StatusCode::NOT_FOUND);
    assert!(!page(&h, &other, "/ui/").await.1.contains("/ui/models/fraud\""));
    assert_eq!(
        page(&h, &other, "/ui/models/fraud/versions/v1/live").await.0,
        StatusCode::NOT_FOUND,
        "no stream of theirs"
    );

    // A security officer revokes from the version page, with the session's CSRF token.
    let bo = sign_in(&h, "bo").await;
    let (_, v) = page(&h, &bo, "/ui/models/fraud/versions/v1").await;
    assert!(v.contains("action=\"/ui/models/fraud/versions/v1/revoke\""), "{v}");
    let csrf = csrf_of(&v);
    let send = |cookie: &str, csrf: &str, origin: Option<&str>| {
        let mut rb = b.post(format!("{}/ui/models/fraud/versions/v1/revoke", h.url)).header("cookie", cookie).form(&[
            ("csrf", csrf),
            ("reason", "critical CVE"),
            ("inc_id", "INC-9"),
        ]);
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        rb.send()
    };
    // Without the token, with another session's, or from another origin: refused, nothing done.
    assert_eq!(send(&bo, "", None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(&bo, &csrf_of(&page(&h, &viewer, "/ui/").await.1), None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(send(&bo, &csrf, Some("https://evil.example")).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(h.get("viewer", "/v1/models/fraud/versions/v1", StatusCode::OK).await["hold"], "none");
    let r = send(&bo, &csrf, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    let (_, v) = page(&h, &bo, "/ui/models/fraud/versions/v1").await;
    assert!(v.contains("<dd id=\"hold\" class=\"revoked\">revoked: critical CVE</dd>"), "{v}");
    assert_eq!(
        h.get("viewer", "/v1/incidents/INC-9", StatusCode::OK).await["source"],
        "revocation",
        "the same governed call"
    );

    // Signing out ends the cookie.
    let csrf = csrf_of(&page(&h, &bo, "/ui/").await.1);
    let r = b
        .post(format!("{}/ui/logout", h.url))
        .header("cookie", &bo)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    // The incidents pages, scoped like the API.
    let (s, list) = page(&h, &viewer, "/ui/incidents").await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.contains("/ui/incidents/INC-9"), "{list}");
    let (s, inc) = page(&h, &viewer, "/ui/incidents/INC-9").await;
    assert_eq!(s, StatusCode::OK);
    assert!(inc.contains("revocation") && inc.contains("<dd id=\"state\">open</dd>"), "{inc}");
    assert_eq!(page(&h, &other, "/ui/incidents/INC-9").await.0, StatusCode::NOT_FOUND);
    // No page shows a server error, and unknown console paths are pages too.
    assert_eq!(page(&h, &viewer, "/ui/nowhere").await.0, StatusCode::NOT_FOUND);
}

/// The models list's filters; every page of a model, version, dashboard, preview and ledger
/// entry answers "not found" to another tenant; a preview is decided like the action and
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_previews_and_every_page_scoped_to_the_tenant() {
    let h = Harness::start().await;
    with_production(&h, "fraud").await;
    h.post(
        "ci",
        "/v1/models",
        json!({"name": "churn", "domain": "risk", "description": "x", "labels": {"pii": "none"}}),
        StatusCode::CREATED,
    )
    .await;
    h.register("ci", "churn", "c1", &[("w.bin", b"c")]).await;
    let viewer = sign_in(&h, "viewer").await;
    let listed = |html: &str, m: &str| html.contains(&format!("href=\"/ui/models/{m}\""));
    for (query, fraud, churn) in [
        ("", true, true),
        ("?stage=Approved", true, false),
        ("?stage=Candidate", false, true),
        ("?label=pii=none", false, true),
        ("?label=pii", false, true),
        ("?label=pii=high", false, false),
        ("?q=chu", false, true),
    ] {
        let (s, html) = page(&h, &viewer, &format!("/ui/{query}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!((listed(&html, "fraud"), listed(&html, "churn")), (fraud, churn), "{query}");
    }
    assert_eq!(page(&h, &viewer, "/ui/?stage=Shipped").await.0, StatusCode::BAD_REQUEST);
    let (_, model) = page(&h, &viewer, "/ui/models/fraud").await;
    assert!(model.contains("id=\"alias-production\"") && model.contains("CHG-9"), "alias moves: {model}");

    // A preview: refused in plain words without a change id, allowed with one; nothing moves.
    let rm = sign_in(&h, "rm").await;
    let (_, v) = page(&h, &rm, "/ui/models/churn/versions/c1").await;
    let csrf = csrf_of(&v);
    let preview = |form: Vec<(&'static str, String)>| {
        let (b, url, rm) = (browser(), h.url.clone(), rm.clone());
        async move {
            let r = b
                .post(format!("{url}/ui/models/fraud/versions/v1/preview/alias"))
                .header("cookie", rm)
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (s, html) = preview(vec![("csrf", csrf.clone()), ("alias", "canary".into())]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("This would be refused") && html.contains("A change id (chg_id) is required"), "{html}");
    let (s, html) =
        preview(vec![("csrf", csrf.clone()), ("alias", "canary".into()), ("chg_id", "CHG-10".into())]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("would allow") && html.contains("id=\"confirm\""), "{html}");
    let (s, _) = preview(vec![("csrf", "forged".into()), ("alias", "canary".into())]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a preview needs the session's CSRF token too");
    assert_eq!(
        h.get("viewer", "/v1/models/fraud/aliases/canary", StatusCode::NOT_FOUND).await["code"],
        "not_found",
        "a preview moves nothing"
    );
    let d = h.get("auditor", "/v1/decisions?model=fraud&path=fulcrum/env/decision", StatusCode::OK).await;
    assert_eq!(d["decisions"].as_array().unwrap().len(), 1, "and logs nothing: {d}");

    // Another tenant: every page of acme's model is "not found".
    let other = sign_in(&h, "other-admin").await;
    let (_, audit) = page(&h, &viewer, "/ui/audit").await;
    assert!(audit.contains("valid under the registry"), "{audit}");
    let (_, version) = page(&h, &viewer, "/ui/models/fraud/versions/v1").await;
    let at = version.find("/ui/audit/proof/").expect("an event with its ledger entry") + 16;
    let entry: String = version[at..].chars().take_while(char::is_ascii_digit).collect();
    let (s, proof) = page(&h, &viewer, &format!("/ui/audit/proof/{entry}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(proof.contains("proven: this entry is in the signed tree"), "{proof}");
    for path in [
        "/ui/models/fraud".to_owned(),
        "/ui/models/fraud/versions/v1".to_owned(),
        "/ui/models/fraud/versions/v1/dashboard".to_owned(),
        "/ui/models/fraud/versions/v1/dashboard.json".to_owned(),
        format!("/ui/audit/proof/{entry}"),
    ] {
        let (s, body) = page(&h, &other, &path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(!body.contains("CHG-9") && !body.contains("weights.bin"), "{path}: {body}");
    }
    let (_, v) = page(&h, &other, "/ui/").await;
    let r = browser()
        .post(format!("{}/ui/models/fraud/versions/v1/preview/promote", h.url))
        .header("cookie", &other)
        .form(&[("csrf", csrf_of(&v).as_str()), ("to", "Approved")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nor a preview of it");
    // The dashboard's figures, for who may read the model.
    let r = browser()
        .get(format!("{}/ui/models/fraud/versions/v1/dashboard.json?range=1h", h.url))
        .header("cookie", &viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["times"].as_array().unwrap().len(), 60);
    assert_eq!(page(&h, &viewer, "/ui/models/fraud/versions/v1/dashboard?range=2y").await.0, StatusCode::BAD_REQUEST);
}

/// The same in a real headless Chromium: sign in by token paste, read the pages (no console
/// error, no server error), a viewer is offered no action, a security officer revokes with an
/// incident id and the version page shows it. Screenshots go to the build's temp dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser() {
    let Some(driver) = fulcrum_testkit::browser::chromedriver() else { return };
    let h = Harness::start().await;
    with_production(&h, "fraud").await;
    let Some(axe) = fulcrum_testkit::browser::axe() else { return };
    let axe = std::fs::read_to_string(axe).unwrap();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let b = fulcrum_testkit::browser::Browser::start(&driver).await;
    // Accessibility (axe-core, WCAG 2.1 A/AA): no serious or critical violation on a main page.
    let accessible = |page: &'static str| {
        let (b, axe) = (&b, axe.clone());
        async move {
            let v = b.accessibility_violations(&axe).await;
            assert!(v.is_empty(), "{page}: {v:?}");
        }
    };
    let sign_in = |who: &'static str| {
        let (b, url) = (&b, h.url.clone());
        async move {
            b.goto(&format!("{url}/ui/login")).await;
            b.type_into("#token", &token(who)).await;
            b.click("form[action='/ui/login'] button").await;
            b.wait_for_url("/ui/").await;
        }
    };
    b.goto(&format!("{}/ui/login", h.url)).await;
    accessible("sign-in").await;
    sign_in("viewer").await;
    assert_eq!(b.text("h1").await, "Models");
    b.screenshot(&shots.join("models.png")).await;
    accessible("models").await;
    b.click("a[href='/ui/models/fraud']").await;
    b.wait_for_url("/ui/models/fraud").await;
    assert_eq!(b.text("h1").await, "fraud");
    b.screenshot(&shots.join("model.png")).await;
    accessible("model").await;
    b.click("a[href='/ui/models/fraud/versions/v1']").await;
    b.wait_for_url("/versions/v1").await;
    assert_eq!(b.text("#stage").await, "Approved");
    assert!(b.find_all(".actions form").await.is_empty(), "a viewer is offered no action");
    b.screenshot(&shots.join("version-viewer.png")).await;
    accessible("version").await;
    // Every image loaded (none broken), and the page wrote no error to the console.
    let broken = b
        .execute("return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length", json!([]))
        .await;
    assert_eq!(broken, json!(0));
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    // Live: a quarantine made elsewhere shows on the open page without a reload by hand.
    h.post(
        "bo",
        "/v1/models/fraud/versions/v1/quarantine",
        json!({"reason": "suspicious drift", "inc_id": "INC-76"}),
        StatusCode::OK,
    )
    .await;
    b.wait_for_text("#hold", "quarantined: suspicious drift").await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());

    b.click("header form button").await; // sign out
    b.wait_for_url("/ui/login").await;
    sign_in("bo").await;
    b.goto(&format!("{}/ui/models/fraud/versions/v1", h.url)).await;
    assert!(b.text("header").await.contains("bo · security-officer"));
    b.type_into("#reason-revoke", "critical CVE").await;
    b.type_into("#inc-revoke", "INC-77").await;
    b.click("form[action$='/revoke'] button").await;
    b.wait_for_text("#hold", "revoked: critical CVE").await;
    b.screenshot(&shots.join("version-revoked.png")).await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    assert_eq!(h.get("viewer", "/v1/incidents/INC-77", StatusCode::OK).await["versions"][0]["version"], "v1");
    // The incident it opened, listed and with its timeline.
    b.click("nav a[href='/ui/incidents']").await;
    b.wait_for_url("/ui/incidents").await;
    b.click("a[href='/ui/incidents/INC-77']").await;
    b.wait_for_url("/ui/incidents/INC-77").await;
    assert_eq!(b.text("#state").await, "open");
    let steps = b.text("#timeline").await;
    assert!(steps.contains("revocation") && steps.contains("incident_opened"), "{steps}");
    b.screenshot(&shots.join("incident.png")).await;
    accessible("incident").await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    assert!(!b.source().await.contains(&token("bo")), "the token never reaches the page");
    // The accessibility check can fail: an image without a text alternative is reported.
    b.execute(
        "const i = document.createElement('img'); i.src = '/ui/static/favicon.svg'; document.body.append(i);",
        json!([]),
    )
    .await;
    let v = b.accessibility_violations(&axe).await;
    assert!(v.iter().any(|x| x.starts_with("image-alt")), "{v:?}");
}
