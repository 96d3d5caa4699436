//! The official `mlflow` client (PyPI, pinned in `scripts/test.sh`) against a real `fulcrum
//! serve`: a scikit-learn model saved in MLflow's format, registered with the `fulcrum` CLI and
//! governed to production, is read, searched and loaded (`models:/fraud@production`) through
//! MLflow's own API calls — and the governed refusals come back as `MlflowException`s with
//! MLflow's error codes. (Issue 19, first slice: version creation from an MLflow source, stage
//! transitions and the import are not here yet.)

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::serving::as_;
use common::{ok, run_as, serve};
use serde_json::{Value, json};

/// The MLflow venv's Python, or `None` locally when it is not installed (under `CI=true`: fail).
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_MLFLOW_PYTHON").map(PathBuf::from).or_else(|| {
        Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/venv-mlflow-3.17.2/bin/python"))
    })?;
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the MLflow client is missing at {}: run scripts/test.sh",
        p.display()
    );
    eprintln!("SKIPPED LOCALLY: the MLflow client is not installed at {}", p.display());
    None
}

/// Run a Python script (with arguments) in the MLflow venv; its last stdout line is JSON.
fn run_py(python: &PathBuf, script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut c = Command::new(python);
    c.arg("-c").arg(script).args(args).env("MLFLOW_DISABLE_TELEMETRY", "true").env("PYTHONWARNINGS", "ignore");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("null");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

const SAVE: &str = r#"
import json, sys, numpy as np, mlflow.sklearn
from sklearn.linear_model import LogisticRegression
X = np.array([[0.0, 0.1], [0.2, 0.0], [1.0, 0.9], [0.9, 1.2]]); y = np.array([0, 0, 1, 1])
flip = sys.argv[-1] == "flip"
m = LogisticRegression().fit(X, 1 - y if flip else y)
mlflow.sklearn.save_model(m, sys.argv[-2])
print(json.dumps({"predictions": m.predict(np.array([[0.1, 0.1], [1.0, 1.0]])).tolist()}))
"#;

const CLIENT: &str = r#"
import json, os
import numpy as np, mlflow, mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
url = os.environ["FULCRUM"]
mlflow.set_tracking_uri(url); mlflow.set_registry_uri(url)
c = MlflowClient(tracking_uri=url, registry_uri=url)
def as_(who): os.environ["MLFLOW_TRACKING_TOKEN"] = "t-" + who
def code(f):
    try:
        f(); return None
    except MlflowException as e:
        return [e.error_code, str(e)]
out = {}
as_("viewer")
rm = c.get_registered_model("fraud")
out["model"] = {"name": rm.name, "aliases": rm.aliases, "created": rm.creation_timestamp}
out["search"] = [m.name for m in c.search_registered_models(filter_string="name LIKE 'fra%'")]
out["search_none"] = [m.name for m in c.search_registered_models(filter_string="name = 'nope'")]
mv = c.get_model_version_by_alias("fraud", "production")
out["by_alias"] = {"version": mv.version, "stage": mv.current_stage, "aliases": list(mv.aliases)}
out["v2"] = c.get_model_version("fraud", "2").current_stage
out["versions"] = sorted(v.version for v in c.search_model_versions("name='fraud'"))
out["missing_model"] = code(lambda: c.get_registered_model("nope"))
out["missing_version"] = code(lambda: c.get_model_version("fraud", "9"))
out["bad_filter"] = code(lambda: c.search_registered_models(filter_string="run_id = 'x'"))
as_("admin")
out["exists"] = code(lambda: c.create_registered_model("fraud", tags={"fulcrum.domain": "fraud"}))
out["created"] = c.create_registered_model("churn", tags={"fulcrum.domain": "fraud", "team": "risk"}).name
out["delete_version"] = code(lambda: c.delete_model_version("fraud", "1"))
out["delete_model"] = code(lambda: c.delete_registered_model("fraud"))
as_("rm")
out["alias_unapproved"] = code(lambda: c.set_registered_model_alias("fraud", "production", "2"))
out["alias_dev"] = code(lambda: c.set_registered_model_alias("fraud", "dev-try", "2"))
out["dev_alias"] = c.get_model_version_by_alias("fraud", "dev-try").version
out["to_staging"] = c.transition_model_version_stage("fraud", "2", "Staging").current_stage
out["to_production"] = code(lambda: c.transition_model_version_stage("fraud", "2", "Production"))
out["to_archived"] = code(lambda: c.transition_model_version_stage("fraud", "2", "Archived"))
out["latest"] = {v.current_stage: v.version for v in c.get_latest_versions("fraud")}
out["latest_prod"] = [v.version for v in c.get_latest_versions("fraud", stages=["Production"])]
as_("agent")
model = mlflow.pyfunc.load_model("models:/fraud@production")
out["predictions"] = model.predict(np.array([[0.1, 0.1], [1.0, 1.0]])).tolist()
out["load_candidate"] = code(lambda: mlflow.pyfunc.load_model("models:/fraud/2"))
# Another tenant's admin: none of it exists, however it is asked for.
as_("globex")
out["other_get"] = code(lambda: c.get_registered_model("fraud"))
out["other_alias"] = code(lambda: c.get_model_version_by_alias("fraud", "production"))
out["other_search"] = [m.name for m in c.search_registered_models()]
out["other_load"] = code(lambda: mlflow.pyfunc.load_model("models:/fraud@production"))
import requests
r = requests.get(url + "/api/2.0/mlflow-artifacts/artifacts/fulcrum/fraud/1/MLmodel", headers={"Authorization": "Bearer t-globex"})
out["other_file"] = [r.status_code, r.json().get("error_code")]
r = requests.get(url + "/api/2.0/mlflow-artifacts/artifacts", params={"path": "fulcrum/fraud/1"}, headers={"Authorization": "Bearer t-globex"})
out["other_list"] = [r.status_code, r.json().get("error_code")]
print(json.dumps(out))
"#;

#[test]
fn the_mlflow_client_reads_loads_and_is_refused_as_the_policy_says() {
    let Some(py) = python() else { return };
    let s = serve();
    let work = tempfile::tempdir().unwrap();
    let dirs = [work.path().join("m1"), work.path().join("m2")];
    let expected = run_py(&py, SAVE, &[dirs[0].to_str().unwrap(), "plain"], &[]);
    let flipped = run_py(&py, SAVE, &[dirs[1].to_str().unwrap(), "flip"], &[]);
    assert_ne!(expected, flipped, "two different models");
    assert!(dirs[0].join("MLmodel").exists(), "saved in MLflow's format");
    let card = work.path().join("card.json");
    std::fs::write(&card, json!({"owner": "fraud", "intended_use": "scoring"}).to_string()).unwrap();
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "fraud"]));
    for (label, dir) in ["1", "2"].iter().zip(&dirs) {
        ok(&run_as(
            &s,
            "ci",
            &[
                "version",
                "register",
                "fraud",
                label,
                "--dir",
                dir.to_str().unwrap(),
                "--model-card",
                card.to_str().unwrap(),
                "--revalidate-by",
                "2099-01-01T00:00:00Z",
            ],
        ));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let v = "/v1/models/fraud/versions/1";
        as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
        as_(&s, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
        as_(&s, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
        as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-1"})).await.unwrap();
        as_(&s, "rm")
            .put("/v1/models/fraud/aliases/production", &json!({"version": "1", "chg_id": "CHG-2"}))
            .await
            .unwrap();
    });

    let out = run_py(&py, CLIENT, &[], &[("FULCRUM", s.url.as_str())]);
    assert_eq!(out["model"]["name"], "fraud");
    assert_eq!(out["model"]["aliases"], json!({"production": "1"}));
    assert!(out["model"]["created"].as_i64().unwrap() > 1_700_000_000_000, "epoch milliseconds: {out}");
    assert_eq!(out["search"], json!(["fraud"]));
    assert_eq!(out["search_none"], json!([]));
    assert_eq!(out["by_alias"], json!({"version": "1", "stage": "Production", "aliases": ["production"]}));
    assert_eq!(out["v2"], "None", "a Candidate reads as MLflow's stage None");
    assert_eq!(out["versions"], json!(["1", "2"]));
    assert_eq!(out["missing_model"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["missing_version"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["bad_filter"][0], "INVALID_PARAMETER_VALUE");
    assert_eq!(out["exists"][0], "RESOURCE_ALREADY_EXISTS");
    assert_eq!(out["created"], "churn");
    for refused in ["delete_version", "delete_model"] {
        assert_eq!(out[refused][0], "PERMISSION_DENIED", "{refused}: {out}");
        assert!(out[refused][1].as_str().unwrap().contains("immutable and auditable"), "{out}");
    }
    // The governed alias move: a Candidate may not go to production (the policy's reason)…
    assert_eq!(out["alias_unapproved"][0], "PERMISSION_DENIED", "{out}");
    assert!(out["alias_unapproved"][1].as_str().unwrap().contains("stage_not_allowed"), "{out}");
    // …but may to a dev alias.
    assert_eq!(out["alias_dev"], Value::Null, "{out}");
    assert_eq!(out["dev_alias"], "2");
    // Stage transitions are governed promotions: Staging is allowed, Production needs four-eyes
    // first, Archived is a revocation MLflow cannot ask for.
    assert_eq!(out["to_staging"], "Staging");
    assert_eq!(out["to_production"][0], "PERMISSION_DENIED", "{out}");
    assert!(out["to_production"][1].as_str().unwrap().contains("four_eyes"), "{out}");
    assert_eq!(out["to_archived"][0], "PERMISSION_DENIED");
    assert_eq!(out["latest"], json!({"Production": "1", "Staging": "2"}));
    assert_eq!(out["latest_prod"], json!(["1"]));
    // The serving identity loads production through MLflow and predicts like the saved model.
    assert_eq!(out["predictions"], expected["predictions"], "{out}");
    // A Candidate is not loadable by a prod serving identity: the download gate refuses.
    assert!(out["load_candidate"].is_array(), "refused: {out}");
    // Tenant isolation through every door MLflow uses.
    for call in ["other_get", "other_alias", "other_load"] {
        assert!(out[call].is_array(), "{call} refused: {out}");
    }
    assert_eq!(out["other_get"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["other_alias"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["other_search"], json!([]), "no other tenant's model is listed");
    assert_eq!(out["other_file"], json!([404, "RESOURCE_DOES_NOT_EXIST"]));
    assert_eq!(out["other_list"], json!([404, "RESOURCE_DOES_NOT_EXIST"]));
    rt.block_on(async {
        let prod = as_(&s, "viewer").get("/v1/models/fraud/aliases/production").await.unwrap();
        assert_eq!(prod["version"], "1", "the refused move changed nothing");
    });
}

/// A real MLflow tracking server on a free loopback port (tried again on another when it does
/// not come up), its store and artifacts in `dir`.
struct Tracking {
    child: std::process::Child,
    url: String,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tracking_server(python: &std::path::Path, dir: &std::path::Path) -> Tracking {
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(python.with_file_name("mlflow"))
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("mlflow-{port}.log"))).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(60) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if healthy(port) {
                return Tracking { child, url };
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("the MLflow tracking server did not start (logs in {})", dir.display());
}

/// `GET /health` answers 200 (plain HTTP over a socket: the test needs no HTTP client for it).
fn healthy(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if c.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    c.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

const LOG_AND_REGISTER: &str = r#"
import json, os, numpy as np, mlflow, mlflow.sklearn
from sklearn.linear_model import LogisticRegression
mlflow.set_tracking_uri(os.environ["TRACKING"]); mlflow.set_registry_uri(os.environ["FULCRUM"])
os.environ["MLFLOW_TRACKING_TOKEN"] = "t-ci"
X = np.array([[0.0, 0.1], [0.2, 0.0], [1.0, 0.9], [0.9, 1.2]]); y = np.array([0, 0, 1, 1])
out = []
for i in range(2):
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(LogisticRegression(C=1.0 + i).fit(X, y), name="model")
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "credit")
    out.append({"version": mv.version, "source": mv.source, "status": mv.status, "stage": mv.current_stage,
                "run_id": mv.run_id, "expected_run": run.info.run_id})
print(json.dumps(out))
"#;

/// `mlflow.register_model` against Fulcrum: the version's bytes are copied from the real
/// tracking server's logged model, hashed here, and match the files MLflow stored byte for byte;
/// the version is a Candidate, numbered as MLflow would, and its `source` reads back as given.
#[test]
fn register_model_imports_the_logged_models_bytes_from_the_tracking_server() {
    let Some(py) = python() else { return };
    let work = tempfile::tempdir().unwrap();
    let tracking = tracking_server(&py, work.path());
    let s = common::serve_with(&["--mlflow-tracking-uri", &tracking.url], tempfile::tempdir().unwrap());
    ok(&run_as(&s, "ci", &["model", "create", "credit", "--domain", "credit"]));
    let out = run_py(&py, LOG_AND_REGISTER, &[], &[("TRACKING", tracking.url.as_str()), ("FULCRUM", s.url.as_str())]);
    for (i, v) in out.as_array().unwrap().iter().enumerate() {
        assert_eq!(v["version"], (i + 1).to_string(), "{out}");
        assert!(v["source"].as_str().unwrap().starts_with("models:/m-"), "the source as the client gave it: {out}");
        assert_eq!(v["status"], "READY");
        assert_eq!(v["stage"], "None", "a Candidate");
        assert_eq!(v["run_id"], v["expected_run"]);
    }
    // Every file Fulcrum holds for version 1 is byte for byte what MLflow stored.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let version = rt.block_on(async { as_(&s, "viewer").get("/v1/models/credit/versions/1").await.unwrap() });
    let files = version["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(names.contains(&"MLmodel") && names.iter().any(|n| n.starts_with("model.")), "{names:?}");
    let stored: Vec<PathBuf> = walk(&work.path().join("artifacts"));
    for f in files {
        let path = f["path"].as_str().unwrap();
        let on_disk = stored
            .iter()
            .filter(|p| p.ends_with(path))
            .map(|p| format!("sha256:{}", sha256_hex(&std::fs::read(p).unwrap())))
            .collect::<Vec<_>>();
        assert!(on_disk.contains(&f["digest"].as_str().unwrap().to_owned()), "{path}: {on_disk:?} vs {f}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    fulcrum_core::Digest::of(bytes).hex()
}
