-- Replicas (scale-out): each registry writes a heartbeat every second with what it has applied of
-- the event log. Operational state, not governance: rows are replaced and old ones removed.
CREATE TABLE replicas (
    name         TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    seen_at      TEXT NOT NULL,
    applied_seq  BIGINT NOT NULL,
    view_age_ms  BIGINT NOT NULL,
    leader_term  BIGINT NOT NULL,
    build        TEXT NOT NULL
);
