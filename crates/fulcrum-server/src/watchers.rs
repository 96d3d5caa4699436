//! Watchers run by the leader (SPEC §12): they read the per-version signals every replica keeps
//! ([`crate::signals`]) and raise events when the policy's thresholds are crossed. Whether an
//! event was already raised is read from the log itself (every replica follows it), so a new
//! leader neither repeats nor forgets one.
//!
//! **Drift.** A feature whose index over the window reaches the policy's `alert` threshold
//! (with at least `min_values` inputs binned) raises `drift_detected`; once it is back under
//! `warn`, `drift_cleared` (the gap between the two keeps a feature hovering at the threshold
//! from raising an event every few seconds). Thresholds: `data.fulcrum.drift` in the policy in
//! force (shipped: warn 0.1, alert 0.25, min_values 100).

use std::time::Duration;

use fulcrum_core::event::{DriftNote, EventKind, EventPayload};

use crate::AppState;

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

/// Look every [`DRIFT_EVERY`] until aborted (the leader's job).
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(DRIFT_EVERY).await;
            if let Err(e) = drift_once(&state).await {
                tracing::warn!(error = %e, "the drift watcher could not look; trying again");
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
