//! Per-version signals on `/metrics` (SPEC §12), summed from the committed log: every
//! `serving_stats` report (a gateway's window: requests, errors, refusals, a latency histogram)
//! and every startup report (`startup_permit` / `startup_deny` with its reason), whichever
//! replica took it. The log reader ([`crate::follow`]) hands each such event here, on every
//! replica, so each replica exposes the same cluster-wide sums since it started.
//!
//! Histograms, not percentiles: bucket counts from any number of gateways and windows add up,
//! and Prometheus computes quantiles from them (`histogram_quantile`); a p99 of p99s would not.
//!
//! **Drift.** `serving_inputs` reports (a gateway's inference inputs binned against the version's
//! reference profile) are kept for [`DRIFT_WINDOW`]; their sum per series and feature is compared
//! with the profile by the ε-smoothed PSI (`fulcrum_core::drift`): `fulcrum_version_drift_psi`.
//!
//! **Bounded cardinality.** A series (tenant, model, version, alias, env) lives while it is
//! reported: one silent for [`FORGET_AFTER`] is dropped, and at most [`MAX_SERIES`] are kept (the
//! longest silent go first). Registered versions that never serve cost nothing here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use std::sync::Arc;

use fulcrum_core::drift::{Profile, Tally};
use fulcrum_core::event::{LATENCY_BUCKETS_US, ServingInputs, ServingStats, latency_quantile as quantile};
use time::OffsetDateTime;

/// A series not reported for this long is dropped.
pub const FORGET_AFTER: time::Duration = time::Duration::hours(1);
/// At most this many serving series and as many startup series.
pub const MAX_SERIES: usize = 5_000;
/// Inputs count toward a version's drift index for this long.
pub const DRIFT_WINDOW: time::Duration = time::Duration::minutes(15);
/// Reference profiles kept in memory (they are small; a version's is read once).
const PROFILES: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Serving {
    tenant: String,
    model: String,
    version: String,
    alias: String,
    env: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Startup {
    tenant: String,
    model: String,
    version: String,
    env: String,
    decision: &'static str,
    reason: String,
}

#[derive(Debug, Clone)]
struct Traffic {
    requests: u64,
    errors: u64,
    refused: u64,
    buckets: [u64; 15],
    sum_us: u64,
    last: OffsetDateTime,
}

/// A series' recent binned inputs.
#[derive(Debug, Clone)]
struct Inputs {
    profile: fulcrum_core::Digest,
    reports: std::collections::VecDeque<(OffsetDateTime, Tally)>,
    last: OffsetDateTime,
}

#[derive(Debug, Default)]
struct Inner {
    serving: BTreeMap<Serving, Traffic>,
    startups: BTreeMap<Startup, (u64, OffsetDateTime)>,
    inputs: BTreeMap<Serving, Inputs>,
    /// (series, feature) whose last drift event was `drift_detected`.
    drifted: std::collections::BTreeSet<(Serving, String)>,
    /// (event, tenant, model, version) of the revalidation events raised.
    revalidations: std::collections::BTreeSet<(String, String, String, String)>,
}

/// A series: tenant, model, version, alias, env.
pub type SeriesKey = (String, String, String, String, String);

/// What the leader's watchers saw at their last look (only the leader has them).
#[derive(Debug, Default)]
struct Watched {
    /// (tenant, model, version, severity, open findings) of Approved versions without a hold.
    findings: Vec<(String, String, String, String, i64)>,
    /// (tenant, model, version, seconds until `revalidate_by`; negative when overdue) of
    /// Approved versions inside the notice period.
    revalidation: Vec<(String, String, String, i64)>,
}

#[derive(Debug, Default)]
pub struct Signals {
    inner: Mutex<Inner>,
    watched: Mutex<Watched>,
    profiles: Mutex<std::collections::HashMap<fulcrum_core::Digest, Arc<Profile>>>,
}

/// One feature's drift over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDrift {
    pub feature: String,
    /// `None` while nothing was binned for it.
    pub psi: Option<f64>,
    pub values: u64,
    pub invalid: u64,
}

