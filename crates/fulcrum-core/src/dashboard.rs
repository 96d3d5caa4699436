//! A version's dashboard (SPEC §12): its gateways' windows, its startup checks and its inference
//! inputs over a time range, folded into equal time buckets — per alias (canary beside
//! production) requests, errors, refusals and latency quantiles; PSI per feature against the
//! version's reference profile; startup denials by reason. The console charts these figures.
//!
//! Pure: the caller reads the model's `serving_stats`, `serving_inputs`, `startup_permit` and
//! `startup_deny` events as [`Observation`]s (the few fields the dashboard needs, borrowed from
//! the stored bytes: a day of windows is tens of thousands of events); events of other versions
//! or outside the range are ignored. Latencies come from the summed histograms (quantiles of
//! sums, never of quantiles), PSI from the summed tallies of a bucket.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::drift::{Profile, Tally, psi};
use crate::event::{EventKind, ServingInputs, ServingStats, latency_quantile};

/// The fields of a stored event (its CloudEvent's `data`) that a dashboard reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Observation<'a> {
    pub event: EventKind,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    #[serde(borrow, default)]
    pub version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub alias: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub env: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stats: Option<ServingStats>,
    #[serde(default)]
    pub inputs: Option<ServingInputs>,
}

#[derive(Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    data: Observation<'a>,
}

impl<'a> Observation<'a> {
    /// Read one stored CloudEvent; `None` when it is not one (it is then left out).
    pub fn from_stored(body: &'a str) -> Option<Self> {
        serde_json::from_str::<Stored<'a>>(body).ok().map(|s| s.data)
    }
}

/// The buckets of a range ending now: `buckets` equal steps, aligned to whole steps so the same
/// window (and a [`Fold`] kept for it) stays valid until the clock passes its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub step_s: i64,
    pub buckets: usize,
}

