//! Blobs: content-addressed upload and download with HTTP Range (SPEC §3, §10).
//!
//! A tenant can read a blob only if it uploaded the bytes or one of its versions references
//! them; otherwise the blob does not exist for it (404), so digests are no cross-tenant oracle.
//! Within the tenant, the download gate ([`download_gate`]) lets bytes leave only for a version
//! the caller may resolve now, and every byte served is hashed on the way out
//! ([`verified_body`]): what was altered on disk never arrives whole. `POST /v1/blobs/scrub`
//! re-hashes stored blobs.

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fulcrum_core::Digest;
use fulcrum_core::digest::Hasher;
use fulcrum_core::event::{EventKind, EventPayload};
use fulcrum_core::identity::Action;
use fulcrum_core::lifecycle::{Env, Hold};
use fulcrum_store::BlobUse;
use futures_util::StreamExt;

use crate::AppState;
use crate::access::Resource;
use crate::auth::Caller;
use crate::catalog::{EnvSubject, env_verdict};
use crate::dto::BlobDto;
use crate::problem::{ApiError, ApiResult, Problem};

fn parse_digest(s: &str) -> ApiResult<Digest> {
    s.parse().map_err(|e: fulcrum_core::DigestError| ApiError::bad_request("bad_digest", e.to_string()))
}

fn declared_length(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("bad_content_length", "Content-Length is not a number")),
    }
}

async fn store_body(
    state: &AppState,
    who: &Caller,
    headers: &HeaderMap,
    body: Body,
    expected: Option<Digest>,
) -> ApiResult<Response> {
    let declared = declared_length(headers)?;
    let limit = state.config.max_blob_bytes;
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("blobs are limited to {limit} bytes"),
        ));
    }
    let out = store_stream(state, who, body.into_data_stream(), expected, declared, |e| {
        if crate::deadline::is_body_timeout(&e) {
            crate::deadline::body_timeout()
        } else {
            ApiError::bad_request("body_incomplete", "the request body ended early or could not be read")
        }
    })
    .await?;
    let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    let location = HeaderValue::from_str(&format!("/v1/blobs/{}", out.digest)).expect("digest is a header value");
    Ok((status, [(header::LOCATION, location)], axum::Json(BlobDto { digest: out.digest.to_string(), size: out.size }))
        .into_response())
}

/// Write a stream of bytes into the blob store — hashed on the way, checked against the
/// `expected` digest and `declared` length — then mark the true bytes in place again (a write
/// always replaces what is stored) and grant them to the caller's tenant. Every way bytes enter
/// the registry goes through here (uploads, MLflow registrations).
///
/// # Errors
/// A chunk that cannot be read (`read_error` says how), the size limit, a digest or length that
/// is not the declared one; the temp file is removed and nothing is stored.
pub(crate) async fn store_stream<E>(
    state: &AppState,
    who: &Caller,
    stream: impl futures_util::Stream<Item = Result<Bytes, E>>,
    expected: Option<Digest>,
    declared: Option<u64>,
    read_error: impl Fn(E) -> ApiError,
) -> ApiResult<fulcrum_store::blobs::PutOutcome> {
    let mut writer = state.blobs.writer(state.config.max_blob_bytes).await?;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        // On any error the writer is dropped here, and its temp file with it.
        writer.write(&chunk.map_err(&read_error)?).await?;
    }
    let out = writer.finish(expected, declared).await?;
    state.corrupt_blobs.lock().expect("corrupt set").remove(&out.digest);
    state.store.grant_blob(&who.0.tenant, &out.digest).await?;
    Ok(out)
}

/// Upload raw bytes; the registry computes the digest. Idempotent.
#[utoipa::path(post, path = "/v1/blobs", tag = "blobs",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobDto), (status = 200, description = "already stored", body = BlobDto), (status = "4XX", body = Problem)))]
pub async fn post_blob(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    who.require(&state, Action::UploadBlob).await?;
    store_body(&state, &who, &headers, body, None).await
}

/// Upload raw bytes under a known digest; refused unless they hash to it.
#[utoipa::path(put, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "sha256:<64 hex>")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobDto), (status = 200, body = BlobDto), (status = "4XX", body = Problem)))]
pub async fn put_blob(
    State(state): State<AppState>,
    who: Caller,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    who.require(&state, Action::UploadBlob).await?;
    let d = parse_digest(&digest)?;
    store_body(&state, &who, &headers, body, Some(d)).await
}

