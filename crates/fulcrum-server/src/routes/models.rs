//! Models, versions, governance actions and aliases (SPEC §2, §10).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fulcrum_core::identity::Action;
use fulcrum_core::lifecycle::{Actor, Env, Stage};
use fulcrum_core::names::{AliasName, VersionLabel};
use fulcrum_core::{Digest, FileEntry, Manifest};
use fulcrum_store::{Govern, GovernCtx, NewModel, NewVersion, StoreError, VersionBrief, VersionRecord};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ApiJson, ApiQuery, check_id, find_model, limit, parse_model_name, visible_model};
use crate::AppState;
use crate::access::Resource;
use crate::auth::Caller;
use crate::dto::*;
use crate::problem::{ApiError, ApiResult, CheckFailure, Problem};
use crate::release::GateFacts;
use fulcrum_verify::modeldir::Entry;
use fulcrum_verify::{dsse, intoto};

fn model_dto(m: fulcrum_store::ModelRecord) -> ModelDto {
    ModelDto {
        name: m.name,
        tenant: m.tenant,
        domain: m.domain,
        description: m.description,
        owners: m.owners,
        labels: m.labels,
        created_by: m.created_by,
        created_at: m.created_at,
    }
}

fn version_dto(model: &str, v: VersionRecord) -> VersionDto {
    VersionDto {
        model: model.to_owned(),
        version: v.label,
        seq: v.seq,
        stage: v.stage.as_str().into(),
        hold: v.hold.as_str().into(),
        revoked: v.hold == fulcrum_core::Hold::Revoked,
        quarantined: v.hold == fulcrum_core::Hold::Quarantined,
        hold_reason: v.hold_reason,
        artifact_digest: v.artifact_digest.to_string(),
        record_digest: v.record_digest.to_string(),
        uris: UrisDto {
            artifact: format!("/v1/blobs/{}", v.artifact_digest),
            attestation: format!("/v1/blobs/{}", v.record_digest),
        },
        files: v
            .files
            .into_iter()
            .map(|f| FileDto { path: f.path, size: f.size, digest: f.digest.to_string() })
            .collect(),
        release: v.release,
        publisher: v.publisher,
        chg_id: v.chg_id,
        created_at: v.created_at,
        approvals: v
            .approvals
            .into_iter()
            .map(|a| ApprovalDto {
                subject: a.subject,
                role: a.role.to_string(),
                kind: a.kind,
                comment: a.comment,
                created_at: a.created_at,
            })
            .collect(),
    }
}

fn now(state: &AppState) -> OffsetDateTime {
    state.clock.now()
}

// ------------------------------------------------------------------------------ models

/// Create a model in the caller's tenant.
#[utoipa::path(post, path = "/v1/models", tag = "models", request_body = CreateModel,
    responses((status = 201, body = ModelDto), (status = "4XX", body = Problem)))]
pub async fn create_model(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(body): ApiJson<CreateModel>,
) -> ApiResult<(StatusCode, Json<ModelDto>)> {
    who.require(&state, Action::CreateModel).await?;
    let p = &who.0;
    let name = parse_model_name(&body.name)?;
    if body.tenant.as_deref().is_some_and(|t| t != p.tenant) {
        return Err(ApiError::forbidden("models can only be created in the caller's own tenant"));
    }
    check_id("domain", Some(&body.domain))?;
    if !p.may_use_domain(&body.domain) {
        return Err(ApiError::forbidden(format!("the caller may not create models in domain {}", body.domain)));
    }
    for o in &body.owners {
        check_id("owner", Some(o))?;
    }
    if body.description.len() > 4096
        || body.labels.len() > 64
        || body.labels.iter().any(|(k, v)| k.len() > 128 || v.len() > 256 || k.is_empty())
    {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "description ≤ 4096 bytes; ≤ 64 labels with keys ≤ 128 and values ≤ 256 bytes",
        ));
    }
    // Labels become `key:value` identifiers that policies match on: one identifier rule, and
    // no ':' in a key (it would shift where the value starts).
    for (k, v) in &body.labels {
        check_id("label key", Some(k))?;
        check_id("label value", Some(v))?;
        if k.contains(':') {
            return Err(ApiError::bad_request("bad_identifier", "a label key must not contain ':'"));
        }
    }
    if !body.description.is_empty() {
        super::check_text("description", &body.description, 4096)?;
    }
    let new = NewModel {
        tenant: p.tenant.clone(),
        name,
        domain: body.domain,
        description: body.description,
        owners: body.owners,
        labels: body.labels,
    };
    let m = state
        .commit(async |at| state.store.create_model(new, &p.subject, at).await, |m, _| state.catalog.add_model(m))
        .await?;
    Ok((StatusCode::CREATED, Json(model_dto(m))))
}

/// Models of the caller's tenant, by name.
#[utoipa::path(get, path = "/v1/models", tag = "models", params(PageQuery),
    responses((status = 200, body = ModelPage), (status = "4XX", body = Problem)))]
pub async fn list_models(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ModelPage>> {
    who.require(&state, Action::Read).await?;
    let n = limit(q.limit)?;
    let rows = state.store.list_models(&who.0.tenant, q.after.as_deref().unwrap_or(""), n).await?;
    let next = (rows.len() == n as usize).then(|| rows.last().map(|m| m.name.clone())).flatten();
    let items = rows.into_iter().filter(|m| who.0.may_use_domain(&m.domain)).map(model_dto).collect();
    Ok(Json(ModelPage { items, next }))
}

#[utoipa::path(get, path = "/v1/models/{name}", tag = "models", params(("name" = String, Path)),
    responses((status = 200, body = ModelDto), (status = "4XX", body = Problem)))]
