-- A version page: the decisions about one version without scanning the tenant's decisions (the
-- ledger's leaves by record are indexed since 0001).
CREATE INDEX decisions_by_version ON decisions(tenant, model, version, seq);
