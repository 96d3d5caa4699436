//! A real OpenID Provider for tests and benchmarks: `tests/idp/test-idp.mjs` (npm
//! `oidc-provider`) run by Node on a loopback port, with its own key file in a temp dir.
//!
//! `scripts/test.sh` installs the provider's modules (`FULCRUM_TEST_IDP_MODULES`, default
//! `~/.cache/fulcrum/idp-9.13.3/node_modules`). Under `CI=true` a missing provider fails the
//! test; locally it is skipped with a message.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The registration token the launcher is started with.
const REG_TOKEN: &str = "fulcrum-test-registration";

/// A running test IdP. Killed on drop.
#[derive(Debug)]
pub struct TestIdp {
    pub issuer: String,
    pub audience: String,
    pub alg: String,
    dir: tempfile::TempDir,
    port: u16,
    clients: Value,
    child: Child,
}

fn launcher() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp/test-idp.mjs")
}

/// Where the provider's node modules are, or `None` (after failing under `CI=true`).
///
/// # Panics
/// Under `CI=true` when they are missing.
pub fn modules() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_TEST_IDP_MODULES").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("HOME")?;
        Some(PathBuf::from(home).join(".cache/fulcrum/idp-9.13.3/node_modules"))
    })?;
    if p.join("oidc-provider").exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the test IdP (npm oidc-provider) is missing at {}: run scripts/test.sh",
        p.display()
    );
    eprintln!("SKIPPED LOCALLY: the test IdP is not installed at {} (scripts/test.sh installs it)", p.display());
    None
}

impl TestIdp {
    /// Start an IdP with the given clients (oidc-provider client metadata plus `tenant_id`,
    /// `domain`, `env`, `role`, `purpose`, `access_token_ttl`). `None` when it is not installed
    /// (locally).
    ///
    /// # Panics
    /// When Node or the launcher fails.
    pub fn start(alg: &str, audience: &str, clients: Value) -> Option<Self> {
        Self::start_with_users(alg, audience, clients, &json!({}))
    }

    /// As [`TestIdp::start`], with people (account id → claims) who log in with the device flow.
    ///
    /// # Panics
    /// When Node or the launcher fails.
    pub fn start_with_users(alg: &str, audience: &str, clients: Value, users: &Value) -> Option<Self> {
        let modules = modules()?;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(launcher(), dir.path().join("test-idp.mjs")).expect("copy the launcher");
        std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).expect("link node_modules");
        std::fs::write(dir.path().join("users.json"), users.to_string()).expect("write users");
        let (child, issuer) = spawn(dir.path(), 0, alg, audience, &clients);
        let port = issuer.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in the issuer");
        Some(Self { issuer, audience: audience.into(), alg: alg.into(), dir, port, clients, child })
    }

    /// Restart on the same port with a new signing key (a new `kid`): the IdP's key rotation.
    /// Clients given at start are registered again; dynamically registered ones are gone.
    ///
    /// # Panics
    /// When the IdP does not come back.
    pub fn rotate_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_file(self.dir.path().join("key.json")).expect("remove the old key");
        for _ in 0..100 {
            if std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // On a loaded machine Node may not come up in time: a start that does not announce
        // itself is stopped and tried again (the same port, freed by then).
        for attempt in 1..=3 {
            match try_spawn(self.dir.path(), self.port, &self.alg, &self.audience, &self.clients) {
                Ok((child, issuer)) => {
                    assert_eq!(issuer, self.issuer, "the IdP came back at another address");
                    self.child = child;
                    return;
                }
                Err(e) if attempt < 3 => eprintln!("test IdP restart {attempt} failed ({e}); trying again"),
                Err(e) => panic!("the test IdP did not come back: {e}"),
            }
        }
    }

    /// A client-credentials access token for a client.
    ///
    /// # Panics
    /// When the IdP does not issue one.
    pub async fn token(&self, client_id: &str, secret: &str) -> String {
        self.token_with(client_id, secret, &[]).await
    }

    /// As [`TestIdp::token`] with extra form fields (e.g. `resource` for another audience).
    ///
    /// # Panics
    /// When the IdP does not issue one.
    pub async fn token_with(&self, client_id: &str, secret: &str, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        // A stalled IdP fails the caller within a bound instead of holding it forever.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        let resp: Value = http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(secret))
            .form(&form)
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token answer");
        resp["access_token"].as_str().unwrap_or_else(|| panic!("no token for {client_id}: {resp}")).to_owned()
    }

    /// Register a client while the IdP runs; returns (client_id, client_secret).
    ///
    /// # Panics
    /// When the IdP refuses the metadata.
    pub async fn register(&self, metadata: Value) -> (String, String) {
        let mut m = json!({"grant_types": ["client_credentials"], "response_types": [], "redirect_uris": []});
        m.as_object_mut().expect("object").extend(metadata.as_object().expect("metadata object").clone());
        let resp: Value = reqwest::Client::new()
            .post(format!("{}/reg", self.issuer))
            .bearer_auth(REG_TOKEN)
            .json(&m)
            .send()
            .await
            .expect("registration request")
            .json()
            .await
            .expect("registration answer");
        let id = resp["client_id"].as_str().unwrap_or_else(|| panic!("registration refused: {resp}"));
        (id.to_owned(), resp["client_secret"].as_str().expect("secret").to_owned())
    }
}

impl TestIdp {
    /// The person `account` approves the device-flow `user_code` (what they would do in a
    /// browser at the IdP after logging in).
    ///
    /// # Panics
    /// When the IdP does not know the code or the account.
    pub async fn approve_device(&self, user_code: &str, account: &str) {
        let resp = reqwest::Client::new()
            .post(format!("{}/test/device/approve", self.issuer))
            .body(json!({"user_code": user_code, "account": account}).to_string())
            .send()
            .await
            .expect("approval request");
        assert_eq!(resp.status(), 204, "approval refused: {}", resp.text().await.unwrap_or_default());
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the launcher in `dir` and wait for its issuer line.
fn spawn(dir: &Path, port: u16, alg: &str, audience: &str, clients: &Value) -> (Child, String) {
    try_spawn(dir, port, alg, audience, clients).unwrap_or_else(|e| panic!("the test IdP did not start: {e}"))
}

/// Start Node on the launcher and wait (at most 60 s) for it to announce its issuer; a start
/// that says nothing in time is killed.
fn try_spawn(dir: &Path, port: u16, alg: &str, audience: &str, clients: &Value) -> Result<(Child, String), String> {
    let mut child = Command::new("node")
        .arg(dir.join("test-idp.mjs"))
        .current_dir(dir)
        .env("IDP_PORT", port.to_string())
        .env("IDP_ALG", alg)
        .env("IDP_KEY_FILE", dir.join("key.json"))
        .env("IDP_AUDIENCE", audience)
        .env("IDP_REG_TOKEN", REG_TOKEN)
        .env("IDP_CLIENTS", clients.to_string())
        .env("IDP_USERS", std::fs::read_to_string(dir.join("users.json")).unwrap_or_else(|_| "{}".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("node: {e}"))?;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        let read = out.read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
        // Keep reading what it prints later: a closed pipe would kill it at its next line.
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(format!("reading its output: {e}")),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no issuer announced within 60 s".into());
        }
    };
    match line.trim().strip_prefix("ISSUER=") {
        Some(issuer) => Ok((child, issuer.to_owned())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("it said {line:?}"))
        }
    }
}
