//! A version's dashboard: canary beside production (requests, errors, refusals, latency), PSI per
//! feature, startup denials by reason, over a chosen time range. The figures are folded from the
//! model's logged events by [`fulcrum_core::dashboard`]; the page shows them as tables (readable
//! without JavaScript) and `dashboard.js` charts the same figures, fetched from `dashboard.json`,
//! with the vendored uPlot.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fulcrum_core::dashboard::{self, Dashboard};
use fulcrum_core::event::EventKind;
use serde::Deserialize;

use super::pages::{UiCaller, Who, problem, render};
use crate::AppState;
use crate::problem::ApiError;
use crate::routes::models::load_version;

/// The ranges offered, with their length.
pub const RANGES: [(&str, time::Duration); 5] = [
    ("15m", time::Duration::minutes(15)),
    ("1h", time::Duration::HOUR),
    ("6h", time::Duration::hours(6)),
    ("24h", time::Duration::DAY),
    ("7d", time::Duration::days(7)),
];

/// Most events read for one dashboard (a week of windows from a few gateways).
const MAX_EVENTS: usize = 50_000;
/// Events read per query, newest first.
const PAGE: u32 = 2_000;
/// Buckets per chart.
const BUCKETS: usize = 60;

#[derive(Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    range: String,
}

fn range_of(q: &RangeQuery) -> Result<(&'static str, time::Duration), ApiError> {
    let want = if q.range.is_empty() { "1h" } else { q.range.as_str() };
    RANGES
        .iter()
        .find(|(n, _)| *n == want)
        .copied()
        .ok_or_else(|| ApiError::bad_request("bad_range", "range is one of 15m, 1h, 6h, 24h, 7d"))
}

/// The dashboard's figures for a version the caller may read.
async fn figures(
    state: &AppState,
    ui: &UiCaller,
    name: &str,
    label: &str,
    span: time::Duration,
) -> Result<(String, Dashboard), ApiError> {
    let (m, v) = load_version(state, &ui.caller, name, label).await?;
    let profile = match v.release["reference_profile"]["digest"].as_str().and_then(|d| d.parse().ok()) {
        Some(d) => Some(state.reference_profile(&d).await?),
        None => None,
    };
    let kinds = [EventKind::ServingStats, EventKind::ServingInputs, EventKind::StartupPermit, EventKind::StartupDeny];
    let to = state.clock.now();
    let from = to - span;
    // Newest first, a page at a time, until the range's start (or MAX_EVENTS).
    let mut events = Vec::new();
    let mut before = i64::MAX;
    loop {
        let page = state.store.model_events_newest(&m.tenant, &m.name, &kinds, before, PAGE).await?;
        let Some(last) = page.last() else { break };
        before = last.seq;
        let older = dashboard::Observation::from_stored(&last.body).is_some_and(|o| o.ts < from);
        let full = page.len() == PAGE as usize;
        events.extend(page);
        if older || !full || events.len() >= MAX_EVENTS {
            break;
        }
    }
    let observed: Vec<_> = events.iter().filter_map(|e| dashboard::Observation::from_stored(&e.body)).collect();
    let range = dashboard::Range { version: &v.label, from, to, buckets: BUCKETS, profile: profile.as_deref() };
    Ok((m.name, dashboard::fold(range, &observed)))
}

struct AliasRow {
    alias: String,
    env: String,
    requests: u64,
    error_rate: String,
    refused: u64,
    p99: String,
}

#[derive(Template)]
#[template(path = "ui/dashboard.html")]
struct DashboardPage {
    who: Who,
    model: String,
    label: String,
    range: &'static str,
    ranges: Vec<&'static str>,
    aliases: Vec<AliasRow>,
    permits: u64,
    denies: Vec<(String, u64)>,
    /// (feature, PSI over the range)
    psi: Vec<(String, String)>,
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 { "—".into() } else { format!("{:.2} %", n as f64 * 100.0 / of as f64) }
}

pub async fn page(
    State(state): State<AppState>,
    ui: UiCaller,
    Path((name, label)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let who = ui.who(&state);
    let got = async {
        let (range, span) = range_of(&q)?;
        Ok::<_, ApiError>((range, figures(&state, &ui, &name, &label, span).await?))
    }
    .await;
    let (range, (model, d)) = match got {
        Ok(x) => x,
        Err(e) => return problem(who, &e),
    };
    let page = DashboardPage {
        who,
        model,
        label,
        range,
        ranges: RANGES.iter().map(|(n, _)| *n).collect(),
        aliases: d
            .aliases
            .iter()
            .map(|a| AliasRow {
                alias: a.alias.clone(),
                env: a.env.clone(),
                requests: a.total_requests,
                error_rate: pct(a.total_errors, a.total_requests),
                refused: a.total_refused,
                p99: a.overall_p99_ms.map_or_else(|| "—".into(), |ms| format!("{ms:.1} ms")),
            })
            .collect(),
        permits: d.permits,
        denies: d.denies.clone(),
        psi: d
            .psi
            .iter()
            .map(|f| (f.feature.clone(), f.overall.map_or_else(|| "—".into(), |p| format!("{p:.3}"))))
            .collect(),
    };
    render(StatusCode::OK, &page)
}

/// The same figures as JSON, for the charts.
pub async fn data(
    State(state): State<AppState>,
    ui: UiCaller,
    Path((name, label)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let got = async {
        let (_, span) = range_of(&q)?;
        figures(&state, &ui, &name, &label, span).await
    }
    .await;
    match got {
        Ok((_, d)) => Json(d).into_response(),
        Err(e) => e.into_response(),
    }
}
