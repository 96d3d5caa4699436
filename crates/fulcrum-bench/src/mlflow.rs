//! `GET /api/2.0/mlflow/registered-models/alias` — what an MLflow client asks before it loads
//! `models:/name@alias` — on Fulcrum and on a real MLflow server, side by side in one run: the
//! same models, one version each behind a `production` alias, the same keep-alive load. Rounds
//! alternate (fulcrum, mlflow, fulcrum, …) so the machine's drift hits both alike.
//!
//! Fulcrum runs in this process (the embedded default: SQLite, local blobs); MLflow is
//! `mlflow server` from the venv `scripts/test.sh` installs (`FULCRUM_MLFLOW_PYTHON`), with its
//! default server settings and a SQLite backend store.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::identity::{Variant, interleaved};
use crate::lab::{Lab, release, who};

struct Mlflow {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        // `mlflow server` starts uvicorn workers and job consumers: stop its whole group.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mlflow_bin() -> anyhow::Result<PathBuf> {
    let py = std::env::var_os("FULCRUM_MLFLOW_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/venv-mlflow-3.17.2/bin/python")))
        .ok_or_else(|| anyhow::anyhow!("no HOME"))?;
    let bin = py.with_file_name("mlflow");
    anyhow::ensure!(bin.exists(), "MLflow is not installed at {} (scripts/test.sh installs it)", bin.display());
    Ok(bin)
}

async fn start_mlflow() -> anyhow::Result<Mlflow> {
    let bin = mlflow_bin()?;
    for _ in 0..3 {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::os::unix::process::CommandExt::process_group(&mut Command::new(&bin), 0)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.path().join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let m = Mlflow { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let http = reqwest::Client::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            if http.get(format!("{}/health", m.url)).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(m);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    anyhow::bail!("the MLflow server did not start")
}

pub async fn run(models: usize, conns: usize, rounds: usize, secs: f64) -> anyhow::Result<()> {
    let lab = Lab::start().await?;
    let mlflow = start_mlflow().await?;
    eprintln!("{models} models on both…");
    let http = reqwest::Client::new();
    for i in 0..models {
        let m = format!("model-{i:03}");
        who(&lab.url, "ci")?.post("/v1/models", &json!({"name": m, "domain": "bench"})).await?;
        release(&lab.url, &m, "1").await?;
        let api = |p: &str| format!("{}/api/2.0/mlflow/{p}", mlflow.url);
        for (path, body) in [
            ("registered-models/create", json!({"name": m})),
            ("model-versions/create", json!({"name": m, "source": format!("s3://bench/{m}")})),
            ("registered-models/alias", json!({"name": m, "alias": "production", "version": "1"})),
        ] {
            let r = http.post(api(path)).json(&body).send().await?;
            anyhow::ensure!(r.status().is_success(), "MLflow {path}: {}", r.text().await?);
        }
    }
    let path = move |n: usize| {
        format!("/api/2.0/mlflow/registered-models/alias?name=model-{:03}&alias=production", n % models)
    };
    let variants = [
        Variant {
            name: "fulcrum",
            addr: lab.url.trim_start_matches("http://").to_owned(),
            tls: None,
            bearer: Some("tok-agent".into()),
        },
        Variant { name: "mlflow", addr: mlflow.url.trim_start_matches("http://").to_owned(), tls: None, bearer: None },
    ];
    let rps = interleaved(&variants, "server", conns, rounds, secs, path).await?;
    println!();
    println!("fulcrum / mlflow = {:.1}x requests/s", rps[0] / rps[1]);
    println!(
        "machine: {} cores; {conns} connections, {secs} s per round, {models} models",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    Ok(())
}
