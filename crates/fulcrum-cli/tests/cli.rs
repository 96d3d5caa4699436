//! The command line against a real `fulcrum serve`: JSON output, one-line errors with a
//! non-zero exit, directory upload + registration, signed resolve, and the demo.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::{fulcrum, one_error_line, serve, serve_with};
use serde_json::{Value, json};

#[test]
fn full_flow_through_the_cli() {
    let s = serve();
    let as_ = |who: &'static str| vec![("FULCRUM_URL", s.url.clone()), ("FULCRUM_TOKEN", format!("t-{who}"))];
    let run = |who: &'static str, args: &[&str]| {
        let env = as_(who);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fulcrum(args, &env)
    };
    let ok = |o: Output| -> Value {
        assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    };

    let model_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(model_dir.path().join("sub")).unwrap();
    std::fs::write(model_dir.path().join("weights.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(model_dir.path().join("sub/config.json"), "{}").unwrap();
    let dir = model_dir.path().to_str().unwrap();
    let card_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(card_file.path(), r#"{"owner": "risk-analytics", "intended_use": "credit scoring"}"#).unwrap();
    let card = card_file.path().to_str().unwrap();

    ok(run("ci", &["model", "create", "risk", "--domain", "risk", "--label", "team=credit", "--output", "json"]));
    let v = ok(run(
        "ci",
        &[
            "version",
            "register",
            "risk",
            "v1",
            "--dir",
            dir,
            "--chg-id",
            "CHG-1",
            "--model-card",
            card,
            "--revalidate-by",
            "2099-01-01T00:00:00Z",
            "--dataset",
            &format!("s3://lake/loans/2026-10-01={}", fulcrum_core::Digest::of(b"loans")),
            "--output",
            "json",
        ],
    ));
    assert_eq!(v["stage"], "Candidate");
    // The data catalog: which versions used that snapshot (and a malformed one: one line).
    let used =
        ok(run("rm", &["dataset", "used-by", &fulcrum_core::Digest::of(b"loans").to_string(), "--output", "json"]));
    let items = used["items"].as_array().unwrap();
    assert_eq!((items.len(), items[0]["version"].as_str()), (1, Some("v1")), "{used}");
    assert_eq!(items[0]["uris"][0], "s3://lake/loans/2026-10-01");
    one_error_line(&run("rm", &["dataset", "used-by", "loans.parquet"]));
    let paths: Vec<&str> = v["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["sub/config.json", "weights.bin"]);
    // Registering again is refused with one line naming the conflict.
    let err = one_error_line(&run("ci", &["version", "register", "risk", "v1", "--dir", dir]));
    assert!(err.contains("already exists"), "{err}");

    ok(run("rm", &["version", "promote", "risk", "v1", "--to", "Staging"]));
    let err = one_error_line(&run("rm", &["version", "promote", "risk", "v1", "--to", "Approved"]));
    assert!(err.contains("four_eyes"), "{err}");
    ok(run("ana", &["version", "approve", "risk", "v1", "--comment", "ok"]));
    ok(run("bo", &["version", "approve", "risk", "v1"]));
    let v = ok(run(
        "rm",
        &["version", "promote", "risk", "v1", "--to", "Approved", "--chg-id", "CHG-2", "--output", "json"],
    ));
    assert_eq!(v["stage"], "Approved");
    ok(run("rm", &["alias", "set", "risk", "production", "v1", "--chg-id", "CHG-3"]));
    let r = ok(run("agent", &["resolve", "risk@production", "--env", "prod", "--output", "json"]));
    assert_eq!((r["verified"].as_bool(), r["document"]["version"].as_str()), (Some(true), Some("v1")));
    let text = run("agent", &["resolve", "risk@production", "--env", "prod"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("(verified)"));

    ok(run("bo", &["version", "revoke", "risk", "v1", "--reason", "bad", "--inc-id", "INC-1"]));
    let err = one_error_line(&run("agent", &["resolve", "risk@production", "--env", "prod"]));
    assert!(err.contains("alias_empty"), "{err}");
    let err = one_error_line(&run("agent", &["resolve", "risk@v1", "--env", "prod"]));
    assert!(err.contains("denied") && err.contains("revoked"), "{err}");
    let h = ok(run("rm", &["alias", "history", "risk", "production", "--output", "json"]));
    assert_eq!(h.as_array().unwrap().len(), 2);
    let evs = ok(run("rm", &["events", "list", "--output", "json"]));
    let kinds: Vec<&str> =
        evs["events"].as_array().unwrap().iter().map(|e| e["data"]["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "release_published",
            "promotion",
            "approval",
            "approval",
            "promotion",
            "alias_updated",
            "revocation",
            "alias_updated",
            // The revocation named INC-1, which had no record yet: it opened one.
            "incident_opened"
        ]
    );
    // Decisions of the promotion gate, and the policy in force.
    let d = ok(run("rm", &["decisions", "--model", "risk", "--output", "json"]));
    let ds = d["decisions"].as_array().unwrap();
    let paths: Vec<&str> = ds.iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "fulcrum/release/decision",
            "fulcrum/promotion/decision",
            // The promotion to Approved refused by four-eyes before the approvals came.
            "fulcrum/lifecycle/decision",
            "fulcrum/promotion/decision",
            "fulcrum/env/decision"
        ],
        "registration, Staging, Approved, alias"
    );
    let id = ds[3]["decision_id"].as_str().unwrap();
    let text = run("rm", &["explain", id]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("ALLOW"), "{}", String::from_utf8_lossy(&text.stdout));
    assert_eq!(
        ds[2]["result"]["deny"],
        serde_json::json!(["four_eyes"]),
        "the refusal is on the record with its reason"
    );
    // Access decisions: every call above was one, taken by the policy and logged.
    let a = ok(run("rm", &["decisions", "--path", "fulcrum/authz/decision", "--output", "json"]));
    let access = a["decisions"].as_array().unwrap();
    assert!(access.iter().any(|d| d["input"]["action"] == "promote" && d["result"]["allow"] == true), "{a}");
    let refused = run("agent", &["alias", "set", "risk", "production", "v1"]);
    assert!(!refused.status.success());
    let a = ok(run("rm", &["decisions", "--path", "fulcrum/authz/decision", "--output", "json"]));
    let denial = a["decisions"].as_array().unwrap().iter().rev().find(|d| d["result"]["allow"] == false).cloned();
    let denial = denial.expect("the refused call is a logged denial");
    let text = run("rm", &["explain", denial["decision_id"].as_str().unwrap()]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("DENY") && out.contains("the caller's role may not set_alias"), "{out}");
    one_error_line(&run("rm", &["decisions", "--path", "../x"]));
    let shown = ok(run("rm", &["policy", "show", "--output", "json"]));
    assert!(shown["policy_digest"].as_str().unwrap().starts_with("sha256:"));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../fulcrum-policy/policies");
    let tested = ok(run("rm", &["policy", "test", shipped, "--output", "json"]));
    assert_eq!(tested["policy_digest"], shown["policy_digest"], "the shipped policy is the one in force");
    let diff = run("rm", &["policy", "diff", shipped]);
    assert!(String::from_utf8_lossy(&diff.stdout).contains("no changes"), "{}", String::from_utf8_lossy(&diff.stdout));
    let err = one_error_line(&run("rm", &["policy", "apply", shipped]));
    assert!(err.contains("forbidden") || err.contains("may not"), "{err}");
    let tail = run("rm", &["events", "tail", "--after", "6", "--count", "2"]);
    let out = String::from_utf8_lossy(&tail.stdout);
    assert!(out.lines().count() == 2 && out.contains("revocation"), "{out}");

    // Bad input: one line, non-zero exit.
    one_error_line(&run("rm", &["resolve", "risk@latest", "--env", "prod"]));
    one_error_line(&run("rm", &["version", "get", "risk", "../../etc"]));
    one_error_line(&fulcrum(&["model", "list"], &[("FULCRUM_URL", &s.url)]));
    let err =
        one_error_line(&fulcrum(&["model", "list"], &[("FULCRUM_URL", "http://127.0.0.1:1"), ("FULCRUM_TOKEN", "x")]));
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn serve_refuses_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let o = fulcrum(&["serve", "--listen", "0.0.0.0:0", "--data-dir", dir.path().to_str().unwrap()], &[]);
    let err = one_error_line(&o);
    assert!(err.contains("without TLS"), "{err}");
    assert!(!dir.path().join("registry.db").exists(), "nothing is created before the config is valid");
}

#[test]
fn demo_runs_both_flows() {
    let o = fulcrum(&["demo", "--output", "json"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let evs = v["events"].as_array().unwrap();
    let find = |kind: &str| evs.iter().filter(|e| e["data"]["event"] == kind).count();
    assert_eq!((find("release_published"), find("promotion"), find("revocation")), (2, 4, 1));
    // The agent: permit v2.2.0, deploy v2.3.0, roll back to v2.2.0; a fresh replica refused v2.3.0.
    assert_eq!((find("startup_permit"), find("startup_deny")), (3, 1));
    let steps: Vec<(String, String)> = evs
        .iter()
        .filter(|e| e["data"]["event"] == "agent_step")
        .map(|e| {
            (e["data"]["reason"].as_str().unwrap().to_owned(), e["data"]["version"].as_str().unwrap_or("-").to_owned())
        })
        .collect();
    let at = |step: &str, v: &str| steps.iter().position(|(s, x)| s == step && x == v);
    let revoked = evs.iter().position(|e| e["data"]["event"] == "revocation").unwrap();
    let quiesce =
        evs.iter().position(|e| e["data"]["event"] == "agent_step" && e["data"]["reason"] == "quiesce").unwrap();
    assert!(quiesce > revoked, "the quiesce follows the revocation");
    assert!(at("quiesce", "v2.3.0") < at("purge", "v2.3.0"), "{steps:?}");
    assert!(at("purge", "v2.3.0").is_some() && at("permit", "v2.3.0") < at("quiesce", "v2.3.0"), "{steps:?}");
    assert_eq!(steps.iter().filter(|(s, v)| s == "permit" && v == "v2.2.0").count(), 2, "{steps:?}");
    let rollback =
        evs.iter().find(|e| e["data"]["event"] == "alias_updated" && e["data"]["inc_id"] == "INC-4711").unwrap();
    assert_eq!((rollback["data"]["from"].as_str(), rollback["data"]["to"].as_str()), (Some("v2.3.0"), Some("v2.2.0")));
}

#[test]
fn key_admin_rotates_and_retires_from_the_cli() {
    let s = serve();
    let data = s.dir.path().join("data");
    let env = [("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", "t-keys")];
    let o = fulcrum(&["keys", "rotate", "--backend", "local", "--data-dir", data.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("trust bundle v2"));
    let o = fulcrum(&["keys", "list", "--output", "json"], &env);
    let keys: Value = serde_json::from_slice(&o.stdout).unwrap();
    let old =
        keys.as_array().unwrap().iter().find(|k| k["status"] == "retired").unwrap()["kid"].as_str().unwrap().to_owned();
    let o = fulcrum(&["keys", "retire", &old, "--reason", "rotation drill"], &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Only key-admins administer keys.
    one_error_line(&fulcrum(
        &["keys", "rotate", "--backend", "local", "--data-dir", data.to_str().unwrap()],
        &[("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", "t-rm")],
    ));
    // The KMS backends need their settings.
    let err = one_error_line(&fulcrum(&["keys", "create", "--backend", "vault"], &env));
    assert!(err.contains("--vault-addr"), "{err}");
}

/// The README's CI flow: a CI key, a signed model, provenance and an SBOM, registered against a
/// registry whose release policy requires them.
#[test]
fn release_gate_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let pem = String::from_utf8(fulcrum(&["keys", "generate", "--out", &p("ci.pk8")], &[]).stdout).unwrap();
    let policy = json!({"require": ["signature", "provenance", "sbom"], "signers": [{"public_key_pem": pem}],
        "builders": [{"id": "https://ci.example/runner", "build_types": ["https://ci.example/train@v1"], "signer_public_keys_pem": [pem]}]});
    std::fs::write(p("release-policy.json"), policy.to_string()).unwrap();
    let s = serve_with(&["--release-policy", &p("release-policy.json")], dir);
    let p = |n: &str| s.dir.path().join(n).to_str().unwrap().to_owned();
    let m = s.dir.path().join("my-model");
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::write(m.join(".git/HEAD"), "ref: main").unwrap();
    std::fs::write(m.join("weights.bin"), vec![9u8; 70_000]).unwrap();
    std::fs::write(p("sbom.cdx.json"), r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}"#).unwrap();
    let ok = |o: Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(fulcrum(&["sign", "model", m.to_str().unwrap(), "--key", &p("ci.pk8"), "--signature", &p("my-model.sig")], &[]));
    ok(fulcrum(
        &[
            "attest",
            "provenance",
            "--dir",
            m.to_str().unwrap(),
            "--builder-id",
            "https://ci.example/runner",
            "--build-type",
            "https://ci.example/train@v1",
            "--key",
            &p("ci.pk8"),
            "--out",
            &p("provenance.json"),
        ],
        &[],
    ));
    let env = [("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", "t-ci")];
    ok(fulcrum(&["model", "create", "risk", "--domain", "risk"], &env));
    let err = one_error_line(&fulcrum(&["version", "register", "risk", "v1", "--dir", m.to_str().unwrap()], &env));
    assert!(err.contains("artifact_signature") && err.contains("provenance") && err.contains("sbom"), "{err}");
    let o = fulcrum(
        &[
            "version",
            "register",
            "risk",
            "v1",
            "--dir",
            m.to_str().unwrap(),
            "--signature",
            &p("my-model.sig"),
            "--attestation",
            &p("provenance.json"),
            "--sbom",
            &p("sbom.cdx.json"),
            "--output",
            "json",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["release"]["release_gate"]["mode"], "enforced");
}

/// `fulcrum login` against a real IdP (client credentials), then commands that refresh the
/// short-lived token on their own; the secret stays in its file; a rotated-away secret fails
/// with one clear line.
#[test]
fn login_with_client_credentials_refreshes_before_expiry() {
    use fulcrum_oidc::test_idp::TestIdp;
    let client = json!([{"client_id": "ci", "client_secret": "ci-secret-0123456789", "tenant_id": "acme",
                         "domain": "*", "role": "publisher", "access_token_ttl": 30}]);
    let Some(idp) = TestIdp::start("ES256", "urn:fulcrum", client) else { return };
    let dir = tempfile::tempdir().unwrap();
    let oidc = dir.path().join("oidc.json");
    std::fs::write(&oidc, json!({"issuers": [{"issuer": idp.issuer, "audience": "urn:fulcrum"}]}).to_string()).unwrap();
    let s = serve_with(&["--oidc-config", oidc.to_str().unwrap()], dir);
    let secret = s.dir.path().join("client-secret");
    std::fs::write(&secret, "ci-secret-0123456789\n").unwrap();
    let creds = s.dir.path().join("creds/credentials.json");
    let env = [("FULCRUM_URL", s.url.as_str()), ("FULCRUM_CREDENTIALS", creds.to_str().unwrap())];
    let o = fulcrum(
        &[
            "login",
            "--issuer",
            &idp.issuer,
            "--client-id",
            "ci",
            "--client-secret-file",
            secret.to_str().unwrap(),
            "--output",
            "json",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let me: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((me["subject"].as_str(), me["role"].as_str()), (Some("ci"), Some("publisher")));
    assert_eq!(me["authenticated_by"], "oidc");
    let kept = std::fs::read_to_string(&creds).unwrap();
    assert!(!kept.contains("ci-secret"), "the secret is never kept: {kept}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    let token = |f: &std::path::Path| -> String {
        serde_json::from_str::<Value>(&std::fs::read_to_string(f).unwrap()).unwrap()["access_token"]
            .as_str()
            .unwrap()
            .into()
    };
    let first = token(&creds);
    // A 30 s token has less than a minute left: the next command gets a new one by itself.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = fulcrum(&["model", "create", "fraud", "--domain", "fraud", "--output", "json"], &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(token(&creds), first, "refreshed");
    // The secret rotated away: the refresh fails with the IdP's reason, on one line, no secret.
    std::fs::write(&secret, "an-old-secret").unwrap();
    let err = one_error_line(&fulcrum(&["whoami"], &env));
    assert!(err.contains("invalid_client") && err.contains("fulcrum login"), "{err}");
    assert!(!err.contains("secret-0123"), "{err}");
    // Logging out forgets the token.
    assert!(fulcrum(&["logout"], &env).status.success());
    assert!(!creds.exists());
    let err = one_error_line(&fulcrum(&["whoami"], &env));
    assert!(err.contains("no token"), "{err}");
}

/// People log in with the device flow: the CLI shows a code, the person approves it at the IdP,
/// the CLI gets a token with the person's claims and a refresh token, and later commands refresh
/// with it (no secret anywhere: a public client).
#[test]
fn people_log_in_with_the_device_flow_and_refresh() {
    use fulcrum_oidc::test_idp::TestIdp;
    let client = json!([{"client_id": "fulcrum-cli", "token_endpoint_auth_method": "none",
        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
        "response_types": [], "redirect_uris": [], "access_token_ttl": 30}]);
    let users = json!({"maria": {"tenant_id": "acme", "domain": "*", "role": "approver"}});
    let Some(idp) = TestIdp::start_with_users("ES256", "urn:fulcrum", client, &users) else { return };
    let dir = tempfile::tempdir().unwrap();
    let oidc = dir.path().join("oidc.json");
    std::fs::write(&oidc, json!({"issuers": [{"issuer": idp.issuer, "audience": "urn:fulcrum"}]}).to_string()).unwrap();
    let s = serve_with(&["--oidc-config", oidc.to_str().unwrap()], dir);
    let creds = s.dir.path().join("credentials.json");
    let env = [("FULCRUM_URL", s.url.as_str()), ("FULCRUM_CREDENTIALS", creds.to_str().unwrap())];
    let mut child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["login", "--device", "--issuer", &idp.issuer, "--client-id", "fulcrum-cli", "--output", "json"])
        .envs(env)
        .env("FULCRUM_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut line).unwrap();
    let code = line
        .split("approve the code ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(idp.approve_device(code, "maria"));
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "login failed: {rest}");
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((me["subject"].as_str(), me["role"].as_str()), (Some("maria"), Some("approver")));
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert!(kept["refresh_token"].is_string() && kept["client_secret_file"].is_null(), "{kept}");
    // The 30 s token is refreshed with the refresh token by the next command.
    let o = fulcrum(&["whoami", "--output", "json"], &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_ne!(again["access_token"], kept["access_token"], "refreshed");
    let me: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(me["subject"], "maria");
}

/// A reader that stops early (`fulcrum decisions … | head -3`): the CLI ends quietly with
/// success, as Unix tools do, instead of panicking on the closed pipe.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let s = serve();
    for _ in 0..3 {
        let o = fulcrum(&["model", "list"], &[("FULCRUM_URL", &s.url), ("FULCRUM_TOKEN", "t-rm")]);
        assert!(o.status.success());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["decisions", "--path", "fulcrum/authz/decision", "--output", "json"])
        .env("FULCRUM_URL", &s.url)
        .env("FULCRUM_TOKEN", "t-rm")
        .env("FULCRUM_CREDENTIALS", "/nonexistent/fulcrum-test-credentials.json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is written
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

/// `mkdir e; fulcrum policy apply e` is refused with one line naming what the snapshot lacks;
/// the host operator's break glass (`policy reset --data-dir`) needs no token and is carried out
/// at the next start.
#[test]
fn an_empty_policy_is_refused_and_the_break_glass_needs_the_data_dir() {
    let s = serve();
    let empty = tempfile::tempdir().unwrap();
    let o = fulcrum(
        &["policy", "apply", empty.path().to_str().unwrap()],
        &[("FULCRUM_URL", &s.url), ("FULCRUM_TOKEN", "t-policy")],
    );
    let err = one_error_line(&o);
    assert!(err.contains("conformance") && err.contains("fulcrum.authz"), "{err}");
    let err = one_error_line(&fulcrum(
        &["policy", "reset", "--data-dir", empty.path().to_str().unwrap(), "--reason", "x"],
        &[],
    ));
    assert!(err.contains("holds no registry"), "{err}");
    let data = s.dir.path().join("data");
    let o = fulcrum(&["policy", "reset", "--data-dir", data.to_str().unwrap(), "--reason", "locked out (INC-1)"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("next start"));
    assert!(data.join("policy-reset.json").exists());
}

/// CI registers a new version from a directory whose files a revoked version also holds: the
/// download gate refuses those bytes (410), so the upload sends them again instead of skipping
/// them, and the registration goes through; the revoked version's bytes stay closed.
#[test]
fn a_new_version_can_reuse_the_files_of_a_revoked_one() {
    let s = serve();
    let run = |who: &str, args: &[&str]| {
        let token = format!("t-{who}");
        fulcrum(args, &[("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", token.as_str())])
    };
    let ok = |o: Output| assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("weights.bin"), b"same weights").unwrap();
    let d = dir.path().to_str().unwrap();
    ok(run("ci", &["model", "create", "risk", "--domain", "risk"]));
    ok(run("ci", &["version", "register", "risk", "v1", "--dir", d]));
    ok(run("bo", &["version", "revoke", "risk", "v1", "--reason", "leak", "--inc-id", "INC-1"]));
    ok(run("ci", &["version", "register", "risk", "v2", "--dir", d]));
    let v = run("ci", &["version", "get", "risk", "v2", "--output", "json"]);
    assert!(String::from_utf8_lossy(&v.stdout).contains("\"stage\": \"Candidate\""));
}

/// `fulcrum blobs scrub` through the binary: bytes altered on the registry's disk are named and
/// the command fails; once the true bytes are back it passes.
#[test]
fn scrub_names_damaged_blobs_and_fails() {
    let s = serve();
    let run = |who: &str, args: &[&str]| {
        let token = format!("t-{who}");
        fulcrum(args, &[("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", token.as_str())])
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("weights.bin"), b"true weights").unwrap();
    assert!(run("ci", &["model", "create", "risk", "--domain", "risk"]).status.success());
    assert!(run("ci", &["version", "register", "risk", "v1", "--dir", dir.path().to_str().unwrap()]).status.success());
    let o = run("admin", &["blobs", "scrub", "--output", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = fulcrum_core::Digest::of(b"true weights");
    let stored = s.dir.path().join("data/blobs/sha256").join(&d.hex()[..2]).join(&d.hex()[2..]);
    std::fs::write(&stored, b"TRUE weights").unwrap();
    let o = run("admin", &["blobs", "scrub"]);
    let err = one_error_line(&o);
    assert!(err.contains("1 damaged"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("CORRUPT {d}")));
    one_error_line(&run("agent", &["blobs", "scrub"]));
    std::fs::write(&stored, b"true weights").unwrap();
    assert!(run("admin", &["blobs", "scrub"]).status.success());
}

/// `fulcrum policy apply` of a changed set, `policy rollback` to the shipped digest, and
/// `policy history` naming both, through the binary.
#[test]
fn policy_rollback_and_history_through_the_cli() {
    let s = serve();
    let run = |args: &[&str]| fulcrum(args, &[("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", "t-policy")]);
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../fulcrum-policy/policies");
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(shipped).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let data = dir.path().join("data.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&data).unwrap()).unwrap();
    let shipped_digest = {
        let o = run(&["policy", "show", "--output", "json"]);
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["policy_digest"].as_str().unwrap().to_owned()
    };
    v["fulcrum"]["release_required"] = json!({"*": ["sbom"]});
    std::fs::write(&data, v.to_string()).unwrap();
    let o = run(&["policy", "apply", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("installed policy"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["policy", "rollback", &shipped_digest, "--reason", "INC-2"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("rolled back to policy {shipped_digest}")));
    let h: Value = serde_json::from_slice(&run(&["policy", "history", "--output", "json"]).stdout).unwrap();
    let kinds: Vec<&str> = h["installs"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["rollback", "install", "install"], "{h}");
    one_error_line(&run(&["policy", "rollback", &shipped_digest]));
}
