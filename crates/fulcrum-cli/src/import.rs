//! `fulcrum import mlflow`: copy an MLflow Model Registry into Fulcrum — registered models,
//! their versions with every file (downloaded, hashed, uploaded and checked against the
//! registry's manifest), tags, and aliases recreated through the governed path. Each version is
//! registered as a Candidate whose model card keeps its MLflow history (source, run, stage,
//! author, creation time, tags, and where it was imported from).
//!
//! Idempotent and resumable: a version already imported from the same place is left as it is,
//! so an interrupted run is simply run again. `--dry-run` reports what would be done and changes
//! nothing. The report (JSON with `--report FILE`, and on stdout) lists every model, version and
//! alias with its outcome; a label Fulcrum already holds from elsewhere is a conflict, never
//! overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use fulcrum_client::{Client, ClientError};
use fulcrum_server::mlflow::sources::{Source, Tracking};
use serde_json::{Value, json};

use crate::commands::{Ctx, explain_gates};

#[derive(Debug, Args)]
pub struct MlflowArgs {
    /// The MLflow server to import from (its registry and artifact proxy).
    #[arg(long)]
    tracking_uri: String,
    /// A bearer token for the MLflow server, read from this file.
    #[arg(long)]
    mlflow_token_file: Option<PathBuf>,
    /// The Fulcrum domain of models created by the import (a model's `fulcrum.domain` tag wins).
    #[arg(long)]
    domain: String,
    /// Only these registered models (repeatable); default: all.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Say what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the JSON report here as well.
    #[arg(long)]
    report: Option<PathBuf>,
    /// A change id for alias moves the policy wants one for (production aliases).
    #[arg(long)]
    chg_id: Option<String>,
}

/// Everything MLflow pages, read to the end.
async fn all_pages(t: &Tracking, path: &str, key: &str, filter: Option<&str>) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let mut q = vec![("max_results", "1000")];
        if let Some(f) = filter {
            q.push(("filter", f));
        }
        if !token.is_empty() {
            q.push(("page_token", &token));
        }
        let page = t.get(&[path], &q).await.map_err(anyhow::Error::msg)?;
        out.extend(page[key].as_array().cloned().unwrap_or_default());
        match page["next_page_token"].as_str() {
            Some(n) if !n.is_empty() => token = n.to_owned(),
            _ => return Ok(out),
        }
    }
}

/// MLflow's `[{key, value}]` tags as a map.
fn tags(v: &Value) -> BTreeMap<String, String> {
    v["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["key"].as_str()?.to_owned(), t["value"].as_str()?.to_owned())))
        .collect()
}

fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::Problem { status: 404, .. })
}

/// Where this import says a version came from (kept in the model card; how a re-run knows it).
fn origin(tracking: &str, model: &str, version: &str) -> Value {
    json!({"tracking_uri": tracking, "name": model, "version": version})
}

