//! The event log over HTTP: pages (`?after=`) and a server-sent event stream that resumes from
//! `Last-Event-ID` (SPEC §8). Both show exactly what committed: pages and a stream's catch-up
//! read the outbox table; a caught-up stream follows the one-reader broadcast (`fanout`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use fulcrum_core::identity::{Action, Principal};
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};

use super::ApiQuery;
use crate::AppState;
use crate::auth::Caller;
use crate::dto::{EventsPage, EventsQuery};
use crate::problem::{ApiError, ApiResult, Problem};

fn visible(p: &Principal, ev: &serde_json::Value) -> bool {
    ev["data"]["domain"].as_str().is_some_and(|d| p.may_use_domain(d))
}

fn wanted(q: &EventsQuery, ev: &serde_json::Value) -> bool {
    let s = |k: &str| ev["data"][k].as_str().unwrap_or("");
    q.wants(s("tenant"), s("model"), s("event"))
}

/// Events of the caller's tenant after a position, oldest first.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventsPage), (status = "4XX", body = Problem)))]
pub async fn list_events(
    State(state): State<AppState>,
    who: Caller,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventsPage>> {
    who.require(&state, Action::ReadEvents).await?;
    let limit = match q.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => {
            return Err(ApiError::bad_request("bad_limit", "limit must be between 1 and 1000"));
        }
    };
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("bad_cursor", "after must be ≥ 0"));
    }
    let rows = state.store.events_after(Some(&who.0.tenant), after, limit).await?;
    let next_after = rows.last().map_or(after, |e| e.seq);
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| ApiError::internal(&e))?;
        if visible(&who.0, &v) && wanted(&q, &v) {
            events.push(v);
        }
    }
    Ok(Json(EventsPage { events, next_after }))
}

struct Tail {
    state: AppState,
    who: Caller,
    last: i64,
    /// Subscribed before the first catch-up read, so nothing committed in between is missed.
    fanout: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::fanout::Fanned>>,
    /// Read from SQL until nothing is left, then follow the broadcast.
    catch_up: bool,
    query: EventsQuery,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Server-sent events: every new event of the caller's tenant as it commits; each SSE `id` is
/// the event's position, so a reconnect with `Last-Event-ID` resumes without gaps or repeats.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of CloudEvents", content_type = "text/event-stream"), (status = "4XX", body = Problem)))]
pub async fn stream_events(
    State(state): State<AppState>,
    who: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    who.require(&state, Action::ReadEvents).await?;
    let resume =
        match headers.get("last-event-id") {
            Some(v) => {
                Some(v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()).filter(|n| *n >= 0).ok_or_else(
                    || ApiError::bad_request("bad_last_event_id", "Last-Event-ID must be an event position"),
                )?)
            }
            None => None,
        };
    if q.model.as_deref().is_some_and(|m| m.len() > 128) || q.types.as_deref().is_some_and(|t| t.len() > 1024) {
        return Err(ApiError::bad_request("bad_filter", "model or types filter too long"));
    }
    let last = match resume.or(q.after) {
        Some(n) => n,
        // A fresh subscriber starts at the head: only new events.
        None => state.store.last_event_seq().await?,
    };
    let tail = Tail {
        fanout: state.events_fanout.subscribe(),
        catch_up: true,
        query: q,
        shutdown: state.shutdown_rx.clone(),
        state,
        who,
        last,
    };
    let s = stream::unfold(tail, |mut t| async move {
        loop {
            if *t.shutdown.borrow() {
                return None;
            }
            if t.catch_up {
                let rows = match t.state.store.events_after(Some(&t.who.0.tenant), t.last, 200).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream read failed; closing stream");
                        return None;
                    }
                };
                let Some(last) = rows.last() else {
                    t.catch_up = false;
                    continue;
                };
                t.last = last.seq;
                let events: Vec<Result<Event, Infallible>> = rows
                    .into_iter()
                    .filter_map(|r| {
                        let v = serde_json::from_str::<serde_json::Value>(&r.body).ok()?;
                        (visible(&t.who.0, &v) && wanted(&t.query, &v)).then(|| {
                            let kind = v["data"]["event"].as_str().unwrap_or("event").to_owned();
                            Ok(Event::default().id(r.seq.to_string()).event(kind).data(r.body))
                        })
                    })
                    .collect();
                if !events.is_empty() {
                    return Some((stream::iter(events), t));
                }
                continue;
            }
            tokio::select! {
                got = t.fanout.recv() => match got {
                    Ok(ev) => {
                        if ev.seq <= t.last {
                            continue;
                        }
                        t.last = ev.seq;
                        let ours = ev.tenant == t.who.0.tenant || ev.tenant == "*";
                        if ours && t.who.0.may_use_domain(&ev.domain) && t.query.wants(&ev.tenant, &ev.model, &ev.kind) {
                            let e = Event::default().id(ev.seq.to_string()).event(ev.kind.clone()).data(ev.body.clone());
                            return Some((stream::iter(vec![Ok(e)]), t));
                        }
                    }
                    // Fell behind the broadcast: read what was missed from SQL.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => t.catch_up = true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = t.shutdown.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    })
    .flatten();
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
