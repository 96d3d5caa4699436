//! An incident's timeline T0→T+N (seed §5.2.3), folded from the event log: the revocation or
//! quarantine that started it, then per serving replica its quiesce, purge (or the purge's
//! error), unload, the reload of the rolled-back version through the full check, and the
//! **post-backout validation** — that version passed its startup check *and* served traffic
//! successfully again (a gateway window with answered requests). Replicas that served the
//! withdrawn version before T0 but said nothing since are named as missing.
//!
//! Pure: the caller reads the events (the incident's own, and the models' serving events from
//! shortly before T0 on) and passes them in order.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::{EventKind, EventPayload};

/// One event with its position in the log.
#[derive(Debug, Clone)]
pub struct Logged {
    pub seq: i64,
    pub event: EventPayload,
}

/// The timeline of one incident.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timeline {
    pub inc_id: String,
    /// When the first withdrawal (revocation or quarantine) carrying the incident id committed;
    /// `None` while the incident has withdrawn nothing.
    pub t0: Option<String>,
    /// The withdrawn versions (`model@version`).
    pub withdrawn: Vec<String>,
    /// Every step in order of its delay from T0.
    pub steps: Vec<Step>,
    /// Per replica (an agent, `subject/name`): what it did and when.
    pub replicas: Vec<Replica>,
    /// Replicas that served a withdrawn version before T0 and reported no quiesce since.
    pub missing: Vec<String>,
    /// Every replica that had to act did, and every one validated its rolled-back version.
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub seq: i64,
    /// When it happened: the agent's own clock for its steps, the registry's for its events.
    pub at: String,
    /// Milliseconds after T0 (negative for what came before, such as the incident's opening).
    pub delay_ms: i64,
    /// `revocation`, `quarantined`, `alias_updated`, `incident_opened`, `incident_closed`, or the
    /// agent's step (`quiesce`, `purge`, `purge_failed`, `unload`, `reload`, `permit`, `deny`,
    /// `fallback`, …), or `validated` (the first successful traffic after the reload).
    pub step: String,
    /// The replica (agent) for serving steps; the actor for registry events.
    pub by: Option<String>,
    pub model: String,
    pub version: Option<String>,
    pub detail: Option<String>,
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
}

/// What one replica did after T0.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Replica {
    pub name: String,
    /// It served a withdrawn version before T0 (so it had to act).
    pub expected: bool,
    pub quiesce_ms: Option<i64>,
    pub purge_ms: Option<i64>,
    /// The purge's error, when it failed (files left on disk).
    pub purge_error: Option<String>,
    pub unload_ms: Option<i64>,
    /// The version it loaded again after the withdrawal, and when it passed the full check.
    pub reloaded: Option<String>,
    pub reload_ms: Option<i64>,
    /// The reloaded version's startup check was refused.
    pub reload_denied: Option<String>,
    /// First gateway window after the reload with answered requests: when it was reported, and
    /// its figures.
    pub validated_ms: Option<i64>,
    pub validated_requests: Option<u64>,
    pub validated_errors: Option<u64>,
    /// `purge_failed` (whatever followed: the withdrawn files may remain), `validated`,
    /// `reloaded` (not yet validated by traffic), `reload_denied`, `quiesced`, or `silent`.
    pub status: String,
}

fn at(ev: &EventPayload) -> OffsetDateTime {
    ev.observed_at.as_deref().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()).unwrap_or(ev.ts)
}

fn ms(from: OffsetDateTime, to: OffsetDateTime) -> i64 {
    i64::try_from((to - from).whole_milliseconds()).unwrap_or(i64::MAX)
}

fn is_serving(k: EventKind) -> bool {
    matches!(k, EventKind::AgentStep | EventKind::StartupPermit | EventKind::StartupDeny | EventKind::ServingStats)
}

fn is_withdrawal(k: EventKind) -> bool {
    matches!(k, EventKind::Revocation | EventKind::Quarantined)
}

