-- Signing keys the registry publishes, and every trust bundle it has issued.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    public_key   TEXT NOT NULL,            -- SPKI DER, base64
    backend      TEXT NOT NULL CHECK (backend IN ('local','pkcs11','vault')),
    backend_ref  TEXT NOT NULL,            -- where the private key lives (file, token label, transit key:version)
    valid_from   TEXT NOT NULL,
    valid_until  TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active','retired','compromised')),
    development  INTEGER NOT NULL,
    reason       TEXT,
    created_at   TEXT NOT NULL
);
-- At most one active key: the one the registry signs with.
CREATE UNIQUE INDEX one_active_key ON signing_keys(status) WHERE status = 'active';

CREATE TABLE trust_bundles (
    version    INTEGER PRIMARY KEY,
    body       TEXT NOT NULL,
    kid        TEXT NOT NULL,
    signature  TEXT NOT NULL,
    issued_at  TEXT NOT NULL
);
CREATE TRIGGER trust_bundles_append_only_u BEFORE UPDATE ON trust_bundles BEGIN SELECT RAISE(ABORT, 'trust bundles are append-only'); END;
CREATE TRIGGER trust_bundles_append_only_d BEFORE DELETE ON trust_bundles BEGIN SELECT RAISE(ABORT, 'trust bundles are append-only'); END;
