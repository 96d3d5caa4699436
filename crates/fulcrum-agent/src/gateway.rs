//! The enforcing gateway (SPEC §4, "LLM gateway"): a reverse proxy in front of a model server
//! that answers only with a version its guard still serves — Approved, signed, unrevoked — and
//! with the guardrails that version's signed model card sets.
//!
//! For each request, in order:
//! 1. pick a route (alias) by weight — canary vs production — falling back to another route
//!    that serves when the picked one is quiesced; none serving is `503 quiesced`;
//! 2. guardrails: the caller's declared purpose, the request size, blocked patterns;
//! 3. Open Inference Protocol: the request is pinned to the route's version
//!    (`/v2/models/{m}/infer` → `/v2/models/{m}/versions/{v}/infer`), so the model server cannot
//!    answer with another version; its repository API is never reachable through the gateway;
//! 4. the answer: bounded, checked for blocked patterns, and **withheld (503) if the version was
//!    quiesced while the request was in flight** — after the quiesce point nothing the revoked
//!    version computed reaches a caller;
//! 5. per-version latency and error counts, reported to the registry every window; and, when
//!    the version carries a reference profile, its inference inputs binned per feature (drift),
//!    reported the same way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::guard::{Guard, Serving};
use crate::report::Reporter;

/// What the upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Open Inference Protocol (KServe V2): requests are pinned to the served version.
    Oip,
    /// Any HTTP server holding exactly one version (one route only): paths pass unchanged.
    Http,
}

/// One alias the gateway serves, its share of traffic and the guard that keeps it honest.
#[derive(Debug)]
pub struct Route {
    pub alias: String,
    pub weight: u32,
    pub guard: Arc<Guard>,
}

#[derive(Debug, Default)]
struct Window {
    requests: u64,
    errors: u64,
    refused: u64,
    /// Latencies in µs (the first [`SAMPLES`] of the window).
    latencies: Vec<u32>,
    /// Every answered request's latency, by bucket (`ServingStats::latency_buckets`).
    buckets: [u64; 15],
    sum_us: u64,
}

/// One version's figures behind a route: the open window and the totals since start.
#[derive(Debug, Default)]
struct Counts {
    window: Window,
    /// This window's inputs binned against the version's reference profile (its digest).
    inputs: Option<(fulcrum_core::Digest, fulcrum_core::drift::Tally)>,
    /// ok, error, refused since start.
    totals: [u64; 3],
}

/// Latency samples kept per version and window.
const SAMPLES: usize = 100_000;

#[derive(Debug)]
pub struct Gateway {
    routes: Vec<Route>,
    model: String,
    upstream: Uri,
    protocol: Protocol,
    /// Callers' tokens, when the gateway checks them itself: the purpose then comes from the
    /// verified token (and the purpose header is ignored).
    pub callers: Option<crate::caller::CallerAuth>,
    /// Without `callers`: the header carrying the caller's declared purpose, which the
    /// authenticating ingress in front must set (and strip from callers).
    pub purpose_header: HeaderName,
    /// Longest wait for the upstream's whole answer.
    pub timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    counter: AtomicU64,
    total_weight: u64,
    /// Per route (same order as `routes`): version → figures. Looked up by `&str`, so a request
    /// allocates nothing here.
    counts: Vec<Mutex<BTreeMap<String, Counts>>>,
    /// Requests refused because no route served.
    unserved: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok = 0,
    Error = 1,
    Refused = 2,
}

/// Why the gateway answered itself.
fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:fulcrum:gateway:{code}"),
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "code": code,
        "detail": detail.into(),
    });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"))], body.to_string())
        .into_response()
}

/// Headers that belong to one connection, never forwarded.
const HOP: [&str; 8] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"];

fn forwardable(h: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    h.iter().filter(|(n, _)| !HOP.contains(&n.as_str()) && *n != header::CONTENT_LENGTH)
}

/// No `.`/`..` segments, no empty segments inside, no percent-encoded dot, slash or backslash.
fn plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !path.contains('\\')
        && !["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        && !path.trim_end_matches('/').split('/').skip(1).any(|s| s.is_empty() || s == "." || s == "..")
}

/// An OIP model path: `/v2/models/{name}[/versions/{v}][/rest]`.
fn model_path(path: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = path.strip_prefix("/v2/models/")?;
    let (name, rest) = rest.split_once('/').map_or((rest, ""), |(n, r)| (n, r));
    if let Some(v) = rest.strip_prefix("versions/") {
        let (v, tail) = v.split_once('/').map_or((v, ""), |(v, t)| (v, t));
        return Some((name, Some(v), tail));
    }
    Some((name, None, rest))
}

