//! Policy gates evaluated inside governance transactions, and their decision records (OPA
//! decision-log shape, revision = the policy digest, correlated with `chg_id` / `inc_id`).

use fulcrum_core::lifecycle::{ApprovalKind, Command, ModelState};
use fulcrum_policy::DecisionRecord;
use fulcrum_store::{DecisionRow, GateResult, GovernCtx, ModelRecord};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::policy::Current;

fn ns(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos()
}

/// The rule path under which the lifecycle's own refusals are logged (four-eyes, the
/// publisher's approval, a downgrade without a change id, …): they are decisions too, and an
/// auditor counts them next to the policy's.
pub const LIFECYCLE_PATH: &str = "fulcrum/lifecycle/decision";

/// A refusal by the lifecycle rules, as a decision record (OPA shape; `revision` is the policy in
/// force, which did not decide it).
#[allow(clippy::too_many_arguments)]
pub fn refusal(
    state: &AppState,
    policy: &Current,
    m: &ModelRecord,
    actor: &fulcrum_core::lifecycle::Actor,
    operation: &str,
    version: Option<&str>,
    refusal: &fulcrum_core::lifecycle::Refusal,
    ctx: &GovernCtx,
) -> DecisionRow {
    let result = fulcrum_policy::Outcome { allow: false, deny: vec![refusal.code().to_owned()] };
    let mut input = json!({
        "operation": operation,
        "principal": {"subject": actor.subject, "role": actor.role.as_str()},
        "model": {"name": m.name, "tenant": m.tenant, "domain": m.domain},
        "version": version,
        "chg_id": ctx.chg_id, "inc_id": ctx.inc_id,
        "refusal": refusal.to_string(),
    });
    // Logged with the same masking as the policy's own decisions.
    let erased = policy.policy.mask(&mut input);
    let about = (m.tenant.as_str(), Some(m.name.as_str()), version);
    row(state, policy, LIFECYCLE_PATH.to_owned(), input, result, erased, about, ctx)
}

/// A decision as logged: the OPA-shaped record (`revision` = the policy in force) and the
/// columns it is found by. One shape for the gates' decisions and the lifecycle's refusals.
#[allow(clippy::too_many_arguments)]
fn row(
    state: &AppState,
    policy: &Current,
    path: String,
    input: Value,
    result: fulcrum_policy::Outcome,
    erased: Vec<String>,
    (tenant, model, version): (&str, Option<&str>, Option<&str>),
    ctx: &GovernCtx,
) -> DecisionRow {
    let allow = result.allow;
    let record = DecisionRecord {
        decision_id: uuid::Uuid::now_v7().to_string(),
        path,
        input,
        result,
        bundles: json!({"fulcrum": {"revision": policy.digest.to_string()}}),
        timestamp: state.clock.now().format(&Rfc3339).expect("formats"),
        labels: json!({"id": "fulcrum-registry", "version": env!("CARGO_PKG_VERSION")}),
        erased,
        masked: vec![],
        chg_id: ctx.chg_id.clone(),
        inc_id: ctx.inc_id.clone(),
    };
    DecisionRow {
        decision_id: record.decision_id.clone(),
        tenant: tenant.to_owned(),
        model: model.map(str::to_owned),
        version: version.map(str::to_owned),
        path: record.path.clone(),
        allow,
        revision: policy.digest.to_string(),
        chg_id: ctx.chg_id.clone(),
        inc_id: ctx.inc_id.clone(),
        record: serde_json::to_string(&record).expect("records serialise"),
    }
}

/// Build, evaluate and record one decision.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    state: &AppState,
    policy: &Current,
    package: &str,
    input: Value,
    tenant: &str,
    model: Option<&str>,
    version: Option<&str>,
    ctx: &GovernCtx,
) -> (fulcrum_policy::Outcome, DecisionRow) {
    let outcome = policy.policy.decide(package, &input);
    // Decided on the full input; stored with what the policy's masking rule names erased.
    let mut stored = input;
    let erased = policy.policy.mask(&mut stored);
    let path = format!("{}/decision", package.replace('.', "/"));
    let logged = row(state, policy, path, stored, outcome.clone(), erased, (tenant, model, version), ctx);
    (outcome, logged)
}

/// What the promotion gate reads besides the governance state: the version's immutable release
/// record, its findings and the waivers that apply to it.
#[derive(Debug, Clone)]
pub struct PromotionFacts {
    pub release: Value,
    pub findings: Vec<fulcrum_core::findings::Finding>,
    pub waivers: Vec<fulcrum_store::WaiverRecord>,
    /// The version's labels (model's and card's), for the DLP approval rule.
    pub labels: Vec<String>,
}

