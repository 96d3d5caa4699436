//! Fulcrum's own conformance tests for a policy snapshot: what every snapshot must still do
//! before the registry installs it, whatever else it changes. A snapshot that passes its own
//! `test_*` rules can still lock every caller out (no `fulcrum.authz` at all) or quietly drop a
//! control; these cases are the floor.
//!
//! - Every entry point the registry evaluates ([`ENTRY_POINTS`]) is defined and answers a
//!   well-formed decision.
//! - A policy admin can still install policies (the way back is never closed by the API).
//! - Serving can still resolve, download and report on an Approved, unheld version in `prod`,
//!   and the environment rule allows it there.
//! - Held versions load nowhere; other tenants' resources stay closed.
//! - The release gate still requires what the operator's release policy requires.
//! - Four-eyes: an Approved promotion with one approval, or with the publisher's own, is denied
//!   — unless the snapshot's data waives it explicitly: `data.fulcrum.conformance.waive`
//!   containing `"four_eyes"` (documented in docs/policy.md; the lifecycle's own four-eyes rule
//!   still applies either way).
//!
//! Each case is data: a name, the package, the input the registry would send, what must come
//! out. Inputs follow the shapes the registry builds (`access.rs`, `gates.rs`, `catalog.rs`).
//! The cases are floors, not ceilings: a snapshot may deny more (a change freeze on a model,
//! more release evidence, more promotion gates); it may not deny the calls that keep the
//! registry governable and its fleet able to start, nor allow what the floor forbids.

use serde_json::{Value, json};

use crate::{Outcome, Policy, PolicyError};

/// The decisions the registry evaluates: `data.<package>.decision` for each.
pub const ENTRY_POINTS: [&str; 4] = ["fulcrum.authz", "fulcrum.env", "fulcrum.promotion", "fulcrum.release"];

/// Data flag naming the conformance cases a snapshot waives on purpose.
pub const WAIVER_PATH: &str = "/fulcrum/conformance/waive";

/// Cases a snapshot may waive through [`WAIVER_PATH`].
pub const WAIVABLE: [&str; 1] = ["four_eyes"];

/// Deny reasons that say the policy did not answer at all.
const NO_ANSWER: [&str; 5] =
    ["policy_undefined", "policy_error", "policy_result_malformed", "policy_timeout", "policy_input_invalid"];

#[derive(Debug, Clone, Copy)]
enum Expect {
    Allow,
    Deny,
}

struct Case {
    name: &'static str,
    package: &'static str,
    input: Value,
    expect: Expect,
    /// The waiver that skips it, if it may be waived.
    waiver: Option<&'static str>,
}

const NOW_NS: i64 = 1_800_000_000_000_000_000;
const LATER_NS: i64 = 4_000_000_000_000_000_000;

fn access(role: &str, env: Option<&str>, action: &str, resource: Value) -> Value {
    let mut principal = json!({"subject": "conformance", "role": role, "tenant": "t", "domain": "*"});
    if let Some(e) = env {
        principal["env"] = json!(e);
    }
    json!({"principal": principal, "action": action, "resource": resource})
}

fn approved_version(env: Option<&str>) -> Value {
    let mut r = json!({"tenant": "t", "domain": "d", "model": "m", "labels": [], "allowed_purposes": [],
                       "stage": "Approved", "hold": "none"});
    if let Some(e) = env {
        r["env"] = json!(e);
    }
    r
}

fn env_input(env: &str, stage: &str, hold: &str) -> Value {
    json!({"env": env, "alias": "production", "model": {"name": "m", "tenant": "t", "domain": "d"},
           "version": {"label": "v1", "seq": 1, "stage": stage, "hold": hold}})
}

fn promotion(approvals: Value) -> Value {
    json!({"to": "Approved", "now_ns": NOW_NS, "chg_id": "CHG-1",
           "principal": {"subject": "rm", "role": "release-manager"},
           "model": {"name": "m", "tenant": "t", "domain": "d"},
           "version": {"label": "v1", "seq": 1, "stage": "Staging", "publisher": "ci", "approvals": approvals,
                       "model_card": {"owner": "o", "intended_use": "u"}, "findings": [], "labels": [],
                       "revalidate_by_ns": LATER_NS},
           "waivers": []})
}

