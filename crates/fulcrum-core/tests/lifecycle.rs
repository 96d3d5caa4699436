//! The lifecycle state machine as data: every (stage, hold, action) pair, four-eyes cases, alias
//! rules, and a property test that no sequence of commands reaches an illegal state or loses an
//! alias history entry.

use fulcrum_core::Digest;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::*;
use fulcrum_core::names::{AliasName, VersionLabel};
use proptest::prelude::*;
use time::OffsetDateTime;

const NOW: OffsetDateTime = time::macros::datetime!(2026-01-01 00:00 UTC);

fn actor(subject: &str, role: Role) -> Actor {
    Actor { subject: subject.into(), role }
}

fn version(id: i64, stage: Stage, hold: Hold) -> VersionGov {
    VersionGov {
        id,
        label: VersionLabel::parse(&format!("v{id}")).unwrap(),
        seq: id as u64,
        artifact_digest: Digest::of(&id.to_le_bytes()),
        stage,
        hold,
        hold_epoch: u32::from(hold == Hold::Quarantined),
        publisher: "ci".into(),
        approvals: vec![],
    }
}

/// A version in (stage, hold) with what every action needs to be possible: two qualifying
/// promotion approvals and a lift approval from someone else for the current quarantine.
fn prepared(stage: Stage, hold: Hold) -> ModelState {
    let mut v = version(1, stage, hold);
    v.approvals = vec![
        Approval { subject: "ana".into(), role: Role::Approver, kind: ApprovalKind::Promotion, epoch: 0 },
        Approval { subject: "bo".into(), role: Role::SecurityOfficer, kind: ApprovalKind::Promotion, epoch: 0 },
        Approval { subject: "ana".into(), role: Role::Approver, kind: ApprovalKind::Lift, epoch: v.hold_epoch },
    ];
    ModelState { versions: vec![v], ..Default::default() }
}

#[derive(Debug, Clone, Copy)]
enum A {
    Approve,
    Promote(Stage),
    Quarantine,
    Lift,
    Revoke,
}

fn command(a: A) -> Command {
    match a {
        A::Approve => Command::Approve { version: 1 },
        A::Promote(to) => Command::Promote { version: 1, to },
        A::Quarantine => Command::Quarantine { version: 1, inc_id: Some("INC-1".into()), chg_id: None },
        A::Lift => Command::LiftQuarantine { version: 1, chg_id: Some("CHG-1".into()) },
        A::Revoke => Command::Revoke { version: 1, inc_id: None, chg_id: Some("CHG-2".into()) },
    }
}

/// `Ok((stage, hold))` after the action, or the refusal code.
type Expect = Result<(Stage, Hold), &'static str>;

fn check(stage: Stage, hold: Hold, a: A, expect: Expect) {
    let mut state = prepared(stage, hold);
    let before = state.clone();
    let who = actor("rm", Role::ReleaseManager);
    let got = state.apply(&who, command(a), NOW);
    match (&got, expect) {
        (Ok(_), Ok((s, h))) => {
            assert_eq!((state.versions[0].stage, state.versions[0].hold), (s, h), "{stage:?}/{hold:?} {a:?}");
        }
        (Err(r), Err(code)) => {
            assert_eq!(r.code(), code, "{stage:?}/{hold:?} {a:?}: {r}");
            assert_eq!(state, before, "a refusal changed state: {stage:?}/{hold:?} {a:?}");
        }
        _ => panic!("{stage:?}/{hold:?} {a:?}: got {got:?}, expected {expect:?}"),
    }
}

