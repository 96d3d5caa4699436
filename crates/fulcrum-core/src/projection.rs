//! Governance state as a projection of the event log (SPEC §8): every stage, hold and alias
//! target follows, deterministically, from the lifecycle events in ledger order. The registry's
//! tables are a cache of this fold; the registry compares them at start ([`Projection::diff`])
//! and refuses to sign from a row that disagrees, an auditor replays it from the ledger
//! (`fulcrum audit verify`), and each checkpoint commits to the versions' part of it (the state
//! map an agent checks a permit against).
//!
//! # Invariants
//! - Pure: events in, state out; the same events always give the same state.
//! - Only lifecycle events move state: `release_published` creates a version (Candidate, no
//!   hold), `promotion` sets its stage, `revocation` / `quarantined` / `quarantine_released` its
//!   hold, `alias_updated` an alias's target. Everything else is ignored.
//! - An event that cannot follow from the state before it (an unknown version, a stage that
//!   does not climb one rung, a way out of `revoked`) is an error naming the event, never
//!   skipped: a log that says impossible things is not a basis for serving.

use std::collections::BTreeMap;

use crate::event::{EventKind, EventPayload};
use crate::lifecycle::{Hold, Stage};

/// A version, by tenant, model and label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionKey {
    pub tenant: String,
    pub model: String,
    pub version: String,
}

/// An alias, by tenant, model and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AliasKey {
    pub tenant: String,
    pub model: String,
    pub alias: String,
}

/// What the log says of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionState {
    pub seq: u64,
    pub artifact_digest: String,
    pub stage: Stage,
    pub hold: Hold,
    /// Ledger index of the event that last changed it.
    pub changed_at: u64,
}

/// Why an event does not follow from the state before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {index} ({event} of {model} {version}): {why}")]
pub struct ProjectionError {
    pub index: u64,
    pub event: String,
    pub model: String,
    pub version: String,
    pub why: String,
}

/// The governance state the event log implies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub versions: BTreeMap<VersionKey, VersionState>,
    /// `None`: the alias exists and points nowhere (emptied or deleted).
    pub aliases: BTreeMap<AliasKey, Option<String>>,
}

/// One row of a table that should agree with the projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub key: VersionKey,
    pub seq: u64,
    pub artifact_digest: String,
    pub stage: Stage,
    pub hold: Hold,
}

/// Where a table and the projection disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub tenant: String,
    pub model: String,
    /// What disagrees, in words (`version v2: hold is none in the table, revoked in the ledger`).
    pub what: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.tenant, self.model, self.what)
    }
}

impl Projection {
    /// Fold one event (at ledger `index`) into the state.
    ///
    /// # Errors
    /// An event that cannot follow from the state before it.
    pub fn apply(&mut self, index: u64, ev: &EventPayload) -> Result<(), ProjectionError> {
        let err = |why: String| ProjectionError {
            index,
            event: ev.event.as_str().to_owned(),
            model: ev.model.clone(),
            version: ev.version.clone().unwrap_or_default(),
            why,
        };
        let key = || -> Result<VersionKey, ProjectionError> {
            let version = ev.version.clone().ok_or_else(|| err("names no version".into()))?;
            Ok(VersionKey { tenant: ev.tenant.clone(), model: ev.model.clone(), version })
        };
        match ev.event {
            EventKind::ReleasePublished => {
                let k = key()?;
                if self.versions.contains_key(&k) {
                    return Err(err("the version was already published".into()));
                }
                let seq = ev.seq.ok_or_else(|| err("names no seq".into()))?;
                let artifact_digest = ev.artifact_digest.clone().ok_or_else(|| err("names no artifact".into()))?;
                self.versions.insert(
                    k,
                    VersionState { seq, artifact_digest, stage: Stage::Candidate, hold: Hold::None, changed_at: index },
                );
            }
            EventKind::Promotion => {
                let k = key()?;
                let v = self.versions.get_mut(&k).ok_or_else(|| err("unknown version".into()))?;
                let to: Stage = ev.to.as_deref().and_then(|s| s.parse().ok()).ok_or_else(|| err("bad stage".into()))?;
                if v.stage.next() != Some(to) {
                    return Err(err(format!("{} cannot become {}", v.stage.as_str(), to.as_str())));
                }
                v.stage = to;
                v.changed_at = index;
            }
            EventKind::Revocation | EventKind::Quarantined | EventKind::QuarantineReleased => {
                let k = key()?;
                let v = self.versions.get_mut(&k).ok_or_else(|| err("unknown version".into()))?;
                let to = match ev.event {
                    EventKind::Revocation => Hold::Revoked,
                    EventKind::Quarantined => Hold::Quarantined,
                    _ => Hold::None,
                };
                if v.hold == Hold::Revoked && to != Hold::Revoked {
                    return Err(err("a revoked version stays revoked".into()));
                }
                v.hold = to;
                v.changed_at = index;
            }
            EventKind::AliasUpdated => {
                let alias = ev.alias.clone().ok_or_else(|| err("names no alias".into()))?;
                let target = ev.to.clone();
                if let Some(t) = &target {
                    let k = VersionKey { tenant: ev.tenant.clone(), model: ev.model.clone(), version: t.clone() };
                    if !self.versions.contains_key(&k) {
                        return Err(err(format!("alias {alias} points at unknown version {t}")));
                    }
                }
                self.aliases.insert(AliasKey { tenant: ev.tenant.clone(), model: ev.model.clone(), alias }, target);
            }
            _ => {}
        }
        Ok(())
    }

