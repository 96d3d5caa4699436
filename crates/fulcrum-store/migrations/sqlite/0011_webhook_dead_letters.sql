-- Events a webhook did not take after every retry: kept for operators to see (and re-send), so a
-- receiver rejecting one event does not stop the ones after it.
CREATE TABLE webhook_dead_letters (
    id          INTEGER PRIMARY KEY,
    sink        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX webhook_dead_letters_by_tenant ON webhook_dead_letters(tenant, id);