#[test]
fn every_stage_hold_action_pair() {
    use Hold::*;
    use Stage::*;
    let p = A::Promote;
    #[rustfmt::skip]
    let table: &[(Stage, Hold, A, Expect)] = &[
        (Candidate, None, A::Approve, Ok((Candidate, None))),
        (Candidate, None, p(Candidate), Err("already_at_stage")),
        (Candidate, None, p(Staging), Ok((Staging, None))),
        (Candidate, None, p(Approved), Err("not_next_rung")),
        (Candidate, None, A::Quarantine, Ok((Candidate, Quarantined))),
        (Candidate, None, A::Lift, Err("not_quarantined")),
        (Candidate, None, A::Revoke, Ok((Candidate, Revoked))),

        (Candidate, Quarantined, A::Approve, Ok((Candidate, Quarantined))),
        (Candidate, Quarantined, p(Candidate), Err("quarantined")),
        (Candidate, Quarantined, p(Staging), Err("quarantined")),
        (Candidate, Quarantined, p(Approved), Err("quarantined")),
        (Candidate, Quarantined, A::Quarantine, Err("already_quarantined")),
        (Candidate, Quarantined, A::Lift, Ok((Candidate, None))),
        (Candidate, Quarantined, A::Revoke, Ok((Candidate, Revoked))),

        (Candidate, Revoked, A::Approve, Err("revoked")),
        (Candidate, Revoked, p(Candidate), Err("revoked")),
        (Candidate, Revoked, p(Staging), Err("revoked")),
        (Candidate, Revoked, p(Approved), Err("revoked")),
        (Candidate, Revoked, A::Quarantine, Err("revoked")),
        (Candidate, Revoked, A::Lift, Err("revoked")),
        (Candidate, Revoked, A::Revoke, Err("revoked")),

        (Staging, None, A::Approve, Ok((Staging, None))),
        (Staging, None, p(Candidate), Err("no_demotion")),
        (Staging, None, p(Staging), Err("already_at_stage")),
        (Staging, None, p(Approved), Ok((Approved, None))),
        (Staging, None, A::Quarantine, Ok((Staging, Quarantined))),
        (Staging, None, A::Lift, Err("not_quarantined")),
        (Staging, None, A::Revoke, Ok((Staging, Revoked))),

        (Staging, Quarantined, A::Approve, Ok((Staging, Quarantined))),
        (Staging, Quarantined, p(Candidate), Err("quarantined")),
        (Staging, Quarantined, p(Staging), Err("quarantined")),
        (Staging, Quarantined, p(Approved), Err("quarantined")),
        (Staging, Quarantined, A::Quarantine, Err("already_quarantined")),
        (Staging, Quarantined, A::Lift, Ok((Staging, None))),
        (Staging, Quarantined, A::Revoke, Ok((Staging, Revoked))),

        (Staging, Revoked, A::Approve, Err("revoked")),
        (Staging, Revoked, p(Candidate), Err("revoked")),
        (Staging, Revoked, p(Staging), Err("revoked")),
        (Staging, Revoked, p(Approved), Err("revoked")),
        (Staging, Revoked, A::Quarantine, Err("revoked")),
        (Staging, Revoked, A::Lift, Err("revoked")),
        (Staging, Revoked, A::Revoke, Err("revoked")),

        (Approved, None, A::Approve, Err("nothing_to_approve")),
        (Approved, None, p(Candidate), Err("no_demotion")),
        (Approved, None, p(Staging), Err("no_demotion")),
        (Approved, None, p(Approved), Err("already_at_stage")),
        (Approved, None, A::Quarantine, Ok((Approved, Quarantined))),
        (Approved, None, A::Lift, Err("not_quarantined")),
        (Approved, None, A::Revoke, Ok((Approved, Revoked))),

        (Approved, Quarantined, A::Approve, Ok((Approved, Quarantined))),
        (Approved, Quarantined, p(Candidate), Err("quarantined")),
        (Approved, Quarantined, p(Staging), Err("quarantined")),
        (Approved, Quarantined, p(Approved), Err("quarantined")),
        (Approved, Quarantined, A::Quarantine, Err("already_quarantined")),
        (Approved, Quarantined, A::Lift, Ok((Approved, None))),
        (Approved, Quarantined, A::Revoke, Ok((Approved, Revoked))),

        (Approved, Revoked, A::Approve, Err("revoked")),
        (Approved, Revoked, p(Candidate), Err("revoked")),
        (Approved, Revoked, p(Staging), Err("revoked")),
        (Approved, Revoked, p(Approved), Err("revoked")),
        (Approved, Revoked, A::Quarantine, Err("revoked")),
        (Approved, Revoked, A::Lift, Err("revoked")),
        (Approved, Revoked, A::Revoke, Err("revoked")),
    ];
    assert_eq!(table.len(), 3 * 3 * 7, "the table covers every pair");
    for &(s, h, a, e) in table {
        check(s, h, a, e);
    }
}

fn promote_to_approved_with(approvals: &[(&str, Role)]) -> Result<(), String> {
    let mut v = version(1, Stage::Staging, Hold::None);
    v.approvals = approvals
        .iter()
        .map(|(s, r)| Approval { subject: (*s).into(), role: *r, kind: ApprovalKind::Promotion, epoch: 0 })
        .collect();
    let mut st = ModelState { versions: vec![v], ..Default::default() };
    st.apply(&actor("rm", Role::ReleaseManager), Command::Promote { version: 1, to: Stage::Approved }, NOW)
        .map(|_| ())
        .map_err(|r| r.to_string())
}

