-- The Sigstore trusted roots (trusted_root.json) the registry trusts for keyless signatures, as
-- a key-admin imported them: each import is a new version (the highest is in force), pinned by
-- the SHA-256 of its exact bytes, shipped inside every trust bundle issued after it, and
-- recorded as a `trust_root_imported` event in the ledgered log. Rows are never changed.
CREATE TABLE sigstore_roots (
    version     INTEGER PRIMARY KEY,
    digest      TEXT NOT NULL,
    body        TEXT NOT NULL,
    note        TEXT NOT NULL,
    imported_by TEXT NOT NULL,
    imported_at TEXT NOT NULL
);
CREATE TRIGGER sigstore_roots_append_only_u BEFORE UPDATE ON sigstore_roots BEGIN SELECT RAISE(ABORT, 'sigstore roots are append-only'); END;
CREATE TRIGGER sigstore_roots_append_only_d BEFORE DELETE ON sigstore_roots BEGIN SELECT RAISE(ABORT, 'sigstore roots are append-only'); END;

-- Versions registered from an OCI registry, by the manifest digest they came from, written with
-- the version: "which version is oci://…@sha256:X" is an index lookup (the agent then checks
-- the signed release record names that digest).
CREATE TABLE oci_sources (
    tenant      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    repository  TEXT NOT NULL,
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    PRIMARY KEY (tenant, digest, version_id)
);
CREATE TRIGGER oci_sources_append_only_u BEFORE UPDATE ON oci_sources BEGIN SELECT RAISE(ABORT, 'OCI sources are append-only'); END;
CREATE TRIGGER oci_sources_append_only_d BEFORE DELETE ON oci_sources BEGIN SELECT RAISE(ABORT, 'OCI sources are append-only'); END;
