//! The policy in force and the audit ledger, as pages.
//!
//! - `/ui/policy`: the snapshot's digest, who installed it and why, its modules and data, the
//!   line diff to the snapshot before it, and the install history.
//! - `/ui/audit`: the newest signed checkpoint, its signature checked against the registry's
//!   trust bundle; then `audit.js` fetches every leaf hash the checkpoint covers and recomputes
//!   the RFC 9162 root **in the browser** (WebCrypto SHA-256), so the person sees with their own
//!   machine whether the stored tree is the one that was signed.
//! - `/ui/audit/proof/{index}`: one entry's inclusion proof in the newest checkpoint, verified,
//!   with the record it commits to (the caller's tenant's records only).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fulcrum_core::identity::Action;
use fulcrum_ledger::checkpoint::Checkpoint;
use fulcrum_ledger::merkle;
use serde::Deserialize;

use super::pages::{UiCaller, Who, problem, render};
use crate::AppState;
use crate::problem::ApiError;

/// Most lines diffed per module (beyond: "changed", without the lines).
const DIFF_LINES: usize = 4_000;
/// Most leaves a browser is handed to recompute a root (≈ 6 MiB).
pub const MAX_LEAVES: u64 = 200_000;

/// One line of a diff: ' ', '+' or '-', and the text.
pub type DiffLine = (char, String);

/// A line diff (longest common subsequence), `None` when either side is too long.
fn diff(old: &str, new: &str) -> Option<Vec<DiffLine>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > DIFF_LINES || b.len() > DIFF_LINES {
        return None;
    }
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((' ', a[i].to_owned()));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(('+', b[j].to_owned()));
            j += 1;
        } else {
            out.push(('-', a[i].to_owned()));
            i += 1;
        }
    }
    Some(out)
}

/// Only the changed lines with up to two lines of context around each.
fn hunks(lines: Vec<DiffLine>) -> Vec<DiffLine> {
    let near = |i: usize| lines[i.saturating_sub(2)..(i + 3).min(lines.len())].iter().any(|(c, _)| *c != ' ');
    let mut out = Vec::new();
    let mut skipped = false;
    for (i, l) in lines.iter().enumerate() {
        if near(i) {
            if skipped {
                out.push(('…', String::new()));
                skipped = false;
            }
            out.push(l.clone());
        } else {
            skipped = true;
        }
    }
    out
}

fn snapshot_parts(bytes: &[u8]) -> (Vec<(String, String)>, String) {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let modules = v["modules"]
        .as_object()
        .map(|m| m.iter().map(|(k, s)| (k.clone(), s.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    let data = serde_json::to_string_pretty(&v["data"]).unwrap_or_default();
    (modules, data)
}

/// One module's (or the data's) change.
struct Change {
    name: String,
    /// "added", "removed", "changed", "changed (too long to show)"
    what: String,
    lines: Vec<DiffLine>,
}

fn changes(old: &[u8], new: &[u8]) -> Vec<Change> {
    let (om, od) = snapshot_parts(old);
    let (nm, nd) = snapshot_parts(new);
    let mut names: Vec<&String> = om.iter().chain(&nm).map(|(k, _)| k).collect();
    names.sort();
    names.dedup();
    let find = |m: &[(String, String)], n: &str| m.iter().find(|(k, _)| k == n).map(|(_, s)| s.clone());
    let mut out = Vec::new();
    let mut push = |name: String, a: Option<String>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) if a == b => {}
        (a, b) => {
            let what = match (&a, &b) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            };
            match diff(a.as_deref().unwrap_or_default(), b.as_deref().unwrap_or_default()) {
                Some(d) => out.push(Change { name, what: what.into(), lines: hunks(d) }),
                None => out.push(Change { name, what: format!("{what} (too long to show)"), lines: vec![] }),
            }
        }
    };
    for n in names {
        push(n.clone(), find(&om, n), find(&nm, n));
    }
    push("data".into(), Some(od), Some(nd));
    out
}

