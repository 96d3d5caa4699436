//! Incident records (seed §5.2, §8): who opened an incident, how severe, which versions it names,
//! who closed it. Opening and closing append their ledgered event in the same transaction; the
//! versions a revocation or quarantine attaches are added after that change committed (the
//! change itself carries the incident id in its own event, which is what the timeline reads).

use sqlx::Row;
use time::OffsetDateTime;

use crate::db::Conn;
use crate::{Result, Store, StoreError, StoredEvent, ts};

/// One incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentRecord {
    pub id: String,
    pub tenant: String,
    pub title: String,
    pub severity: String,
    /// `operator`, `revocation`, `quarantine` or `watcher`.
    pub source: String,
    pub opened_by: String,
    pub opened_at: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<String>,
    pub resolution: Option<String>,
    /// `model@version` of every version it names, in the order they were attached.
    pub versions: Vec<IncidentVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentVersion {
    pub model: String,
    pub version: String,
    pub attached_at: String,
    /// `declared` (named when opened), `revocation`, `quarantine`, `watcher`.
    pub via: String,
}

/// What opening an incident needs.
#[derive(Debug, Clone)]
pub struct NewIncident<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    pub title: &'a str,
    pub severity: &'a str,
    pub source: &'a str,
    pub opened_by: &'a str,
    /// (model, version) pairs it names from the start.
    pub versions: &'a [(String, String)],
}

