//! The startup check's attack table (TUF attacks and the seed's §6 list): each row is a signed
//! answer the agent could receive, with what it must conclude. Every attack ends in a named deny.

mod common;

use common::published;
use fulcrum_agent::check::{Ask, Deny, Marks, RefMark, Signed, accept_bundle, check};
use fulcrum_core::resolve::{Decision, ResolveDocument, Uris};
use fulcrum_sign::{Alg, KeyStatus, LocalKey, Signer, TrustBundle};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const REF: &str = "fraud@production";
const ENV: &str = "prod";

fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn now() -> OffsetDateTime {
    t("2026-11-28T12:00:00Z")
}

fn doc(k: &LocalKey, issued: OffsetDateTime, seq: u64, position: u64) -> ResolveDocument {
    ResolveDocument {
        ledger_index: Some(7),
        name: "fraud".into(),
        version: format!("v{seq}"),
        stage: "Approved".into(),
        artifact_digest: format!("sha256:{:064x}", seq),
        policy_digest: format!("sha256:{:064x}", 7),
        revoked: false,
        quarantined: false,
        uris: Uris { artifact: "/v1/blobs/x".into(), attestation: "/v1/blobs/y".into() },
        model_card_ref: "MC-fraud".into(),
        seq,
        tenant: "acme".into(),
        domain: "fraud".into(),
        reference: REF.into(),
        alias: Some("production".into()),
        alias_position: Some(position),
        alias_chg_id: Some("CHG-1".into()),
        alias_inc_id: None,
        alias_cause: Some("set".into()),
        env: ENV.into(),
        decision: Decision::Permit,
        deny_reason: None,
        issued_at: fmt(issued),
        expires_at: fmt(issued + Duration::minutes(5)),
        kid: k.kid().into(),
    }
}

struct Answer {
    body: Vec<u8>,
    kid: String,
    sig: String,
}

fn sign(k: &LocalKey, d: &ResolveDocument) -> Answer {
    let body = serde_json::to_vec(d).unwrap();
    let sig = fulcrum_sign::b64(&k.sign(&body).unwrap());
    Answer { body, kid: k.kid().into(), sig }
}

fn run(bundle: &TrustBundle, marks: &Marks, a: &Answer, at: OffsetDateTime) -> Result<(ResolveDocument, Marks), Deny> {
    check(
        bundle,
        marks,
        Signed { body: &a.body, kid: &a.kid, signature: &a.sig },
        &Ask { reference: REF, env: ENV, now: at, max_skew: Duration::seconds(30) },
    )
    .permit()
}

struct World {
    key: LocalKey,
    retired: LocalKey,
    compromised: LocalKey,
    stranger: LocalKey,
    bundle: TrustBundle,
}

fn world() -> World {
    let key = LocalKey::ephemeral(Alg::Ed25519).unwrap();
    let retired = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
    let compromised = LocalKey::ephemeral(Alg::Ed25519).unwrap();
    let stranger = LocalKey::ephemeral(Alg::Ed25519).unwrap();
    let bundle = TrustBundle {
        version: 3,
        issued_at: "2026-11-28T00:00:00Z".into(),
        expires_at: Some("2026-12-05T00:00:00Z".into()),
        keys: vec![
            published(&key, "2026-11-01T00:00:00Z", None, KeyStatus::Active),
            published(&retired, "2026-10-01T00:00:00Z", Some("2026-11-01T00:00:00Z"), KeyStatus::Retired),
            published(&compromised, "2026-10-01T00:00:00Z", None, KeyStatus::Compromised),
        ],
        sigstore: None,
    };
    World { key, retired, compromised, stranger, bundle }
}

#[test]
fn a_fresh_permit_passes_and_moves_the_marks() {
    let w = world();
    let (d, marks) = run(&w.bundle, &Marks::default(), &sign(&w.key, &doc(&w.key, now(), 2, 4)), now()).unwrap();
    assert_eq!(d.version, "v2");
    assert_eq!(marks.bundle_version, 3);
    assert_eq!(marks.refs[&format!("{REF}|{ENV}")].seq, 2);
}

