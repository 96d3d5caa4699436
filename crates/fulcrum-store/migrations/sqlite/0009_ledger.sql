-- The audit ledger (SPEC §8): every event, gate decision and access-decision batch is a leaf of
-- one append-only Merkle tree (RFC 6962 hashing), appended in the transaction that stores the
-- record. `ledger_leaves` says which record a leaf is and holds its leaf hash (the record's bytes
-- stay in the record's table); `ledger_nodes` holds the hashes of the tree's full subtrees above
-- the leaves (level ≥ 1), which never change once written and are built from the leaves in order
-- (`ledger_state.built` = how many leaves they cover); `ledger_checkpoints` the signed tree
-- heads, sizes only growing.
CREATE TABLE ledger_leaves (
    idx     INTEGER PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('event', 'decision', 'access')),
    ref     INTEGER NOT NULL,
    tenant  TEXT NOT NULL,
    hash    BLOB NOT NULL
);
CREATE TABLE ledger_nodes (
    level   INTEGER NOT NULL CHECK (level >= 1),
    idx     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE ledger_state (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    built   INTEGER NOT NULL
);
INSERT INTO ledger_state (one, built) VALUES (1, 0);
CREATE TABLE ledger_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    kid        TEXT NOT NULL,
    signed_at  TEXT NOT NULL
);
CREATE TRIGGER ledger_leaves_no_update BEFORE UPDATE ON ledger_leaves BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_leaves_no_delete BEFORE DELETE ON ledger_leaves BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_nodes_no_update BEFORE UPDATE ON ledger_nodes BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_nodes_no_delete BEFORE DELETE ON ledger_nodes BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
