-- A version's governance history (its page), found by the version each event names. Partial: only
-- the governance kinds (`events::VERSION_HISTORY`, the same list the query names), so the
-- frequent serving reports cost this index nothing. The expression is exactly the one
-- `Store::version_events` asks with (`Dialect::json_text_lenient`: a body that is not JSON — only
-- a tampered row — indexes as NULL instead of failing writes).
CREATE INDEX events_by_version ON events(tenant, model, (CASE WHEN json_valid(body) THEN json_extract(body, '$.data.version') END), seq)
  WHERE kind IN ('release_published', 'approval', 'promotion', 'quarantined', 'quarantine_released', 'revocation', 'alias_updated');