pub async fn get_model(
    State(state): State<AppState>,
    who: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ModelDto>> {
    who.require(&state, Action::Read).await?;
    let name = parse_model_name(&name)?;
    Ok(Json(model_dto(visible_model(&state, &who, Action::Read, &name).await?)))
}

// ---------------------------------------------------------------------------- versions

fn parse_digest_field(what: &'static str, s: &str, failures: &mut Vec<CheckFailure>) -> Option<Digest> {
    match s.parse::<Digest>() {
        Ok(d) => Some(d),
        Err(e) => {
            failures.push(CheckFailure { check: format!("{what}_digest_invalid"), detail: format!("{s:?}: {e}") });
            None
        }
    }
}

/// Register a version as Candidate. Every gate failure is listed by name (422) and nothing is
/// stored unless all pass.
#[utoipa::path(post, path = "/v1/models/{name}/versions", tag = "versions", params(("name" = String, Path)),
    request_body = RegisterVersion,
    responses((status = 201, body = VersionDto), (status = 422, description = "gate failures, each named", body = Problem), (status = "4XX", body = Problem)))]
pub async fn register_version(
    State(state): State<AppState>,
    who: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RegisterVersion>,
) -> ApiResult<(StatusCode, Json<VersionDto>)> {
    if body.oci.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "a version from an OCI registry is registered with POST /v1/models/{name}/oci-imports",
        ));
    }
    register(state, who, name, body).await
}

/// Register a version whose files are an OCI artifact (`oci`: a ModelPack, KitOps ModelKit or
/// KServe modelcar image): the reference is resolved to a digest once, every layer pulled by
/// digest and checked while it streams in, cosign signatures found with it (v3 referrers, v2
/// `.sig` tags) judged under the release policy, and the OCI digest recorded in the release
/// record. Then the same gates as any registration. No request deadline: a pull takes as long
/// as the model is large.
#[utoipa::path(post, path = "/v1/models/{name}/oci-imports", tag = "versions", params(("name" = String, Path)),
    request_body = RegisterVersion,
    responses((status = 201, body = VersionDto), (status = 422, description = "refused: what the OCI artifact or the gates failed, each named", body = Problem), (status = "4XX", body = Problem)))]
pub async fn register_from_oci(
    State(state): State<AppState>,
    who: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RegisterVersion>,
) -> ApiResult<(StatusCode, Json<VersionDto>)> {
    if body.oci.is_none() || !body.files.is_empty() {
        return Err(ApiError::unprocessable("invalid_body", "give `oci` (a reference) and no `files`"));
    }
    register(state, who, name, body).await
}

