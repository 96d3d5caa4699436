//! A real OCI registry for tests and benchmarks: the CNCF distribution registry (Debian's
//! `docker-registry` 2.8, installed by `scripts/test.sh`; `FULCRUM_OCI_REGISTRY` overrides the
//! path) on a free loopback port, storing under its own temp dir, plain HTTP. Distribution 2.8
//! has no OCI 1.1 referrers API, so referrers go through the `sha256-<hex>` tag-schema index.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The registry binary; `None` (said on stderr) when it is not installed, a failure under
/// `CI=true`.
pub fn bin() -> Option<PathBuf> {
    let p = std::env::var_os("FULCRUM_OCI_REGISTRY")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/docker-registry")));
    crate::installed("docker-registry (CNCF distribution)", p)
}

/// A running registry; stopped when dropped.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`: the registry host in references (`<host>/<repo>:<tag>`).
    pub host: String,
}

impl Registry {
    /// # Panics
    /// When it does not start on any of three free ports.
    pub fn start() -> Option<Self> {
        let bin = bin()?;
        let mut last = String::new();
        // The port is free when picked, but another process may take it before the registry
        // binds: then it exits and another port is tried.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            match crate::wait_listening(&mut child, port, Duration::from_secs(20)) {
                Ok(()) => return Some(Self { child, dir, host: format!("127.0.0.1:{port}") }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = e;
                }
            }
        }
        panic!("docker-registry did not start: {last}");
    }

    /// Where the registry keeps a blob's bytes on disk (to tamper with them in attack tests).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
