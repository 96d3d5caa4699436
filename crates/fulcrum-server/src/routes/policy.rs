//! Policy snapshots over HTTP: the current one and any by digest, each as the registry-signed
//! DSSE envelope over the snapshot's canonical bytes.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fulcrum_core::Digest;
use fulcrum_core::identity::{Action, role_allows};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, ApiResult, Problem};

fn may_read(who: &Caller) -> ApiResult<()> {
    if role_allows(who.0.role, Action::Read) || role_allows(who.0.role, Action::Resolve) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("role {} may not read policies", who.0.role)))
    }
}

fn envelope(state: &AppState) -> Response {
    let snap = state.policies.current();
    let digest = HeaderValue::from_str(&snap.digest.to_string()).expect("digest is a header value");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::HeaderName::from_static("fulcrum-policy-digest"), digest),
        ],
        snap.envelope.clone(),
    )
        .into_response()
}

/// The policy snapshot in force: a DSSE envelope (payloadType
/// `application/vnd.fulcrum.policy-snapshot.v1+json`) signed by the registry; its payload's
/// SHA-256 is the `policy_digest` resolve documents carry.
#[utoipa::path(get, path = "/v1/policy/current", tag = "policy",
    responses((status = 200, description = "signed policy snapshot (DSSE envelope)", content_type = "application/json"), (status = "4XX", body = Problem)))]
pub async fn current(State(state): State<AppState>, who: Caller) -> ApiResult<Response> {
    may_read(&who)?;
    Ok(envelope(&state))
}

/// A policy snapshot by its digest.
#[utoipa::path(get, path = "/v1/policy/snapshots/{digest}", tag = "policy", params(("digest" = String, Path)),
    responses((status = 200, description = "signed policy snapshot (DSSE envelope)", content_type = "application/json"), (status = "4XX", body = Problem)))]
pub async fn by_digest(State(state): State<AppState>, who: Caller, Path(digest): Path<String>) -> ApiResult<Response> {
    may_read(&who)?;
    let d: Digest =
        digest.parse().map_err(|e: fulcrum_core::DigestError| ApiError::bad_request("bad_digest", e.to_string()))?;
    if d != state.policies.current().digest {
        return Err(ApiError::not_found("policy snapshot"));
    }
    Ok(envelope(&state))
}
