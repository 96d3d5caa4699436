//! The event schema (seed §4.1, SPEC §8) and its CloudEvents 1.0 envelope.
//!
//! The payload keeps the seed's field names exactly (`event, ts, model, version, from, to,
//! artifact_digest, policy_digest, tenant, domain, env, chg_id, approvals`), plus `reason`,
//! `inc_id`, `alias` and `seq` where they apply. It is wrapped as a structured-mode CloudEvent
//! whose `type` is `io.fulcrum.registry.<event>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::lifecycle::{Actor, AliasCause, Approval, ApprovalKind, Effect, Env, Hold, ModelState, VersionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ReleasePublished,
    Promotion,
    Revocation,
    Quarantined,
    QuarantineReleased,
    AliasUpdated,
    StartupPermit,
    StartupDeny,
    PolicyChanged,
    Approval,
    KeyRotated,
    KeyRetired,
    /// A serving agent's runtime step (quiesce, purge, reload, …), for the T0→T+N timeline.
    AgentStep,
    /// A serving gateway's per-version traffic figures over a window.
    ServingStats,
    /// A serving gateway's inference inputs over a window, binned against the version's
    /// reference profile (drift).
    ServingInputs,
    /// A feature's drift index passed the policy's alert threshold (leader's watcher).
    DriftDetected,
    /// A feature that had drifted is back under the policy's warn threshold.
    DriftCleared,
    /// Findings (CVEs, scanner results) recorded against a version.
    FindingsRecorded,
    /// A waiver granted for a finding (until it expires).
    WaiverGranted,
    /// A serving version's `revalidate_by` date is within the policy's notice period.
    RevalidationDue,
    /// A serving version's `revalidate_by` date has passed (promotions and alias moves onto it
    /// are refused).
    RevalidationOverdue,
    /// Bytes stored under a digest no longer hash to it (found while serving or scrubbing).
    BlobCorrupt,
    /// Bytes the download gate refuses were read for an investigation (names the incident).
    ForensicRead,
    /// An incident record was opened (by a person, a runbook, a revocation or a watcher).
    IncidentOpened,
    /// An incident was closed, with its resolution.
    IncidentClosed,
    /// A tag or description was set on (or a tag removed from) a model or a version: people's
    /// notes, never governance inputs.
    Annotated,
    /// A key-admin imported a Sigstore trusted root (`trusted_root.json`) for keyless signatures;
    /// a new trust bundle carries it.
    TrustRootImported,
}

