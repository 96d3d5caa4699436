//! The audit ledger: sustained durable append rate on the embedded default (events with their
//! ledger leaves and outbox rows, SQLite `synchronous=FULL`), and inclusion/consistency proof
//! generation time from the stored tree at large sizes.

use std::time::{Duration, Instant};

use fulcrum_core::event::{EventKind, EventPayload};
use fulcrum_ledger::merkle;
use fulcrum_store::{Store, StoreOptions};

fn event(i: u64) -> EventPayload {
    let mut ev = EventPayload::new(EventKind::AgentStep, time::OffsetDateTime::now_utc(), "bench", "bench", "model-a");
    ev.detail = Some(format!("step {i}"));
    ev
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Events per second for `secs`, `batch` events per transaction.
async fn append_rate(batch: usize, secs: f64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("registry.db"), StoreOptions::default()).await?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let evs: Vec<EventPayload> = (0..batch as u64).map(|i| event(n + i)).collect();
        n += store.record_events(evs).await?;
    }
    let size = store.ledger_size().await?;
    anyhow::ensure!(size == n, "every event has its leaf ({size} leaves, {n} events)");
    #[allow(clippy::cast_precision_loss)]
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Events per second for `secs` with `writers` concurrent callers of `record_event` (each waits
/// for its own durable commit; the store groups what arrives meanwhile); and the mean group.
async fn group_rate(writers: usize, secs: f64) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("registry.db"), StoreOptions::default()).await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let commits_before = store.group_commits();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    store.record_event(event(w as u64 * 1_000_000 + n)).await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += t.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let size = store.ledger_size().await?;
    anyhow::ensure!(size == n, "every answered event has its leaf ({size} leaves, {n} events)");
    #[allow(clippy::cast_precision_loss)]
    let mean = n as f64 / (store.group_commits() - commits_before).max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    Ok((n as f64 / elapsed, mean))
}

pub async fn run(sizes: &[u64], proofs: usize, append_secs: f64) -> anyhow::Result<()> {
    println!("| durable appends (event + outbox + ledger leaf, synchronous=FULL) | events/s |");
    println!("|---|---|");
    for batch in [1usize, 10, 100] {
        let r = append_rate(batch, append_secs).await?;
        println!("| {batch} event(s) per commit | {r:.0} |");
    }
    println!();
    println!("| concurrent `record_event` callers (the request path: group commit) | events/s | mean group |");
    println!("|---|---|---|");
    for writers in [1usize, 16, 64, 256] {
        let (r, mean) = group_rate(writers, append_secs).await?;
        println!("| {writers} | {r:.0} | {mean:.1} |");
    }
    println!();
    println!("| leaves | inclusion proof p50 | p99 | consistency proof p50 | p99 | seed time | database |");
    println!("|---|---|---|---|---|---|---|");
    for &size in sizes {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("registry.db");
        let store = Store::open(&path, StoreOptions { durable: false, ..StoreOptions::default() }).await?;
        let t = Instant::now();
        store.seed_ledger_for_bench(size).await?;
        let seeded = t.elapsed();
        let root = store.ledger_root(size).await?;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut inc, mut con) = (Vec::with_capacity(proofs), Vec::with_capacity(proofs));
        for _ in 0..proofs {
            let m = next() % size;
            let t = Instant::now();
            let proof = store.ledger_ranges(&merkle::inclusion_path(m, size)).await?;
            inc.push(t.elapsed().as_secs_f64() * 1e3);
            let leaf = merkle::leaf_hash(&m.to_be_bytes());
            merkle::verify_inclusion(m, size, &leaf, &proof, &root).map_err(|e| anyhow::anyhow!("{e}"))?;
            let first = 1 + next() % (size - 1);
            let t = Instant::now();
            let proof = store.ledger_ranges(&merkle::consistency_path(first, size)).await?;
            con.push(t.elapsed().as_secs_f64() * 1e3);
            if inc.len() <= 50 {
                let first_root = store.ledger_root(first).await?;
                merkle::verify_consistency(first, size, &first_root, &root, &proof)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        inc.sort_by(f64::total_cmp);
        con.sort_by(f64::total_cmp);
        let mib = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) / (1 << 20);
        println!(
            "| {size} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.0} s | {mib} MiB |",
            pct(&inc, 0.5),
            pct(&inc, 0.99),
            pct(&con, 0.5),
            pct(&con, 0.99),
            seeded.as_secs_f64()
        );
    }
    println!(
        "\nmachine: {} cores; {proofs} random proofs per size, each verified",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    Ok(())
}