fn cases() -> Vec<Case> {
    let case = |name, package, input, expect| Case { name, package, input, expect, waiver: None };
    vec![
        case(
            "policy-admin can install policies",
            "fulcrum.authz",
            access("policy-admin", None, "administer_policy", json!({"tenant": "t"})),
            Expect::Allow,
        ),
        case(
            "serving resolves an Approved version in prod",
            "fulcrum.authz",
            access("serving", Some("prod"), "resolve", approved_version(Some("prod"))),
            Expect::Allow,
        ),
        case(
            "serving downloads an Approved version's bytes",
            "fulcrum.authz",
            access("serving", Some("prod"), "download_blob", approved_version(None)),
            Expect::Allow,
        ),
        case(
            "serving reports its startup decision",
            "fulcrum.authz",
            access("serving", Some("prod"), "report_startup", approved_version(Some("prod"))),
            Expect::Allow,
        ),
        case(
            "an Approved, unheld version loads in prod",
            "fulcrum.env",
            env_input("prod", "Approved", "none"),
            Expect::Allow,
        ),
        case("a revoked version loads nowhere", "fulcrum.env", env_input("dev", "Approved", "revoked"), Expect::Deny),
        case(
            "a quarantined version loads nowhere",
            "fulcrum.env",
            env_input("dev", "Approved", "quarantined"),
            Expect::Deny,
        ),
        case(
            "another tenant's model stays closed",
            "fulcrum.authz",
            json!({"principal": {"subject": "x", "role": "admin", "tenant": "a", "domain": "*"}, "action": "read",
                   "resource": {"tenant": "b", "domain": "d", "model": "m", "labels": [], "allowed_purposes": []}}),
            Expect::Deny,
        ),
        case(
            "the release gate requires what the release policy requires",
            "fulcrum.release",
            json!({"model": {"name": "m", "tenant": "t", "domain": "d"}, "version": {"label": "v1"}, "publisher": "ci",
                   "required": ["sbom"], "evidence": {"artifact_signature": false, "provenance": false, "sbom": false}}),
            Expect::Deny,
        ),
        Case {
            name: "four-eyes: one approval does not make a version Approved",
            package: "fulcrum.promotion",
            input: promotion(json!([{"subject": "ana", "role": "approver"}])),
            expect: Expect::Deny,
            waiver: Some("four_eyes"),
        },
        Case {
            name: "four-eyes: the publisher's own approval does not count",
            package: "fulcrum.promotion",
            input: promotion(
                json!([{"subject": "ci", "role": "approver"}, {"subject": "bo", "role": "security-officer"}]),
            ),
            expect: Expect::Deny,
            waiver: Some("four_eyes"),
        },
    ]
}

/// The waivers a snapshot's data declares.
///
/// # Errors
/// A waiver list that is not an array of known case names.
pub fn waivers(data: &Value) -> Result<Vec<String>, PolicyError> {
    let Some(v) = data.pointer(WAIVER_PATH) else { return Ok(vec![]) };
    let list: Vec<String> = serde_json::from_value(v.clone()).map_err(|_| {
        PolicyError::Conformance(format!("data{WAIVER_PATH} must be a list of names ({})", WAIVABLE.join(", ")))
    })?;
    if let Some(bad) = list.iter().find(|w| !WAIVABLE.contains(&w.as_str())) {
        return Err(PolicyError::Conformance(format!(
            "data{WAIVER_PATH} names {bad:?}, which cannot be waived (waivable: {})",
            WAIVABLE.join(", ")
        )));
    }
    Ok(list)
}

fn answered(out: &Outcome) -> bool {
    out.allow || !out.deny.iter().any(|r| NO_ANSWER.contains(&r.as_str()))
}

/// Run every conformance case against a compiled snapshot whose data is `data`.
///
/// # Errors
/// `PolicyError::Conformance` naming every failed case.
pub fn check(policy: &Policy, data: &Value) -> Result<(), PolicyError> {
    let waived = waivers(data)?;
    let mut failed = Vec::new();
    for package in ENTRY_POINTS {
        let out = policy.decide(package, &json!({}));
        if !answered(&out) {
            failed.push(format!("data.{package}.decision is not defined ({})", out.deny.join(", ")));
        }
    }
    for c in cases() {
        if c.waiver.is_some_and(|w| waived.iter().any(|x| x == w)) {
            continue;
        }
        let out = policy.decide(c.package, &c.input);
        let ok = match c.expect {
            Expect::Allow => out.allow,
            Expect::Deny => !out.allow && answered(&out),
        };
        if !ok {
            failed.push(format!(
                "{} ({}: {})",
                c.name,
                c.package,
                if out.allow { "allowed".into() } else { out.deny.join(", ") }
            ));
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(PolicyError::Conformance(failed.join("; "))) }
}
