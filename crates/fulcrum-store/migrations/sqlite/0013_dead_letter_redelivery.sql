-- A dead letter an operator re-delivered successfully: when and by whom (it stays listed, marked).
ALTER TABLE webhook_dead_letters ADD COLUMN resolved_at TEXT;
ALTER TABLE webhook_dead_letters ADD COLUMN resolved_by TEXT;
