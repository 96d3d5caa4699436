//! Registering a large ModelPack from an OCI registry, against pulling the same blobs with the
//! OCI client alone, side by side in one run (rounds alternate so the machine's drift hits both
//! alike). The pull writes each layer to a file while checking its SHA-256 (`Remote::blob_to_file`,
//! what any careful puller does); the registration does that into the blob store, then builds the manifest,
//! verifies the cosign signature (a bundle referrer by a trusted key), runs the release gate and
//! signs the release record. The ratio is the overhead of governing the model on the way in.
//!
//! The OCI registry is the CNCF distribution registry (`docker-registry`, plain HTTP on
//! loopback); Fulcrum runs in this process (SQLite, local blobs).

use std::time::Instant;

use fulcrum_oci::publish::{self, FileSource};
use fulcrum_oci::remote::{Remote, Settings, Target};
use fulcrum_sign::{Alg, LocalKey, Signer};
use serde_json::json;

use crate::lab::{Lab, who};

/// Fill `path` with `size` bytes of a cheap pseudo-random stream (incompressible enough).
fn write_noise(path: &std::path::Path, size: u64, seed: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

pub async fn run(mib: u64, files: u64, rounds: usize) -> anyhow::Result<()> {
    let reg = fulcrum_testkit::oci::Registry::start()
        .ok_or_else(|| anyhow::anyhow!("docker-registry is not installed (scripts/test.sh installs it)"))?;
    let key = LocalKey::ephemeral(Alg::EcdsaP256Sha256)?;
    let policy = fulcrum_server::release::ReleasePolicy {
        require_signature: true,
        signers: vec![key.public_key().clone()],
        ..Default::default()
    };
    let host = reg.host.clone();
    let lab = Lab::start_with(
        move |c| {
            c.release_policy = policy;
            c.oci = Settings { insecure: vec![host], basic: None };
        },
        None,
    )
    .await?;
    let settings = Settings { insecure: vec![reg.host.clone()], basic: None };
    let remote = Remote::new(&settings);
    let t = Target::parse(&format!("{}/bench/model:v1", reg.host))?;

    eprintln!("writing and pushing a {mib} MiB ModelPack in {files} raw layers…");
    let src = tempfile::tempdir()?;
    let per = (mib << 20) / files;
    let mut locals = vec![];
    for i in 0..files {
        let p = src.path().join(format!("shard-{i:02}.safetensors"));
        let path = p.clone();
        tokio::task::spawn_blocking(move || write_noise(&path, per, 0x9e37_79b9_7f4a_7c15 ^ i)).await??;
        locals.push((format!("model-{i:02}-of-{files:02}.safetensors"), p));
    }
    let sources: Vec<FileSource<'_>> = locals.iter().map(|(path, local)| FileSource { path, local }).collect();
    let (digest, manifest) =
        publish::modelpack(&remote, &t, "bench", "1", &sources, Default::default(), Some("v1")).await?;
    drop(src);
    publish::attach_bundle(
        &remote,
        &t,
        &digest,
        fulcrum_oci::cosign::sign_bundle(&digest, &key)?,
        fulcrum_oci::cosign::COSIGN_SIGN_PREDICATE,
    )
    .await?;
    who(&lab.url, "ci")?.post("/v1/models", &json!({"name": "bench", "domain": "bench"})).await?;
    let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
    let pinned = t.pinned(&digest);

    let mut pull_secs = vec![];
    let mut register_secs = vec![];
    for round in 0..rounds {
        // The OCI client alone: every layer to a file, its SHA-256 checked.
        let out = tempfile::tempdir()?;
        let start = Instant::now();
        for (i, layer) in manifest.layers.iter().enumerate() {
            remote.blob_to_file(&t, &layer.digest, &out.path().join(format!("l{i}")), u64::MAX).await?;
        }
        let pull = start.elapsed().as_secs_f64();
        drop(out);
        // Fulcrum: register from the OCI registry by digest.
        let start = Instant::now();
        let v = who(&lab.url, "ci")?
            .post(
                "/v1/models/bench/oci-imports",
                &json!({"version": format!("r{round}"), "oci": pinned,
                        "model_card": {"owner": "bench", "intended_use": "bench"}, "revalidate_by": "2099-01-01T00:00:00Z"}),
            )
            .await?;
        let register = start.elapsed().as_secs_f64();
        anyhow::ensure!(v["release"]["release_gate"]["artifact_signature"]["format"] == "cosign-bundle", "{v}");
        #[allow(clippy::cast_precision_loss)]
        let mibs = |s: f64| total as f64 / f64::from(1u32 << 20) / s;
        println!(
            "round {round}: oci-client pull {pull:.2} s ({:.0} MiB/s)   fulcrum register {register:.2} s ({:.0} MiB/s)",
            mibs(pull),
            mibs(register)
        );
        pull_secs.push(pull);
        register_secs.push(register);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, r) = (median(&mut pull_secs), median(&mut register_secs));
    println!();
    println!("median: pull {p:.2} s, register {r:.2} s; register / pull = {:.2}x", r / p);
    println!(
        "machine: {} cores; {mib} MiB in {files} raw layers, {rounds} rounds",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    Ok(())
}
