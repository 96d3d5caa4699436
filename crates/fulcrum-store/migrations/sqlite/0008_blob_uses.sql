-- Which versions hold which file blob, so the download gate can apply the DLP rules of the
-- versions a blob belongs to (a blob only in sensitive versions leaves only for an allowed
-- purpose). Written with the version; existing versions are backfilled from their manifests.
CREATE TABLE blob_uses (
    tenant      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    PRIMARY KEY (tenant, digest, version_id)
) WITHOUT ROWID;
CREATE TRIGGER blob_uses_append_only_u BEFORE UPDATE ON blob_uses BEGIN SELECT RAISE(ABORT, 'blob uses are append-only'); END;
CREATE TRIGGER blob_uses_append_only_d BEFORE DELETE ON blob_uses BEGIN SELECT RAISE(ABORT, 'blob uses are append-only'); END;

INSERT OR IGNORE INTO blob_uses (tenant, digest, version_id)
SELECT m.tenant, json_extract(f.value, '$.digest'), v.id
FROM versions v
JOIN models m ON m.id = v.model_id, json_each(v.files) f
WHERE json_extract(f.value, '$.digest') IS NOT NULL;
