//! Monitoring from the terminal (SPEC §12): findings and waivers (`fulcrum findings`,
//! `fulcrum waivers`) and one version's signals (`fulcrum version status`): stage and hold,
//! revalidation date, open findings, traffic per alias, startup denies by reason, drift per
//! feature — the figures `/metrics` carries, for one version.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::commands::{Ctx, checked, s};

#[derive(Debug, Subcommand)]
pub enum FindingsCmd {
    /// Record a scanner report against a version (Grype JSON, osv-scanner JSON, or Fulcrum's).
    Add {
        model: String,
        version: String,
        /// The report file.
        #[arg(long)]
        file: PathBuf,
        /// grype, osv or fulcrum.
        #[arg(long, default_value = "grype")]
        format: String,
    },
    /// A version's findings.
    List { model: String, version: String },
}

#[derive(Debug, Subcommand)]
pub enum WaiversCmd {
    /// Grant a waiver for a finding (security officer): it covers the finding until it expires.
    Add {
        model: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        finding: String,
        /// Only this version (default: every version of the model).
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        justification: String,
        /// RFC 3339 date-time.
        #[arg(long)]
        expires: String,
    },
    /// The waivers of a model (and, with --version, that apply to one version).
    List {
        model: String,
        #[arg(long)]
        version: Option<String>,
    },
}

fn finding_line(f: &Value) -> String {
    format!("{}  {}  {}  {}", s(&f["id"]), s(&f["severity"]), s(&f["status"]), s(&f["package"]))
}

fn waiver_line(w: &Value) -> String {
    format!(
        "{}  {}  {}  until {}  by {}: {}",
        s(&w["id"]),
        s(&w["finding"]),
        w["version"].as_str().unwrap_or("every version"),
        s(&w["expires_at"]),
        s(&w["approver"]),
        s(&w["justification"])
    )
}

fn lines(v: &Value, f: fn(&Value) -> String, none: &str) -> String {
    let rows: Vec<String> = v.as_array().into_iter().flatten().map(f).collect();
    if rows.is_empty() { none.to_owned() } else { rows.join("\n") }
}

pub async fn findings(ctx: &Ctx, c: FindingsCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match c {
        FindingsCmd::Add { model, version, file, format } => {
            let report: Value = serde_json::from_slice(
                &std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?,
            )
            .with_context(|| format!("{} is not JSON", file.display()))?;
            let path = format!("/v1/models/{}/versions/{}/findings", checked(&model)?, checked(&version)?);
            let v = client.post(&path, &json!({"format": format, "report": report})).await?;
            ctx.print(&v, |v| lines(v, finding_line, "no findings"));
        }
        FindingsCmd::List { model, version } => {
            let path = format!("/v1/models/{}/versions/{}/findings", checked(&model)?, checked(&version)?);
            let v = client.get(&path).await?;
            ctx.print(&v, |v| lines(v, finding_line, "no findings"));
        }
    }
    Ok(())
}

pub async fn waivers(ctx: &Ctx, c: WaiversCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match c {
        WaiversCmd::Add { model, id, finding, version, justification, expires } => {
            let body = json!({"id": id, "finding": finding, "version": version, "justification": justification, "expires_at": expires});
            let v = client.post(&format!("/v1/models/{}/waivers", checked(&model)?), &body).await?;
            ctx.print(&v, |w| format!("granted {}", waiver_line(w)));
        }
        WaiversCmd::List { model, version } => {
            let mut path = format!("/v1/models/{}/waivers", checked(&model)?);
            if let Some(v) = version {
                path.push_str(&format!("?version={}", checked(&v)?));
            }
            let v = client.get(&path).await?;
            ctx.print(&v, |v| lines(v, waiver_line, "no waivers"));
        }
    }
    Ok(())
}

/// `fulcrum version status MODEL VERSION`.
pub async fn status(ctx: &Ctx, model: &str, version: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v = client.get(&format!("/v1/models/{}/versions/{}/signals", checked(model)?, checked(version)?)).await?;
    ctx.print(&v, |v| {
        let mut out = vec![format!("{model}@{version}  {}  hold={}", s(&v["stage"]), s(&v["hold"]))];
        out.push(format!("revalidate by {}", v["revalidate_by"].as_str().unwrap_or("(none)")));
        let open: Vec<String> = v["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["status"] == "open")
            .map(|f| format!("{} ({})", s(&f["id"]), s(&f["severity"])))
            .collect();
        out.push(format!("open findings: {}", if open.is_empty() { "none".into() } else { open.join(", ") }));
        out.push(format!("waivers: {}", v["waivers"].as_array().map_or(0, Vec::len)));
        for t in v["serving"].as_array().into_iter().flatten() {
            let ms = |x: &Value| x.as_f64().map_or("-".into(), |s| format!("{:.1} ms", s * 1e3));
            out.push(format!(
                "serving {} ({}): {} requests, {} errors, {} refused, p50 {}, p99 {}",
                s(&t["alias"]),
                s(&t["env"]),
                s(&t["requests"]),
                s(&t["errors"]),
                s(&t["refused"]),
                ms(&t["p50_s"]),
                ms(&t["p99_s"])
            ));
        }
        for st in v["startups"].as_array().into_iter().flatten() {
            let why = st["reason"].as_str().filter(|r| !r.is_empty()).map(|r| format!(" ({r})")).unwrap_or_default();
            out.push(format!("startups {} {}{why}: {}", s(&st["env"]), s(&st["decision"]), s(&st["count"])));
        }
        for d in v["drift"].as_array().into_iter().flatten() {
            for f in d["features"].as_array().into_iter().flatten() {
                let psi = f["psi"].as_f64().map_or("-".into(), |p| format!("{p:.3}"));
                out.push(format!(
                    "drift {} ({}) {}: psi {psi} over {} values",
                    s(&d["alias"]),
                    s(&d["env"]),
                    s(&f["feature"]),
                    s(&f["values"])
                ));
            }
        }
        out.join("\n")
    });
    Ok(())
}
