-- A version page: the decisions about one version, and the ledger leaf of each of its events,
-- without scanning the tenant's decisions or the whole ledger.
CREATE INDEX decisions_by_version ON decisions(tenant, model, version, seq);
CREATE INDEX ledger_leaves_by_ref ON ledger_leaves(kind, ref);