#[test]
fn four_eyes_as_data() {
    use Role::*;
    let cases: &[(&[(&str, Role)], bool)] = &[
        (&[], false),
        (&[("ana", Approver)], false),
        (&[("ana", Approver), ("ana", SecurityOfficer)], false), // same person twice
        (&[("ana", Approver), ("bo", Approver)], false),         // same role twice
        (&[("ci", Approver), ("bo", SecurityOfficer)], false),   // the publisher ("ci") does not count
        (&[("ana", Viewer), ("bo", SecurityOfficer)], false),    // viewers cannot approve
        (&[("ana", Approver), ("bo", SecurityOfficer)], true),
        (&[("ana", Approver), ("bo", Approver), ("cy", ReleaseManager)], true),
    ];
    for (approvals, ok) in cases {
        assert_eq!(promote_to_approved_with(approvals).is_ok(), *ok, "{approvals:?}");
    }
}

#[test]
fn approval_refusals() {
    let mut st = ModelState { versions: vec![version(1, Stage::Candidate, Hold::None)], ..Default::default() };
    let cmd = Command::Approve { version: 1 };
    assert_eq!(st.apply(&actor("ci", Role::Admin), cmd.clone(), NOW).unwrap_err(), Refusal::PublisherCannotApprove);
    assert_eq!(
        st.apply(&actor("v", Role::Viewer), cmd.clone(), NOW).unwrap_err(),
        Refusal::RoleCannotApprove(Role::Viewer)
    );
    st.apply(&actor("ana", Role::Approver), cmd.clone(), NOW).unwrap();
    assert_eq!(
        st.apply(&actor("ana", Role::Approver), cmd, NOW).unwrap_err(),
        Refusal::AlreadyApprovedBy("ana".into())
    );
}

#[test]
fn lift_needs_someone_else_and_this_quarantine() {
    let mut v = version(1, Stage::Approved, Hold::Quarantined);
    v.hold_epoch = 2;
    // An approval from an earlier quarantine does not count.
    v.approvals.push(Approval { subject: "ana".into(), role: Role::Approver, kind: ApprovalKind::Lift, epoch: 1 });
    let mut st = ModelState { versions: vec![v], ..Default::default() };
    let lift = Command::LiftQuarantine { version: 1, chg_id: Some("CHG-9".into()) };
    let so = actor("sec", Role::SecurityOfficer);
    assert_eq!(st.apply(&so, lift.clone(), NOW).unwrap_err(), Refusal::LiftNeedsApproval);
    // The lifter's own approval does not count either.
    st.apply(&so, Command::Approve { version: 1 }, NOW).unwrap();
    assert_eq!(st.apply(&so, lift.clone(), NOW).unwrap_err(), Refusal::LiftNeedsApproval);
    st.apply(&actor("ana", Role::Approver), Command::Approve { version: 1 }, NOW).unwrap();
    st.apply(&so, lift.clone(), NOW).unwrap();
    assert_eq!(st.versions[0].hold, Hold::None);
    assert_eq!(
        st.apply(&so, Command::LiftQuarantine { version: 1, chg_id: None }, NOW).unwrap_err(),
        Refusal::ChangeIdRequired
    );
}

fn alias(s: &str) -> AliasName {
    AliasName::parse(s).unwrap()
}

fn set(st: &mut ModelState, a: &str, v: i64, chg: Option<&str>, downgrade: bool) -> Result<Vec<Effect>, Refusal> {
    st.apply(
        &actor("rm", Role::ReleaseManager),
        Command::SetAlias {
            alias: alias(a),
            version: v,
            env: None,
            chg_id: chg.map(Into::into),
            allow_downgrade: downgrade,
        },
        NOW,
    )
}