async fn register(
    state: AppState,
    who: Caller,
    name: String,
    body: RegisterVersion,
) -> ApiResult<(StatusCode, Json<VersionDto>)> {
    who.require(&state, Action::RegisterVersion).await?;
    let p = &who.0;
    let name = parse_model_name(&name)?;
    let model = visible_model(&state, &who, Action::RegisterVersion, &name).await?;
    let label = VersionLabel::parse(&body.version).map_err(|e| ApiError::bad_request("bad_version", e.to_string()))?;
    check_id("chg_id", body.chg_id.as_deref())?;
    if body.attestations.len() > 64 || body.signatures.len() > 64 || body.dataset_snapshots.len() > 256 {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "at most 64 attestations, 64 signatures and 256 dataset snapshots",
        ));
    }
    if state.store.get_version(model.id, label.as_str()).await?.is_some() {
        return Err(ApiError::conflict(
            "conflict",
            format!("version {label} of {name} already exists; versions are immutable"),
        ));
    }

    let mut failures = Vec::new();
    // From an OCI registry: the files are pulled into the blob store first (each checked
    // against its digest), then everything below applies to them as to uploaded ones.
    let imported = match &body.oci {
        Some(r) => Some(crate::oci::import(&state, &who, r).await?),
        None => None,
    };
    let mut files = Vec::with_capacity(body.files.len());
    if let Some(i) = &imported {
        files.extend(i.files.iter().cloned());
    }
    for f in &body.files {
        if let Some(d) = parse_digest_field("file", &f.digest, &mut failures) {
            files.push(FileEntry { path: f.path.clone(), size: f.size, digest: d });
        }
    }
    let manifest = match Manifest::new(files) {
        Ok(m) => Some(m),
        Err(e) => {
            failures.push(CheckFailure { check: "manifest_invalid".into(), detail: e.to_string() });
            None
        }
    };
    if let Some(m) = &manifest {
        // One object-store round trip per file, all at once (S3 answers each in milliseconds).
        let sizes = futures_util::future::try_join_all(m.files().iter().map(|f| state.blobs.stat(&f.digest))).await?;
        for (f, stored) in m.files().iter().zip(sizes) {
            let granted = state.store.tenant_has_blob(&p.tenant, &f.digest).await?;
            match stored {
                Some(size) if granted => {
                    if size != f.size {
                        failures.push(CheckFailure {
                            check: "file_size_mismatch".into(),
                            detail: format!("{}: manifest says {} bytes, blob has {size}", f.path, f.size),
                        });
                    } else if state.corrupt_blobs.lock().expect("corrupt set").contains(&f.digest) {
                        // The bytes were hashed when they were uploaded (and are again whenever
                        // they are served or scrubbed); a blob found damaged is not registered.
                        failures.push(CheckFailure {
                            check: "file_digest_mismatch".into(),
                            detail: format!("{}: stored bytes do not hash to {}", f.path, f.digest),
                        });
                    }
                }
                _ => failures.push(CheckFailure {
                    check: "file_missing".into(),
                    detail: format!("{}: no uploaded blob {}", f.path, f.digest),
                }),
            }
        }
    }
    let refs = |what: &'static str, list: &[String], failures: &mut Vec<CheckFailure>| -> Vec<Digest> {
        list.iter().filter_map(|s| parse_digest_field(what, s, failures)).collect()
    };
    let sbom = refs("sbom", body.sbom.as_slice(), &mut failures);
    let attestations = refs("attestation", &body.attestations, &mut failures);
    let mut signatures = refs("signature", &body.signatures, &mut failures);
    if let Some(i) = &imported {
        signatures.extend(i.model_signing.iter().copied());
    }
    let profile = refs("reference_profile", body.reference_profile.as_slice(), &mut failures);
    for (what, list) in
        [("sbom_missing", &sbom), ("attestation_missing", &attestations), ("signature_missing", &signatures)]
    {
        for d in list {
            if !state.store.tenant_has_blob(&p.tenant, d).await? || state.blobs.stat(d).await?.is_none() {
                failures.push(CheckFailure { check: what.into(), detail: format!("no uploaded blob {d}") });
            }
        }
    }
    // The reference profile must be one a gateway can bin against: checked fully here, so a
    // version never carries one that cannot be used.
    let mut profile_features: Option<Vec<String>> = None;
    if let Some(d) = profile.first() {
        let bytes = if state.store.tenant_has_blob(&p.tenant, d).await? {
            read_doc(&state, d).await?
        } else {
            Err(format!("no uploaded blob {d}"))
        };
        match bytes.map(|b| fulcrum_core::drift::Profile::parse(&b)) {
            Ok(Ok(prof)) => profile_features = Some(prof.features.into_iter().map(|f| f.name).collect()),
            Ok(Err(e)) => {
                failures.push(CheckFailure { check: "reference_profile_invalid".into(), detail: e.to_string() })
            }
            Err(detail) => failures.push(CheckFailure { check: "reference_profile_missing".into(), detail }),
        }
    }
    if let Some(card) = &body.model_card
        && let Err(e) = fulcrum_core::dlp::card_labels(&serde_json::Value::Object(card.clone()))
    {
        failures.push(CheckFailure { check: "model_card_labels_invalid".into(), detail: e });
    }
    let datasets: Vec<serde_json::Value> = body
        .dataset_snapshots
        .iter()
        .filter_map(|ds| {
            let d = parse_digest_field("dataset", &ds.digest, &mut failures)?;
            if ds.uri.is_empty()
                || ds.uri.len() > 2048
                || fulcrum_core::names::check_text("dataset URI", &ds.uri).is_err()
            {
                failures.push(CheckFailure {
                    check: "dataset_uri_invalid".into(),
                    detail: "dataset URIs are 1-2048 bytes without control or bidirectional characters".into(),
                });
                return None;
            }
            Some(serde_json::json!({"uri": ds.uri, "digest": d.to_string()}))
        })
        .collect();
    let at = now(&state);
    if let Some(rb) = &body.revalidate_by {
        match OffsetDateTime::parse(rb, &Rfc3339) {
            Ok(t) if t > at => {}
            Ok(_) => failures.push(CheckFailure {
                check: "revalidate_by_past".into(),
                detail: format!("revalidate_by {rb} is not in the future"),
            }),
            Err(_) => failures.push(CheckFailure {
                check: "revalidate_by_invalid".into(),
                detail: "revalidate_by must be an RFC 3339 date-time".into(),
            }),
        }
    }
    let mut facts = GateFacts {
        mode: state.release_policy.mode(),
        required: state.release_policy.required(),
        ..Default::default()
    };
    let mut gate_decision = None;
    if let Some(m) = manifest.as_ref().filter(|_| failures.is_empty()) {
        release_gate(&state, m, &signatures, &attestations, &sbom, &mut facts, &mut failures).await?;
        if let Some(i) = &imported {
            oci_gate(&state, i, &mut facts, &mut failures);
        }
        let ctx = GovernCtx { chg_id: body.chg_id.clone(), ..Default::default() };
        let (allowed, row) = release_decision(&state, p, &model, &label, &facts, &mut failures, &ctx);
        if allowed {
            gate_decision = Some(row);
        } else {
            state.store.record_decision(&row).await?;
        }
    }
    let Some(manifest) = manifest.filter(|_| failures.is_empty()) else {
        let summary = failures.iter().map(|f| f.check.as_str()).collect::<Vec<_>>().join(", ");
        return Err(ApiError::unprocessable("release_gate_failed", format!("registration refused: {summary}"))
            .with_errors(failures));
    };
    // All gates passed. The gate's allow is logged first so that the release attestation can
    // name its ledger leaf (index and leaf hash): an agent may then demand the leaf's inclusion
    // proof. (A signer outage, or a label taken meanwhile by a racing registration, leaves that
    // allow logged without a version.)
    let gate_leaf = match &gate_decision {
        Some(row) => {
            let index = state.store.record_decision(row).await?;
            Some(serde_json::json!({
                "decision_id": row.decision_id,
                "ledger_index": index,
                "leaf_hash": fulcrum_sign::b64(&fulcrum_ledger::merkle::leaf_hash(row.record.as_bytes())),
            }))
        }
        None => None,
    };

    // All gates passed: the registry signs a release attestation (DSSE over an in-toto statement
    // whose subject is the artifact digest, with the version's identity and governance facts),
    // stores it and the manifest as blobs, then the version.
    let artifact_digest = manifest.digest();
    let record = serde_json::json!({
        "tenant": p.tenant,
        "domain": model.domain,
        "model": name.as_str(),
        "version": label.as_str(),
        "artifact_digest": artifact_digest.to_string(),
        "sbom": sbom.first().map(ToString::to_string),
        "attestations": attestations.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "signatures": signatures.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "reference_profile": profile.first().map(|d| serde_json::json!({"digest": d.to_string(), "features": profile_features})),
        "model_card": body.model_card.unwrap_or_default(),
        "dataset_snapshots": datasets,
        "revalidate_by": body.revalidate_by,
        "publisher": p.subject,
        "chg_id": body.chg_id,
        "registered_at": at.format(&Rfc3339).expect("formats"),
        "policy_digest": state.policies.current().digest.to_string(),
        "release_gate": facts,
        "release_gate_decision": gate_leaf,
    });
    let statement = intoto::Statement {
        ty: intoto::STATEMENT_V1.into(),
        subject: vec![intoto::ResourceDescriptor {
            name: Some(format!("{name}@{label}")),
            uri: None,
            digest: [("sha256".to_owned(), artifact_digest.hex())].into(),
        }],
        predicate_type: crate::release::RELEASE_PREDICATE.into(),
        predicate: record.clone(),
    };
    let payload = serde_json::to_vec(&statement).expect("statements serialise");
    let signer = state.keys.current();
    let envelope =
        dsse::Envelope::sign(dsse::INTOTO_PAYLOAD_TYPE, &payload, signer.as_ref(), signer.kid()).map_err(|e| {
            tracing::error!(error = %e, "signing a release attestation failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "signer_unavailable",
                "the signing service did not answer; the version was not stored (the gate's decision is logged)",
            )
        })?;
    let record_bytes = serde_json::to_vec(&envelope).expect("envelopes serialise");
    // Content-addressed and idempotent, so stored before the write gate (not under it): a
    // registration that fails after this leaves bytes no version names, which no one may read.
    let manifest_bytes = manifest.canonical_bytes();
    let (_, record_blob) =
        futures_util::future::try_join(state.blobs.put_bytes(&manifest_bytes), state.blobs.put_bytes(&record_bytes))
            .await?;
    let new = NewVersion {
        label,
        manifest,
        record_digest: record_blob.digest,
        release: record,
        publisher: p.subject.clone(),
        chg_id: body.chg_id,
    };
    // The release record was signed at `at`: the version carries that time.
    let v = state
        .commit(
            async |_| {
                let policy = state.policies.current().digest;
                state.store.register_version(&p.tenant, name.as_str(), new, &policy, at).await
            },
            |v, _| state.catalog.add_version(&VersionBrief::from(v), at),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(msg) => ApiError::conflict("conflict", msg),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(version_dto(name.as_str(), v))))
}

