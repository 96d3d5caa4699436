-- A version's governance history (its page), found by the version each event names. Partial: only
-- the governance kinds (`events::VERSION_HISTORY`, the same list the query names), so the
-- frequent serving reports cost this index nothing. The expression is exactly the one
-- `Store::version_events` asks with.
CREATE INDEX events_by_version ON events(tenant, model, ((body)::jsonb #>> '{data,version}'), seq)
  WHERE kind IN ('release_published', 'approval', 'promotion', 'quarantined', 'quarantine_released', 'revocation', 'alias_updated');
