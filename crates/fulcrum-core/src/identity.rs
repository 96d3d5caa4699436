//! Principals, roles and the built-in role rules (SPEC §6 "Authorization", §10 local identities).
//!
//! This is the coarse RBAC layer that every API action passes first. Attribute rules (tenant,
//! domain, env) are applied where the resource is known; tenants never see each other's models.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::lifecycle::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    Publisher,
    Approver,
    ReleaseManager,
    SecurityOfficer,
    KeyAdmin,
    /// Installs policy snapshots.
    PolicyAdmin,
    Auditor,
    Serving,
    Admin,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Viewer,
        Role::Publisher,
        Role::Approver,
        Role::ReleaseManager,
        Role::SecurityOfficer,
        Role::KeyAdmin,
        Role::PolicyAdmin,
        Role::Auditor,
        Role::Serving,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Publisher => "publisher",
            Role::Approver => "approver",
            Role::ReleaseManager => "release-manager",
            Role::SecurityOfficer => "security-officer",
            Role::KeyAdmin => "key-admin",
            Role::PolicyAdmin => "policy-admin",
            Role::Auditor => "auditor",
            Role::Serving => "serving",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or(())
    }
}

/// Who is calling. Built by the server's authentication layer from a verified credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
    pub tenant: String,
    /// `*` = every domain of the tenant.
    pub domain: String,
    /// The environment the caller serves or works in; `None` = not bound to one.
    pub env: Option<Env>,
    pub purpose: Option<String>,
}

impl Principal {
    pub fn may_use_domain(&self, domain: &str) -> bool {
        self.domain == "*" || self.domain == domain
    }
}

/// Every API action, for the role table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    UploadBlob,
    DownloadBlob,
    CreateModel,
    RegisterVersion,
    Approve,
    Promote,
    Revoke,
    Quarantine,
    LiftQuarantine,
    SetAlias,
    DeleteAlias,
    Resolve,
    ReportStartup,
    ReadEvents,
    /// List published signing keys (with their backend references).
    ReadKeys,
    /// Publish a new signing key (rotation) or retire one.
    AdministerKeys,
    /// Install a policy snapshot.
    AdministerPolicy,
    /// Read decision logs.
    ReadDecisions,
    /// Attach scanner findings to a version.
    RecordFindings,
    /// Grant a waiver for a finding.
    GrantWaiver,
    /// Re-deliver an event a webhook gave up on.
    RedeliverEvents,
    /// Read a blob the download gate refuses (bytes of revoked, quarantined or not-yet-allowed
    /// versions), for an investigation: every such read is a logged decision of its own.
    ForensicRead,
    /// Re-hash stored blobs against their digests and report the ones that no longer match.
    ScrubBlobs,
    /// See the registry's replicas, its leader and their lag (`GET /v1/cluster`).
    ReadCluster,
    /// Open an incident record (`POST /v1/incidents`).
    OpenIncident,
    /// Close an incident (the policy names who may).
    CloseIncident,
    /// Set or remove a tag or a description on a model or a version (people's notes, never
    /// governance inputs; each change is an `annotated` event).
    Annotate,
    /// Retire a never-served Candidate when a client asks to delete it (MLflow's
    /// `delete_model_version`): granted by no built-in role; a site policy may grant it.
    DeleteVersion,
}

impl Action {
    pub const ALL: [Action; 29] = [
        Action::Read,
        Action::UploadBlob,
        Action::DownloadBlob,
        Action::CreateModel,
        Action::RegisterVersion,
        Action::Approve,
        Action::Promote,
        Action::Revoke,
        Action::Quarantine,
        Action::LiftQuarantine,
        Action::SetAlias,
        Action::DeleteAlias,
        Action::Resolve,
        Action::ReportStartup,
        Action::ReadEvents,
        Action::ReadKeys,
        Action::AdministerKeys,
        Action::AdministerPolicy,
        Action::ReadDecisions,
        Action::RecordFindings,
        Action::GrantWaiver,
        Action::RedeliverEvents,
        Action::ForensicRead,
        Action::ScrubBlobs,
        Action::ReadCluster,
        Action::OpenIncident,
        Action::CloseIncident,
        Action::Annotate,
        Action::DeleteVersion,
    ];