impl Window {
    /// The window of `buckets` steps covering `span` that holds `now` in its last step.
    #[allow(clippy::cast_possible_wrap)]
    pub fn ending(now: OffsetDateTime, span: time::Duration, buckets: usize) -> Self {
        let n = buckets.max(1) as i64;
        let step = ((span.whole_seconds().max(1) + n - 1) / n).max(1);
        let end = (now.unix_timestamp().div_euclid(step) + 1) * step;
        let at = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap_or(now);
        Self { from: at(end - n * step), to: at(end), step_s: step, buckets: buckets.max(1) }
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn bucket(&self, ts: OffsetDateTime) -> Option<usize> {
        if ts < self.from || ts >= self.to {
            return None;
        }
        Some((((ts - self.from).whole_seconds() / self.step_s) as usize).min(self.buckets - 1))
    }
}

/// The dashboard's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dashboard {
    /// Each bucket's start, Unix seconds.
    pub times: Vec<i64>,
    pub step_s: i64,
    /// Traffic per alias the version served under, by alias name.
    pub aliases: Vec<AliasSeries>,
    /// PSI per feature and bucket (`None`: no inputs in that bucket).
    pub psi: Vec<FeatureSeries>,
    /// Startup checks in the range: permits, and denials by reason.
    pub permits: u64,
    pub denies: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasSeries {
    pub alias: String,
    pub env: String,
    pub requests: Vec<u64>,
    pub errors: Vec<u64>,
    pub refused: Vec<u64>,
    /// Latency quantiles, milliseconds (`None`: nothing answered in the bucket).
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
    /// Over the whole range.
    pub total_requests: u64,
    pub total_errors: u64,
    pub total_refused: u64,
    pub overall_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureSeries {
    pub feature: String,
    pub psi: Vec<Option<f64>>,
    /// Over the whole range.
    pub overall: Option<f64>,
}

#[derive(Debug, Clone)]
struct Traffic {
    env: String,
    requests: Vec<u64>,
    errors: Vec<u64>,
    refused: Vec<u64>,
    buckets: Vec<[u64; 15]>,
}

/// A dashboard being folded: sums per bucket, so events can be added in any order and at any
/// time (a kept fold takes only the events logged since).
#[derive(Debug, Clone)]
pub struct Fold {
    version: String,
    window: Window,
    profile: Option<Arc<Profile>>,
    traffic: BTreeMap<String, Traffic>,
    tallies: Vec<Option<Tally>>,
    permits: u64,
    denies: BTreeMap<String, u64>,
}

impl Fold {
    pub fn new(version: &str, window: Window, profile: Option<Arc<Profile>>) -> Self {
        Self {
            version: version.to_owned(),
            tallies: vec![None; window.buckets],
            window,
            profile,
            traffic: BTreeMap::new(),
            permits: 0,
            denies: BTreeMap::new(),
        }
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Count one event (another version's, or one outside the window, counts nothing).
    pub fn add(&mut self, e: &Observation<'_>) {
        if e.version.as_deref() != Some(self.version.as_str()) {
            return;
        }
        let Some(b) = self.window.bucket(e.ts) else { return };
        let n = self.window.buckets;
        match e.event {
            EventKind::ServingStats => {
                let Some(s) = &e.stats else { return };
                let alias = e.alias.as_deref().unwrap_or_default();
                if !self.traffic.contains_key(alias) {
                    let t = Traffic {
                        env: e.env.as_deref().unwrap_or_default().to_owned(),
                        requests: vec![0; n],
                        errors: vec![0; n],
                        refused: vec![0; n],
                        buckets: vec![[0; 15]; n],
                    };
                    self.traffic.insert(alias.to_owned(), t);
                }
                let t = self.traffic.get_mut(alias).expect("inserted");
                t.requests[b] += s.requests;
                t.errors[b] += s.errors;
                t.refused[b] += s.refused;
                for (sum, c) in t.buckets[b].iter_mut().zip(s.latency_buckets) {
                    *sum += c;
                }
            }
            EventKind::ServingInputs => {
                let (Some(i), Some(p)) = (&e.inputs, &self.profile) else { return };
                let sum = self.tallies[b].get_or_insert_with(|| Tally::for_profile(p));
                if i.tally.counts.len() == sum.counts.len() {
                    sum.add(&i.tally);
                }
            }
            EventKind::StartupPermit => self.permits += 1,
            EventKind::StartupDeny => {
                *self.denies.entry(e.reason.as_deref().unwrap_or("unknown").to_owned()).or_default() += 1;
            }
            _ => {}
        }
    }

    /// The figures so far.
    #[allow(clippy::cast_possible_wrap)]
    pub fn dashboard(&self) -> Dashboard {
        let w = self.window;
        let start = w.from.unix_timestamp();
        let ms = |b: &[u64; 15], q| latency_quantile(b, q).map(|s| s * 1e3);
        let aliases = self
            .traffic
            .iter()
            .map(|(alias, t)| {
                let mut all = [0u64; 15];
                for b in &t.buckets {
                    for (s, c) in all.iter_mut().zip(b) {
                        *s += c;
                    }
                }
                AliasSeries {
                    alias: alias.clone(),
                    env: t.env.clone(),
                    total_requests: t.requests.iter().sum(),
                    total_errors: t.errors.iter().sum(),
                    total_refused: t.refused.iter().sum(),
                    overall_p99_ms: ms(&all, 0.99),
                    p50_ms: t.buckets.iter().map(|b| ms(b, 0.5)).collect(),
                    p99_ms: t.buckets.iter().map(|b| ms(b, 0.99)).collect(),
                    requests: t.requests.clone(),
                    errors: t.errors.clone(),
                    refused: t.refused.clone(),
                }
            })
            .collect();
        let psi = match &self.profile {
            None => vec![],
            Some(p) => {
                let mut all = Tally::for_profile(p);
                for t in self.tallies.iter().flatten() {
                    all.add(t);
                }
                p.features
                    .iter()
                    .enumerate()
                    .map(|(i, f)| FeatureSeries {
                        feature: f.name.clone(),
                        psi: self
                            .tallies
                            .iter()
                            .map(|t| t.as_ref().and_then(|t| psi(&f.proportions, &t.counts[i])))
                            .collect(),
                        overall: psi(&f.proportions, &all.counts[i]),
                    })
                    .collect()
            }
        };
        Dashboard {
            times: (0..w.buckets).map(|i| start + i as i64 * w.step_s).collect(),
            step_s: w.step_s,
            aliases,
            psi,
            permits: self.permits,
            denies: self.denies.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored CloudEvent around `data`.
    fn stored(data: serde_json::Value) -> String {
        serde_json::json!({"specversion": "1.0", "id": "x", "source": "fulcrum", "type": "t", "data": data}).to_string()
    }

    fn stats(version: &str, alias: &str, at: OffsetDateTime, requests: u64, errors: u64, us: u64) -> String {
        let mut buckets = [0u64; 15];
        buckets[ServingStats::bucket_of(us)] = requests - errors;
        let body = serde_json::json!({"event": "serving_stats", "ts": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "model": "fraud", "version": version, "tenant": "acme", "domain": "fraud", "approvals": [], "alias": alias, "env": "prod",
            "stats": {"window_s": 10, "requests": requests, "errors": errors, "refused": 1, "p50_us": us, "p99_us": us,
                      "latency_buckets": buckets, "latency_sum_us": us * (requests - errors)}});
        stored(body)
    }

    fn deny(at: OffsetDateTime, reason: &str) -> String {
        stored(
            serde_json::json!({"event": "startup_deny", "ts": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "model": "fraud", "version": "v2", "tenant": "acme", "domain": "fraud", "approvals": [], "reason": reason}),
        )
    }

    fn fold(version: &str, w: Window, profile: Option<Arc<Profile>>, events: &[Observation<'_>]) -> Dashboard {
        let mut f = Fold::new(version, w, profile);
        for e in events {
            f.add(e);
        }
        f.dashboard()
    }

    #[test]
    fn a_window_is_aligned_to_whole_steps_and_a_kept_fold_extends_like_a_fresh_one() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_123).unwrap();
        let w = Window::ending(now, time::Duration::HOUR, 60);
        assert_eq!((w.step_s, w.buckets), (60, 60));
        assert_eq!(w.to.unix_timestamp() % 60, 0);
        let step = time::Duration::minutes(1);
        assert!(w.from > now - time::Duration::HOUR - step && w.from <= now - time::Duration::HOUR + step, "{w:?}");
        assert!(now < w.to && w.to - now <= step, "now is in the last step: {w:?}");
        assert_eq!(Window::ending(now + time::Duration::seconds(30), time::Duration::HOUR, 60), w, "same step");
        let m = time::Duration::minutes(1);
        let first = [stats("v2", "canary", now - m * 10, 10, 1, 3_000)];
        let later = [stats("v2", "canary", now - m, 5, 0, 9_000), stats("v2", "production", now, 7, 0, 1_000)];
        let mut kept = Fold::new("v2", w, None);
        for e in observe(&first) {
            kept.add(&e);
        }
        for e in observe(&later) {
            kept.add(&e);
        }
        let all: Vec<String> = first.iter().chain(&later).cloned().collect();
        assert_eq!(kept.dashboard(), fold("v2", w, None, &observe(&all)));
    }

    fn observe(bodies: &[String]) -> Vec<Observation<'_>> {
        bodies.iter().map(|b| Observation::from_stored(b).expect("a stored event")).collect()
    }

    #[test]
    fn windows_fall_in_their_bucket_per_alias_and_others_are_ignored() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let m = time::Duration::minutes(1);
        let events = [
            stats("v2", "canary", t0 + m * 5, 10, 1, 3_000),
            stats("v2", "canary", t0 + m * 7, 10, 0, 3_000),
            stats("v2", "production", t0 + m * 55, 100, 0, 40_000),
            stats("v1", "production", t0 + m * 55, 999, 0, 40_000), // another version
            stats("v2", "canary", t0 + m * 61, 5, 0, 3_000),        // after the range
            deny(t0 + m * 3, "signature_invalid"),
            deny(t0 + m * 4, "signature_invalid"),
            deny(t0 + m * 4, "revoked"),
        ];
        let events = observe(&events);
        let w = Window { from: t0, to: t0 + m * 60, step_s: 600, buckets: 6 };
        let d = fold("v2", w, None, &events);
        assert_eq!(d.step_s, 600);
        assert_eq!(d.times.len(), 6);
        let canary = d.aliases.iter().find(|a| a.alias == "canary").unwrap();
        assert_eq!(canary.requests, vec![20, 0, 0, 0, 0, 0]);
        assert_eq!((canary.total_errors, canary.total_refused), (1, 2));
        let p99 = canary.p99_ms[0].unwrap();
        assert!(p99 > 2.5 && p99 <= 5.0, "{p99}");
        let prod = d.aliases.iter().find(|a| a.alias == "production").unwrap();
        assert_eq!(prod.requests, vec![0, 0, 0, 0, 0, 100]);
        assert!(prod.overall_p99_ms.unwrap() > 25.0);
        assert_eq!(d.denies, vec![("revoked".into(), 1), ("signature_invalid".into(), 2)]);
        assert!(d.psi.is_empty(), "no profile, no PSI");
    }

    #[test]
    fn psi_is_per_bucket_and_over_the_range_against_the_profile() {
        let values: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let profile = Profile::build(&[("amount".into(), values)], 4).unwrap();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let inputs = |at: OffsetDateTime, counts: Vec<u64>| -> String {
            stored(serde_json::json!({"event": "serving_inputs",
                "ts": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
                "model": "fraud", "version": "v2", "tenant": "acme", "domain": "fraud", "approvals": [],
                "inputs": {"profile": "sha256:00", "window_s": 10, "tally": {"counts": [counts], "invalid": [0]}}}))
        };
        let bins = profile.features[0].bins();
        let even = vec![25u64; bins];
        let mut skewed = vec![0u64; bins];
        skewed[0] = 100;
        let m = time::Duration::minutes(1);
        let events = [inputs(t0 + m, even.clone()), inputs(t0 + m * 40, skewed)];
        let events = observe(&events);
        let w = Window { from: t0, to: t0 + m * 60, step_s: 1200, buckets: 3 };
        let d = fold("v2", w, Some(Arc::new(profile)), &events);
        let f = &d.psi[0];
        assert_eq!(f.feature, "amount");
        assert!(f.psi[0].unwrap() < 0.1, "like the reference: {:?}", f.psi);
        assert_eq!(f.psi[1], None, "no inputs in that bucket");
        assert!(f.psi[2].unwrap() > 1.0, "all in one bin drifts: {:?}", f.psi);
        let overall = f.overall.unwrap();
        assert!(overall > f.psi[0].unwrap() && overall < f.psi[2].unwrap(), "{overall}");
    }
}
