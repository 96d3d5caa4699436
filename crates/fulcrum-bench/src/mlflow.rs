//! `GET /api/2.0/mlflow/registered-models/alias` — what an MLflow client asks before it loads
//! `models:/name@alias` — on Fulcrum and on a real MLflow server, side by side in one run: the
//! same models, one version each behind a `production` alias, the same keep-alive load. Rounds
//! alternate (fulcrum, mlflow, fulcrum, …) so the machine's drift hits both alike.
//!
//! Fulcrum runs in this process (the embedded default: SQLite, local blobs); MLflow is
//! `mlflow server` from the venv `scripts/test.sh` installs (`FULCRUM_MLFLOW_PYTHON`), with its
//! default server settings and a SQLite backend store.

use fulcrum_testkit::mlflow::MlflowServer;
use serde_json::json;

use crate::identity::{Variant, interleaved};
use crate::lab::{Lab, release, who};

pub async fn run(models: usize, conns: usize, rounds: usize, secs: f64) -> anyhow::Result<()> {
    let python = fulcrum_testkit::mlflow::python()
        .ok_or_else(|| anyhow::anyhow!("MLflow is not installed (scripts/test.sh installs it)"))?;
    let lab = Lab::start().await?;
    let dir = tempfile::tempdir()?;
    let at = dir.path().to_owned();
    // MLflow's own default server settings (workers and all).
    let mlflow = tokio::task::spawn_blocking(move || MlflowServer::start_with(&python, &at, &[])).await?;
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
