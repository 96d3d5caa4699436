-- Annotations: tags and descriptions users set on a model or a version after the fact (MLflow's
-- tags and `update_*` descriptions). They are not governance inputs: a model's labels (policy
-- and DLP inputs) stay as created and a version's signed record never changes. Every change is
-- also an `annotated` event in the ledgered log; a deletion removes the row.
CREATE TABLE annotations (
    model_id  INTEGER NOT NULL REFERENCES models(id),
    version   TEXT NOT NULL,       -- '' for the model itself
    kind      TEXT NOT NULL,       -- tag | description
    key       TEXT NOT NULL,       -- '' for a description
    value     TEXT NOT NULL,
    set_by    TEXT NOT NULL,
    set_at    TEXT NOT NULL,
    PRIMARY KEY (model_id, version, kind, key)
);
-- Versions registered from an MLflow source: the number is reserved here first (so two
-- registrations at once never take the same one), then the files are copied and the release
-- gate runs; the row ends READY (the version exists) or FAILED_REGISTRATION with the reasons.
CREATE TABLE mlflow_registrations (
    model_id   INTEGER NOT NULL REFERENCES models(id),
    version    TEXT NOT NULL,
    source     TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    status     TEXT NOT NULL,      -- PENDING_REGISTRATION | READY | FAILED_REGISTRATION
    message    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (model_id, version)
);
