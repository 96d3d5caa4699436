-- Access decisions: one per API call, so they are stored packed. Each distinct (masked) input
-- with its result, under one policy revision, is stored once in `decision_inputs`; the writer
-- stores each batch of decisions of one tenant as one `access_batches` row whose `entries` blob
-- holds, per decision, its id (UUIDv7, 16 bytes), time (i64 ns), input (u16 index into the
-- batch's `inputs` JSON array of digests) and verdict (u8), little-endian: 27 bytes.
CREATE TABLE decision_inputs (
    digest    TEXT PRIMARY KEY,
    revision  TEXT NOT NULL,
    model     TEXT,
    input     TEXT NOT NULL,
    result    TEXT NOT NULL,
    -- JSON: {"erased": [...], "labels": {...}}
    extra     TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE access_batches (
    seq       INTEGER PRIMARY KEY,
    tenant    TEXT NOT NULL,
    first_ns  INTEGER NOT NULL,
    last_ns   INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    inputs    TEXT NOT NULL,
    entries   BLOB NOT NULL
);
CREATE INDEX access_batches_by_tenant ON access_batches(tenant, seq);
CREATE INDEX access_batches_by_time ON access_batches(tenant, last_ns);

CREATE TRIGGER decision_inputs_no_update BEFORE UPDATE ON decision_inputs BEGIN SELECT RAISE(ABORT, 'decision inputs are append-only'); END;
CREATE TRIGGER decision_inputs_no_delete BEFORE DELETE ON decision_inputs BEGIN SELECT RAISE(ABORT, 'decision inputs are append-only'); END;
CREATE TRIGGER access_batches_no_update BEFORE UPDATE ON access_batches BEGIN SELECT RAISE(ABORT, 'access decisions are append-only'); END;
CREATE TRIGGER access_batches_no_delete BEFORE DELETE ON access_batches BEGIN SELECT RAISE(ABORT, 'access decisions are append-only'); END;
