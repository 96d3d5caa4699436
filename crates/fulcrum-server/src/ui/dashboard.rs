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
use std::collections::HashMap;
use std::sync::Mutex;

use fulcrum_core::dashboard::{Dashboard, Fold, Observation, Window};
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

/// Folds kept per (tenant, model, version, range) for the window they cover: a view within the
/// same window reads only the events logged since the last one (the page and its charts' JSON,
/// a dashboard left open). At most [`KEPT`]; a new window starts afresh.
#[derive(Debug, Default)]
pub struct Folds {
    kept: Mutex<HashMap<FoldKey, (i64, Fold)>>,
}

type FoldKey = (String, String, String, &'static str);

/// Folds kept at most.
const KEPT: usize = 64;

impl Folds {
    fn take(&self, key: &FoldKey, window: Window) -> Option<(i64, Fold)> {
        let mut kept = self.kept.lock().expect("folds lock");
        kept.remove(key).filter(|(_, f)| f.window() == window)
    }

    fn keep(&self, key: FoldKey, seen: i64, fold: Fold) {
        let mut kept = self.kept.lock().expect("folds lock");
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(key, (seen, fold));
    }
}

/// The dashboard's figures for a version the caller may read.
async fn figures(
    state: &AppState,
    ui: &UiCaller,
    name: &str,
    label: &str,
    (range, span): (&'static str, time::Duration),
) -> Result<(String, Dashboard), ApiError> {
    let (m, v) = load_version(state, &ui.caller, name, label).await?;
    let window = Window::ending(state.clock.now(), span, BUCKETS);
    let key = (m.tenant.clone(), m.name.clone(), v.label.to_string(), range);
    let (mut fold, since) = match state.ui_folds.take(&key, window) {
        Some((seen, fold)) => (fold, seen),
        None => {
            let profile = match v.release["reference_profile"]["digest"].as_str().and_then(|d| d.parse().ok()) {
                Some(d) => Some(state.reference_profile(&d).await?),
                None => None,
            };
            (Fold::new(&v.label, window, profile), 0)
        }
    };
    // Newest first, a page at a time, until what was folded already, the window's start, or
    // MAX_EVENTS.
    let kinds = [EventKind::ServingStats, EventKind::ServingInputs, EventKind::StartupPermit, EventKind::StartupDeny];
    let (mut before, mut seen, mut read) = (i64::MAX, since, 0usize);
    'pages: loop {
        let page = state.store.model_events_newest(&m.tenant, &m.name, &kinds, (since, before), PAGE).await?;
        let Some(last) = page.last() else { break };
        before = last.seq;
        read += page.len();
        for e in &page {
            seen = seen.max(e.seq);
            if let Some(o) = Observation::from_stored(&e.body) {
                if o.ts < window.from {
                    break 'pages;
                }
                fold.add(&o);
            }
        }
        if page.len() < PAGE as usize || read >= MAX_EVENTS {
            break;
        }
    }
    let d = fold.dashboard();
    state.ui_folds.keep(key, seen, fold);
    Ok((m.name, d))
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
        Ok::<_, ApiError>((range, figures(&state, &ui, &name, &label, (range, span)).await?))
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
    let got = async { figures(&state, &ui, &name, &label, range_of(&q)?).await }.await;
    match got {
        Ok((_, d)) => Json(d).into_response(),
        Err(e) => e.into_response(),
    }
}