/// Fold `incident` (every event carrying the incident id, in log order) and `serving` (the
/// incident's models' `agent_step`, `startup_permit`, `startup_deny` and `serving_stats`
/// events, in log order, from before T0 on) into the timeline.
pub fn timeline(inc_id: &str, incident: &[Logged], serving: &[Logged]) -> Timeline {
    let first = incident.iter().find(|l| is_withdrawal(l.event.event));
    let Some(first) = first else {
        let steps = incident.iter().map(|l| registry_step(l, l.event.ts)).collect();
        return Timeline {
            inc_id: inc_id.to_owned(),
            t0: None,
            withdrawn: vec![],
            steps,
            replicas: vec![],
            missing: vec![],
            complete: false,
        };
    };
    let t0 = first.event.ts;
    let t0_seq = first.seq;
    let withdrawn: BTreeSet<(String, String)> = incident
        .iter()
        .filter(|l| is_withdrawal(l.event.event))
        .filter_map(|l| Some((l.event.model.clone(), l.event.version.clone()?)))
        .collect();
    let is_withdrawn =
        |ev: &EventPayload| ev.version.as_ref().is_some_and(|v| withdrawn.contains(&(ev.model.clone(), v.clone())));

    // Serving events that carry the incident id are in both lists: drawn once, from `serving`.
    let mut steps: Vec<Step> =
        incident.iter().filter(|l| !is_serving(l.event.event)).map(|l| registry_step(l, t0)).collect();
    // Who served a withdrawn version before T0 (a permit, a load or traffic for it, not
    // retired or purged before T0).
    let mut serving_before: BTreeMap<String, bool> = BTreeMap::new();
    for l in serving.iter().filter(|l| l.seq < t0_seq) {
        let (Some(who), ev) = (l.event.actor.clone(), &l.event) else { continue };
        let step = ev.reason.as_deref().unwrap_or("");
        match ev.event {
            EventKind::StartupPermit | EventKind::ServingStats if is_withdrawn(ev) => {
                serving_before.insert(who, true);
            }
            EventKind::AgentStep if is_withdrawn(ev) && matches!(step, "permit" | "load") => {
                serving_before.insert(who, true);
            }
            EventKind::AgentStep if is_withdrawn(ev) && matches!(step, "retire" | "purge") => {
                serving_before.insert(who, false);
            }
            _ => {}
        }
    }
    let mut replicas: BTreeMap<String, Replica> = serving_before
        .iter()
        .filter(|(_, serving)| **serving)
        .map(|(n, _)| (n.clone(), Replica { name: n.clone(), expected: true, ..Replica::default() }))
        .collect();

    for l in serving.iter().filter(|l| l.seq > t0_seq) {
        let ev = &l.event;
        let Some(who) = ev.actor.clone() else { continue };
        let when = at(ev);
        let delay = ms(t0, when);
        // Steps the incident caused carry its id; a replica that reports none (an older agent)
        // is followed by its steps on a withdrawn version.
        let ours = ev.inc_id.as_deref() == Some(inc_id) || (ev.inc_id.is_none() && is_withdrawn(ev));
        let r = replicas.entry(who.clone()).or_insert_with(|| Replica { name: who.clone(), ..Replica::default() });
        match ev.event {
            EventKind::AgentStep => {
                let step = ev.reason.clone().unwrap_or_default();
                let caused = ours || (r.quiesce_ms.is_some() && r.reload_ms.is_none());
                if !caused {
                    continue;
                }
                match step.as_str() {
                    "quiesce" => {
                        r.quiesce_ms.get_or_insert(delay);
                    }
                    "purge" => {
                        r.purge_ms.get_or_insert(delay);
                    }
                    "purge_failed" => {
                        r.purge_ms.get_or_insert(delay);
                        r.purge_error.get_or_insert_with(|| ev.detail.clone().unwrap_or_default());
                    }
                    "unload" => {
                        r.unload_ms.get_or_insert(delay);
                    }
                    "permit" if !is_withdrawn(ev) && r.reload_ms.is_none() => {
                        r.reload_ms = Some(delay);
                        r.reloaded.clone_from(&ev.version);
                    }
                    "deny" if r.reload_ms.is_none() => {
                        r.reload_denied.get_or_insert_with(|| ev.detail.clone().unwrap_or_default());
                    }
                    _ => {}
                }
                steps.push(serving_step(l, &step, t0));
            }
            EventKind::StartupDeny if ours || r.quiesce_ms.is_some() => {
                steps.push(serving_step(l, "startup_deny", t0));
            }
            EventKind::ServingStats => {
                let Some(stats) = ev.stats else { continue };
                let good = stats.requests > stats.errors;
                if r.validated_ms.is_none() && r.reload_ms.is_some() && good && ev.version == r.reloaded {
                    r.validated_ms = Some(delay);
                    r.validated_requests = Some(stats.requests);
                    r.validated_errors = Some(stats.errors);
                    let mut s = serving_step(l, "validated", t0);
                    s.detail = Some(format!(
                        "{} requests, {} errors in a {} s window after the reload",
                        stats.requests, stats.errors, stats.window_s
                    ));
                    steps.push(s);
                }
            }
            _ => {}
        }
    }
    // Replicas that only appeared after T0 without acting on the incident are not part of it.
    replicas.retain(|_, r| r.expected || r.quiesce_ms.is_some() || r.purge_ms.is_some());
    for r in replicas.values_mut() {
        // A failed purge outranks everything: the withdrawn files may still be on that host.
        r.status = if r.purge_error.is_some() {
            "purge_failed"
        } else if r.validated_ms.is_some() {
            "validated"
        } else if r.reload_denied.is_some() && r.reload_ms.is_none() {
            "reload_denied"
        } else if r.reload_ms.is_some() {
            "reloaded"
        } else if r.quiesce_ms.is_some() {
            "quiesced"
        } else {
            "silent"
        }
        .to_owned();
    }
    let missing: Vec<String> = replicas.values().filter(|r| r.quiesce_ms.is_none()).map(|r| r.name.clone()).collect();
    let complete = !replicas.is_empty() && replicas.values().all(|r| r.status == "validated");
    steps.sort_by_key(|s| (s.delay_ms, s.seq));
    Timeline {
        inc_id: inc_id.to_owned(),
        t0: Some(t0.format(&Rfc3339).expect("formats")),
        withdrawn: withdrawn.iter().map(|(m, v)| format!("{m}@{v}")).collect(),
        steps,
        replicas: replicas.into_values().collect(),
        missing,
        complete,
    }
}

