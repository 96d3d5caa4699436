//! What hashing every served byte costs: a blob of `mib` MiB registered and Approved in an
//! in-process registry, then, interleaved over `rounds`, (a) SHA-256 of the same bytes in memory
//! (the floor: what the registry adds per byte), (b) a full `GET /v1/blobs/{digest}` by a serving
//! identity, streamed and discarded, and (c) a `Range` request for the last MiB (the worst case:
//! the registry reads and hashes the whole blob to vouch for that MiB).

use std::time::{Duration, Instant};

use fulcrum_core::Digest;
use futures_util::StreamExt;

use crate::lab::{Lab, who};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

async fn fetch(http: &reqwest::Client, url: &str, range: Option<&str>) -> anyhow::Result<usize> {
    let mut rb = http.get(url).bearer_auth("tok-agent");
    if let Some(r) = range {
        rb = rb.header("range", r);
    }
    let resp = rb.send().await?.error_for_status()?;
    let mut stream = resp.bytes_stream();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk?.len();
    }
    Ok(n)
}

/// # Errors
/// The registry failing to start or to serve.
pub async fn run(mib: usize, rounds: usize) -> anyhow::Result<()> {
    let lab = Lab::start_with(|c| c.max_blob_bytes = 8 << 30, None).await?;
    let size = mib << 20;
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let d = who(&lab.url, "ci")?.upload_bytes(bytes.clone()).await?;
    crate::lab::approved_file(&lab.url, "big", d, size as u64).await?;

    let http = reqwest::Client::new();
    let url = format!("{}/v1/blobs/{d}", lab.url);
    let last = format!("bytes={}-{}", size - (1 << 20), size - 1);
    let (mut hash, mut full, mut ranged) = (vec![], vec![], vec![]);
    fetch(&http, &url, None).await?; // warm the page cache
    for _ in 0..rounds {
        let t = Instant::now();
        assert_eq!(Digest::of(&bytes), d);
        hash.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(fetch(&http, &url, None).await?, size);
        full.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(fetch(&http, &url, Some(&last)).await?, 1 << 20);
        ranged.push(t.elapsed());
    }
    let (h, f, r) = (median(hash), median(full), median(ranged));
    println!("blob {mib} MiB, {rounds} rounds interleaved (medians)");
    println!("| what | time | GB/s |");
    println!("|---|---|---|");
    println!("| SHA-256 in memory (the floor) | {:.1} ms | {:.2} |", h.as_secs_f64() * 1e3, gbps(size, h));
    println!("| full GET, hashed while served | {:.1} ms | {:.2} |", f.as_secs_f64() * 1e3, gbps(size, f));
    println!("| Range: last MiB (whole blob hashed) | {:.1} ms | — |", r.as_secs_f64() * 1e3);
    println!("full GET / hash alone: {:.2}×", f.as_secs_f64() / h.as_secs_f64());
    Ok(())
}
