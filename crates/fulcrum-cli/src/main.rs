//! `fulcrum`: the registry server, the end-to-end demo, and the operator/CI command line.
//!
//! Every failure prints one clear line on stderr and exits non-zero; `--output json` prints the
//! registry's JSON answers unchanged for scripts.

mod audit;
mod commands;
mod demo;
mod login;
mod serve;
mod trust;
mod upload;

use std::process::ExitCode;

/// Write to standard output; a closed pipe (`fulcrum … | head -3`) ends the process quietly
/// with success, as Unix tools do, instead of a panic.
pub fn emit(s: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(s).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `print!` through [`emit`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::emit(format_args!($($t)*)) };
}

/// `println!` through [`emit`].
#[macro_export]
macro_rules! outln {
    () => { $crate::emit(format_args!("\n")) };
    ($($t:tt)*) => { $crate::emit(format_args!("{}\n", format_args!($($t)*))) };
}

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "fulcrum", version, about = "Fulcrum: a governed ML model registry")]
struct Cli {
    /// Registry base URL.
    #[arg(long, global = true, env = "FULCRUM_URL", default_value = "http://127.0.0.1:8740")]
    registry: String,
    /// Bearer token (prefer FULCRUM_TOKEN or --token-file so it stays out of shell history).
    #[arg(long, global = true, env = "FULCRUM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from a file.
    #[arg(long, global = true, env = "FULCRUM_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Where `fulcrum login` keeps the access token (default: ~/.config/fulcrum/credentials.json).
    /// Used when no --token or --token-file is given; refreshed before it expires.
    #[arg(long, global = true, env = "FULCRUM_CREDENTIALS")]
    credentials: Option<std::path::PathBuf>,
    /// CA certificate(s) (PEM) the registry's certificate must chain to; only these are trusted.
    #[arg(long, global = true, env = "FULCRUM_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for registries that require mutual TLS; with --client-key.
    #[arg(long, global = true, env = "FULCRUM_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long, global = true, env = "FULCRUM_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

// Parsed once per process; boxing the serve arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry (embedded default: SQLite + local blobs + local key under --data-dir).
    Serve(serve::ServeArgs),
    /// Run both end-to-end flows (Promotion→Deploy, Revocation→Rollback) on a temporary
    /// registry and print the event timeline.
    Demo(demo::DemoArgs),
    /// Models: create, get, list.
    #[command(subcommand)]
    Model(commands::ModelCmd),
    /// Versions: register, get, list, approve, promote, revoke, quarantine, release.
    #[command(subcommand)]
    Version(commands::VersionCmd),
    /// Aliases: set, get, history, delete.
    #[command(subcommand)]
    Alias(commands::AliasCmd),
    /// Resolve a reference for an environment and verify the registry's signature.
    Resolve(commands::ResolveArgs),
    /// The event log: list, tail.
    #[command(subcommand)]
    Events(commands::EventsCmd),
    /// Sign a model directory (OpenSSF model-signing bundle).
    #[command(subcommand)]
    Sign(trust::SignCmd),
    /// Verify a model directory against a model-signing bundle.
    #[command(subcommand)]
    Verify(trust::VerifyCmd),
    /// Produce attestations for a pipeline (SLSA provenance).
    #[command(subcommand)]
    Attest(trust::AttestCmd),
    /// Policy snapshots: show the one in force, test a directory of Rego, apply it (policy-admin).
    #[command(subcommand)]
    Policy(commands::PolicyCmd),
    /// Stored blobs: scrub (re-hash against their digests).
    #[command(subcommand)]
    Blobs(commands::BlobsCmd),
    /// Decision logs (by change, incident, model or version), or one decision explained.
    Decisions(commands::DecisionsArgs),
    /// The data catalog: which versions used a dataset snapshot.
    #[command(subcommand)]
    Dataset(commands::DatasetCmd),
    /// Explain a decision: which rules denied and why, in plain words.
    Explain {
        /// The decision id (from `fulcrum decisions` or a 409 policy_denied answer's log).
        decision_id: String,
    },
    /// The audit ledger: verify it end to end (as a witness), prove one entry's inclusion.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Who the registry says you are (subject, role, tenant, how you authenticated).
    Whoami,
    /// Obtain an access token from the company IdP (client credentials) and keep it for the
    /// next commands, which refresh it before it expires.
    Login(login::LoginArgs),
    /// Forget the token kept by `fulcrum login`.
    Logout,
    /// Signing keys: CI keys (generate) and the registry's keys (key-admin: create, rotate, retire, list).
    #[command(subcommand)]
    Keys(trust::KeysCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS/crypto provider for the whole process (aws-lc-rs).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FULCRUM_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let credentials = cli.credentials.clone().or_else(login::default_path);
    let local = matches!(
        cli.command,
        Command::Serve(_)
            | Command::Demo(_)
            | Command::Sign(_)
            | Command::Verify(_)
            | Command::Attest(_)
            | Command::Login(_)
            | Command::Logout
            | Command::Policy(commands::PolicyCmd::Reset { .. })
            | Command::Audit(audit::AuditCmd::CheckEvidence { .. })
    );
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => match &credentials {
            Some(path) if !local => login::current_token(path).await?,
            _ => None,
        },
    };
    let tls = fulcrum_client::ClientTls { ca: cli.ca_file, cert: cli.client_cert, key: cli.client_key };
    let ctx = commands::Ctx { registry: cli.registry, token, tls, output: cli.output };
    match cli.command {
        Command::Serve(a) => serve::run(a).await,
        Command::Demo(a) => demo::run(a, cli.output).await,
        Command::Model(c) => commands::model(&ctx, c).await,
        Command::Version(c) => commands::version(&ctx, c).await,
        Command::Alias(c) => commands::alias(&ctx, c).await,
        Command::Resolve(a) => commands::resolve(&ctx, a).await,
        Command::Events(c) => commands::events(&ctx, c).await,
        Command::Policy(c) => commands::policy(&ctx, c).await,
        Command::Blobs(c) => commands::blobs(&ctx, c).await,
        Command::Decisions(a) => commands::decisions(&ctx, a).await,
        Command::Dataset(c) => commands::dataset(&ctx, c).await,
        Command::Explain { decision_id } => {
            commands::decisions(&ctx, commands::DecisionsArgs::explain(decision_id)).await
        }
        Command::Whoami => commands::whoami(&ctx).await,
        Command::Audit(c) => audit::run(&ctx, c).await,
        Command::Login(a) => {
            let path = credentials.ok_or_else(|| anyhow::anyhow!("no place for credentials: pass --credentials"))?;
            let token = login::login(a, &path).await?;
            eprintln!("fulcrum: logged in; token kept in {} (mode 0600)", path.display());
            commands::whoami(&commands::Ctx { token: Some(token), ..ctx }).await
        }
        Command::Logout => match credentials {
            Some(path) if path.exists() => {
                std::fs::remove_file(&path).map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
                eprintln!("fulcrum: removed {}", path.display());
                Ok(())
            }
            _ => Ok(()),
        },
        Command::Sign(c) => trust::sign(c, ctx.output),
        Command::Verify(c) => trust::verify(c, ctx.output),
        Command::Attest(c) => trust::attest(c, ctx.output),
        Command::Keys(c) => trust::keys(c, &ctx).await,
    }
}
