//! A throwaway PostgreSQL cluster per caller: `initdb` once into a template kept in the cache
//! (1–5 s), then per cluster a copy of it and `pg_ctl start` on a random loopback port (< 1 s).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The role every test connects as without a password (the cluster's superuser).
pub const SUPERUSER: &str = "postgres";
/// A role that must give a password (scram-sha-256), for the password-file path.
pub const PASSWORD_ROLE: &str = "fulcrum";
pub const PASSWORD: &str = "fulcrum-pg-secret";

/// Where PostgreSQL's server binaries are (`FULCRUM_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`), or `None` locally when it is not installed.
///
/// # Panics
/// Under `CI=true` when it is missing.
pub fn pg_bin() -> Option<PathBuf> {
    let found = std::env::var_os("FULCRUM_PG_BIN").map(PathBuf::from).or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|p| p.join("pg_ctl").exists())
            .collect();
        dirs.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
        dirs.pop()
    });
    crate::installed("PostgreSQL (initdb)", found.map(|p| p.join("initdb")))
        .map(|initdb| initdb.parent().expect("initdb is in a directory").to_owned())
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// Run a PostgreSQL program, as `postgres` when we are root.
fn pg(bin: &Path, prog: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
        c
    } else {
        Command::new(bin.join(prog))
    }
}

fn chown_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().is_ok_and(|s| s.success());
    assert!(ok, "chown postgres {}", path.display());
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// The template data dir (made once per machine and version, atomically).
fn template(bin: &Path) -> PathBuf {
    let version = bin.parent().and_then(|p| p.file_name()).map_or("pg".into(), |v| v.to_string_lossy().into_owned());
    // Not under $HOME: the unprivileged server user must be able to reach it (root's home is
    // closed to it). The system temp dir is; the template lives until the machine restarts.
    let cache = std::env::temp_dir();
    let t = cache.join(format!("pg-template-{version}-v1"));
    if t.join("data/PG_VERSION").exists() {
        return t;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let work = tempfile::Builder::new().prefix(".pg-template").tempdir_in(&cache).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_postgres(work.path());
    let data = work.path().join("data");
    let mut c = pg(bin, "initdb");
    c.arg("-D").arg(&data).args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "-N"]);
    run(c, "initdb").unwrap();
    // The password role must authenticate over TCP; the superuser is trusted (tests only).
    let hba = data.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{old}")).unwrap();
    chown_postgres(work.path());
    let tmp = work.keep();
    // Another process may have finished first: then ours is dropped.
    if std::fs::rename(&tmp, &t).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    t
}

/// A running private cluster; stopped (immediately) and removed on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    /// fsync and synchronous commit on (benchmarks of durable writes); off for tests.
    durable: bool,
}

impl Postgres {
    /// Start one, or `None` locally when PostgreSQL is not installed.
    ///
    /// # Panics
    /// When it does not start on four ports.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// A cluster that makes every commit durable (fsync, synchronous commit, full page writes):
    /// what a benchmark of durable writes must run against.
    ///
    /// # Panics
    /// When it does not start on four ports.
    pub fn start_durable() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Option<Self> {
        let bin = pg_bin()?;
        let t = template(&bin);
        let mut last = String::new();
        for _ in 0..4 {
            let dir = tempfile::Builder::new().prefix("fulcrum-pg").tempdir().unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let copied = Command::new("cp").arg("-a").arg(t.join("data")).arg(dir.path().join("data")).status();
            assert!(copied.is_ok_and(|s| s.success()), "copy the PostgreSQL template");
            chown_postgres(dir.path());
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let p = Self { bin: bin.clone(), dir, port, durable };
            match p.up() {
                Ok(()) => {
                    p.psql(&format!("CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"));
                    return Some(p);
                }
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start on four ports: {last}");
    }

    fn up(&self) -> Result<(), String> {
        let mut c = pg(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "30", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} {} -c max_connections=200",
                self.port,
                self.dir.path().display(),
                if self.durable { "" } else { "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" }
            ))
            .arg("start");
        run(c, "pg_ctl start").map_err(|e| {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            format!("{e}\n{log}")
        })
    }

    /// Stop the server now: clients' connections are cut, what was committed stays (a fast
    /// shutdown; the test cluster does not fsync, so a crash would lose recent commits).
    pub fn stop(&self) {
        self.halt("fast");
    }

    fn halt(&self, mode: &str) {
        let mut c = pg(&self.bin, "pg_ctl");
        c.arg("-D").arg(self.dir.path().join("data")).args(["-m", mode, "-w", "stop"]);
        let _ = run(c, "pg_ctl stop");
    }

    /// Start it again on the same port and data.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&self) {
        std::thread::sleep(Duration::from_millis(200));
        self.up().expect("PostgreSQL restarts");
    }

    /// Run one SQL statement as the superuser.
    ///
    /// # Panics
    /// When it fails.
    pub fn psql(&self, sql: &str) {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ]);
        run(c, "psql").unwrap();
    }

    /// A new, empty database; its URL (superuser, no password).
    pub fn database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.halt("immediate");
    }
}
