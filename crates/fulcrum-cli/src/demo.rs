//! `fulcrum demo`: both end-to-end flows of the seed (§5.1 Promotion→Deploy, §5.2
//! Revocation→Rollback) against a real registry on a temporary data dir, with one identity per
//! role and a real serving agent (a guard, as a replica's sidecar runs it: verify, fetch, place,
//! deploy on the alias move, quiesce/purge/roll back on the revocation), then the event timeline
//! T0→T+N with the agent's reported steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::ensure;
use clap::Args;
use fulcrum_agent::fetch::Agent;
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::report::Reporter;
use fulcrum_agent::state::StateDir;
use fulcrum_client::Client;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_server::auth::random_token;
use fulcrum_server::loopback::{Person, Setup};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Output;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the registry's data in this (new) directory instead of a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

const MODEL: &str = "risk-default";

struct People {
    ci: Client,
    approver: Client,
    security: Client,
    release: Client,
    agent: Client,
}

fn write_model(dir: &Path, version: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("tokenizer"))?;
    // Deterministic stand-in weights: 4 MiB that differ per version.
    let weights: Vec<u8> = (0..4u32 << 20)
        .map(|i| {
            (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ version.len() as u8 ^ version.as_bytes()[version.len() - 1]
        })
        .collect();
    std::fs::write(dir.join("weights.bin"), weights)?;
    std::fs::write(dir.join("config.json"), format!("{{\"model\":\"{MODEL}\",\"version\":\"{version}\"}}"))?;
    std::fs::write(dir.join("tokenizer/vocab.txt"), "credit\nrisk\ndefault\n")?;
    Ok(())
}

async fn release(p: &People, work: &Path, version: &str, chg: &str) -> anyhow::Result<()> {
    let dir = work.join(version);
    write_model(&dir, version)?;
    let manifest = crate::upload::upload_dir(&p.ci, &dir).await?;
    let card = json!({"owner": "risk-analytics", "intended_use": "retail credit default scoring", "labels": ["purpose:credit_granting"]});
    let revalidate = (OffsetDateTime::now_utc() + time::Duration::days(180)).format(&Rfc3339)?;
    p.ci.post(&format!("/v1/models/{MODEL}/versions"), &json!({"version": version, "files": manifest.files(), "model_card": card, "revalidate_by": revalidate, "chg_id": chg})).await?;
    let v = format!("/v1/models/{MODEL}/versions/{version}");
    p.release.post(&format!("{v}/promotions"), &json!({"to": "Staging", "chg_id": chg})).await?;
    p.approver.post(&format!("{v}/approvals"), &json!({"comment": "validation report reviewed"})).await?;
    p.security.post(&format!("{v}/approvals"), &json!({"comment": "security review passed"})).await?;
    p.release.post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": chg})).await?;
    Ok(())
}