/// A single byte range, resolved against the blob size.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    Full,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parse one `bytes=` range (RFC 9110 §14.1.2). Several ranges, or other units, are answered
/// with the whole blob, which the RFC allows.
fn parse_range(h: Option<&HeaderValue>, size: u64) -> Range {
    let Some(spec) = h.and_then(|v| v.to_str().ok()).and_then(|s| s.strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Unsatisfiable;
    };
    let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
        (Some(s), None) if b.is_empty() => (s, size.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() && n > 0 => (size.saturating_sub(n), size.saturating_sub(1)),
        _ => return Range::Unsatisfiable,
    };
    if size == 0 || start >= size {
        return Range::Unsatisfiable;
    }
    Range::Part { start, end }
}

/// How a blob may leave, once the gate has spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// Some version holding it is one the caller may resolve now.
    Serve,
    /// Only an investigation may read it (every such read is a logged `forensic_read` decision).
    Forensic,
}

/// Why one version holding the blob does not let it leave.
enum Refused<'a> {
    /// The environment rule for the version (its hold, its stage, the policy's `fulcrum.env`).
    Lifecycle { version: &'a BlobUse, reasons: String },
    /// The model's rows disagree with the audit ledger: nothing of it leaves.
    Divergent,
    /// The access rules (role, DLP purpose).
    Access(ApiError),
}