impl EventKind {
    pub const ALL: [EventKind; 27] = [
        EventKind::ReleasePublished,
        EventKind::Promotion,
        EventKind::Revocation,
        EventKind::Quarantined,
        EventKind::QuarantineReleased,
        EventKind::AliasUpdated,
        EventKind::StartupPermit,
        EventKind::StartupDeny,
        EventKind::PolicyChanged,
        EventKind::Approval,
        EventKind::KeyRotated,
        EventKind::KeyRetired,
        EventKind::AgentStep,
        EventKind::ServingStats,
        EventKind::ServingInputs,
        EventKind::DriftDetected,
        EventKind::DriftCleared,
        EventKind::FindingsRecorded,
        EventKind::WaiverGranted,
        EventKind::RevalidationDue,
        EventKind::RevalidationOverdue,
        EventKind::BlobCorrupt,
        EventKind::ForensicRead,
        EventKind::IncidentOpened,
        EventKind::IncidentClosed,
        EventKind::Annotated,
        EventKind::TrustRootImported,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ReleasePublished => "release_published",
            EventKind::Promotion => "promotion",
            EventKind::Revocation => "revocation",
            EventKind::Quarantined => "quarantined",
            EventKind::QuarantineReleased => "quarantine_released",
            EventKind::AliasUpdated => "alias_updated",
            EventKind::StartupPermit => "startup_permit",
            EventKind::StartupDeny => "startup_deny",
            EventKind::PolicyChanged => "policy_changed",
            EventKind::Approval => "approval",
            EventKind::KeyRotated => "key_rotated",
            EventKind::KeyRetired => "key_retired",
            EventKind::AgentStep => "agent_step",
            EventKind::ServingStats => "serving_stats",
            EventKind::ServingInputs => "serving_inputs",
            EventKind::DriftDetected => "drift_detected",
            EventKind::DriftCleared => "drift_cleared",
            EventKind::FindingsRecorded => "findings_recorded",
            EventKind::WaiverGranted => "waiver_granted",
            EventKind::RevalidationDue => "revalidation_due",
            EventKind::RevalidationOverdue => "revalidation_overdue",
            EventKind::BlobCorrupt => "blob_corrupt",
            EventKind::ForensicRead => "forensic_read",
            EventKind::IncidentOpened => "incident_opened",
            EventKind::IncidentClosed => "incident_closed",
            EventKind::Annotated => "annotated",
            EventKind::TrustRootImported => "trust_root_imported",
        }
    }
    pub fn cloudevent_type(self) -> String {
        format!("io.fulcrum.registry.{}", self.as_str())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// The seed's event schema. Field order is the seed's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPayload {
    pub event: EventKind,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    pub model: String,
    pub version: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub artifact_digest: Option<String>,
    pub policy_digest: Option<String>,
    pub tenant: String,
    pub domain: String,
    pub env: Option<String>,
    pub chg_id: Option<String>,
    pub approvals: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Who caused it (subject), for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `agent_step`: the step's own clock time at the agent (RFC 3339), which orders a timeline
    /// even when reports arrive late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// `agent_step`: what happened, in words (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `serving_stats`: the figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ServingStats>,
    /// `serving_inputs`: the binned inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<ServingInputs>,
    /// `drift_detected` / `drift_cleared`: which feature, how far, against which thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftNote>,
    /// `incident_opened`: the incident's severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// A drift crossing: a feature's index over the window and the thresholds it was read against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DriftNote {
    pub feature: String,
    pub psi: f64,
    /// Inputs binned for the feature over the window.
    pub values: u64,
    pub warn: f64,
    pub alert: f64,
}

/// A gateway's inference inputs for one version over one window, binned against the version's
/// reference profile (`crate::drift`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServingInputs {
    /// Digest of the reference profile the inputs were binned against (the version's own).
    pub profile: String,
    pub window_s: u32,
    /// Per feature, in the profile's order: counts per bin, and values that could not be binned.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub tally: crate::drift::Tally,
}

/// Upper bounds (µs) of the latency histogram buckets a gateway reports; one more bucket counts
/// everything slower. Fixed, so counts from every gateway and window add up.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// The `q` quantile of a latency histogram (bucket counts), in seconds, as Prometheus'
/// `histogram_quantile` estimates it (linear within the bucket); `None` without observations.
#[allow(clippy::cast_precision_loss)]
pub fn latency_quantile(buckets: &[u64; 15], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        if *n > 0 && (seen + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS_US[i - 1] as f64 / 1e6 };
            // The last bucket has no upper bound: its lower bound is the estimate.
            let Some(upper) = LATENCY_BUCKETS_US.get(i).map(|u| *u as f64 / 1e6) else { return Some(lower) };
            return Some(lower + (upper - lower) * ((rank - seen as f64) / *n as f64));
        }
        seen += n;
    }
    None
}

/// Per-version traffic through a gateway over one reporting window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServingStats {
    pub window_s: u32,
    pub requests: u64,
    /// Upstream failures and 5xx answers.
    pub errors: u64,
    /// Requests the gateway refused itself (guardrails, quiesced).
    pub refused: u64,
    /// Latency through the gateway, microseconds (this window, this gateway: for reading, not
    /// for adding up — the histogram below is what aggregates).
    pub p50_us: u64,
    pub p99_us: u64,
    /// Answered requests per latency bucket ([`LATENCY_BUCKETS_US`], then everything slower):
    /// counts, not cumulative, so windows and gateways add up.
    #[serde(default)]
    pub latency_buckets: [u64; 15],
    /// Sum of those requests' latencies, microseconds.
    #[serde(default)]
    pub latency_sum_us: u64,
}

