//! `fulcrum`: the registry server, the end-to-end demo, and the operator/CI command line.
//!
//! Every failure prints one clear line on stderr and exits non-zero; `--output json` prints the
//! registry's JSON answers unchanged for scripts.

mod audit;
mod commands;
mod compliance;

/// mimalloc: the registry allocates and frees small buffers on every request (headers, bodies,
/// futures) from many threads; glibc's allocator spent ~10 % of a resolve in malloc/free and
/// consolidation (see BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod demo;
mod import;
mod incident;
mod login;
mod monitoring;
mod oci;
mod profile;
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

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "fulcrum", version, about = "Fulcrum: a governed ML model registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How results are printed (for the commands that print results: not `serve`).
#[derive(Debug, Clone, Copy, Args)]
struct Out {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How a client command reaches the registry: given on the commands that call it (not on
/// `serve`, `demo`, `sign`, `verify`, `attest`, which never do).
#[derive(Debug, Clone, Args)]
struct Conn {
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
    #[command(flatten)]
    out: Out,
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
    /// The metadata database: migrate (offline, before replicas start or to check a backup).
    Db {
        #[command(subcommand)]
        cmd: serve::DbCmd,
    },
    /// Run both end-to-end flows (Promotion→Deploy, Revocation→Rollback) on a temporary
    /// registry and print the event timeline.
    Demo {
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        args: demo::DemoArgs,
    },
    /// Models: create, get, list.
    Model {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: commands::ModelCmd,
    },
    /// Versions: register, get, list, approve, promote, revoke, quarantine, release.
    Version {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: commands::VersionCmd,
    },
    /// Aliases: set, get, history, delete.
    Alias {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: commands::AliasCmd,
    },
    /// Resolve a reference for an environment and verify the registry's signature.
    Resolve {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: commands::ResolveArgs,
    },
    /// The event log: list, tail, dead letters.
    Events {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: commands::EventsCmd,
    },
    /// Reference profiles of a version's inputs (drift): build one from a CSV sample, show one.
    Profile {
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: profile::ProfileCmd,
    },
    /// Sign a model directory (OpenSSF model-signing bundle).
    Sign {
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: trust::SignCmd,
    },
    /// Verify a model directory against a model-signing bundle.
    Verify {
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: trust::VerifyCmd,
    },
    /// Verify a Sigstore bundle offline (keyless or managed key) against a trusted root; speaks
    /// the sigstore-conformance CLI protocol. Exit 0 only if it verifies.
    VerifyBundle {
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        args: trust::VerifyBundleArgs,
    },
    /// Produce attestations for a pipeline (SLSA provenance).
    Attest {
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: trust::AttestCmd,
    },
    /// Policy snapshots: show, test, diff, apply, rollback, history; break-glass reset.
    Policy {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: commands::PolicyCmd,
    },
    /// Stored blobs: scrub (re-hash against their digests).
    Blobs {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: commands::BlobsCmd,
    },
    /// Decision logs (by change, incident, model or version), or one decision explained.
    Decisions {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: commands::DecisionsArgs,
    },
    /// Findings (CVEs, scanner reports) of versions: add, list.
    Findings {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: monitoring::FindingsCmd,
    },
    /// Waivers for findings: add (security officer), list.
    Waivers {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: monitoring::WaiversCmd,
    },
    /// The data catalog: which versions used a dataset snapshot.
    Dataset {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: commands::DatasetCmd,
    },
    /// Explain a decision (which rules denied and why, in plain words), or a serving agent's
    /// startup deny (`fulcrum explain startup-deny ID`).
    #[command(args_conflicts_with_subcommands = true)]
    Explain {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        what: Option<incident::ExplainCmd>,
        /// The decision id (from `fulcrum decisions` or a 409 policy_denied answer's log).
        decision_id: Option<String>,
    },
    /// Reports: `report compliance` (controls mapped to mechanisms and live, verified evidence).
    Report {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ReportCmd,
    },
    /// Imports: `import mlflow` copies an MLflow Model Registry (models, versions with their
    /// bytes, tags, aliases through the governed path); idempotent, with a dry run and a report.
    Import {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ImportCmd,
    },
    /// Incidents: open, show, close, list, timeline (T0→T+N with post-backout validation).
    Incident {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: incident::IncidentCmd,
    },
    /// Runbooks as commands (seed §8): cve, policy-changed, waiver-expired. Each prints what it
    /// will do and asks (or --yes); each action is an ordinary governed call.
    Runbook {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: incident::RunbookCmd,
    },
    /// The audit ledger: verify it end to end (as a witness), prove one entry's inclusion.
    Audit {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: audit::AuditCmd,
    },
    /// Who the registry says you are (subject, role, tenant, how you authenticated).
    Whoami {
        #[command(flatten)]
        conn: Conn,
    },
    /// Obtain an access token from the company IdP (client credentials) and keep it for the
    /// next commands, which refresh it before it expires.
    Login {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: login::LoginArgs,
    },
    /// Forget the token kept by `fulcrum login`.
    Logout {
        #[command(flatten)]
        conn: Conn,
    },
    /// Signing keys: CI keys (generate) and the registry's keys (key-admin: create, rotate, retire, list).
    Keys {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: trust::KeysCmd,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCmd {
    /// From an MLflow server's registry and artifact proxy.
    Mlflow(import::MlflowArgs),
}

#[derive(Debug, Subcommand)]
enum ReportCmd {
    /// Each control of NIST SP 800-53, SSDF, SLSA, AI RMF, CSA CCM and ISO 27001 the seed names,
    /// the mechanism that implements it, and evidence counted from the ledger (verified here
    /// against a signed checkpoint), with exceptions and enforced denials (auditor role).
    Compliance(compliance::ComplianceArgs),
}

impl Command {
    /// How this command reaches the registry, if it does.
    fn conn(&self) -> Option<&Conn> {
        match self {
            Command::Serve(_)
            | Command::Db { .. }
            | Command::Demo { .. }
            | Command::Profile { .. }
            | Command::Sign { .. }
            | Command::Verify { .. }
            | Command::VerifyBundle { .. }
            | Command::Attest { .. } => None,
            Command::Model { conn, .. }
            | Command::Version { conn, .. }
            | Command::Alias { conn, .. }
            | Command::Resolve { conn, .. }
            | Command::Events { conn, .. }
            | Command::Policy { conn, .. }
            | Command::Blobs { conn, .. }
            | Command::Decisions { conn, .. }
            | Command::Dataset { conn, .. }
            | Command::Findings { conn, .. }
            | Command::Waivers { conn, .. }
            | Command::Explain { conn, .. }
            | Command::Incident { conn, .. }
            | Command::Report { conn, .. }
            | Command::Import { conn, .. }
            | Command::Runbook { conn, .. }
            | Command::Audit { conn, .. }
            | Command::Whoami { conn }
            | Command::Login { conn, .. }
            | Command::Logout { conn }
            | Command::Keys { conn, .. } => Some(conn),
        }
    }

    /// Commands that never send the kept token (they log in, out, or work offline).
    fn offline(&self) -> bool {
        matches!(
            self,
            Command::Login { .. }
                | Command::Logout { .. }
                | Command::Policy { cmd: commands::PolicyCmd::Reset { .. }, .. }
                | Command::Audit { cmd: audit::AuditCmd::CheckEvidence { .. }, .. }
        )
    }
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
    let Some(conn) = cli.command.conn().cloned() else {
        return match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Db { cmd } => serve::db(cmd).await,
            Command::Demo { out, args } => demo::run(args, out.output).await,
            Command::Profile { out, cmd } => profile::run(cmd, out.output),
            Command::Sign { out, cmd } => trust::sign(cmd, out.output),
            Command::Verify { out, cmd } => trust::verify(cmd, out.output),
            Command::VerifyBundle { out, args } => trust::verify_bundle(args, out.output),
            Command::Attest { out, cmd } => trust::attest(cmd, out.output),
            _ => unreachable!("every other command reaches the registry"),
        };
    };
    let output = conn.out.output;
    let credentials = conn.credentials.clone().or_else(login::default_path);
    let token = match (&conn.token, &conn.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => match &credentials {
            Some(path) if !cli.command.offline() => login::current_token(path).await?,
            _ => None,
        },
    };
    let tls = fulcrum_client::ClientTls { ca: conn.ca_file, cert: conn.client_cert, key: conn.client_key };
    let ctx = commands::Ctx { registry: conn.registry, token, tls, output };
    match cli.command {
        Command::Serve(_)
        | Command::Db { .. }
        | Command::Demo { .. }
        | Command::Profile { .. }
        | Command::Sign { .. }
        | Command::Verify { .. }
        | Command::VerifyBundle { .. }
        | Command::Attest { .. } => unreachable!("handled above"),
        Command::Model { cmd, .. } => commands::model(&ctx, cmd).await,
        Command::Version { cmd, .. } => commands::version(&ctx, cmd).await,
        Command::Alias { cmd, .. } => commands::alias(&ctx, cmd).await,
        Command::Resolve { args, .. } => commands::resolve(&ctx, args).await,
        Command::Events { cmd, .. } => commands::events(&ctx, cmd).await,
        Command::Policy { cmd, .. } => commands::policy(&ctx, cmd).await,
        Command::Blobs { cmd, .. } => commands::blobs(&ctx, cmd).await,
        Command::Decisions { args, .. } => commands::decisions(&ctx, args).await,
        Command::Dataset { cmd, .. } => commands::dataset(&ctx, cmd).await,
        Command::Findings { cmd, .. } => monitoring::findings(&ctx, cmd).await,
        Command::Waivers { cmd, .. } => monitoring::waivers(&ctx, cmd).await,
        Command::Explain { what: Some(what), .. } => incident::explain(&ctx, what).await,
        Command::Explain { decision_id: Some(id), .. } => {
            commands::decisions(&ctx, commands::DecisionsArgs::explain(id)).await
        }
        Command::Explain { .. } => anyhow::bail!("explain what? a decision id, or startup-deny ID"),
        Command::Incident { cmd, .. } => incident::incident(&ctx, cmd).await,
        Command::Report { cmd: ReportCmd::Compliance(a), .. } => compliance::run(&ctx, a).await,
        Command::Import { cmd: ImportCmd::Mlflow(a), .. } => import::mlflow(&ctx, a).await,
        Command::Runbook { cmd, .. } => incident::runbook(&ctx, cmd).await,
        Command::Whoami { .. } => commands::whoami(&ctx).await,
        Command::Audit { cmd, .. } => audit::run(&ctx, cmd).await,
        Command::Login { args, .. } => {
            let path = credentials.ok_or_else(|| anyhow::anyhow!("no place for credentials: pass --credentials"))?;
            let token = login::login(args, &path).await?;
            eprintln!("fulcrum: logged in; token kept in {} (mode 0600)", path.display());
            commands::whoami(&commands::Ctx { token: Some(token), ..ctx }).await
        }
        Command::Logout { .. } => match credentials {
            Some(path) if path.exists() => {
                std::fs::remove_file(&path).map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
                eprintln!("fulcrum: removed {}", path.display());
                Ok(())
            }
            _ => Ok(()),
        },
        Command::Keys { cmd, .. } => trust::keys(cmd, &ctx).await,
    }
}
