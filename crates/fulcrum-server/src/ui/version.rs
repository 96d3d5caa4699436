//! A version's page and its actions. The page shows what the registry knows and proves about the
//! version: stage and hold, approvals and who may still approve, what the release gate verified
//! (signature, provenance, SBOM), datasets and reference profile, findings, the policy's
//! decisions in plain words, and each governance event with its place in the audit ledger.
//!
//! Actions are the API's own governed calls with the session's caller. A promotion or an alias
//! move is first *previewed* — every lifecycle rule and the policy gate decided on the current
//! state with nothing kept or logged — and the person confirms on a page that shows that
//! decision; the confirmed request is decided again, for real.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fulcrum_core::Hold;
use fulcrum_core::event::{CloudEvent, EventKind, GovernCtx};
use fulcrum_core::identity::{Action, Role, role_allows, role_can_approve};
use fulcrum_core::lifecycle::{Env, Stage};
use serde::Deserialize;

use super::pages::{UiCaller, Who, problem, render, same_origin_form};
use crate::AppState;
use crate::problem::ApiError;
use crate::routes::models::{govern, load_version};
use fulcrum_store::Govern;

/// A governance event of the version, with its ledger leaf.
pub struct EventRow {
    pub at: String,
    pub what: String,
    pub by: String,
    pub ids: String,
    pub leaf: Option<u64>,
}

/// A policy or lifecycle decision about the version, in plain words.
pub struct DecisionRow {
    pub at: String,
    pub rule: String,
    pub allow: bool,
    pub by: String,
    pub reasons: Vec<String>,
    pub revision: String,
}

#[derive(Template)]
#[template(path = "ui/version.html")]
struct VersionPage {
    who: Who,
    csrf: String,
    model: String,
    label: String,
    stage: String,
    hold: String,
    hold_reason: String,
    artifact_digest: String,
    record_digest: String,
    publisher: String,
    revalidate_by: String,
    chg_id: String,
    approvals: Vec<String>,
    still_approve: String,
    /// What the release gate verified: (check, result)
    gate: Vec<(String, String)>,
    datasets: Vec<(String, String)>,
    profile: String,
    card: Vec<(String, String)>,
    findings: Vec<(String, String, String, String)>,
    /// (id, finding, expires, approver, justification)
    waivers: Vec<(String, String, String, String, String)>,
    files: Vec<(String, u64, String)>,
    events: Vec<EventRow>,
    decisions: Option<Vec<DecisionRow>>,
    /// (path segment, button text, needs a reason and an incident id)
    actions: Vec<(&'static str, &'static str, bool)>,
    /// The next rung, when the caller may promote.
    promote_to: Option<&'static str>,
    /// Aliases of the model, when the caller may move them.
    aliases: Option<Vec<String>>,
}

/// The actions a role may take on a version, as the console offers them (the registry still
/// decides each one when it is sent).
fn actions_for(role: Role, hold: Hold) -> Vec<(&'static str, &'static str, bool)> {
    let mut out = Vec::new();
    if hold != Hold::Revoked {
        if role_allows(role, Action::Approve) {
            out.push(("approve", "Approve", false));
        }
        if role_allows(role, Action::Quarantine) && hold == Hold::None {
            out.push(("quarantine", "Quarantine", true));
        }
        if role_allows(role, Action::Revoke) {
            out.push(("revoke", "Revoke", true));
        }
    }
    out
}

