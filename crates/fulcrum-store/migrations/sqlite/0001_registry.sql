-- Fulcrum registry schema, embedded default (SQLite).
-- Versions are immutable once inserted: only stage/hold columns ever change.

CREATE TABLE models (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT NOT NULL,
    name         TEXT NOT NULL,
    domain       TEXT NOT NULL,
    description  TEXT NOT NULL,
    owners       TEXT NOT NULL,      -- JSON array
    labels       TEXT NOT NULL,      -- JSON object
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    UNIQUE (tenant, name)
);

CREATE TABLE versions (
    id                 INTEGER PRIMARY KEY,
    model_id           INTEGER NOT NULL REFERENCES models(id),
    label              TEXT NOT NULL,
    seq                INTEGER NOT NULL,
    artifact_digest    TEXT NOT NULL,
    record_digest      TEXT NOT NULL,  -- digest of the release record blob (attestation URI)
    files              TEXT NOT NULL,  -- JSON manifest entries
    release            TEXT NOT NULL,  -- JSON: sbom, attestations, signatures, model_card, dataset_snapshots, revalidate_by
    stage              TEXT NOT NULL CHECK (stage IN ('Candidate','Staging','Approved')),
    hold               TEXT NOT NULL CHECK (hold IN ('none','quarantined','revoked')),
    hold_epoch         INTEGER NOT NULL DEFAULT 0,
    hold_reason        TEXT,
    publisher          TEXT NOT NULL,
    chg_id             TEXT,
    created_at         TEXT NOT NULL,
    UNIQUE (model_id, label),
    UNIQUE (model_id, seq)
);
CREATE INDEX versions_by_digest ON versions(model_id, artifact_digest);

CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    subject     TEXT NOT NULL,
    role        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('promotion','lift')),
    epoch       INTEGER NOT NULL,
    comment     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX approvals_by_version ON approvals(version_id);

CREATE TABLE aliases (
    model_id    INTEGER NOT NULL REFERENCES models(id),
    name        TEXT NOT NULL,
    env         TEXT NOT NULL,
    version_id  INTEGER REFERENCES versions(id),
    PRIMARY KEY (model_id, name)
);

CREATE TABLE alias_history (
    model_id    INTEGER NOT NULL REFERENCES models(id),
    alias       TEXT NOT NULL,
    position    INTEGER NOT NULL,
    version_id  INTEGER REFERENCES versions(id),
    cause       TEXT NOT NULL,
    chg_id      TEXT,
    inc_id      TEXT,
    actor       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (model_id, alias, position)
);

-- The event log is the transactional outbox: every state change writes its events in the same
-- transaction. `seq` is the global, gap-free position used by ?after= and Last-Event-ID.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    tenant  TEXT NOT NULL,
    model   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    body    TEXT NOT NULL   -- the CloudEvent, JSON
);
CREATE INDEX events_by_tenant ON events(tenant, seq);

-- Append-only guards: history and events are never edited or removed.
CREATE TRIGGER alias_history_no_update BEFORE UPDATE ON alias_history BEGIN SELECT RAISE(ABORT, 'alias history is append-only'); END;
CREATE TRIGGER alias_history_no_delete BEFORE DELETE ON alias_history BEGIN SELECT RAISE(ABORT, 'alias history is append-only'); END;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER versions_immutable BEFORE UPDATE OF label, seq, artifact_digest, record_digest, files, release, publisher, model_id ON versions
BEGIN SELECT RAISE(ABORT, 'what a version is never changes'); END;

-- Which tenant may read which blob: the uploader (who proved possession of the bytes) and the
-- tenant whose versions reference it. Blobs are shared across tenants on disk, never in access.
CREATE TABLE blob_grants (
    tenant  TEXT NOT NULL,
    digest  TEXT NOT NULL,
    PRIMARY KEY (tenant, digest)
) WITHOUT ROWID;
