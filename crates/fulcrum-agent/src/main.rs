//! `fulcrum-agent`: verified startup for model servers and batch jobs.
//!
//! Exit status: 0 on permit; 2 on a deny (one line on stderr: `deny <reason>: <why>`); 1 for
//! usage or local errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fulcrum_agent::fetch::{Agent, Stop};
use fulcrum_agent::state::StateDir;
use fulcrum_client::Client;
use fulcrum_sign::TrustBundle;

#[derive(Parser)]
#[command(name = "fulcrum-agent", version, about = "Serve only what the registry approved, signed and did not revoke")]
struct Cli {
    /// Registry base URL.
    #[arg(long, env = "FULCRUM_URL", global = true, default_value = "http://127.0.0.1:8080")]
    registry: String,
    /// File holding this agent's bearer token (re-read on every start; never logged).
    #[arg(long, env = "FULCRUM_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// The pinned trust bundle (JSON), delivered out of band: resolve answers must verify against it.
    #[arg(long, env = "FULCRUM_TRUST_BUNDLE", global = true)]
    bundle: Option<PathBuf>,
    /// Local state: high-water marks and the verified blob cache.
    #[arg(long, env = "FULCRUM_AGENT_STATE", global = true, default_value = ".fulcrum-agent")]
    state: PathBuf,
    /// Largest accepted clock skew against the registry's signed time, in seconds.
    #[arg(long, global = true, default_value_t = 30)]
    max_skew: i64,
    /// Name reported with startup decisions.
    #[arg(long, env = "HOSTNAME", global = true, default_value = "fulcrum-agent")]
    name: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Resolve a reference for an environment and print the pinned `name@sha256:…`.
    Resolve {
        #[arg(long = "ref")]
        reference: String,
        #[arg(long)]
        env: String,
    },
    /// Resolve, verify and place a model's files under DEST (init-container style). Also runs
    /// as a KServe storage initializer: `fetch fulcrum://NAME@ALIAS[?env=ENV] DEST`.
    Fetch {
        #[arg(long = "ref")]
        reference: Option<String>,
        #[arg(long, env = "FULCRUM_ENV")]
        env: Option<String>,
        #[arg(long)]
        dest: Option<PathBuf>,
        /// `fulcrum://NAME@ALIAS[?env=ENV]` (the storage-initializer form).
        source: Option<String>,
        /// Where to place the files (the storage-initializer form).
        target: Option<PathBuf>,
    },
    /// Fetch and place like `fetch`, then keep guarding the served version: not ready at once on
    /// its revocation or quarantine, purge, roll back through the full check. Serves `/readyz`
    /// (200 or 503) and `/timeline` on LISTEN for the orchestrator.
    Guard {
        #[arg(long = "ref")]
        reference: String,
        #[arg(long)]
        env: String,
        #[arg(long)]
        dest: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
        /// Command told about each change: `HOOK quiesce|loaded <name> <version> <dest>`.
        #[arg(long)]
        hook: Option<PathBuf>,
    },
    /// Fetch the registry's trust bundle (checked against its own keys) and write it to FILE.
    /// Trust on first use: prefer delivering the bundle out of band.
    Pin { file: PathBuf },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fulcrum-agent: {msg}");
    ExitCode::from(1)
}