impl ServingStats {
    /// The bucket a latency of `us` microseconds falls in.
    pub fn bucket_of(us: u64) -> usize {
        LATENCY_BUCKETS_US.partition_point(|b| *b < us)
    }

    /// Whether the figures are consistent (what a registry accepts).
    pub fn is_consistent(&self) -> bool {
        self.window_s > 0
            && self.errors <= self.requests
            && self.p50_us <= self.p99_us
            && self.latency_buckets.iter().try_fold(0u64, |a, b| a.checked_add(*b)).is_some_and(|n| n <= self.requests)
    }
}

impl EventPayload {
    pub fn new(event: EventKind, ts: OffsetDateTime, tenant: &str, domain: &str, model: &str) -> Self {
        Self {
            event,
            ts,
            model: model.to_owned(),
            version: None,
            from: None,
            to: None,
            artifact_digest: None,
            policy_digest: None,
            tenant: tenant.to_owned(),
            domain: domain.to_owned(),
            env: None,
            chg_id: None,
            approvals: vec![],
            reason: None,
            inc_id: None,
            alias: None,
            seq: None,
            actor: None,
            observed_at: None,
            detail: None,
            stats: None,
            inputs: None,
            drift: None,
            severity: None,
        }
    }
}

/// Context carried into the events and records of a change.
#[derive(Debug, Clone, Default)]
pub struct GovernCtx {
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    pub reason: Option<String>,
    pub comment: Option<String>,
    pub policy_digest: Option<crate::Digest>,
    /// A preview: every lifecycle rule and the policy gate are evaluated on the current state,
    /// and nothing is changed, appended or logged (the console shows the gate's decision before
    /// the person confirms).
    pub dry_run: bool,
}

/// The names a model's events carry.
#[derive(Debug, Clone, Copy)]
pub struct ModelNames<'a> {
    pub tenant: &'a str,
    pub domain: &'a str,
    pub name: &'a str,
}

/// The label under which an approval appears in events: `role:subject` (seed §4.1).
fn approval_tag(a: &Approval) -> String {
    format!("{}:{}", a.role, a.subject)
}

/// The event that records one effect of a governance change (effects come from
/// [`ModelState::apply`]; `state` is the model's state *after* the change; `label` names a version
/// id). Every storage backend writes exactly this, in the change's transaction, and
/// [`crate::projection`] folds it back into the same state.
pub fn lifecycle_event(
    state: &ModelState,
    model: ModelNames<'_>,
    fx: &Effect,
    actor: &Actor,
    ctx: &GovernCtx,
    now: OffsetDateTime,
    label: &dyn Fn(VersionId) -> Option<String>,
) -> EventPayload {
    let vid = match fx {
        Effect::Approved { version, .. }
        | Effect::StageChanged { version, .. }
        | Effect::HoldChanged { version, .. } => Some(*version),
        Effect::AliasMoved { to, from, .. } => to.or(*from),
    };
    let kind = match fx {
        Effect::Approved { .. } => EventKind::Approval,
        Effect::StageChanged { .. } => EventKind::Promotion,
        Effect::HoldChanged { to: Hold::Revoked, .. } => EventKind::Revocation,
        Effect::HoldChanged { to: Hold::Quarantined, .. } => EventKind::Quarantined,
        Effect::HoldChanged { .. } => EventKind::QuarantineReleased,
        Effect::AliasMoved { .. } => EventKind::AliasUpdated,
    };
    let mut ev = EventPayload::new(kind, now, model.tenant, model.domain, model.name);
    let v = vid.and_then(|id| state.version(id));
    if let Some(v) = v {
        ev.version = Some(v.label.to_string());
        ev.artifact_digest = Some(v.artifact_digest.to_string());
        ev.seq = Some(v.seq);
        ev.approvals = v.approvals.iter().filter(|a| a.kind == ApprovalKind::Promotion).map(approval_tag).collect();
    }
    ev.policy_digest = ctx.policy_digest.map(|d| d.to_string());
    ev.chg_id.clone_from(&ctx.chg_id);
    ev.inc_id.clone_from(&ctx.inc_id);
    ev.reason.clone_from(&ctx.reason);
    ev.actor = Some(actor.subject.clone());
    match fx {
        Effect::Approved { approval, .. } => {
            ev.reason.clone_from(&ctx.comment);
            if approval.kind == ApprovalKind::Lift {
                ev.approvals = v
                    .map(|v| {
                        v.approvals
                            .iter()
                            .filter(|a| a.kind == ApprovalKind::Lift && a.epoch == approval.epoch)
                            .map(approval_tag)
                            .collect()
                    })
                    .unwrap_or_default();
            }
        }
        Effect::StageChanged { from, to, .. } => {
            ev.from = Some(from.as_str().into());
            ev.to = Some(to.as_str().into());
            ev.env = Some(Env::of_stage(*to).as_str().into());
        }
        Effect::HoldChanged { from, to, .. } => {
            ev.from = Some(from.as_str().into());
            ev.to = Some(to.as_str().into());
        }
        Effect::AliasMoved { alias, env, from, to, entry } => {
            ev.alias = Some(alias.to_string());
            ev.env = Some(env.as_str().into());
            ev.from = from.and_then(label);
            ev.to = to.and_then(label);
            ev.version = to.and_then(label);
            if to.is_none() {
                ev.artifact_digest = None;
                ev.seq = None;
                ev.approvals = vec![];
            }
            ev.reason = Some(match (&ctx.reason, entry.cause) {
                (Some(r), AliasCause::Rollback | AliasCause::Cleared) => format!("{}: {r}", entry.cause.as_str()),
                _ => entry.cause.as_str().to_owned(),
            });
        }
    }
    ev
}

