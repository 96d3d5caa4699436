//! The store conformance suite: every case is written once and runs against each backend
//! (SQLite in a temp dir; PostgreSQL as a private throwaway cluster). A third backend is added by
//! adding it to [`Kind`] and the `conformance!` list at the bottom; when every case passes, the
//! registry may run on it.

use std::collections::BTreeMap;

use fulcrum_core::event::{EventKind, EventPayload, GovernCtx};
use fulcrum_core::findings::{Finding, Severity};
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::{Actor, AliasCause, Hold, Stage};
use fulcrum_core::names::{AliasName, ModelName, VersionLabel};
use fulcrum_core::{Digest, FileEntry, Manifest};
use fulcrum_ledger::merkle::{self, Frontier};
use fulcrum_store::ledger::CheckpointRecord;
use fulcrum_store::{
    Database, DeadLetter, DecisionQuery, DecisionRow, Govern, InstallKind, NewModel, NewVersion, PolicyInstall,
    SnapshotRecord, Store, StoreError, StoreOptions, WaiverRecord,
};
use sqlx::Row as _;
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Postgres,
}

/// One backend under test: the store, where it lives, and a raw connection for attacks.
struct Cx {
    store: Store,
    db: Database,
    raw: sqlx::AnyPool,
    _keep: Keep,
}

enum Keep {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Pg(#[allow(dead_code)] fulcrum_testkit::Postgres),
}

impl Cx {
    /// `None` only locally when the backend's server is not installed (never under `CI=true`).
    async fn new(kind: Kind) -> Option<Self> {
        let (db, url, keep) = match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("registry.db");
                let url = format!("sqlite://{}", path.display());
                (Database::Sqlite { path }, url, Keep::Dir(dir))
            }
            Kind::Postgres => {
                let pg = fulcrum_testkit::Postgres::start()?;
                let url = pg.database("fulcrum");
                (Database::Postgres { url: url.clone(), password: None }, url, Keep::Pg(pg))
            }
        };
        let store = Store::connect(&db, StoreOptions::default()).await.unwrap();
        let raw = sqlx::AnyPool::connect(&url).await.unwrap();
        Some(Self { store, db, raw, _keep: keep })
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query(sql).fetch_one(&self.raw).await.unwrap().get::<i64, _>(0)
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn actor(subject: &str, role: Role) -> Actor {
    Actor { subject: subject.into(), role }
}

async fn model(s: &Store, tenant: &str, name: &str) -> i64 {
    s.create_model(
        NewModel {
            tenant: tenant.into(),
            name: ModelName::parse(name).unwrap(),
            domain: "credit".into(),
            description: "scores".into(),
            owners: vec!["risk-team".into()],
            labels: BTreeMap::from([("team".into(), "risk".into())]),
        },
        "ci",
        now(),
    )
    .await
    .unwrap()
    .id
}

fn version(label: &str, files: &[(&str, &[u8])], release: serde_json::Value) -> NewVersion {
    let manifest = Manifest::new(
        files
            .iter()
            .map(|(p, b)| FileEntry { path: (*p).into(), size: b.len() as u64, digest: Digest::of(b) })
            .collect(),
    )
    .unwrap();
    NewVersion {
        label: VersionLabel::parse(label).unwrap(),
        manifest,
        record_digest: Digest::of(format!("record {label}").as_bytes()),
        release,
        publisher: "ci".into(),
        chg_id: Some("CHG-7".into()),
    }
}

fn policy() -> Digest {
    Digest::of(b"policy")
}

/// Register, then promote through the four-eyes gate to Approved.
async fn approved(s: &Store, tenant: &str, name: &str, label: &str) {
    s.register_version(
        tenant,
        name,
        version(label, &[("w.bin", label.as_bytes())], serde_json::json!({})),
        &policy(),
        now(),
    )
    .await
    .unwrap();
    let ctx = GovernCtx::default();
    let rm = actor("rm", Role::ReleaseManager);
    s.govern(tenant, name, &rm, Govern::Promote { version: label.into(), to: Stage::Staging }, &ctx, now())
        .await
        .unwrap();
    s.govern(tenant, name, &actor("ana", Role::Approver), Govern::Approve { version: label.into() }, &ctx, now())
        .await
        .unwrap();
    s.govern(tenant, name, &actor("bo", Role::SecurityOfficer), Govern::Approve { version: label.into() }, &ctx, now())
        .await
        .unwrap();
    s.govern(tenant, name, &rm, Govern::Promote { version: label.into(), to: Stage::Approved }, &ctx, now())
        .await
        .unwrap();
}

fn ev(tenant: &str, i: u64) -> EventPayload {
    let mut e = EventPayload::new(EventKind::AgentStep, OffsetDateTime::UNIX_EPOCH, tenant, "d", "m");
    e.detail = Some(i.to_string());
    e
}

fn kinds(bodies: &[fulcrum_store::StoredEvent]) -> Vec<String> {
    bodies
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect()
}

// ------------------------------------------------------------------------------------- cases

/// A new database gets the whole schema; migrating again applies nothing; the ledger is empty.
async fn migrations_from_empty(cx: &Cx) {
    assert!(Store::migrate(&cx.db).await.unwrap().is_empty(), "a second migration applies nothing");
    assert_eq!(cx.store.ledger_size().await.unwrap(), 0);
    assert_eq!(cx.store.last_event_seq().await.unwrap(), 0);
    assert!(cx.store.current_policy().await.unwrap().is_none());
    let migrations = cx.count("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await;
    assert!(migrations >= 1);
}

/// Models and versions round-trip; a taken name or label is a conflict that changes nothing.
async fn register_and_read(cx: &Cx) {
    let s = &cx.store;
    let id = model(s, "acme", "fraud").await;
    let dup = s
        .create_model(
            NewModel {
                tenant: "acme".into(),
                name: ModelName::parse("fraud").unwrap(),
                domain: "x".into(),
                description: String::new(),
                owners: vec![],
                labels: BTreeMap::new(),
            },
            "ci",
            now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    let m = s.get_model("acme", "fraud").await.unwrap().unwrap();
    assert_eq!((m.id, m.domain.as_str(), m.labels["team"].as_str()), (id, "credit", "risk"));
    assert!(s.get_model("other", "fraud").await.unwrap().is_none(), "models are per tenant");

    let release = serde_json::json!({
        "model_card": {"intended_use": "credit scoring", "data_classification": "confidential"},
        "dataset_snapshots": [{"uri": "s3://data/train@1", "digest": format!("{}", Digest::of(b"train"))}],
    });
    let v = s
        .register_version(
            "acme",
            "fraud",
            version("v1", &[("a.bin", b"aaa"), ("b.json", b"{}")], release.clone()),
            &policy(),
            now(),
        )
        .await
        .unwrap();
    assert_eq!((v.seq, v.stage, v.hold), (1, Stage::Candidate, Hold::None));
    let back = s.get_version(id, "v1").await.unwrap().unwrap();
    assert_eq!(back.files.len(), 2);
    assert_eq!(back.release, release);
    assert_eq!(back.artifact_digest, v.artifact_digest);
    assert_eq!(back.chg_id.as_deref(), Some("CHG-7"));
    assert!(back.ledger_index.is_some(), "the version points at its release_published leaf");

    let events_before = s.last_event_seq().await.unwrap();
    let taken = s
        .register_version(
            "acme",
            "fraud",
            version("v1", &[("a.bin", b"other")], serde_json::json!({})),
            &policy(),
            now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    let missing = s
        .register_version("acme", "nope", version("v1", &[("a.bin", b"x")], serde_json::json!({})), &policy(), now())
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    assert_eq!(s.last_event_seq().await.unwrap(), events_before, "a refused registration writes no event");

    for i in 2..=5 {
        s.register_version(
            "acme",
            "fraud",
            version(&format!("v{i}"), &[("a.bin", &[i as u8])], serde_json::json!({})),
            &policy(),
            now(),
        )
        .await
        .unwrap();
    }
    let page1 = s.list_versions(id, 0, 2).await.unwrap();
    let page2 = s.list_versions(id, page1[1].seq, 10).await.unwrap();
    let labels: Vec<_> = page1.iter().chain(&page2).map(|v| v.label.as_str()).collect();
    assert_eq!(labels, ["v1", "v2", "v3", "v4", "v5"]);
    let newest: Vec<String> = s.latest_versions(id, 2).await.unwrap().into_iter().map(|v| v.label).collect();
    assert_eq!(newest, ["v5", "v4"], "newest first");
    let models = s.list_models("acme", "", 10).await.unwrap();
    assert_eq!(models.len(), 1);

    // Every blob the version names is one of its uses; the tenant holds it.
    let a = Digest::of(b"aaa");
    let uses = s.blob_uses("acme", &a).await.unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].version, "v1");
    s.grant_blob("acme", &a).await.unwrap();
    s.grant_blob("acme", &a).await.unwrap();
    assert!(s.tenant_has_blob("acme", &a).await.unwrap(), "the uploader's tenant holds it (granted once)");
    assert!(!s.tenant_has_blob("other", &a).await.unwrap());
    assert_eq!(s.blob_tenants(&a).await.unwrap(), ["acme"]);
    assert_eq!(s.blob_uses("acme", &v.artifact_digest).await.unwrap().len(), 1, "the manifest belongs to it too");

    // The dataset catalog answers which versions used a snapshot.
    let used = s.dataset_uses("acme", &Digest::of(b"train").to_string(), 0, 10).await.unwrap();
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].listed.version, "v1");
    assert_eq!(used[0].uris, ["s3://data/train@1"]);
}

