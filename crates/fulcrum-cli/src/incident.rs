//! Incidents and runbooks from the terminal (seed §5.2, §8; SPEC §12): `fulcrum incident`
//! (open, show, close, list, timeline), `fulcrum explain startup-deny` (which check failed, the
//! evidence, the next command) and `fulcrum runbook` (cve, policy-changed, waiver-expired). A
//! runbook prints what it will do and asks (or takes `--yes`); every action is an ordinary,
//! governed API call, refused like any other when the caller may not make it.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::Subcommand;
use fulcrum_client::Client;
use serde_json::{Value, json};

use crate::commands::{Ctx, checked, s};

#[derive(Debug, Subcommand)]
pub enum IncidentCmd {
    /// Open an incident record.
    Open {
        id: String,
        #[arg(long)]
        title: String,
        /// critical, high, medium or low (the policy's list).
        #[arg(long, default_value = "high")]
        severity: String,
        /// A version it names, `model@version` (repeatable).
        #[arg(long = "version")]
        versions: Vec<String>,
    },
    /// One incident.
    Show { id: String },
    /// Close an incident (a role the policy names).
    Close {
        id: String,
        #[arg(long)]
        resolution: String,
    },
    /// The tenant's incidents, newest first.
    List {
        /// Only those still open.
        #[arg(long)]
        open: bool,
    },
    /// The incident's timeline T0→T+N: per replica quiesce, purge, unload, verified reload and
    /// post-backout validation, with each step's delay from T0.
    Timeline { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ExplainCmd {
    /// Why a serving agent refused to start: the failed check, its evidence, the next command.
    StartupDeny {
        /// The report's event position (the `sequence` a startup report was acknowledged with,
        /// or the `sequence` of the `startup_deny` event).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunbookCmd {
    /// A critical CVE in a serving version: open the incident, quarantine (or revoke) the
    /// version — its aliases roll back — and show what serves now.
    Cve {
        model: String,
        version: String,
        #[arg(long)]
        inc: String,
        /// The finding (e.g. CVE-2026-1234), for the incident's title and the reason.
        #[arg(long)]
        finding: Option<String>,
        /// Revoke (terminal) instead of quarantine.
        #[arg(long)]
        revoke: bool,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
    },
    /// A policy changed: which registry replicas applied it, which serving agents re-checked
    /// under the new digest and which still run the old one; `--rollback` reinstates the
    /// previous snapshot.
    PolicyChanged {
        /// Reinstate the previous policy snapshot (asks first).
        #[arg(long)]
        rollback: bool,
        #[arg(long)]
        yes: bool,
    },
    /// Waivers of a model that expired while their finding is still open on a serving version:
    /// quarantine those versions under an incident, or renew the waiver (`--renew-until`).
    WaiverExpired {
        model: String,
        /// The incident the quarantines are filed under.
        #[arg(long)]
        inc: Option<String>,
        /// Grant a new waiver until this RFC 3339 time instead (security officer).
        #[arg(long, requires = "justification")]
        renew_until: Option<String>,
        #[arg(long)]
        justification: Option<String>,
        #[arg(long)]
        yes: bool,
    },
}

fn incident_line(i: &Value) -> String {
    let versions: Vec<String> = i["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| format!("{}@{}", s(&v["model"]), s(&v["version"])))
        .collect();
    let state = match i["closed_at"].as_str() {
        Some(t) => format!("closed {t} by {}", s(&i["closed_by"])),
        None => "open".to_owned(),
    };
    format!(
        "{}  {}  {}  {}  opened {} by {} ({})  versions: {}",
        s(&i["id"]),
        s(&i["severity"]),
        state,
        s(&i["title"]),
        s(&i["opened_at"]),
        s(&i["opened_by"]),
        s(&i["source"]),
        if versions.is_empty() { "-".into() } else { versions.join(", ") }
    )
}

fn ms(v: &Value) -> String {
    v.as_i64().map_or("-".into(), |m| format!("T+{:.3}s", m as f64 / 1e3))
}

/// The timeline in words.
pub fn timeline_text(t: &Value) -> String {
    let mut out =
        vec![format!("incident {}  T0 = {}", s(&t["inc_id"]), t["t0"].as_str().unwrap_or("(nothing withdrawn)"))];
    for st in t["steps"].as_array().into_iter().flatten() {
        out.push(format!(
            "  {:>10}  {:<16} {:<22} {}{}",
            ms(&st["delay_ms"]),
            s(&st["step"]),
            st["by"].as_str().unwrap_or("-"),
            st["version"].as_str().map(|v| format!("{}@{v} ", s(&st["model"]))).unwrap_or_default(),
            st["detail"].as_str().unwrap_or("")
        ));
    }
    out.push("replicas:".into());
    for r in t["replicas"].as_array().into_iter().flatten() {
        out.push(format!(
            "  {:<24} {:<14} quiesce {}  purge {}{}  reload {} ({})  validated {}",
            s(&r["name"]),
            s(&r["status"]),
            ms(&r["quiesce_ms"]),
            ms(&r["purge_ms"]),
            r["purge_error"].as_str().map(|e| format!(" FAILED: {e}")).unwrap_or_default(),
            ms(&r["reload_ms"]),
            r["reloaded"].as_str().unwrap_or("-"),
            ms(&r["validated_ms"]),
        ));
    }
    let missing: Vec<String> = t["missing"].as_array().into_iter().flatten().map(s).collect();
    if !missing.is_empty() {
        out.push(format!("missing (served the withdrawn version, silent since T0): {}", missing.join(", ")));
    }
    out.push(format!("complete: {}", t["complete"].as_bool().unwrap_or(false)));
    out.join("\n")
}

pub async fn incident(ctx: &Ctx, c: IncidentCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match c {
        IncidentCmd::Open { id, title, severity, versions } => {
            let v = client
                .post("/v1/incidents", &json!({"id": id, "title": title, "severity": severity, "versions": versions}))
                .await?;
            ctx.print(&v, |v| format!("opened {}", incident_line(v)));
        }
        IncidentCmd::Show { id } => {
            let v = client.get(&format!("/v1/incidents/{}", checked(&id)?)).await?;
            ctx.print(&v, incident_line);
        }
        IncidentCmd::Close { id, resolution } => {
            let v = client
                .post(&format!("/v1/incidents/{}/close", checked(&id)?), &json!({"resolution": resolution}))
                .await?;
            ctx.print(&v, incident_line);
        }
        IncidentCmd::List { open } => {
            let v = client.get(&format!("/v1/incidents?open={open}")).await?;
            ctx.print(&v, |v| {
                let rows: Vec<String> = v.as_array().into_iter().flatten().map(incident_line).collect();
                if rows.is_empty() { "no incidents".into() } else { rows.join("\n") }
            });
        }
        IncidentCmd::Timeline { id } => {
            let v = client.get(&format!("/v1/incidents/{}/timeline", checked(&id)?)).await?;
            ctx.print(&v, timeline_text);
        }
    }
    Ok(())
}

/// Which startup check a deny code names, what it means, and what to run next. Data, so the
/// table is reviewed in one place.
pub fn startup_check(code: &str) -> (&'static str, &'static str, &'static str) {
    match code {
        "bad_signature" | "unknown_kid" | "key_not_valid" | "key_compromised" | "mixed_metadata"
        | "malformed_document" => (
            "signature",
            "the registry's signed answer did not verify against the pinned trust bundle",
            "fulcrum keys list; then compare the agent's pinned bundle with GET /v1/trust-bundle",
        ),
        "bundle_chain_broken" | "bundle_expired" => (
            "signature",
            "the agent's trust bundle cannot be brought forward (chain broken or expired)",
            "fulcrum keys list; re-pin the agent's bundle from a trusted copy",
        ),
        "artifact_tampered" | "blob_corrupt" => (
            "signature",
            "bytes do not hash to the digest the signed manifest names (tampered in transit, or in the registry's store)",
            "fulcrum blobs scrub; then fulcrum version get MODEL VERSION",
        ),
        "release_unverified" => (
            "attestation",
            "the version's release record (the registry's in-toto attestation of its signatures, provenance and SBOM) did not verify",
            "fulcrum version get MODEL VERSION; fulcrum audit verify",
        ),
        "signature_unverified" => (
            "signature",
            "the keyless (Sigstore) model signature the release record names did not verify against the Sigstore root the agent's pinned trust bundle carries",
            "fulcrum keys sigstore-roots; compare with the agent's pinned bundle (GET /v1/trust-bundle); fulcrum version get MODEL VERSION",
        ),
        "policy_unverified" => (
            "policy digest",
            "the policy snapshot the answer names did not verify or is not the digest it claims",
            "fulcrum policy history; fulcrum runbook policy-changed",
        ),
        "policy_deny" => (
            "stage/env",
            "the policy in force, evaluated by the agent, does not allow this version in this environment",
            "fulcrum policy show; fulcrum version get MODEL VERSION",
        ),
        "revoked" | "quarantined" => (
            "revocation",
            "the version is withdrawn (revoked or quarantined); the alias should point at its rollback",
            "fulcrum incident list --open; fulcrum alias history MODEL ALIAS",
        ),
        "stage_not_allowed" | "env_forbidden" | "env_mismatch" => (
            "stage/env",
            "the version's stage is not one this environment may load, or the agent asked for another environment than its identity's",
            "fulcrum version get MODEL VERSION; fulcrum whoami",
        ),
        "resolve_expired" | "clock_skew" => (
            "clock",
            "the signed answer is expired or the agent's clock is too far from the registry's signed time",
            "check NTP on the serving host; then restart the agent",
        ),
        "downgrade_without_change" | "rollback_replay" => (
            "downgrade",
            "the answer would take the alias back to an older version (or replays an older answer) without a signed change naming it",
            "fulcrum alias history MODEL ALIAS; fulcrum alias set … --allow-downgrade --chg-id CHG-…",
        ),
        "ledger_unproven" => (
            "ledger",
            "the audit ledger did not prove the version's state at the signed checkpoint",
            "fulcrum audit verify",
        ),
        "registry_unreachable" => (
            "availability",
            "the registry could not be reached and no verified answer was kept for this reference",
            "check the registry's /readyz and the network path",
        ),
        _ => ("other", "a check this table does not name", "fulcrum events list --types startup_deny"),
    }
}

async fn event_at(client: &Client, seq: i64) -> anyhow::Result<Value> {
    let page = client.get(&format!("/v1/events?after={}&limit=1", seq - 1)).await?;
    let ev = page["events"].as_array().and_then(|e| e.first()).cloned().context("no such event")?;
    if ev["sequence"].as_str().and_then(|s| s.parse::<i64>().ok()) != Some(seq) {
        bail!("no event at position {seq} that you may read");
    }
    Ok(ev)
}

pub async fn explain(ctx: &Ctx, c: ExplainCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let ExplainCmd::StartupDeny { id } = c;
    let ev = event_at(&client, id).await?;
    let d = &ev["data"];
    if d["event"] != "startup_deny" {
        bail!("event {id} is a {}, not a startup_deny", s(&d["event"]));
    }
    let code = d["reason"].as_str().unwrap_or("");
    let (check, meaning, next) = startup_check(code);
    let (model, version) = (s(&d["model"]), d["version"].as_str().unwrap_or("VERSION").to_owned());
    let next = next
        .replace("MODEL", &model)
        .replace("VERSION", &version)
        .replace("ALIAS", d["alias"].as_str().unwrap_or("ALIAS"));
    let v = json!({
        "sequence": id, "check": check, "reason": code, "meaning": meaning,
        "evidence": {"agent": d["actor"], "model": d["model"], "version": d["version"],
                     "artifact_digest": d["artifact_digest"], "env": d["env"], "alias": d["alias"],
                     "detail": d["detail"], "at": d["ts"]},
        "next": next,
    });
    ctx.print(&v, |v| {
        format!(
            "startup_deny at {}: the {} check failed ({})\n  {}\n  agent {} refused {}@{} ({}) in {}\n  detail: {}\nnext: {}",
            id,
            s(&v["check"]),
            code,
            meaning,
            s(&d["actor"]),
            model,
            version,
            s(&d["artifact_digest"]),
            s(&d["env"]),
            s(&d["detail"]),
            s(&v["next"])
        )
    });
    Ok(())
}

/// Ask before acting (or `--yes`). Without a terminal and without `--yes`, nothing is done.
fn confirm(plan: &[String], yes: bool) -> anyhow::Result<()> {
    eprintln!("This runbook will:");
    for (i, p) in plan.iter().enumerate() {
        eprintln!("  {}. {p}", i + 1);
    }
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("not confirmed: rerun with --yes to act without a prompt");
    }
    eprint!("Proceed? [y/N] ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes") { Ok(()) } else { bail!("not confirmed: nothing was changed") }
}

/// What each alias of a model points at now (every alias the log ever moved, still set).
async fn aliases_now(client: &Client, model: &str) -> anyhow::Result<Vec<Value>> {
    let m = checked(model)?;
    let mut names = std::collections::BTreeSet::new();
    let mut after = 0i64;
    loop {
        let page = client.get(&format!("/v1/events?after={after}&limit=1000&model={m}&types=alias_updated")).await?;
        let evs = page["events"].as_array().cloned().unwrap_or_default();
        if evs.is_empty() {
            break;
        }
        for e in &evs {
            after = e["sequence"].as_str().and_then(|x| x.parse().ok()).unwrap_or(after);
            if let Some(a) = e["data"]["alias"].as_str() {
                names.insert(a.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for a in names {
        if let Ok(v) = client.get(&format!("/v1/models/{m}/aliases/{}", checked(&a)?)).await {
            out.push(v);
        }
    }
    Ok(out)
}

pub async fn runbook(ctx: &Ctx, c: RunbookCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match c {
        RunbookCmd::Cve { model, version, inc, finding, revoke, yes } => {
            let (m, v) = (checked(&model)?, checked(&version)?);
            let what = finding.clone().unwrap_or_else(|| "a critical vulnerability".into());
            let existing = client.get(&format!("/v1/incidents/{}", checked(&inc)?)).await.ok();
            let before = aliases_now(&client, &model).await?;
            let on_it: Vec<String> =
                before.iter().filter(|a| a["version"].as_str() == Some(&version)).map(|a| s(&a["alias"])).collect();
            let action = if revoke { "revoke (terminal)" } else { "quarantine (liftable)" };
            let mut plan = Vec::new();
            if existing.is_none() {
                plan.push(format!("open incident {inc} (critical): {what} in {model}@{version}"));
            }
            plan.push(format!(
                "{action} {model}@{version} under {inc}; aliases on it roll back: {}",
                if on_it.is_empty() { "none".into() } else { on_it.join(", ") }
            ));
            plan.push(format!("show what {model}'s aliases serve afterwards"));
            confirm(&plan, yes)?;
            if existing.is_none() {
                client
                    .post(
                        "/v1/incidents",
                        &json!({"id": inc, "title": format!("{what} in {model}@{version}"), "severity": "critical",
                                "versions": [format!("{model}@{version}")]}),
                    )
                    .await?;
            }
            let reason = format!("{what} (runbook cve)");
            let path = if revoke {
                format!("/v1/models/{m}/versions/{v}/revocation")
            } else {
                format!("/v1/models/{m}/versions/{v}/quarantine")
            };
            client.post(&path, &json!({"reason": reason, "inc_id": inc})).await?;
            let after = aliases_now(&client, &model).await?;
            let out = json!({"incident": inc, "withdrawn": format!("{model}@{version}"), "action": if revoke {"revoked"} else {"quarantined"}, "aliases": after});
            ctx.print(&out, |o| {
                let mut lines = vec![format!("{} {model}@{version} under {inc}; serving now:", s(&o["action"]))];
                for a in o["aliases"].as_array().into_iter().flatten() {
                    lines.push(format!("  {}@{} -> {}  ({})", model, s(&a["alias"]), s(&a["version"]), s(&a["env"])));
                }
                lines.push(format!("follow it: fulcrum incident timeline {inc}"));
                lines.join("\n")
            });
        }
        RunbookCmd::PolicyChanged { rollback, yes } => {
            let history = client.get("/v1/policy/history").await?;
            let installs = history["installs"].as_array().cloned().unwrap_or_default();
            let digest = installs.first().map(|i| s(&i["digest"])).context("no policy history")?;
            let previous = installs.iter().map(|i| s(&i["digest"])).find(|d| *d != digest);
            let changes = client.get("/v1/events?types=policy_changed&limit=1000").await?;
            let last = changes["events"].as_array().and_then(|e| e.last()).cloned();
            let since: i64 = last.as_ref().and_then(|e| e["sequence"].as_str()?.parse().ok()).unwrap_or(0);
            // Registry replicas: applied the change once their position passed it.
            let cluster = client.get("/v1/cluster").await.ok();
            let mut registries = Vec::new();
            for r in cluster.as_ref().and_then(|c| c["replicas"].as_array()).into_iter().flatten() {
                let applied = r["applied"].as_i64().unwrap_or(0);
                registries.push(json!({"name": r["name"], "alive": r["alive"], "applied": applied >= since}));
            }
            // Serving agents: the digest each one last reported (startup reports and steps).
            let mut agents: BTreeMap<String, (String, String)> = BTreeMap::new();
            let mut after = 0i64;
            loop {
                let page =
                    client.get(&format!("/v1/events?after={after}&limit=1000&types=startup_permit,agent_step")).await?;
                let evs = page["events"].as_array().cloned().unwrap_or_default();
                if evs.is_empty() {
                    break;
                }
                for e in &evs {
                    after = e["sequence"].as_str().and_then(|x| x.parse().ok()).unwrap_or(after);
                    let d = &e["data"];
                    if let (Some(who), Some(p)) = (d["actor"].as_str(), d["policy_digest"].as_str()) {
                        agents.insert(who.to_owned(), (p.to_owned(), s(&d["ts"])));
                    }
                }
            }
            let (fresh, stale): (Vec<_>, Vec<_>) = agents.iter().partition(|(_, (p, _))| *p == digest);
            let report = json!({
                "policy_digest": digest, "changed_at_sequence": since,
                "registries": registries,
                "rechecked": fresh.iter().map(|(a, (_, t))| json!({"agent": a, "at": t})).collect::<Vec<_>>(),
                "old_digest": stale.iter().map(|(a, (p, t))| json!({"agent": a, "policy_digest": p, "at": t})).collect::<Vec<_>>(),
            });
            ctx.print(&report, |r| {
                let mut out = vec![format!("policy in force: {digest} (changed at position {since})")];
                for g in r["registries"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "  registry {}: {}",
                        s(&g["name"]),
                        if g["applied"] == true { "applied" } else { "NOT YET APPLIED" }
                    ));
                }
                for a in r["rechecked"].as_array().into_iter().flatten() {
                    out.push(format!("  agent {}: re-checked under the new digest ({})", s(&a["agent"]), s(&a["at"])));
                }
                for a in r["old_digest"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "  agent {}: STILL ON {} (last report {})",
                        s(&a["agent"]),
                        s(&a["policy_digest"]),
                        s(&a["at"])
                    ));
                }
                out.join("\n")
            });
            if rollback {
                let previous = previous.context("no earlier snapshot to reinstate")?;
                confirm(
                    &[format!("reinstate snapshot {previous} in place of {digest} (a governed policy rollback)")],
                    yes,
                )?;
                let v = client
                    .post("/v1/policy/rollback", &json!({"digest": previous, "reason": "runbook policy-changed"}))
                    .await?;
                ctx.print(&v, |v| format!("policy rolled back; in force: {}", s(&v["digest"])));
            }
        }
        RunbookCmd::WaiverExpired { model, inc, renew_until, justification, yes } => {
            let m = checked(&model)?;
            let waivers = client.get(&format!("/v1/models/{m}/waivers")).await?;
            let now = time::OffsetDateTime::now_utc();
            let expired: Vec<Value> = waivers
                .as_array()
                .into_iter()
                .flatten()
                .filter(|w| {
                    w["expires_at"]
                        .as_str()
                        .and_then(|t| {
                            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                        })
                        .is_some_and(|t| t <= now)
                })
                .cloned()
                .collect();
            let mut versions: Vec<Value> = Vec::new();
            let mut after = String::new();
            loop {
                let page = client.get(&format!("/v1/models/{m}/versions?limit=500&after={after}")).await?;
                versions.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(n) => after = n.to_owned(),
                    None => break,
                }
            }
            let mut affected: Vec<(String, String, String)> = Vec::new(); // (version, finding, waiver)
            for v in &versions {
                let label = s(&v["version"]);
                if v["stage"] != "Approved" || v["hold"] != "none" {
                    continue;
                }
                let findings = client.get(&format!("/v1/models/{m}/versions/{}/findings", checked(&label)?)).await?;
                for w in &expired {
                    let applies = w["version"].is_null() || w["version"].as_str() == Some(&label);
                    let open = findings
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|f| f["id"] == w["finding"] && f["status"] == "open");
                    // A newer waiver for the same finding still in force covers it.
                    let renewed = waivers.as_array().into_iter().flatten().any(|o| {
                        o["finding"] == w["finding"]
                            && (o["version"].is_null() || o["version"].as_str() == Some(&label))
                            && o["expires_at"]
                                .as_str()
                                .and_then(|t| {
                                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                                })
                                .is_some_and(|t| t > now)
                    });
                    if applies && open && !renewed {
                        affected.push((label.clone(), s(&w["finding"]), s(&w["id"])));
                    }
                }
            }
            if affected.is_empty() {
                let v = json!({"expired_waivers": expired.len(), "affected": []});
                ctx.print(&v, |_| {
                    format!("{} expired waiver(s) of {model}; no serving version depends on one", expired.len())
                });
                return Ok(());
            }
            let plan: Vec<String> = affected
                .iter()
                .map(|(v, f, w)| match &renew_until {
                    Some(t) => format!("grant a new waiver for {f} on {model}@{v} until {t} (replacing expired {w})"),
                    None => format!(
                        "quarantine {model}@{v} under {}: {f} is open and waiver {w} expired",
                        inc.as_deref().unwrap_or("(--inc needed)")
                    ),
                })
                .collect();
            if renew_until.is_none() && inc.is_none() {
                for p in &plan {
                    eprintln!("  {p}");
                }
                bail!("an incident id is needed to quarantine: pass --inc INC-…, or --renew-until to renew the waiver");
            }
            confirm(&plan, yes)?;
            let mut done = Vec::new();
            for (v, f, w) in &affected {
                match &renew_until {
                    Some(t) => {
                        let id = format!("{w}-renewed-{}", now.unix_timestamp());
                        client
                            .post(
                                &format!("/v1/models/{m}/waivers"),
                                &json!({"id": id, "finding": f, "version": v, "expires_at": t,
                                        "justification": justification.clone().unwrap_or_default()}),
                            )
                            .await?;
                        done.push(json!({"version": v, "finding": f, "renewed_as": id}));
                    }
                    None => {
                        client
                            .post(
                                &format!("/v1/models/{m}/versions/{}/quarantine", checked(v)?),
                                &json!({"reason": format!("{f} open and waiver {w} expired (runbook waiver-expired)"), "inc_id": inc}),
                            )
                            .await?;
                        done.push(json!({"version": v, "finding": f, "quarantined_under": inc}));
                    }
                }
            }
            let v = json!({"done": done, "aliases": aliases_now(&client, &model).await?});
            ctx.print(&v, |v| {
                let mut out: Vec<String> = v["done"].as_array().into_iter().flatten().map(|d| d.to_string()).collect();
                for a in v["aliases"].as_array().into_iter().flatten() {
                    out.push(format!("  {model}@{} -> {}", s(&a["alias"]), s(&a["version"])));
                }
                out.join("\n")
            });
        }
    }
    Ok(())
}