fn deny(e: &Stop) -> ExitCode {
    eprintln!("fulcrum-agent: deny {}: {e}", e.code());
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let token = match &cli.token_file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t.trim().to_owned()),
            Err(e) => return fail(format!("token file {}: {e}", p.display())),
        },
        None => None,
    };
    let client = match Client::new(&cli.registry, token) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Cmd::Pin { file } = &cli.cmd {
        return match client.trust_bundle().await {
            Ok(b) => match std::fs::write(file, serde_json::to_vec_pretty(&b).expect("bundles serialise")) {
                Ok(()) => {
                    println!("pinned trust bundle v{} ({} keys) to {}", b.version, b.keys.len(), file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("{}: {e}", file.display())),
            },
            Err(e) => fail(e),
        };
    }
    let Some(bundle_path) = &cli.bundle else {
        return fail("a pinned trust bundle is required (--bundle FILE or FULCRUM_TRUST_BUNDLE)");
    };
    let bundle: TrustBundle = match std::fs::read(bundle_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => return fail(format!("trust bundle {}: {e}", bundle_path.display())),
    };
    let state = match StateDir::open(&cli.state) {
        Ok(s) => s,
        Err(e) => return fail(format!("state dir {}: {e}", cli.state.display())),
    };
    let agent =
        Agent { client, bundle, state, max_skew: time::Duration::seconds(cli.max_skew), name: cli.name.clone() };
    match &cli.cmd {
        Cmd::Resolve { reference, env } => match agent.resolve(reference, env).await {
            Ok(d) => {
                let pinned = format!("{}@{}", d.name, d.artifact_digest);
                if cli.json {
                    println!("{}", serde_json::json!({"pinned": pinned, "document": d}));
                } else {
                    println!("{pinned}");
                    eprintln!("version {} ({}), seq {}, policy {}", d.version, d.stage, d.seq, d.policy_digest);
                }
                ExitCode::SUCCESS
            }
            Err(e) => deny(&e),
        },
        Cmd::Fetch { reference, env, dest, source, target } => {
            let (reference, env, dest) = match fetch_args(reference, env, dest, source, target) {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            fetch(&agent, &reference, &env, &dest, cli.json).await
        }
        Cmd::Guard { reference, env, dest, listen, hook } => {
            let mut guard = fulcrum_agent::guard::Guard::new(agent, reference, env, dest.clone());
            guard.hook.clone_from(hook);
            let guard = std::sync::Arc::new(guard);
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => return fail(format!("listen {listen}: {e}")),
            };
            eprintln!("fulcrum-agent: guarding {reference} in {env}; readiness on http://{}/readyz", listen);
            let g = guard.clone();
            let app = axum::Router::new()
                .route(
                    "/readyz",
                    axum::routing::get(move || {
                        let g = g.clone();
                        async move {
                            let body =
                                serde_json::json!({"ready": g.is_ready(), "loaded": g.loaded().map(|d| d.version)});
                            let status = if g.is_ready() {
                                axum::http::StatusCode::OK
                            } else {
                                axum::http::StatusCode::SERVICE_UNAVAILABLE
                            };
                            (status, axum::Json(body))
                        }
                    }),
                )
                .route(
                    "/timeline",
                    axum::routing::get({
                        let g = guard.clone();
                        move || {
                            let g = g.clone();
                            async move { axum::Json(g.timeline()) }
                        }
                    }),
                );
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            guard
                .run(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
            ExitCode::SUCCESS
        }
        Cmd::Pin { .. } => unreachable!("handled above"),
    }
}

/// The two ways to name what to fetch: flags, or KServe's `SOURCE DEST`.
fn fetch_args(
    reference: &Option<String>,
    env: &Option<String>,
    dest: &Option<PathBuf>,
    source: &Option<String>,
    target: &Option<PathBuf>,
) -> Result<(String, String, PathBuf), String> {
    let (reference, query_env) = match (reference, source) {
        (Some(r), None) => (r.clone(), None),
        (None, Some(src)) => {
            let rest = src.strip_prefix("fulcrum://").ok_or("the source must be fulcrum://NAME@ALIAS[?env=ENV]")?;
            match rest.split_once('?') {
                Some((r, q)) => {
                    let env = q
                        .strip_prefix("env=")
                        .filter(|e| !e.contains('&'))
                        .ok_or("the only query the source takes is ?env=ENV")?;
                    (r.to_owned(), Some(env.to_owned()))
                }
                None => (rest.to_owned(), None),
            }
        }
        (Some(_), Some(_)) => return Err("give either --ref or a fulcrum:// source, not both".into()),
        (None, None) => return Err("what to fetch: --ref NAME@ALIAS or fulcrum://NAME@ALIAS".into()),
    };
    let env = query_env.or_else(|| env.clone()).ok_or("the environment: --env, FULCRUM_ENV or ?env= in the source")?;
    let dest = match (dest, target) {
        (Some(d), None) | (None, Some(d)) => d.clone(),
        (Some(_), Some(_)) => return Err("give either --dest or a positional destination, not both".into()),
        (None, None) => return Err("where to place the files: --dest DIR".into()),
    };
    Ok((reference, env, dest))
}

async fn fetch(agent: &Agent, reference: &str, env: &str, dest: &std::path::Path, json: bool) -> ExitCode {
    match agent.fetch(reference, env, dest).await {
        Ok(p) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"decision": "permit", "version": p.document.version,
                        "artifact_digest": p.document.artifact_digest, "files": p.manifest.files().len(),
                        "bytes": p.manifest.total_size(), "dest": dest})
                );
            } else {
                println!(
                    "permit {}@{} ({}): {} files, {} bytes in {}",
                    p.document.name,
                    p.document.version,
                    p.document.artifact_digest,
                    p.manifest.files().len(),
                    p.manifest.total_size(),
                    dest.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => deny(&e),
    }
}
