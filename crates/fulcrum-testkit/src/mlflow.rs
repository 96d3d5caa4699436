//! MLflow from the venv `scripts/test.sh` installs (`FULCRUM_MLFLOW_PYTHON`): its Python (for
//! the official client) and `mlflow server` on a free loopback port, stopped with every worker
//! and job consumer it starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The MLflow venv's Python, or `None` locally when it is not installed (under `CI=true`: a
/// failure, never a skip).
pub fn python() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_MLFLOW_PYTHON").map(PathBuf::from).or_else(|| {
        Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/venv-mlflow-3.17.2/bin/python"))
    });
    crate::installed("the MLflow client", p)
}

/// A real MLflow tracking server (SQLite store and artifacts under `dir`).
pub struct MlflowServer {
    child: Child,
    pub url: String,
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // `mlflow server` starts uvicorn workers and job consumers: stop its whole group.
        crate::kill_group(&mut self.child);
    }
}

impl MlflowServer {
    /// Start it with one worker on a free port (tried again on another when it does not come up).
    ///
    /// # Panics
    /// When it does not start on three ports (its logs are in `dir`).
    pub fn start(python: &Path, dir: &Path) -> Self {
        Self::start_with(python, dir, &["--workers", "1"])
    }

    /// As [`MlflowServer::start`], with these `mlflow server` options instead of one worker.
    ///
    /// # Panics
    /// As [`MlflowServer::start`].
    pub fn start_with(python: &Path, dir: &Path, options: &[&str]) -> Self {
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = crate::own_group(&mut Command::new(python.with_file_name("mlflow")))
                .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
                .args(options)
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
                .arg("--artifacts-destination")
                .arg(dir.join("artifacts"))
                .env("MLFLOW_DISABLE_TELEMETRY", "true")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("mlflow-{port}.log"))).unwrap())
                .spawn()
                .unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if healthy(port) {
                    return Self { child, url: format!("http://127.0.0.1:{port}") };
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            crate::kill_group(&mut child);
        }
        panic!("the MLflow tracking server did not start (logs in {})", dir.display());
    }
}

/// `GET /health` answers 200 (plain HTTP over a socket).
fn healthy(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    if c.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    c.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}
