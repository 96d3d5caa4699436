//! The cluster as any replica sees it (SPEC §11): every registry on the database, the leader,
//! and how far each one's caches are behind the event log.

use axum::Json;
use axum::extract::State;
use fulcrum_core::identity::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// A replica silent for longer than this is shown as not alive (it beats every second).
pub const ALIVE_WITHIN: time::Duration = time::Duration::seconds(5);

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Cluster {
    /// The replica that answered.
    pub answered_by: String,
    /// Position of the newest committed event.
    pub head: i64,
    /// The newest leadership term and its holder (`null` before anyone led).
    pub leader: Option<Leader>,
    /// Every replica that sent a heartbeat within the last hour, by name.
    pub replicas: Vec<Replica>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Leader {
    pub replica: String,
    pub term: i64,
    pub since: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Replica {
    pub name: String,
    pub build: String,
    pub started_at: String,
    pub seen_at: String,
    /// Heard from within the last 5 s.
    pub alive: bool,
    /// The last event position its caches and event streams applied.
    pub applied: i64,
    /// Events committed that it had not applied when it last beat (`head - applied`).
    pub lag_events: i64,
    /// How long before its last beat it last read the log (it stops answering resolves past 5 s).
    pub view_age_ms: i64,
    /// It leads the background work (holds the newest term).
    pub leader: bool,
}

/// The registry's replicas, its leader and each one's lag (admin).
#[utoipa::path(get, path = "/v1/cluster", tag = "ops",
    responses((status = 200, body = Cluster), (status = "4XX", body = Problem), (status = 503, body = Problem)))]
pub async fn cluster(State(state): State<AppState>, who: Caller) -> ApiResult<Json<Cluster>> {
    who.require(&state, Action::ReadCluster).await?;
    let head = state.store.last_event_seq().await?;
    let newest = state.store.newest_term().await?;
    let now = state.clock.now();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).expect("formats");
    let replicas = state
        .store
        .replicas()
        .await?
        .into_iter()
        .map(|b| Replica {
            alive: now - b.seen_at <= ALIVE_WITHIN,
            lag_events: (head - b.applied_seq).max(0),
            leader: b.leader_term > 0 && newest.as_ref().is_some_and(|t| t.term == b.leader_term),
            started_at: fmt(b.started_at),
            seen_at: fmt(b.seen_at),
            applied: b.applied_seq,
            view_age_ms: b.view_age_ms,
            build: b.build,
            name: b.name,
        })
        .collect();
    Ok(Json(Cluster {
        answered_by: state.replica.clone(),
        head,
        leader: newest.map(|t| Leader { replica: t.holder, term: t.term, since: t.started_at }),
        replicas,
    }))
}