#[derive(Template)]
#[template(path = "ui/policy.html")]
struct PolicyPage {
    who: Who,
    digest: String,
    installed: String,
    reason: String,
    modules: Vec<(String, String)>,
    data: String,
    previous: String,
    changes: Vec<Change>,
    /// (when, digest, kind, by, reason)
    history: Vec<(String, String, String, String, String)>,
}

pub async fn policy(State(state): State<AppState>, ui: UiCaller) -> Response {
    let who = ui.who(&state);
    let got = async {
        ui.caller.require(&state, Action::Read).await?;
        let current = state.policies.current();
        let history = state.store.policy_history(50).await?;
        let digest = current.digest.to_string();
        let previous = match history.iter().find(|h| h.digest != digest) {
            Some(h) => state.store.policy_by_digest(&h.digest).await?.map(|r| (h.digest.clone(), r.body)),
            None => None,
        };
        Ok::<_, ApiError>((current, history, previous))
    }
    .await;
    let (current, history, previous) = match got {
        Ok(x) => x,
        Err(e) => return problem(who, &e),
    };
    let (modules, data) = snapshot_parts(&current.snapshot);
    let mine = history.iter().find(|h| h.digest == current.digest.to_string());
    let page = PolicyPage {
        who,
        digest: current.digest.to_string(),
        installed: mine.map_or_else(
            || "shipped default".into(),
            |h| format!("{} by {} ({})", h.installed_at, h.installed_by, h.kind),
        ),
        reason: mine.and_then(|h| h.reason.clone()).unwrap_or_default(),
        modules,
        data,
        changes: previous.as_ref().map(|(_, body)| changes(body, &current.snapshot)).unwrap_or_default(),
        previous: previous.map(|(d, _)| d).unwrap_or_default(),
        history: history
            .into_iter()
            .map(|h| (h.installed_at, h.digest, h.kind, h.installed_by, h.reason.unwrap_or_default()))
            .collect(),
    };
    render(StatusCode::OK, &page)
}

/// The newest checkpoint and whether its signature holds under the registry's trust bundle.
async fn checked_checkpoint(
    state: &AppState,
) -> Result<(fulcrum_store::ledger::CheckpointRecord, Result<(), String>), ApiError> {
    let c = state.ledger.checkpoint(state, time::Duration::SECOND).await.map_err(|e| {
        tracing::error!(error = %e, "audit ledger");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", "the audit ledger cannot answer now")
    })?;
    let bundle = state.keys.bundle();
    let verdict = serde_json::from_slice::<fulcrum_sign::TrustBundle>(&bundle.body)
        .map_err(|e| format!("trust bundle: {e}"))
        .and_then(|b| {
            Checkpoint::verify_trusted(&c.note, &state.config.ledger_origin, &c.kid, &b).map_err(|e| e.to_string())
        })
        .and_then(|cp| {
            if cp.size == c.size && cp.root == c.root { Ok(()) } else { Err("the note names another tree".into()) }
        });
    Ok((c, verdict))
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    who: Who,
    origin: String,
    size: u64,
    root: String,
    kid: String,
    signed_at: String,
    note: String,
    signature: Result<(), String>,
    browser_check: bool,
}