#[test]
fn alias_rules_and_rollback() {
    let mut st = ModelState {
        versions: vec![
            version(1, Stage::Approved, Hold::None),
            version(2, Stage::Approved, Hold::None),
            version(3, Stage::Staging, Hold::None),
            version(4, Stage::Approved, Hold::None),
        ],
        ..Default::default()
    };
    // prod aliases only take Approved versions.
    assert_eq!(set(&mut st, "production", 3, None, false).unwrap_err().code(), "stage_not_allowed");
    // ...but a staging alias may hold a Staging version.
    set(&mut st, "staging", 3, None, false).unwrap();
    set(&mut st, "production", 1, None, false).unwrap();
    set(&mut st, "production", 2, None, false).unwrap();
    set(&mut st, "production", 4, None, false).unwrap();
    assert!(set(&mut st, "production", 4, None, false).unwrap().is_empty(), "same target is a no-op");
    // Downgrade needs both the flag and a change id.
    assert_eq!(set(&mut st, "production", 2, None, false).unwrap_err().code(), "downgrade_needs_change");
    assert_eq!(set(&mut st, "production", 2, None, true).unwrap_err().code(), "downgrade_needs_change");
    assert_eq!(set(&mut st, "production", 2, Some("CHG-1"), false).unwrap_err().code(), "downgrade_needs_change");
    // An alias may not shadow a version label.
    assert_eq!(set(&mut st, "v2", 2, None, false).unwrap_err().code(), "alias_shadows_version");

    // Revoking v4 rolls production back to v2, the previous healthy Approved version.
    let fx = st
        .apply(
            &actor("sec", Role::SecurityOfficer),
            Command::Revoke { version: 4, inc_id: Some("INC-7".into()), chg_id: None },
            NOW,
        )
        .unwrap();
    let prod = &st.aliases[&alias("production")];
    assert_eq!(prod.target, Some(2));
    let last = prod.history.last().unwrap();
    assert_eq!((last.cause, last.inc_id.as_deref(), last.position), (AliasCause::Rollback, Some("INC-7"), 4));
    assert!(matches!(fx.last(), Some(Effect::AliasMoved { from: Some(4), to: Some(2), .. })));

    // Quarantining v2 then skips to v1; quarantining v1 leaves the alias empty.
    st.apply(
        &actor("sec", Role::SecurityOfficer),
        Command::Quarantine { version: 2, inc_id: Some("INC-8".into()), chg_id: None },
        NOW,
    )
    .unwrap();
    assert_eq!(st.aliases[&alias("production")].target, Some(1));
    st.apply(
        &actor("sec", Role::SecurityOfficer),
        Command::Quarantine { version: 1, inc_id: Some("INC-9".into()), chg_id: None },
        NOW,
    )
    .unwrap();
    let prod = &st.aliases[&alias("production")];
    assert_eq!(prod.target, None);
    assert_eq!(prod.history.last().unwrap().cause, AliasCause::Cleared);
    assert_eq!(prod.history.len(), 6, "every move is in the history");
    // The staging alias on v3 was untouched.
    assert_eq!(st.aliases[&alias("staging")].target, Some(3));
}

// ---------------------------------------------------------------------------------------------
// Property: no sequence of commands reaches an illegal state or loses alias history.

#[derive(Debug, Clone)]
enum Op {
    Approve(i64, usize),
    Promote(i64, Stage),
    Quarantine(i64),
    Lift(i64, usize),
    Revoke(i64),
    Set(usize, i64, bool),
    Delete(usize),
}

const PEOPLE: [(&str, Role); 5] = [
    ("ana", Role::Approver),
    ("bo", Role::SecurityOfficer),
    ("cy", Role::ReleaseManager),
    ("ci", Role::Publisher),
    ("dee", Role::Approver),
];
const ALIASES: [&str; 3] = ["production", "staging", "canary"];

fn op() -> impl Strategy<Value = Op> {
    let v = 1i64..=5;
    let stage = prop_oneof![Just(Stage::Candidate), Just(Stage::Staging), Just(Stage::Approved)];
    prop_oneof![
        (v.clone(), 0..PEOPLE.len()).prop_map(|(v, p)| Op::Approve(v, p)),
        (v.clone(), stage).prop_map(|(v, s)| Op::Promote(v, s)),
        v.clone().prop_map(Op::Quarantine),
        (v.clone(), 0..PEOPLE.len()).prop_map(|(v, p)| Op::Lift(v, p)),
        v.clone().prop_map(Op::Revoke),
        (0..ALIASES.len(), v, any::<bool>()).prop_map(|(a, v, d)| Op::Set(a, v, d)),
        (0..ALIASES.len()).prop_map(Op::Delete),
    ]
}

