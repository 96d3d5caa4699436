//! Blobs: content-addressed upload and download with HTTP Range (SPEC §3, §10).
//!
//! A tenant can read a blob only if it uploaded the bytes or one of its versions references
//! them; otherwise the blob does not exist for it (404), so digests are no cross-tenant oracle.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fulcrum_core::Digest;
use fulcrum_core::identity::Action;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::AppState;
use crate::access::Resource;
use crate::auth::Caller;
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
    let mut writer = state.blobs.writer(limit).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request("body_incomplete", "the request body ended early or could not be read")
        })?;
        writer.write(&chunk).await?;
    }
    let out = writer.finish(expected, declared).await?;
    state.store.grant_blob(&who.0.tenant, &out.digest).await?;
    let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    let location = HeaderValue::from_str(&format!("/v1/blobs/{}", out.digest)).expect("digest is a header value");
    Ok((status, [(header::LOCATION, location)], axum::Json(BlobDto { digest: out.digest.to_string(), size: out.size }))
        .into_response())
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

/// A file of registered versions leaves under their access rules (labels, stage, DLP purpose):
/// it is served when one version holding it that the caller may see allows the download, so a
/// file found only in sensitive versions leaves only for a purpose one of their cards allows.
/// Every version asked is a logged decision. Blobs no version holds (fresh uploads) pass with
/// the tenant-level rule alone.
async fn download_gate(state: &AppState, who: &Caller, d: &Digest) -> ApiResult<()> {
    let uses = state.store.blob_uses(&who.0.tenant, d).await?;
    if uses.is_empty() {
        return Ok(());
    }
    let mut refusal = None;
    for u in uses.iter().filter(|u| who.0.may_use_domain(&u.domain)) {
        let res = Resource {
            labels: &u.labels,
            purposes: &u.purposes,
            stage: Some(&u.stage),
            ..Resource::model(&who.0.tenant, &u.domain, &u.model)
        };
        match who.require_on(state, Action::DownloadBlob, res).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    Err(refusal.unwrap_or_else(|| ApiError::not_found("blob")))
}

async fn blob_response(
    state: &AppState,
    who: &Caller,
    digest: &str,
    headers: &HeaderMap,
    with_body: bool,
) -> ApiResult<Response> {
    who.require(state, Action::DownloadBlob).await?;
    let d = parse_digest(digest)?;
    if !state.store.tenant_has_blob(&who.0.tenant, &d).await? {
        return Err(ApiError::not_found("blob"));
    }
    download_gate(state, who, &d).await?;
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
    let body = if with_body {
        let mut f = tokio::fs::File::open(state.blobs.path_of(&d)).await.map_err(|e| ApiError::internal(&e))?;
        f.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| ApiError::internal(&e))?;
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024))
    } else {
        Body::empty()
    };
    builder.body(body).map_err(|e| ApiError::internal(&e))
}

/// Download a blob; `Range: bytes=…` resumes an interrupted download.
#[utoipa::path(get, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "sha256:<64 hex>")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "partial content"), (status = "4XX", body = Problem)))]
pub async fn get_blob(
    State(state): State<AppState>,
    who: Caller,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    blob_response(&state, &who, &digest, &headers, true).await
}

/// Does the caller's tenant have this blob, and how big is it?
#[utoipa::path(head, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "sha256:<64 hex>")),
    responses((status = 200, description = "present"), (status = 404, description = "absent")))]
pub async fn head_blob(
    State(state): State<AppState>,
    who: Caller,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    blob_response(&state, &who, &digest, &headers, false).await
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