pub async fn audit(State(state): State<AppState>, ui: UiCaller) -> Response {
    let who = ui.who(&state);
    let got = async {
        ui.caller.require(&state, Action::ReadEvents).await?;
        checked_checkpoint(&state).await
    }
    .await;
    let (c, signature) = match got {
        Ok(x) => x,
        Err(e) => return problem(who, &e),
    };
    let page = AuditPage {
        who,
        origin: state.config.ledger_origin.clone(),
        size: c.size,
        root: B64.encode(c.root),
        kid: c.kid,
        signed_at: c.signed_at,
        note: c.note,
        signature,
        browser_check: c.size <= MAX_LEAVES,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct LeavesQuery {
    size: u64,
}

/// Leaf hashes `[0, size)` as raw 32-byte runs, for the browser's recomputation.
pub async fn leaves(State(state): State<AppState>, ui: UiCaller, Query(q): Query<LeavesQuery>) -> Response {
    let got = async {
        ui.caller.require(&state, Action::ReadEvents).await?;
        let size = state.store.ledger_size().await?;
        if q.size > size || q.size > MAX_LEAVES {
            return Err(ApiError::bad_request("bad_range", format!("size must be at most {}", size.min(MAX_LEAVES))));
        }
        Ok(state.store.ledger_leaf_hashes(0, q.size).await?)
    }
    .await;
    match got {
        Ok(hashes) => {
            let body: Vec<u8> = hashes.concat();
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))], body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Template)]
#[template(path = "ui/proof.html")]
struct ProofPage {
    who: Who,
    index: u64,
    size: u64,
    root: String,
    leaf: String,
    proof: Vec<String>,
    signature: Result<(), String>,
    inclusion: Result<(), String>,
    record: String,
}

pub async fn proof(State(state): State<AppState>, ui: UiCaller, Path(index): Path<u64>) -> Response {
    let who = ui.who(&state);
    let got = async {
        ui.caller.require(&state, Action::ReadEvents).await?;
        let (c, signature) = checked_checkpoint(&state).await?;
        if index >= c.size {
            return Err(ApiError::not_found("ledger entry in the newest checkpoint"));
        }
        let entry = state
            .store
            .ledger_entries(index, index + 1)
            .await?
            .pop()
            .ok_or_else(|| ApiError::not_found("ledger entry"))?;
        // Another tenant's entry is not found, as in the API.
        if entry.tenant != ui.caller.0.tenant && entry.tenant != "*" {
            return Err(ApiError::not_found("ledger entry"));
        }
        let mut ranges = merkle::inclusion_path(index, c.size);
        ranges.push((index, index + 1));
        let mut hashes = state.store.ledger_ranges(&ranges).await?;
        let leaf = hashes.pop().expect("the leaf's range");
        let inclusion = merkle::verify_inclusion(index, c.size, &leaf, &hashes, &c.root).map_err(|e| format!("{e:?}"));
        let record = entry
            .data
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_else(|| "(the record is gone)".into());
        let record = serde_json::from_str::<serde_json::Value>(&record)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(record);
        Ok::<_, ApiError>(ProofPage {
            who: Who::default(),
            index,
            size: c.size,
            root: B64.encode(c.root),
            leaf: B64.encode(leaf),
            proof: hashes.iter().map(|h| B64.encode(h)).collect(),
            signature,
            inclusion,
            record,
        })
    }
    .await;
    match got {
        Ok(page) => render(StatusCode::OK, &ProofPage { who, ..page }),
        Err(e) => problem(who, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_diff_shows_what_was_added_and_removed_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\ni";
        let d = hunks(diff(old, new).unwrap());
        let plus: Vec<_> = d.iter().filter(|(c, _)| *c == '+').map(|(_, l)| l.as_str()).collect();
        let minus: Vec<_> = d.iter().filter(|(c, _)| *c == '-').map(|(_, l)| l.as_str()).collect();
        assert_eq!((plus, minus), (vec!["D", "i"], vec!["d"]));
        assert!(!d.iter().any(|(_, l)| l == "a"), "far context is left out: {d:?}");
        assert!(diff(&"x\n".repeat(DIFF_LINES + 1), "").is_none());
    }

    #[test]
    fn a_snapshot_change_names_each_module_and_the_data() {
        let old = br#"{"modules": {"a.rego": "package a\nx := 1", "b.rego": "package b"}, "data": {"k": 1}}"#;
        let new = br#"{"modules": {"a.rego": "package a\nx := 2", "c.rego": "package c"}, "data": {"k": 1}}"#;
        let c = changes(old, new);
        let names: Vec<_> = c.iter().map(|c| (c.name.as_str(), c.what.as_str())).collect();
        assert_eq!(names, vec![("a.rego", "changed"), ("b.rego", "removed"), ("c.rego", "added")]);
    }
}
