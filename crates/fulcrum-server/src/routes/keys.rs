//! Signing keys (SPEC §6 "Signing keys", "Rotation"): list, publish-and-rotate, retire. Only
//! the key-admin role may change them; the registry only publishes keys it can already sign with.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fulcrum_core::identity::Action;
use fulcrum_sign::PublicKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, check_id};
use crate::AppState;
use crate::auth::Caller;
use crate::keyring::RotateError;
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyDto {
    pub kid: String,
    pub alg: String,
    /// SPKI DER, base64.
    pub public_key: String,
    pub backend: String,
    pub backend_ref: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub status: String,
    pub development: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterKey {
    /// Defaults to `<backend>-<first 16 hex of the SPKI SHA-256>`.
    #[serde(default)]
    pub kid: Option<String>,
    /// PEM (`BEGIN PUBLIC KEY`) or base64 SPKI DER.
    pub public_key: String,
    /// `local`, `pkcs11` or `vault`.
    pub backend: String,
    /// Where the private key lives for that backend (file under the data dir, token key label,
    /// transit `name:version`).
    pub backend_ref: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetireKey {
    pub reason: String,
    /// A compromised key's signatures are invalid whenever they claim to be from.
    #[serde(default)]
    pub compromised: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleAck {
    pub kid: String,
    pub trust_bundle_version: u64,
}

fn dto(k: fulcrum_store::KeyRecord) -> KeyDto {
    KeyDto {
        kid: k.kid,
        alg: k.alg,
        public_key: k.public_key,
        backend: k.backend,
        backend_ref: k.backend_ref,
        valid_from: k.valid_from,
        valid_until: k.valid_until,
        status: k.status,
        development: k.development,
        reason: k.reason,
    }
}

fn rotate_err(e: RotateError) -> ApiError {
    match e {
        RotateError::Unusable(msg) => ApiError::unprocessable("key_unusable", msg),
        RotateError::Store(s) => s.into(),
    }
}

/// Every published key with its window and status.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", responses((status = 200, body = Vec<KeyDto>), (status = "4XX", body = Problem)))]
pub async fn list_keys(State(state): State<AppState>, who: Caller) -> ApiResult<Json<Vec<KeyDto>>> {
    who.require(&state, Action::ReadKeys).await?;
    Ok(Json(state.store.keys().await?.into_iter().map(dto).collect()))
}

/// Publish a key the key-admin created in a KMS and make it the signing key (rotation): the old
/// key's window closes now, a new trust bundle version is issued, `key_rotated` is emitted, and
/// every cached resolve document is re-signed.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = RegisterKey,
    responses((status = 201, body = BundleAck), (status = 422, description = "the registry cannot sign with that key", body = Problem), (status = "4XX", body = Problem)))]
pub async fn register_key(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(body): ApiJson<RegisterKey>,
) -> ApiResult<(StatusCode, Json<BundleAck>)> {
    who.require(&state, Action::AdministerKeys).await?;
    let key = PublicKey::from_pem(body.public_key.as_bytes())
        .or_else(|_| {
            fulcrum_verify::b64_decode(body.public_key.trim())
                .map_err(|_| fulcrum_sign::KeyError::Pem)
                .and_then(|der| PublicKey::from_spki_der(&der))
        })
        .map_err(|e| ApiError::unprocessable("bad_public_key", e.to_string()))?;
    if !matches!(body.backend.as_str(), "local" | "pkcs11" | "vault") {
        return Err(ApiError::unprocessable("bad_backend", "backend must be local, pkcs11 or vault"));
    }
    if body.backend_ref.is_empty() || body.backend_ref.len() > 512 || body.backend_ref.chars().any(char::is_control) {
        return Err(ApiError::unprocessable("bad_backend_ref", "backend_ref must be 1-512 printable characters"));
    }
    let kid = body.kid.unwrap_or_else(|| fulcrum_sign::kid_for(&body.backend, &key));
    check_id("kid", Some(&kid))?;
    let rec = fulcrum_store::KeyRecord {
        kid: kid.clone(),
        alg: key.alg().as_str().into(),
        public_key: fulcrum_sign::b64(key.spki_der()),
        backend: body.backend.clone(),
        backend_ref: body.backend_ref,
        valid_from: String::new(),
        valid_until: None,
        status: "active".into(),
        development: body.backend == "local",
        reason: None,
    };
    // Everything handed out from now on carries the new kid.
    let version = state
        .commit(
            async |at| state.keys.rotate(&state.store, rec, &who.0.subject, at).await,
            |_, _| {
                state.resign_everything();
            },
        )
        .await
        .map_err(rotate_err)?;
    Ok((StatusCode::CREATED, Json(BundleAck { kid, trust_bundle_version: version })))
}

/// Retire a key (its past signatures stay valid inside its window) or mark it compromised (none
/// of its signatures are valid any more). The active key cannot be retired: rotate first.
#[utoipa::path(post, path = "/v1/keys/{kid}/retire", tag = "keys", params(("kid" = String, Path)), request_body = RetireKey,
    responses((status = 200, body = BundleAck), (status = "4XX", body = Problem)))]
