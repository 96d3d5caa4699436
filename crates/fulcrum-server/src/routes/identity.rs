//! Who the caller is, as the registry sees it (`GET /v1/me`): what `fulcrum login` and an
//! operator check after configuring an IdP or a client certificate.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::problem::Problem;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeDto {
    pub subject: String,
    pub role: String,
    pub tenant: String,
    /// `*` = every domain of the tenant.
    pub domain: String,
    pub env: Option<String>,
    pub purpose: Option<String>,
    /// How the caller proved it: `token` (tokens file), `oidc` (a JWT of a trusted issuer),
    /// `certificate` (a client certificate), `certificate+oidc`, `certificate+token`.
    pub authenticated_by: String,
    /// The OIDC issuer, when a JWT was presented.
    pub issuer: Option<String>,
    /// The client certificate's identity (SAN URI or DNS name), when one was presented.
    pub certificate: Option<String>,
}

/// The caller's principal.
#[utoipa::path(get, path = "/v1/me", tag = "identity",
    responses((status = 200, body = MeDto), (status = 401, body = Problem)))]
pub async fn me(who: Caller) -> Json<MeDto> {
    let p = &who.0;
    Json(MeDto {
        subject: p.subject.clone(),
        role: p.role.as_str().to_owned(),
        tenant: p.tenant.clone(),
        domain: p.domain.clone(),
        env: p.env.map(|e| e.as_str().to_owned()),
        purpose: p.purpose.clone(),
        authenticated_by: who.1.label(),
        issuer: who.1.issuer.as_deref().map(str::to_owned),
        certificate: who.1.certificate.as_deref().map(str::to_owned),
    })
}