/// A structured-mode CloudEvent 1.0 carrying an [`EventPayload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub datacontenttype: String,
    /// Position in the registry's event log (CloudEvents `sequence` extension; a decimal string).
    pub sequence: String,
    /// `tenant/model`: consumers partition and order by it.
    pub partitionkey: String,
    pub data: EventPayload,
}

pub const EVENT_SOURCE: &str = "urn:fulcrum:registry";

impl CloudEvent {
    pub fn wrap(id: String, sequence: i64, data: EventPayload) -> Self {
        let subject = match &data.version {
            Some(v) => format!("{}/{}@{}", data.tenant, data.model, v),
            None => format!("{}/{}", data.tenant, data.model),
        };
        Self {
            specversion: "1.0".into(),
            id,
            source: EVENT_SOURCE.into(),
            ty: data.event.cloudevent_type(),
            subject,
            time: data.ts,
            datacontenttype: "application/json".into(),
            sequence: sequence.to_string(),
            partitionkey: format!("{}/{}", data.tenant, data.model),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_field_names_and_order() {
        let mut p = EventPayload::new(
            EventKind::Promotion,
            time::macros::datetime!(2025-11-12 22:10 UTC),
            "banking",
            "risk",
            "risk-default",
        );
        p.version = Some("v2.3.0".into());
        p.from = Some("Staging".into());
        p.to = Some("Approved".into());
        p.env = Some("prod".into());
        p.chg_id = Some("CHG-10234".into());
        p.approvals = vec!["security:maria.s".into(), "product:raphael.f".into()];
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"event":"promotion","ts":"2025-11-12T22:10:00Z","model":"risk-default","version":"v2.3.0","from":"Staging","to":"Approved","artifact_digest":null,"policy_digest":null,"tenant":"banking","domain":"risk","env":"prod","chg_id":"CHG-10234","approvals":["security:maria.s","product:raphael.f"]}"#
        );
        let ce = CloudEvent::wrap("id-1".into(), 7, p);
        let v: serde_json::Value = serde_json::to_value(&ce).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.fulcrum.registry.promotion");
        assert_eq!(v["sequence"], "7");
        assert_eq!(v["subject"], "banking/risk-default@v2.3.0");
    }

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
        }
    }
}