/// Wait until `f` holds (checked every 5 ms), or fail after 30 s naming `what`.
async fn until(what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<std::time::Duration> {
    let start = std::time::Instant::now();
    while !f() {
        ensure!(start.elapsed() < std::time::Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(start.elapsed())
}

pub async fn run(a: DemoArgs, output: Output) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = match &a.data_dir {
        Some(d) => {
            ensure!(!d.exists(), "{} already exists; the demo wants a new directory", d.display());
            d.clone()
        }
        None => tmp.path().join("data"),
    };
    std::fs::create_dir_all(&dir)?;
    let work = tmp.path().join("models");

    let people: Vec<(&str, Role, Option<Env>)> = vec![
        ("ci-pipeline", Role::Publisher, None),
        ("ana.r", Role::Approver, None),
        ("maria.s", Role::SecurityOfficer, None),
        ("raphael.f", Role::ReleaseManager, None),
        ("scoring-agent", Role::Serving, Some(Env::Prod)),
    ];
    let tokens: Vec<String> = people.iter().map(|_| random_token()).collect();
    let persons: Vec<Person> = people
        .iter()
        .zip(&tokens)
        .map(|((subject, role, env), t)| Person {
            subject: (*subject).into(),
            token: t.clone(),
            role: *role,
            env: *env,
        })
        .collect();
    let setup = Setup {
        data_dir: &dir,
        tokens_file: &tmp.path().join("tokens.json"),
        tenant: "banking",
        domain: "risk",
        people: &persons,
    };
    let mut server = fulcrum_server::loopback::start(&setup, Arc::new(fulcrum_server::clock::SystemClock))
        .await
        .map_err(|e| anyhow::anyhow!("starting the demo registry: {e}"))?;
    let url = server.url.clone();
    let client = |i: usize| Client::new(&url, Some(tokens[i].clone()));
    let p =
        People { ci: client(0)?, approver: client(1)?, security: client(2)?, release: client(3)?, agent: client(4)? };
    if output == Output::Text {
        eprintln!("demo registry on {url} (data in {})", dir.display());
    }

    // §5.1 Promotion → Deploy
    p.ci.post("/v1/models", &json!({"name": MODEL, "domain": "risk", "description": "Retail credit default model", "owners": ["risk-analytics"]})).await?;
    release(&p, &work, "v2.2.0", "CHG-10233").await?;
    p.release
        .put(&format!("/v1/models/{MODEL}/aliases/production"), &json!({"version": "v2.2.0", "chg_id": "CHG-10233"}))
        .await?;
    // The serving agent: a guard on production, as a replica's sidecar runs it. It pins the
    // trust bundle, verifies, fetches and places the files, reports each step to the registry.
    let bundle = p.agent.trust_bundle().await?;
    let agent = Agent::new(
        p.agent.clone(),
        bundle.clone(),
        StateDir::open(&tmp.path().join("agent"))?,
        time::Duration::seconds(30),
        "scoring-replica-1".into(),
    );
    let served = tmp.path().join("serving/risk-default");
    let mut guard = Guard::new(agent, &format!("{MODEL}@production"), "prod", Layout::Dir(served.clone()));
    guard.reporter = Some(Arc::new(Reporter::start(p.agent.clone())));
    guard.reload_jitter = std::time::Duration::from_millis(100);
    let guard = Arc::new(guard);
    let g = guard.clone();
    let (guard_stop, guard_stopped) = tokio::sync::oneshot::channel::<()>();
    let guard_task = tokio::spawn(async move {
        g.run(async {
            let _ = guard_stopped.await;
        })
        .await;
    });
    let serves = |v: &'static str| {
        let g = guard.clone();
        move || g.is_ready() && g.loaded().is_some_and(|d| d.version == v)
    };
    until("the agent to serve v2.2.0", serves("v2.2.0")).await?;
    if output == Output::Text {
        eprintln!("agent: serving v2.2.0 from {}", served.display());
    }

    release(&p, &work, "v2.3.0", "CHG-10234").await?;
    p.release
        .put(&format!("/v1/models/{MODEL}/aliases/production"), &json!({"version": "v2.3.0", "chg_id": "CHG-10234"}))
        .await?;
    let took = until("the agent to deploy v2.3.0", serves("v2.3.0")).await?;
    if output == Output::Text {
        eprintln!("agent: deployed v2.3.0 {} ms after the alias moved", took.as_millis());
    }

    // §5.2 Revocation → Rollback
    p.security
        .post(
            &format!("/v1/models/{MODEL}/versions/v2.3.0/revocation"),
            &json!({"reason": "critical CVE in tokenizer dependency", "inc_id": "INC-4711"}),
        )
        .await?;
    let quiesced = until("the agent to quiesce", || !guard.is_ready()).await;
    let took = until("the agent to roll back to v2.2.0", serves("v2.2.0")).await?;
    if output == Output::Text {
        if let Ok(q) = quiesced {
            eprintln!("agent: quiesced {} ms after the revocation call returned", q.as_millis());
        }
        eprintln!("agent: serving v2.2.0 again (purged v2.3.0, full check) {} ms after quiescing", took.as_millis());
    }
    // A fresh replica asked for the revoked version by name is refused.
    let fresh = Agent::new(
        p.agent.clone(),
        bundle,
        StateDir::open(&tmp.path().join("agent-2"))?,
        time::Duration::seconds(30),
        "scoring-replica-2".into(),
    );
    match fresh.fetch(&format!("{MODEL}@v2.3.0"), "prod", &tmp.path().join("serving/pinned")).await {
        Err(e) => ensure!(e.code() == "registry_deny", "a revoked version must be denied, got {e}"),
        Ok(_) => anyhow::bail!("a revoked version must be denied"),
    }
    let _ = guard_stop.send(());
    guard_task.await?;
    // Reports are sent in the background: give the last ones a moment to land.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let events = p.release.get("/v1/events?after=0&limit=1000").await?;
    server.stop().await?;
    print_timeline(&events, output);
    Ok(())
}

fn print_timeline(page: &Value, output: Output) {
    let events = page["events"].as_array().cloned().unwrap_or_default();
    if output == Output::Json {
        crate::outln!("{}", serde_json::to_string_pretty(&json!({"events": events})).expect("json"));
        return;
    }
    let t0 =
        events.first().and_then(|e| e["data"]["ts"].as_str()).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    crate::outln!("Event timeline (T0 = first event):");
    for e in &events {
        let ts = e["data"]["ts"].as_str().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        let dt = match (t0, ts) {
            (Some(a), Some(b)) => format!("T+{:>6}ms", (b - a).whole_milliseconds()),
            _ => "T+?".into(),
        };
        crate::outln!("{dt}  {}", crate::commands::event_line(e));
    }
}
