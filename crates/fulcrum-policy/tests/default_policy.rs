//! The default policy as data: every role × action, tenant and domain attributes, every gate
//! (four-eyes by the same person twice and by the publisher, expired vs unexpired waivers,
//! revalidation due, model-card fields), the environment rule, the empty policy, bad uploads,
//! and replay of a decision against the snapshot named by its digest.

use std::collections::BTreeMap;

use fulcrum_core::identity::{Action, Role, role_allows};
use fulcrum_policy::{Outcome, Policy, PolicyError, Snapshot};
use serde_json::{Value, json};

fn policy() -> Policy {
    Policy::compile(&Snapshot::default_set()).expect("the shipped policy compiles and passes its tests")
}

fn action_name(a: Action) -> &'static str {
    a.as_str()
}

/// The Rego role table agrees with the built-in one for every role and action.
#[test]
fn every_role_and_action() {
    let p = policy();
    for role in Role::ALL {
        for action in Action::ALL {
            let input = json!({"principal": {"subject": "s", "role": role.as_str(), "tenant": "acme", "domain": "*"},
                               "action": action_name(action), "resource": {"tenant": "acme", "domain": "risk"}});
            let out = p.decide("fulcrum.authz", &input);
            assert_eq!(out.allow, role_allows(role, action), "{role:?} {action:?}: {out:?}");
            if !out.allow {
                assert_eq!(out.deny, vec![format!("role_forbids:{}", action_name(action))]);
            }
        }
    }
}

#[test]
fn tenant_and_domain_attributes() {
    let p = policy();
    let check = |principal: Value, resource: Value, expect: Result<(), &[&str]>| {
        let out = p.decide("fulcrum.authz", &json!({"principal": principal, "action": "read", "resource": resource}));
        match expect {
            Ok(()) => assert!(out.allow, "{out:?}"),
            Err(reasons) => {
                assert_eq!(out, Outcome { allow: false, deny: reasons.iter().map(|s| (*s).to_owned()).collect() })
            }
        }
    };
    let acme = json!({"role": "viewer", "tenant": "acme", "domain": "*"});
    let acme_fraud = json!({"role": "viewer", "tenant": "acme", "domain": "fraud"});
    check(acme.clone(), json!({"tenant": "acme", "domain": "risk"}), Ok(()));
    check(acme, json!({"tenant": "globex", "domain": "risk"}), Err(&["other_tenant"]));
    check(acme_fraud.clone(), json!({"tenant": "acme", "domain": "risk"}), Err(&["other_domain"]));
    check(acme_fraud, json!({"tenant": "acme", "domain": "fraud"}), Ok(()));
}

const NOW: i64 = 1_800_000_000_000_000_000;

fn gate(to: &str, f: impl FnOnce(&mut Value)) -> Outcome {
    let mut input = json!({"to": to, "now_ns": NOW, "chg_id": "CHG-1", "version": {
        "publisher": "ci", "revalidate_by_ns": NOW + 1_000_000_000,
        "model_card": {"owner": "risk-analytics", "intended_use": "credit scoring"},
        "approvals": [{"subject": "ana", "role": "approver"}, {"subject": "bo", "role": "security-officer"}],
        "findings": []}, "waivers": []});
    f(&mut input);
    policy().decide("fulcrum.promotion", &input)
}

fn reasons(out: Outcome) -> Vec<String> {
    out.deny
}

