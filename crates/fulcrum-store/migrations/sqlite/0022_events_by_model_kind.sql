-- A model's events of a few kinds, newest first (a version page's history, its dashboard's
-- windows), without reading the model's other events.
CREATE INDEX events_by_model_kind ON events(tenant, model, kind, seq);