fn text(x: &serde_json::Value) -> String {
    match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// What the release gate proved at registration, from the release record it signed.
fn gate_rows(release: &serde_json::Value) -> Vec<(String, String)> {
    let g = &release["release_gate"];
    let mut rows = vec![(
        "Release policy".to_owned(),
        format!(
            "{} (required: {})",
            text(&g["mode"]),
            g["required"]
                .as_array()
                .filter(|a| !a.is_empty())
                .map_or_else(|| "nothing".to_owned(), |a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        ),
    )];
    let sig = &g["artifact_signature"];
    rows.push((
        "Artifact signature".into(),
        if sig.is_null() {
            "not given".into()
        } else {
            format!(
                "verified: {} signed by {} ({}, {})",
                text(&sig["format"]),
                text(&sig["signer"]),
                text(&sig["method"]),
                text(&sig["hash"])
            )
        },
    ));
    let prov = g["provenance"].as_array().cloned().unwrap_or_default();
    rows.push((
        "Provenance".into(),
        if prov.is_empty() {
            "not given".into()
        } else {
            prov.iter()
                .map(|p| format!("verified: builder {} ({})", text(&p["builder_id"]), text(&p["build_type"])))
                .collect::<Vec<_>>()
                .join("; ")
        },
    ));
    rows.push((
        "SBOM".into(),
        if g["sbom"].is_null() { "not given".into() } else { format!("verified: {}", text(&g["sbom"]["format"])) },
    ));
    let d = &release["release_gate_decision"];
    if !d.is_null() {
        rows.push((
            "Gate decision".into(),
            format!("{} (ledger entry {})", text(&d["decision_id"]), text(&d["ledger_index"])),
        ));
    }
    rows.push(("Policy at registration".into(), text(&release["policy_digest"])));
    rows
}

/// Who may still give the approvals four-eyes needs (the lifecycle's rule: two approvals by
/// different people in different approving roles, neither the publisher).
fn still_approve(v: &fulcrum_store::VersionRecord) -> String {
    let promotion = v.approvals.iter().filter(|a| a.kind == "promotion");
    let (met, given) =
        fulcrum_core::lifecycle::four_eyes_of(&v.publisher, promotion.map(|a| (a.subject.as_str(), a.role)));
    if met {
        return "Four-eyes is met.".into();
    }
    let roles: Vec<&str> = Role::ALL
        .iter()
        .filter(|r| role_can_approve(**r) && !given.iter().any(|a| a.1 == **r))
        .map(|r| r.as_str())
        .collect();
    let mut not: Vec<String> = vec![format!("{} (the publisher)", v.publisher)];
    not.extend(given.iter().map(|a| a.0.to_owned()));
    format!(
        "{} more approval(s) needed, from someone in one of these roles: {}; not {}.",
        2 - given.len().min(1),
        roles.join(", "),
        not.join(", ")
    )
}

/// The version's governance events with their ledger leaves (its newest 500).
async fn events_of(state: &AppState, tenant: &str, model: &str, label: &str) -> Result<Vec<EventRow>, ApiError> {
    let stored = state.store.version_events(tenant, model, label, 500).await?;
    // Found by the version each event names (an alias move names its target).
    let mine: Vec<(&fulcrum_store::StoredEvent, fulcrum_core::event::EventPayload)> =
        stored.iter().filter_map(|e| serde_json::from_str::<CloudEvent>(&e.body).ok().map(|c| (e, c.data))).collect();
    let seqs: Vec<i64> = mine.iter().map(|(e, _)| e.seq).collect();
    let leaves = state.store.event_records(tenant, &seqs).await?;
    Ok(mine
        .into_iter()
        .map(|(e, p)| {
            // The leaf whose record is exactly this event's bytes.
            let leaf = leaves.iter().find(|r| r.data == e.body.as_bytes()).map(|r| r.index);
            let what = match p.event {
                EventKind::AliasUpdated => format!(
                    "alias {} moved {} → {}",
                    p.alias.as_deref().unwrap_or("?"),
                    p.from.as_deref().unwrap_or("(none)"),
                    p.to.as_deref().unwrap_or("(none)")
                ),
                EventKind::Promotion => {
                    format!("promoted {} → {}", p.from.as_deref().unwrap_or("?"), p.to.as_deref().unwrap_or("?"))
                }
                k => k.as_str().replace('_', " "),
            };
            let ids = [p.chg_id.as_deref(), p.inc_id.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
            EventRow {
                at: p.ts.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                what,
                by: p.actor.unwrap_or_default(),
                ids,
                leaf,
            }
        })
        .collect())
}

/// The decisions logged about the version (gates and lifecycle refusals), in plain words.
async fn decisions_of(state: &AppState, tenant: &str, model: &str, label: &str) -> Result<Vec<DecisionRow>, ApiError> {
    let rows = state.store.version_decisions(tenant, model, label, 200).await?;
    Ok(rows
        .iter()
        .filter_map(|(_, rec)| serde_json::from_str::<serde_json::Value>(rec).ok())
        .map(|r| DecisionRow {
            at: text(&r["timestamp"]),
            rule: text(&r["path"]),
            allow: r["result"]["allow"].as_bool().unwrap_or(false),
            by: text(&r["input"]["principal"]["subject"]),
            reasons: r["result"]["deny"]
                .as_array()
                .map(|d| d.iter().filter_map(|c| c.as_str()).map(fulcrum_core::explain::reason).collect())
                .unwrap_or_default(),
            revision: text(&r["bundles"]["fulcrum"]["revision"]),
        })
        .collect())
}

pub async fn page(
    State(state): State<AppState>,
    ui: UiCaller,
    Path((name, label)): Path<(String, String)>,
) -> Response {
    let who = ui.who(&state);
    let role = ui.caller.0.role;
    let loaded = async {
        let (m, v) = load_version(&state, &ui.caller, &name, &label).await?;
        let findings = state.store.findings(v.id).await?;
        let waivers = state.store.waivers(m.id, Some(v.id)).await?;
        let events = events_of(&state, &m.tenant, &m.name, &v.label).await?;
        // Decisions only for who may read decision logs (the API's rule).
        let decisions = if ui.caller.require(&state, Action::ReadDecisions).await.is_ok() {
            Some(decisions_of(&state, &m.tenant, &m.name, &v.label).await?)
        } else {
            None
        };
        let aliases = if role_allows(role, Action::SetAlias) {
            Some(state.store.aliases_of(m.id).await?.into_iter().map(|a| a.name).collect())
        } else {
            None
        };
        Ok::<_, ApiError>((m, v, findings, waivers, events, decisions, aliases))
    }
    .await;
    let (m, v, findings, waivers, events, decisions, aliases) = match loaded {
        Ok(x) => x,
        Err(e) => return problem(who, &e),
    };
    let card = v.release["model_card"]
        .as_object()
        .map(|o| o.iter().map(|(k, x)| (k.clone(), text(x))).collect())
        .unwrap_or_default();
    let profile = &v.release["reference_profile"];
    let page = VersionPage {
        csrf: who.csrf.clone(),
        actions: actions_for(role, v.hold),
        promote_to: (role_allows(role, Action::Promote) && v.hold == Hold::None)
            .then(|| v.stage.next().map(Stage::as_str))
            .flatten(),
        aliases: aliases.filter(|_| v.hold == Hold::None),
        still_approve: still_approve(&v),
        gate: gate_rows(&v.release),
        datasets: v.release["dataset_snapshots"]
            .as_array()
            .map(|a| a.iter().map(|d| (text(&d["uri"]), text(&d["digest"]))).collect())
            .unwrap_or_default(),
        profile: if profile.is_null() {
            "none".into()
        } else {
            format!(
                "{} — features: {}",
                text(&profile["digest"]),
                profile["features"]
                    .as_array()
                    .map(|f| f.iter().map(text).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )
        },
        model: m.name,
        stage: v.stage.as_str().to_owned(),
        hold: v.hold.as_str().to_owned(),
        hold_reason: v.hold_reason.clone().unwrap_or_default(),
        artifact_digest: v.artifact_digest.to_string(),
        record_digest: v.record_digest.to_string(),
        publisher: v.publisher.clone(),
        revalidate_by: text(&v.release["revalidate_by"]),
        chg_id: v.chg_id.clone().unwrap_or_else(|| "—".into()),
        approvals: v
            .approvals
            .iter()
            .map(|a| format!("{} ({}) {} — {}", a.subject, a.role.as_str(), a.created_at, a.kind))
            .collect(),
        card,
        findings: findings.into_iter().map(|f| (f.id, f.severity.as_str().to_owned(), f.status, f.package)).collect(),
        waivers: waivers.into_iter().map(|w| (w.id, w.finding, w.expires_at, w.approver, w.justification)).collect(),
        files: v.files.iter().map(|f| (f.path.clone(), f.size, f.digest.to_string())).collect(),
        events,
        decisions,
        label: v.label,
        who,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    inc_id: String,
    #[serde(default)]
    chg_id: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    alias: String,
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// The governance command a promote or alias form asks for, and its context.
fn command(f: &ActionForm, label: &str, action: &str) -> Result<(Govern, GovernCtx, String), ApiError> {
    let ctx = GovernCtx { chg_id: opt(&f.chg_id), ..Default::default() };
    crate::routes::check_id("chg_id", ctx.chg_id.as_deref())?;
    match action {
        "promote" => {
            let to: Stage =
                f.to.parse()
                    .map_err(|()| ApiError::unprocessable("bad_stage", "to must be Candidate, Staging or Approved"))?;
            Ok((Govern::Promote { version: label.to_owned(), to }, ctx, format!("promote {label} to {}", to.as_str())))
        }
        "alias" => {
            let alias = crate::routes::models::parse_alias(f.alias.trim())?;
            let text = format!("move alias {} to {label}", alias.as_str());
            Ok((
                Govern::SetAlias { alias, version: label.to_owned(), env: None::<Env>, allow_downgrade: false },
                ctx,
                text,
            ))
        }
        _ => Err(ApiError::not_found("action")),
    }
}

#[derive(Template)]
#[template(path = "ui/preview.html")]
struct PreviewPage {
    who: Who,
    csrf: String,
    model: String,
    label: String,
    action: String,
    what: String,
    allowed: bool,
    reasons: Vec<String>,
    effects: Vec<String>,
    to: String,
    alias: String,
    chg_id: String,
}

/// Preview a promotion or alias move: the lifecycle and the policy decide on the current state,
/// nothing is kept; the page shows the decision and, when allowed, a form to confirm.
pub async fn preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    ui: UiCaller,
    Path((name, label, action)): Path<(String, String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let who = ui.who(&state);
    if let Err(e) = same_origin_form(&state, &ui, &headers, &f.csrf) {
        return problem(who, &e);
    }
    let (cmd, ctx, what) = match command(&f, &label, &action) {
        Ok(x) => x,
        Err(e) => return problem(who, &e),
    };
    // `govern` asks the access rule itself (a role that may not act reads "would be refused").
    let outcome = govern(&state, &ui.caller, &name, cmd, GovernCtx { dry_run: true, ..ctx }).await;
    let (allowed, reasons, effects) = match outcome {
        Ok(g) => {
            let effects = g
                .effects
                .iter()
                .map(|fx| match fx {
                    fulcrum_core::lifecycle::Effect::StageChanged { from, to, .. } => {
                        format!("stage {} → {}", from.as_str(), to.as_str())
                    }
                    fulcrum_core::lifecycle::Effect::AliasMoved { alias, env, .. } => {
                        format!("alias {} ({}) → {label}", alias.as_str(), env.as_str())
                    }
                    other => format!("{other:?}"),
                })
                .collect();
            (true, vec![], effects)
        }
        // Refused: by the access rule (403), the lifecycle or the policy (409), in plain words with
        // the code.
        Err(e) if e.status == StatusCode::CONFLICT || e.status == StatusCode::FORBIDDEN => {
            let mut reasons: Vec<String> = e
                .errors
                .iter()
                .map(|c| format!("{} ({})", fulcrum_core::explain::reason(&c.detail), c.detail))
                .collect();
            if reasons.is_empty() {
                reasons.push(format!("{} ({})", fulcrum_core::explain::reason(e.code), e.detail));
            }
            (false, reasons, vec![])
        }
        Err(e) => return problem(who, &e),
    };
    let page = PreviewPage {
        csrf: who.csrf.clone(),
        who,
        model: name,
        label,
        action,
        what,
        allowed,
        reasons,
        effects,
        to: f.to,
        alias: f.alias,
        chg_id: f.chg_id,
    };
    render(StatusCode::OK, &page)
}

/// A console action: the API's own handler with the session's caller.
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    ui: UiCaller,
    Path((name, label, action)): Path<(String, String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    use crate::routes::ApiJson;
    let who = ui.who(&state);
    if let Err(e) = same_origin_form(&state, &ui, &headers, &f.csrf) {
        return problem(who, &e);
    }
    let path = Path((name.clone(), label.clone()));
    let hold = || crate::dto::HoldBody { reason: f.reason.clone(), chg_id: opt(&f.chg_id), inc_id: opt(&f.inc_id) };
    let done: Result<(), ApiError> = match action.as_str() {
        "approve" => crate::routes::models::approve(
            State(state.clone()),
            ui.caller,
            path,
            ApiJson(crate::dto::ApproveBody { comment: "approved in the console".into() }),
        )
        .await
        .map(|_| ()),
        "quarantine" => {
            crate::routes::models::quarantine(State(state.clone()), ui.caller, path, ApiJson(hold())).await.map(|_| ())
        }
        "revoke" => {
            crate::routes::models::revoke(State(state.clone()), ui.caller, path, ApiJson(hold())).await.map(|_| ())
        }
        "promote" => crate::routes::models::promote(
            State(state.clone()),
            ui.caller,
            path,
            ApiJson(crate::dto::PromoteBody { to: f.to.clone(), chg_id: opt(&f.chg_id) }),
        )
        .await
        .map(|_| ()),
        "alias" => crate::routes::models::set_alias(
            State(state.clone()),
            ui.caller,
            Path((name.clone(), f.alias.trim().to_owned())),
            ApiJson(crate::dto::SetAliasBody {
                version: label.clone(),
                chg_id: opt(&f.chg_id),
                allow_downgrade: false,
                env: None,
            }),
        )
        .await
        .map(|_| ()),
        _ => Err(ApiError::not_found("action")),
    };
    match done {
        Ok(()) => Redirect::to(&format!("/ui/models/{name}/versions/{label}")).into_response(),
        Err(e) => problem(who, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_gate_verified_reads_from_the_release_record() {
        let release = serde_json::json!({
            "policy_digest": "sha256:ab",
            "release_gate": {"mode": "enforced", "required": ["signature", "provenance", "sbom"],
                "artifact_signature": {"format": "model-signing/v1.0", "signer": "SHA256:k1", "method": "key", "hash": "sha256"},
                "provenance": [{"builder_id": "https://ci.example/builder", "build_type": "https://ci.example/type"}],
                "sbom": {"format": "cyclonedx"}},
            "release_gate_decision": {"decision_id": "d-1", "ledger_index": 7},
        });
        let rows = gate_rows(&release);
        let get = |k: &str| rows.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(get("Release policy"), "enforced (required: signature, provenance, sbom)");
        assert_eq!(get("Artifact signature"), "verified: model-signing/v1.0 signed by SHA256:k1 (key, sha256)");
        assert_eq!(get("Provenance"), "verified: builder https://ci.example/builder (https://ci.example/type)");
        assert_eq!(get("SBOM"), "verified: cyclonedx");
        assert_eq!(get("Gate decision"), "d-1 (ledger entry 7)");
        let none = gate_rows(&serde_json::json!({"release_gate": {"mode": "development", "required": []}}));
        assert!(none.iter().any(|(k, v)| k == "Artifact signature" && v == "not given"));
        assert!(none.iter().any(|(k, v)| k == "Release policy" && v == "development (required: nothing)"));
    }
}