/// `name="value",…` with every value escaped (what goes between a series' braces).
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect::<Vec<_>>().join(",")
}

/// A label value as Prometheus' text format needs it.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Drop what is silent for [`FORGET_AFTER`], then the longest silent beyond `MAX_SERIES`.
fn prune<K: Ord + Clone, V>(m: &mut BTreeMap<K, V>, last: impl Fn(&V) -> OffsetDateTime, now: OffsetDateTime) {
    m.retain(|_, v| now - last(v) < FORGET_AFTER);
    if m.len() > MAX_SERIES {
        let mut by_age: Vec<(OffsetDateTime, K)> = m.iter().map(|(k, v)| (last(v), k.clone())).collect();
        by_age.sort_by_key(|a| a.0);
        for (_, k) in by_age.into_iter().take(m.len() - MAX_SERIES) {
            m.remove(&k);
        }
    }
}

impl Signals {
    /// The findings watcher's last look (see [`Watched`]).
    pub fn set_findings(&self, findings: Vec<(String, String, String, String, i64)>) {
        self.watched.lock().expect("watched lock").findings = findings;
    }

    /// The revalidation watcher's last look (see [`Watched`]).
    pub fn set_revalidation(&self, revalidation: Vec<(String, String, String, i64)>) {
        self.watched.lock().expect("watched lock").revalidation = revalidation;
    }

    /// A reference profile already read.
    pub fn profile(&self, d: &fulcrum_core::Digest) -> Option<Arc<Profile>> {
        self.profiles.lock().expect("profiles lock").get(d).cloned()
    }

    /// Keep a profile read from the blob store.
    pub fn keep_profile(&self, d: fulcrum_core::Digest, p: Arc<Profile>) {
        let mut m = self.profiles.lock().expect("profiles lock");
        if m.len() >= PROFILES {
            m.clear();
        }
        m.insert(d, p);
    }

