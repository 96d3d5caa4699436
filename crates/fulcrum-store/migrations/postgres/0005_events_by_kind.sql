-- Watchers read back the events of a few kinds (drift and revalidation notices they raised)
-- when a registry starts, without scanning the log.
CREATE INDEX events_by_kind ON events(kind, seq);