#[test]
fn promotion_gates_as_data() {
    assert!(gate("Approved", |_| {}).allow);
    // Four-eyes: the same person twice, the publisher, one approval, one role.
    let cases: Vec<(Value, bool)> = vec![
        (json!([{"subject": "ana", "role": "approver"}, {"subject": "ana", "role": "security-officer"}]), false),
        (json!([{"subject": "ci", "role": "approver"}, {"subject": "bo", "role": "security-officer"}]), false),
        (json!([{"subject": "ana", "role": "approver"}]), false),
        (json!([{"subject": "ana", "role": "approver"}, {"subject": "cy", "role": "approver"}]), false),
        (json!([{"subject": "ana", "role": "viewer"}, {"subject": "bo", "role": "security-officer"}]), false),
        (json!([{"subject": "ana", "role": "approver"}, {"subject": "bo", "role": "release-manager"}]), true),
    ];
    for (approvals, ok) in cases {
        let out = gate("Approved", |i| i["version"]["approvals"] = approvals.clone());
        assert_eq!(out.allow, ok, "{approvals}: {out:?}");
        if !ok {
            assert_eq!(out.deny, ["four_eyes"]);
        }
    }
    // Staging needs no approvals.
    assert!(gate("Staging", |i| i["version"]["approvals"] = json!([])).allow);

    // CVEs: open critical/high blocks; low does not; fixed does not; an unexpired waiver covers it;
    // an expired waiver blocks and is named.
    let cve = |sev: &str, status: &str| json!([{"id": "CVE-2026-1234", "severity": sev, "status": status}]);
    assert_eq!(
        reasons(gate("Staging", |i| i["version"]["findings"] = cve("critical", "open"))),
        ["open_cve:CVE-2026-1234"]
    );
    assert_eq!(
        reasons(gate("Approved", |i| i["version"]["findings"] = cve("HIGH", "open"))),
        ["open_cve:CVE-2026-1234"]
    );
    assert!(gate("Approved", |i| i["version"]["findings"] = cve("low", "open")).allow);
    assert!(gate("Approved", |i| i["version"]["findings"] = cve("critical", "fixed")).allow);
    let waiver = |expires: i64| json!([{"id": "W-9", "finding": "CVE-2026-1234", "expires_ns": expires, "approver": "ciso", "justification": "not reachable"}]);
    assert!(
        gate("Approved", |i| {
            i["version"]["findings"] = cve("critical", "open");
            i["waivers"] = waiver(NOW + 1);
        })
        .allow
    );
    assert_eq!(
        reasons(gate("Approved", |i| {
            i["version"]["findings"] = cve("critical", "open");
            i["waivers"] = waiver(NOW);
        })),
        ["waiver_expired:W-9:CVE-2026-1234"]
    );
    // Revalidation overdue; model card fields.
    assert_eq!(reasons(gate("Approved", |i| i["version"]["revalidate_by_ns"] = json!(NOW))), ["revalidation_overdue"]);
    assert_eq!(
        reasons(gate("Approved", |i| i["version"]
            .as_object_mut()
            .unwrap()
            .remove("revalidate_by_ns")
            .map(|_| ())
            .unwrap())),
        ["revalidate_by_missing"]
    );
    assert!(
        gate("Staging", |i| i["version"].as_object_mut().unwrap().remove("revalidate_by_ns").map(|_| ()).unwrap())
            .allow
    );
    assert_eq!(
        reasons(gate("Approved", |i| i["version"]["model_card"] = json!({"owner": "x"}))),
        ["model_card_missing:intended_use"]
    );
    // Several at once are all named.
    assert_eq!(
        reasons(gate("Approved", |i| {
            i["version"]["approvals"] = json!([]);
            i["version"]["revalidate_by_ns"] = json!(0);
        })),
        ["four_eyes", "revalidation_overdue"]
    );
}

#[test]
fn environment_rule() {
    let p = policy();
    let check = |env: &str, stage: &str, hold: &str, expect: Result<(), &str>| {
        let out = p.decide("fulcrum.env", &json!({"env": env, "version": {"stage": stage, "hold": hold}}));
        assert_eq!(out.allow, expect.is_ok(), "{env} {stage} {hold}: {out:?}");
        if let Err(r) = expect {
            assert_eq!(out.deny, [r]);
        }
    };
    for stage in ["Candidate", "Staging", "Approved"] {
        check("dev", stage, "none", Ok(()));
        check("dev", stage, "revoked", Err("revoked"));
        check("prod", stage, "quarantined", Err("quarantined"));
    }
    check("staging", "Candidate", "none", Err("stage_not_allowed"));
    check("staging", "Staging", "none", Ok(()));
    check("prod", "Staging", "none", Err("stage_not_allowed"));
    check("prod", "Approved", "none", Ok(()));
    // An environment the policy does not know loads nothing.
    check("qa", "Approved", "none", Err("stage_not_allowed"));
}