/// Each attack, as data: (name, answer, marks held, local time) → the reason.
#[test]
fn attacks_end_in_a_named_deny() {
    let w = world();
    let good = doc(&w.key, now(), 2, 4);
    let seen = Marks {
        bundle_version: 3,
        refs: [(
            format!("{REF}|{ENV}"),
            RefMark {
                issued_at: fmt(now() - Duration::seconds(10)),
                seq: 2,
                alias_position: Some(4),
                artifact_digest: good.artifact_digest.clone(),
            },
        )]
        .into(),
    };
    let mut cases: Vec<(&str, Answer, Marks, OffsetDateTime, &str)> = Vec::new();

    let mut tampered = sign(&w.key, &good);
    let at = tampered.body.windows(2).position(|p| p == b"v2").unwrap();
    tampered.body[at + 1] = b'3';
    cases.push(("tampered byte", tampered, Marks::default(), now(), "bad_signature"));

    let mut wrong_sig = sign(&w.key, &good);
    wrong_sig.sig = sign(&w.stranger, &good).sig;
    cases.push(("signature by another key under the right kid", wrong_sig, Marks::default(), now(), "bad_signature"));

    let stranger_doc = doc(&w.stranger, now(), 2, 4);
    cases.push(("unknown kid", sign(&w.stranger, &stranger_doc), Marks::default(), now(), "unknown_kid"));

    let by_retired = doc(&w.retired, now(), 2, 4);
    cases.push(("retired key", sign(&w.retired, &by_retired), Marks::default(), now(), "key_not_valid"));

    let by_compromised = doc(&w.compromised, now(), 2, 4);
    cases.push(("compromised key", sign(&w.compromised, &by_compromised), Marks::default(), now(), "key_compromised"));

    let old = doc(&w.key, now() - Duration::minutes(2), 2, 4);
    cases.push((
        "replayed older answer (rollback)",
        sign(&w.key, &old),
        seen.clone(),
        now() - Duration::minutes(2) + Duration::seconds(1),
        "rollback_replay",
    ));

    let stale = doc(&w.key, now() - Duration::minutes(10), 2, 4);
    cases.push(("expired answer (freeze)", sign(&w.key, &stale), Marks::default(), now(), "resolve_expired"));
    cases.push((
        "answer that expired while cached (clock ahead or freeze)",
        sign(&w.key, &doc(&w.key, now(), 2, 4)),
        Marks::default(),
        now() + Duration::minutes(6),
        "resolve_expired",
    ));

    let mut other_ref = good.clone();
    other_ref.reference = "fraud@canary".into();
    cases.push((
        "answer for another reference (mix and match)",
        sign(&w.key, &other_ref),
        Marks::default(),
        now(),
        "mixed_metadata",
    ));
    let mut other_env = good.clone();
    other_env.env = "dev".into();
    cases.push(("answer for another env", sign(&w.key, &other_env), Marks::default(), now(), "mixed_metadata"));

    let mut revoked = good.clone();
    revoked.revoked = true;
    revoked.decision = Decision::Deny;
    revoked.deny_reason = Some("revoked".into());
    cases.push(("revoked version", sign(&w.key, &revoked), Marks::default(), now(), "registry_deny"));

    let lower = doc(&w.key, now(), 1, 4);
    cases.push(("downgrade without a change", sign(&w.key, &lower), seen.clone(), now(), "downgrade_without_change"));
    // The alias moved (newer position) but the answer names no change or incident for it.
    let mut unnamed = doc(&w.key, now(), 1, 5);
    unnamed.alias_chg_id = None;
    unnamed.alias_cause = Some("downgrade".into());
    cases.push((
        "downgrade naming no change record",
        sign(&w.key, &unnamed),
        seen.clone(),
        now(),
        "downgrade_without_change",
    ));

    let skewed = doc(&w.key, now() + Duration::minutes(2), 2, 4);
    cases.push(("clock skewed behind the registry", sign(&w.key, &skewed), Marks::default(), now(), "clock_skew"));

    let mut expired_bundle = w.bundle.clone();
    expired_bundle.expires_at = Some(fmt(now() - Duration::seconds(1)));
    let r = run(&expired_bundle, &Marks::default(), &sign(&w.key, &good), now());
    assert_eq!(r.unwrap_err().code(), "bundle_expired", "expired bundle (freeze)");

    let mut malformed = sign(&w.key, &good);
    malformed.body = b"{\"not\": \"a document\"}".to_vec();
    malformed.sig = fulcrum_sign::b64(&w.key.sign(&malformed.body).unwrap());
    cases.push(("signed garbage", malformed, Marks::default(), now(), "malformed_document"));

    for (name, answer, marks, at, expect) in cases {
        match run(&w.bundle, &marks, &answer, at) {
            Ok((d, _)) => panic!("{name}: permitted {}", d.version),
            Err(e) => assert_eq!(e.code(), expect, "{name}: {e}"),
        }
    }
}

