//! The webhooks' dead letters: events a receiver did not take after every retry, and their
//! re-delivery once the receiver is fixed.

use axum::Json;
use axum::extract::{Path, State};
use fulcrum_core::identity::Action;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterDto {
    /// Its id, to re-deliver it.
    pub id: i64,
    /// `webhook:<name>`.
    pub sink: String,
    /// The event's outbox position and id.
    pub seq: i64,
    pub event_id: String,
    pub attempts: u32,
    /// The last failure (`HTTP 500`, `timeout`, `connection failed`).
    pub last_error: String,
    pub at: String,
    /// Set once an operator re-delivered it successfully.
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RedeliveryDto {
    pub delivered: bool,
    /// Why not, when not (`HTTP 500`, `timeout`, `connection failed`).
    pub error: Option<String>,
    pub dead_letter: DeadLetterDto,
}

fn dto(d: fulcrum_store::DeadLetter) -> DeadLetterDto {
    DeadLetterDto {
        id: d.id,
        sink: d.sink,
        seq: d.seq,
        event_id: d.event_id,
        attempts: d.attempts,
        last_error: d.last_error,
        at: d.at,
        resolved_at: d.resolved_at,
        resolved_by: d.resolved_by,
    }
}

/// Deliver a dead-lettered event again, once, to its webhook (signed with the receiver's current
/// secret, `Fulcrum-Redelivery: true`). Delivered: the dead letter is marked resolved by the
/// caller; not: one more attempt and the new error are kept. The outcome is in the body.
#[utoipa::path(post, path = "/v1/webhooks/dead-letters/{id}/redelivery", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = RedeliveryDto), (status = 404, body = Problem),
        (status = 409, description = "already resolved, or its webhook is no longer configured", body = Problem),
        (status = "4XX", body = Problem)))]
pub async fn redeliver(
    State(state): State<AppState>,
    who: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<RedeliveryDto>> {
    who.require(&state, Action::RedeliverEvents).await?;
    let d = state.store.dead_letter(&who.0.tenant, id).await?.ok_or_else(|| ApiError::not_found("dead letter"))?;
    if d.resolved_at.is_some() {
        return Err(ApiError::conflict("already_resolved", "this dead letter was re-delivered already"));
    }
    let cfg = state
        .config
        .webhooks
        .iter()
        .find(|c| crate::webhooks::sink(c) == d.sink)
        .ok_or_else(|| ApiError::conflict("webhook_unknown", format!("{} is no longer configured", d.sink)))?;
    let body = state.store.event_body(d.seq).await?.ok_or_else(|| ApiError::not_found("event"))?;
    let outcome = crate::webhooks::redeliver(cfg, &d.event_id, &body).await;
    let at = state.clock.now().format(&Rfc3339).expect("formats");
    state
        .store
        .settle_dead_letter(id, outcome.as_ref().map(|_| ()).map_err(String::as_str), &who.0.subject, &at)
        .await?;
    let after = state.store.dead_letter(&who.0.tenant, id).await?.ok_or_else(|| ApiError::not_found("dead letter"))?;
    tracing::info!(dead_letter = id, delivered = outcome.is_ok(), by = %who.0.subject, "webhook re-delivery");
    Ok(Json(RedeliveryDto { delivered: outcome.is_ok(), error: outcome.err(), dead_letter: dto(after) }))
}

/// Events of the caller's tenant the webhooks gave up on, newest first (at most 500).
#[utoipa::path(get, path = "/v1/webhooks/dead-letters", tag = "events",
    responses((status = 200, body = Vec<DeadLetterDto>), (status = "4XX", body = Problem)))]
pub async fn dead_letters(State(state): State<AppState>, who: Caller) -> ApiResult<Json<Vec<DeadLetterDto>>> {
    who.require(&state, Action::ReadEvents).await?;
    let rows = state.store.dead_letters(&who.0.tenant, 500).await?;
    Ok(Json(rows.into_iter().map(dto).collect()))
}