fn registry_step(l: &Logged, t0: OffsetDateTime) -> Step {
    let ev = &l.event;
    Step {
        seq: l.seq,
        at: ev.ts.format(&Rfc3339).expect("formats"),
        delay_ms: ms(t0, ev.ts),
        step: if ev.event == EventKind::AgentStep {
            ev.reason.clone().unwrap_or_default()
        } else {
            ev.event.as_str().to_owned()
        },
        by: ev.actor.clone(),
        model: ev.model.clone(),
        version: ev.version.clone().or_else(|| ev.to.clone()),
        detail: ev.detail.clone().or_else(|| ev.reason.clone()),
        chg_id: ev.chg_id.clone(),
        inc_id: ev.inc_id.clone(),
    }
}

fn serving_step(l: &Logged, step: &str, t0: OffsetDateTime) -> Step {
    let ev = &l.event;
    let when = at(ev);
    Step {
        seq: l.seq,
        at: when.format(&Rfc3339).expect("formats"),
        delay_ms: ms(t0, when),
        step: step.to_owned(),
        by: ev.actor.clone(),
        model: ev.model.clone(),
        version: ev.version.clone(),
        detail: ev.detail.clone().or_else(|| ev.reason.clone()),
        chg_id: ev.chg_id.clone(),
        inc_id: ev.inc_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ServingStats;

    const T0: i64 = 1_800_000_000;

    fn ev(seq: i64, kind: EventKind, secs_after: f64, f: impl FnOnce(&mut EventPayload)) -> Logged {
        let ts = OffsetDateTime::from_unix_timestamp(T0).unwrap() + time::Duration::seconds_f64(secs_after);
        let mut e = EventPayload::new(kind, ts, "acme", "risk", "fraud");
        f(&mut e);
        Logged { seq, event: e }
    }

    fn step(seq: i64, who: &str, name: &str, version: &str, secs: f64, inc: Option<&str>) -> Logged {
        ev(seq, EventKind::AgentStep, secs, |e| {
            e.actor = Some(who.into());
            e.reason = Some(name.into());
            e.version = Some(version.into());
            e.inc_id = inc.map(Into::into);
            e.observed_at = Some(e.ts.format(&Rfc3339).unwrap());
        })
    }

    fn stats(seq: i64, who: &str, version: &str, secs: f64, requests: u64, errors: u64) -> Logged {
        ev(seq, EventKind::ServingStats, secs, |e| {
            e.actor = Some(who.into());
            e.version = Some(version.into());
            e.stats = Some(ServingStats {
                window_s: 1,
                requests,
                errors,
                refused: 0,
                p50_us: 1,
                p99_us: 1,
                latency_buckets: [0; 15],
                latency_sum_us: 0,
            });
        })
    }

    fn revocation() -> Logged {
        ev(10, EventKind::Revocation, 0.0, |e| {
            e.version = Some("v2".into());
            e.inc_id = Some("INC-1".into());
            e.actor = Some("bo".into());
        })
    }

    #[test]
    fn two_replicas_one_validated_one_whose_purge_failed_and_one_silent() {
        let incident = vec![revocation()];
        let serving = vec![
            step(1, "agent/a", "permit", "v2", -60.0, None),
            step(2, "agent/b", "permit", "v2", -60.0, None),
            step(3, "agent/c", "permit", "v2", -60.0, None),
            stats(4, "agent/c", "v2", -30.0, 10, 0),
            step(11, "agent/a", "quiesce", "v2", 0.1, Some("INC-1")),
            step(12, "agent/a", "purge", "v2", 0.2, Some("INC-1")),
            step(13, "agent/b", "quiesce", "v2", 0.15, Some("INC-1")),
            ev(14, EventKind::AgentStep, 0.3, |e| {
                e.actor = Some("agent/b".into());
                e.reason = Some("purge_failed".into());
                e.version = Some("v2".into());
                e.inc_id = Some("INC-1".into());
                e.detail = Some("Permission denied (os error 13)".into());
            }),
            step(15, "agent/a", "permit", "v1", 1.2, Some("INC-1")),
            step(16, "agent/b", "permit", "v1", 1.4, Some("INC-1")),
            stats(17, "agent/a", "v1", 2.5, 0, 0),
            stats(18, "agent/a", "v1", 3.5, 40, 1),
        ];
        let t = timeline("INC-1", &incident, &serving);
        assert_eq!(t.withdrawn, vec!["fraud@v2"]);
        let a = &t.replicas[0];
        assert_eq!((a.name.as_str(), a.status.as_str()), ("agent/a", "validated"));
        assert_eq!(
            (a.quiesce_ms, a.purge_ms, a.reload_ms, a.validated_ms),
            (Some(100), Some(200), Some(1200), Some(3500))
        );
        assert_eq!((a.reloaded.as_deref(), a.validated_requests), (Some("v1"), Some(40)));
        let b = &t.replicas[1];
        assert_eq!(b.status, "purge_failed");
        assert_eq!(b.purge_error.as_deref(), Some("Permission denied (os error 13)"));
        assert_eq!(t.missing, vec!["agent/c"], "c served v2 and said nothing");
        assert!(!t.complete);
        assert_eq!(t.steps.first().map(|s| s.step.as_str()), Some("revocation"));
        assert!(t.steps.windows(2).all(|w| w[0].delay_ms <= w[1].delay_ms), "ordered by delay");
    }

    #[test]
    fn a_step_in_both_lists_is_drawn_once() {
        let quiesce = step(11, "agent/a", "quiesce", "v2", 0.1, Some("INC-1"));
        let t = timeline("INC-1", &[revocation(), quiesce.clone()], &[quiesce]);
        assert_eq!(t.steps.iter().filter(|s| s.step == "quiesce").count(), 1, "{:?}", t.steps);
    }

    #[test]
    fn complete_only_when_every_replica_validated() {
        let serving = vec![
            step(1, "agent/a", "permit", "v2", -5.0, None),
            step(11, "agent/a", "quiesce", "v2", 0.1, Some("INC-1")),
            step(12, "agent/a", "purge", "v2", 0.2, Some("INC-1")),
            step(13, "agent/a", "permit", "v1", 0.9, Some("INC-1")),
        ];
        let t = timeline("INC-1", &[revocation()], &serving);
        assert_eq!(t.replicas[0].status, "reloaded");
        assert!(!t.complete, "reloaded is not validated yet");
        let mut more = serving.clone();
        more.push(stats(14, "agent/a", "v1", 2.0, 5, 5));
        assert!(!timeline("INC-1", &[revocation()], &more).complete, "only errors is no validation");
        more.push(stats(15, "agent/a", "v1", 3.0, 5, 0));
        let t = timeline("INC-1", &[revocation()], &more);
        assert!(t.complete);
        assert!(t.missing.is_empty());
    }

    #[test]
    fn retired_before_t0_is_not_expected_and_no_withdrawal_means_no_t0() {
        let serving =
            vec![step(1, "agent/a", "permit", "v2", -5.0, None), step(2, "agent/a", "retire", "v2", -1.0, None)];
        let t = timeline("INC-1", &[revocation()], &serving);
        assert!(t.replicas.is_empty() && t.missing.is_empty());
        let opened = ev(5, EventKind::IncidentOpened, -10.0, |e| e.inc_id = Some("INC-1".into()));
        let t = timeline("INC-1", &[opened], &serving);
        assert_eq!(t.t0, None);
        assert_eq!(t.steps.len(), 1);
    }
}