/// Every lifecycle path, through the store: promotion with four eyes, alias moves with history,
/// quarantine (alias rolls back), lift, revocation (final), refusals that change nothing.
async fn govern_every_path(cx: &Cx) {
    let s = &cx.store;
    let id = model(s, "acme", "fraud").await;
    approved(s, "acme", "fraud", "v1").await;
    approved(s, "acme", "fraud", "v2").await;
    let rm = actor("rm", Role::ReleaseManager);
    let ctx = GovernCtx { chg_id: Some("CHG-9".into()), ..Default::default() };
    let prod = AliasName::parse("production").unwrap();
    for v in ["v1", "v2"] {
        s.govern(
            "acme",
            "fraud",
            &rm,
            Govern::SetAlias { alias: prod.clone(), version: v.into(), env: None, allow_downgrade: false },
            &ctx,
            now(),
        )
        .await
        .unwrap();
    }
    let a = s.get_alias(id, "production").await.unwrap().unwrap();
    assert_eq!((a.version.as_deref(), a.position), (Some("v2"), 2));

    // A refusal (a second approval by the same person is not four eyes; promoting past a stage
    // that is not reached) leaves no trace.
    let before = s.last_event_seq().await.unwrap();
    s.register_version("acme", "fraud", version("v3", &[("w.bin", b"3")], serde_json::json!({})), &policy(), now())
        .await
        .unwrap();
    let after_reg = s.last_event_seq().await.unwrap();
    assert_eq!(after_reg, before + 1);
    let refused = s
        .govern("acme", "fraud", &rm, Govern::Promote { version: "v3".into(), to: Stage::Approved }, &ctx, now())
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Refused(_)), "{refused:?}");
    let unknown =
        s.govern("acme", "fraud", &rm, Govern::Approve { version: "v9".into() }, &ctx, now()).await.unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound(_)), "{unknown:?}");
    assert_eq!(s.last_event_seq().await.unwrap(), after_reg, "refusals write nothing");
    assert_eq!(s.get_version(id, "v3").await.unwrap().unwrap().stage, Stage::Candidate);

    // Quarantine v2: production rolls back to v1.
    let so = actor("bo", Role::SecurityOfficer);
    let inc = GovernCtx { inc_id: Some("INC-1".into()), reason: Some("CVE".into()), ..Default::default() };
    let g = s.govern("acme", "fraud", &so, Govern::Quarantine { version: "v2".into() }, &inc, now()).await.unwrap();
    assert!(!g.effects.is_empty() && !g.ledger.is_empty(), "the change and its leaves");
    let a = s.get_alias(id, "production").await.unwrap().unwrap();
    assert_eq!((a.version.as_deref(), a.cause), (Some("v1"), AliasCause::Rollback));
    assert_eq!(s.get_version(id, "v2").await.unwrap().unwrap().hold, Hold::Quarantined);

    // Revoke v2: final — no lift afterwards.
    s.govern("acme", "fraud", &so, Govern::Revoke { version: "v2".into() }, &inc, now()).await.unwrap();
    assert_eq!(s.get_version(id, "v2").await.unwrap().unwrap().hold, Hold::Revoked);
    let lift = s.govern("acme", "fraud", &so, Govern::LiftQuarantine { version: "v2".into() }, &inc, now()).await;
    assert!(lift.is_err(), "a revoked version cannot be lifted");

    // The alias history is a chain: positions 1, 2, 3 with their causes and ids.
    let h = s.alias_history(id, "production").await.unwrap();
    let chain: Vec<_> = h.iter().map(|r| (r.position, r.version.clone().unwrap_or_default())).collect();
    assert_eq!(chain, [(1, "v1".into()), (2, "v2".into()), (3, "v1".into())]);

    // Delete the alias.
    s.govern("acme", "fraud", &rm, Govern::DeleteAlias { alias: prod.clone() }, &ctx, now()).await.unwrap();
    let a = s.get_alias(id, "production").await.unwrap();
    assert!(a.as_ref().is_none_or(|a| a.version.is_none()), "{a:?}");

    // The events say the same, in order.
    let evs = s.events_after(Some("acme"), 0, 1000).await.unwrap();
    let k = kinds(&evs);
    assert_eq!(k.iter().filter(|k| k.ends_with("release_published")).count(), 3, "{k:?}");
    assert!(k.iter().any(|k| k.ends_with("quarantined")), "{k:?}");
    assert!(k.iter().any(|k| k.ends_with("revocation")), "{k:?}");
    let seqs: Vec<_> = evs.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap-free: {seqs:?}");
    // Governance rows and the catalog's brief view agree with the records.
    let (versions, aliases) = s.governance_rows().await.unwrap();
    assert_eq!(versions.len(), 3);
    assert!(aliases.iter().all(|(_, target)| target.is_none()), "the alias was deleted: {aliases:?}");
}

