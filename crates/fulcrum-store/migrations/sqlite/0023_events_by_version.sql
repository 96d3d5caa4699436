-- A version's own events (its page's history), found by the version its event names; the
-- expression is exactly the one `Store::version_events` asks with (`Dialect::json_text_lenient`:
-- a body that is not JSON — only a tampered row — indexes as NULL instead of failing writes).
CREATE INDEX events_by_version ON events(tenant, model, (CASE WHEN json_valid(body) THEN json_extract(body, '$.data.version') END), seq);
