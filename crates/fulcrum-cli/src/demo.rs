//! `fulcrum demo`: both end-to-end flows of the seed (§5.1 Promotion→Deploy, §5.2
//! Revocation→Rollback) against a real registry on a temporary data dir, with one identity per
//! role, then the event timeline T0→T+N.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use clap::Args;
use fulcrum_client::Client;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_core::resolve::Decision;
use fulcrum_server::auth::{TokenEntry, TokensFile, random_token};
use fulcrum_server::{Config, Registry};
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

/// What a serving agent does at startup: verify the signed answer, decide, report.
async fn agent_start(
    agent: &Client,
    bundle: &fulcrum_sign::TrustBundle,
    reference: &str,
) -> anyhow::Result<(String, Decision)> {
    let r = agent.resolve(reference, "prod", bundle).await?;
    let d = &r.document;
    let (decision, reason) = if d.revoked {
        (Decision::Deny, Some("revoked"))
    } else if d.quarantined {
        (Decision::Deny, Some("quarantined"))
    } else if d.decision == Decision::Deny {
        (Decision::Deny, d.deny_reason.as_deref())
    } else {
        (Decision::Permit, None)
    };
    agent
        .post(
            "/v1/startup-reports",
            &json!({
                "ref": reference, "env": "prod", "version": d.version, "artifact_digest": d.artifact_digest,
                "policy_digest": d.policy_digest, "agent": "scoring-replica-1",
                "decision": if decision == Decision::Permit { "permit" } else { "deny" }, "reason": reason,
            }),
        )
        .await?;
    Ok((d.version.clone(), decision))
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
    let file = TokensFile {
        tokens: people
            .iter()
            .zip(&tokens)
            .map(|((subject, role, env), t)| TokenEntry {
                token: Some(t.clone()),
                token_sha256: None,
                subject: (*subject).into(),
                role: *role,
                tenant: "banking".into(),
                domain: "risk".into(),
                env: *env,
                purpose: None,
            })
            .collect(),
    };
    let tokens_path = tmp.path().join("tokens.json");
    file.write_new(&tokens_path)?;
    let mut config = Config::new(&dir);
    config.tokens_file = Some(tokens_path);
    let (state, _notes) = Registry::open_default(config).await.context("starting the demo registry")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fulcrum_server::serve(state, listener, async {
        let _ = stop_rx.await;
    }));
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
    release(&p, &work, "v2.3.0", "CHG-10234").await?;
    p.release
        .put(&format!("/v1/models/{MODEL}/aliases/production"), &json!({"version": "v2.3.0", "chg_id": "CHG-10234"}))
        .await?;
    let bundle = p.agent.trust_bundle().await?;
    let (v, d) = agent_start(&p.agent, &bundle, &format!("{MODEL}@production")).await?;
    ensure!(v == "v2.3.0" && d == Decision::Permit, "expected production to serve v2.3.0, got {v} {d:?}");

    // §5.2 Revocation → Rollback
    p.security
        .post(
            &format!("/v1/models/{MODEL}/versions/v2.3.0/revocation"),
            &json!({"reason": "critical CVE in tokenizer dependency", "inc_id": "INC-4711"}),
        )
        .await?;
    let (_, d) = agent_start(&p.agent, &bundle, &format!("{MODEL}@v2.3.0")).await?;
    ensure!(d == Decision::Deny, "a revoked version must be denied");
    let (v, d) = agent_start(&p.agent, &bundle, &format!("{MODEL}@production")).await?;
    ensure!(v == "v2.2.0" && d == Decision::Permit, "expected production to roll back to v2.2.0, got {v} {d:?}");

    let events = p.release.get("/v1/events?after=0&limit=1000").await?;
    let _ = stop_tx.send(());
    server.await??;
    print_timeline(&events, output);
    Ok(())
}

fn print_timeline(page: &Value, output: Output) {
    let events = page["events"].as_array().cloned().unwrap_or_default();
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&json!({"events": events})).expect("json"));
        return;
    }
    let t0 =
        events.first().and_then(|e| e["data"]["ts"].as_str()).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    println!("Event timeline (T0 = first event):");
    for e in &events {
        let ts = e["data"]["ts"].as_str().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        let dt = match (t0, ts) {
            (Some(a), Some(b)) => format!("T+{:>6}ms", (b - a).whole_milliseconds()),
            _ => "T+?".into(),
        };
        println!("{dt}  {}", crate::commands::event_line(e));
    }
}