/// Largest signature/attestation/SBOM document read into memory.
const MAX_DOC: u64 = 16 << 20;

async fn read_doc(state: &AppState, d: &Digest) -> ApiResult<Result<Vec<u8>, String>> {
    match state.blobs.stat(d).await? {
        Some(n) if n <= MAX_DOC => Ok(Ok(state.blobs.read(d).await?)),
        Some(n) => Ok(Err(format!("{d} is {n} bytes; documents are limited to {MAX_DOC}"))),
        None => Ok(Err(format!("no uploaded blob {d}"))),
    }
}

/// The release gate's policy decision (`fulcrum.release`): which evidence is required — what the
/// operator's release-policy file requires plus what the policy in force requires for the
/// model's domain — given what verified. Missing pieces are added to `failures` (once: a piece
/// that failed verification is already named). Returns whether it allows, and its record.
fn release_decision(
    state: &AppState,
    p: &fulcrum_core::Principal,
    model: &fulcrum_store::ModelRecord,
    label: &VersionLabel,
    facts: &GateFacts,
    failures: &mut Vec<CheckFailure>,
    ctx: &GovernCtx,
) -> (bool, fulcrum_store::DecisionRow) {
    let rp = &state.release_policy;
    let required: Vec<&str> = [
        (rp.require_signature, "artifact_signature"),
        (rp.require_provenance, "provenance"),
        (rp.require_sbom, "sbom"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let input = serde_json::json!({
        "model": {"name": model.name, "tenant": model.tenant, "domain": model.domain},
        "version": {"label": label.as_str()},
        "publisher": p.subject,
        "required": required,
        "evidence": {
            "artifact_signature": facts.artifact_signature.is_some(),
            "provenance": !facts.provenance.is_empty(),
            "sbom": facts.sbom.is_some(),
        },
        "chg_id": ctx.chg_id,
    });
    let policy = state.policies.current();
    let (outcome, row) = crate::gates::decide(
        state,
        &policy,
        "fulcrum.release",
        input,
        &model.tenant,
        Some(&model.name),
        Some(label.as_str()),
        ctx,
    );
    for r in &outcome.deny {
        match r.strip_prefix("missing:") {
            Some(check)
                if failures.iter().any(|f| f.check == check || (check == "provenance" && f.check == "attestation")) => {
            }
            Some(check) => failures.push(CheckFailure {
                check: check.into(),
                detail: format!(
                    "missing: the release policy requires {}",
                    match check {
                        "artifact_signature" => "a model-signing bundle",
                        "provenance" => "SLSA provenance",
                        "sbom" => "an SBOM (CycloneDX or SPDX JSON)",
                        other => other,
                    }
                ),
            }),
            None => failures.push(CheckFailure { check: "policy".into(), detail: r.clone() }),
        }
    }
    (outcome.allow, row)
}

/// The cosign signatures an OCI artifact came with, judged under the release policy: the ones
/// that verified are recorded with the OCI source; when no model-signing bundle covered the
/// files, a verified cosign signature over the manifest (which names every layer by digest) is
/// the artifact's signature. Signatures found but none verifying is a refusal with the reason.
fn oci_gate(state: &AppState, i: &crate::oci::Imported, facts: &mut GateFacts, failures: &mut Vec<CheckFailure>) {
    let mut oci = i.facts.clone();
    let root = state.keys.sigstore_root();
    match crate::oci::judge(&state.release_policy, root.as_deref(), &i.digest, &i.cosign) {
        Ok(verified) => {
            oci["signatures"] = serde_json::to_value(&verified).expect("serialises");
            if facts.artifact_signature.is_none()
                && let Some(first) = verified.first()
            {
                facts.artifact_signature = Some(serde_json::json!({
                    "format": first.format,
                    "oci_digest": i.digest,
                    "signer": first.signer,
                    "issuer": first.issuer,
                    "trusted_root": first.trusted_root,
                }));
            }
        }
        Err(f) => failures.push(f),
    }
    facts.oci = Some(oci);
}

/// Verify what CI submitted (artifact signatures, attestations, SBOM) against the release policy.
#[allow(clippy::too_many_arguments)]
async fn release_gate(
    state: &AppState,
    m: &Manifest,
    signatures: &[Digest],
    attestations: &[Digest],
    sbom: &[Digest],
    facts: &mut GateFacts,
    failures: &mut Vec<CheckFailure>,
) -> ApiResult<()> {
    let policy = state.release_policy.clone();
    // The files' digests were checked when they were uploaded: a files/SHA-256 signature is
    // checked against them without reading the bytes again. A signature over shards or another
    // hash needs the bytes: then they are read from a local view of the blobs (made once).
    let mut view: Option<fulcrum_store::blobs::LocalView> = None;
    for d in signatures {
        let bytes = match read_doc(state, d).await? {
            Ok(b) => b,
            Err(detail) => {
                failures.push(CheckFailure { check: "artifact_signature".into(), detail });
                continue;
            }
        };
        let sigstore = state.keys.sigstore_root();
        let signed = match crate::release::open_signature(&policy, sigstore.as_deref(), &bytes) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if signed.needs_bytes() && view.is_none() {
            let digests: Vec<Digest> = m.files().iter().map(|f| f.digest).collect();
            view = Some(state.blobs.local_view(&digests).await?);
        }
        let entries: Vec<Entry> = m
            .files()
            .iter()
            .map(|f| Entry {
                rel: f.path.clone(),
                path: view.as_ref().and_then(|v| v.path(&f.digest)).map(ToOwned::to_owned).unwrap_or_default(),
                size: f.size,
                known_sha256: Some(*f.digest.as_bytes()),
            })
            .collect();
        // Hashing files is CPU-bound: keep it off the async workers.
        let outcome = tokio::task::spawn_blocking(move || crate::release::check_signature(&signed, &entries))
            .await
            .map_err(|e| ApiError::internal(&e))?;
        match outcome {
            Ok(mut f) => {
                // The bundle itself, by digest: what a verifier fetches to check it again.
                f["bundle"] = d.to_string().into();
                facts.artifact_signature = Some(f);
            }
            Err(e) => failures.push(e),
        }
    }
    let artifact_hex = m.digest().hex();
    for d in attestations {
        match read_doc(state, d).await? {
            Ok(bytes) => match crate::release::check_attestation(&policy, &bytes, &artifact_hex) {
                Ok(f) => facts.provenance.push(f),
                Err(e) => failures.push(e),
            },
            Err(detail) => failures.push(CheckFailure { check: "attestation".into(), detail }),
        }
    }
    if let Some(d) = sbom.first() {
        match read_doc(state, d).await? {
            Ok(bytes) => match crate::release::check_sbom(&bytes) {
                Ok(f) => facts.sbom = Some(f),
                Err(e) => failures.push(e),
            },
            Err(detail) => failures.push(CheckFailure { check: "sbom".into(), detail }),
        }
    }
    Ok(())
}

/// Versions of a model by `seq`.
#[utoipa::path(get, path = "/v1/models/{name}/versions", tag = "versions", params(("name" = String, Path), PageQuery),
    responses((status = 200, body = VersionPage), (status = "4XX", body = Problem)))]