/// The release gate's requirements as data: (required by the operator's file, evidence
/// verified, domain) → expected reasons. The shipped data requires nothing beyond the file.
#[test]
fn release_gate_as_data() {
    let p = policy();
    let all = ["artifact_signature", "provenance", "sbom"];
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (&[], &[], &[]),
        (&all, &all, &[]),
        (&all, &[], &["missing:artifact_signature", "missing:provenance", "missing:sbom"]),
        (&all, &["artifact_signature", "sbom"], &["missing:provenance"]),
        (&["sbom"], &["artifact_signature"], &["missing:sbom"]),
        (&["attestation"], &all, &["unknown_requirement:attestation"]),
    ];
    for (required, verified, expect) in cases {
        let evidence: serde_json::Map<String, Value> =
            all.iter().map(|e| ((*e).to_owned(), json!(verified.contains(e)))).collect();
        let out = p.decide(
            "fulcrum.release",
            &json!({"model": {"name": "risk", "tenant": "acme", "domain": "risk"}, "version": {"label": "v1"},
                    "publisher": "ci", "required": required, "evidence": evidence}),
        );
        assert_eq!(out.deny, *expect, "{required:?} {verified:?}");
        assert_eq!(out.allow, expect.is_empty());
    }
}

/// Fail closed: the empty policy allows nothing, malformed input and unknown packages deny.
#[test]
fn empty_policy_denies_everything() {
    let empty = Policy::compile(&Snapshot::new(BTreeMap::new(), json!({})).unwrap()).unwrap();
    for pkg in ["fulcrum.authz", "fulcrum.promotion", "fulcrum.env", "fulcrum.release"] {
        assert_eq!(
            empty.decide(pkg, &json!({"action": "read"})),
            Outcome { allow: false, deny: vec!["policy_undefined".into()] }
        );
    }
    assert!(!policy().decide("fulcrum.nothing", &json!({})).allow);
    // A policy whose decision is malformed denies.
    let odd =
        BTreeMap::from([("x.rego".to_owned(), "package fulcrum.odd\ndecision := {\"allow\": \"yes\"}\n".to_owned())]);
    assert_eq!(
        Policy::compile(&Snapshot::new(odd, json!({})).unwrap()).unwrap().decide("fulcrum.odd", &json!({})).deny,
        ["policy_result_malformed"]
    );
    // A decision that allows but also names reasons denies.
    let both = BTreeMap::from([(
        "y.rego".to_owned(),
        "package fulcrum.both\ndecision := {\"allow\": true, \"deny\": [\"x\"]}\n".to_owned(),
    )]);
    assert!(
        !Policy::compile(&Snapshot::new(both, json!({})).unwrap()).unwrap().decide("fulcrum.both", &json!({})).allow
    );
}

#[test]
fn bad_uploads_are_refused_with_the_engines_message() {
    let bad = BTreeMap::from([(
        "broken.rego".to_owned(),
        "package fulcrum.broken\nallow if {\n  input.x ==\n}\n".to_owned(),
    )]);
    match Policy::compile(&Snapshot::new(bad, json!({})).unwrap()) {
        Err(PolicyError::Compile(msg)) => assert!(msg.contains("broken.rego"), "names the file: {msg}"),
        other => panic!("{other:?}"),
    }
    let failing =
        BTreeMap::from([("t.rego".to_owned(), "package fulcrum.t\nx := 1\ntest_x_is_two if x == 2\n".to_owned())]);
    assert_eq!(
        Policy::compile(&Snapshot::new(failing, json!({})).unwrap()).unwrap_err(),
        PolicyError::TestFailed("t.rego: fulcrum.t.test_x_is_two".into())
    );
    let unknown_builtin = BTreeMap::from([(
        "u.rego".to_owned(),
        "package fulcrum.u\nx := crypto.sha256(\"a\")\ntest_x if x\n".to_owned(),
    )]);
    assert!(Policy::compile(&Snapshot::new(unknown_builtin, json!({})).unwrap()).is_err());
    assert!(Snapshot::new(BTreeMap::from([("../etc.rego".to_owned(), String::new())]), json!({})).is_err());
    assert!(Snapshot::new(BTreeMap::new(), json!([])).is_err());
}