/// The download gate (the kill switch's reach over raw bytes). A blob a version names — a file,
/// its manifest, its release record, its SBOM, attestations, signatures — leaves only if some
/// version holding it is one the caller may resolve *now*: the access rules allow the download
/// on it (role, domain, DLP purpose; a logged decision), and the environment rule allows it in
/// the caller's environment (not held; the stage the environment loads; an identity bound to no
/// environment is held to `dev`'s rule). Otherwise the caller is told why: 410 `revoked` when
/// every version holding it is revoked, 403 `quarantined` when held, 403 `stage_not_allowed`, or
/// the access refusal. Bytes no version names (an upload not yet registered) leave only to those
/// who may upload.
///
/// A forensic read (`?forensic=<incident id>`) asks the other question: may this caller read
/// these bytes for that investigation, whatever their versions' state (`forensic_read`:
/// security officers and auditors by default)? Each one is a logged decision and a
/// `forensic_read` event naming the incident, the version and the reader.
async fn download_gate(state: &AppState, who: &Caller, d: &Digest, forensic: Option<&str>) -> ApiResult<Leave> {
    let uses = state.store.blob_uses(&who.0.tenant, d).await?;
    if uses.is_empty() {
        who.require(state, Action::UploadBlob).await?;
        return Ok(Leave::Serve);
    }
    let visible: Vec<&BlobUse> = uses.iter().filter(|u| who.0.may_use_domain(&u.domain)).collect();
    if visible.is_empty() {
        return Err(ApiError::not_found("blob"));
    }
    if let Some(inc) = forensic {
        let mut refusal = None;
        for u in &visible {
            match who.require_on(state, Action::ForensicRead, resource_of(&who.0.tenant, u)).await {
                Ok(()) => {
                    forensic_read(state, who, d, u, inc).await?;
                    return Ok(Leave::Forensic);
                }
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        return Err(refusal.unwrap_or_else(|| ApiError::not_found("blob")));
    }
    let env = who.0.env.unwrap_or(Env::Dev);
    let policy = state.policies.current();
    let mut refused = Vec::with_capacity(visible.len());
    for u in &visible {
        // Rows that disagree with the ledger are no basis for letting bytes out.
        if state.catalog.divergent(&who.0.tenant, &u.model).is_some() {
            refused.push(Refused::Divergent);
            continue;
        }
        if let Err(e) = who.require_on(state, Action::DownloadBlob, resource_of(&who.0.tenant, u)).await {
            refused.push(Refused::Access(e));
            continue;
        }
        let subject = EnvSubject {
            tenant: &who.0.tenant,
            domain: &u.domain,
            model: &u.model,
            label: &u.version,
            seq: u.seq,
            stage: u.stage,
            hold: u.hold,
        };
        match env_verdict(&policy, subject, env, None) {
            Ok(()) => return Ok(Leave::Serve),
            Err(reasons) => refused.push(Refused::Lifecycle { version: u, reasons }),
        }
    }
    Err(refusal(refused))
}

/// A forensic read is on the record: an event (ledgered, in the incident's timeline) naming the
/// reader, the version, the blob and the incident.
async fn forensic_read(state: &AppState, who: &Caller, d: &Digest, u: &BlobUse, inc: &str) -> ApiResult<()> {
    tracing::warn!(subject = %who.0.subject, role = %who.0.role, blob = %d, model = %u.model,
        version = %u.version, hold = u.hold.as_str(), inc_id = inc, "forensic read");
    let mut ev = EventPayload::new(EventKind::ForensicRead, state.clock.now(), &who.0.tenant, &u.domain, &u.model);
    ev.version = Some(u.version.clone());
    ev.artifact_digest = Some(d.to_string());
    ev.inc_id = Some(inc.to_owned());
    ev.actor = Some(who.0.subject.clone());
    ev.reason = Some(format!("hold {}, stage {}", u.hold.as_str(), u.stage.as_str()));
    state.store.record_event(ev).await?;
    state.notify_events();
    Ok(())
}

/// The resource a version holding a blob is to the access rules.
fn resource_of<'a>(tenant: &'a str, u: &'a BlobUse) -> Resource<'a> {
    Resource {
        labels: &u.labels,
        purposes: &u.purposes,
        stage: Some(u.stage.as_str()),
        hold: Some(u.hold.as_str()),
        ..Resource::model(tenant, &u.domain, &u.model)
    }
}

/// The answer for a refused blob. A lifecycle reason wins over an access refusal (the caller may
/// download such bytes in general; this version is what stops it): 403 `stage_not_allowed` (or
/// the policy's `env_denied`) for an unheld version, 410 when every version holding it is
/// revoked, 403 `quarantined` when all are held; `state_divergent` when only divergent models
/// hold it.
fn refusal(refused: Vec<Refused<'_>>) -> ApiError {
    let mut lifecycle = Vec::new();
    let mut access = None;
    let mut divergent = false;
    for r in refused {
        match r {
            Refused::Lifecycle { version, reasons } => lifecycle.push((version, reasons)),
            Refused::Divergent => divergent = true,
            Refused::Access(e) => {
                access.get_or_insert(e);
            }
        }
    }
    let names = |pick: fn(Hold) -> bool| {
        lifecycle
            .iter()
            .filter(|(u, _)| pick(u.hold))
            .map(|(u, _)| format!("{} {}", u.model, u.version))
            .collect::<Vec<_>>()
    };
    if let Some((u, reasons)) = lifecycle.iter().find(|(u, _)| u.hold == Hold::None) {
        let code =
            if reasons.split(',').next() == Some("stage_not_allowed") { "stage_not_allowed" } else { "env_denied" };
        return ApiError::new(
            StatusCode::FORBIDDEN,
            code,
            format!(
                "no version holding these bytes may be loaded in your environment ({} {}: {reasons})",
                u.model, u.version
            ),
        );
    }
    if !lifecycle.is_empty() {
        let revoked = names(|h| h == Hold::Revoked);
        if revoked.len() == lifecycle.len() {
            return ApiError::new(
                StatusCode::GONE,
                "revoked",
                format!(
                    "these bytes belong only to revoked versions ({}); they are not served (an investigation reads them with ?forensic=<incident id>)",
                    revoked.join(", ")
                ),
            );
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "quarantined",
            format!(
                "these bytes belong only to held versions ({}); they are not served while held",
                names(|h| h != Hold::None).join(", ")
            ),
        );
    }
    if divergent {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "state_divergent",
            "these bytes belong only to models whose stored state disagrees with the audit ledger; they are not served until it is repaired",
        );
    }
    access.unwrap_or_else(|| ApiError::not_found("blob"))
}

/// The body of a blob, verified as it goes: the whole blob is hashed while the asked range is
/// streamed (the bytes before and after the range are read and hashed, not sent), and the
/// range's last chunk is held back until the digest is confirmed. Bytes altered on disk never
/// reach a clean end: the stream fails (the connection is cut short of its Content-Length), the
/// damage is recorded as `blob_corrupt`, and later requests for it are refused until the true
/// bytes are uploaded again.
fn verified_body(state: &AppState, d: Digest, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let state = state.clone();
    tokio::spawn(async move {
        let mut f = match state.blobs.stream(&d, 0).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        };
        let mut hasher = Hasher::new();
        let end = start + len;
        let mut pos = 0u64;
        let mut held: Option<Bytes> = None;
        while let Some(chunk) = f.next().await {
            let buf = match chunk {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let n = buf.len();
            hasher.update(&buf);
            let (a, b) = (start.max(pos), end.min(pos + n as u64));
            if a < b {
                let piece = buf.slice((a - pos) as usize..(b - pos) as usize);
                state.metrics.blob_bytes_served.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if let Some(prev) = held.replace(piece)
                    && tx.send(Ok(prev)).await.is_err()
                {
                    return; // the client went away
                }
            }
            pos += n as u64;
        }
        let actual = hasher.finish();
        if actual == d {
            if let Some(last) = held {
                let _ = tx.send(Ok(last)).await;
            }
            return;
        }
        blob_damaged(&state, &d, &actual, "serving").await;
        let _ = tx.send(Err(std::io::Error::other("the stored bytes do not hash to their digest"))).await;
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Record damaged bytes once per process: every tenant that may read the blob gets a
/// `blob_corrupt` event naming the digest and what the bytes hash to now.
pub(crate) async fn blob_damaged(state: &AppState, d: &Digest, actual: &Digest, found_by: &str) {
    if !state.corrupt_blobs.lock().expect("corrupt set").insert(*d) {
        return;
    }
    tracing::error!(blob = %d, actual = %actual, found_by, "stored blob does not hash to its digest");
    let tenants = match state.store.blob_tenants(d).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the tenants of a damaged blob");
            return;
        }
    };
    for tenant in tenants {
        let mut ev = EventPayload::new(EventKind::BlobCorrupt, state.clock.now(), &tenant, "*", "_registry");
        ev.artifact_digest = Some(d.to_string());
        ev.reason = Some(format!("the stored bytes hash to {actual}"));
        ev.detail = Some(format!("found while {found_by}"));
        if let Err(e) = state.store.record_event(ev).await {
            tracing::error!(error = %e, "recording blob_corrupt failed");
        }
    }
    state.notify_events();
}

async fn blob_response(
    state: &AppState,
    who: &Caller,
    digest: &str,
    headers: &HeaderMap,
    with_body: bool,
    forensic: Option<&str>,
) -> ApiResult<Response> {
    if let Some(inc) = forensic {
        super::check_id("forensic", Some(inc))?;
        who.require(state, Action::ForensicRead).await?;
    } else {
        who.require(state, Action::DownloadBlob).await?;
    }
    let d = parse_digest(digest)?;
    if !state.store.tenant_has_blob(&who.0.tenant, &d).await? {
        return Err(ApiError::not_found("blob"));
    }
    let leave = download_gate(state, who, &d, forensic).await?;
    if state.corrupt_blobs.lock().expect("corrupt set").contains(&d) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "blob_corrupt",
            "the stored bytes no longer hash to this digest; the registry will not serve them until they are uploaded again",
        ));
    }
    let size = state.blobs.stat(&d).await?.ok_or_else(|| ApiError::not_found("blob"))?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", d.hex())).expect("hex is a header value");
    let (status, start, len, content_range) = match parse_range(headers.get(header::RANGE), size) {
        Range::Full => (StatusCode::OK, 0, size, None),
        Range::Part { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1, Some(format!("bytes {start}-{end}/{size}")))
        }
        Range::Unsatisfiable => {
            let mut e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the blob has {size} bytes"),
            );
            e.extra_headers
                .push((header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii")));
            return Err(e);
        }
    };
    // A satisfiable range goes with the redirect; an unsatisfiable one was answered above.
    if with_body
        && leave != Leave::Forensic
        && let Some(url) = state.blobs.presign(&d, state.config.presign_ttl).await?
    {
        // Object storage serves the bytes: a short-lived URL for this blob only, handed out after
        // the access decision above. The client still checks every byte against the digest, and
        // its Range header (a resumed download) goes to object storage with it.
        state.metrics.blob_redirects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url)
            .header(header::CACHE_CONTROL, "no-store")
            .header("Docker-Content-Digest", d.to_string())
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty())
            .map_err(|e| ApiError::internal(&e));
    }
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(header::CONTENT_LENGTH, len)
        .header("Docker-Content-Digest", d.to_string());
    if let Some(cr) = content_range {
        builder = builder.header(header::CONTENT_RANGE, cr);
    }
    if leave == Leave::Forensic {
        builder = builder.header("Fulcrum-Forensic-Read", "true");
    }
    let body = if with_body { verified_body(state, d, start, len) } else { Body::empty() };
    builder.body(body).map_err(|e| ApiError::internal(&e))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BlobQuery {
    /// A forensic read for this incident: bytes the download gate refuses (revoked, quarantined,
    /// not allowed here) are read for an investigation by a role that may (`forensic_read`),
    /// recorded as a `forensic_read` event naming the incident.
    pub forensic: Option<String>,
}