    /// The action's name in policy inputs (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::UploadBlob => "upload_blob",
            Action::DownloadBlob => "download_blob",
            Action::CreateModel => "create_model",
            Action::RegisterVersion => "register_version",
            Action::Approve => "approve",
            Action::Promote => "promote",
            Action::Revoke => "revoke",
            Action::Quarantine => "quarantine",
            Action::LiftQuarantine => "lift_quarantine",
            Action::SetAlias => "set_alias",
            Action::DeleteAlias => "delete_alias",
            Action::Resolve => "resolve",
            Action::ReportStartup => "report_startup",
            Action::ReadEvents => "read_events",
            Action::ReadKeys => "read_keys",
            Action::AdministerKeys => "administer_keys",
            Action::AdministerPolicy => "administer_policy",
            Action::ReadDecisions => "read_decisions",
            Action::RecordFindings => "record_findings",
            Action::GrantWaiver => "grant_waiver",
            Action::RedeliverEvents => "redeliver_events",
            Action::ForensicRead => "forensic_read",
            Action::ScrubBlobs => "scrub_blobs",
            Action::ReadCluster => "read_cluster",
            Action::OpenIncident => "open_incident",
            Action::CloseIncident => "close_incident",
            Action::Annotate => "annotate",
            Action::DeleteVersion => "delete_version",
        }
    }
}

/// The built-in role table. Closed by default: an action a role is not listed for is refused.
/// Separation of duties: only key-admins publish or retire keys (not even admins), and
/// key-admins can do nothing else.
pub fn role_allows(role: Role, action: Action) -> bool {
    use Action as A;
    use Role as R;
    match role {
        R::Admin => !matches!(action, A::AdministerKeys | A::AdministerPolicy | A::ForensicRead | A::DeleteVersion),
        R::Viewer => matches!(action, A::Read | A::Resolve | A::ReadEvents),
        R::Auditor => matches!(action, A::Read | A::ReadEvents | A::ReadKeys | A::ReadDecisions | A::ForensicRead),
        R::PolicyAdmin => matches!(action, A::Read | A::AdministerPolicy | A::ReadDecisions | A::ReadEvents),
        R::Publisher => matches!(
            action,
            A::Read
                | A::UploadBlob
                | A::DownloadBlob
                | A::CreateModel
                | A::RegisterVersion
                | A::ReadEvents
                | A::RecordFindings
                | A::Annotate
        ),
        R::Approver => matches!(action, A::Read | A::Approve | A::ReadEvents | A::Resolve),
        R::ReleaseManager => matches!(
            action,
            A::Read
                | A::Approve
                | A::Promote
                | A::Revoke
                | A::Quarantine
                | A::LiftQuarantine
                | A::SetAlias
                | A::DeleteAlias
                | A::Resolve
                | A::ReadEvents
                | A::DownloadBlob
                | A::ReadDecisions
                | A::RecordFindings
                | A::OpenIncident
                | A::CloseIncident
                | A::Annotate
        ),
        R::SecurityOfficer => matches!(
            action,
            A::Read
                | A::Approve
                | A::Revoke
                | A::Quarantine
                | A::LiftQuarantine
                | A::ReadEvents
                | A::Resolve
                | A::ReadDecisions
                | A::RecordFindings
                | A::GrantWaiver
                | A::ForensicRead
                | A::ScrubBlobs
                | A::OpenIncident
                | A::CloseIncident
        ),
        R::Serving => matches!(action, A::Read | A::Resolve | A::DownloadBlob | A::ReportStartup | A::ReadEvents),
        R::KeyAdmin => matches!(action, A::ReadKeys | A::AdministerKeys),
    }
}

/// Roles whose approval counts toward four-eyes. The publisher's own approval never counts.
pub fn role_can_approve(role: Role) -> bool {
    matches!(role, Role::Approver | Role::ReleaseManager | Role::SecurityOfficer | Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
    }

    #[test]
    fn separation_of_duties() {
        for a in Action::ALL {
            let key_action = matches!(a, Action::ReadKeys | Action::AdministerKeys);
            assert_eq!(role_allows(Role::KeyAdmin, a), key_action, "key-admin and {a:?}");
        }
        for r in Role::ALL {
            assert_eq!(role_allows(r, Action::AdministerKeys), r == Role::KeyAdmin, "{r:?} administers keys");
        }
        assert!(!role_allows(Role::Publisher, Action::Promote));
        assert!(!role_allows(Role::Publisher, Action::Approve));
        assert!(!role_allows(Role::Serving, Action::RegisterVersion));
        assert!(!role_allows(Role::Viewer, Action::DownloadBlob));
    }
}
