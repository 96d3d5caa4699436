-- A version's own events (its page's history), found by the version its event names; the
-- expression is exactly the one `Store::version_events` asks with.
CREATE INDEX events_by_version ON events(tenant, model, ((body)::jsonb #>> '{data,version}'), seq);