/// Download a blob; `Range: bytes=…` resumes an interrupted download. Served only for a version
/// the caller may resolve now (410 `revoked`, 403 `quarantined` / `stage_not_allowed` otherwise),
/// and hashed on the way out.
#[utoipa::path(get, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "sha256:<64 hex>"), BlobQuery),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "partial content"), (status = 410, description = "the bytes belong only to revoked versions", body = Problem), (status = "4XX", body = Problem)))]
pub async fn get_blob(
    State(state): State<AppState>,
    who: Caller,
    Path(digest): Path<String>,
    super::ApiQuery(q): super::ApiQuery<BlobQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    blob_response(&state, &who, &digest, &headers, true, q.forensic.as_deref()).await
}

/// Does the caller's tenant have this blob, may it download it now, and how big is it?
#[utoipa::path(head, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "sha256:<64 hex>"), BlobQuery),
    responses((status = 200, description = "present"), (status = 404, description = "absent")))]
pub async fn head_blob(
    State(state): State<AppState>,
    who: Caller,
    Path(digest): Path<String>,
    super::ApiQuery(q): super::ApiQuery<BlobQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    blob_response(&state, &who, &digest, &headers, false, q.forensic.as_deref()).await
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScrubQuery {
    /// Continue after this digest (the previous page's `next_after`).
    pub after: Option<String>,
    /// Blobs to check in this call: 1–1000, default 100.
    pub limit: Option<u32>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ScrubFinding {
    pub digest: String,
    /// What the stored bytes hash to now.
    pub actual: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ScrubReport {
    pub checked: u64,
    pub bytes: u64,
    /// Blobs whose bytes no longer hash to their digest (each recorded as `blob_corrupt`).
    pub corrupt: Vec<ScrubFinding>,
    /// Blobs the tenant may read that are no longer stored at all.
    pub missing: Vec<String>,
    /// Where the next call continues; absent when every blob was checked.
    pub next_after: Option<String>,
}

/// Bytes one scrub call hashes at most (it ends early and says where to continue).
const SCRUB_BYTES_PER_CALL: u64 = 4 << 30;

/// Re-hash the blobs of the caller's tenant against their digests, a page at a time (admin,
/// security officer): damaged ones are recorded as `blob_corrupt` and refused from then on,
/// until their true bytes are uploaded again. `fulcrum blobs scrub` walks every page.
#[utoipa::path(post, path = "/v1/blobs/scrub", tag = "blobs", params(ScrubQuery),
    responses((status = 200, body = ScrubReport), (status = "4XX", body = Problem)))]
pub async fn scrub(
    State(state): State<AppState>,
    who: Caller,
    super::ApiQuery(q): super::ApiQuery<ScrubQuery>,
) -> ApiResult<axum::Json<ScrubReport>> {
    who.require(&state, Action::ScrubBlobs).await?;
    let limit = match q.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => return Err(ApiError::bad_request("bad_limit", "limit must be between 1 and 1000")),
    };
    let after = q.after.as_deref().map(parse_digest).transpose()?;
    let page = state.store.tenant_blobs(&who.0.tenant, after.as_ref(), limit).await?;
    let mut report = ScrubReport { checked: 0, bytes: 0, corrupt: vec![], missing: vec![], next_after: None };
    for (i, d) in page.iter().enumerate() {
        match state.blobs.rehash(d).await? {
            None => report.missing.push(d.to_string()),
            Some((actual, size)) => {
                report.bytes += size;
                if actual != *d {
                    blob_damaged(&state, d, &actual, "scrubbing").await;
                    report.corrupt.push(ScrubFinding { digest: d.to_string(), actual: actual.to_string() });
                } else {
                    state.corrupt_blobs.lock().expect("corrupt set").remove(d);
                }
            }
        }
        report.checked += 1;
        let last_of_page = i + 1 == page.len();
        if report.bytes >= SCRUB_BYTES_PER_CALL || (last_of_page && page.len() == limit as usize) {
            report.next_after = Some(d.to_string());
            break;
        }
    }
    Ok(axum::Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(h: &str, size: u64, expect: Range) {
        assert_eq!(parse_range(Some(&HeaderValue::from_str(h).unwrap()), size), expect, "{h}");
    }

    #[test]
    fn ranges_as_data() {
        check("bytes=0-9", 100, Range::Part { start: 0, end: 9 });
        check("bytes=90-", 100, Range::Part { start: 90, end: 99 });
        check("bytes=-10", 100, Range::Part { start: 90, end: 99 });
        check("bytes=95-200", 100, Range::Part { start: 95, end: 99 });
        check("bytes=100-", 100, Range::Unsatisfiable);
        check("bytes=5-1", 100, Range::Unsatisfiable);
        check("bytes=x-1", 100, Range::Unsatisfiable);
        check("bytes=0-1,5-6", 100, Range::Full);
        check("items=0-1", 100, Range::Full);
        check("bytes=0-0", 0, Range::Unsatisfiable);
    }
}