/// Every builtin the shipped policies call is one the engine supports: their own tests exercise
/// each (compiling runs them with strict builtin errors), and this list is checked against them.
#[test]
fn builtins_used_by_the_shipped_policies_are_supported() {
    let used = ["count", "sprintf", "lower", "object.union"];
    let all: String = fulcrum_policy::DEFAULT_MODULES.iter().map(|(_, s)| *s).collect();
    for b in used {
        assert!(all.contains(&format!("{b}(")), "{b} is listed but unused");
        let src = format!(
            "package fulcrum.b\nx := {b}({})\n",
            match b {
                "count" => "[1]",
                "sprintf" => "\"%s\", [\"a\"]",
                "lower" => "\"A\"",
                _ => "{\"a\": 1}, {\"b\": 2}",
            }
        );
        let p =
            Policy::compile(&Snapshot::new(BTreeMap::from([("b.rego".to_owned(), src)]), json!({})).unwrap()).unwrap();
        let _ = p;
    }
    // No other builtin call appears in the shipped modules.
    for token in all.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '(')) {
        if let Some(name) = token.strip_suffix('(')
            && !name.is_empty()
            && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        {
            let local = ["waived", "expired_waiver"];
            assert!(used.contains(&name) || local.contains(&name), "unlisted call {name}(");
        }
    }
}

/// Replaying a stored decision's input against the snapshot named by its digest gives the same result.
#[test]
fn replay_from_the_snapshot_bytes() {
    let snap = Snapshot::default_set();
    let bytes = snap.canonical_bytes();
    let digest = snap.digest();
    let input = json!({"to": "Approved", "now_ns": 5, "version": {"publisher": "ci", "revalidate_by_ns": 1, "model_card": {}, "approvals": [], "findings": []}, "waivers": []});
    let original = Policy::compile(&snap).unwrap().decide("fulcrum.promotion", &input);
    let stored = Snapshot::from_canonical_bytes(&bytes).unwrap();
    assert_eq!(stored.digest(), digest);
    assert_eq!(Policy::compile(&stored).unwrap().decide("fulcrum.promotion", &input), original);
    let mut tampered = bytes.clone();
    tampered.insert(1, b' ');
    assert!(Snapshot::from_canonical_bytes(&tampered).is_err());
}

/// The masking rule is policy: personal data named by it never reaches the decision log.
#[test]
fn masking_rule_erases_personal_data() {
    let p = policy();
    let mut input = json!({"to": "Approved", "principal": {"subject": "rm", "purpose": "credit_granting"},
        "version": {"model_card": {"owner": "risk", "contact": "jane.doe@bank.example", "authors": ["Jane Doe"]}}});
    let erased = p.mask(&mut input);
    assert_eq!(
        erased,
        ["/input/principal/purpose", "/input/version/model_card/authors", "/input/version/model_card/contact"]
    );
    assert_eq!(input["version"]["model_card"], json!({"owner": "risk"}));
    assert!(input["principal"].get("purpose").is_none());
    // Without a masking rule nothing is erased.
    let bare = Policy::compile(&Snapshot::new(BTreeMap::new(), json!({})).unwrap()).unwrap();
    let mut same = json!({"a": 1});
    assert!(bare.mask(&mut same).is_empty());
    assert_eq!(same, json!({"a": 1}));
}

