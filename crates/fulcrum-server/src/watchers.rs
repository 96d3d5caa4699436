//! Watchers run by the leader (SPEC §12): they read the per-version signals every replica keeps
//! ([`crate::signals`]) and raise events when the policy's thresholds are crossed. Whether an
//! event was already raised is read from the log itself (every replica follows it), so a new
//! leader neither repeats nor forgets one.
//!
//! **Findings.** Every serving Approved version with open critical or high findings is put to
//! the policy (`fulcrum.watch`: may it keep serving, given its findings and the waivers that
//! cover them?). A deny naming open findings quarantines it under a new incident (`INC-W-…`, an
//! incident record opened with the quarantine, by `fulcrum-watcher`, severity high),
//! through the same governance path as a security officer's quarantine: its aliases roll back and
//! guards quiesce. The decision is logged (and ledgered) like every policy decision. Because the
//! check runs on every look, a waiver that expires brings it into force the next time. Only
//! `open_finding:` reasons act: a policy that does not define `fulcrum.watch` quarantines
//! nothing (its `policy_undefined` is logged).
//!
//! **Revalidation.** Every 5 s: an Approved version (not revoked) whose `revalidate_by` is within
//! the policy's notice period (`data.fulcrum.revalidation.notice_days`, shipped 30) raises
//! `revalidation_due` once; past the date, `revalidation_overdue` once — and from then on the
//! policy refuses promotions and alias moves onto it (`revalidation_overdue`, in the promotion
//! and environment rules).
//!
//! **Drift.** A feature whose index over the window reaches the policy's `alert` threshold
//! (with at least `min_values` inputs binned) raises `drift_detected`; once it is back under
//! `warn`, `drift_cleared` (the gap between the two keeps a feature hovering at the threshold
//! from raising an event every few seconds). Thresholds: `data.fulcrum.drift` in the policy in
//! force (shipped: warn 0.1, alert 0.25, min_values 100).

use std::time::Duration;

use fulcrum_core::event::{DriftNote, EventKind, EventPayload};

use crate::AppState;

/// How often the findings watcher looks (one indexed query: versions with open blocking
/// findings).
pub const FINDINGS_EVERY: Duration = Duration::from_millis(500);
/// How often the drift watcher looks.
pub const DRIFT_EVERY: Duration = Duration::from_secs(2);

/// The policy's drift thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warn: f64,
    pub alert: f64,
    /// Inputs a feature needs in the window before its index counts.
    pub min_values: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { warn: 0.1, alert: 0.25, min_values: 100 }
    }
}

impl Thresholds {
    /// `data.fulcrum.drift` of the policy in force (missing values: the shipped defaults).
    pub fn of(current: &crate::policy::Current) -> Self {
        let d = Self::default();
        let v: serde_json::Value = serde_json::from_slice(&current.snapshot).unwrap_or_default();
        let t = &v["data"]["fulcrum"]["drift"];
        let warn = t["warn"].as_f64().filter(|x| x.is_finite() && *x > 0.0).unwrap_or(d.warn);
        let alert = t["alert"].as_f64().filter(|x| x.is_finite() && *x >= warn).unwrap_or(d.alert.max(warn));
        Self { warn, alert, min_values: t["min_values"].as_u64().unwrap_or(d.min_values) }
    }
}

