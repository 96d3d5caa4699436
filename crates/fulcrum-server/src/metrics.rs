//! Prometheus metrics, rendered as text at `/metrics`.
//!
//! Hand-rolled on atomics so that several registries can live in one test
//! process (no global recorder) and the resolve hot path pays a few nanoseconds.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Counters of one (route, method): status codes and a latency histogram, all atomics, so
/// recording takes a read lock and a few relaxed increments.
#[derive(Debug)]
struct RouteStats {
    /// Index = status - 100.
    status: Box<[AtomicU64; 500]>,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for RouteStats {
    fn default() -> Self {
        Self {
            status: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OTHER"];

/// Per route template (indexed as [`crate::edge::route_labels`]), per method; allocated on a
/// route's first request, then only atomics (no lock, no reference count per request).
#[derive(Debug)]
struct PerRoute(Box<[OnceLock<Box<[RouteStats; METHODS.len()]>>]>);

impl Default for PerRoute {
    fn default() -> Self {
        Self(crate::edge::route_labels().iter().map(|_| OnceLock::new()).collect())
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    routes: PerRoute,
    pub resolve_permit: AtomicU64,
    pub resolve_deny: AtomicU64,
    pub resolve_cache_miss: AtomicU64,
    pub startup_permit: AtomicU64,
    pub startup_deny: AtomicU64,
    /// Outbox position of the last event NATS JetStream acknowledged.
    pub relay_position: AtomicU64,
    /// Times the NATS relay lost its connection or a publish failed.
    pub relay_failures: AtomicU64,
    /// Events webhooks gave up on (dead letters).
    pub webhook_dead: AtomicU64,
    /// Position (in the decision log) of the last decision the SIEM endpoint accepted.
    pub decision_log_position: AtomicU64,
    /// Decision-log uploads retried (the endpoint refused or was unreachable).
    pub decision_log_retries: AtomicU64,
    /// Blob bytes the registry sent itself.
    pub blob_bytes_served: AtomicU64,
    /// Downloads answered with a pre-signed object-storage URL instead of the bytes.
    pub blob_redirects: AtomicU64,
    /// Refused bearer tokens by reason code.
    token_refusals: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

/// The index of a method in [`METHODS`].
pub fn method_index(m: &axum::http::Method) -> usize {
    match *m {
        axum::http::Method::GET => 0,
        axum::http::Method::POST => 1,
        axum::http::Method::PUT => 2,
        axum::http::Method::DELETE => 3,
        axum::http::Method::HEAD => 4,
        _ => 5,
    }
}

impl Metrics {
    pub fn token_refused(&self, code: &'static str) {
        *self.token_refusals.lock().expect("metrics lock").entry(code).or_default() += 1;
    }

    /// Count one answer of route `route` (an index of [`crate::edge::route_labels`]) and
    /// method `method` (an index of [`METHODS`], see [`method_index`]).
    pub fn observe(&self, route: usize, method: usize, status: u16, took: Duration) {
        let Some(slot) = self.routes.0.get(route) else { return };
        let s = &slot.get_or_init(|| Box::new(std::array::from_fn(|_| RouteStats::default())))[method];
        if let Some(c) = s.status.get(usize::from(status.saturating_sub(100))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            s.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        s.sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        s.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The served routes, by label, in label order.
    fn served(&self) -> Vec<(&'static str, &[RouteStats; METHODS.len()])> {
        let labels = crate::edge::route_labels();
        // Labels are in order already (templates sorted, `unmatched` last).
        self.routes.0.iter().zip(labels).filter_map(|(slot, l)| slot.get().map(|s| (*l, &**s))).collect()
    }

    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let routes = self.served();
        out.push_str("# HELP fulcrum_http_requests_total HTTP requests by route, method and status.\n# TYPE fulcrum_http_requests_total counter\n");
        for (route, per_method) in routes.iter() {
            for (m, s) in METHODS.iter().zip(per_method.iter()) {
                for (i, c) in s.status.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "fulcrum_http_requests_total{{route=\"{route}\",method=\"{m}\",status=\"{}\"}} {n}",
                            i + 100
                        );
                    }
                }
            }
        }
        out.push_str("# HELP fulcrum_http_request_duration_seconds Time to produce a response.\n# TYPE fulcrum_http_request_duration_seconds histogram\n");
        for (route, per_method) in routes.iter() {
            for (m, s) in METHODS.iter().zip(per_method.iter()) {
                let count = s.count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let mut cumulative = 0;
                for (i, b) in BUCKETS.iter().enumerate() {
                    cumulative += s.buckets[i].load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "fulcrum_http_request_duration_seconds_bucket{{route=\"{route}\",method=\"{m}\",le=\"{b}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "fulcrum_http_request_duration_seconds_bucket{{route=\"{route}\",method=\"{m}\",le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(
                    out,
                    "fulcrum_http_request_duration_seconds_sum{{route=\"{route}\",method=\"{m}\"}} {}",
                    s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
                );
                let _ = writeln!(
                    out,
                    "fulcrum_http_request_duration_seconds_count{{route=\"{route}\",method=\"{m}\"}} {count}"
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, label: &str, pairs: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (v, c) in pairs {
                let _ = writeln!(out, "{name}{{{label}=\"{v}\"}} {}", c.load(Ordering::Relaxed));
            }
        };
        counter(
            &mut out,
            "fulcrum_resolve_total",
            "Resolve answers by the registry's decision.",
            "decision",
            &[("permit", &self.resolve_permit), ("deny", &self.resolve_deny)],
        );
        counter(
            &mut out,
            "fulcrum_startup_reports_total",
            "Startup decisions reported by agents.",
            "decision",
            &[("permit", &self.startup_permit), ("deny", &self.startup_deny)],
        );
        let _ = writeln!(
            out,
            "# HELP fulcrum_relay_position Outbox position of the last event NATS acknowledged.\n# TYPE fulcrum_relay_position gauge\nfulcrum_relay_position {}\n# HELP fulcrum_relay_failures_total NATS relay interruptions.\n# TYPE fulcrum_relay_failures_total counter\nfulcrum_relay_failures_total {}",
            self.relay_position.load(Ordering::Relaxed),
            self.relay_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP fulcrum_blob_bytes_served_total Blob bytes the registry sent itself.\n# TYPE fulcrum_blob_bytes_served_total counter\nfulcrum_blob_bytes_served_total {}\n# HELP fulcrum_blob_redirects_total Downloads sent to object storage with a pre-signed URL.\n# TYPE fulcrum_blob_redirects_total counter\nfulcrum_blob_redirects_total {}",
            self.blob_bytes_served.load(Ordering::Relaxed),
            self.blob_redirects.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP fulcrum_webhook_dead_letters_total Events webhooks gave up on after every retry.\n# TYPE fulcrum_webhook_dead_letters_total counter\nfulcrum_webhook_dead_letters_total {}",
            self.webhook_dead.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP fulcrum_decision_log_position Position of the last decision the SIEM endpoint accepted.\n# TYPE fulcrum_decision_log_position gauge\nfulcrum_decision_log_position {}\n# HELP fulcrum_decision_log_retries_total Decision-log uploads retried.\n# TYPE fulcrum_decision_log_retries_total counter\nfulcrum_decision_log_retries_total {}",
            self.decision_log_position.load(Ordering::Relaxed),
            self.decision_log_retries.load(Ordering::Relaxed)
        );
        let refusals: Vec<(&str, u64)> =
            self.token_refusals.lock().expect("metrics lock").iter().map(|(k, v)| (*k, *v)).collect();
        out.push_str("# HELP fulcrum_auth_tokens_refused_total Bearer tokens refused, by reason.\n# TYPE fulcrum_auth_tokens_refused_total counter\n");
        for (reason, n) in refusals {
            let _ = writeln!(out, "fulcrum_auth_tokens_refused_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP fulcrum_resolve_cache_misses_total Resolve answers that had to be signed on request.\n# TYPE fulcrum_resolve_cache_misses_total counter\nfulcrum_resolve_cache_misses_total {}",
            self.resolve_cache_miss.load(Ordering::Relaxed)
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