/// A lower version is fine when the alias itself moved (a newer signed alias position) and the
/// answer names what authorised it — an operator's downgrade with its change id, or an
/// automatic rollback with its incident — and the marks follow it.
#[test]
fn an_authorised_rollback_passes() {
    let w = world();
    let (_, marks) = run(&w.bundle, &Marks::default(), &sign(&w.key, &doc(&w.key, now(), 2, 4)), now()).unwrap();
    let later = now() + Duration::seconds(5);
    let mut downgrade = doc(&w.key, later, 1, 5);
    downgrade.alias_cause = Some("downgrade".into());
    let (d, next) = run(&w.bundle, &marks, &sign(&w.key, &downgrade), later).unwrap();
    assert_eq!(d.seq, 1);
    assert_eq!(next.refs[&format!("{REF}|{ENV}")].alias_position, Some(5));
    let mut rollback = doc(&w.key, later, 1, 5);
    rollback.alias_chg_id = None;
    rollback.alias_inc_id = Some("INC-4711".into());
    rollback.alias_cause = Some("rollback".into());
    assert!(run(&w.bundle, &marks, &sign(&w.key, &rollback), later).is_ok());
}

/// A signed deny moves the time mark: the permit issued before it — still unexpired — is a
/// replay once the deny has been seen, and what was last loaded stays the downgrade baseline.
#[test]
fn a_permit_issued_before_a_seen_deny_is_a_replay() {
    let w = world();
    let permit = sign(&w.key, &doc(&w.key, now(), 2, 4));
    let (_, after_permit) = run(&w.bundle, &Marks::default(), &permit, now()).unwrap();
    let later = now() + Duration::seconds(20);
    let mut revoked = doc(&w.key, later, 2, 4);
    revoked.revoked = true;
    revoked.decision = Decision::Deny;
    revoked.deny_reason = Some("revoked".into());
    let checked = check(
        &w.bundle,
        &after_permit,
        Signed { body: &sign(&w.key, &revoked).body, kid: w.key.kid(), signature: &sign(&w.key, &revoked).sig },
        &Ask { reference: REF, env: ENV, now: later, max_skew: Duration::seconds(30) },
    );
    assert_eq!(checked.verdict.as_ref().unwrap_err().code(), "registry_deny");
    let after_deny = checked.marks.expect("an authentic deny moves the marks");
    let mark = &after_deny.refs[&format!("{REF}|{ENV}")];
    assert_eq!(mark.issued_at, fmt(later), "the time mark is the deny's");
    assert_eq!((mark.seq, mark.alias_position), (2, Some(4)), "the loaded version stays the baseline");
    // The first permit is still unexpired, and verifies, but it is older than the deny.
    let e = run(&w.bundle, &after_deny, &permit, later + Duration::seconds(1)).unwrap_err();
    assert_eq!(e.code(), "rollback_replay", "{e}");
    // A deny seen first, with no mark before it, raises the time mark too.
    let fresh = check(
        &w.bundle,
        &Marks::default(),
        Signed { body: &sign(&w.key, &revoked).body, kid: w.key.kid(), signature: &sign(&w.key, &revoked).sig },
        &Ask { reference: REF, env: ENV, now: later, max_skew: Duration::seconds(30) },
    );
    assert_eq!(run(&w.bundle, &fresh.marks.unwrap(), &permit, later).unwrap_err().code(), "rollback_replay");
    // A forged or stale answer moves nothing.
    let stale = check(
        &w.bundle,
        &after_permit,
        Signed { body: &permit.body, kid: &permit.kid, signature: &permit.sig },
        &Ask { reference: REF, env: ENV, now: now() + Duration::minutes(6), max_skew: Duration::seconds(30) },
    );
    assert!(stale.marks.is_none());
}

#[test]
fn older_bundles_are_refused() {
    let w = world();
    let marks = Marks { bundle_version: 4, ..Marks::default() };
    assert_eq!(accept_bundle(&marks, &w.bundle, now()).unwrap_err().code(), "rollback_replay");
    assert!(accept_bundle(&Marks::default(), &w.bundle, now()).is_ok());
}

