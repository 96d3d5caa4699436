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

/// What to fold.
#[derive(Debug, Clone, Copy)]
pub struct Range<'a> {
    pub version: &'a str,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// How many equal buckets (at least one).
    pub buckets: usize,
    /// The version's reference profile, for PSI.
    pub profile: Option<&'a Profile>,
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

struct Traffic {
    env: String,
    requests: Vec<u64>,
    errors: Vec<u64>,
    refused: Vec<u64>,
    buckets: Vec<[u64; 15]>,
}

/// Fold the events into the dashboard for `r`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
pub fn fold<'e, 'a: 'e>(r: Range<'_>, events: impl IntoIterator<Item = &'e Observation<'a>>) -> Dashboard {
    let n = r.buckets.max(1);
    let span = (r.to - r.from).whole_seconds().max(1);
    let step = (span + n as i64 - 1) / n as i64;
    let start = r.from.unix_timestamp();
    let times = (0..n).map(|i| start + i as i64 * step).collect();
    let at = |ts: OffsetDateTime| -> Option<usize> {
        if ts < r.from || ts > r.to {
            return None;
        }
        Some((((ts.unix_timestamp() - start) / step) as usize).min(n - 1))
    };
    let mut traffic: BTreeMap<String, Traffic> = BTreeMap::new();
    let mut tallies: Vec<Option<Tally>> = vec![None; n];
    let mut permits = 0;
    let mut denies: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        if e.version.as_deref() != Some(r.version) {
            continue;
        }
        let Some(b) = at(e.ts) else { continue };
        match e.event {
            EventKind::ServingStats => {
                let Some(s) = &e.stats else { continue };
                let alias = e.alias.as_deref().unwrap_or_default();
                if !traffic.contains_key(alias) {
                    traffic.insert(
                        alias.to_owned(),
                        Traffic {
                            env: e.env.as_deref().unwrap_or_default().to_owned(),
                            requests: vec![0; n],
                            errors: vec![0; n],
                            refused: vec![0; n],
                            buckets: vec![[0; 15]; n],
                        },
                    );
                }
                let t = traffic.get_mut(alias).expect("inserted");
                t.requests[b] += s.requests;
                t.errors[b] += s.errors;
                t.refused[b] += s.refused;
                for (sum, c) in t.buckets[b].iter_mut().zip(s.latency_buckets) {
                    *sum += c;
                }
            }
            EventKind::ServingInputs => {
                let (Some(i), Some(p)) = (&e.inputs, r.profile) else { continue };
                let sum = tallies[b].get_or_insert_with(|| Tally::for_profile(p));
                if i.tally.counts.len() == sum.counts.len() {
                    sum.add(&i.tally);
                }
            }
            EventKind::StartupPermit => permits += 1,
            EventKind::StartupDeny => {
                *denies.entry(e.reason.as_deref().unwrap_or("unknown").to_owned()).or_default() += 1;
            }
            _ => {}
        }
    }
    let ms = |b: &[u64; 15], q| latency_quantile(b, q).map(|s| s * 1e3);
    let aliases = traffic
        .into_iter()
        .map(|(alias, t)| {
            let mut all = [0u64; 15];
            for b in &t.buckets {
                for (s, c) in all.iter_mut().zip(b) {
                    *s += c;
                }
            }
            AliasSeries {
                alias,
                env: t.env,
                total_requests: t.requests.iter().sum(),
                total_errors: t.errors.iter().sum(),
                total_refused: t.refused.iter().sum(),
                overall_p99_ms: ms(&all, 0.99),
                p50_ms: t.buckets.iter().map(|b| ms(b, 0.5)).collect(),
                p99_ms: t.buckets.iter().map(|b| ms(b, 0.99)).collect(),
                requests: t.requests,
                errors: t.errors,
                refused: t.refused,
            }
        })
        .collect();
    let psi = match r.profile {
        None => vec![],
        Some(p) => {
            let mut all = Tally::for_profile(p);
            for t in tallies.iter().flatten() {
                all.add(t);
            }
            p.features
                .iter()
                .enumerate()
                .map(|(i, f)| FeatureSeries {
                    feature: f.name.clone(),
                    psi: tallies.iter().map(|t| t.as_ref().and_then(|t| psi(&f.proportions, &t.counts[i]))).collect(),
                    overall: psi(&f.proportions, &all.counts[i]),
                })
                .collect()
        }
    };
    Dashboard { times, step_s: step, aliases, psi, permits, denies: denies.into_iter().collect() }
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
        let d = fold(Range { version: "v2", from: t0, to: t0 + m * 60, buckets: 6, profile: None }, &events);
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
        let d = fold(Range { version: "v2", from: t0, to: t0 + m * 60, buckets: 3, profile: Some(&profile) }, &events);
        let f = &d.psi[0];
        assert_eq!(f.feature, "amount");
        assert!(f.psi[0].unwrap() < 0.1, "like the reference: {:?}", f.psi);
        assert_eq!(f.psi[1], None, "no inputs in that bucket");
        assert!(f.psi[2].unwrap() > 1.0, "all in one bin drifts: {:?}", f.psi);
        let overall = f.overall.unwrap();
        assert!(overall > f.psi[0].unwrap() && overall < f.psi[2].unwrap(), "{overall}");
    }
}
