-- Which ledger leaf stands behind what a resolve answer says (SPEC §8): for a version, the leaf
-- of the lifecycle event that last set its stage or hold; for an alias, of the one that last
-- moved it. Agents may demand an inclusion proof of that leaf.
ALTER TABLE versions ADD COLUMN ledger_index INTEGER;
ALTER TABLE aliases ADD COLUMN ledger_index INTEGER;

-- Records kept before this migration: the newest event leaf naming the version / moving the alias.
UPDATE versions SET ledger_index = (
    SELECT MAX(l.idx) FROM events e
    JOIN ledger_leaves l ON l.kind = 'event' AND l.ref = e.seq
    JOIN models m ON m.id = versions.model_id
    WHERE e.tenant = m.tenant AND e.model = m.name
      AND e.kind IN ('release_published', 'promotion', 'revocation', 'quarantined', 'quarantine_released')
      AND json_extract(e.body, '$.data.version') = versions.label
);
UPDATE aliases SET ledger_index = (
    SELECT MAX(l.idx) FROM events e
    JOIN ledger_leaves l ON l.kind = 'event' AND l.ref = e.seq
    JOIN models m ON m.id = aliases.model_id
    WHERE e.tenant = m.tenant AND e.model = m.name AND e.kind = 'alias_updated'
      AND json_extract(e.body, '$.data.alias') = aliases.name
);