pub async fn list_versions(
    State(state): State<AppState>,
    who: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<VersionPage>> {
    who.require(&state, Action::Read).await?;
    let name = parse_model_name(&name)?;
    let m = visible_model(&state, &who, Action::Read, &name).await?;
    let n = limit(q.limit)?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(s) => s.parse().map_err(|_| ApiError::bad_request("bad_cursor", "after must be a seq number"))?,
    };
    let rows = state.store.list_versions(m.id, after, n).await?;
    let next = (rows.len() == n as usize).then(|| rows.last().map(|v| v.seq.to_string())).flatten();
    Ok(Json(VersionPage { items: rows.into_iter().map(|v| version_dto(&m.name, v)).collect(), next }))
}

pub(crate) async fn load_version(
    state: &AppState,
    who: &Caller,
    name: &str,
    version: &str,
) -> ApiResult<(fulcrum_store::ModelRecord, VersionRecord)> {
    let name = parse_model_name(name)?;
    let m = visible_model(state, who, Action::Read, &name).await?;
    let v = state.store.get_version(m.id, version).await?.ok_or_else(|| ApiError::not_found("version"))?;
    Ok((m, v))
}

#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}", tag = "versions",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = VersionDto), (status = "4XX", body = Problem)))]
pub async fn get_version(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionDto>> {
    who.require(&state, Action::Read).await?;
    let (m, v) = load_version(&state, &who, &name, &version).await?;
    Ok(Json(version_dto(&m.name, v)))
}

/// Run one governance command through the write gate and keep the resolve cache current.
/// Promotions pass the policy's promotion gate and alias moves its environment rule; each
/// decision is logged: in the same transaction when it allows, on its own when it denies.
pub(crate) async fn govern(
    state: &AppState,
    who: &Caller,
    name: &str,
    cmd: Govern,
    ctx: GovernCtx,
) -> ApiResult<fulcrum_store::Governed> {
    let model = parse_model_name(name)?;
    let m = find_model(state, &who.0, &model).await?;
    if let Some(why) = state.catalog.divergent(&m.tenant, &m.name) {
        return Err(ApiError::conflict(
            "state_divergent",
            format!(
                "this model's stored state disagrees with the audit ledger ({why}); no change is made until it is repaired"
            ),
        ));
    }
    let actor = Actor { subject: who.0.subject.clone(), role: who.0.role };
    let policy = state.policies.current();
    let ctx = GovernCtx { policy_digest: Some(policy.digest), ..ctx };
    // What a version *is* never changes, so its card and revalidation date can be read first.
    let (action, version) = match &cmd {
        Govern::Approve { version } => (Action::Approve, Some(version)),
        Govern::Promote { version, .. } => (Action::Promote, Some(version)),
        Govern::Quarantine { version } => (Action::Quarantine, Some(version)),
        Govern::LiftQuarantine { version } => (Action::LiftQuarantine, Some(version)),
        Govern::Revoke { version } => (Action::Revoke, Some(version)),
        Govern::SetAlias { version, .. } => (Action::SetAlias, Some(version)),
        Govern::DeleteAlias { .. } => (Action::DeleteAlias, None),
    };
    let v = match version {
        Some(label) => state.store.get_version(m.id, label).await?,
        None => None,
    };
    let revalidate_by = v
        .as_ref()
        .and_then(|v| v.release["revalidate_by"].as_str())
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    // The resource-level rule: the model's domain and labels, the version's stage and card.
    let card_labels = v.as_ref().map(|v| fulcrum_core::dlp::card_labels(&v.release["model_card"]).unwrap_or_default());
    let labels = fulcrum_core::dlp::version_labels(&m.labels, card_labels.as_deref().unwrap_or_default());
    let purposes =
        v.as_ref().map(|v| fulcrum_core::dlp::card_purposes(&v.release["model_card"], &labels)).unwrap_or_default();
    let env = match &cmd {
        Govern::SetAlias { env, .. } => env.map(Env::as_str),
        _ => None,
    };
    let res = Resource {
        labels: &labels,
        purposes: &purposes,
        stage: v.as_ref().map(|v| v.stage.as_str()),
        hold: v.as_ref().map(|v| v.hold.as_str()),
        env,
        ..Resource::model(&m.tenant, &m.domain, &m.name)
    };
    who.require_on(state, action, res).await?;
    let facts = match (&cmd, v) {
        (Govern::Promote { .. }, Some(v)) => Some(crate::gates::PromotionFacts {
            findings: state.store.findings(v.id).await?,
            waivers: state.store.waivers(m.id, Some(v.id)).await?,
            release: v.release,
            labels,
        }),
        _ => None,
    };
    let operation = match &cmd {
        Govern::Approve { .. } => "approve".to_owned(),
        Govern::Promote { to, .. } => format!("promote:{}", to.as_str()),
        Govern::Quarantine { .. } => "quarantine".to_owned(),
        Govern::LiftQuarantine { .. } => "lift_quarantine".to_owned(),
        Govern::Revoke { .. } => "revoke".to_owned(),
        Govern::SetAlias { alias, .. } => format!("set_alias:{alias}"),
        Govern::DeleteAlias { alias } => format!("delete_alias:{alias}"),
    };
    let label = version.cloned();
    let gate_fn = |st: &fulcrum_core::lifecycle::ModelState, c: &fulcrum_core::lifecycle::Command| match c {
        fulcrum_core::lifecycle::Command::Promote { .. } => {
            crate::gates::promotion(state, &policy, &m, &actor, st, c, facts.as_ref(), &ctx)
        }
        fulcrum_core::lifecycle::Command::SetAlias { .. } => {
            crate::gates::alias(state, &policy, &m, st, c, &ctx, revalidate_by)
        }
        _ => None,
    };
    let committed = if ctx.dry_run {
        // A preview: decided on the current state, nothing kept, nothing logged.
        let at = state.clock.now();
        state.store.govern_gated(&who.0.tenant, model.as_str(), &actor, cmd, &ctx, Some(&gate_fn), at).await
    } else {
        state
            .commit(
                async |at| {
                    state.store.govern_gated(&who.0.tenant, model.as_str(), &actor, cmd, &ctx, Some(&gate_fn), at).await
                },
                |out, at| state.catalog.apply(out.model_id, &out.effects, &out.ledger, at),
            )
            .await
    };
    let out = match committed {
        Ok(out) => out,
        Err(StoreError::Refused(r)) if ctx.dry_run => return Err(StoreError::Refused(r).into()),
        Err(StoreError::PolicyDenied { reasons, .. }) if ctx.dry_run => {
            let errors = reasons.iter().map(|r| CheckFailure { check: "policy".into(), detail: r.clone() }).collect();
            return Err(ApiError::conflict(
                "policy_denied",
                format!("the policy would deny it: {}", reasons.join(", ")),
            )
            .with_errors(errors));
        }
        Err(StoreError::Refused(r)) => {
            // The lifecycle's refusals are on the record too (an auditor counts enforced denials).
            let row = crate::gates::refusal(state, &policy, &m, &actor, &operation, label.as_deref(), &r, &ctx);
            state.store.record_decision(&row).await?;
            return Err(StoreError::Refused(r).into());
        }
        Err(StoreError::PolicyDenied { reasons, decision }) => {
            state.store.record_decision(&decision).await?;
            let errors = reasons.iter().map(|r| CheckFailure { check: "policy".into(), detail: r.clone() }).collect();
            return Err(ApiError::conflict("policy_denied", format!("the policy denies it: {}", reasons.join(", ")))
                .with_errors(errors));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(out)
}

async fn version_after(state: &AppState, who: &Caller, name: &str, version: &str) -> ApiResult<Json<VersionDto>> {
    let (m, v) = load_version(state, who, name, version).await?;
    Ok(Json(version_dto(&m.name, v)))
}

/// Approve a version (the caller is the approver). During a quarantine, an approval counts
/// toward lifting it.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/approvals", tag = "governance",
    params(("name" = String, Path), ("version" = String, Path)), request_body = ApproveBody,
    responses((status = 201, body = VersionDto), (status = "4XX", body = Problem)))]
pub async fn approve(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> ApiResult<(StatusCode, Json<VersionDto>)> {
    who.require(&state, Action::Approve).await?;
    if body.comment.len() > 2048 {
        return Err(ApiError::unprocessable("invalid_body", "comment must be at most 2048 bytes"));
    }
    govern(
        &state,
        &who,
        &name,
        Govern::Approve { version: version.clone() },
        GovernCtx { comment: Some(body.comment), ..Default::default() },
    )
    .await?;
    Ok((StatusCode::CREATED, version_after(&state, &who, &name, &version).await?))
}

/// Promote one rung up the stage ladder.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/promotions", tag = "governance",
    params(("name" = String, Path), ("version" = String, Path)), request_body = PromoteBody,
    responses((status = 200, body = VersionDto), (status = 409, description = "refused by the lifecycle (named reason)", body = Problem), (status = "4XX", body = Problem)))]