    /// Where stored rows disagree with the projection: a value that differs, a row the log does
    /// not know, a version the log knows that has no row. Models are compared only where the
    /// rows cover them (`tenant`/`model` pairs present in `versions` or `aliases`, or in the log).
    pub fn diff(&self, versions: &[VersionRow], aliases: &[(AliasKey, Option<String>)]) -> Vec<Divergence> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for row in versions {
            let d = |what: String| Divergence { tenant: row.key.tenant.clone(), model: row.key.model.clone(), what };
            seen.insert(row.key.clone());
            let Some(p) = self.versions.get(&row.key) else {
                out.push(d(format!("version {} is in the table but no event published it", row.key.version)));
                continue;
            };
            let v = &row.key.version;
            if row.stage != p.stage {
                out.push(d(format!(
                    "version {v}: stage is {} in the table, {} in the ledger",
                    row.stage.as_str(),
                    p.stage.as_str()
                )));
            }
            if row.hold != p.hold {
                out.push(d(format!(
                    "version {v}: hold is {} in the table, {} in the ledger",
                    row.hold.as_str(),
                    p.hold.as_str()
                )));
            }
            if row.seq != p.seq || row.artifact_digest != p.artifact_digest {
                out.push(d(format!("version {v}: seq or artifact differs from what was published")));
            }
        }
        for k in self.versions.keys().filter(|k| !seen.contains(*k)) {
            out.push(Divergence {
                tenant: k.tenant.clone(),
                model: k.model.clone(),
                what: format!("version {} was published but has no row", k.version),
            });
        }
        let mut seen_aliases = std::collections::BTreeSet::new();
        for (k, target) in aliases {
            seen_aliases.insert(k.clone());
            let logged = self.aliases.get(k);
            if logged != Some(target) {
                let show = |t: Option<&Option<String>>| match t {
                    None => "absent".to_owned(),
                    Some(None) => "empty".to_owned(),
                    Some(Some(v)) => v.clone(),
                };
                out.push(Divergence {
                    tenant: k.tenant.clone(),
                    model: k.model.clone(),
                    what: format!(
                        "alias {}: {} in the table, {} in the ledger",
                        k.alias,
                        show(Some(target)),
                        show(logged)
                    ),
                });
            }
        }
        for (k, t) in self.aliases.iter().filter(|(k, _)| !seen_aliases.contains(*k)) {
            if t.is_some() {
                out.push(Divergence {
                    tenant: k.tenant.clone(),
                    model: k.model.clone(),
                    what: format!(
                        "alias {} points at {} in the ledger but has no row",
                        k.alias,
                        t.as_deref().unwrap_or("")
                    ),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, version: &str, f: impl FnOnce(&mut EventPayload)) -> EventPayload {
        let mut e = EventPayload::new(kind, time::macros::datetime!(2026-12-01 00:00 UTC), "acme", "fraud", "fraud");
        e.version = Some(version.into());
        f(&mut e);
        e
    }

    fn published(v: &str, seq: u64) -> EventPayload {
        ev(EventKind::ReleasePublished, v, |e| {
            e.seq = Some(seq);
            e.artifact_digest = Some(format!("sha256:{seq:064x}"));
        })
    }

    fn promoted(v: &str, to: &str) -> EventPayload {
        ev(EventKind::Promotion, v, |e| e.to = Some(to.into()))
    }

    fn key(v: &str) -> VersionKey {
        VersionKey { tenant: "acme".into(), model: "fraud".into(), version: v.into() }
    }

    fn fold(events: &[EventPayload]) -> Result<Projection, ProjectionError> {
        let mut p = Projection::default();
        for (i, e) in events.iter().enumerate() {
            p.apply(i as u64, e)?;
        }
        Ok(p)
    }

    #[test]
    fn the_log_determines_stage_hold_and_aliases() {
        let p = fold(&[
            published("v1", 1),
            promoted("v1", "Staging"),
            ev(EventKind::Approval, "v1", |_| {}),
            promoted("v1", "Approved"),
            ev(EventKind::AliasUpdated, "v1", |e| {
                e.alias = Some("production".into());
                e.to = Some("v1".into());
            }),
            ev(EventKind::Quarantined, "v1", |_| {}),
            ev(EventKind::AliasUpdated, "v1", |e| {
                e.alias = Some("production".into());
                e.to = None;
            }),
            ev(EventKind::QuarantineReleased, "v1", |_| {}),
            ev(EventKind::Revocation, "v1", |_| {}),
        ])
        .unwrap();
        let v1 = &p.versions[&key("v1")];
        assert_eq!((v1.stage, v1.hold, v1.changed_at), (Stage::Approved, Hold::Revoked, 8));
        let alias = AliasKey { tenant: "acme".into(), model: "fraud".into(), alias: "production".into() };
        assert_eq!(p.aliases[&alias], None);
    }

    #[test]
    fn impossible_logs_are_errors_naming_the_entry() {
        let rows: Vec<(&str, Vec<EventPayload>, &str)> = vec![
            ("unknown version", vec![promoted("v9", "Staging")], "unknown version"),
            ("skipped rung", vec![published("v1", 1), promoted("v1", "Approved")], "Candidate cannot become Approved"),
            (
                "un-revoke",
                vec![
                    published("v1", 1),
                    ev(EventKind::Revocation, "v1", |_| {}),
                    ev(EventKind::QuarantineReleased, "v1", |_| {}),
                ],
                "stays revoked",
            ),
            ("published twice", vec![published("v1", 1), published("v1", 2)], "already published"),
            (
                "alias to nowhere known",
                vec![ev(EventKind::AliasUpdated, "v3", |e| {
                    e.alias = Some("production".into());
                    e.to = Some("v3".into());
                })],
                "unknown version v3",
            ),
        ];
        for (what, events, why) in rows {
            let e = fold(&events).unwrap_err();
            assert!(e.to_string().contains(why), "{what}: {e}");
            assert_eq!(e.index as usize, events.len() - 1, "{what}");
        }
    }

    #[test]
    fn rows_edited_behind_the_log_are_named() {
        let p = fold(&[published("v1", 1), published("v2", 2), ev(EventKind::Revocation, "v2", |_| {})]).unwrap();
        let row = |v: &str, seq: u64, hold: Hold| VersionRow {
            key: key(v),
            seq,
            artifact_digest: format!("sha256:{seq:064x}"),
            stage: Stage::Candidate,
            hold,
        };
        assert!(p.diff(&[row("v1", 1, Hold::None), row("v2", 2, Hold::Revoked)], &[]).is_empty());
        let d = p.diff(&[row("v1", 1, Hold::None), row("v2", 2, Hold::None)], &[]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "acme/fraud: version v2: hold is none in the table, revoked in the ledger");
        let d = p.diff(&[row("v1", 1, Hold::None)], &[]);
        assert!(d[0].what.contains("v2 was published but has no row"), "{d:?}");
        let d = p.diff(&[row("v1", 1, Hold::None), row("v2", 2, Hold::Revoked), row("v3", 3, Hold::None)], &[]);
        assert!(d[0].what.contains("v3 is in the table but no event published it"), "{d:?}");
        let alias = AliasKey { tenant: "acme".into(), model: "fraud".into(), alias: "production".into() };
        let d = p.diff(&[row("v1", 1, Hold::None), row("v2", 2, Hold::Revoked)], &[(alias, Some("v2".into()))]);
        assert_eq!(d[0].what, "alias production: v2 in the table, absent in the ledger");
    }
}
