-- Installed policy snapshots (immutable; the newest is in force) and decision logs.
CREATE TABLE policy_snapshots (
    seq           INTEGER PRIMARY KEY,
    digest        TEXT NOT NULL UNIQUE,
    body          BLOB NOT NULL,          -- canonical snapshot bytes
    envelope      BLOB NOT NULL,          -- DSSE envelope signed by the registry
    installed_by  TEXT NOT NULL,
    installed_at  TEXT NOT NULL
);
CREATE TRIGGER policy_snapshots_no_update BEFORE UPDATE ON policy_snapshots BEGIN SELECT RAISE(ABORT, 'policy snapshots are immutable'); END;
CREATE TRIGGER policy_snapshots_no_delete BEFORE DELETE ON policy_snapshots BEGIN SELECT RAISE(ABORT, 'policy snapshots are immutable'); END;

-- OPA decision-log records (EventV1 shape in `record`), with columns to query by.
CREATE TABLE decisions (
    seq          INTEGER PRIMARY KEY,
    decision_id  TEXT NOT NULL UNIQUE,
    tenant       TEXT NOT NULL,
    model        TEXT,
    version      TEXT,
    path         TEXT NOT NULL,
    allow        INTEGER NOT NULL,
    revision     TEXT NOT NULL,
    chg_id       TEXT,
    inc_id       TEXT,
    record       TEXT NOT NULL
);
CREATE INDEX decisions_by_tenant ON decisions(tenant, seq);
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
