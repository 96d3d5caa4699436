//! `fulcrum version export NAME VER --oci REF`: a version pushed to an OCI registry as a
//! ModelPack artifact (one raw layer per file, so each layer digest is the file's SHA-256),
//! by digest, with its evidence attached as OCI referrers — the release record the registry
//! signed, the model-signing bundles and the SLSA provenance CI submitted — so KServe and
//! registries like Harbor serve exactly what Fulcrum approved. The bytes come through the
//! registry's download gate (a revoked or unapproved version is refused there).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use fulcrum_core::Digest;
use fulcrum_oci::cosign;
use fulcrum_oci::publish;
use fulcrum_oci::remote::{Remote, Settings, Target};
use serde_json::{Value, json};

/// The release record's artifact type on export.
pub const RELEASE_RECORD_TYPE: &str = "application/vnd.fulcrum.release-record.v1+json";
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const INTOTO_TYPE: &str = "application/vnd.in-toto+json";
/// Annotations on the exported manifest.
pub const VERSION_ANNOTATION: &str = "io.fulcrum.version";
pub const ARTIFACT_ANNOTATION: &str = "io.fulcrum.artifact_digest";

/// How to reach the OCI registry.
#[derive(Debug, Clone, Args)]
pub struct OciArgs {
    /// A registry (`host:port`) spoken to over plain HTTP (development only; repeatable).
    #[arg(long = "oci-insecure-registry")]
    pub insecure: Vec<String>,
    /// Basic-auth user for the OCI registry (password from --oci-password-file).
    #[arg(long = "oci-username", requires = "password_file")]
    pub username: Option<String>,
    #[arg(long = "oci-password-file", requires = "username")]
    pub password_file: Option<PathBuf>,
}

impl OciArgs {
    /// # Errors
    /// An unreadable password file.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let basic = match (&self.username, &self.password_file) {
            (Some(u), Some(p)) => Some((
                u.clone(),
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?.trim_end().to_owned(),
            )),
            _ => None,
        };
        Ok(Settings { insecure: self.insecure.clone(), basic })
    }
}

fn digests(list: &Value) -> Vec<Digest> {
    list.as_array().into_iter().flatten().filter_map(|d| d.as_str()?.parse().ok()).collect()
}

/// Export a version; returns what was pushed.
///
/// # Errors
/// The registry refusing a download, the OCI registry refusing a push.
pub async fn export(
    client: &fulcrum_client::Client,
    v: &Value,
    target: &str,
    settings: &Settings,
) -> anyhow::Result<Value> {
    let t = Target::parse(target).map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
    let model = v["model"].as_str().unwrap_or_default();
    let version = v["version"].as_str().unwrap_or_default();
    // What leaves for serving elsewhere is what was approved (the download gate refuses a
    // revoked or held version's bytes on its own).
    let stage = v["stage"].as_str().unwrap_or_default();
    if stage != "Approved" {
        anyhow::bail!("only an Approved version is exported; {model} {version} is {stage} (not_approved)");
    }
    let remote = Remote::new(settings);
    let tmp = tempfile::tempdir()?;
    let mut files = Vec::new();
    for (n, f) in v["files"].as_array().into_iter().flatten().enumerate() {
        let path = f["path"].as_str().context("a file without a path")?;
        let size = f["size"].as_u64().context("a file without a size")?;
        let d: Digest = f["digest"].as_str().and_then(|d| d.parse().ok()).context("a file without a digest")?;
        let local = tmp.path().join(format!("f{n}"));
        client.download_blob(&d, &local, size).await.with_context(|| format!("downloading {path}"))?;
        files.push((path.to_owned(), local));
    }
    let sources: Vec<publish::FileSource<'_>> =
        files.iter().map(|(path, local)| publish::FileSource { path, local }).collect();
    let annotations = [
        (VERSION_ANNOTATION.to_owned(), format!("{model}@{version}")),
        (ARTIFACT_ANNOTATION.to_owned(), v["artifact_digest"].as_str().unwrap_or_default().to_owned()),
    ]
    .into();
    let (digest, _) = publish::modelpack(&remote, &t, model, version, &sources, annotations, t.tag())
        .await
        .map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
    // The evidence, each as a referrer of the model's manifest.
    let release = &v["release"];
    let record: Digest = v["record_digest"].as_str().and_then(|d| d.parse().ok()).context("no release record")?;
    let mut evidence: Vec<(Digest, &str, &str, BTreeMap<String, String>)> =
        vec![(record, RELEASE_RECORD_TYPE, DSSE_MEDIA_TYPE, BTreeMap::new())];
    for d in digests(&release["signatures"]) {
        let ann = [(
            cosign::BUNDLE_PREDICATE_ANNOTATION.to_owned(),
            fulcrum_verify::model_signing::PREDICATE_TYPE.to_owned(),
        )];
        evidence.push((d, cosign::BUNDLE_ARTIFACT_TYPE, cosign::BUNDLE_MEDIA_TYPE, ann.into()));
    }
    for d in digests(&release["attestations"]) {
        let ann = [(cosign::BUNDLE_PREDICATE_ANNOTATION.to_owned(), fulcrum_verify::slsa::PROVENANCE_V1.to_owned())];
        evidence.push((d, INTOTO_TYPE, DSSE_MEDIA_TYPE, ann.into()));
    }
    let mut attached = vec![];
    for (n, (d, artifact_type, media_type, annotations)) in evidence.into_iter().enumerate() {
        // A fresh file each: the download resumes whatever a file of that name already holds.
        let local = tmp.path().join(format!("evidence-{n}"));
        client
            .download_blob(&d, &local, fulcrum_oci::remote::MAX_DOCUMENT)
            .await
            .with_context(|| format!("downloading {d}"))?;
        let r = publish::attach(&remote, &t, &digest, std::fs::read(&local)?, artifact_type, media_type, annotations)
            .await
            .map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
        attached.push(json!({"artifact_type": artifact_type, "digest": r, "of": d.to_string()}));
    }
    Ok(json!({
        "reference": t.pinned(&digest),
        "digest": digest,
        "artifact_digest": v["artifact_digest"],
        "layers": files.len(),
        "referrers": attached,
    }))
}