/// Concurrent events are group-committed; positions and leaves are gap-free and paired; pages
/// by tenant; look-up by id.
async fn events_order_and_group_commit(cx: &Cx) {
    let s = &cx.store;
    let before = s.group_commits();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.record_event(ev(if i % 2 == 0 { "a" } else { "b" }, i)).await.unwrap() })
        })
        .collect();
    let mut got = vec![];
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert!(s.group_commits() - before < 100, "200 concurrent events share commits");
    got.sort_by_key(|e| e.seq);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.ledger_index, Some(i as u64));
    }
    let a = s.events_after(Some("a"), 0, 1000).await.unwrap();
    assert_eq!(a.len(), 100);
    let page = s.events_after(None, 150, 20).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), (151..=170).collect::<Vec<_>>());
    let id = serde_json::from_str::<serde_json::Value>(&got[41].body).unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(s.event_seq(&id).await.unwrap(), Some(42));
    assert_eq!(s.event_body(42).await.unwrap().as_deref(), Some(got[41].body.as_str()));
    assert_eq!(s.last_event_seq().await.unwrap(), 200);
    // A batch is one transaction with consecutive positions.
    assert_eq!(s.record_events((0..7).map(|i| ev("a", i)).collect()).await.unwrap(), 7);
    assert_eq!(s.last_event_seq().await.unwrap(), 207);
    assert_eq!(s.ledger_size().await.unwrap(), 207);
    // A store that can no longer write answers `Unavailable`, never a position.
    s.close().await;
    let refused = s.record_event(ev("a", 999)).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
}