fn to_command(op: &Op) -> (Actor, Command) {
    let rm = actor("cy", Role::ReleaseManager);
    match op {
        Op::Approve(v, p) => (actor(PEOPLE[*p].0, PEOPLE[*p].1), Command::Approve { version: *v }),
        Op::Promote(v, s) => (rm, Command::Promote { version: *v, to: *s }),
        Op::Quarantine(v) => (rm, Command::Quarantine { version: *v, inc_id: Some("INC".into()), chg_id: None }),
        Op::Lift(v, p) => {
            (actor(PEOPLE[*p].0, PEOPLE[*p].1), Command::LiftQuarantine { version: *v, chg_id: Some("CHG".into()) })
        }
        Op::Revoke(v) => (rm, Command::Revoke { version: *v, inc_id: None, chg_id: Some("CHG".into()) }),
        Op::Set(a, v, d) => (
            rm,
            Command::SetAlias {
                alias: alias(ALIASES[*a]),
                version: *v,
                env: None,
                chg_id: d.then(|| "CHG".into()),
                allow_downgrade: *d,
            },
        ),
        Op::Delete(a) => (rm, Command::DeleteAlias { alias: alias(ALIASES[*a]), chg_id: None }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn no_sequence_reaches_an_illegal_state(ops in proptest::collection::vec(op(), 1..60)) {
        let mut st = ModelState {
            versions: (1..=5).map(|i| version(i, Stage::Candidate, Hold::None)).collect(),
            ..Default::default()
        };
        for op in &ops {
            let before = st.clone();
            let (who, cmd) = to_command(op);
            match st.apply(&who, cmd, NOW) {
                Err(_) => prop_assert_eq!(&st, &before, "a refusal changed state"),
                Ok(effects) => {
                    for fx in &effects {
                        if let Effect::StageChanged { version, to: Stage::Approved, .. } = fx {
                            prop_assert!(ModelState::four_eyes(st.version(*version).unwrap()).is_ok());
                        }
                    }
                }
            }
            for (b, a) in before.versions.iter().zip(&st.versions) {
                prop_assert!(a.stage >= b.stage, "stage went down");
                prop_assert!(a.stage as u8 <= b.stage as u8 + 1, "stage skipped a rung");
                if b.hold == Hold::Revoked {
                    prop_assert_eq!(a.hold, Hold::Revoked, "revocation was undone");
                }
                prop_assert!(a.approvals.starts_with(&b.approvals), "an approval was lost");
            }
            for (name, a) in &st.aliases {
                if let Some(old) = before.aliases.get(name) {
                    prop_assert!(a.history.starts_with(&old.history), "alias history lost an entry");
                    prop_assert_eq!(a.env, old.env);
                }
                for (i, e) in a.history.iter().enumerate() {
                    prop_assert_eq!(e.position, i as u64 + 1);
                }
                prop_assert_eq!(a.target, a.history.last().and_then(|e| e.version));
                if let Some(t) = a.target {
                    let v = st.version(t).unwrap();
                    prop_assert!(env_allows(a.env, v.stage, v.hold).is_ok(), "alias points at a version its env forbids");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    /// The events the store writes for every accepted change (`lifecycle_event`), folded by the
    /// projection in order, give exactly the state machine's stages, holds and alias targets:
    /// the ledger alone determines the governance state.
    #[test]
    fn the_projection_of_the_events_is_the_state(ops in proptest::collection::vec(op(), 1..60)) {
        use fulcrum_core::event::{EventKind, EventPayload, GovernCtx, ModelNames, lifecycle_event};
        use fulcrum_core::projection::{AliasKey, Projection, VersionKey};
        let mut st = ModelState {
            versions: (1..=5).map(|i| version(i, Stage::Candidate, Hold::None)).collect(),
            ..Default::default()
        };
        let names = ModelNames { tenant: "acme", domain: "risk", name: "m" };
        let mut p = Projection::default();
        let mut index = 0u64;
        for v in &st.versions {
            let mut ev = EventPayload::new(EventKind::ReleasePublished, NOW, "acme", "risk", "m");
            ev.version = Some(v.label.to_string());
            ev.seq = Some(v.seq);
            ev.artifact_digest = Some(v.artifact_digest.to_string());
            p.apply(index, &ev).unwrap();
            index += 1;
        }
        for op in &ops {
            let (who, cmd) = to_command(op);
            let Ok(effects) = st.apply(&who, cmd, NOW) else { continue };
            let labels: std::collections::BTreeMap<i64, String> =
                st.versions.iter().map(|v| (v.id, v.label.to_string())).collect();
            for fx in &effects {
                let ev = lifecycle_event(&st, names, fx, &who, &GovernCtx::default(), NOW, &|id| labels.get(&id).cloned());
                p.apply(index, &ev).unwrap();
                index += 1;
            }
        }
        for v in &st.versions {
            let k = VersionKey { tenant: "acme".into(), model: "m".into(), version: v.label.to_string() };
            let got = &p.versions[&k];
            prop_assert_eq!((got.stage, got.hold, got.seq), (v.stage, v.hold, v.seq));
        }
        for (name, a) in &st.aliases {
            let k = AliasKey { tenant: "acme".into(), model: "m".into(), alias: name.to_string() };
            let want = a.target.and_then(|t| st.version(t)).map(|v| v.label.to_string());
            prop_assert_eq!(p.aliases.get(&k).cloned().flatten(), want, "alias {}", name);
        }
    }
}
