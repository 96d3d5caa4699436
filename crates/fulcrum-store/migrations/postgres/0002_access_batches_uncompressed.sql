-- A batch of access decisions carries the packed decisions (UUIDv7 ids, nanosecond times) and
-- the list of input digests they name: tens of kilobytes that hardly compress. Storing them out
-- of line without trying spares PostgreSQL the compression attempt on every writer batch — about
-- 60 % of its CPU under a resolve load, taken from the machine that serves the registry.
ALTER TABLE access_batches ALTER COLUMN entries SET STORAGE EXTERNAL;
ALTER TABLE access_batches ALTER COLUMN inputs SET STORAGE EXTERNAL;