pub async fn mlflow(ctx: &Ctx, a: MlflowArgs) -> anyhow::Result<()> {
    let fulcrum = ctx.client()?;
    let token = match &a.mlflow_token_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?.trim().to_owned())
        }
        None => None,
    };
    let t = Tracking::new(&a.tracking_uri, token).map_err(anyhow::Error::msg)?;
    let mut models = all_pages(&t, "api/2.0/mlflow/registered-models/search", "registered_models", None).await?;
    models.retain(|m| tags(m).get("mlflow.prompt.is_prompt").map(String::as_str) != Some("true"));
    if !a.models.is_empty() {
        for wanted in &a.models {
            if !models.iter().any(|m| m["name"] == wanted.as_str()) {
                bail!("the MLflow registry has no model {wanted}");
            }
        }
        models.retain(|m| a.models.iter().any(|w| m["name"] == w.as_str()));
    }
    let mut report = Vec::new();
    let mut troubles = 0usize;
    for m in &models {
        let r = import_model(&fulcrum, &t, &a, m).await;
        troubles += r["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&r))
            .filter(|v| matches!(v["outcome"].as_str(), Some("conflict" | "failed")))
            .count();
        report.push(r);
    }
    let count = |what: &str, outcome: &str| {
        report
            .iter()
            .flat_map(|m| m[what].as_array().cloned().unwrap_or_default())
            .filter(|v| v["outcome"] == outcome)
            .count()
    };
    let summary = json!({
        "tracking_uri": t.base(),
        "dry_run": a.dry_run,
        "models": report,
        "totals": {
            "models": models.len(),
            "versions_imported": count("versions", "imported"),
            "versions_unchanged": count("versions", "unchanged"),
            "versions_planned": count("versions", "would_import"),
            "versions_skipped": count("versions", "skipped"),
            "conflicts_or_failures": troubles,
            "aliases_set": count("aliases", "set"),
            "aliases_unchanged": count("aliases", "unchanged"),
            "aliases_refused": count("aliases", "refused"),
            "aliases_planned": count("aliases", "would_set"),
        },
    });
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    ctx.print(&summary, |s| {
        let t = &s["totals"];
        format!(
            "{}imported {} version(s), {} unchanged, {} planned, {} skipped; aliases: {} set, {} unchanged, {} refused by policy, {} planned; {} conflict(s) or failure(s)",
            if a.dry_run { "dry run: " } else { "" },
            t["versions_imported"],
            t["versions_unchanged"],
            t["versions_planned"],
            t["versions_skipped"],
            t["aliases_set"],
            t["aliases_unchanged"],
            t["aliases_refused"],
            t["aliases_planned"],
            t["conflicts_or_failures"],
        )
    });
    if troubles > 0 {
        bail!("{troubles} version(s) or model(s) could not be imported (see the report)");
    }
    Ok(())
}

/// One registered model: the model, its versions (oldest first), then its aliases.
async fn import_model(fulcrum: &Client, t: &Tracking, a: &MlflowArgs, m: &Value) -> Value {
    let name = m["name"].as_str().unwrap_or_default().to_owned();
    let mut out = json!({"name": name, "versions": [], "aliases": []});
    if fulcrum_core::names::ModelName::parse(&name).is_err() {
        out["outcome"] = json!("failed");
        out["detail"] = json!("not a valid Fulcrum model name");
        return out;
    }
    let model_path = format!("/v1/models/{name}");
    match fulcrum.get(&model_path).await {
        Ok(_) => out["outcome"] = json!("exists"),
        Err(e) if not_found(&e) && a.dry_run => out["outcome"] = json!("would_create"),
        Err(e) if not_found(&e) => {
            let t = tags(m);
            let domain = t.get("fulcrum.domain").cloned().unwrap_or_else(|| a.domain.clone());
            let labels: BTreeMap<&String, &String> =
                t.iter().filter(|(k, _)| !k.starts_with("fulcrum.") && !k.starts_with("mlflow.")).collect();
            let body = json!({"name": name, "domain": domain, "description": m["description"].as_str().unwrap_or_default(), "labels": labels});
            if let Err(e) = fulcrum.post("/v1/models", &body).await {
                out["outcome"] = json!("failed");
                out["detail"] = json!(explain_gates(e).to_string());
                return out;
            }
            out["outcome"] = json!("created");
        }
        Err(e) => {
            out["outcome"] = json!("failed");
            out["detail"] = json!(explain_gates(e).to_string());
            return out;
        }
    }
    let filter = format!("name = '{name}'");
    let mut versions = match all_pages(t, "api/2.0/mlflow/model-versions/search", "model_versions", Some(&filter)).await
    {
        Ok(v) => v,
        Err(e) => {
            out["outcome"] = json!("failed");
            out["detail"] = json!(format!("listing its versions: {e}"));
            return out;
        }
    };
    versions.sort_by_key(|v| v["version"].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(u64::MAX));
    let mut done = Vec::new();
    for v in &versions {
        done.push(import_version(fulcrum, t, a, &name, v).await);
    }
    let mut aliases = Vec::new();
    for al in m["aliases"].as_array().into_iter().flatten() {
        let (alias, version) = (al["alias"].as_str().unwrap_or_default(), al["version"].as_str().unwrap_or_default());
        // Only onto a version this import holds: never onto a label Fulcrum has from elsewhere.
        let ours = done.iter().any(|v| {
            v["version"] == version && matches!(v["outcome"].as_str(), Some("imported" | "unchanged" | "would_import"))
        });
        aliases.push(if ours {
            import_alias(fulcrum, a, &name, alias, version).await
        } else {
            json!({"alias": alias, "version": version, "outcome": "skipped", "detail": "its version was not imported"})
        });
    }
    out["versions"] = json!(done);
    out["aliases"] = json!(aliases);
    out
}

