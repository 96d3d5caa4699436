//! `fulcrum serve` on PostgreSQL + S3 and `fulcrum db migrate`, through the binary: the flags
//! (and their environment variables), secrets from files and kept out of errors, and the same
//! commands working as on the embedded default.

mod common;

use common::{fulcrum, ok, one_error_line, run_as, serve_with};

#[test]
fn db_migrate_on_the_embedded_default_and_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = fulcrum(&["db", "migrate", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("applied migrations 1, 2,"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = fulcrum(&["db", "migrate", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("up to date"));

    let Some(pg) = fulcrum_server::testing::Postgres::start() else { return };
    let url = pg.database("reg");
    let o = fulcrum(&["db", "migrate"], &[("FULCRUM_DATABASE_URL", url.as_str())]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("applied migrations 1"));
    let o = fulcrum(&["db", "migrate", "--database-url", &url], &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("up to date"), "{}", String::from_utf8_lossy(&o.stdout));
    // A password in the URL is refused, and not echoed.
    let err = one_error_line(&fulcrum(
        &["db", "migrate", "--database-url", &format!("postgres://fulcrum:hunter2@127.0.0.1:{}/reg", pg.port)],
        &[],
    ));
    assert!(err.contains("--database-password-file") && !err.contains("hunter2"), "{err}");
}

#[test]
fn serve_on_postgres_and_s3_runs_the_same_commands() {
    let Some(so) = fulcrum_server::testing::ScaleOut::start_blocking() else { return };
    let (pg, endpoint) = (&so.pg, so.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let (pw, ak, sk) = (secrets.path().join("pw"), secrets.path().join("ak"), secrets.path().join("sk"));
    std::fs::write(&pw, format!("{}\n", fulcrum_server::testing::postgres::PASSWORD)).unwrap();
    std::fs::write(&ak, "fulcrum\n").unwrap();
    std::fs::write(&sk, "fulcrum-secret\n").unwrap();
    pg.database("reg");
    let url = format!("postgres://{}@127.0.0.1:{}/reg", fulcrum_server::testing::postgres::PASSWORD_ROLE, pg.port);
    let blob_store = format!("s3://models?endpoint={endpoint}&region=us-east-1");
    let s = serve_with(
        &[
            "--database-url",
            &url,
            "--database-password-file",
            pw.to_str().unwrap(),
            "--blob-store",
            &blob_store,
            "--s3-access-key-file",
            ak.to_str().unwrap(),
            "--s3-secret-key-file",
            sk.to_str().unwrap(),
        ],
        dir,
    );
    let run = |who: &str, args: &[&str]| ok(&run_as(&s, who, args));
    let m = tempfile::tempdir().unwrap();
    std::fs::write(m.path().join("weights.bin"), b"weights on s3").unwrap();
    run("ci", &["model", "create", "risk", "--domain", "risk"]);
    run("ci", &["version", "register", "risk", "v1", "--dir", m.path().to_str().unwrap()]);
    let v = run("ci", &["version", "get", "risk", "v1", "--output", "json"]);
    assert_eq!(v["stage"], "Candidate", "{v}");
    // Metadata in PostgreSQL, bytes in the bucket: nothing of either in the data dir.
    assert!(!s.dir.path().join("data/registry.db").exists());
    assert!(!s.dir.path().join("data/blobs").exists());
    run("admin", &["blobs", "scrub"]);
    run("auditor", &["audit", "verify", "--state", m.path().join("witness").to_str().unwrap()]);

    // The kill switch through the binary on S3: a download is a short-lived URL to the bucket
    // while the version may be read; once revoked, the registry answers 410 and hands out none.
    let d = fulcrum_core::Digest::of(b"weights on s3");
    let get = || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            let r = http.get(format!("{}/v1/blobs/{d}", s.url)).bearer_auth("t-ci").send().await.unwrap();
            let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
            (r.status(), location)
        })
    };
    let (status, location) = get();
    assert_eq!(status, reqwest::StatusCode::TEMPORARY_REDIRECT);
    let location = location.expect("a pre-signed URL");
    assert!(location.starts_with(&endpoint) && location.contains("X-Amz-Signature"), "{location}");
    run("bo", &["version", "revoke", "risk", "v1", "--reason", "leak", "--inc-id", "INC-1"]);
    let (status, location) = get();
    assert_eq!((status, location), (reqwest::StatusCode::GONE, None), "revoked bytes get no URL");
}
