-- Which snapshot is in force, as a history: every install, every rollback to an earlier
-- snapshot (re-applied by digest) and every break-glass reset to the shipped default is a row;
-- the newest row names the snapshot in force. Snapshots themselves stay immutable and unique.
CREATE TABLE policy_installs (
    seq           INTEGER PRIMARY KEY,
    digest        TEXT NOT NULL REFERENCES policy_snapshots(digest),
    kind          TEXT NOT NULL CHECK (kind IN ('install', 'rollback', 'reset')),
    installed_by  TEXT NOT NULL,
    installed_at  TEXT NOT NULL,
    reason        TEXT
);
CREATE TRIGGER policy_installs_no_update BEFORE UPDATE ON policy_installs BEGIN SELECT RAISE(ABORT, 'policy installs are append-only'); END;
CREATE TRIGGER policy_installs_no_delete BEFORE DELETE ON policy_installs BEGIN SELECT RAISE(ABORT, 'policy installs are append-only'); END;

INSERT INTO policy_installs (digest, kind, installed_by, installed_at)
SELECT digest, 'install', installed_by, installed_at FROM policy_snapshots ORDER BY seq;
