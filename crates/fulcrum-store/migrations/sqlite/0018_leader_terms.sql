-- Leadership terms (scale-out): each replica that becomes the leader of the background work takes
-- the next term; background writes check that theirs is still the newest (fencing).
CREATE TABLE leader_terms (
    term        INTEGER PRIMARY KEY AUTOINCREMENT,
    holder      TEXT NOT NULL,
    started_at  TEXT NOT NULL
);
CREATE TRIGGER leader_terms_no_update BEFORE UPDATE ON leader_terms BEGIN SELECT RAISE(ABORT, 'leader terms are append-only'); END;
CREATE TRIGGER leader_terms_no_delete BEFORE DELETE ON leader_terms BEGIN SELECT RAISE(ABORT, 'leader terms are append-only'); END;