async fn import_version(fulcrum: &Client, t: &Tracking, a: &MlflowArgs, model: &str, mv: &Value) -> Value {
    let version = mv["version"].as_str().unwrap_or_default().to_owned();
    let mut out = json!({"version": version, "stage": mv["current_stage"], "source": mv["source"]});
    let set = |out: &mut Value, outcome: &str, detail: String| {
        out["outcome"] = json!(outcome);
        if !detail.is_empty() {
            out["detail"] = json!(detail);
        }
    };
    if mv["status"].as_str().is_some_and(|s| s != "READY") {
        set(&mut out, "skipped", format!("MLflow status {}", mv["status"].as_str().unwrap_or_default()));
        return out;
    }
    let here = origin(t.base(), model, &version);
    match fulcrum.get(&format!("/v1/models/{model}/versions/{version}")).await {
        Ok(v) if v["release"]["model_card"]["mlflow"]["imported_from"] == here => {
            out["artifact_digest"] = v["artifact_digest"].clone();
            set(&mut out, "unchanged", String::new());
            return out;
        }
        Ok(v) => {
            set(
                &mut out,
                "conflict",
                format!(
                    "Fulcrum already holds {model} {version} ({}), not from this MLflow version",
                    v["artifact_digest"].as_str().unwrap_or_default()
                ),
            );
            return out;
        }
        Err(e) if not_found(&e) => {}
        Err(e) => {
            set(&mut out, "failed", explain_gates(e).to_string());
            return out;
        }
    }
    if a.dry_run {
        set(&mut out, "would_import", String::new());
        return out;
    }
    match copy_and_register(fulcrum, t, model, mv, &here).await {
        Ok(v) => {
            out["artifact_digest"] = v["artifact_digest"].clone();
            out["files"] = json!(v["files"].as_array().map_or(0, Vec::len));
            out["bytes"] =
                json!(v["files"].as_array().into_iter().flatten().filter_map(|f| f["size"].as_u64()).sum::<u64>());
            out["verified"] = json!(true);
            set(&mut out, "imported", String::new());
        }
        Err(e) => set(&mut out, "failed", format!("{e:#}")),
    }
    out
}