impl Gateway {
    /// # Errors
    /// No route, a zero total weight, an unusable upstream URL, several routes over plain HTTP,
    /// or routes guarding different models.
    pub fn new(routes: Vec<Route>, upstream: &str, protocol: Protocol) -> Result<Self, String> {
        let upstream: Uri = upstream.parse().map_err(|e| format!("upstream {upstream}: {e}"))?;
        if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
            return Err("the upstream must be http://HOST:PORT (the model server beside the gateway)".into());
        }
        let total_weight: u64 = routes.iter().map(|r| u64::from(r.weight)).sum();
        if routes.is_empty() || total_weight == 0 {
            return Err("at least one route with a weight above 0".into());
        }
        if protocol == Protocol::Http && routes.len() > 1 {
            return Err("splitting traffic needs the Open Inference Protocol (versions side by side)".into());
        }
        let model = routes[0].guard.reference.split('@').next().unwrap_or_default().to_owned();
        if routes.iter().any(|r| r.guard.reference.split('@').next() != Some(model.as_str())) {
            return Err("every route must guard the same model".into());
        }
        let counts = routes.iter().map(|_| Mutex::new(BTreeMap::new())).collect();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(http);
        Ok(Self {
            routes,
            model,
            upstream,
            protocol,
            callers: None,
            purpose_header: HeaderName::from_static("x-fulcrum-purpose"),
            timeout: Duration::from_secs(60),
            client,
            counter: AtomicU64::new(0),
            total_weight,
            counts,
            unserved: AtomicU64::new(0),
        })
    }

    /// Ready while at least one route serves.
    pub fn is_ready(&self) -> bool {
        self.routes.iter().any(|r| r.guard.serving().is_some())
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Pick by weight; fall back to any route that serves.
    fn pick(&self) -> Option<(&Route, Arc<Serving>)> {
        let mut n = self.counter.fetch_add(1, Ordering::Relaxed) % self.total_weight;
        let mut first = &self.routes[0];
        for r in &self.routes {
            if n < u64::from(r.weight) {
                first = r;
                break;
            }
            n -= u64::from(r.weight);
        }
        if let Some(s) = first.guard.serving() {
            return Some((first, s));
        }
        self.routes.iter().find_map(|r| r.guard.serving().map(|s| (r, s)))
    }

    fn quiesced(&self) -> Response {
        let why: Vec<String> = self
            .routes
            .iter()
            .map(|r| match r.guard.last_step(&["quiesce", "deny"]) {
                Some(s) => format!("{}: {}", r.alias, s.detail),
                None => format!("{}: not loaded yet", r.alias),
            })
            .collect();
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "quiesced",
            format!("no permitted version serves ({})", why.join("; ")),
        )
    }

    fn count(&self, route: &Route, version: &str, outcome: Outcome, micros: Option<u32>) {
        let i = self.routes.iter().position(|r| std::ptr::eq(r, route)).expect("a route of this gateway");
        let mut m = self.counts[i].lock().expect("gateway lock");
        if !m.contains_key(version) {
            m.insert(version.to_owned(), Counts::default());
        }
        let c = m.get_mut(version).expect("inserted above");
        c.totals[outcome as usize] += 1;
        let w = &mut c.window;
        if outcome == Outcome::Refused {
            w.refused += 1;
            return;
        }
        w.requests += 1;
        if outcome == Outcome::Error {
            w.errors += 1;
        }
        if let Some(us) = micros {
            w.buckets[fulcrum_core::event::ServingStats::bucket_of(u64::from(us))] += 1;
            w.sum_us += u64::from(us);
            if w.latencies.len() < SAMPLES {
                w.latencies.push(us);
            }
        }
    }

    /// Bin one inference request's inputs against the served version's reference profile.
    fn tally(&self, route: &Route, version: &str, serving: &Serving, body: &[u8]) {
        let Some((digest, profile)) = &serving.profile else { return };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else { return };
        let i = self.routes.iter().position(|r| std::ptr::eq(r, route)).expect("a route of this gateway");
        let mut m = self.counts[i].lock().expect("gateway lock");
        if !m.contains_key(version) {
            m.insert(version.to_owned(), Counts::default());
        }
        let c = m.get_mut(version).expect("inserted above");
        // Binned straight into the window's tally (one per version and profile).
        if c.inputs.as_ref().is_none_or(|(d, _)| d != digest) {
            c.inputs = Some((*digest, fulcrum_core::drift::Tally::for_profile(profile)));
        }
        let (_, tally) = c.inputs.as_mut().expect("set above");
        profile.observe_oip(&json, tally);
    }

    /// Serve one request.
    pub async fn handle(&self, req: Request<Body>) -> Response {
        let started = Instant::now();
        let path = req.uri().path().to_owned();
        if !plain_path(&path) {
            // Dot segments or encoded separators could be resolved by the upstream into another
            // model, version or its repository API after the gateway pinned the request.
            return problem(StatusCode::BAD_REQUEST, "bad_path", "dot segments and encoded separators are refused");
        }
        let (explicit, tail) = match self.protocol {
            Protocol::Http => (None, String::new()),
            Protocol::Oip => {
                if path == "/v2/health/ready" {
                    return if self.is_ready() { StatusCode::OK.into_response() } else { self.quiesced() };
                }
                if path.starts_with("/v2/repository") {
                    return problem(
                        StatusCode::FORBIDDEN,
                        "repository_forbidden",
                        "the model repository is driven by the agent only",
                    );
                }
                match model_path(&path) {
                    Some((name, version, tail)) if name == self.model => {
                        (version.map(str::to_owned), format!("/{tail}").trim_end_matches('/').to_owned())
                    }
                    Some((name, ..)) => {
                        return problem(
                            StatusCode::NOT_FOUND,
                            "model_not_served",
                            format!("{name} is not served here"),
                        );
                    }
                    None if path == "/v2" || path == "/v2/health/live" => (None, String::new()),
                    None => return problem(StatusCode::NOT_FOUND, "not_found", format!("{path} is not served here")),
                }
            }
        };
        let picked = match &explicit {
            Some(v) => {
                self.routes.iter().find_map(|r| r.guard.serving().filter(|s| s.document.version == *v).map(|s| (r, s)))
            }
            None => self.pick(),
        };
        let Some((route, serving)) = picked else {
            if let Some(v) = explicit {
                return problem(StatusCode::NOT_FOUND, "version_not_served", format!("version {v} is not served"));
            }
            self.unserved.fetch_add(1, Ordering::Relaxed);
            return self.quiesced();
        };
        let version = serving.document.version.clone();
        let refuse = |status, code, detail: String| {
            self.count(route, &version, Outcome::Refused, None);
            problem(status, code, detail)
        };
        let g = &serving.guardrails;
        let declared: Vec<String> = match &self.callers {
            Some(auth) => {
                match auth.check(req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())).await {
                    Ok(c) => c.purposes,
                    Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
                }
            }
            None => req
                .headers()
                .get(&self.purpose_header)
                .and_then(|v| v.to_str().ok())
                .map(|p| vec![p.to_owned()])
                .unwrap_or_default(),
        };
        if !g.purposes.is_empty() {
            if declared.is_empty() {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "purpose_required",
                    format!("{} needs a declared purpose", self.model),
                );
            }
            if !declared.iter().any(|p| g.purposes.contains(p)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "purpose_not_allowed",
                    format!("purpose {} is not one the model card allows", declared.join(",")),
                );
            }
        }
        let (parts, body) = req.into_parts();
        let limit = usize::try_from(g.max_request_bytes).unwrap_or(usize::MAX);
        let too_big = || format!("the request is larger than the model card's {} bytes", g.max_request_bytes);
        if parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > g.max_request_bytes)
        {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", too_big());
        }
        let Ok(body) = axum::body::to_bytes(body, limit).await else {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", too_big());
        };
        if let Some(p) = g.blocked(&body) {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "blocked_content",
                format!("the request contains a blocked pattern ({p:?})"),
            );
        }
        if self.protocol == Protocol::Oip && tail == "/infer" {
            self.tally(route, &version, &serving, &body);
        }
        let target = match self.protocol {
            Protocol::Oip if path.starts_with("/v2/models/") => {
                format!("/v2/models/{}/versions/{version}{tail}", self.model)
            }
            _ => path.clone(),
        };
        let pq = match parts.uri.query() {
            Some(q) => format!("{target}?{q}"),
            None => target,
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.upstream.authority().expect("checked in new").clone())
            .path_and_query(pq)
            .build();
        let Ok(uri) = uri else {
            return refuse(StatusCode::BAD_REQUEST, "bad_path", "the request path cannot be forwarded".into());
        };
        let mut up = Request::builder().method(parts.method).uri(uri);
        for (n, v) in forwardable(&parts.headers) {
            // A token the gateway checked is not passed on to the model server.
            if self.callers.is_some() && n == header::AUTHORIZATION {
                continue;
            }
            up = up.header(n, v);
        }
        let up = up.body(Full::new(body)).expect("a request from valid parts");
        let answer = tokio::time::timeout(self.timeout, async {
            let r = self.client.request(up).await.map_err(|e| e.to_string())?;
            let (rp, rb) = r.into_parts();
            let max = usize::try_from(g.max_response_bytes).unwrap_or(usize::MAX);
            match Limited::new(rb, max).collect().await {
                Ok(b) => Ok((rp, b.to_bytes())),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => Err("too_large".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let (rp, rb) = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) if e == "too_large" => {
                self.count(route, &version, Outcome::Error, Some(micros));
                return problem(
                    StatusCode::BAD_GATEWAY,
                    "response_too_large",
                    format!("the answer is larger than the model card's {} bytes; withheld", g.max_response_bytes),
                );
            }
            Ok(Err(e)) => {
                self.count(route, &version, Outcome::Error, Some(micros));
                return problem(StatusCode::BAD_GATEWAY, "upstream_unavailable", format!("the model server: {e}"));
            }
            Err(_) => {
                self.count(route, &version, Outcome::Error, Some(micros));
                return problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the model server did not answer in time",
                );
            }
        };
        // The quiesce point: an answer computed by a version that stopped serving while the
        // request was in flight is withheld.
        if route.guard.serving().is_none_or(|s| s.document.artifact_digest != serving.document.artifact_digest) {
            self.count(route, &version, Outcome::Refused, None);
            return self.quiesced();
        }
        if let Some(p) = g.blocked(&rb) {
            self.count(route, &version, Outcome::Error, Some(micros));
            return problem(
                StatusCode::BAD_GATEWAY,
                "blocked_content",
                format!("the answer contains a blocked pattern ({p:?}); withheld"),
            );
        }
        let outcome = if rp.status.is_server_error() { Outcome::Error } else { Outcome::Ok };
        self.count(route, &version, outcome, Some(micros));
        let mut resp = Response::builder().status(rp.status);
        for (n, v) in forwardable(&rp.headers) {
            resp = resp.header(n, v);
        }
        resp.header("x-fulcrum-alias", route.alias.as_str())
            .header("x-fulcrum-version", version.as_str())
            .body(Body::from(rb))
            .unwrap_or_else(|_| problem(StatusCode::BAD_GATEWAY, "bad_answer", "the model server's answer"))
    }

    /// Prometheus text: cumulative requests per alias, version and outcome.
    pub fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from(
            "# HELP fulcrum_gateway_requests_total Requests through the gateway.\n# TYPE fulcrum_gateway_requests_total counter\n",
        );
        for (route, counts) in self.routes.iter().zip(&self.counts) {
            for (version, c) in counts.lock().expect("gateway lock").iter() {
                for (outcome, n) in ["ok", "error", "refused"].iter().zip(c.totals) {
                    let _ = writeln!(
                        out,
                        "fulcrum_gateway_requests_total{{alias=\"{}\",version=\"{version}\",outcome=\"{outcome}\"}} {n}",
                        route.alias
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP fulcrum_gateway_unserved_total Requests answered 503 because no version served.\n# TYPE fulcrum_gateway_unserved_total counter\nfulcrum_gateway_unserved_total {}",
            self.unserved.load(Ordering::Relaxed)
        );
        out
    }

    /// Close the current window: per (alias, version) figures, as reported.
    pub fn take_window(&self, window: Duration) -> Vec<(String, String, fulcrum_core::event::ServingStats)> {
        let mut out = vec![];
        for (route, counts) in self.routes.iter().zip(&self.counts) {
            for (version, c) in counts.lock().expect("gateway lock").iter_mut() {
                let mut w = std::mem::take(&mut c.window);
                if w.requests == 0 && w.refused == 0 {
                    continue;
                }
                w.latencies.sort_unstable();
                let at = |q: f64| -> u64 {
                    if w.latencies.is_empty() {
                        return 0;
                    }
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
                    let i = ((w.latencies.len() as f64 * q).ceil() as usize).clamp(1, w.latencies.len()) - 1;
                    u64::from(w.latencies[i])
                };
                let stats = fulcrum_core::event::ServingStats {
                    window_s: u32::try_from(window.as_secs()).unwrap_or(u32::MAX).max(1),
                    requests: w.requests,
                    errors: w.errors,
                    refused: w.refused,
                    p50_us: at(0.50),
                    p99_us: at(0.99),
                    latency_buckets: w.buckets,
                    latency_sum_us: w.sum_us,
                };
                out.push((route.alias.clone(), version.clone(), stats));
            }
        }
        out
    }

    /// Close the current window of binned inputs: per (alias, version), the profile's digest and
    /// the tally (only where inputs were seen).
    pub fn take_inputs(&self) -> Vec<(String, String, fulcrum_core::Digest, fulcrum_core::drift::Tally)> {
        let mut out = vec![];
        for (route, counts) in self.routes.iter().zip(&self.counts) {
            for (version, c) in counts.lock().expect("gateway lock").iter_mut() {
                if let Some((d, t)) = c.inputs.take().filter(|(_, t)| t.observed() > 0) {
                    out.push((route.alias.clone(), version.clone(), d, t));
                }
            }
        }
        out
    }

    /// Every `window`, send each version's figures to the registry.
    pub async fn report(self: Arc<Self>, reporter: Arc<Reporter>, window: Duration) {
        let mut tick = tokio::time::interval(window);
        tick.tick().await;
        loop {
            tick.tick().await;
            for (alias, version, stats) in self.take_window(window) {
                let Some(route) = self.routes.iter().find(|r| r.alias == alias) else { continue };
                reporter.send(serde_json::json!({
                    "ref": route.guard.reference, "env": route.guard.env, "kind": "stats",
                    "version": version, "agent": route.guard.agent.name, "stats": stats,
                }));
            }
            for (alias, version, profile, tally) in self.take_inputs() {
                let Some(route) = self.routes.iter().find(|r| r.alias == alias) else { continue };
                reporter.send(serde_json::json!({
                    "ref": route.guard.reference, "env": route.guard.env, "kind": "inputs",
                    "version": version, "agent": route.guard.agent.name,
                    "inputs": {"profile": profile.to_string(), "window_s": window.as_secs().max(1), "tally": tally},
                }));
            }
        }
    }
}

/// Serve callers on `listener` until the task is dropped.
///
/// # Errors
/// The listener failing.
pub async fn serve(gw: Arc<Gateway>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let gw = gw.clone();
        async move { gw.handle(req).await }
    });
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::{model_path, plain_path};

    #[test]
    fn paths_with_dot_segments_or_encoded_separators_are_not_plain() {
        for bad in [
            "/v2/models/fraud/../../v2/repository/models/fraud/unload",
            "/v2/models/fraud/./infer",
            "/v2/models//infer",
            "/v2/models/fraud/%2e%2e/x",
            "/v2/models/fraud%2Finfer",
            "/v2/models/fraud\\infer",
        ] {
            assert!(!plain_path(bad), "{bad}");
        }
        for good in ["/", "/v2", "/v2/models/fraud/infer", "/v2/models/fraud/versions/2/infer/", "/v2/health/ready"] {
            assert!(plain_path(good), "{good}");
        }
    }

    #[test]
    fn model_paths_split_into_name_version_and_rest() {
        assert_eq!(model_path("/v2/models/risk/infer"), Some(("risk", None, "infer")));
        assert_eq!(model_path("/v2/models/risk/versions/3/infer"), Some(("risk", Some("3"), "infer")));
        assert_eq!(model_path("/v2/models/risk"), Some(("risk", None, "")));
        assert_eq!(model_path("/v2/models/risk/versions/3"), Some(("risk", Some("3"), "")));
        assert_eq!(model_path("/v2/health/ready"), None);
    }

    proptest::proptest! {
        /// Any path a caller sends: never a panic, and what is parsed is exactly what was sent
        /// (so the rewrite to the pinned version cannot smuggle another model or version).
        #[test]
        fn parsing_a_model_path_loses_nothing(path in "(/v2/models/)?[a-z0-9/._-]{0,40}") {
            if let Some((name, version, tail)) = model_path(&path) {
                let mut back = format!("/v2/models/{name}");
                if let Some(v) = version {
                    back.push_str(&format!("/versions/{v}"));
                }
                if !tail.is_empty() || path.ends_with('/') {
                    back.push('/');
                    back.push_str(tail);
                }
                proptest::prop_assert_eq!(back.trim_end_matches('/'), path.trim_end_matches('/'));
                proptest::prop_assert!(!name.contains('/'));
            }
        }
    }
}