/// One look: raise the drift events the signals call for; how many were raised.
///
/// # Errors
/// Store failures (the next look tries again).
pub async fn drift_once(state: &AppState) -> Result<usize, fulcrum_store::StoreError> {
    let now = state.clock.now();
    let th = Thresholds::of(&state.policies.current());
    let mut raised = 0;
    for (key, features) in state.signals.drift(now) {
        let (tenant, model, version, alias, env) = &key;
        for f in features {
            let Some(psi) = f.psi.filter(|_| f.values >= th.min_values) else { continue };
            let drifted = state.signals.has_drifted(&key, &f.feature);
            let kind = match (drifted, psi >= th.alert, psi < th.warn) {
                (false, true, _) => EventKind::DriftDetected,
                (true, _, true) => EventKind::DriftCleared,
                _ => continue,
            };
            let Some(m) = state.store.get_model(tenant, model).await? else { continue };
            let mut ev = EventPayload::new(kind, now, tenant, &m.domain, model);
            ev.version = Some(version.clone());
            ev.alias = (!alias.is_empty()).then(|| alias.clone());
            ev.env = (!env.is_empty()).then(|| env.clone());
            ev.reason = Some(format!("{}: psi {psi:.3}", f.feature));
            ev.drift =
                Some(DriftNote { feature: f.feature.clone(), psi, values: f.values, warn: th.warn, alert: th.alert });
            state.store.record_event(ev).await?;
            raised += 1;
        }
    }
    if raised > 0 {
        state.notify_events();
    }
    Ok(raised)
}

/// How often the revalidation watcher looks.
pub const REVALIDATION_EVERY: Duration = Duration::from_secs(5);

/// The policy's notice period before `revalidate_by` (`data.fulcrum.revalidation.notice_days`).
pub fn notice(current: &crate::policy::Current) -> time::Duration {
    let v: serde_json::Value = serde_json::from_slice(&current.snapshot).unwrap_or_default();
    let days = v["data"]["fulcrum"]["revalidation"]["notice_days"].as_u64().filter(|d| *d <= 3650).unwrap_or(30);
    time::Duration::days(i64::try_from(days).unwrap_or(30))
}

/// One look at revalidation dates: raise what is due or overdue and was not raised yet.
///
/// # Errors
/// Store failures (the next look tries again).
pub async fn revalidation_once(state: &AppState) -> Result<usize, fulcrum_store::StoreError> {
    let now = state.clock.now();
    let notice = notice(&state.policies.current());
    let mut raised = 0;
    let within = state.store.revalidations_before(now + notice).await?;
    state.signals.set_revalidation(
        within.iter().map(|(t, m, _, v, at)| (t.clone(), m.clone(), v.clone(), (*at - now).whole_seconds())).collect(),
    );
    state.signals.set_findings(state.store.open_findings_of_serving().await?);
    for (tenant, model, domain, version, at) in within {
        let kind = if at <= now { EventKind::RevalidationOverdue } else { EventKind::RevalidationDue };
        if state.signals.revalidation_raised(kind.as_str(), &tenant, &model, &version) {
            continue;
        }
        let mut ev = EventPayload::new(kind, now, &tenant, &domain, &model);
        ev.version = Some(version.clone());
        ev.reason = Some(format!(
            "revalidate_by {}",
            at.format(&time::format_description::well_known::Rfc3339).expect("formats")
        ));
        state.store.record_event(ev).await?;
        raised += 1;
    }
    if raised > 0 {
        state.notify_events();
    }
    Ok(raised)
}

