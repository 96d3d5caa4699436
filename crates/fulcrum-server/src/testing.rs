//! Real services for tests and benchmarks, started on loopback ports with their own temp dirs.
//!
//! - [`Nats`]: a NATS server with JetStream (`nats-server` 2.15, installed by `scripts/test.sh`
//!   as `FULCRUM_NATS_SERVER`); under `CI=true` a missing server fails the caller.

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
