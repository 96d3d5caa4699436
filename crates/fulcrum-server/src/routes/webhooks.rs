//! The webhooks' dead-letter view: events a receiver did not take after every retry.

use axum::Json;
use axum::extract::State;
use fulcrum_core::identity::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterDto {
    /// `webhook:<name>`.
    pub sink: String,
    /// The event's outbox position and id.
    pub seq: i64,
    pub event_id: String,
    pub attempts: u32,
    /// The last failure (`HTTP 500`, `timeout`, `connection failed`).
    pub last_error: String,
    pub at: String,
}

/// Events of the caller's tenant the webhooks gave up on, newest first (at most 500).
#[utoipa::path(get, path = "/v1/webhooks/dead-letters", tag = "events",
    responses((status = 200, body = Vec<DeadLetterDto>), (status = "4XX", body = Problem)))]
pub async fn dead_letters(State(state): State<AppState>, who: Caller) -> ApiResult<Json<Vec<DeadLetterDto>>> {
    who.require(&state, Action::ReadEvents).await?;
    let rows = state.store.dead_letters(&who.0.tenant, 500).await?;
    Ok(Json(
        rows.into_iter()
            .map(|d| DeadLetterDto {
                sink: d.sink,
                seq: d.seq,
                event_id: d.event_id,
                attempts: d.attempts,
                last_error: d.last_error,
                at: d.at,
            })
            .collect(),
    ))
}
