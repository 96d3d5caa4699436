-- The lifecycle's one-way doors, enforced by the database too (defence in depth: the start-up
-- check compares these rows with the ledger's projection whatever happens here):
-- a revoked version stays revoked, and a stage only climbs.
CREATE TRIGGER versions_revocation_is_final BEFORE UPDATE OF hold ON versions
WHEN OLD.hold = 'revoked' AND NEW.hold <> 'revoked'
BEGIN SELECT RAISE(ABORT, 'a revoked version stays revoked'); END;

CREATE TRIGGER versions_stage_only_climbs BEFORE UPDATE OF stage ON versions
WHEN (CASE NEW.stage WHEN 'Candidate' THEN 0 WHEN 'Staging' THEN 1 ELSE 2 END)
   < (CASE OLD.stage WHEN 'Candidate' THEN 0 WHEN 'Staging' THEN 1 ELSE 2 END)
BEGIN SELECT RAISE(ABORT, 'a stage only climbs'); END;
