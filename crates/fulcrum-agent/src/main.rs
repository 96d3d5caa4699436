//! `fulcrum-agent`: verified startup for model servers and batch jobs.
//!
//! Exit status: 0 on permit; 2 on a deny (one line on stderr: `deny <reason>: <why>`); 1 for
//! usage or local errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use fulcrum_agent::fetch::{Agent, Stop};
use fulcrum_agent::gateway::{Gateway, Protocol, Route};
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::oip::Oip;
use fulcrum_agent::report::Reporter;
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
    /// CA certificate(s) (PEM) the registry's certificate must chain to; only these are trusted.
    #[arg(long, env = "FULCRUM_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// This agent's client certificate (PEM) for a registry that requires mutual TLS: its SAN is
    /// the workload identity the registry maps to a role. With --client-key.
    #[arg(long, env = "FULCRUM_CLIENT_CERT", global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    #[arg(long, env = "FULCRUM_CLIENT_KEY", global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The pinned trust bundle (JSON), delivered out of band: resolve answers must verify against it.
    #[arg(long, env = "FULCRUM_TRUST_BUNDLE", global = true)]
    bundle: Option<PathBuf>,
    /// Local state: high-water marks and the verified blob cache.
    #[arg(long, env = "FULCRUM_AGENT_STATE", global = true, default_value = ".fulcrum-agent")]
    state: PathBuf,
    /// Largest accepted clock skew against the registry's signed time, in seconds.
    #[arg(long, global = true, default_value_t = 30)]
    max_skew: i64,
    /// Before placing a version, demand inclusion proofs from the registry's audit ledger: the
    /// event behind the resolve answer and the release gate's decision, under a checkpoint
    /// signed by a key of the pinned bundle. Refused with `ledger_unproven` otherwise.
    #[arg(long, env = "FULCRUM_REQUIRE_LEDGER_PROOF", global = true)]
    require_ledger_proof: bool,
    /// Name reported with startup decisions.
    #[arg(long, env = "HOSTNAME", global = true, default_value = "fulcrum-agent")]
    name: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
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
    /// as a KServe storage initializer: `fetch fulcrum://NAME@ALIAS[?env=ENV] DEST`, or
    /// `fetch oci://REPOSITORY@sha256:<hex> DEST` for the version registered from that OCI
    /// manifest (through the registry; a tag is refused).
    Fetch {
        #[arg(long = "ref")]
        reference: Option<String>,
        #[arg(long, env = "FULCRUM_ENV")]
        env: Option<String>,
        #[arg(long)]
        dest: Option<PathBuf>,
        /// `fulcrum://NAME@ALIAS[?env=ENV]` or `oci://REPOSITORY@sha256:<hex>` (the
        /// storage-initializer form).
        source: Option<String>,
        /// Where to place the files (the storage-initializer form).
        target: Option<PathBuf>,
    },
    /// Fetch and place like `fetch`, then keep guarding the served version: not ready at once on
    /// its revocation or quarantine, purge, roll back through the full check. Serves `/readyz`
    /// (200 or 503), `/timeline` and `/metrics` on LISTEN for the orchestrator.
    Guard {
        #[arg(long = "ref")]
        reference: String,
        #[arg(long)]
        env: String,
        #[command(flatten)]
        place: Placement,
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
    },
    /// Guard one or more aliases of a model and serve it through an enforcing reverse proxy:
    /// only a permitted version answers, requests are pinned to it (Open Inference Protocol),
    /// the model card's guardrails apply, traffic splits by route weight, and a quiesced version
    /// answers 503 at once. Per-version figures go to the registry.
    Gateway {
        /// The model; each route is one of its aliases.
        #[arg(long)]
        model: String,
        #[arg(long)]
        env: String,
        /// `ALIAS=WEIGHT`, repeatable: e.g. `--route production=90 --route canary=10`.
        #[arg(long = "route", default_value = "production=100")]
        routes: Vec<String>,
        #[command(flatten)]
        place: Placement,
        /// The model server behind the gateway.
        #[arg(long)]
        upstream: String,
        /// `oip` (KServe V2: requests pinned to the served version) or `http` (one route, paths unchanged).
        #[arg(long, default_value = "oip")]
        protocol: String,
        /// Where callers are served.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// `/readyz`, `/timeline`, `/metrics`.
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin: std::net::SocketAddr,
        /// Header with the caller's declared purpose (set by the authenticating ingress); not
        /// used when the gateway checks callers' tokens itself (--caller-issuer).
        #[arg(long, default_value = "x-fulcrum-purpose")]
        purpose_header: String,
        /// The IdP's JWKS as a file, instead of the keys its discovery document names.
        #[arg(long, requires_all = ["caller_issuer", "caller_audience"])]
        caller_jwks: Option<PathBuf>,
        /// The IdP whose tokens callers must send (`iss`); its keys are found by discovery and
        /// followed when it rotates them. The purpose comes from the token's `purpose` claim.
        #[arg(long, requires = "caller_audience")]
        caller_issuer: Option<String>,
        /// Required `aud` of callers' tokens.
        #[arg(long)]
        caller_audience: Option<String>,
        /// Longest accepted token lifetime (`exp - iat`), seconds.
        #[arg(long, default_value_t = 3600)]
        caller_max_lifetime: u64,
        /// Seconds between per-version reports to the registry.
        #[arg(long, default_value_t = 30)]
        report_every: u64,
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
    let tls = fulcrum_client::ClientTls {
        ca: cli.ca_file.clone(),
        cert: cli.client_cert.clone(),
        key: cli.client_key.clone(),
    };
    let client = match Client::with_tls(&cli.registry, token, &tls) {
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
    let mut agent = Agent::new(client, bundle, state, time::Duration::seconds(cli.max_skew), cli.name.clone());
    agent.require_ledger_proof = cli.require_ledger_proof;
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
            // KServe's `oci://REPOSITORY@sha256:…`: through the registry, pinned by digest.
            if let Some(oci) = source.as_deref().and_then(|s| s.strip_prefix("oci://")) {
                let origin = match fulcrum_agent::fetch::OciOrigin::parse(oci) {
                    Ok(o) => o,
                    Err(e) => return fail(e),
                };
                let (env, dest) = match (env.clone(), dest.clone().or_else(|| target.clone())) {
                    (Some(e), Some(d)) => (e, d),
                    (None, _) => return fail("the environment: --env or FULCRUM_ENV"),
                    (_, None) => return fail("where to place the files: a destination"),
                };
                return report_fetch(agent.fetch_oci(&origin, &env, &dest).await, &dest, cli.json);
            }
            let (reference, env, dest) = match fetch_args(reference, env, dest, source, target) {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            fetch(&agent, &reference, &env, &dest, cli.json).await
        }
        Cmd::Guard { reference, env, place, listen } => {
            let reporter = Arc::new(Reporter::start(agent.client.clone()));
            let mut guard = match place.guard(agent, reference, env) {
                Ok(g) => g,
                Err(e) => return fail(e),
            };
            guard.reporter = Some(reporter);
            let guard = Arc::new(guard);
            if let Err(e) = admin(*listen, vec![guard.clone()], None).await {
                return fail(e);
            }
            eprintln!("fulcrum-agent: guarding {reference} in {env}; readiness on http://{listen}/readyz");
            guard
                .run(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
            ExitCode::SUCCESS
        }
        Cmd::Gateway {
            model,
            env,
            routes,
            place,
            upstream,
            protocol,
            listen,
            admin: admin_at,
            purpose_header,
            report_every,
            caller_jwks,
            caller_issuer,
            caller_audience,
            caller_max_lifetime,
        } => {
            let protocol = match protocol.as_str() {
                "oip" => Protocol::Oip,
                "http" => Protocol::Http,
                other => return fail(format!("protocol {other}: oip or http")),
            };
            let reporter = Arc::new(Reporter::start(agent.client.clone()));
            let mut built = Vec::new();
            for r in routes {
                let Some((alias, weight)) = r.split_once('=').and_then(|(a, w)| Some((a, w.parse::<u32>().ok()?)))
                else {
                    return fail(format!("route {r}: ALIAS=WEIGHT"));
                };
                // Each route keeps its own marks and cache: two guards never write one file.
                let state = match StateDir::open(&cli.state.join(alias)) {
                    Ok(s) => s,
                    Err(e) => return fail(format!("state dir: {e}")),
                };
                let name = format!("{}-{alias}", agent.name);
                let mut a = Agent::new(agent.client.clone(), agent.bundle.clone(), state, agent.max_skew, name);
                a.require_ledger_proof = agent.require_ledger_proof;
                let mut g = match place.guard(a, &format!("{model}@{alias}"), env) {
                    Ok(g) => g,
                    Err(e) => return fail(e),
                };
                g.reporter = Some(reporter.clone());
                built.push(Route { alias: alias.to_owned(), weight, guard: Arc::new(g) });
            }
            let guards: Vec<Arc<Guard>> = built.iter().map(|r| r.guard.clone()).collect();
            let mut gw = match Gateway::new(built, upstream, protocol) {
                Ok(g) => g,
                Err(e) => return fail(e),
            };
            match axum::http::HeaderName::from_bytes(purpose_header.to_ascii_lowercase().as_bytes()) {
                Ok(h) => gw.purpose_header = h,
                Err(_) => return fail(format!("{purpose_header}: not a header name")),
            }
            if let (Some(iss), Some(aud)) = (caller_issuer, caller_audience) {
                use fulcrum_agent::caller::CallerAuth;
                let auth = match caller_jwks {
                    Some(jwks) => std::fs::read(jwks)
                        .map_err(|e| format!("{}: {e}", jwks.display()))
                        .and_then(|b| CallerAuth::from_jwks(&b, iss, aud))
                        .map(|mut a| {
                            a.rules.max_lifetime_s = *caller_max_lifetime;
                            a
                        }),
                    None => {
                        let mut c = fulcrum_oidc::IssuerConfig::new(iss, aud);
                        c.max_token_lifetime_s = *caller_max_lifetime;
                        CallerAuth::discover(c).await
                    }
                };
                match auth {
                    Ok(a) => gw.callers = Some(a),
                    Err(e) => return fail(e),
                }
            }
            let gw = Arc::new(gw);
            if let Err(e) = admin(*admin_at, guards.clone(), Some(gw.clone())).await {
                return fail(e);
            }
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => return fail(format!("listen {listen}: {e}")),
            };
            tokio::spawn(gw.clone().report(reporter, std::time::Duration::from_secs((*report_every).max(1))));
            tokio::spawn(fulcrum_agent::gateway::serve(gw.clone(), listener));
            eprintln!(
                "fulcrum-agent: gateway for {model} in {env} on http://{listen} → {upstream}; admin on http://{admin_at}"
            );
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let runs = guards.iter().map(|g| g.run(std::future::pending::<()>()));
            tokio::select! {
                () = stop => {}
                _ = futures_util::future::join_all(runs) => {}
            }
            ExitCode::SUCCESS
        }
        Cmd::Pin { .. } => unreachable!("handled above"),
    }
}

