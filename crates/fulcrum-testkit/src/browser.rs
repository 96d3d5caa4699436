//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! installed by `scripts/test.sh`): for the web console's tests. A small client of the W3C
//! WebDriver HTTP protocol — navigate, find, type, click, read, screenshot, run a script, read the
//! browser's console — with a fresh profile per browser and no network beyond loopback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `chromedriver`; `None` (said on stderr) when it is not installed, a failure under `CI=true`.
pub fn chromedriver() -> Option<PathBuf> {
    let p =
        std::env::var_os("FULCRUM_CHROMEDRIVER").map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "chromedriver is missing ({}): run scripts/test.sh",
        p.display()
    );
    eprintln!("SKIPPED LOCALLY: chromedriver not installed at {} (scripts/test.sh installs it)", p.display());
    None
}

/// axe-core's `axe.min.js` (pinned in `tests/axe`, installed by `scripts/test.sh`); `None`
/// locally when missing, a failure under `CI=true`.
pub fn axe() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_AXE").map(PathBuf::from).or_else(|| {
        Some(
            PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/axe-4.14.1/node_modules/axe-core/axe.min.js"),
        )
    });
    crate::installed("axe-core", p)
}

/// The W3C element key in WebDriver answers (W3C WebDriver §12.1, "web element identifier").
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session; the driver (and its browser) stop when this is dropped.
pub struct Browser {
    driver: std::process::Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's group holds the Chromium it started: stop them all.
        crate::kill_group(&mut self.driver);
    }
}

impl Browser {
    /// Start chromedriver on a free port and a headless Chromium session.
    pub async fn start(driver: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = crate::own_group(&mut std::process::Command::new(driver))
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut b = Browser { driver: child, base: format!("http://127.0.0.1:{port}"), http, _profile: profile };
        let start = Instant::now();
        while !b.http.get(format!("{}/status", b.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!("--user-data-dir={}", b._profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": args, "binary": std::env::var("FULCRUM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value =
            b.http.post(format!("{}/session", b.base)).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {r}")).to_owned();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let v: Value = rb.send().await.unwrap().json().await.unwrap();
        if let Some(e) = v["value"]["error"].as_str() {
            panic!("WebDriver {path}: {e}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Forget every cookie of the current page's host (a person leaving a shared browser: the
    /// console's session and the identity provider's alike).
    pub async fn delete_cookies(&self) {
        self.call(reqwest::Method::DELETE, "/cookie", None).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Wait (up to 10 s) until the page's URL ends with `suffix`: a click that submits a form
    /// returns before the next page is there.
    pub async fn wait_for_url(&self, suffix: &str) {
        let start = Instant::now();
        loop {
            let u = self.url().await;
            if u.ends_with(suffix) && self.execute("return document.readyState", json!([])).await == "complete" {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the page stayed at {u}, not …{suffix}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Wait (up to 10 s) until the element matching `css` reads `want` (the page may still be
    /// navigating: asked through a script, so no element goes stale).
    pub async fn wait_for_text(&self, css: &str, want: &str) {
        let start = Instant::now();
        loop {
            let got = self
                .execute(
                    "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null",
                    json!([css]),
                )
                .await;
            if got == want {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{css} reads {got}, not {want:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Wait (up to 10 s) until the element matching `css` contains `want` in its text.
    pub async fn wait_for_text_containing(&self, css: &str, want: &str) {
        self.wait_until(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.includes(arguments[1]) : false",
            json!([css, want]),
            &format!("{css} to contain {want:?}"),
            Duration::from_secs(10),
        )
        .await;
    }

    /// Wait (up to 30 s: scripts fetch and compute) until the element matching `css` has the
    /// attribute `name` equal to `value`.
    pub async fn wait_for_attribute(&self, css: &str, name: &str, value: &str) {
        self.wait_until(
            "const e = document.querySelector(arguments[0]); return !!e && e.getAttribute(arguments[1]) === arguments[2]",
            json!([css, name, value]),
            &format!("{css}[{name}={value:?}]"),
            Duration::from_secs(30),
        )
        .await;
    }

    /// Wait (up to 10 s) until the page's URL contains `part` and the page has loaded.
    pub async fn wait_for_url_containing(&self, part: &str) {
        self.wait_until(
            "return location.href.includes(arguments[0]) && document.readyState === 'complete'",
            json!([part]),
            &format!("a URL containing {part:?}"),
            Duration::from_secs(10),
        )
        .await;
    }

    async fn wait_until(&self, script: &str, args: Value, what: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            if self.execute(script, args.clone()).await == json!(true) {
                return;
            }
            assert!(start.elapsed() < limit, "waited in vain for {what} (at {})", self.url().await);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every element matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT].as_str().map(str::to_owned)).collect()
    }

    /// The first element matching a CSS selector (panics when there is none).
    pub async fn find(&self, css: &str) -> String {
        self.find_all(css).await.into_iter().next().unwrap_or_else(|| panic!("no element {css}"))
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{el}/value"), Some(json!({"text": text}))).await;
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Run a script in the page (`arguments` as given); its return value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Run an asynchronous script (it calls `arguments[arguments.length - 1]` with its result).
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": args}))).await
    }

    /// axe-core's serious and critical violations of WCAG 2 A/AA on the current page
    /// (`id: help (n nodes)`), with `axe` the text of `axe.min.js`.
    pub async fn accessibility_violations(&self, axe: &str) -> Vec<String> {
        self.execute(axe, json!([])).await;
        let v = self
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                   .then(r => done(r.violations
                       .filter(v => v.impact === 'serious' || v.impact === 'critical')
                       .map(v => v.id + ': ' + v.help + ' (' + v.nodes.length + ' nodes)')))
                   .catch(e => done(['axe failed: ' + e]));",
                json!([]),
            )
            .await;
        v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect()
    }

    /// The page as PNG, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// What the page wrote to the browser's console at level SEVERE since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self.call(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    }
}
