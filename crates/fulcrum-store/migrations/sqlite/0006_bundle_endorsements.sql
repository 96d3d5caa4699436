-- Trust-bundle chaining (TUF-style): a bundle issued by a newly rotated key is also signed by the
-- key it replaces, so that an agent pinned to the previous bundle can adopt the new one without a
-- new out-of-band delivery. JSON list of {"kid": …, "sig": …} over the same body bytes.
ALTER TABLE trust_bundles ADD COLUMN endorsements TEXT NOT NULL DEFAULT '[]';