/// Download a version's files, upload and register them, check the registry's manifest against
/// the bytes downloaded, then carry its tags over.
async fn copy_and_register(
    fulcrum: &Client,
    t: &Tracking,
    model: &str,
    mv: &Value,
    here: &Value,
) -> anyhow::Result<Value> {
    let version = mv["version"].as_str().unwrap_or_default();
    let uri = t
        .get(&["api/2.0/mlflow/model-versions/get-download-uri"], &[("name", model), ("version", version)])
        .await
        .map_err(anyhow::Error::msg)?;
    let uri = uri["artifact_uri"].as_str().unwrap_or_default();
    let src = match Source::parse(uri) {
        Ok(Source::Tracking(s)) => s,
        _ => bail!("its artifacts at {uri:?} are not behind the MLflow server's artifact proxy (mlflow-artifacts:/)"),
    };
    let root = t.artifact_root(&src).await.map_err(anyhow::Error::msg)?;
    let listed = t.list(&root).await.map_err(anyhow::Error::msg)?;
    if listed.is_empty() {
        bail!("no files under {uri}");
    }
    let dir = tempfile::tempdir()?;
    for f in &listed {
        download(t, &root, &f.path, f.size, dir.path()).await?;
    }
    let manifest = crate::upload::upload_dir(fulcrum, dir.path()).await?;
    let mv_tags = tags(mv);
    // Card fields and the revalidation date, where the MLflow version carries them as
    // `fulcrum.card.*` / `fulcrum.revalidate_by` tags (as the registry's MLflow API reads them).
    let inputs = fulcrum_server::mlflow::registration_inputs(mv_tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(anyhow::Error::msg)?;
    let mut card = inputs.card;
    card.insert("description".into(), json!(mv["description"].as_str().unwrap_or_default()));
    card.insert(
        "mlflow".into(),
        json!({
            "source": mv["source"], "run_id": mv["run_id"], "imported_from": here,
            "stage": mv["current_stage"], "user_id": mv["user_id"],
            "creation_timestamp": mv["creation_timestamp"], "tags": mv_tags,
        }),
    );
    let body = json!({"version": version, "files": manifest.files(), "model_card": card,
                      "revalidate_by": inputs.revalidate_by});
    let registered = fulcrum
        .post(&format!("/v1/models/{model}/versions"), &body)
        .await
        .map_err(|e| anyhow::anyhow!("registration refused: {}", explain_gates(e)))?;
    // Every byte: the registry's manifest is the one hashed here from what MLflow served.
    let theirs: BTreeMap<&str, &str> = registered["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| Some((f["path"].as_str()?, f["digest"].as_str()?)))
        .collect();
    let mine: Vec<(String, String)> = manifest.files().iter().map(|f| (f.path.clone(), f.digest.to_string())).collect();
    if theirs.len() != mine.len() || mine.iter().any(|(p, d)| theirs.get(p.as_str()) != Some(&d.as_str())) {
        bail!("the registry's manifest differs from the files downloaded");
    }
    for (key, value) in mv_tags.iter().filter(|(k, _)| !k.starts_with("fulcrum.")) {
        let tag = json!({"name": model, "version": version, "key": key, "value": value});
        fulcrum
            .post("/api/2.0/mlflow/model-versions/set-tag", &tag)
            .await
            .map_err(|e| anyhow::anyhow!("tag {key}: {}", explain_gates(e)))?;
    }
    Ok(registered)
}

/// One file into `dir/<rel>`, its size checked against MLflow's listing.
async fn download(t: &Tracking, root: &str, rel: &str, size: Option<u64>, dir: &Path) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let dest = dir.join(rel);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut r = t.open(root, rel).await.map_err(anyhow::Error::msg)?;
    let mut file = tokio::fs::File::create(&dest).await?;
    let mut n = 0u64;
    while let Some(chunk) = r.chunk().await.with_context(|| format!("downloading {rel}"))? {
        n += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    if let Some(s) = size
        && s != n
    {
        bail!("{rel}: MLflow listed {s} bytes, served {n}");
    }
    Ok(())
}

/// An alias through the governed path: set when the policy allows it, reported with the
/// policy's reason when it does not.
async fn import_alias(fulcrum: &Client, a: &MlflowArgs, model: &str, alias: &str, version: &str) -> Value {
    let mut out = json!({"alias": alias, "version": version});
    let path = format!("/v1/models/{model}/aliases/{alias}");
    match fulcrum.get(&path).await {
        Ok(cur) if cur["version"] == version => {
            out["outcome"] = json!("unchanged");
            return out;
        }
        Ok(_) => {}
        Err(e) if not_found(&e) => {}
        Err(e) => {
            out["outcome"] = json!("failed");
            out["detail"] = json!(explain_gates(e).to_string());
            return out;
        }
    }
    if a.dry_run {
        out["outcome"] = json!("would_set");
        return out;
    }
    match fulcrum.put(&path, &json!({"version": version, "chg_id": a.chg_id})).await {
        Ok(_) => out["outcome"] = json!("set"),
        Err(e @ ClientError::Problem { status: 403 | 409 | 422, .. }) => {
            out["outcome"] = json!("refused");
            out["detail"] = json!(explain_gates(e).to_string());
        }
        Err(e) => {
            out["outcome"] = json!("failed");
            out["detail"] = json!(explain_gates(e).to_string());
        }
    }
    out
}
