//! Client-side commands: each calls the registry API and prints the answer as text or JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use fulcrum_client::Client;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::Output;

pub struct Ctx {
    pub registry: String,
    pub token: Option<String>,
    pub tls: fulcrum_client::ClientTls,
    pub output: Output,
}

impl Ctx {
    pub fn client(&self) -> anyhow::Result<Client> {
        if self.token.is_none() && self.tls.cert.is_none() {
            bail!("no token: set FULCRUM_TOKEN or FULCRUM_TOKEN_FILE, pass --token-file, or a client certificate");
        }
        Ok(Client::with_tls(&self.registry, self.token.clone(), &self.tls)?)
    }

    pub(crate) fn print(&self, v: &Value, text: impl FnOnce(&Value) -> String) {
        match self.output {
            Output::Json => crate::outln!("{}", serde_json::to_string_pretty(v).expect("json prints")),
            Output::Text => crate::outln!("{}", text(v)),
        }
    }
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn seg(s: &str) -> String {
    // Names, versions and aliases are validated to URL-safe characters by the registry; refuse
    // anything that would change the path before it is sent.
    s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')).collect()
}

pub(crate) fn checked(s_: &str) -> anyhow::Result<String> {
    let clean = seg(s_);
    if clean != s_ || clean.is_empty() {
        bail!("{s_:?} is not a valid name");
    }
    Ok(clean)
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Create a model in your tenant.
    Create {
        name: String,
        #[arg(long)]
        domain: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long = "owner")]
        owners: Vec<String>,
        /// key=value (repeatable)
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    Get {
        name: String,
    },
    List {
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn model_line(m: &Value) -> String {
    format!(
        "{}  tenant={} domain={} created_by={} {}",
        s(&m["name"]),
        s(&m["tenant"]),
        s(&m["domain"]),
        s(&m["created_by"]),
        s(&m["created_at"])
    )
}

pub async fn model(ctx: &Ctx, c: ModelCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match c {
        ModelCmd::Create { name, domain, description, owners, labels } => {
            let mut map = serde_json::Map::new();
            for l in labels {
                let (k, v) = l.split_once('=').with_context(|| format!("label {l:?} is not key=value"))?;
                map.insert(k.into(), v.into());
            }
            let v = client.post("/v1/models", &json!({"name": name, "domain": domain, "description": description, "owners": owners, "labels": map})).await?;
            ctx.print(&v, |m| format!("created {}", model_line(m)));
        }
        ModelCmd::Get { name } => {
            let v = client.get(&format!("/v1/models/{}", checked(&name)?)).await?;
            ctx.print(&v, model_line);
        }
        ModelCmd::List { after, limit } => {
            let mut path = format!("/v1/models?limit={limit}");
            if let Some(a) = after {
                path.push_str(&format!("&after={}", checked(&a)?));
            }
            let v = client.get(&path).await?;
            ctx.print(&v, |p| {
                let mut out: Vec<String> = p["items"].as_array().into_iter().flatten().map(model_line).collect();
                if !p["next"].is_null() {
                    out.push(format!("(more: --after {})", s(&p["next"])));
                }
                out.join("\n")
            });
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum VersionCmd {
    /// Upload a model directory (content-addressed; progress on a terminal) and register it
    /// as a Candidate version.
    Register {
        model: String,
        version: String,
        /// The model directory to upload …
        #[arg(long, required_unless_present = "oci", conflicts_with = "oci")]
        dir: Option<PathBuf>,
        /// … or an OCI reference the registry pulls the files from (ModelPack, KitOps ModelKit
        /// or modelcar image; a tag is resolved to a digest once and never recorded).
        #[arg(long)]
        oci: Option<String>,
        #[arg(long)]
        chg_id: Option<String>,
        /// Model card, a JSON object file.
        #[arg(long)]
        model_card: Option<PathBuf>,
        /// SBOM file (uploaded as a blob).
        #[arg(long)]
        sbom: Option<PathBuf>,
        /// Reference profile of the inputs (`fulcrum profile build`), for drift.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Attestation file(s) (uploaded as blobs).
        #[arg(long = "attestation")]
        attestations: Vec<PathBuf>,
        /// Signature file(s) (uploaded as blobs).
        #[arg(long = "signature")]
        signatures: Vec<PathBuf>,
        /// RFC 3339 date-time by which the version must be revalidated.
        #[arg(long)]
        revalidate_by: Option<String>,
        /// A dataset snapshot the version was trained or validated on, `URI=sha256:…`
        /// (repeatable): the data catalog answers "which versions used it".
        #[arg(long = "dataset")]
        datasets: Vec<String>,
    },
    Get {
        model: String,
        version: String,
    },
    /// Push a version to an OCI registry as a ModelPack artifact (raw layers, by digest) with its
    /// release record, model-signing bundles and provenance attached as referrers.
    Export {
        model: String,
        version: String,
        /// Where to push: `registry/repository[:tag]`.
        #[arg(long)]
        oci: String,
        #[command(flatten)]
        registry: crate::oci::OciArgs,
    },
    /// One version's monitoring signals: stage and hold, revalidation date, open findings,
    /// traffic per alias, startup denies by reason, drift per feature.
    Status {
        model: String,
        version: String,
    },
    List {
        model: String,
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Approve (you are the approver).
    Approve {
        model: String,
        version: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Promote one rung: Staging or Approved.
    Promote {
        model: String,
        version: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        chg_id: Option<String>,
    },
    /// Revoke (terminal); aliases roll back automatically.
    Revoke {
        model: String,
        version: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        chg_id: Option<String>,
        #[arg(long)]
        inc_id: Option<String>,
    },
    /// Quarantine; aliases roll back automatically.
    Quarantine {
        model: String,
        version: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        inc_id: Option<String>,
        #[arg(long)]
        chg_id: Option<String>,
    },
    /// Release (lift) a quarantine.
    Release {
        model: String,
        version: String,
        #[arg(long)]
        chg_id: String,
    },
}

fn version_line(v: &Value) -> String {
    let hold = if v["hold"] == "none" { String::new() } else { format!(" HOLD={}", s(&v["hold"])) };
    let approvals: Vec<String> = v["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| format!("{}:{}", s(&a["role"]), s(&a["subject"])))
        .collect();
    format!(
        "{}@{}  seq={} stage={}{} artifact={} approvals=[{}]",
        s(&v["model"]),
        s(&v["version"]),
        s(&v["seq"]),
        s(&v["stage"]),
        hold,
        s(&v["artifact_digest"]),
        approvals.join(", ")
    )
}

async fn upload_small(client: &Client, path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(client.upload_bytes(bytes).await?.to_string())
}

pub async fn version(ctx: &Ctx, c: VersionCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let vpath = |m: &str, v: &str| -> anyhow::Result<String> {
        Ok(format!("/v1/models/{}/versions/{}", checked(m)?, checked(v)?))
    };
    let v = match c {
        VersionCmd::Register {
            model,
            version,
            dir,
            oci,
            chg_id,
            model_card,
            sbom,
            profile,
            attestations,
            signatures,
            revalidate_by,
            datasets,
        } => {
            let datasets: Vec<Value> = datasets
                .iter()
                .map(|d| {
                    let (uri, digest) = d
                        .rsplit_once('=')
                        .filter(|(u, g)| !u.is_empty() && g.starts_with("sha256:"))
                        .ok_or_else(|| anyhow::anyhow!("--dataset {d}: expected URI=sha256:<hex>"))?;
                    Ok(json!({"uri": uri, "digest": digest}))
                })
                .collect::<anyhow::Result<_>>()?;
            let card: Option<Value> = match model_card {
                Some(p) => Some(
                    serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?)
                        .context("model card is not JSON")?,
                ),
                None => None,
            };
            let files = match &dir {
                Some(dir) => serde_json::to_value(crate::upload::upload_dir(&client, dir).await?.files())?,
                None => json!([]),
            };
            let sbom = match sbom {
                Some(p) => Some(upload_small(&client, &p).await?),
                None => None,
            };
            let profile = match profile {
                Some(p) => {
                    let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                    fulcrum_core::drift::Profile::parse(&bytes).with_context(|| p.display().to_string())?;
                    Some(upload_small(&client, &p).await?)
                }
                None => None,
            };
            let mut att = Vec::new();
            for p in &attestations {
                att.push(upload_small(&client, p).await?);
            }
            let mut sig = Vec::new();
            for p in &signatures {
                sig.push(upload_small(&client, p).await?);
            }
            let mut body = json!({
                "version": version, "files": files, "chg_id": chg_id, "model_card": card,
                "sbom": sbom, "attestations": att, "signatures": sig, "revalidate_by": revalidate_by,
                "dataset_snapshots": datasets, "reference_profile": profile,
            });
            let path = match &oci {
                Some(r) => {
                    body["oci"] = json!(r);
                    format!("/v1/models/{}/oci-imports", checked(&model)?)
                }
                None => format!("/v1/models/{}/versions", checked(&model)?),
            };
            let v = client.post(&path, &body).await.map_err(explain_gates)?;
            ctx.print(&v, |v| format!("registered {}", version_line(v)));
            return Ok(());
        }
        VersionCmd::Get { model, version } => client.get(&vpath(&model, &version)?).await?,
        VersionCmd::Export { model, version, oci, registry } => {
            let v = client.get(&vpath(&model, &version)?).await?;
            let out = crate::oci::export(&client, &v, &oci, &registry.settings()?).await?;
            ctx.print(&out, |o| {
                format!(
                    "exported {model}@{version} to {} ({} layers, {} referrers)",
                    o["reference"].as_str().unwrap_or(""),
                    o["layers"],
                    o["referrers"].as_array().map_or(0, Vec::len)
                )
            });
            return Ok(());
        }
        VersionCmd::Status { model, version } => return crate::monitoring::status(ctx, &model, &version).await,
        VersionCmd::List { model, after, limit } => {
            let mut path = format!("/v1/models/{}/versions?limit={limit}", checked(&model)?);
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let v = client.get(&path).await?;
            ctx.print(&v, |p| {
                p["items"].as_array().into_iter().flatten().map(version_line).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
        VersionCmd::Approve { model, version, comment } => {
            client.post(&format!("{}/approvals", vpath(&model, &version)?), &json!({"comment": comment})).await?
        }
        VersionCmd::Promote { model, version, to, chg_id } => {
            client
                .post(&format!("{}/promotions", vpath(&model, &version)?), &json!({"to": to, "chg_id": chg_id}))
                .await?
        }
        VersionCmd::Revoke { model, version, reason, chg_id, inc_id } => {
            client
                .post(
                    &format!("{}/revocation", vpath(&model, &version)?),
                    &json!({"reason": reason, "chg_id": chg_id, "inc_id": inc_id}),
                )
                .await?
        }
        VersionCmd::Quarantine { model, version, reason, inc_id, chg_id } => {
            client
                .post(
                    &format!("{}/quarantine", vpath(&model, &version)?),
                    &json!({"reason": reason, "chg_id": chg_id, "inc_id": inc_id}),
                )
                .await?
        }
        VersionCmd::Release { model, version, chg_id } => {
            client.delete(&format!("{}/quarantine", vpath(&model, &version)?), &json!({"chg_id": chg_id})).await?
        }
    };
    ctx.print(&v, version_line);
    Ok(())
}

/// Registration refusals list each failed gate; keep them on the one error line.
pub(crate) fn explain_gates(e: fulcrum_client::ClientError) -> anyhow::Error {
    match &e {
        fulcrum_client::ClientError::Problem { errors, .. } if !errors.is_empty() => {
            let list: Vec<String> = errors.iter().map(|(c, d)| format!("{c} ({d})")).collect();
            anyhow::anyhow!("{e}; failed checks: {}", list.join("; "))
        }
        _ => e.into(),
    }
}

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Point an alias at a version (downgrades need --allow-downgrade and --chg-id).
    Set {
        model: String,
        alias: String,
        version: String,
        #[arg(long)]
        chg_id: Option<String>,
        #[arg(long)]
        allow_downgrade: bool,
        /// dev, staging or prod (fixed at creation; default from the alias name).
        #[arg(long)]
        env: Option<String>,
    },
    Get {
        model: String,
        alias: String,
    },
    History {
        model: String,
        alias: String,
    },
    Delete {
        model: String,
        alias: String,
        #[arg(long)]
        chg_id: Option<String>,
    },
}

fn alias_line(a: &Value) -> String {
    format!(
        "{}@{} -> {}  env={} position={} chg_id={}",
        s(&a["model"]),
        s(&a["alias"]),
        s(&a["version"]),
        s(&a["env"]),
        s(&a["position"]),
        s(&a["chg_id"])
    )
}

pub async fn alias(ctx: &Ctx, c: AliasCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let apath = |m: &str, a: &str| -> anyhow::Result<String> {
        Ok(format!("/v1/models/{}/aliases/{}", checked(m)?, checked(a)?))
    };
    match c {
        AliasCmd::Set { model, alias, version, chg_id, allow_downgrade, env } => {
            let v = client
                .put(
                    &apath(&model, &alias)?,
                    &json!({"version": version, "chg_id": chg_id, "allow_downgrade": allow_downgrade, "env": env}),
                )
                .await?;
            ctx.print(&v, alias_line);
        }
        AliasCmd::Get { model, alias } => {
            let v = client.get(&apath(&model, &alias)?).await?;
            ctx.print(&v, alias_line);
        }
        AliasCmd::History { model, alias } => {
            let v = client.get(&format!("{}/history", apath(&model, &alias)?)).await?;
            ctx.print(&v, |h| {
                h.as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        format!(
                            "#{} {} -> {} (seq {})  by {} chg={} inc={} {}",
                            s(&e["position"]),
                            s(&e["cause"]),
                            s(&e["version"]),
                            s(&e["seq"]),
                            s(&e["actor"]),
                            s(&e["chg_id"]),
                            s(&e["inc_id"]),
                            s(&e["at"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        AliasCmd::Delete { model, alias, chg_id } => {
            client.delete(&apath(&model, &alias)?, &json!({"chg_id": chg_id})).await?;
            ctx.print(&json!({"deleted": alias}), |_| format!("deleted alias {alias} of {model} (history kept)"));
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// name@alias, name@version or name@sha256:<hex>
    reference: String,
    #[arg(long)]
    env: String,
}

pub async fn resolve(ctx: &Ctx, a: ResolveArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let bundle = client.trust_bundle().await?;
    let r = client.resolve(&a.reference, &a.env, &bundle).await?;
    let v: Value = serde_json::from_slice(&r.body)?;
    ctx.print(&json!({"document": v, "kid": r.kid, "signature": r.signature, "verified": true}), |_| {
        let d = &r.document;
        format!(
            "{}@{} (seq {}) stage={} revoked={} quarantined={} env={} decision={:?}{}\nartifact {}\npolicy   {}\nsigned by {} (verified), expires {}",
            d.name,
            d.version,
            d.seq,
            d.stage,
            d.revoked,
            d.quarantined,
            d.env,
            d.decision,
            d.deny_reason.as_deref().map(|r| format!(" reason={r}")).unwrap_or_default(),
            d.artifact_digest,
            d.policy_digest,
            r.kid,
            d.expires_at
        )
    });
    if r.document.decision == fulcrum_core::resolve::Decision::Deny {
        bail!("denied for env {}: {}", r.document.env, r.document.deny_reason.as_deref().unwrap_or("unknown"));
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    List {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Follow new events as they commit (server-sent events; resumes from --after).
    Tail {
        #[arg(long)]
        after: Option<i64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Events the webhooks gave up on, newest first.
    DeadLetters,
    /// Deliver a dead-lettered event again, once, to its webhook (admin).
    Redeliver {
        /// The dead letter's id (from `fulcrum events dead-letters`).
        id: i64,
    },
}

pub fn event_line(e: &Value) -> String {
    let d = &e["data"];
    let mut parts = vec![
        format!("#{} {} {}", s(&e["sequence"]), s(&d["ts"]), s(&d["event"])),
        format!("{}@{}", s(&d["model"]), s(&d["version"])),
    ];
    if !d["from"].is_null() || !d["to"].is_null() {
        parts.push(format!("{} -> {}", s(&d["from"]), s(&d["to"])));
    }
    if s(&d["event"]) == "agent_step" {
        // A replica's step: what, by whom, on its own clock.
        return format!(
            "#{} {} agent_step {}  {}@{}  {}  at={}",
            s(&e["sequence"]),
            s(&d["ts"]),
            s(&d["reason"]),
            s(&d["model"]),
            s(&d["version"]),
            s(&d["actor"]),
            s(&d["observed_at"])
        );
    }
    for k in ["alias", "env", "chg_id", "inc_id", "reason", "actor"] {
        if !d[k].is_null() {
            parts.push(format!("{k}={}", s(&d[k])));
        }
    }
    parts.join("  ")
}

pub async fn events(ctx: &Ctx, c: EventsCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match c {
        EventsCmd::List { after, limit } => {
            let v = client.get(&format!("/v1/events?after={after}&limit={limit}")).await?;
            ctx.print(&v, |p| {
                p["events"].as_array().into_iter().flatten().map(event_line).collect::<Vec<_>>().join("\n")
            });
        }
        EventsCmd::Tail { after, count } => {
            let mut stream = Box::pin(client.event_stream(after).await?);
            let mut seen = 0usize;
            while let Some(ev) = stream.next().await {
                let ev = ev?;
                let v: Value = serde_json::from_str(&ev.data).context("event is not JSON")?;
                match ctx.output {
                    Output::Json => crate::outln!("{}", serde_json::to_string(&v)?),
                    Output::Text => crate::outln!("{}", event_line(&v)),
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
        }
        EventsCmd::DeadLetters => {
            let v = client.get("/v1/webhooks/dead-letters").await?;
            ctx.print(&v, |p| {
                p.as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let state = match d["resolved_by"].as_str() {
                            Some(by) => format!("re-delivered by {by} at {}", s(&d["resolved_at"])),
                            None => format!("{} attempts, last: {}", s(&d["attempts"]), s(&d["last_error"])),
                        };
                        format!(
                            "{} {} event #{} {} — {state}",
                            s(&d["id"]),
                            s(&d["sink"]),
                            s(&d["seq"]),
                            s(&d["event_id"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        EventsCmd::Redeliver { id } => {
            let v = client.post(&format!("/v1/webhooks/dead-letters/{id}/redelivery"), &Value::Null).await?;
            if v["delivered"] != true {
                anyhow::bail!("the receiver did not take it: {}", s(&v["error"]));
            }
            ctx.print(&v, |_| format!("dead letter {id} re-delivered"));
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum BlobsCmd {
    /// Re-hash every blob of your tenant against its digest (admin, security officer); damaged
    /// ones are recorded as `blob_corrupt` and refused until their true bytes are uploaded
    /// again. Exits 1 when any blob is damaged or missing.
    Scrub {
        /// Blobs checked per request.
        #[arg(long, default_value_t = 100)]
        page: u32,
    },
}

pub async fn blobs(ctx: &Ctx, c: BlobsCmd) -> anyhow::Result<()> {
    let BlobsCmd::Scrub { page } = c;
    let client = ctx.client()?;
    let (mut checked, mut bytes, mut corrupt, mut missing) = (0u64, 0u64, Vec::new(), Vec::new());
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/blobs/scrub?limit={page}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let v = client.post(&path, &json!({})).await?;
        checked += v["checked"].as_u64().unwrap_or(0);
        bytes += v["bytes"].as_u64().unwrap_or(0);
        corrupt.extend(v["corrupt"].as_array().into_iter().flatten().cloned());
        missing.extend(v["missing"].as_array().into_iter().flatten().cloned());
        match v["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let report = json!({"checked": checked, "bytes": bytes, "corrupt": corrupt, "missing": missing});
    ctx.print(&report, |v| {
        let mut lines = vec![format!("checked {checked} blobs ({bytes} bytes)")];
        for c in v["corrupt"].as_array().into_iter().flatten() {
            lines.push(format!("CORRUPT {} (the stored bytes hash to {})", s(&c["digest"]), s(&c["actual"])));
        }
        for m in v["missing"].as_array().into_iter().flatten() {
            lines.push(format!("MISSING {}", s(m)));
        }
        lines.join("\n")
    });
    if !corrupt.is_empty() || !missing.is_empty() {
        bail!(
            "{} damaged and {} missing blob(s); upload their true bytes again to repair",
            corrupt.len(),
            missing.len()
        );
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// The snapshot in force: its digest and modules.
    Show,
    /// Compile a directory of `*.rego` (+ optional `data.json`) and run its `test_*` rules locally.
    Test { dir: PathBuf },
    /// Install a directory as the new snapshot (policy-admin); refused unless it compiles and
    /// passes its tests.
    Apply { dir: PathBuf },
    /// What a directory would change compared with the snapshot in force.
    Diff { dir: PathBuf },
    /// Put a snapshot installed before back in force by its digest (policy-admin).
    Rollback {
        digest: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Every install, rollback and reset, newest first (the first is in force).
    History,
    /// Break glass (host operator, registry stopped): put the shipped default policy back in
    /// force at the registry's next start, recorded and announced as `policy_changed`. Needs
    /// write access to the data dir, not a token.
    Reset {
        #[arg(long)]
        data_dir: PathBuf,
        /// Why (recorded in the ledger with the reset).
        #[arg(long)]
        reason: String,
    },
}

/// Lines of `a` not in `b` (order kept), for a compact module diff.
fn missing_lines<'a>(a: &'a str, b: &str) -> Vec<&'a str> {
    let other: std::collections::HashSet<&str> = b.lines().collect();
    a.lines().filter(|l| !other.contains(l) && !l.trim().is_empty()).collect()
}

/// Leaves of a JSON value as pointer → value text.
fn leaves(v: &Value, at: String, out: &mut std::collections::BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(x, format!("{at}/{k}"), out);
            }
        }
        other => {
            out.insert(if at.is_empty() { "/".into() } else { at }, other.to_string());
        }
    }
}

async fn current_snapshot(ctx: &Ctx) -> anyhow::Result<fulcrum_policy::Snapshot> {
    let env = ctx.client()?.get("/v1/policy/current").await?;
    let payload = env["payload"]
        .as_str()
        .and_then(|p| fulcrum_verify::b64_decode(p).ok())
        .context("the answer is not a DSSE envelope")?;
    Ok(fulcrum_policy::Snapshot::from_canonical_bytes(&payload)?)
}

fn read_policy_dir(dir: &std::path::Path) -> anyhow::Result<fulcrum_policy::Snapshot> {
    let mut modules = std::collections::BTreeMap::new();
    let mut data = json!({});
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".rego") {
            modules.insert(name, std::fs::read_to_string(&path)?);
        } else if name == "data.json" {
            data = serde_json::from_slice(&std::fs::read(&path)?).context("data.json is not JSON")?;
        }
    }
    Ok(fulcrum_policy::Snapshot::new(modules, data)?)
}

pub async fn policy(ctx: &Ctx, c: PolicyCmd) -> anyhow::Result<()> {
    match c {
        PolicyCmd::Test { dir } => {
            let snap = read_policy_dir(&dir)?;
            fulcrum_policy::Policy::compile(&snap)?;
            ctx.print(&json!({"ok": true, "policy_digest": snap.digest(), "modules": snap.modules().keys().collect::<Vec<_>>()}), |v| {
                format!("ok: compiles and its tests pass; digest {}", s(&v["policy_digest"]))
            });
        }
        PolicyCmd::Apply { dir } => {
            let snap = read_policy_dir(&dir)?;
            let v = ctx.client()?.put("/v1/policy", &json!({"modules": snap.modules(), "data": snap.data()})).await?;
            ctx.print(&v, |v| match v["kind"].as_str() {
                Some("rollback") => format!("rolled back to policy {} (installed before)", s(&v["policy_digest"])),
                _ => format!("installed policy {}", s(&v["policy_digest"])),
            });
        }
        PolicyCmd::Rollback { digest, reason } => {
            let v = ctx.client()?.post("/v1/policy/rollback", &json!({"digest": digest, "reason": reason})).await?;
            ctx.print(&v, |v| format!("rolled back to policy {}", s(&v["policy_digest"])));
        }
        PolicyCmd::History => {
            let v = ctx.client()?.get("/v1/policy/history").await?;
            ctx.print(&v, |v| {
                v["installs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        format!(
                            "{}  {:<8}  {}  by {}{}",
                            s(&i["installed_at"]),
                            s(&i["kind"]),
                            s(&i["digest"]),
                            s(&i["installed_by"]),
                            i["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        PolicyCmd::Reset { data_dir, reason } => {
            let req = fulcrum_server::policy::request_reset(&data_dir, &reason)?;
            ctx.print(&serde_json::to_value(&req).expect("json"), |_| {
                format!(
                    "break-glass reset requested by {}: the shipped default policy goes in force at the registry's next start (restart it now)",
                    req.requested_by
                )
            });
        }
        PolicyCmd::Diff { dir } => {
            let new = read_policy_dir(&dir)?;
            let cur = current_snapshot(ctx).await?;
            let mut lines = vec![format!("in force: {}\nproposed: {}", cur.digest(), new.digest())];
            for (name, src) in new.modules() {
                match cur.modules().get(name) {
                    None => lines.push(format!("+ module {name}")),
                    Some(old) if old != src => {
                        lines.push(format!("~ module {name}"));
                        lines.extend(missing_lines(old, src).into_iter().map(|l| format!("  - {l}")));
                        lines.extend(missing_lines(src, old).into_iter().map(|l| format!("  + {l}")));
                    }
                    Some(_) => {}
                }
            }
            for name in cur.modules().keys().filter(|n| !new.modules().contains_key(*n)) {
                lines.push(format!("- module {name}"));
            }
            let (mut a, mut b) = (std::collections::BTreeMap::new(), std::collections::BTreeMap::new());
            leaves(cur.data(), String::new(), &mut a);
            leaves(new.data(), String::new(), &mut b);
            for (k, v) in &b {
                match a.get(k) {
                    None => lines.push(format!("+ data {k} = {v}")),
                    Some(old) if old != v => lines.push(format!("~ data {k}: {old} -> {v}")),
                    Some(_) => {}
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                lines.push(format!("- data {k}"));
            }
            if lines.len() == 1 {
                lines.push("no changes".into());
            }
            crate::outln!("{}", lines.join("\n"));
        }
        PolicyCmd::Show => {
            let snap = current_snapshot(ctx).await?;
            ctx.print(&json!({"policy_digest": snap.digest(), "modules": snap.modules(), "data": snap.data()}), |v| {
                let mods: Vec<String> =
                    v["modules"].as_object().into_iter().flatten().map(|(k, _)| k.clone()).collect();
                format!("policy {}\nmodules: {}", s(&v["policy_digest"]), mods.join(", "))
            });
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DecisionsArgs {
    #[arg(long)]
    chg_id: Option<String>,
    #[arg(long)]
    inc_id: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    version: Option<String>,
    /// Only decisions of one rule: `fulcrum/promotion/decision`, `fulcrum/env/decision` (gates)
    /// or `fulcrum/authz/decision` (access).
    #[arg(long)]
    path: Option<String>,
    /// Explain one decision: which rules denied and why.
    #[arg(long)]
    explain: Option<String>,
}

impl DecisionsArgs {
    pub fn explain(id: String) -> Self {
        Self { chg_id: None, inc_id: None, model: None, version: None, path: None, explain: Some(id) }
    }
}

pub async fn decisions(ctx: &Ctx, a: DecisionsArgs) -> anyhow::Result<()> {
    let mut q = vec![];
    for (k, v) in [
        ("chg_id", &a.chg_id),
        ("inc_id", &a.inc_id),
        ("model", &a.model),
        ("version", &a.version),
        ("decision_id", &a.explain),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", checked_id(v)?));
        }
    }
    if let Some(p) = &a.path {
        if p.is_empty() || p.len() > 128 || !p.chars().all(|c| c.is_ascii_alphanumeric() || "_/".contains(c)) {
            bail!("--path must be a rule path such as fulcrum/authz/decision");
        }
        q.push(format!("path={p}"));
    }
    let v = ctx.client()?.get(&format!("/v1/decisions?{}", q.join("&"))).await?;
    let items = v["decisions"].as_array().cloned().unwrap_or_default();
    if a.explain.is_some() && items.is_empty() {
        bail!("no decision {} in your tenant", a.explain.unwrap_or_default());
    }
    ctx.print(&v, |_| {
        items
            .iter()
            .map(|d| {
                let verdict = if d["result"]["allow"] == true { "ALLOW".to_owned() } else { "DENY".to_owned() };
                let reasons: Vec<String> = d["result"]["deny"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| explain_reason(r.as_str().unwrap_or("")))
                    .collect();
                let what = if d["path"] == "fulcrum/authz/decision" {
                    format!("{} {} {}", s(&d["input"]["principal"]["subject"]), s(&d["input"]["action"]), {
                        let r = &d["input"]["resource"];
                        if r["model"].is_string() { s(&r["model"]) } else { format!("tenant {}", s(&r["tenant"])) }
                    })
                } else {
                    format!("{}@{}", s(&d["input"]["model"]["name"]), s(&d["input"]["version"]["label"]))
                };
                let mut line = format!(
                    "{} {} {} {} chg={} policy={}",
                    s(&d["timestamp"]),
                    s(&d["decision_id"]),
                    verdict,
                    what,
                    s(&d["chg_id"]),
                    s(&d["bundles"]["fulcrum"]["revision"])
                );
                for r in reasons {
                    line.push_str(&format!("\n    - {r}"));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

fn checked_id(v: &str) -> anyhow::Result<String> {
    if v.is_empty()
        || !v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'+'))
    {
        bail!("{v:?} is not a valid identifier");
    }
    Ok(v.to_owned())
}

/// A deny reason in plain words, with what to do about it.
fn explain_reason(code: &str) -> String {
    let (what, arg) = code.split_once(':').unwrap_or((code, ""));
    match what {
        "four_eyes" => "four-eyes: Approved needs approvals from two different people in two different roles, neither the publisher".into(),
        "open_cve" => format!("open critical/high finding {arg}: fix it, or have a waiver approved"),
        "waiver_expired" => format!("waiver {arg} has expired: renew or mitigate (runbook: expired waiver)"),
        "revalidation_overdue" | "revalidation_due" => {
            "the revalidate_by date has passed: revalidate the model and register a new version".into()
        }
        "revalidate_by_missing" => "no revalidate_by date: register the version with one".into(),
        "model_card_missing" => format!("the model card lacks the required field {arg:?}"),
        "stage_not_allowed" => "this environment may not load a version at that stage".into(),
        "revoked" | "quarantined" => format!("the version is {what}"),
        "role_forbids" => format!("the caller's role may not {arg}"),
        "other_tenant" | "other_domain" => "the resource belongs to another tenant or domain".into(),
        "change_freeze" => "the environment is frozen for this model".into(),
        "missing" => format!("the release policy requires {arg}, and none verified"),
        "unknown_requirement" => format!("the policy requires {arg:?}, which is not a kind of release evidence"),
        "policy_undefined" | "policy_error" | "policy_timeout" | "policy_result_malformed" => format!("the policy gave no valid answer ({what}): denied by default"),
        other => format!("{other}{}", if arg.is_empty() { String::new() } else { format!(": {arg}") }),
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum DatasetCmd {
    /// Every version of your tenant registered with the snapshot DIGEST (`sha256:…`).
    UsedBy { digest: String },
}

pub async fn dataset(ctx: &Ctx, c: DatasetCmd) -> anyhow::Result<()> {
    let DatasetCmd::UsedBy { digest } = c;
    let d: fulcrum_core::Digest = digest.parse().map_err(|e| anyhow::anyhow!("{digest}: {e}"))?;
    let client = ctx.client()?;
    let mut items = vec![];
    let mut after = String::new();
    loop {
        let page = client.get(&format!("/v1/datasets/{d}/versions?limit=500&after={after}")).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    let all = serde_json::json!({"digest": d.to_string(), "items": items});
    ctx.print(&all, |v| {
        let rows: Vec<String> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{}@{}  {}  hold={}  {}  {}",
                    s(&i["model"]),
                    s(&i["version"]),
                    s(&i["stage"]),
                    s(&i["hold"]),
                    s(&i["registered_at"]),
                    i["uris"].as_array().into_iter().flatten().map(s).collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        if rows.is_empty() { format!("no version of your tenant used {d}") } else { rows.join("\n") }
    });
    Ok(())
}

pub async fn whoami(ctx: &Ctx) -> anyhow::Result<()> {
    let v = ctx.client()?.get("/v1/me").await?;
    ctx.print(&v, |v| {
        let mut out = format!(
            "{} ({} of tenant {}, domain {}) authenticated by {}",
            s(&v["subject"]),
            s(&v["role"]),
            s(&v["tenant"]),
            s(&v["domain"]),
            s(&v["authenticated_by"])
        );
        for k in ["env", "purpose", "issuer", "certificate"] {
            if !v[k].is_null() {
                out.push_str(&format!("\n  {k}: {}", s(&v[k])));
            }
        }
        out
    });
    Ok(())
}