/// A bounded evaluation time: a policy that would run for a very long time is cut off at the
/// engine's time limit and the decision is a deny named `policy_timeout`.
#[test]
fn runaway_policy_is_cut_off_and_denies() {
    let mut slow = BTreeMap::new();
    slow.insert(
        "slow.rego".to_owned(),
        "package fulcrum.slow\n\
         n := count([x | some i in numbers.range(1, 2000); some j in numbers.range(1, 2000); x := i * j])\n\
         decision := {\"allow\": n > 0}\n"
            .to_owned(),
    );
    let p = Policy::compile(&Snapshot::new(slow, json!({})).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let out = p.decide("fulcrum.slow", &json!({}));
    let took = started.elapsed();
    assert_eq!(out, Outcome { allow: false, deny: vec!["policy_timeout".into()] });
    // 4 million iterations would take seconds; the limit stops it near EVAL_LIMIT. The bound
    // here is loose on purpose (a correctness check, not a timing benchmark).
    assert!(took < fulcrum_policy::EVAL_LIMIT * 40, "evaluation ran for {took:?}");
}

fn snapshot_with(modules: &[(&str, &str)], data: Value) -> Snapshot {
    Snapshot::new(modules.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect(), data).unwrap()
}

fn nonconformant(s: &Snapshot) -> String {
    match Policy::compile_conformant(s) {
        Err(PolicyError::Conformance(why)) => why,
        other => panic!("expected a conformance failure, got {other:?}"),
    }
}

/// Snapshots that compile and pass their own tests, yet would lock callers out or drop a
/// control, are refused by Fulcrum's conformance tests, each naming what fails.
#[test]
fn conformance_refuses_lockouts_and_dropped_controls() {
    Policy::compile_conformant(&Snapshot::default_set()).expect("the shipped policy conforms");

    let empty = snapshot_with(&[], json!({}));
    assert!(Policy::compile(&empty).is_ok(), "an empty snapshot passes its own (absent) tests");
    let why = nonconformant(&empty);
    for entry in fulcrum_policy::conformance::ENTRY_POINTS {
        assert!(why.contains(&format!("data.{entry}.decision is not defined")), "{entry}: {why}");
    }
    assert!(why.contains("policy-admin can install policies"), "{why}");

    let stray = snapshot_with(&[("x.rego", "package other\nallow := true\n")], json!({}));
    assert!(nonconformant(&stray).contains("fulcrum.authz"));

    // The shipped set with promotion's four-eyes rule dropped.
    let mut modules: BTreeMap<String, String> = Snapshot::default_set().modules().clone();
    let promotion = modules["promotion.rego"]
        .replace("deny contains \"four_eyes\" if {", "four_eyes_off if {")
        .replace("test_same_person_twice_is_not_four_eyes", "same_person_twice");
    modules.insert("promotion.rego".into(), promotion);
    let data = Snapshot::default_set().data().clone();
    let lax = Snapshot::new(modules.clone(), data.clone()).unwrap();
    assert!(Policy::compile(&lax).is_ok());
    assert!(nonconformant(&lax).contains("four-eyes: one approval"), "{}", nonconformant(&lax));
    // ... accepted only when the data says so explicitly.
    let mut waived = data.clone();
    waived["fulcrum"]["conformance"] = json!({"waive": ["four_eyes"]});
    Policy::compile_conformant(&Snapshot::new(modules.clone(), waived).unwrap()).expect("an explicit waiver");
    let mut bogus = data.clone();
    bogus["fulcrum"]["conformance"] = json!({"waive": ["tenant_isolation"]});
    assert!(nonconformant(&Snapshot::new(modules, bogus).unwrap()).contains("cannot be waived"));

    // A policy admin who is no longer allowed to administer policy: the way back closes.
    let mut data = Snapshot::default_set().data().clone();
    data["fulcrum"]["roles"]["policy-admin"] = json!(["read"]);
    let locked = Snapshot::new(Snapshot::default_set().modules().clone(), data).unwrap();
    assert!(nonconformant(&locked).contains("policy-admin can install policies"));

    // Serving may no longer resolve: no model server could start.
    let mut data = Snapshot::default_set().data().clone();
    data["fulcrum"]["roles"]["serving"] = json!(["read", "download_blob", "report_startup", "read_events"]);
    let closed = Snapshot::new(Snapshot::default_set().modules().clone(), data).unwrap();
    assert!(nonconformant(&closed).contains("serving resolves an Approved version in prod"));
}