pub async fn promote(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
    ApiJson(body): ApiJson<PromoteBody>,
) -> ApiResult<Json<VersionDto>> {
    who.require(&state, Action::Promote).await?;
    let to: Stage = body
        .to
        .parse()
        .map_err(|()| ApiError::unprocessable("bad_stage", "to must be Candidate, Staging or Approved"))?;
    check_id("chg_id", body.chg_id.as_deref())?;
    govern(
        &state,
        &who,
        &name,
        Govern::Promote { version: version.clone(), to },
        GovernCtx { chg_id: body.chg_id, ..Default::default() },
    )
    .await?;
    version_after(&state, &who, &name, &version).await
}

fn hold_ctx(body: HoldBody) -> ApiResult<GovernCtx> {
    super::check_text("reason", &body.reason, 2048)?;
    check_id("chg_id", body.chg_id.as_deref())?;
    check_id("inc_id", body.inc_id.as_deref())?;
    Ok(GovernCtx { chg_id: body.chg_id, inc_id: body.inc_id, reason: Some(body.reason), ..Default::default() })
}

/// Revoke a version (kill switch; terminal). Aliases on it roll back automatically.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/revocation", tag = "governance",
    params(("name" = String, Path), ("version" = String, Path)), request_body = HoldBody,
    responses((status = 200, body = VersionDto), (status = "4XX", body = Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
    ApiJson(body): ApiJson<HoldBody>,
) -> ApiResult<Json<VersionDto>> {
    who.require(&state, Action::Revoke).await?;
    govern(&state, &who, &name, Govern::Revoke { version: version.clone() }, hold_ctx(body)?).await?;
    version_after(&state, &who, &name, &version).await
}

/// Quarantine a version (isolation; liftable). Aliases on it roll back automatically.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/quarantine", tag = "governance",
    params(("name" = String, Path), ("version" = String, Path)), request_body = HoldBody,
    responses((status = 200, body = VersionDto), (status = "4XX", body = Problem)))]