/// The Merkle ledger: roots and proofs from the built tree match a frontier folded over the
/// leaves; checkpoints only grow; evidence is found by change and incident id.
async fn ledger_and_checkpoints(cx: &Cx) {
    let s = &cx.store;
    let mut f = Frontier::default();
    let mut roots = vec![merkle::empty_root()];
    for batch in [1u64, 6, 25, 2] {
        s.record_events((0..batch).map(|i| ev("t", i)).collect()).await.unwrap();
        let size = s.ledger_size().await.unwrap();
        for e in s.ledger_entries(f.size(), size).await.unwrap() {
            assert_eq!(merkle::leaf_hash(e.data.as_ref().unwrap()), e.leaf_hash);
            f.push(e.leaf_hash);
            roots.push(f.root());
        }
        // Built in uneven steps, and again idempotently.
        assert!(s.ledger_build(size / 2).await.unwrap() >= size / 2);
        assert_eq!(s.ledger_root(size).await.unwrap(), f.root());
        assert_eq!(s.ledger_build(size).await.unwrap(), size);
    }
    let size = s.ledger_size().await.unwrap();
    for m in [0, 5, size - 1] {
        let proof = s.ledger_ranges(&merkle::inclusion_path(m, size)).await.unwrap();
        let leaf = s.ledger_entries(m, m + 1).await.unwrap()[0].leaf_hash;
        merkle::verify_inclusion(m, size, &leaf, &proof, &roots[size as usize]).unwrap();
    }
    let proof = s.ledger_ranges(&merkle::consistency_path(7, size)).await.unwrap();
    merkle::verify_consistency(7, size, &roots[7], &roots[size as usize], &proof).unwrap();

    let cp = |size: u64| CheckpointRecord {
        size,
        root: roots[size as usize],
        note: format!("note {size}"),
        kid: "k1".into(),
        signed_at: "2026-12-06T00:00:00Z".into(),
    };
    s.store_checkpoint(&cp(10)).await.unwrap();
    s.store_checkpoint(&cp(size)).await.unwrap();
    let stale = s.store_checkpoint(&cp(10)).await.unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale:?}");
    // The same tree signed again (another replica got there first) is already kept; the same
    // size with another root is not.
    s.store_checkpoint(&CheckpointRecord { note: "signed elsewhere".into(), ..cp(size) }).await.unwrap();
    let forked = s.store_checkpoint(&CheckpointRecord { root: [7; 32], ..cp(size) }).await.unwrap_err();
    assert!(matches!(forked, StoreError::Conflict(_)), "{forked:?}");
    assert_eq!(cx.count("SELECT COUNT(*) FROM ledger_checkpoints").await, 2);
    let last = s.last_checkpoint().await.unwrap().unwrap();
    assert_eq!((last.size, last.root), (size, roots[size as usize]));

    // Evidence by change id (the event's JSON is looked into) and by a decision's column.
    let mut e = ev("t", 99);
    e.chg_id = Some("CHG-42".into());
    s.record_event(e).await.unwrap();
    s.record_decision(&decision("t", "d-1", Some("CHG-42"), true)).await.unwrap();
    s.record_decision(&decision("t", "d-2", Some("CHG-43"), false)).await.unwrap();
    let found = s.evidence_records("t", Some("CHG-42"), None).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.windows(2).all(|w| w[0].index < w[1].index));
}

fn decision(tenant: &str, id: &str, chg: Option<&str>, allow: bool) -> DecisionRow {
    DecisionRow {
        decision_id: id.into(),
        tenant: tenant.into(),
        model: Some("fraud".into()),
        version: Some("v1".into()),
        path: "fulcrum/gate/promote".into(),
        allow,
        revision: "sha256:abc".into(),
        chg_id: chg.map(Into::into),
        inc_id: None,
        record: serde_json::json!({"decision_id": id, "result": {"allow": allow}}).to_string(),
    }
}

/// Decision logs are queried by their columns; policy snapshots install, roll back and keep
/// their history.
async fn decisions_and_policy(cx: &Cx) {
    let s = &cx.store;
    for i in 0..5 {
        s.record_decision(&decision("acme", &format!("d{i}"), Some(if i < 3 { "CHG-1" } else { "CHG-2" }), i % 2 == 0))
            .await
            .unwrap();
    }
    s.record_decision(&decision("other", "x", Some("CHG-1"), true)).await.unwrap();
    let q = DecisionQuery { tenant: "acme".into(), chg_id: Some("CHG-1".into()), limit: 100, ..Default::default() };
    assert_eq!(s.decisions(&q).await.unwrap().len(), 3);
    let q = DecisionQuery { tenant: "acme".into(), decision_id: Some("d4".into()), limit: 100, ..Default::default() };
    let one = s.decisions(&q).await.unwrap();
    assert_eq!(one.len(), 1);
    assert!(one[0].1.contains("\"d4\""));

    let snap = |n: u8| SnapshotRecord {
        digest: Digest::of(&[n]).to_string(),
        body: vec![n; 40],
        envelope: vec![n, 0, 1],
        installed_by: "admin".into(),
        installed_at: "2026-12-06T00:00:00Z".into(),
    };
    let install = PolicyInstall { kind: InstallKind::Install, reason: None };
    assert_eq!(s.install_policy(&snap(1), &install, true, now()).await.unwrap(), InstallKind::Install);
    assert_eq!(s.install_policy(&snap(2), &install, true, now()).await.unwrap(), InstallKind::Install);
    let back = s.install_policy(&snap(1), &install, true, now()).await.unwrap();
    assert_eq!(back, InstallKind::Rollback);
    let cur = s.current_policy().await.unwrap().unwrap();
    assert_eq!((cur.digest.clone(), cur.body.clone()), (snap(1).digest, snap(1).body));
    let h = s.policy_history(10).await.unwrap();
    assert_eq!(
        h.iter().map(|e| e.digest.clone()).collect::<Vec<_>>(),
        [snap(1).digest, snap(2).digest, snap(1).digest]
    );
    assert!(s.policy_by_digest(&snap(2).digest).await.unwrap().is_some());
}