    /// The profile a `serving_inputs` event (as stored) was binned against.
    pub fn profile_named(body: &str) -> Option<fulcrum_core::Digest> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        v["data"]["inputs"]["profile"].as_str()?.parse().ok()
    }

    /// Take in one committed event (the CloudEvent as stored); other kinds are ignored. A
    /// `serving_inputs` event counts only when its profile was read first (see
    /// [`Signals::profile`]).
    pub fn observe(&self, kind: &str, body: &str, now: OffsetDateTime) {
        if !matches!(
            kind,
            "serving_stats"
                | "startup_permit"
                | "startup_deny"
                | "serving_inputs"
                | "drift_detected"
                | "drift_cleared"
                | "revalidation_due"
                | "revalidation_overdue"
        ) {
            return;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else { return };
        let d = &v["data"];
        let s = |k: &str| d[k].as_str().unwrap_or("").to_owned();
        let series = || Serving {
            tenant: s("tenant"),
            model: s("model"),
            version: s("version"),
            alias: s("alias"),
            env: s("env"),
        };
        if kind == "revalidation_due" || kind == "revalidation_overdue" {
            let key = (kind.to_owned(), s("tenant"), s("model"), s("version"));
            self.inner.lock().expect("signals lock").revalidations.insert(key);
            return;
        }
        if kind == "drift_detected" || kind == "drift_cleared" {
            let Some(feature) = d["drift"]["feature"].as_str() else { return };
            let key = (series(), feature.to_owned());
            let mut inner = self.inner.lock().expect("signals lock");
            if kind == "drift_detected" {
                inner.drifted.insert(key);
            } else {
                inner.drifted.remove(&key);
            }
            return;
        }
        if kind == "serving_inputs" {
            let Ok(inputs) = serde_json::from_value::<ServingInputs>(d["inputs"].clone()) else { return };
            let Ok(digest) = inputs.profile.parse::<fulcrum_core::Digest>() else { return };
            let Some(profile) = self.profile(&digest) else { return };
            if !inputs.tally.fits(&profile) {
                return;
            }
            let key = series();
            let mut inner = self.inner.lock().expect("signals lock");
            let e =
                inner.inputs.entry(key).or_insert(Inputs { profile: digest, reports: Default::default(), last: now });
            if e.profile != digest {
                *e = Inputs { profile: digest, reports: Default::default(), last: now };
            }
            e.reports.push_back((now, inputs.tally));
            e.last = now;
            while e.reports.front().is_some_and(|(at, _)| now - *at > DRIFT_WINDOW) {
                e.reports.pop_front();
            }
            prune(&mut inner.inputs, |i| i.last, now);
            return;
        }
        let mut inner = self.inner.lock().expect("signals lock");
        if kind == "serving_stats" {
            let Ok(stats) = serde_json::from_value::<ServingStats>(d["stats"].clone()) else { return };
            let key = series();
            let t = inner.serving.entry(key).or_insert(Traffic {
                requests: 0,
                errors: 0,
                refused: 0,
                buckets: [0; 15],
                sum_us: 0,
                last: now,
            });
            t.requests += stats.requests;
            t.errors += stats.errors;
            t.refused += stats.refused;
            for (b, n) in t.buckets.iter_mut().zip(stats.latency_buckets) {
                *b += n;
            }
            t.sum_us += stats.latency_sum_us;
            t.last = now;
            prune(&mut inner.serving, |t| t.last, now);
        } else {
            let (decision, reason) =
                if kind == "startup_permit" { ("permit", String::new()) } else { ("deny", s("reason")) };
            let key = Startup {
                tenant: s("tenant"),
                model: s("model"),
                version: s("version"),
                env: s("env"),
                decision,
                reason,
            };
            let e = inner.startups.entry(key).or_insert((0, now));
            e.0 += 1;
            e.1 = now;
            prune(&mut inner.startups, |e| e.1, now);
        }
    }

    /// Whether this revalidation event was already raised for the version (read from the log).
    pub fn revalidation_raised(&self, kind: &str, tenant: &str, model: &str, version: &str) -> bool {
        let key = (kind.to_owned(), tenant.to_owned(), model.to_owned(), version.to_owned());
        self.inner.lock().expect("signals lock").revalidations.contains(&key)
    }

    /// Whether the log's last drift event for this series and feature is `drift_detected`.
    pub fn has_drifted(&self, k: &SeriesKey, feature: &str) -> bool {
        let (tenant, model, version, alias, env) = k.clone();
        let key = (Serving { tenant, model, version, alias, env }, feature.to_owned());
        self.inner.lock().expect("signals lock").drifted.contains(&key)
    }

    /// Each series' drift per feature over the window.
    pub fn drift(&self, now: OffsetDateTime) -> Vec<(SeriesKey, Vec<FeatureDrift>)> {
        let mut inner = self.inner.lock().expect("signals lock");
        prune(&mut inner.inputs, |i| i.last, now);
        let mut out = Vec::new();
        for (k, i) in &inner.inputs {
            let Some(profile) = self.profile(&i.profile) else { continue };
            let mut sum = Tally::for_profile(&profile);
            for (at, t) in &i.reports {
                if now - *at <= DRIFT_WINDOW {
                    sum.add(t);
                }
            }
            let features = profile
                .features
                .iter()
                .zip(sum.counts.iter().zip(&sum.invalid))
                .map(|(f, (counts, invalid))| FeatureDrift {
                    feature: f.name.clone(),
                    psi: fulcrum_core::drift::psi(&f.proportions, counts),
                    values: counts.iter().sum(),
                    invalid: *invalid,
                })
                .collect();
            out.push((
                (k.tenant.clone(), k.model.clone(), k.version.clone(), k.alias.clone(), k.env.clone()),
                features,
            ));
        }
        out
    }

    /// The series, in Prometheus' text format (forgetting what fell silent).
    pub fn render(&self, now: OffsetDateTime) -> String {
        let drift = self.drift(now);
        let mut out = String::new();
        {
            let w = self.watched.lock().expect("watched lock");
            let _ = writeln!(
                out,
                "# HELP fulcrum_version_findings_open Open findings of Approved versions without a hold, by severity (the leader's findings watcher; other replicas show none).\n# TYPE fulcrum_version_findings_open gauge"
            );
            for (tenant, model, version, severity, n) in &w.findings {
                let l = labels(&[("tenant", tenant), ("model", model), ("version", version), ("severity", severity)]);
                let _ = writeln!(out, "fulcrum_version_findings_open{{{l}}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP fulcrum_version_revalidate_in_seconds Seconds until an Approved version's revalidate_by, inside the policy's notice period (negative: overdue; the leader's watcher).\n# TYPE fulcrum_version_revalidate_in_seconds gauge"
            );
            for (tenant, model, version, secs) in &w.revalidation {
                let l = labels(&[("tenant", tenant), ("model", model), ("version", version)]);
                let _ = writeln!(out, "fulcrum_version_revalidate_in_seconds{{{l}}} {secs}");
            }
        }
        let mut inner = self.inner.lock().expect("signals lock");
        prune(&mut inner.serving, |t| t.last, now);
        prune(&mut inner.startups, |e| e.1, now);
        let _ = writeln!(
            out,
            "# HELP fulcrum_version_drift_psi Population Stability Index of a feature's inputs over the last 15 minutes against the version's reference profile.\n# TYPE fulcrum_version_drift_psi gauge"
        );
        let feature_labels = |(tenant, model, version, alias, env): &SeriesKey, feature: &str| {
            labels(&[
                ("tenant", tenant),
                ("model", model),
                ("version", version),
                ("alias", alias),
                ("env", env),
                ("feature", feature),
            ])
        };
        for (k, features) in &drift {
            for f in features {
                if let Some(psi) = f.psi {
                    let _ = writeln!(out, "fulcrum_version_drift_psi{{{}}} {psi}", feature_labels(k, &f.feature));
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP fulcrum_version_drift_values Inputs binned for a feature over the last 15 minutes (and, outcome=\"invalid\", values that could not be).\n# TYPE fulcrum_version_drift_values gauge"
        );
        for (k, features) in &drift {
            for f in features {
                for (outcome, n) in [("binned", f.values), ("invalid", f.invalid)] {
                    let l = feature_labels(k, &f.feature);
                    let _ = writeln!(out, "fulcrum_version_drift_values{{{l},outcome=\"{outcome}\"}} {n}");
                }
            }
        }
        let serving_labels = |k: &Serving| {
            labels(&[
                ("tenant", &k.tenant),
                ("model", &k.model),
                ("version", &k.version),
                ("alias", &k.alias),
                ("env", &k.env),
            ])
        };
        for (name, help, pick) in [
            ("requests", "Requests answered through gateways, per version and alias.", 0),
            ("errors", "Requests that failed upstream (errors, 5xx), per version and alias.", 1),
            ("refused", "Requests gateways refused themselves (guardrails, quiesced), per version and alias.", 2),
        ] {
            let _ = writeln!(
                out,
                "# HELP fulcrum_version_{name}_total {help}\n# TYPE fulcrum_version_{name}_total counter"
            );
            for (k, t) in &inner.serving {
                let n = [t.requests, t.errors, t.refused][pick];
                let _ = writeln!(out, "fulcrum_version_{name}_total{{{}}} {n}", serving_labels(k));
            }
        }
        let _ = writeln!(
            out,
            "# HELP fulcrum_version_latency_seconds Latency through gateways, per version and alias.\n# TYPE fulcrum_version_latency_seconds histogram"
        );
        for (k, t) in &inner.serving {
            let l = serving_labels(k);
            let mut cumulative = 0;
            for (i, n) in t.buckets.iter().enumerate() {
                cumulative += n;
                let le =
                    LATENCY_BUCKETS_US.get(i).map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(out, "fulcrum_version_latency_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "fulcrum_version_latency_seconds_sum{{{l}}} {}", t.sum_us as f64 / 1e6);
            let _ = writeln!(out, "fulcrum_version_latency_seconds_count{{{l}}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "# HELP fulcrum_version_startups_total Startup checks reported by agents, per version, decision and deny reason.\n# TYPE fulcrum_version_startups_total counter"
        );
        for (k, (n, _)) in &inner.startups {
            let l = labels(&[
                ("tenant", &k.tenant),
                ("model", &k.model),
                ("version", &k.version),
                ("env", &k.env),
                ("decision", k.decision),
                ("reason", &k.reason),
            ]);
            let _ = writeln!(out, "fulcrum_version_startups_total{{{l}}} {n}");
        }
        out
    }

    /// One version's signals, as `GET …/versions/{v}/signals` answers them: per alias and
    /// environment the traffic (with p50/p99 estimated from the histogram), startups by decision
    /// and reason, and drift per feature over the window.
    pub fn version_view(&self, tenant: &str, model: &str, version: &str, now: OffsetDateTime) -> serde_json::Value {
        let drift: Vec<serde_json::Value> = self
            .drift(now)
            .into_iter()
            .filter(|(k, _)| k.0 == tenant && k.1 == model && k.2 == version)
            .map(|(k, features)| {
                serde_json::json!({"alias": k.3, "env": k.4, "features": features.iter().map(|f| serde_json::json!({
                    "feature": f.feature, "psi": f.psi, "values": f.values, "invalid": f.invalid})).collect::<Vec<_>>()})
            })
            .collect();
        let inner = self.inner.lock().expect("signals lock");
        let mine = |t: &str, m: &str, v: &str| t == tenant && m == model && v == version;
        let serving: Vec<serde_json::Value> = inner
            .serving
            .iter()
            .filter(|(k, _)| mine(&k.tenant, &k.model, &k.version))
            .map(|(k, t)| {
                serde_json::json!({"alias": k.alias, "env": k.env, "requests": t.requests, "errors": t.errors,
                    "refused": t.refused, "p50_s": quantile(&t.buckets, 0.5), "p99_s": quantile(&t.buckets, 0.99),
                    "last_report": t.last.format(&time::format_description::well_known::Rfc3339).expect("formats")})
            })
            .collect();
        let startups: Vec<serde_json::Value> = inner
            .startups
            .iter()
            .filter(|(k, _)| mine(&k.tenant, &k.model, &k.version))
            .map(
                |(k, (n, _))| serde_json::json!({"env": k.env, "decision": k.decision, "reason": k.reason, "count": n}),
            )
            .collect();
        serde_json::json!({"serving": serving, "startups": startups, "drift": drift,
                           "window": {"drift_minutes": DRIFT_WINDOW.whole_minutes(), "series_forgotten_after_minutes": FORGET_AFTER.whole_minutes()}})
    }

    /// Serving series held (for tests and the cardinality benchmark).
    pub fn series(&self) -> usize {
        self.inner.lock().expect("signals lock").serving.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_event(version: &str, alias: &str, requests: u64, latency_us: &[u64]) -> String {
        let mut buckets = [0u64; 15];
        for us in latency_us {
            buckets[ServingStats::bucket_of(*us)] += 1;
        }
        serde_json::json!({"data": {"tenant": "acme", "model": "fraud", "version": version, "alias": alias, "env": "prod",
            "stats": {"window_s": 10, "requests": requests, "errors": 1, "refused": 0, "p50_us": 0, "p99_us": 0,
                      "latency_buckets": buckets, "latency_sum_us": latency_us.iter().sum::<u64>()}}})
        .to_string()
    }

    #[test]
    fn windows_from_many_gateways_add_up_into_one_histogram() {
        let s = Signals::default();
        let now = OffsetDateTime::now_utc();
        s.observe("serving_stats", &stats_event("v2", "canary", 3, &[400, 2_000, 2_000_000]), now);
        s.observe("serving_stats", &stats_event("v2", "canary", 2, &[900, 30_000_000]), now);
        s.observe("serving_stats", &stats_event("v1", "production", 1, &[600]), now);
        s.observe("agent_step", "{}", now);
        let text = s.render(now);
        let l = "tenant=\"acme\",model=\"fraud\",version=\"v2\",alias=\"canary\",env=\"prod\"";
        for line in [
            format!("fulcrum_version_requests_total{{{l}}} 5"),
            format!("fulcrum_version_errors_total{{{l}}} 2"),
            format!("fulcrum_version_latency_seconds_bucket{{{l},le=\"0.0005\"}} 1"),
            format!("fulcrum_version_latency_seconds_bucket{{{l},le=\"0.001\"}} 2"),
            format!("fulcrum_version_latency_seconds_bucket{{{l},le=\"2.5\"}} 4"),
            format!("fulcrum_version_latency_seconds_bucket{{{l},le=\"10\"}} 4"),
            format!("fulcrum_version_latency_seconds_bucket{{{l},le=\"+Inf\"}} 5"),
            format!("fulcrum_version_latency_seconds_count{{{l}}} 5"),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert_eq!(s.series(), 2);
    }

    #[test]
    fn startups_count_by_decision_and_reason() {
        let s = Signals::default();
        let now = OffsetDateTime::now_utc();
        let ev = |reason: &str| {
            serde_json::json!({"data": {"tenant": "acme", "model": "fraud", "version": "v2", "env": "prod", "reason": reason}})
                .to_string()
        };
        s.observe("startup_deny", &ev("signature_invalid"), now);
        s.observe("startup_deny", &ev("signature_invalid"), now);
        s.observe("startup_deny", &ev("revoked"), now);
        s.observe("startup_permit", &ev(""), now);
        let text = s.render(now);
        assert!(text.contains("decision=\"deny\",reason=\"signature_invalid\"} 2"), "{text}");
        assert!(text.contains("decision=\"deny\",reason=\"revoked\"} 1"), "{text}");
        assert!(text.contains("decision=\"permit\",reason=\"\"} 1"), "{text}");
    }

    #[test]
    fn cardinality_is_bounded_by_silence_and_by_count() {
        let s = Signals::default();
        let t0 = OffsetDateTime::now_utc();
        s.observe("serving_stats", &stats_event("old", "production", 1, &[1]), t0);
        let later = t0 + FORGET_AFTER + time::Duration::seconds(1);
        assert!(!s.render(later).contains("version=\"old\""), "a silent series is dropped");
        for i in 0..(MAX_SERIES + 10) {
            s.observe(
                "serving_stats",
                &stats_event(&format!("v{i}"), "production", 1, &[1]),
                later + time::Duration::milliseconds(i as i64),
            );
        }
        assert_eq!(s.series(), MAX_SERIES);
        let text = s.render(later + time::Duration::seconds(10));
        assert!(!text.contains("version=\"v0\"") && text.contains(&format!("version=\"v{}\"", MAX_SERIES + 9)));
    }

    #[test]
    fn quantiles_are_estimated_from_the_histogram() {
        let mut b = [0u64; 15];
        assert_eq!(quantile(&b, 0.5), None);
        b[ServingStats::bucket_of(3_000)] = 100; // (2.5 ms, 5 ms]
        let p50 = quantile(&b, 0.5).unwrap();
        assert!((p50 - 0.00375).abs() < 1e-12, "{p50}");
        b[14] = 1;
        assert_eq!(quantile(&b, 1.0), Some(10.0), "the open bucket reads as its lower bound");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
