-- Incidents (seed §5.2, §8): a record per incident id, opened by a person, a runbook or a
-- watcher, closed by a role the policy names. Opening and closing are also ledgered events
-- (`incident_opened`, `incident_closed`); these rows are their queryable form.
CREATE TABLE incidents (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    title       TEXT NOT NULL,
    severity    TEXT NOT NULL,
    source      TEXT NOT NULL,   -- operator | revocation | quarantine | watcher
    opened_by   TEXT NOT NULL,
    opened_at   TEXT NOT NULL,
    closed_by   TEXT,
    closed_at   TEXT,
    resolution  TEXT,
    PRIMARY KEY (tenant, id)
);
-- The versions an incident names: declared when it was opened, or attached by a revocation or
-- quarantine that carried its id. Never removed.
CREATE TABLE incident_versions (
    tenant      TEXT NOT NULL,
    incident    TEXT NOT NULL,
    model       TEXT NOT NULL,
    version     TEXT NOT NULL,
    attached_at TEXT NOT NULL,
    via         TEXT NOT NULL,
    PRIMARY KEY (tenant, incident, model, version)
);
CREATE TRIGGER incident_versions_append_only BEFORE UPDATE OR DELETE ON incident_versions FOR EACH ROW EXECUTE FUNCTION fulcrum_refuse('incident versions are append-only');
CREATE TRIGGER incident_versions_no_truncate BEFORE TRUNCATE ON incident_versions FOR EACH STATEMENT EXECUTE FUNCTION fulcrum_refuse('incident versions are append-only');
-- Events by model, for an incident's timeline (the steps and figures of the models it names).
CREATE INDEX events_by_model ON events(tenant, model, seq);