/// One look at findings: quarantine what the policy says may not keep serving; how many.
///
/// # Errors
/// Store failures (the next look tries again).
pub async fn findings_once(state: &AppState) -> Result<usize, fulcrum_store::StoreError> {
    use fulcrum_store::{Govern, GovernCtx};
    let mut quarantined = 0;
    for (tenant, model_id, model, version_id, label) in state.store.serving_versions_with_blocking_findings().await? {
        let now = state.clock.now();
        let findings = state.store.findings(version_id).await?;
        let waivers = state.store.waivers(model_id, Some(version_id)).await?;
        let ns = |t: &str| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_or(0, |t| t.unix_timestamp_nanos())
        };
        let input = serde_json::json!({
            "now_ns": now.unix_timestamp_nanos(),
            "version": {"stage": "Approved", "hold": "none"},
            "findings": findings.iter().map(|f| serde_json::json!({"id": f.id, "severity": f.severity.as_str(), "status": f.status})).collect::<Vec<_>>(),
            "waivers": waivers.iter().map(|w| serde_json::json!({"id": w.id, "finding": w.finding, "expires_ns": ns(&w.expires_at)})).collect::<Vec<_>>(),
        });
        let policy = state.policies.current();
        let inc_id = format!("INC-W-{}", &uuid::Uuid::now_v7().simple().to_string()[..12]);
        let ctx = GovernCtx { inc_id: Some(inc_id.clone()), ..Default::default() };
        let (outcome, row) =
            crate::gates::decide(state, &policy, "fulcrum.watch", input, &tenant, Some(&model), Some(&label), &ctx);
        let open: Vec<&str> = outcome.deny.iter().filter_map(|r| r.strip_prefix("open_finding:")).collect();
        if open.is_empty() {
            if !outcome.allow {
                tracing::warn!(%model, version = %label, reasons = ?outcome.deny, "the findings watcher's policy did not decide; nothing done");
                state.store.record_decision(&row).await?;
            }
            continue;
        }
        state.store.record_decision(&row).await?;
        let actor = fulcrum_core::lifecycle::Actor {
            subject: "fulcrum-watcher".into(),
            role: fulcrum_core::identity::Role::SecurityOfficer,
        };
        let ctx = GovernCtx { reason: Some(format!("open findings without a waiver: {}", open.join(", "))), ..ctx };
        let cmd = Govern::Quarantine { version: label.clone() };
        let done = state
            .commit(
                async |at| state.store.govern_gated(&tenant, &model, &actor, cmd, &ctx, None, at).await,
                |out, at| state.catalog.apply(out.model_id, &out.effects, &out.ledger, at),
            )
            .await;
        match done {
            Ok(_) => {
                tracing::warn!(%model, version = %label, %inc_id, findings = ?open, "quarantined: open findings without a waiver");
                quarantined += 1;
            }
            // Changed meanwhile (quarantined or revoked by someone): the next look sees it.
            Err(fulcrum_store::StoreError::Refused(r)) => {
                tracing::info!(%model, version = %label, refusal = %r, "the findings watcher's quarantine was refused");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(quarantined)
}

/// Look every [`FINDINGS_EVERY`] (findings) and [`DRIFT_EVERY`] (drift) until aborted (the
/// leader's job).
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_drift = std::time::Instant::now();
        let mut last_revalidation: Option<std::time::Instant> = None;
        loop {
            if last_revalidation.is_none_or(|t| t.elapsed() >= REVALIDATION_EVERY) {
                last_revalidation = Some(std::time::Instant::now());
                if let Err(e) = revalidation_once(&state).await {
                    tracing::warn!(error = %e, "the revalidation watcher could not look; trying again");
                }
            }
            tokio::time::sleep(FINDINGS_EVERY).await;
            if last_drift.elapsed() >= DRIFT_EVERY {
                last_drift = std::time::Instant::now();
                if let Err(e) = drift_once(&state).await {
                    tracing::warn!(error = %e, "the drift watcher could not look; trying again");
                }
            }
            if let Err(e) = findings_once(&state).await {
                tracing::warn!(error = %e, "the findings watcher could not look; trying again");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_come_from_the_policy_or_the_shipped_defaults() {
        let cur = |data: serde_json::Value| {
            let snapshot = fulcrum_policy::Snapshot::new(
                fulcrum_policy::DEFAULT_MODULES.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect(),
                data,
            )
            .unwrap();
            crate::policy::Current {
                policy: fulcrum_policy::Policy::compile(&snapshot).unwrap(),
                digest: snapshot.digest().parse().unwrap(),
                snapshot: snapshot.canonical_bytes(),
                envelope: vec![],
            }
        };
        let mut data: serde_json::Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
        assert_eq!(Thresholds::of(&cur(data.clone())), Thresholds::default());
        data["fulcrum"]["drift"] = serde_json::json!({"warn": 0.2, "alert": 0.5, "min_values": 10});
        assert_eq!(Thresholds::of(&cur(data.clone())), Thresholds { warn: 0.2, alert: 0.5, min_values: 10 });
        data["fulcrum"]["drift"] = serde_json::json!({"warn": -1, "alert": "x"});
        assert_eq!(Thresholds::of(&cur(data)), Thresholds::default());
    }
}