/// Where a guard places the served version and whom it tells.
#[derive(clap::Args, Clone)]
struct Placement {
    /// Place into this one directory (the model server reads it).
    #[arg(long, conflicts_with = "repo")]
    dest: Option<PathBuf>,
    /// Place into a model repository, `<repo>/<name>/<version>/` (Open Inference Protocol layout).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// The model server's base URL: told `load`/`unload` through its repository API (needs --repo).
    #[arg(long, requires = "repo")]
    oip: Option<String>,
    /// Command told about each change: `HOOK quiesce|loaded <name> <version> <dir>`.
    #[arg(long)]
    hook: Option<PathBuf>,
}

impl Placement {
    fn guard(&self, agent: Agent, reference: &str, env: &str) -> Result<Guard, String> {
        let layout = match (&self.dest, &self.repo) {
            (Some(d), None) => Layout::Dir(d.clone()),
            (None, Some(r)) => Layout::Repository(r.clone()),
            _ => return Err("where to place the model: --dest DIR or --repo DIR".into()),
        };
        let mut g = Guard::new(agent, reference, env, layout);
        g.hook.clone_from(&self.hook);
        g.oip = self.oip.as_deref().map(Oip::new).transpose()?;
        Ok(g)
    }
}

/// Serve the orchestrator's view of the guards: readiness, timelines, metrics.
async fn admin(
    listen: std::net::SocketAddr,
    guards: Vec<Arc<Guard>>,
    gateway: Option<Arc<Gateway>>,
) -> Result<(), String> {
    use axum::http::StatusCode;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("listen {listen}: {e}"))?;
    let (g1, g2) = (guards.clone(), guards);
    let app = axum::Router::new()
        .route(
            "/readyz",
            axum::routing::get(move || {
                let g = g1.clone();
                async move {
                    let ready = g.iter().any(|g| g.is_ready());
                    let body = serde_json::json!({"ready": ready, "loaded": g.iter().map(|g| serde_json::json!({
                        "ref": g.reference, "ready": g.is_ready(), "version": g.loaded().map(|d| d.version)})).collect::<Vec<_>>()});
                    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(body))
                }
            }),
        )
        .route(
            "/timeline",
            axum::routing::get(move || {
                let g = g2.clone();
                async move {
                    axum::Json(g.iter().map(|g| serde_json::json!({"ref": g.reference, "steps": g.timeline()})).collect::<Vec<_>>())
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let gw = gateway.clone();
                async move { gw.map(|g| g.metrics()).unwrap_or_default() }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
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
            if src.starts_with("oci://") {
                return Err("an oci:// source is fetched with fetch_oci".into());
            }
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
    use std::io::IsTerminal as _;
    use std::sync::atomic::Ordering;
    // On a terminal, one progress line while the bytes arrive (never in logs or pipes).
    let printer = std::io::stderr().is_terminal().then(|| {
        let p = agent.progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let (done, total) = (p.done.load(Ordering::Relaxed), p.total.load(Ordering::Relaxed));
                if total > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
                    eprint!("\rfetching {:.1} / {:.1} MiB", mib(done.min(total)), mib(total));
                }
            }
        })
    });
    let outcome = agent.fetch(reference, env, dest).await;
    if let Some(p) = printer {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    report_fetch(outcome, dest, json)
}

/// What a fetch decided, on stdout (permit) or stderr (deny), as its exit code.
fn report_fetch(
    outcome: Result<fulcrum_agent::fetch::Permit, fulcrum_agent::fetch::Stop>,
    dest: &std::path::Path,
    json: bool,
) -> ExitCode {
    match outcome {
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
