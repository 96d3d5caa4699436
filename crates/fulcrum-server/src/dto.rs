//! Wire types of the HTTP API (the documented shapes in `/openapi.json`). Handlers convert them
//! to domain types at the boundary; conversion failures are 4xx problems.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    /// `[a-z0-9][a-z0-9._-]{0,127}`, unique per tenant.
    pub name: String,
    /// Defaults to the caller's tenant; any other tenant is refused.
    #[serde(default)]
    pub tenant: Option<String>,
    pub domain: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelDto {
    pub name: String,
    pub tenant: String,
    pub domain: String,
    pub description: String,
    pub owners: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelPage {
    pub items: Vec<ModelDto>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Cursor from the previous page.
    #[serde(default)]
    pub after: Option<String>,
    /// 1–500, default 100.
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileDto {
    pub path: String,
    pub size: u64,
    /// `sha256:<64 hex>` of an uploaded blob.
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSnapshot {
    pub uri: String,
    pub digest: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterVersion {
    pub version: String,
    /// The files (uploaded blobs) — or, instead, `oci`.
    #[serde(default)]
    pub files: Vec<FileDto>,
    /// An OCI reference (`registry/repository:tag` or `…@sha256:…`) to take the files from
    /// (`POST /v1/models/{name}/oci-imports`): resolved to a digest once, pulled by digest.
    #[serde(default)]
    pub oci: Option<String>,
    /// Digest of an uploaded SBOM blob.
    #[serde(default)]
    pub sbom: Option<String>,
    /// Digests of uploaded attestation blobs.
    #[serde(default)]
    pub attestations: Vec<String>,
    /// Digests of uploaded signature blobs.
    #[serde(default)]
    pub signatures: Vec<String>,
    /// Digest of an uploaded reference profile of the version's inputs (`fulcrum profile
    /// build`): what its live inputs are compared with for drift. Checked, then covered by the
    /// release record like the rest of the evidence.
    #[serde(default)]
    pub reference_profile: Option<String>,
    /// The model card (a JSON object), fixed at registration.
    #[serde(default)]
    pub model_card: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub dataset_snapshots: Vec<DatasetSnapshot>,
    /// RFC 3339 date-time by which the version must be revalidated.
    #[serde(default)]
    pub revalidate_by: Option<String>,
    #[serde(default)]
    pub chg_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApprovalDto {
    pub subject: String,
    pub role: String,
    /// `promotion` or `lift` (given during a quarantine).
    pub kind: String,
    pub comment: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UrisDto {
    pub artifact: String,
    pub attestation: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionDto {
    pub model: String,
    pub version: String,
    pub seq: u64,
    pub stage: String,
    pub hold: String,
    pub revoked: bool,
    pub quarantined: bool,
    pub hold_reason: Option<String>,
    pub artifact_digest: String,
    /// Digest of the release record (SBOM, attestations, signatures, card, datasets).
    pub record_digest: String,
    pub uris: UrisDto,
    pub files: Vec<FileDto>,
    /// What CI submitted, fixed at registration.
    #[schema(value_type = Object)]
    pub release: serde_json::Value,
    pub publisher: String,
    pub chg_id: Option<String>,
    pub created_at: String,
    pub approvals: Vec<ApprovalDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionPage {
    pub items: Vec<VersionDto>,
    pub next: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// `Staging` or `Approved` (one rung at a time).
    pub to: String,
    #[serde(default)]
    pub chg_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    pub reason: String,
    #[serde(default)]
    pub chg_id: Option<String>,
    #[serde(default)]
    pub inc_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    #[serde(default)]
    pub chg_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAliasBody {
    pub version: String,
    #[serde(default)]
    pub chg_id: Option<String>,
    #[serde(default)]
    pub allow_downgrade: bool,
    /// `dev`, `staging` or `prod`; fixed when the alias is created (default from its name).
    #[serde(default)]
    pub env: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AliasDto {
    pub model: String,
    pub alias: String,
    pub env: String,
    pub version: Option<String>,
    pub position: u64,
    pub chg_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AliasHistoryDto {
    pub position: u64,
    pub version: Option<String>,
    pub seq: Option<u64>,
    /// `set`, `downgrade`, `rollback`, `cleared` or `deleted`.
    pub cause: String,
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    pub actor: String,
    pub at: String,
}

/// The resolve query. Parsed by hand ([`ResolveQuery::parse`]) rather than through serde: it is
/// on every model server's startup path and this is a tenth of the cost.
#[derive(Debug, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResolveQuery {
    /// `name@alias`, `name@version` or `name@sha256:<hex>`.
    #[param(rename = "ref")]
    pub reference: String,
    /// `dev`, `staging` or `prod`; defaults to the caller's env.
    pub env: Option<String>,
}

impl ResolveQuery {
    /// Parse an URL query (`application/x-www-form-urlencoded`): `ref` once, `env` at most
    /// once, nothing else.
    ///
    /// # Errors
    /// A missing `ref`, a repeated or unknown parameter — the message names it.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let (mut reference, mut env) = (None, None);
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*k {
                "ref" => &mut reference,
                "env" => &mut env,
                other => return Err(format!("unknown parameter `{other}`, expected `ref` or `env`")),
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(format!("parameter `{k}` given twice"));
            }
        }
        Ok(Self { reference: reference.ok_or("missing parameter `ref`")?, env })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartupReport {
    #[serde(rename = "ref")]
    pub reference: String,
    pub env: String,
    /// `permit` or `deny`.
    pub decision: String,
    /// Machine-readable reason (required for `deny`).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub artifact_digest: Option<String>,
    #[serde(default)]
    pub policy_digest: Option<String>,
    /// Which agent/replica reports.
    #[serde(default)]
    pub agent: Option<String>,
    /// A deny's failed check in words (at most 512 printable characters).
    #[serde(default)]
    pub detail: Option<String>,
    /// A deny: the earlier verified version the agent kept serving instead (`name@version (digest)`).
    #[serde(default)]
    pub fallback: Option<String>,
}

/// A serving agent's runtime report: one guard step, or a gateway's per-version figures.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    #[serde(rename = "ref")]
    pub reference: String,
    pub env: String,
    /// `step` (with `step`, `observed_at`), `stats` (with `stats`) or `inputs` (with `inputs` and
    /// `version`).
    pub kind: String,
    /// `quiesce`, `unload`, `purge`, `reload`, `load`, `permit`, `deny`, `recheck_failed`, … (an identifier).
    #[serde(default)]
    pub step: Option<String>,
    /// The agent's clock at the step (RFC 3339).
    #[serde(default)]
    pub observed_at: Option<String>,
    /// What happened, in words (at most 512 characters).
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub artifact_digest: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub stats: Option<fulcrum_core::event::ServingStats>,
    /// `inputs`: inference inputs binned against the version's reference profile.
    #[serde(default)]
    pub inputs: Option<fulcrum_core::event::ServingInputs>,
    /// `step`: the incident that caused it (the revocation or quarantine's `inc_id`).
    #[serde(default)]
    pub inc_id: Option<String>,
    /// `step`: the change that caused it (the alias move's or withdrawal's `chg_id`).
    #[serde(default)]
    pub chg_id: Option<String>,
    /// `step`: the policy snapshot the served version was last checked under.
    #[serde(default)]
    pub policy_digest: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventAck {
    pub event: String,
    pub sequence: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Return events after this position (the CloudEvent `sequence`).
    #[serde(default)]
    pub after: Option<i64>,
    /// 1–1000, default 100.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only this model's events (registry-wide events are always included).
    #[serde(default)]
    pub model: Option<String>,
    /// Only these event types, comma-separated (e.g. `revocation,quarantined,alias_updated`).
    #[serde(default)]
    pub types: Option<String>,
}

impl EventsQuery {
    /// Does an event (its model, tenant and type) pass the filters?
    pub fn wants(&self, tenant: &str, model: &str, kind: &str) -> bool {
        let model_ok = tenant == "*" || self.model.as_deref().is_none_or(|m| m == model);
        let kind_ok = self.types.as_deref().is_none_or(|t| t.split(',').any(|k| k.trim() == kind));
        model_ok && kind_ok
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    /// CloudEvents 1.0 (structured JSON), oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// Position to pass as `after` next time.
    pub next_after: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlobDto {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::ResolveQuery;

    #[test]
    fn resolve_query_takes_ref_and_env_once_and_nothing_else() {
        let q = |s: &str| ResolveQuery::parse(Some(s));
        assert_eq!(
            q("ref=risk%40production&env=prod"),
            Ok(ResolveQuery { reference: "risk@production".into(), env: Some("prod".into()) })
        );
        assert_eq!(q("env=dev&ref=a+b"), Ok(ResolveQuery { reference: "a b".into(), env: Some("dev".into()) }));
        assert_eq!(q("ref=x"), Ok(ResolveQuery { reference: "x".into(), env: None }));
        assert_eq!(q("ref="), Ok(ResolveQuery { reference: String::new(), env: None }));
        for bad in ["", "env=prod", "ref=a&ref=b", "ref=a&env=prod&env=dev", "ref=a&debug=1", "REF=a"] {
            assert!(q(bad).is_err(), "{bad}");
        }
        assert!(ResolveQuery::parse(None).is_err());
    }
}