/// Findings are recorded per version (re-reporting updates), waivers are immutable records.
async fn findings_and_waivers(cx: &Cx) {
    let s = &cx.store;
    let mid = model(s, "acme", "fraud").await;
    let v = s
        .register_version("acme", "fraud", version("v1", &[("w", b"1")], serde_json::json!({})), &policy(), now())
        .await
        .unwrap();
    let f = |id: &str, sev: Severity| Finding {
        id: id.into(),
        severity: sev,
        status: "open".into(),
        package: "numpy".into(),
    };
    let ev = |kind| {
        let mut e = fulcrum_core::event::EventPayload::new(kind, now(), "acme", "fraud", "fraud");
        e.version = Some("v1".into());
        e
    };
    let before = s.last_event_seq().await.unwrap();
    s.record_findings(
        v.id,
        &[f("CVE-1", Severity::High), f("CVE-2", Severity::Low)],
        "grype",
        "ci",
        now(),
        ev(EventKind::FindingsRecorded),
    )
    .await
    .unwrap();
    s.record_findings(v.id, &[f("CVE-1", Severity::Critical)], "grype", "ci", now(), ev(EventKind::FindingsRecorded))
        .await
        .unwrap();
    let got = s.findings(v.id).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].severity, Severity::Critical, "a re-report updates the finding");
    let w = WaiverRecord {
        id: "W-1".into(),
        model: "fraud".into(),
        version: Some("v1".into()),
        finding: "CVE-2".into(),
        justification: "not reachable".into(),
        approver: "bo".into(),
        expires_at: "2027-01-01T00:00:00Z".into(),
        created_at: String::new(),
    };
    s.grant_waiver("acme", mid, Some(v.id), &w, now(), ev(EventKind::WaiverGranted)).await.unwrap();
    let again = s.grant_waiver("acme", mid, Some(v.id), &w, now(), ev(EventKind::WaiverGranted)).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    // Each recording and grant is one event in the log (ledgered with it); the refused grant none.
    let kinds: Vec<String> = s
        .events_after(None, before, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["data"]["event"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["findings_recorded", "findings_recorded", "waiver_granted"]);
    let ws = s.waivers(mid, Some(v.id)).await.unwrap();
    assert_eq!(ws.len(), 1);
    assert_eq!((ws[0].finding.as_str(), ws[0].version.as_deref()), ("CVE-2", Some("v1")));
}

/// Sinks only move forward; dead letters are listed per tenant and settled.
async fn sinks_and_dead_letters(cx: &Cx) {
    let s = &cx.store;
    assert_eq!(s.sink_position("nats").await.unwrap(), 0);
    s.set_sink_position("nats", 10).await.unwrap();
    s.set_sink_position("nats", 4).await.unwrap();
    assert_eq!(s.sink_position("nats").await.unwrap(), 10, "a sink never moves back");
    s.set_sink_position("nats", 12).await.unwrap();
    assert_eq!(s.sink_position("nats").await.unwrap(), 12);

    let d = |tenant: &str, seq: i64| DeadLetter {
        id: 0,
        sink: "hook".into(),
        tenant: tenant.into(),
        seq,
        event_id: format!("e{seq}"),
        attempts: 5,
        last_error: "HTTP 500".into(),
        at: "2026-12-06T00:00:00Z".into(),
        resolved_at: None,
        resolved_by: None,
    };
    s.add_dead_letter(&d("acme", 3)).await.unwrap();
    s.add_dead_letter(&d("acme", 4)).await.unwrap();
    s.add_dead_letter(&d("other", 5)).await.unwrap();
    let mine = s.dead_letters("acme", 10).await.unwrap();
    assert_eq!(mine.len(), 2);
    let id = mine[0].id;
    assert!(s.dead_letter("other", id).await.unwrap().is_none(), "another tenant's dead letter is not visible");
    s.settle_dead_letter(id, Err("HTTP 502"), "ops", "2026-12-06T01:00:00Z").await.unwrap();
    let one = s.dead_letter("acme", id).await.unwrap().unwrap();
    assert_eq!((one.attempts, one.last_error.as_str(), one.resolved_at.is_none()), (6, "HTTP 502", true));
    s.settle_dead_letter(id, Ok(()), "ops", "2026-12-06T02:00:00Z").await.unwrap();
    let one = s.dead_letter("acme", id).await.unwrap().unwrap();
    assert_eq!(one.resolved_by.as_deref(), Some("ops"));
}

/// An attacker (or a careless operator) with SQL access cannot edit or remove history: every
/// append-only table refuses UPDATE and DELETE; a revoked version stays revoked; stages only
/// climb; what a version is never changes; a version is never removed.
async fn append_only_guards(cx: &Cx) {
    let s = &cx.store;
    let id = model(s, "acme", "fraud").await;
    approved(s, "acme", "fraud", "v1").await;
    let so = actor("bo", Role::SecurityOfficer);
    let alias = Govern::SetAlias {
        alias: AliasName::parse("production").unwrap(),
        version: "v1".into(),
        env: None,
        allow_downgrade: false,
    };
    s.govern("acme", "fraud", &actor("rm", Role::ReleaseManager), alias, &GovernCtx::default(), now()).await.unwrap();
    s.register_version("acme", "fraud", version("v2", &[("w", b"2")], serde_json::json!({})), &policy(), now())
        .await
        .unwrap();
    let inc = GovernCtx { inc_id: Some("INC-2".into()), ..Default::default() };
    s.govern("acme", "fraud", &so, Govern::Revoke { version: "v2".into() }, &inc, now()).await.unwrap();
    s.record_decision(&decision("acme", "d1", None, true)).await.unwrap();
    let size = s.ledger_size().await.unwrap();
    s.store_checkpoint(&CheckpointRecord {
        size,
        root: s.ledger_root(size).await.unwrap(),
        note: "n".into(),
        kid: "k".into(),
        signed_at: "t".into(),
    })
    .await
    .unwrap();
    s.ledger_build(size).await.unwrap();
    let attacks = [
        "UPDATE events SET body = '{}' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 1",
        "UPDATE alias_history SET version_id = NULL",
        "DELETE FROM alias_history",
        "UPDATE ledger_leaves SET hash = ledger_leaves.hash WHERE idx = 0",
        "DELETE FROM ledger_leaves WHERE idx = 0",
        "DELETE FROM ledger_nodes",
        "UPDATE ledger_checkpoints SET note = 'forged'",
        "DELETE FROM ledger_checkpoints",
        "UPDATE decisions SET allow = 0",
        "DELETE FROM decisions",
        "DELETE FROM blob_uses",
        "UPDATE versions SET hold = 'none' WHERE label = 'v2'",
        "UPDATE versions SET stage = 'Candidate' WHERE label = 'v1'",
        "UPDATE versions SET artifact_digest = 'sha256:00' WHERE label = 'v1'",
        "DELETE FROM versions WHERE label = 'v2'",
    ];
    for sql in attacks {
        let e = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&cx.raw).await;
        assert!(e.is_err(), "{sql} must be refused");
    }
    assert_eq!(s.get_version(id, "v2").await.unwrap().unwrap().hold, Hold::Revoked);
    assert_eq!(s.get_version(id, "v1").await.unwrap().unwrap().stage, Stage::Approved);
    assert_eq!(s.ledger_size().await.unwrap(), size);
    assert_eq!(cx.count("SELECT COUNT(*) FROM ledger_checkpoints").await, 1);
    // What may change still changes: a hold (quarantine) on an Approved version.
    s.govern("acme", "fraud", &so, Govern::Quarantine { version: "v1".into() }, &inc, now()).await.unwrap();
}

