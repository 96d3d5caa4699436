-- Vulnerability findings attached to versions, and waivers (first-class, expiring).
CREATE TABLE findings (
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    finding     TEXT NOT NULL,
    severity    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open','fixed')),
    package     TEXT NOT NULL,
    source      TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    PRIMARY KEY (version_id, finding)
);

CREATE TABLE waivers (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    model_id       INTEGER NOT NULL REFERENCES models(id),
    version_id     INTEGER REFERENCES versions(id),   -- NULL = every version of the model
    finding        TEXT NOT NULL,
    justification  TEXT NOT NULL,
    approver       TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX waivers_by_model ON waivers(model_id);
CREATE TRIGGER waivers_immutable BEFORE UPDATE ON waivers BEGIN SELECT RAISE(ABORT, 'waivers are immutable; grant a new one'); END;
