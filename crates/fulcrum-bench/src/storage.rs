//! The storage seams side by side in one run (issue 14): SQLite vs PostgreSQL for registrations
//! and for durable events, and a large download through the registry vs pre-signed from S3.
//! Both PostgreSQL and SeaweedFS are private throwaway instances on loopback; PostgreSQL makes
//! every commit durable (fsync on), as SQLite does (`synchronous=FULL`).

use std::time::{Duration, Instant};

use fulcrum_core::event::{EventKind, EventPayload};
use fulcrum_store::{Database, Store, StoreOptions};
use serde_json::json;

use crate::lab::{Lab, who};

/// Versions/s: `clients` publishers at once, each registering versions of 3 small files (upload
/// the three blobs, then register), for `secs`.
async fn registrations(lab: &Lab, clients: usize, secs: f64) -> anyhow::Result<f64> {
    who(&lab.url, "ci")?.post("/v1/models", &json!({"name": "reg", "domain": "bench"})).await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = lab.url.clone();
            tokio::spawn(async move {
                let ci = who(&url, "ci")?;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let mut files = vec![];
                    for f in ["weights.bin", "config.json", "tokenizer.json"] {
                        let bytes = format!("{c}/{n}/{f}").into_bytes();
                        let len = bytes.len();
                        let d = ci.upload_bytes(bytes).await?;
                        files.push(json!({"path": f, "size": len, "digest": d.to_string()}));
                    }
                    ci.post(
                        "/v1/models/reg/versions",
                        &json!({"version": format!("c{c}-v{n}"), "files": files,
                                "model_card": {"owner": "bench", "intended_use": "bench"}}),
                    )
                    .await?;
                    n += 1;
                }
                Ok::<_, anyhow::Error>(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Durable events/s through the store's group commit: `tasks` writers, each waiting for its
/// event to be committed before writing the next, for `secs`.
async fn events(store: &Store, tasks: usize, secs: f64) -> anyhow::Result<(f64, u64)> {
    let before = store.group_commits();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let mut e =
                        EventPayload::new(EventKind::AgentStep, time::OffsetDateTime::now_utc(), "bench", "d", "m");
                    e.detail = Some(format!("{t}/{n}"));
                    s.record_event(e).await?;
                    n += 1;
                }
                Ok::<_, anyhow::Error>(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok((total as f64 / start.elapsed().as_secs_f64(), store.group_commits() - before))
}

/// Seconds to download `bytes` as the serving identity, verified (hashed) by the client.
async fn download(lab: &Lab, d: fulcrum_core::Digest, size: u64, dest: &std::path::Path) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(dest);
    let agent = who(&lab.url, "agent")?;
    let t0 = Instant::now();
    let n = agent.download_blob(&d, dest, size).await?;
    anyhow::ensure!(n == size, "downloaded {n} of {size} bytes");
    Ok(t0.elapsed().as_secs_f64())
}

async fn big_version(lab: &Lab, mib: usize) -> anyhow::Result<(fulcrum_core::Digest, u64)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("weights.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
        for m in 0..mib {
            let mut c = chunk.clone();
            c[..8].copy_from_slice(&(m as u64).to_le_bytes());
            f.write_all(&c)?;
        }
    }
    let ci = who(&lab.url, "ci")?;
    let size = std::fs::metadata(&path)?.len();
    let d = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<fulcrum_core::Digest> {
            use std::io::Read;
            let mut f = std::fs::File::open(p)?;
            let mut h = fulcrum_core::digest::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    return Ok(h.finish());
                }
                h.update(&buf[..n]);
            }
        })
        .await??
    };
    ci.upload_file(&path, &d, |_| {}).await?;
    crate::lab::approved_file(&lab.url, "big", d, size).await?;
    Ok((d, size))
}