/// The promotion gate: the policy's `fulcrum.promotion` decision for a `Promote` command.
#[allow(clippy::too_many_arguments)]
pub fn promotion(
    state: &AppState,
    policy: &Current,
    m: &ModelRecord,
    actor: &fulcrum_core::lifecycle::Actor,
    st: &ModelState,
    cmd: &Command,
    facts: Option<&PromotionFacts>,
    ctx: &GovernCtx,
) -> Option<GateResult> {
    let Command::Promote { version, to } = cmd else { return None };
    let v = st.version(*version)?;
    let release = facts.map_or(Value::Null, |f| f.release.clone());
    let findings: Vec<Value> = facts
        .map(|f| {
            f.findings
                .iter()
                .map(|x| json!({"id": x.id, "severity": x.severity.as_str(), "status": x.status, "package": x.package}))
                .collect()
        })
        .unwrap_or_default();
    let waivers: Vec<Value> = facts
        .map(|f| {
            f.waivers
                .iter()
                .filter_map(|w| {
                    let expires = OffsetDateTime::parse(&w.expires_at, &Rfc3339).ok()?;
                    Some(json!({"id": w.id, "finding": w.finding, "expires_ns": ns(expires), "approver": w.approver, "justification": w.justification}))
                })
                .collect()
        })
        .unwrap_or_default();
    let revalidate_by_ns =
        release["revalidate_by"].as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()).map(ns);
    let approvals: Vec<Value> = v
        .approvals
        .iter()
        .filter(|a| a.kind == ApprovalKind::Promotion)
        .map(|a| json!({"subject": a.subject, "role": a.role.as_str()}))
        .collect();
    let mut version_in = json!({
        "label": v.label.as_str(), "seq": v.seq, "stage": v.stage.as_str(), "publisher": v.publisher,
        "approvals": approvals, "model_card": release["model_card"].clone(), "findings": findings,
        "labels": facts.map(|f| f.labels.clone()).unwrap_or_default(),
    });
    if let Some(r) = revalidate_by_ns {
        version_in["revalidate_by_ns"] = json!(r);
    }
    let input = json!({
        "to": to.as_str(),
        "now_ns": ns(state.clock.now()),
        "principal": {"subject": actor.subject, "role": actor.role.as_str()},
        "model": {"name": m.name, "tenant": m.tenant, "domain": m.domain},
        "version": version_in,
        "waivers": waivers,
        "chg_id": ctx.chg_id,
    });
    let (outcome, decision) =
        decide(state, policy, "fulcrum.promotion", input, &m.tenant, Some(&m.name), Some(v.label.as_str()), ctx);
    Some(GateResult { allow: outcome.allow, reasons: outcome.deny, decision })
}

/// The alias gate: the policy's environment rule (`fulcrum.env`) for the alias's environment and
/// the target version, for a `SetAlias` command.
pub fn alias(
    state: &AppState,
    policy: &Current,
    m: &ModelRecord,
    st: &ModelState,
    cmd: &Command,
    ctx: &GovernCtx,
    revalidate_by: Option<OffsetDateTime>,
) -> Option<GateResult> {
    let Command::SetAlias { alias, version, env, .. } = cmd else { return None };
    let v = st.version(*version)?;
    let alias_env = st
        .aliases
        .get(alias)
        .map(|a| a.env)
        .or(*env)
        .unwrap_or_else(|| fulcrum_core::lifecycle::Env::for_alias(alias.as_str()));
    let mut input = json!({
        "operation": "set_alias",
        "env": alias_env.as_str(),
        "alias": alias.as_str(),
        "model": {"name": m.name, "tenant": m.tenant, "domain": m.domain},
        "version": {"label": v.label.as_str(), "seq": v.seq, "stage": v.stage.as_str(), "hold": v.hold.as_str()},
        "now_ns": ns(state.clock.now()),
        "chg_id": ctx.chg_id,
    });
    // Absent, not null, when the version has none (null would compare below any number).
    if let Some(t) = revalidate_by {
        input["version"]["revalidate_by_ns"] = json!(ns(t));
    }
    let (outcome, decision) =
        decide(state, policy, "fulcrum.env", input, &m.tenant, Some(&m.name), Some(v.label.as_str()), ctx);
    Some(GateResult { allow: outcome.allow, reasons: outcome.deny, decision })
}
