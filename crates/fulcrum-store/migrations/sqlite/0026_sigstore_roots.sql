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
