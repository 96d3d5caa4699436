-- Every blob a version names belongs to it, not only its files: the manifest (the artifact URI a
-- resolve answer hands out), the release record (the attestation URI), and the SBOM, attestations
-- and signatures CI submitted. The download gate serves a blob only for a version the caller may
-- resolve now, so a revoked version's manifest and record stop with its files.
INSERT OR IGNORE INTO blob_uses (tenant, digest, version_id)
SELECT m.tenant, v.artifact_digest, v.id FROM versions v JOIN models m ON m.id = v.model_id;

INSERT OR IGNORE INTO blob_uses (tenant, digest, version_id)
SELECT m.tenant, v.record_digest, v.id FROM versions v JOIN models m ON m.id = v.model_id;

INSERT OR IGNORE INTO blob_uses (tenant, digest, version_id)
SELECT m.tenant, json_extract(v.release, '$.sbom'), v.id FROM versions v JOIN models m ON m.id = v.model_id
WHERE json_extract(v.release, '$.sbom') IS NOT NULL;

INSERT OR IGNORE INTO blob_uses (tenant, digest, version_id)
SELECT m.tenant, d.value, v.id FROM versions v JOIN models m ON m.id = v.model_id, json_each(v.release, '$.attestations') d
WHERE d.value IS NOT NULL;

INSERT OR IGNORE INTO blob_uses (tenant, digest, version_id)
SELECT m.tenant, d.value, v.id FROM versions v JOIN models m ON m.id = v.model_id, json_each(v.release, '$.signatures') d
WHERE d.value IS NOT NULL;