impl Store {
    /// Open an incident, with its `incident_opened` event in the same transaction.
    ///
    /// # Errors
    /// `Conflict` when the id is already used in this tenant.
    pub async fn open_incident(&self, n: &NewIncident<'_>, now: OffsetDateTime) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if exists(&mut tx, n.tenant, n.id).await? {
            return Err(StoreError::Conflict(format!("incident {} already exists", n.id)));
        }
        insert(&mut tx, n, now).await?;
        for (m, v) in n.versions {
            attach(&mut tx, n.tenant, n.id, m, v, "declared", now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Close an open incident, with its `incident_closed` event in the same transaction.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` when it is already closed.
    pub async fn close_incident(
        &self,
        tenant: &str,
        id: &str,
        by: &str,
        resolution: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT closed_at FROM incidents WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("incident"))?;
        if let Some(at) = row.get::<Option<String>, _>(0) {
            return Err(StoreError::Conflict(format!("incident {id} was closed at {at}")));
        }
        let mut ev = incident_event(fulcrum_core::event::EventKind::IncidentClosed, tenant, id, by, now);
        ev.reason = Some(resolution.to_owned());
        crate::append_event(&mut tx, ev).await?;
        sqlx::query(
            "UPDATE incidents SET closed_by = $1, closed_at = $2, resolution = $3 WHERE tenant = $4 AND id = $5",
        )
        .bind(by)
        .bind(ts(now))
        .bind(resolution)
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One incident with the versions it names.
    ///
    /// # Errors
    /// Database failures.
    pub async fn incident(&self, tenant: &str, id: &str) -> Result<Option<IncidentRecord>> {
        let Some(r) = sqlx::query("SELECT * FROM incidents WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let mut i = incident_from_row(&r);
        i.versions = self.incident_versions(tenant, id).await?;
        Ok(Some(i))
    }

    async fn incident_versions(&self, tenant: &str, id: &str) -> Result<Vec<IncidentVersion>> {
        let rows = sqlx::query(
            "SELECT model, version, attached_at, via FROM incident_versions WHERE tenant = $1 AND incident = $2
             ORDER BY attached_at, model, version",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| IncidentVersion { model: r.get(0), version: r.get(1), attached_at: r.get(2), via: r.get(3) })
            .collect())
    }

    /// A tenant's incidents, newest first; `open_only` leaves closed ones out.
    ///
    /// # Errors
    /// Database failures.
    pub async fn incidents(&self, tenant: &str, open_only: bool, limit: u32) -> Result<Vec<IncidentRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM incidents WHERE tenant = $1 AND ($2 = 0 OR closed_at IS NULL)
             ORDER BY opened_at DESC, id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(i64::from(open_only))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        let mut out: Vec<IncidentRecord> = rows.iter().map(incident_from_row).collect();
        if out.is_empty() {
            return Ok(out);
        }
        // Every listed incident's versions in one query.
        let marks: Vec<String> = (0..out.len()).map(|k| format!("${}", k + 2)).collect();
        let sql = format!(
            "SELECT incident, model, version, attached_at, via FROM incident_versions WHERE tenant = $1 AND incident IN ({})
             ORDER BY attached_at, model, version",
            marks.join(",")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for i in &out {
            q = q.bind(i.id.clone());
        }
        let mut by_id: std::collections::HashMap<String, Vec<IncidentVersion>> = std::collections::HashMap::new();
        for r in q.fetch_all(&self.read).await? {
            by_id.entry(r.get(0)).or_default().push(IncidentVersion {
                model: r.get(1),
                version: r.get(2),
                attached_at: r.get(3),
                via: r.get(4),
            });
        }
        for i in &mut out {
            i.versions = by_id.remove(&i.id).unwrap_or_default();
        }
        Ok(out)
    }

    /// The events of a tenant that carry `inc_id` (the revocation, quarantines, alias rollbacks,
    /// agents' steps it caused), oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn incident_events(&self, tenant: &str, inc_id: &str) -> Result<Vec<StoredEvent>> {
        let inc = self.dialect.json_text("body", &["data", "inc_id"]);
        let sql = format!("SELECT seq, body FROM events WHERE tenant = $1 AND {inc} = $2 ORDER BY seq");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(inc_id).fetch_all(&self.read).await?;
        Ok(crate::events::stored(&rows))
    }
}

/// Inside a withdrawal's transaction: file `model@version` under the incident `inc_id`, opening
/// the incident (its `incident_opened` event appended with it) when no record exists yet. So a
/// revocation or quarantine and its incident commit together or not at all.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn file_withdrawal(
    tx: &mut Conn,
    tenant: &str,
    inc_id: &str,
    model: &str,
    version: &str,
    via: &str,
    by: &str,
    title: &str,
    now: OffsetDateTime,
) -> Result<()> {
    if !exists(tx, tenant, inc_id).await? {
        let severity = if via == "revocation" { "critical" } else { "high" };
        let versions = [(model.to_owned(), version.to_owned())];
        let n = NewIncident { tenant, id: inc_id, title, severity, source: via, opened_by: by, versions: &versions };
        insert(tx, &n, now).await?;
    }
    attach(tx, tenant, inc_id, model, version, via, now).await
}

/// Incident events carry this model name (they belong to the tenant, not to one model).
pub const INCIDENT_MODEL: &str = "_incidents";

async fn exists(tx: &mut Conn, tenant: &str, id: &str) -> Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM incidents WHERE tenant = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some())
}

/// An incident's event: the tenant's, under [`INCIDENT_MODEL`], naming the incident and who acted.
fn incident_event(
    kind: fulcrum_core::event::EventKind,
    tenant: &str,
    id: &str,
    by: &str,
    now: OffsetDateTime,
) -> fulcrum_core::event::EventPayload {
    let mut ev = fulcrum_core::event::EventPayload::new(kind, now, tenant, "*", INCIDENT_MODEL);
    ev.inc_id = Some(id.to_owned());
    ev.actor = Some(by.to_owned());
    ev
}

/// The record and its ledgered `incident_opened` event (one place builds both).
async fn insert(tx: &mut Conn, n: &NewIncident<'_>, now: OffsetDateTime) -> Result<()> {
    let mut ev = incident_event(fulcrum_core::event::EventKind::IncidentOpened, n.tenant, n.id, n.opened_by, now);
    ev.reason = Some(n.title.to_owned());
    ev.severity = Some(n.severity.to_owned());
    let named: Vec<String> = n.versions.iter().map(|(m, v)| format!("{m}@{v}")).collect();
    ev.detail = Some(match n.source {
        "operator" if named.is_empty() => "opened by an operator".to_owned(),
        "operator" => format!("opened by an operator; names {}", named.join(", ")),
        via => format!("opened by the {via} of {}", named.join(", ")),
    });
    crate::append_event(tx, ev).await?;
    sqlx::query(
        "INSERT INTO incidents (tenant, id, title, severity, source, opened_by, opened_at) VALUES ($1,$2,$3,$4,$5,$6,$7)",
    )
    .bind(n.tenant)
    .bind(n.id)
    .bind(n.title)
    .bind(n.severity)
    .bind(n.source)
    .bind(n.opened_by)
    .bind(ts(now))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn attach(
    tx: &mut Conn,
    tenant: &str,
    id: &str,
    model: &str,
    version: &str,
    via: &str,
    now: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_versions (tenant, incident, model, version, attached_at, via) VALUES ($1,$2,$3,$4,$5,$6)
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(id)
    .bind(model)
    .bind(version)
    .bind(ts(now))
    .bind(via)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn incident_from_row(r: &sqlx::any::AnyRow) -> IncidentRecord {
    IncidentRecord {
        id: r.get("id"),
        tenant: r.get("tenant"),
        title: r.get("title"),
        severity: r.get("severity"),
        source: r.get("source"),
        opened_by: r.get("opened_by"),
        opened_at: r.get("opened_at"),
        closed_by: r.get("closed_by"),
        closed_at: r.get("closed_at"),
        resolution: r.get("resolution"),
        versions: vec![],
    }
}