/// # Errors
/// A service or registry failing to start or to serve.
pub async fn run(clients: usize, secs: f64, event_tasks: usize, mib: usize, rounds: usize) -> anyhow::Result<()> {
    let so = fulcrum_server::testing::ScaleOut::start(true)
        .await
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL or SeaweedFS is not installed"))?;
    let pg = &so.pg;

    // Registrations: SQLite + directory, PostgreSQL + directory, PostgreSQL + S3, interleaved.
    println!("## registrations: {clients} publishers at once, 3 small files per version, {secs} s per run\n");
    println!("| round | SQLite + directory | PostgreSQL + directory | PostgreSQL + S3 | PG+S3 / SQLite |");
    println!("|---|---|---|---|---|");
    for round in 1..=rounds.min(3) {
        let lite = Lab::start_with(|_| {}, None).await?;
        let a = registrations(&lite, clients, secs).await?;
        drop(lite);
        let url = pg.database(&format!("regd{round}"));
        let pg_dir =
            Lab::start_with(move |c| c.database = Some(Database::Postgres { url, password: None }), None).await?;
        let b = registrations(&pg_dir, clients, secs).await?;
        drop(pg_dir);
        let url = pg.database(&format!("regs{round}"));
        let blobs = so.blob_store();
        let scaled = Lab::start_with(
            move |c| {
                c.database = Some(Database::Postgres { url, password: None });
                c.blob_store = Some(blobs);
            },
            None,
        )
        .await?;
        let c = registrations(&scaled, clients, secs).await?;
        drop(scaled);
        println!("| {round} | {a:.0} versions/s | {b:.0} versions/s | {c:.0} versions/s | {:.2} |", c / a);
    }

    // Durable events through the group commit, at the store.
    println!("\n## durable events: {event_tasks} writers, each waiting for its commit, {secs} s per run\n");
    println!("| round | SQLite events/s (commits) | PostgreSQL events/s (commits) |");
    println!("|---|---|---|");
    for round in 1..=rounds.min(3) {
        let dir = tempfile::tempdir()?;
        let lite = Store::open(&dir.path().join("r.db"), StoreOptions::default()).await?;
        let (a, ac) = events(&lite, event_tasks, secs).await?;
        lite.close().await;
        let url = pg.database(&format!("ev{round}"));
        let store = Store::connect(&Database::Postgres { url, password: None }, StoreOptions::default()).await?;
        let (b, bc) = events(&store, event_tasks, secs).await?;
        store.close().await;
        println!("| {round} | {a:.0} ({ac}) | {b:.0} ({bc}) |");
    }

    // A large download: through the registry (hashed as served) vs pre-signed from S3.
    println!("\n## agent download of a {mib} MiB file, verified by the client, {rounds} rounds interleaved\n");
    let through = Lab::start_with(|c| c.max_blob_bytes = 8 << 30, None).await?;
    let url = pg.database("dl");
    let w = so.blob_store();
    let direct = Lab::start_with(
        move |c| {
            c.max_blob_bytes = 8 << 30;
            c.database = Some(Database::Postgres { url, password: None });
            c.blob_store = Some(w);
        },
        None,
    )
    .await?;
    let (d1, size) = big_version(&through, mib).await?;
    let (d2, _) = big_version(&direct, mib).await?;
    let out = tempfile::tempdir()?;
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..rounds {
        a.push(download(&through, d1, size, &out.path().join("a")).await?);
        b.push(download(&direct, d2, size, &out.path().join("b")).await?);
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (ma, mb) = (a[a.len() / 2], b[b.len() / 2]);
    let served = reqwest::get(format!("{}/metrics", direct.url)).await?.text().await?;
    let served = served
        .lines()
        .find_map(|l| l.strip_prefix("fulcrum_blob_bytes_served_total ")?.parse::<u64>().ok())
        .unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let gib = size as f64 / f64::from(1u32 << 30);
    println!("| path | median time | GiB/s |");
    println!("|---|---|---|");
    println!("| through the registry (directory store, hashed while served) | {ma:.2} s | {:.2} |", gib / ma);
    println!("| pre-signed URL, straight from SeaweedFS | {mb:.2} s | {:.2} |", gib / mb);
    println!("\npre-signed / through = {:.2}; bytes the S3-backed registry sent itself: {served}", mb / ma);
    Ok(())
}
