-- Where each event sink (the NATS JetStream relay, webhooks) is in the outbox: the position of
-- the last event it delivered and had acknowledged. Moved forward only after the acknowledgement,
-- so a crash re-delivers (consumers dedupe on the event id) and never skips.
CREATE TABLE sink_positions (
    sink    TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL
);