/// The policy snapshot a document names: only a snapshot signed by a pinned key and hashing to
/// exactly that digest passes.
#[test]
fn policy_snapshots_must_be_signed_and_match_the_digest() {
    use fulcrum_agent::policy::{SNAPSHOT_MEDIA_TYPE, verify_snapshot};
    let w = world();
    let envelope = |k: &LocalKey, payload: &[u8], ty: &str| {
        let mut pae = format!("DSSEv1 {} {} {} ", ty.len(), ty, payload.len()).into_bytes();
        pae.extend_from_slice(payload);
        serde_json::to_vec(&serde_json::json!({"payload": fulcrum_sign::b64(payload), "payloadType": ty,
            "signatures": [{"keyid": k.kid(), "sig": fulcrum_sign::b64(&k.sign(&pae).unwrap())}]}))
        .unwrap()
    };
    let snap = br#"{"modules":{},"data":{}}"#;
    let digest = fulcrum_core::Digest::of(snap).to_string();
    assert_eq!(verify_snapshot(&w.bundle, &envelope(&w.key, snap, SNAPSHOT_MEDIA_TYPE), &digest).unwrap(), snap);
    let other = fulcrum_core::Digest::of(b"another snapshot").to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("another snapshot's digest (mix and match)", envelope(&w.key, snap, SNAPSHOT_MEDIA_TYPE), &other),
        ("signed by a stranger", envelope(&w.stranger, snap, SNAPSHOT_MEDIA_TYPE), &digest),
        ("signed by a compromised key", envelope(&w.compromised, snap, SNAPSHOT_MEDIA_TYPE), &digest),
        ("another payload type", envelope(&w.key, snap, "application/json"), &digest),
        ("not an envelope", b"{}".to_vec(), &digest),
    ];
    for (name, env, d) in cases {
        let e = verify_snapshot(&w.bundle, &env, d).unwrap_err();
        assert_eq!(e.code(), "policy_unverified", "{name}");
    }
}

/// The policy in force is evaluated by the agent itself (its environment rule, with the input
/// the registry uses): an answer that says permit for a version the policy does not allow is
/// refused, and a snapshot is only ever evaluated for the digest the answer names.
#[test]
fn the_policy_in_force_is_evaluated_here() {
    use fulcrum_agent::policy::evaluate;
    use fulcrum_policy::Snapshot;
    let w = world();
    let shipped = Snapshot::default_set();
    let freeze = Snapshot::new(
        [(
            "freeze.rego".to_owned(),
            r#"package fulcrum.env
default allow := false
allow if input.env != "prod"
deny contains "change_freeze" if input.env == "prod"
decision := {"allow": allow, "deny": deny}
"#
            .to_owned(),
        )]
        .into(),
        serde_json::json!({}),
    )
    .unwrap();
    let with = |s: &Snapshot, stage: &str, revoked: bool| {
        let mut d = doc(&w.key, now(), 3, 3);
        d.policy_digest = s.digest();
        d.stage = stage.into();
        d.revoked = revoked;
        (s.canonical_bytes(), d)
    };
    // (what, snapshot, stage, revoked, expected: Ok or the code and reasons)
    type Row<'a> = (&'a str, &'a Snapshot, &'a str, bool, Result<(), (&'a str, &'a str)>);
    let rows: Vec<Row> = vec![
        ("shipped policy, Approved in prod", &shipped, "Approved", false, Ok(())),
        ("shipped policy, Staging in prod", &shipped, "Staging", false, Err(("policy_deny", "stage_not_allowed"))),
        ("shipped policy, revoked", &shipped, "Approved", true, Err(("policy_deny", "revoked"))),
        ("a change freeze in force", &freeze, "Approved", false, Err(("policy_deny", "change_freeze"))),
    ];
    for (what, s, stage, revoked, want) in rows {
        let (bytes, d) = with(s, stage, revoked);
        let got = evaluate(&bytes, &d);
        match want {
            Ok(()) => assert!(got.is_ok(), "{what}: {got:?}"),
            Err((code, reason)) => {
                let e = got.unwrap_err();
                assert_eq!(e.code(), code, "{what}");
                assert!(e.to_string().contains(reason), "{what}: {e}");
            }
        }
    }
    // The bytes of one snapshot under another's digest are never evaluated.
    let (_, mut d) = with(&shipped, "Approved", false);
    d.policy_digest = freeze.digest();
    assert_eq!(evaluate(&shipped.canonical_bytes(), &d).unwrap_err().code(), "policy_unverified");
}