/// Bad input is refused before anything is written, with a typed error, on every backend.
async fn bad_input_changes_nothing(cx: &Cx) {
    let s = &cx.store;
    model(s, "acme", "fraud").await;
    let before = (s.last_event_seq().await.unwrap(), s.ledger_size().await.unwrap());
    let rm = actor("rm", Role::ReleaseManager);
    let e = s
        .govern("acme", "ghost", &rm, Govern::Approve { version: "v1".into() }, &GovernCtx::default(), now())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    let e = s
        .govern(
            "acme",
            "fraud",
            &rm,
            Govern::SetAlias {
                alias: AliasName::parse("production").unwrap(),
                version: "v1".into(),
                env: None,
                allow_downgrade: false,
            },
            &GovernCtx::default(),
            now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    // Text the engines treat specially is stored as given.
    let odd = "quote ' and \\ and ? and $1 and 😀";
    s.record_decision(&DecisionRow { record: odd.into(), ..decision("acme", "odd", Some(odd), true) }).await.unwrap();
    let q = DecisionQuery { tenant: "acme".into(), chg_id: Some(odd.into()), limit: 10, ..Default::default() };
    assert_eq!(s.decisions(&q).await.unwrap()[0].1, odd);
    assert_eq!(s.last_event_seq().await.unwrap(), before.0);
    assert_eq!(s.ledger_size().await.unwrap(), before.1 + 1, "only the decision's leaf");
}

/// One leader of the background work at a time, with terms that only grow; a leader that lost
/// its lock (its session killed, as in a partition or a long pause) is fenced: its background
/// writes are refused once a successor took a newer term.
async fn leadership_terms_and_fencing(cx: &Cx) {
    let s = &cx.store;
    assert_eq!(s.newest_term().await.unwrap(), None);
    let mut a = s.try_lead("replica-a", now()).await.unwrap().expect("the first replica leads");
    assert!(s.still_leads(&mut a).await.unwrap());
    assert_eq!(s.newest_term().await.unwrap().map(|t| (t.term, t.holder)), Some((a.term(), "replica-a".into())));

    let other = Store::connect(&cx.db, StoreOptions::default()).await.unwrap();
    let mut b = match cx.db.dialect() {
        // SQLite is one process per file: its store always leads.
        fulcrum_store::db::Dialect::Sqlite => other.try_lead("replica-b", now()).await.unwrap().unwrap(),
        fulcrum_store::db::Dialect::Postgres => {
            assert!(other.try_lead("replica-b", now()).await.unwrap().is_none(), "two leaders");
            // The leader's session dies (partition, kill -9): its lock goes with it.
            let killed: i64 = sqlx::query(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
            )
            .fetch_one(&cx.raw)
            .await
            .unwrap()
            .get(0);
            assert_eq!(killed, 1);
            let mut lease = None;
            for _ in 0..50 {
                lease = other.try_lead("replica-b", now()).await.unwrap();
                if lease.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            lease.expect("another replica leads within seconds")
        }
    };
    assert!(b.term() > a.term(), "terms only grow");
    assert!(other.still_leads(&mut b).await.unwrap());
    assert!(!s.still_leads(&mut a).await.unwrap(), "the old leader knows it lost");

    // The old leader, resuming as if nothing happened, cannot act; the new one can.
    let cp = CheckpointRecord {
        size: 0,
        root: [0; 32],
        note: "note 0".into(),
        kid: "k1".into(),
        signed_at: "2026-12-06T00:00:00Z".into(),
    };
    let e = s.store_checkpoint_as(&cp, a.fence()).await.unwrap_err();
    assert!(matches!(e, StoreError::Fenced { term, newest } if term == a.term() && newest == b.term()), "{e:?}");
    assert_eq!(s.last_checkpoint().await.unwrap(), None, "nothing written by the fenced leader");
    other.store_checkpoint_as(&cp, b.fence()).await.unwrap();
    assert_eq!(s.last_checkpoint().await.unwrap().map(|c| c.size), Some(0));
    // Terms are append-only.
    assert!(sqlx::query("DELETE FROM leader_terms").execute(&cx.raw).await.is_err());
    assert!(sqlx::query("UPDATE leader_terms SET term = 99").execute(&cx.raw).await.is_err());
}

/// Replica heartbeats: one row per replica, replaced by its next beat; a replica silent for the
/// forget window is removed by anyone's beat.
async fn replica_heartbeats(cx: &Cx) {
    use fulcrum_store::replicas::{Beat, FORGET_AFTER};
    let s = &cx.store;
    assert_eq!(s.replicas().await.unwrap(), vec![]);
    let t0 = now().replace_nanosecond(0).unwrap();
    let beat = |name: &str, at: OffsetDateTime, applied: i64| Beat {
        name: name.into(),
        started_at: t0,
        seen_at: at,
        applied_seq: applied,
        view_age_ms: 40,
        leader_term: 0,
        build: "test".into(),
    };
    s.heartbeat(&beat("a", t0, 1)).await.unwrap();
    s.heartbeat(&beat("b", t0, 2)).await.unwrap();
    s.heartbeat(&beat("a", t0 + time::Duration::seconds(1), 7)).await.unwrap();
    let seen = s.replicas().await.unwrap();
    assert_eq!(seen.iter().map(|b| (b.name.as_str(), b.applied_seq)).collect::<Vec<_>>(), [("a", 7), ("b", 2)]);
    assert_eq!(seen[0].seen_at, t0 + time::Duration::seconds(1));
    assert_eq!(seen[0].started_at, t0);
    // Much later, a's beat forgets b (silent since t0).
    let later = t0 + FORGET_AFTER + time::Duration::seconds(2);
    s.heartbeat(&beat("a", later, 9)).await.unwrap();
    assert_eq!(s.replicas().await.unwrap().iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["a"]);
}

/// Incidents: opened once per tenant and id (with their event), versions attached idempotently,
/// closed once; the events carrying an incident id and a model's serving events are read back
/// by position; decisions are read in order for the SIEM push.
async fn incidents_and_their_events(cx: &Cx) {
    use fulcrum_store::NewIncident;
    let s = &cx.store;
    model(s, "acme", "fraud").await;
    approved(s, "acme", "fraud", "v1").await;
    approved(s, "acme", "fraud", "v2").await;
    approved(s, "acme", "fraud", "v3").await;
    let versions = [("fraud".to_owned(), "v1".to_owned())];
    let n = NewIncident {
        tenant: "acme",
        id: "INC-1",
        title: "critical CVE",
        severity: "critical",
        source: "operator",
        opened_by: "bo",
        versions: &versions,
    };
    let before = s.last_event_seq().await.unwrap();
    s.open_incident(&n, now()).await.unwrap();
    let again = s.open_incident(&n, now()).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    // The same id in another tenant is another incident.
    s.open_incident(&NewIncident { tenant: "globex", ..n.clone() }, now()).await.unwrap();
    // A withdrawal under an incident files its version there in the same transaction, and a
    // withdrawal under an id with no record opens one.
    let bo = actor("bo", Role::SecurityOfficer);
    let under = |inc: &str| GovernCtx { inc_id: Some(inc.into()), reason: Some("CVE".into()), ..GovernCtx::default() };
    s.govern("acme", "fraud", &bo, Govern::Revoke { version: "v2".into() }, &under("INC-1"), now()).await.unwrap();
    s.govern("acme", "fraud", &bo, Govern::Quarantine { version: "v3".into() }, &under("INC-2"), now()).await.unwrap();
    let i = s.incident("acme", "INC-1").await.unwrap().unwrap();
    assert_eq!(
        i.versions.iter().map(|v| (v.version.as_str(), v.via.as_str())).collect::<Vec<_>>(),
        [("v1", "declared"), ("v2", "revocation")]
    );
    let opened = s.incident("acme", "INC-2").await.unwrap().unwrap();
    assert_eq!(
        (opened.source.as_str(), opened.severity.as_str(), opened.opened_by.as_str()),
        ("quarantine", "high", "bo")
    );
    assert_eq!(opened.versions.len(), 1);
    // A refused withdrawal files nothing and opens nothing (nothing half-applied).
    let refused =
        s.govern("acme", "fraud", &bo, Govern::Quarantine { version: "v2".into() }, &under("INC-3"), now()).await;
    assert!(matches!(refused, Err(StoreError::Refused(_))), "{refused:?}");
    assert!(s.incident("acme", "INC-3").await.unwrap().is_none());
    // The list carries each incident's versions.
    let listed = s.incidents("acme", true, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|i| (i.id.as_str(), i.versions.len())).collect::<Vec<_>>(),
        [("INC-2", 1), ("INC-1", 2)]
    );
    s.close_incident("acme", "INC-1", "bo", "rolled back", now()).await.unwrap();
    let twice = s.close_incident("acme", "INC-1", "bo", "again", now()).await.unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice:?}");
    assert!(matches!(
        s.close_incident("acme", "INC-404", "bo", "x", now()).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    let open: Vec<String> = s.incidents("acme", true, 10).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(open, ["INC-2"], "INC-1 closed");
    let closed = s.incident("acme", "INC-1").await.unwrap().unwrap();
    assert_eq!((closed.closed_by.as_deref(), closed.resolution.as_deref()), (Some("bo"), Some("rolled back")));
    // The incident's own events (by the id inside the JSON), not globex's.
    let kinds_of = |evs: &[fulcrum_store::StoredEvent]| kinds(evs);
    assert_eq!(
        kinds_of(&s.incident_events("acme", "INC-1").await.unwrap()),
        [
            "io.fulcrum.registry.incident_opened",
            "io.fulcrum.registry.revocation",
            "io.fulcrum.registry.incident_closed"
        ]
    );
    // A model's serving events by kind and position.
    let mut step = EventPayload::new(EventKind::AgentStep, now(), "acme", "fraud", "fraud");
    step.reason = Some("quiesce".into());
    s.record_event(step).await.unwrap();
    s.record_event(EventPayload::new(EventKind::FindingsRecorded, now(), "acme", "fraud", "fraud")).await.unwrap();
    let head = s.last_event_seq().await.unwrap();
    let serving = s.model_events_between("acme", "fraud", &[EventKind::AgentStep], before, head, 100).await.unwrap();
    assert_eq!(kinds_of(&serving), ["io.fulcrum.registry.agent_step"]);
    // Their ledger records, for evidence.
    let recs = s.event_records("acme", &serving.iter().map(|e| e.seq).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert!(String::from_utf8_lossy(&recs[0].data).contains("quiesce"));
    // Decisions in log order, every tenant.
    s.record_decision(&decision("acme", "d-1", None, true)).await.unwrap();
    s.record_decision(&decision("globex", "d-2", None, false)).await.unwrap();
    let all = s.decisions_after(0, 100).await.unwrap();
    let ids: Vec<String> = all
        .iter()
        .map(|(_, r)| serde_json::from_str::<serde_json::Value>(r).unwrap()["decision_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[ids.len() - 2..], ["d-1", "d-2"]);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(s.decisions_after(all[all.len() - 2].0, 100).await.unwrap().len(), 1);
}

/// Tags and descriptions on a model and a version: set, overwritten, read back, deleted, each
/// with its `annotated` event; deleting a missing tag logs nothing. MLflow registrations reserve
/// distinct numbers even when several start at once (and after the versions already there), and
/// settle once.
async fn annotations_and_registrations(cx: &Cx) {
    use fulcrum_store::annotations::{Annotator, Change, Target};
    use fulcrum_store::registrations::RegStatus;
    let s = &cx.store;
    let id = model(s, "acme", "fraud").await;
    approved(s, "acme", "fraud", "1").await;
    let who = Annotator { tenant: "acme", domain: "credit", model: "fraud", model_id: id, by: "ana" };
    let before = s.last_event_seq().await.unwrap();
    s.annotate(&who, Target::Model, Change::SetTag { key: "team", value: "risk" }, now()).await.unwrap();
    s.annotate(&who, Target::Model, Change::SetTag { key: "team", value: "fraud-ops" }, now()).await.unwrap();
    s.annotate(&who, Target::Model, Change::Describe { text: "scores card fraud" }, now()).await.unwrap();
    s.annotate(&who, Target::Version("1"), Change::SetTag { key: "validated", value: "yes" }, now()).await.unwrap();
    let m = s.annotations(id, Target::Model).await.unwrap();
    assert_eq!(m.tags, BTreeMap::from([("team".to_owned(), "fraud-ops".to_owned())]));
    assert_eq!(m.description.as_deref(), Some("scores card fraud"));
    assert!(m.updated_at.is_some());
    let v = s.version_annotations(id).await.unwrap();
    assert_eq!(v["1"].tags["validated"], "yes");
    assert!(v["1"].description.is_none());
    assert_eq!(s.annotations(id, Target::Version("1")).await.unwrap(), v["1"]);
    s.annotate(&who, Target::Version("1"), Change::DeleteTag { key: "validated" }, now()).await.unwrap();
    assert!(s.annotations(id, Target::Version("1")).await.unwrap().tags.is_empty());
    let missing = s.annotate(&who, Target::Model, Change::DeleteTag { key: "nope" }, now()).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
    let evs = s.events_after(Some("acme"), before, 100).await.unwrap();
    assert_eq!(kinds(&evs), vec!["io.fulcrum.registry.annotated"; 5], "one event per change, none for the miss");
    let last: serde_json::Value = serde_json::from_str(&evs[4].body).unwrap();
    assert_eq!(last["data"]["version"], "1");
    assert_eq!(last["data"]["detail"], "tag validated deleted");
    assert_eq!(last["data"]["actor"], "ana");

    // Four registrations at once take 2, 3, 4 and 5 (version 1 exists).
    let reserve = |n: usize| {
        let s = s.clone();
        async move { s.reserve_mlflow_version(id, &format!("runs:/r{n}/model"), "r", "ci", now()).await.unwrap() }
    };
    let mut got: Vec<String> = futures_util::future::join_all((0..4).map(reserve)).await;
    got.sort();
    assert_eq!(got, ["2", "3", "4", "5"]);
    s.settle_mlflow_registration(id, "2", RegStatus::Ready, "", now()).await.unwrap();
    s.settle_mlflow_registration(id, "3", RegStatus::Failed, "release gate: unsigned", now()).await.unwrap();
    let again = s.settle_mlflow_registration(id, "3", RegStatus::Ready, "", now()).await.unwrap_err();
    assert!(matches!(again, StoreError::NotFound(_)), "a settled registration stays as it ended");
    let r3 = s.mlflow_registration(id, "3").await.unwrap().unwrap();
    assert_eq!((r3.status, r3.message.as_str()), (RegStatus::Failed, "release gate: unsigned"));
    assert_eq!(r3.created_by, "ci");
    let all = s.mlflow_registrations(id).await.unwrap();
    let states: Vec<(&str, RegStatus)> = all.iter().map(|r| (r.version.as_str(), r.status)).collect();
    assert_eq!(
        states,
        [("2", RegStatus::Ready), ("3", RegStatus::Failed), ("4", RegStatus::Pending), ("5", RegStatus::Pending)]
    );
    assert_eq!(s.reserve_mlflow_version(id, "x", "", "ci", now()).await.unwrap(), "6", "a failed number is not reused");
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let cx = super::Cx::new(super::Kind::Sqlite).await.expect("SQLite is built in");
                    super::$case(&cx).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(cx) = super::Cx::new(super::Kind::Postgres).await else { return };
                    super::$case(&cx).await;
                }
            )*
        }
    };
}

conformance!(
    migrations_from_empty,
    register_and_read,
    govern_every_path,
    events_order_and_group_commit,
    ledger_and_checkpoints,
    decisions_and_policy,
    findings_and_waivers,
    sinks_and_dead_letters,
    append_only_guards,
    bad_input_changes_nothing,
    leadership_terms_and_fencing,
    replica_heartbeats,
    incidents_and_their_events,
    annotations_and_registrations,
);
