//! Seldon MLServer (Open Inference Protocol, sklearn runtime) for end-to-end tests: the
//! binary `scripts/test.sh` installs (`FULCRUM_MLSERVER`), a small trained model per version,
//! and a server on free loopback ports that stops with its handle.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `mlserver` binary; `None` (said on stderr) when it is not installed, a failure under
/// `CI=true`.
pub fn bin() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_MLSERVER").map(PathBuf::from).or_else(|| {
        Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/venv-mlserver-1.7.1/bin/mlserver"))
    });
    crate::installed("MLServer", p)
}

/// Rows `[1,0,0,0]` and `[-1,2,0,0]` for the model [`train`] makes: unflipped it predicts
/// `[1,0]`, flipped `[0,1]`.
pub const INFER_BODY: &str =
    r#"{"inputs":[{"name":"input-0","shape":[2,4],"datatype":"FP32","data":[1,0,0,0,-1,2,0,0]}]}"#;

/// [`INFER_BODY`] to `<url>/v2/models/fraud/infer`: the status and the JSON answer (or null).
pub async fn infer(http: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{url}/v2/models/fraud/infer"))
        .header("content-type", "application/json")
        .body(INFER_BODY)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(serde_json::Value::Null))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Train a logistic regression (labels flipped for `flip`) and write the version's files:
/// `model.joblib` and the MLServer `model-settings.json` naming the version.
pub fn train(python: &Path, dir: &Path, version: &str, flip: bool) -> Vec<(String, Vec<u8>)> {
    let script = r"
import sys, joblib, numpy as np
from sklearn.linear_model import LogisticRegression
out, flip = sys.argv[1], sys.argv[2] == 'flip'
rng = np.random.default_rng(7)
X = rng.normal(size=(400, 4)); y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(int)
if flip: y = 1 - y
joblib.dump(LogisticRegression().fit(X, y), out + '/model.joblib')
np.savetxt(out + '/train.csv', X, delimiter=',', header='f0,f1,f2,f3', comments='')
";
    std::fs::create_dir_all(dir).unwrap();
    let st = std::process::Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .arg(if flip { "flip" } else { "noflip" })
        .status()
        .unwrap();
    assert!(st.success(), "training failed");
    let settings = format!(
        r#"{{"name": "fraud", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {{"uri": "./model.joblib", "version": "{version}"}}}}"#
    );
    vec![
        ("model-settings.json".to_owned(), settings.into_bytes()),
        ("model.joblib".to_owned(), std::fs::read(dir.join("model.joblib")).unwrap()),
    ]
}

/// A running MLServer; stopped (SIGTERM, then killed) when dropped.
pub struct Server {
    child: tokio::process::Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM lets MLServer stop its own children; kill_on_drop is the backstop.
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }
}

/// Start MLServer on `repo` (models loaded through the repository API only); waits until live.
pub async fn start(bin: &Path, repo: &Path, log: &Path) -> Server {
    let port = free_port();
    let child = tokio::process::Command::new(bin)
        .arg("start")
        .arg(repo)
        .env("MLSERVER_HOST", "127.0.0.1")
        .env("MLSERVER_HTTP_PORT", port.to_string())
        .env("MLSERVER_GRPC_PORT", free_port().to_string())
        .env("MLSERVER_METRICS_ENDPOINT", "")
        .env("MLSERVER_PARALLEL_WORKERS", "0")
        .env("MLSERVER_LOAD_MODELS_AT_STARTUP", "false")
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let s = Server { child, url: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if http.get(format!("{}/v2/health/live", s.url)).send().await.is_ok_and(|r| r.status().is_success()) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "MLServer did not start: {}",
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
