//! Benchmark tooling for `bench/resolve-load.sh`.
//!
//! - `seed`: fill a data dir with many models and versions through the real store code (in one
//!   non-durable pass, which is only for seeding), each model with an Approved version behind a
//!   `production` alias.
//! - `bare`: an axum server whose one handler returns fixed bytes with the same headers as a
//!   resolve answer: the ceiling the resolve handler is compared against.
//! - `policy`: decision latency of the default policy, and of the access check as served.
//! - `guards`: revocation → quiesced for 1, 100 and 1,000 guards in one process.
//! - `gateway`: the gateway's added latency over direct calls to the upstream.
//! - `events`: end-to-end event latency to a NATS JetStream subscriber.
//! - `ledger`: the audit ledger's durable append rate and proof generation time.
//! - `identity`: resolve throughput with OIDC tokens and with mutual TLS, against tokens-file
//!   callers over HTTP and HTTPS.
//! - `blobs`: what hashing every served byte costs (full and ranged downloads).
//! - `replicas`: three registries on one PostgreSQL: commit → visible on the others, resolve
//!   throughput while the others take writes, revocation → quiesced for guards on all three.

mod blobs;
mod events;
mod gateway;
mod guards;
mod identity;
mod lab;
mod ledger;
mod mlflow;
mod oci;
mod replicas;
mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
use clap::{Parser, Subcommand};
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::{Actor, Stage};
use fulcrum_core::{AliasName, Digest, FileEntry, Manifest, ModelName, VersionLabel};
use fulcrum_store::{Govern, GovernCtx, NewModel, NewVersion, Store, StoreOptions};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Seed `<data-dir>/registry.db` with models × versions (tenant `bench`).
    Seed {
        #[arg(long)]
        data_dir: PathBuf,
        /// Seed this PostgreSQL database instead of `<data-dir>/registry.db`.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 1000)]
        models: usize,
        #[arg(long, default_value_t = 100)]
        versions_per_model: usize,
    },
    /// The web console's page times at `models × versions_per_model` versions.
    Console {
        #[arg(long, default_value_t = 100)]
        models: usize,
        #[arg(long, default_value_t = 100)]
        versions_per_model: usize,
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// `GET /api/2.0/mlflow/registered-models/alias` on Fulcrum and on a real MLflow server,
    /// side by side (requests/s and p99).
    MlflowAlias {
        #[arg(long, default_value_t = 100)]
        models: usize,
        #[arg(long, default_value_t = 8)]
        conns: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// Register a large ModelPack from a local OCI registry vs pulling the same blobs with the
    /// OCI client alone, side by side.
    OciRegister {
        #[arg(long, default_value_t = 2048)]
        mib: u64,
        #[arg(long, default_value_t = 4)]
        files: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Decision latency of the default policy (access check and the Approved gate), from
    /// `threads` threads at once.
    Policy {
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
    /// Revocation → quiesced for many guards at once (in-process registry and guards).
    Guards {
        /// Guard counts to measure, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        counts: Vec<usize>,
        /// Longest random wait between a guard's quiesce and its reload, milliseconds (default:
        /// the guard's own default).
        #[arg(long)]
        jitter_ms: Option<u64>,
        /// Stop the version with a critical finding (the findings watcher quarantines it)
        /// instead of a revocation.
        #[arg(long)]
        finding: bool,
    },
    /// The gateway's added latency: interleaved rounds direct vs through the gateway.
    Gateway {
        /// Connection counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        conns: Vec<usize>,
        /// Fixed loads (requests/s over all connections) measured besides the closed loop.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        rates: Vec<f64>,
        /// Rounds per path, interleaved.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
        /// Seconds per round.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Milliseconds each upstream answer takes (a model's inference time).
        #[arg(long, default_value_t = 0)]
        compute_ms: u64,
    },
    /// Resolve throughput by authentication: tokens file, OIDC JWT, TLS + token, mutual TLS.
    Identity {
        /// Models released (each with `production`).
        #[arg(long, default_value_t = 100)]
        models: usize,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        /// Rounds per variant, interleaved.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per round.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// End-to-end event latency: agent report → committed → NATS JetStream → subscriber.
    Events {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Reporters at once in the second run.
        #[arg(long, default_value_t = 16)]
        conns: usize,
    },
    /// Durable event rate through the registry's request path: agent reports over HTTP, each
    /// answered once its event is committed (group commit), at several connection counts.
    Reports {
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        conns: Vec<usize>,
        /// Seconds per connection count.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// The audit ledger: durable append rate, proof generation at large sizes.
    Ledger {
        /// Tree sizes to seed and prove in.
        #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
        sizes: Vec<u64>,
        /// Random proofs per size.
        #[arg(long, default_value_t = 2000)]
        proofs: usize,
        /// Seconds per append-rate run.
        #[arg(long, default_value_t = 5.0)]
        append_secs: f64,
    },
    /// Download throughput of a blob hashed while it is served, against SHA-256 alone.
    Blobs {
        #[arg(long, default_value_t = 256)]
        mib: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Storage seams side by side: registrations and durable events on SQLite vs PostgreSQL,
    /// and a large download through the registry vs pre-signed from S3.
    Storage {
        /// Publishers registering at once.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds per registration / event run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Event writers at once.
        #[arg(long, default_value_t = 256)]
        event_tasks: usize,
        /// Size of the downloaded file.
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Three replicas on one PostgreSQL + S3: commit on one → visible in the others' signed
    /// answers, resolve throughput of one while the others take writes (vs the bare handler and
    /// vs the others idle), and revocation → quiesced for guards spread over the three.
    Replicas {
        /// Alias moves measured for commit → visible.
        #[arg(long, default_value_t = 200)]
        moves: usize,
        /// Guards spread over the three replicas.
        #[arg(long, default_value_t = 1000)]
        guards: usize,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        /// Rounds per variant, interleaved.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per round.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Parts to run: visible, resolve, guards.
        #[arg(long, value_delimiter = ',', default_value = "visible,resolve,guards")]
        parts: Vec<String>,
    },
    /// What drift binning costs the gateway: 20-feature requests through a gateway without and
    /// with a reference profile, interleaved.
    DriftGateway {
        #[arg(long, default_value_t = 16)]
        conns: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// `/metrics` of a registry with many registered versions of which a few serve: scrape time
    /// and size, and how many per-version series it carries.
    Metrics {
        #[arg(long, default_value_t = 1000)]
        models: usize,
        #[arg(long, default_value_t = 10)]
        versions_per_model: usize,
        /// Versions reported as serving.
        #[arg(long, default_value_t = 50)]
        serving: usize,
        #[arg(long, default_value_t = 200)]
        scrapes: usize,
    },
    /// Serve fixed bytes at /v1/resolve.
    Bare {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        body: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Seed { data_dir, database_url, models, versions_per_model } => {
            seed(data_dir, database_url, models, versions_per_model).await
        }
        Cmd::Bare { listen, body } => bare(listen, body).await,
        Cmd::Console { models, versions_per_model, requests } => {
            console_bench(models, versions_per_model, requests).await
        }
        Cmd::Guards { counts, jitter_ms, finding } => guards::run(&counts, jitter_ms, finding).await,
        Cmd::Gateway { conns, rates, rounds, secs, compute_ms } => {
            gateway::run(&conns, &rates, rounds, secs, compute_ms).await
        }
        Cmd::Events { count, conns } => events::run(count, conns).await,
        Cmd::MlflowAlias { models, conns, rounds, secs } => mlflow::run(models, conns, rounds, secs).await,
        Cmd::OciRegister { mib, files, rounds } => oci::run(mib, files, rounds).await,
        Cmd::Reports { conns, secs } => events::reports(&conns, secs).await,
        Cmd::Ledger { sizes, proofs, append_secs } => ledger::run(&sizes, proofs, append_secs).await,
        Cmd::Identity { models, conns, rounds, secs } => identity::run(models, conns, rounds, secs).await,
        Cmd::Blobs { mib, rounds } => blobs::run(mib, rounds).await,
        Cmd::DriftGateway { conns, rounds, secs } => gateway::drift(conns, rounds, secs).await,
        Cmd::Metrics { models, versions_per_model, serving, scrapes } => {
            metrics_bench(models, versions_per_model, serving, scrapes).await
        }
        Cmd::Replicas { moves, guards, conns, rounds, secs, parts } => {
            replicas::run(moves, guards, conns, rounds, secs, &parts).await
        }
        Cmd::Storage { clients, secs, event_tasks, mib, rounds } => {
            storage::run(clients, secs, event_tasks, mib, rounds).await
        }
        Cmd::Policy { threads, iterations } => {
            policy_bench(threads, iterations);
            served_access_bench(threads, iterations).await
        }
    }
}

async fn seed(dir: PathBuf, database_url: Option<String>, models: usize, per_model: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let db = match database_url {
        None => fulcrum_store::Database::Sqlite { path: dir.join("registry.db") },
        Some(url) => fulcrum_store::Database::Postgres { url, password: None },
    };
    let store = Store::connect(&db, StoreOptions { durable: false, read_connections: 1 }).await?;
    let policy: Digest = fulcrum_policy::Snapshot::default_set().digest().parse()?;
    let now = time::OffsetDateTime::now_utc();
    let rm = Actor { subject: "rm".into(), role: Role::ReleaseManager };
    let ana = Actor { subject: "ana".into(), role: Role::Approver };
    let bo = Actor { subject: "bo".into(), role: Role::SecurityOfficer };
    let record = Digest::of(b"bench release record");
    for m in 0..models {
        let name = format!("model-{m:05}");
        store
            .create_model(
                NewModel {
                    tenant: "bench".into(),
                    name: ModelName::parse(&name)?,
                    domain: "bench".into(),
                    description: String::new(),
                    owners: vec![],
                    labels: Default::default(),
                },
                "ci",
                now,
            )
            .await?;
        for v in 0..per_model {
            let manifest = Manifest::new(vec![FileEntry {
                path: "weights.bin".into(),
                size: 1 << 20,
                digest: Digest::of(format!("{m}/{v}").as_bytes()),
            }])?;
            let nv = NewVersion {
                label: VersionLabel::parse(&format!("v{v}"))?,
                manifest,
                record_digest: record,
                release: serde_json::json!({}),
                publisher: "ci".into(),
                chg_id: None,
            };
            store.register_version("bench", &name, nv, &policy, now).await?;
        }
        let ctx = GovernCtx::default();
        let v0 = "v0".to_owned();
        store
            .govern("bench", &name, &rm, Govern::Promote { version: v0.clone(), to: Stage::Staging }, &ctx, now)
            .await?;
        store.govern("bench", &name, &ana, Govern::Approve { version: v0.clone() }, &ctx, now).await?;
        store.govern("bench", &name, &bo, Govern::Approve { version: v0.clone() }, &ctx, now).await?;
        store
            .govern("bench", &name, &rm, Govern::Promote { version: v0.clone(), to: Stage::Approved }, &ctx, now)
            .await?;
        let alias = AliasName::parse("production")?;
        store
            .govern(
                "bench",
                &name,
                &rm,
                Govern::SetAlias { alias, version: v0, env: None, allow_downgrade: false },
                &GovernCtx { chg_id: Some("CHG-1".into()), ..ctx },
                now,
            )
            .await?;
    }
    store.close().await;
    println!("seeded {models} models × {per_model} versions into {}", dir.display());
    Ok(())
}

async fn bare(listen: SocketAddr, body: PathBuf) -> anyhow::Result<()> {
    let bytes = Bytes::from(std::fs::read(&body).with_context(|| format!("reading {}", body.display()))?);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("bare listening on http://{}", listener.local_addr()?);
    axum::serve(listener, bare_router(bytes)).await?;
    Ok(())
}

/// One handler at `/v1/resolve` returning `bytes` with the headers of a resolve answer: the
/// ceiling a registry's resolve is compared against.
fn bare_router(bytes: Bytes) -> Router {
    let sig = HeaderValue::from_static(
        "c2lnbmF0dXJlLXBsYWNlaG9sZGVyLXNhbWUtbGVuZ3RoLWFzLWFuLWVkMjU1MTktc2lnbmF0dXJlLi4uLi4uLi4uLg==",
    );
    Router::new().route(
        "/v1/resolve",
        get(move || {
            let (b, s) = (bytes.clone(), sig.clone());
            async move {
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.fulcrum.resolve.v1+json")),
                        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                        (HeaderName::from_static("fulcrum-signature"), s),
                    ],
                    b,
                )
            }
        }),
    )
}

/// `/metrics` with `models × per_model` registered versions of which `serving` report traffic.
async fn metrics_bench(models: usize, per_model: usize, serving: usize, scrapes: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let t = std::time::Instant::now();
    seed(dir.path().join("data"), None, models, per_model).await?;
    let seeded = t.elapsed();
    let lab = lab::Lab::start_on(dir).await?;
    let http = reqwest::Client::new();
    let mut buckets = [0u64; 15];
    buckets[4] = 90;
    buckets[6] = 10;
    for m in 0..serving.min(models) {
        for body in [
            serde_json::json!({"ref": format!("model-{m:05}@production"), "env": "prod", "kind": "stats", "version": "v0",
                "stats": {"window_s": 10, "requests": 100, "errors": 1, "refused": 0, "p50_us": 8000, "p99_us": 40000,
                          "latency_buckets": buckets, "latency_sum_us": 1_000_000}}),
        ] {
            let r =
                http.post(format!("{}/v1/agent-reports", lab.url)).bearer_auth("tok-agent").json(&body).send().await?;
            anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
        }
        let r = http
            .post(format!("{}/v1/startup-reports", lab.url))
            .bearer_auth("tok-agent")
            .json(&serde_json::json!({"ref": format!("model-{m:05}@production"), "env": "prod", "decision": "permit", "version": "v0"}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
    }
    // The reports reach the signals through the log reader.
    let series = |body: &str| body.lines().filter(|l| l.starts_with("fulcrum_version_requests_total{")).count();
    let start = std::time::Instant::now();
    loop {
        let body = http.get(format!("{}/metrics", lab.url)).send().await?.text().await?;
        if series(&body) >= serving.min(models) {
            break;
        }
        anyhow::ensure!(start.elapsed() < std::time::Duration::from_secs(30), "the reports never showed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut took = Vec::with_capacity(scrapes);
    let mut size = 0;
    let mut body = String::new();
    for _ in 0..scrapes {
        let t = std::time::Instant::now();
        body = http.get(format!("{}/metrics", lab.url)).send().await?.text().await?;
        took.push(t.elapsed());
        size = body.len();
    }
    took.sort();
    let version_lines = body.lines().filter(|l| l.starts_with("fulcrum_version_")).count();
    let pct = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "| registered versions | serving | per-version series lines | body | scrape p50 | scrape p99 | seeded in |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {version_lines} | {:.1} KiB | {:.2} ms | {:.2} ms | {:.0} s |",
        models * per_model,
        serving.min(models),
        size as f64 / 1024.0,
        pct(0.5),
        pct(0.99),
        seeded.as_secs_f64()
    );
    Ok(())
}

fn policy_bench(threads: usize, iterations: usize) {
    let policy = fulcrum_policy::Policy::compile(&fulcrum_policy::Snapshot::default_set()).expect("default policy");
    let access = serde_json::json!({"principal": {"subject": "rm", "role": "release-manager", "tenant": "acme", "domain": "*"},
        "action": "promote", "resource": {"tenant": "acme", "domain": "risk"}});
    let gate = serde_json::json!({"to": "Approved", "now_ns": 100, "version": {"publisher": "ci", "revalidate_by_ns": 200,
        "model_card": {"owner": "risk", "intended_use": "scoring"},
        "approvals": [{"subject": "ana", "role": "approver"}, {"subject": "bo", "role": "security-officer"}],
        "findings": [{"id": "CVE-1", "severity": "critical", "status": "open"}]},
        "waivers": [{"id": "W-1", "finding": "CVE-1", "expires_ns": 500}]});
    for (name, package, input, log) in [
        ("access check (fulcrum.authz)", "fulcrum.authz", &access, false),
        ("Approved gate (fulcrum.promotion)", "fulcrum.promotion", &gate, false),
        ("Approved gate + masking + decision record, as logged", "fulcrum.promotion", &gate, true),
    ] {
        let mut all: Vec<std::time::Duration> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut v = Vec::with_capacity(iterations);
                        for _ in 0..iterations {
                            let t = std::time::Instant::now();
                            let out = policy.decide(package, input);
                            if log {
                                let mut stored = input.clone();
                                let erased = policy.mask(&mut stored);
                                let record = fulcrum_policy::DecisionRecord {
                                    decision_id: String::new(),
                                    path: format!("{package}/decision"),
                                    input: stored,
                                    result: out.clone(),
                                    bundles: serde_json::json!({"fulcrum": {"revision": policy.digest()}}),
                                    timestamp: String::new(),
                                    labels: serde_json::json!({}),
                                    erased,
                                    masked: vec![],
                                    chg_id: None,
                                    inc_id: None,
                                };
                                std::hint::black_box(serde_json::to_string(&record).expect("serialises"));
                            }
                            v.push(t.elapsed());
                            assert!(out.allow, "{out:?}");
                        }
                        v
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
        });
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!("| {name} | {threads} | {} | {:?} | {:?} | {:?} |", all.len(), pct(0.5), pct(0.99), pct(0.999));
    }
}

/// The access check as the API runs it: `Access::check` with the policy in force, memoised per
/// snapshot, each decision queued to the SQLite decision log; `threads` tasks at once on the
/// multi-threaded runtime, 64 different principals. Waits for every record to be stored.
async fn served_access_bench(threads: usize, iterations: usize) -> anyhow::Result<()> {
    use fulcrum_core::identity::{Action, Principal, Role};
    use fulcrum_server::access::{Access, Resource};
    let dir = std::env::temp_dir().join(format!("fulcrum-bench-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = fulcrum_store::Store::open(&dir.join("registry.db"), fulcrum_store::StoreOptions::default()).await?;
    let snapshot = fulcrum_policy::Snapshot::default_set();
    let current = std::sync::Arc::new(fulcrum_server::policy::Current {
        policy: fulcrum_policy::Policy::compile(&snapshot)?,
        digest: snapshot.digest().parse()?,
        snapshot: snapshot.canonical_bytes(),
        envelope: vec![],
    });
    let access = std::sync::Arc::new(Access::start(store));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..threads)
        .map(|t| {
            let (access, current) = (access.clone(), current.clone());
            tokio::spawn(async move {
                let mut v = Vec::with_capacity(iterations);
                for i in 0..iterations {
                    let who = Principal {
                        subject: format!("agent-{}", (i + t) % 64),
                        role: Role::Serving,
                        tenant: "acme".into(),
                        domain: "*".into(),
                        env: Some(fulcrum_core::lifecycle::Env::Prod),
                        purpose: None,
                    };
                    let now = time::OffsetDateTime::now_utc();
                    let s = std::time::Instant::now();
                    let out = access.check(&current, now, &who, Action::Resolve, Resource::tenant("acme")).await;
                    v.push(s.elapsed());
                    assert!(out.allow, "{out:?}");
                }
                v
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    access.flush().await;
    let took = started.elapsed();
    let written = access.written.load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(written as usize == all.len(), "{written} of {} decisions stored", all.len());
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "| access check as served (memoised, logged to SQLite) | {threads} | {} | {:?} | {:?} | {:?} |",
        all.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    println!(
        "\n{} decisions stored in {:.2?} including the final flush ({:.0} decisions/s)",
        written,
        took,
        written as f64 / took.as_secs_f64()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The web console's server time per page at `models × per_model` versions: signed in once,
/// each page fetched `requests` times over loopback (so the figure is the server's time plus a
/// loopback round trip), p50/p99 and the bytes each page transfers.
async fn console_bench(models: usize, per_model: usize, requests: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    seed(dir.path().join("data"), None, models, per_model).await?;
    let mid = format!("model-{:05}", models / 2);
    let windows = traffic(&dir.path().join("data"), &mid, &format!("v{}", per_model / 2)).await?;
    eprintln!("seeded {windows} gateway windows for {mid}");
    let lab = lab::Lab::start_on(dir).await?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let r = http.post(format!("{}/ui/login", lab.url)).form(&[("token", "tok-rm")]).send().await?;
    anyhow::ensure!(r.status() == reqwest::StatusCode::SEE_OTHER, "sign-in refused: {}", r.status());
    let cookie = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    let version = format!("/ui/models/{mid}/versions/v{}", per_model / 2);
    let size = {
        let r = http.get(format!("{}/ui/audit", lab.url)).header("cookie", &cookie).send().await?.text().await?;
        let at = r.find("id=\"size\">").ok_or_else(|| anyhow::anyhow!("no ledger size on the audit page"))? + 10;
        r[at..].chars().take_while(char::is_ascii_digit).collect::<String>()
    };
    let pages = [
        ("models", "/ui/".to_owned()),
        ("models, filtered by stage", "/ui/?stage=Approved".to_owned()),
        ("model", format!("/ui/models/{mid}")),
        ("version", version.clone()),
        ("dashboard, 1 h", format!("{version}/dashboard?range=1h")),
        ("dashboard, 24 h", format!("{version}/dashboard?range=24h")),
        ("dashboard figures, 24 h (JSON)", format!("{version}/dashboard.json?range=24h")),
        ("incidents", "/ui/incidents".to_owned()),
        ("policy", "/ui/policy".to_owned()),
        ("audit", "/ui/audit".to_owned()),
        ("audit leaves (the browser's check)", format!("/ui/audit/leaves?size={size}")),
        ("ledger entry proof", "/ui/audit/proof/1".to_owned()),
        ("sign-in", "/ui/login".to_owned()),
    ];
    println!("| page | first view | p50 | p99 | bytes |");
    println!("|---|---|---|---|---|");
    for (name, path) in pages {
        let mut took = Vec::with_capacity(requests);
        let mut bytes = 0;
        let mut first = std::time::Duration::ZERO;
        for i in 0..requests + 5 {
            let t = std::time::Instant::now();
            let r = http.get(format!("{}{path}", lab.url)).header("cookie", &cookie).send().await?;
            anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
            bytes = r.bytes().await?.len();
            if i == 0 {
                first = t.elapsed();
            }
            if i >= 5 {
                took.push(t.elapsed());
            }
        }
        took.sort();
        let pct = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)].as_secs_f64() * 1e3;
        println!(
            "| {name} (`{path}`) | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} KiB |",
            first.as_secs_f64() * 1e3,
            pct(0.5),
            pct(0.99),
            bytes as f64 / 1024.0
        );
    }
    Ok(())
}

/// A day of gateway windows (every 10 s, a canary and a production gateway) for one version,
/// appended to the seeded registry's log: what its dashboard folds.
async fn traffic(dir: &std::path::Path, model: &str, version: &str) -> anyhow::Result<u64> {
    let db = fulcrum_store::Database::Sqlite { path: dir.join("registry.db") };
    let store = Store::connect(&db, StoreOptions { durable: false, read_connections: 1 }).await?;
    let now = time::OffsetDateTime::now_utc();
    let mut events = Vec::new();
    for i in 0..8_640i64 {
        for (alias, slow) in [("canary", 3_000u64), ("production", 1_000)] {
            let mut buckets = [0u64; 15];
            buckets[fulcrum_core::event::ServingStats::bucket_of(slow + (i as u64 % 7) * 500)] = 95;
            buckets[fulcrum_core::event::ServingStats::bucket_of(slow * 20)] = 4;
            let at = now - time::Duration::seconds(10 * i);
            events.push(serde_json::from_value(serde_json::json!({
                "event": "serving_stats", "ts": at.format(&time::format_description::well_known::Rfc3339)?,
                "model": model, "version": version, "tenant": "bench", "domain": "bench", "approvals": [],
                "alias": alias, "env": "prod",
                "stats": {"window_s": 10, "requests": 100, "errors": 1, "refused": 0, "p50_us": slow, "p99_us": slow * 20,
                          "latency_buckets": buckets, "latency_sum_us": slow * 100},
            }))?);
        }
    }
    events.reverse();
    let mut n = 0;
    for chunk in events.chunks(2_000) {
        n += store.record_events(chunk.to_vec()).await?;
    }
    Ok(n)
}