pub async fn quarantine(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
    ApiJson(body): ApiJson<HoldBody>,
) -> ApiResult<Json<VersionDto>> {
    who.require(&state, Action::Quarantine).await?;
    govern(&state, &who, &name, Govern::Quarantine { version: version.clone() }, hold_ctx(body)?).await?;
    version_after(&state, &who, &name, &version).await
}

/// Parse an optional JSON body of a DELETE (empty = defaults), or `?chg_id=`.
fn optional_body<T: DeserializeOwned + Default>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("malformed_json", format!("request body: {e}")))
}

/// Lift a quarantine. Needs an approval given during this quarantine by someone else, and a chg_id.
#[utoipa::path(delete, path = "/v1/models/{name}/versions/{version}/quarantine", tag = "governance",
    params(("name" = String, Path), ("version" = String, Path), ChangeBody), request_body = ChangeBody,
    responses((status = 200, body = VersionDto), (status = "4XX", body = Problem)))]
pub async fn lift_quarantine(
    State(state): State<AppState>,
    who: Caller,
    Path((name, version)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ChangeBody>,
    body: Bytes,
) -> ApiResult<Json<VersionDto>> {
    who.require(&state, Action::LiftQuarantine).await?;
    let b: ChangeBody = optional_body(&body)?;
    let chg_id = b.chg_id.or(q.chg_id);
    check_id("chg_id", chg_id.as_deref())?;
    govern(
        &state,
        &who,
        &name,
        Govern::LiftQuarantine { version: version.clone() },
        GovernCtx { chg_id, ..Default::default() },
    )
    .await?;
    version_after(&state, &who, &name, &version).await
}

// ----------------------------------------------------------------------------- aliases

pub(crate) fn parse_alias(s: &str) -> ApiResult<AliasName> {
    AliasName::parse(s).map_err(|e| ApiError::bad_request("bad_alias", e.to_string()))
}

async fn alias_dto(state: &AppState, who: &Caller, name: &str, alias: &str) -> ApiResult<Json<AliasDto>> {
    let model = parse_model_name(name)?;
    let m = visible_model(state, who, Action::Read, &model).await?;
    let a = state
        .store
        .get_alias(m.id, alias)
        .await?
        .filter(|a| !a.is_deleted())
        .ok_or_else(|| ApiError::not_found("alias"))?;
    Ok(Json(AliasDto {
        model: m.name,
        alias: a.name,
        env: a.env.as_str().into(),
        version: a.version,
        position: a.position,
        chg_id: a.chg_id,
    }))
}

/// Point an alias at a version. Moving to a lower `seq` needs `allow_downgrade` and a `chg_id`.
#[utoipa::path(put, path = "/v1/models/{name}/aliases/{alias}", tag = "aliases",
    params(("name" = String, Path), ("alias" = String, Path)), request_body = SetAliasBody,
    responses((status = 200, body = AliasDto), (status = "4XX", body = Problem)))]