pub async fn retire_key(
    State(state): State<AppState>,
    who: Caller,
    Path(kid): Path<String>,
    ApiJson(body): ApiJson<RetireKey>,
) -> ApiResult<Json<BundleAck>> {
    who.require(&state, Action::AdministerKeys).await?;
    check_id("kid", Some(&kid))?;
    if body.reason.trim().is_empty() || body.reason.len() > 1024 {
        return Err(ApiError::unprocessable("invalid_body", "reason must be 1-1024 bytes"));
    }
    // Nothing cached may still carry a signature a verifier would now refuse.
    let version = state
        .commit(
            async |at| state.keys.retire(&state.store, &kid, body.compromised, &body.reason, &who.0.subject, at).await,
            |_, _| state.resign_everything(),
        )
        .await
        .map_err(rotate_err)?;
    Ok(Json(BundleAck { kid, trust_bundle_version: version }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportTrustRoot {
    /// The `trusted_root.json` document, as text: its exact bytes are pinned by their SHA-256.
    pub trusted_root: String,
    /// Why and from where (e.g. "production root from the TUF repository, 2026-12-01").
    pub note: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustRootDto {
    pub version: u64,
    /// `sha256:<hex>` of the document's exact bytes.
    pub digest: String,
    pub note: String,
    pub imported_by: String,
    pub imported_at: String,
    /// The newest import is the one in force (and in the trust bundle).
    pub in_force: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustRootAck {
    pub version: u64,
    pub digest: String,
    pub trust_bundle_version: u64,
}

/// The Sigstore trusted roots a key-admin imported, newest (in force) first.
#[utoipa::path(get, path = "/v1/trust-roots/sigstore", tag = "keys",
    responses((status = 200, body = Vec<TrustRootDto>), (status = "4XX", body = Problem)))]
pub async fn list_trust_roots(State(state): State<AppState>, who: Caller) -> ApiResult<Json<Vec<TrustRootDto>>> {
    who.require(&state, Action::ReadKeys).await?;
    let roots = state.store.sigstore_roots().await?;
    Ok(Json(
        roots
            .into_iter()
            .enumerate()
            .map(|(i, r)| TrustRootDto {
                version: r.version,
                digest: r.digest,
                note: r.note,
                imported_by: r.imported_by,
                imported_at: r.imported_at,
                in_force: i == 0,
            })
            .collect(),
    ))
}

/// Put a Sigstore `trusted_root.json` in force for keyless signatures (key-admin). It must parse
/// as a trusted root with usable keys and certificates; it is pinned by the SHA-256 of its exact
/// bytes, versioned, recorded as a `trust_root_imported` event, and shipped inside the new trust
/// bundle — agents verify keyless signatures against it and never fetch one themselves.
#[utoipa::path(post, path = "/v1/trust-roots/sigstore", tag = "keys", request_body = ImportTrustRoot,
    responses((status = 201, body = TrustRootAck), (status = 422, description = "not a usable trusted root", body = Problem),
        (status = 409, description = "that root is already in force", body = Problem), (status = "4XX", body = Problem)))]
pub async fn import_trust_root(
    State(state): State<AppState>,
    who: Caller,
    ApiJson(body): ApiJson<ImportTrustRoot>,
) -> ApiResult<(StatusCode, Json<TrustRootAck>)> {
    who.require(&state, Action::AdministerKeys).await?;
    if body.note.trim().is_empty() || body.note.len() > 1024 || body.note.chars().any(char::is_control) {
        return Err(ApiError::unprocessable("invalid_body", "note must be 1-1024 printable characters"));
    }
    let root = fulcrum_verify::keyless::TrustedRoot::from_json(body.trusted_root.as_bytes())
        .map_err(|f| ApiError::unprocessable(f.code(), f.to_string()))?;
    let (rec, version) = state
        .commit(
            async |at| state.keys.import_sigstore_root(&state.store, &root, &body.note, &who.0.subject, at).await,
            |_, _| {},
        )
        .await
        .map_err(rotate_err)?;
    Ok((
        StatusCode::CREATED,
        Json(TrustRootAck { version: rec.version, digest: rec.digest, trust_bundle_version: version }),
    ))
}
