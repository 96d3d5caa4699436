//! Prometheus metrics, rendered as text at `/metrics`.
//!
//! Hand-rolled on atomics and one short mutex so that several registries can live in one test
//! process (no global recorder) and the resolve hot path pays a few nanoseconds.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) → count
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    durations: Mutex<BTreeMap<String, Hist>>,
    pub resolve_permit: AtomicU64,
    pub resolve_deny: AtomicU64,
    pub resolve_cache_miss: AtomicU64,
    pub startup_permit: AtomicU64,
    pub startup_deny: AtomicU64,
}

fn method_name(m: &axum::http::Method) -> &'static str {
    match *m {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

impl Metrics {
    pub fn observe(&self, route: &str, method: &axum::http::Method, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        {
            let mut r = self.requests.lock().expect("metrics lock");
            if let Some(c) = r.get_mut(&(route.to_owned(), method_name(method), status)) {
                *c += 1;
            } else {
                r.insert((route.to_owned(), method_name(method), status), 1);
            }
        }
        let mut d = self.durations.lock().expect("metrics lock");
        let h = match d.get_mut(route) {
            Some(h) => h,
            None => d.entry(route.to_owned()).or_default(),
        };
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP fulcrum_http_requests_total HTTP requests by route, method and status.\n# TYPE fulcrum_http_requests_total counter\n");
        for ((route, method, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "fulcrum_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP fulcrum_http_request_duration_seconds Time to produce a response.\n# TYPE fulcrum_http_request_duration_seconds histogram\n");
        for (route, h) in self.durations.lock().expect("metrics lock").iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "fulcrum_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "fulcrum_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "fulcrum_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "fulcrum_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let counter = |out: &mut String,
                       name: &str,
                       help: &str,
                       label: &str,
                       pairs: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (v, c) in pairs {
                let _ = writeln!(
                    out,
                    "{name}{{{label}=\"{v}\"}} {}",
                    c.load(Ordering::Relaxed)
                );
            }
        };
        counter(
            &mut out,
            "fulcrum_resolve_total",
            "Resolve answers by the registry's decision.",
            "decision",
            &[
                ("permit", &self.resolve_permit),
                ("deny", &self.resolve_deny),
            ],
        );
        counter(
            &mut out,
            "fulcrum_startup_reports_total",
            "Startup decisions reported by agents.",
            "decision",
            &[
                ("permit", &self.startup_permit),
                ("deny", &self.startup_deny),
            ],
        );
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
