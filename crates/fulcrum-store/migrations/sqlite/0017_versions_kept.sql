-- A version, once registered, is never removed (it stays as evidence even when revoked).
CREATE TRIGGER versions_no_delete BEFORE DELETE ON versions BEGIN SELECT RAISE(ABORT, 'versions are never removed'); END;
