//! RFC 9457 problem+json: the one place HTTP errors are produced.
//!
//! Every error has a stable `type` (`urn:fulcrum:problem:<code>`), a status, a short title and a
//! human detail. Internal error text never reaches the client: storage and I/O failures are
//! logged and answered with a generic 500/503.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fulcrum_core::lifecycle::Refusal;
use fulcrum_store::StoreError;
use fulcrum_store::blobs::BlobError;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub ty: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Machine-readable reason code (the `type`'s last segment).
    pub code: String,
    /// Named failed checks, when a request failed several (e.g. registration gates).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<CheckFailure>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckFailure {
    pub check: String,
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<CheckFailure>,
    pub extra_headers: Vec<(header::HeaderName, HeaderValue)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), errors: vec![], extra_headers: vec![] }
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn unauthorized() -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a valid bearer token is required");
        e.extra_headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        e
    }
    /// A refused token: 401 with the reason's code (`token_expired`, `token_audience`, …).
    pub fn bad_token(e: &fulcrum_oidc::TokenError) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string());
        e.extra_headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\"")));
        e
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }
    pub fn internal(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the registry failed to complete the request; it was not applied",
        )
    }
    pub fn with_errors(mut self, errors: Vec<CheckFailure>) -> Self {
        self.errors = errors;
        self
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            ty: format!("urn:fulcrum:problem:{}", self.code),
            title: title(self.status).to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
            errors: self.errors,
        };
        let mut resp = (self.status, Json(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        for (k, v) in self.extra_headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::UnknownVersion | Refusal::UnknownAlias | Refusal::AliasEmpty => StatusCode::NOT_FOUND,
            Refusal::ChangeIdRequired | Refusal::IncidentIdRequired => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::CONFLICT,
        };
        Self::new(status, r.code(), r.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict(msg) => Self::conflict("conflict", msg),
            StoreError::Refused(r) => r.into(),
            StoreError::PolicyDenied { reasons, .. } => {
                let errors =
                    reasons.iter().map(|r| CheckFailure { check: "policy".into(), detail: r.clone() }).collect();
                Self::conflict("policy_denied", format!("the policy denies it: {}", reasons.join(", ")))
                    .with_errors(errors)
            }
            e if e.is_transient() => {
                tracing::warn!(error = %e, "the database is busy or unreachable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the registry's database is busy or unreachable; retry",
                )
            }
            StoreError::Unavailable(why) => {
                tracing::error!(error = %why, "a write did not happen");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "nothing was stored; retry")
            }
            other => Self::internal(&other),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::DigestMismatch { .. } => Self::unprocessable("digest_mismatch", e.to_string()),
            BlobError::TooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            BlobError::LengthMismatch { .. } => Self::bad_request("length_mismatch", e.to_string()),
            BlobError::Remote(why) => {
                tracing::error!(error = %why, "the object store failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "blob_store_unavailable",
                    "the object store did not answer; retry",
                )
            }
            BlobError::Io(_) | BlobError::Config(_) => Self::internal(&e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if crate::deadline::is_body_timeout(&r) {
            return crate::deadline::body_timeout();
        }
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            _ => "malformed_json",
        };
        // body_text() describes the JSON problem (line/column, unknown field) without internals.
        Self::new(status, code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("bad_query", r.body_text())
    }
}