pub async fn set_alias(
    State(state): State<AppState>,
    who: Caller,
    Path((name, alias)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetAliasBody>,
) -> ApiResult<Json<AliasDto>> {
    who.require(&state, Action::SetAlias).await?;
    let a = parse_alias(&alias)?;
    check_id("chg_id", body.chg_id.as_deref())?;
    let env = body
        .env
        .as_deref()
        .map(|e| e.parse::<Env>().map_err(|()| ApiError::unprocessable("bad_env", "env must be dev, staging or prod")))
        .transpose()?;
    VersionLabel::parse(&body.version).map_err(|e| ApiError::bad_request("bad_version", e.to_string()))?;
    govern(
        &state,
        &who,
        &name,
        Govern::SetAlias { alias: a, version: body.version, env, allow_downgrade: body.allow_downgrade },
        GovernCtx { chg_id: body.chg_id, ..Default::default() },
    )
    .await?;
    alias_dto(&state, &who, &name, &alias).await
}

#[utoipa::path(get, path = "/v1/models/{name}/aliases/{alias}", tag = "aliases",
    params(("name" = String, Path), ("alias" = String, Path)),
    responses((status = 200, body = AliasDto), (status = "4XX", body = Problem)))]
pub async fn get_alias(
    State(state): State<AppState>,
    who: Caller,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<Json<AliasDto>> {
    who.require(&state, Action::Read).await?;
    parse_alias(&alias)?;
    alias_dto(&state, &who, &name, &alias).await
}

/// Delete an alias. Its history is kept.
#[utoipa::path(delete, path = "/v1/models/{name}/aliases/{alias}", tag = "aliases",
    params(("name" = String, Path), ("alias" = String, Path), ChangeBody), request_body = ChangeBody,
    responses((status = 204, description = "deleted"), (status = "4XX", body = Problem)))]
pub async fn delete_alias(
    State(state): State<AppState>,
    who: Caller,
    Path((name, alias)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ChangeBody>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    who.require(&state, Action::DeleteAlias).await?;
    let a = parse_alias(&alias)?;
    let b: ChangeBody = optional_body(&body)?;
    let chg_id = b.chg_id.or(q.chg_id);
    check_id("chg_id", chg_id.as_deref())?;
    govern(&state, &who, &name, Govern::DeleteAlias { alias: a }, GovernCtx { chg_id, ..Default::default() }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every move of an alias, oldest first (sets, downgrades, automatic rollbacks, deletions).
#[utoipa::path(get, path = "/v1/models/{name}/aliases/{alias}/history", tag = "aliases",
    params(("name" = String, Path), ("alias" = String, Path)),
    responses((status = 200, body = Vec<AliasHistoryDto>), (status = "4XX", body = Problem)))]
pub async fn alias_history(
    State(state): State<AppState>,
    who: Caller,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<Json<Vec<AliasHistoryDto>>> {
    who.require(&state, Action::Read).await?;
    parse_alias(&alias)?;
    let model = parse_model_name(&name)?;
    let m = visible_model(&state, &who, Action::Read, &model).await?;
    let rows = state.store.alias_history(m.id, &alias).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found("alias"));
    }
    Ok(Json(
        rows.into_iter()
            .map(|h| AliasHistoryDto {
                position: h.position,
                version: h.version,
                seq: h.seq,
                cause: h.cause,
                chg_id: h.chg_id,
                inc_id: h.inc_id,
                actor: h.actor,
                at: h.at,
            })
            .collect(),
    ))
}
