-- Packed access decisions (UUIDv7 ids and nanosecond times) do not compress: storing them out of
-- line without trying spares the database the compression attempt on every writer batch — half
-- of PostgreSQL's CPU under a resolve load, taken from the machine that serves it.
ALTER TABLE access_batches ALTER COLUMN entries SET STORAGE EXTERNAL;
