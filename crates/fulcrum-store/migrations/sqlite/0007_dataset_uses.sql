-- Data catalog: which versions were trained or validated on which dataset snapshot (URI +
-- digest), written with the version, so "which versions used snapshot X" is an index lookup.
-- Existing versions are backfilled from their release record JSON.
CREATE TABLE dataset_uses (
    tenant      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    uri         TEXT NOT NULL,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    PRIMARY KEY (tenant, digest, version_id, uri)
);
CREATE TRIGGER dataset_uses_append_only_u BEFORE UPDATE ON dataset_uses BEGIN SELECT RAISE(ABORT, 'dataset uses are append-only'); END;
CREATE TRIGGER dataset_uses_append_only_d BEFORE DELETE ON dataset_uses BEGIN SELECT RAISE(ABORT, 'dataset uses are append-only'); END;

INSERT OR IGNORE INTO dataset_uses (tenant, digest, uri, version_id)
SELECT m.tenant, json_extract(d.value, '$.digest'), json_extract(d.value, '$.uri'), v.id
FROM versions v
JOIN models m ON m.id = v.model_id, json_each(v.release, '$.dataset_snapshots') d
WHERE json_extract(d.value, '$.digest') IS NOT NULL AND json_extract(d.value, '$.uri') IS NOT NULL;
