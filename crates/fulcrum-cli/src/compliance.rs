//! `fulcrum report compliance` (seed §7, SPEC §12): each control of NIST SP 800-53, SSDF, SLSA,
//! AI RMF, CSA CCM and ISO 27001 the seed names, mapped to the Fulcrum mechanism that implements
//! it and to **live evidence** — figures counted from ledger records this command verified
//! itself against a signed checkpoint (every leaf re-hashed, the tree recomputed), so the report
//! is no more than the ledger proves. The mapping is data (`compliance/mapping.v1.json`),
//! reviewed like code. HTML prints; the PDF is rendered by headless Chromium.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::commands::Ctx;

/// The control mapping shipped with this build.
pub const MAPPING: &str = include_str!("../../../compliance/mapping.v1.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Framework {
    #[value(name = "nist-800-53")]
    Nist,
    Ssdf,
    Slsa,
    #[value(name = "ai-rmf")]
    AiRmf,
    Ccm,
    Iso27001,
    All,
}

impl Framework {
    fn id(self) -> &'static str {
        match self {
            Framework::Nist => "nist-800-53",
            Framework::Ssdf => "ssdf",
            Framework::Slsa => "slsa",
            Framework::AiRmf => "ai-rmf",
            Framework::Ccm => "ccm",
            Framework::Iso27001 => "iso27001",
            Framework::All => "all",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Html,
    Pdf,
}

#[derive(Debug, Args)]
pub struct ComplianceArgs {
    #[arg(long, value_enum, default_value_t = Framework::All)]
    framework: Framework,
    /// Count evidence from this time on (RFC 3339 or YYYY-MM-DD); default: the whole ledger.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Where to write the report (required for pdf; html and json go to stdout without it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Chromium to render the PDF with (default: chromium on PATH).
    #[arg(long, env = "FULCRUM_CHROMIUM", default_value = "chromium")]
    chromium: PathBuf,
}

fn parse_since(s: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let d = time::Date::parse(s, &time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("--since {s:?}: expected RFC 3339 or YYYY-MM-DD"))?;
    Ok(d.midnight().assume_utc())
}

/// Figures and exceptions counted from verified ledger records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub counts: BTreeMap<String, u64>,
    pub exceptions: BTreeMap<String, Vec<Value>>,
}

impl Tally {
    fn add(&mut self, k: &str) {
        *self.counts.entry(k.to_owned()).or_default() += 1;
    }
}

/// Events counted one for one into a metric (the mapping's `metrics`).
const EVENT_METRICS: [(&str, &str); 21] = [
    ("release_published", "releases_published"),
    ("alias_updated", "alias_moves"),
    ("policy_changed", "policy_changes"),
    ("revocation", "revocations"),
    ("quarantined", "quarantines"),
    ("incident_opened", "incidents_opened"),
    ("incident_closed", "incidents_closed"),
    ("startup_permit", "startup_permits"),
    ("startup_deny", "startup_denies"),
    ("agent_step", "agent_steps"),
    ("key_rotated", "key_rotations"),
    ("key_retired", "key_rotations"),
    ("trust_root_imported", "key_rotations"),
    ("findings_recorded", "findings_recorded"),
    ("waiver_granted", "waivers_granted"),
    ("drift_detected", "drift_events"),
    ("drift_cleared", "drift_events"),
    ("revalidation_due", "revalidation_events"),
    ("revalidation_overdue", "revalidation_events"),
    ("serving_stats", "serving_stats"),
    ("forensic_read", "forensic_reads"),
];

/// Count the controls' metrics from ledger records (`(kind, data)`: `event` records are
/// CloudEvents, `decision` records OPA decision records) at or after `since`. Pure.
pub fn tally(records: &[(String, Value)], since: Option<OffsetDateTime>) -> Tally {
    let mut t = Tally::default();
    let when = |s: &Value| s.as_str().and_then(|x| OffsetDateTime::parse(x, &Rfc3339).ok());
    for (kind, v) in records {
        match kind.as_str() {
            "event" => {
                let d = &v["data"];
                if since.is_some_and(|s| when(&d["ts"]).is_some_and(|t| t < s)) {
                    continue;
                }
                t.add("ledger_records");
                let event = d["event"].as_str().unwrap_or("");
                if let Some((_, metric)) = EVENT_METRICS.iter().find(|(e, _)| *e == event) {
                    t.add(metric);
                }
                let prod_change = match event {
                    "promotion" if d["to"] == "Approved" => {
                        let approvers: std::collections::BTreeSet<&str> = d["approvals"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.as_str()?.split_once(':').map(|(_, who)| who))
                            .collect();
                        if approvers.len() >= 2 {
                            t.add("approved_with_four_eyes");
                        } else {
                            t.exceptions.entry("production_change_exceptions".into()).or_default().push(json!({
                                "sequence": v["sequence"], "change": format!("promotion of {}@{} to Approved", d["model"].as_str().unwrap_or(""), d["version"].as_str().unwrap_or("")),
                                "why": format!("{} distinct approver(s)", approvers.len())}));
                        }
                        true
                    }
                    "alias_updated" => {
                        if d["inc_id"].is_string() {
                            t.add("alias_rollbacks");
                        }
                        d["env"] == "prod"
                    }
                    _ => false,
                };
                // An automatic rollback (carries the incident id) is a production change made
                // by the kill switch under an incident, not by a change request.
                if prod_change {
                    t.add("production_changes");
                    let rollback = d["event"] == "alias_updated" && d["inc_id"].is_string();
                    if d["chg_id"].is_string() || rollback {
                        t.add("production_changes_with_chg_id");
                    } else {
                        t.exceptions.entry("production_change_exceptions".into()).or_default().push(json!({
                            "sequence": v["sequence"],
                            "change": format!("{} of {}@{}", d["event"].as_str().unwrap_or(""), d["model"].as_str().unwrap_or(""),
                                              d["version"].as_str().or(d["to"].as_str()).unwrap_or("")),
                            "why": "no chg_id"}));
                    }
                }
            }
            "decision" => {
                if since.is_some_and(|s| when(&v["timestamp"]).is_some_and(|t| t < s)) {
                    continue;
                }
                t.add("ledger_records");
                let allow = v["result"]["allow"].as_bool().unwrap_or(false);
                match (v["path"].as_str().unwrap_or(""), allow) {
                    ("fulcrum/release/decision", false) => t.add("release_gate_denies"),
                    ("fulcrum/lifecycle/decision", _) => {
                        t.add("lifecycle_refusals");
                        t.exceptions.entry("enforced_denials".into()).or_default().push(denial(v));
                    }
                    (_, true) => t.add("gate_allows"),
                    (_, false) => {
                        t.add("gate_denies");
                        t.exceptions.entry("enforced_denials".into()).or_default().push(denial(v));
                    }
                }
            }
            _ => {}
        }
    }
    t
}

fn denial(v: &Value) -> Value {
    json!({"decision_id": v["decision_id"], "path": v["path"], "at": v["timestamp"],
           "by": v["input"]["principal"]["subject"], "model": v["input"]["model"]["name"],
           "version": v["input"]["version"], "reasons": v["result"]["deny"]})
}

/// The report: the mapping's controls of `framework` with their evidence from `t`.
pub fn report(mapping: &Value, framework: Framework, t: &Tally) -> Vec<Value> {
    let labels = &mapping["metrics"];
    mapping["controls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| framework == Framework::All || c["framework"] == framework.id())
        .map(|c| {
            let evidence: Vec<Value> = c["evidence"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str())
                .map(|m| json!({"metric": m, "label": labels[m], "count": t.counts.get(m).copied().unwrap_or(0)}))
                .collect();
            let exceptions = c["exceptions"].as_str().and_then(|k| t.exceptions.get(k)).cloned().unwrap_or_default();
            let any = evidence.iter().any(|e| e["count"].as_u64().unwrap_or(0) > 0);
            let status = match (any, exceptions.is_empty()) {
                (_, false) => "exceptions",
                (true, true) => "evidenced",
                (false, true) => "no activity in the period",
            };
            json!({"framework": c["framework"], "id": c["id"], "title": c["title"], "iso2022": c["iso2022"],
                   "mechanism": c["mechanism"], "evidence": evidence, "exceptions": exceptions, "status": status})
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report as a self-contained, printable HTML page.
pub fn html(doc: &Value) -> String {
    let str_ = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let mut rows = String::new();
    for c in doc["controls"].as_array().into_iter().flatten() {
        let ev: Vec<String> = c["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("<li><b>{}</b> {}</li>", e["count"], esc(&str_(&e["label"]))))
            .collect();
        let ex: Vec<String> = c["exceptions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("<li>{}</li>", esc(&e.to_string())))
            .collect();
        let iso: Vec<String> = c["iso2022"].as_array().into_iter().flatten().map(str_).collect();
        rows.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td><b>{}</b> {}{}</td><td>{}</td><td><ul>{}</ul>{}</td><td>{}</td></tr>\n",
            if c["status"] == "exceptions" { "exc" } else { "" },
            esc(&str_(&c["framework"])),
            esc(&str_(&c["id"])),
            esc(&str_(&c["title"])),
            if iso.is_empty() {
                String::new()
            } else {
                format!("<br><small>ISO/IEC 27001:2022 Annex A {}</small>", esc(&iso.join(", ")))
            },
            esc(&str_(&c["mechanism"])),
            ev.join(""),
            if ex.is_empty() { String::new() } else { format!("<p>Exceptions:</p><ul>{}</ul>", ex.join("")) },
            esc(&str_(&c["status"])),
        ));
    }
    let denials: Vec<String> = doc["enforced_denials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "<li>{} {} by {} on {}@{}: {}</li>",
                esc(&str_(&d["at"])),
                esc(&str_(&d["path"])),
                esc(&str_(&d["by"])),
                esc(&str_(&d["model"])),
                esc(&str_(&d["version"])),
                esc(&d["reasons"].to_string())
            )
        })
        .collect();
    let cp = &doc["checkpoint"];
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fulcrum compliance report</title>
<style>
body {{ font: 11pt/1.4 system-ui, sans-serif; color: #111; margin: 2em; }}
h1 {{ font-size: 18pt; margin: 0 0 .2em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #888; padding: 4px 6px; vertical-align: top; text-align: left; }}
th {{ background: #e8e8e8; }}
tr.exc td {{ background: #fff1f0; }}
ul {{ margin: 0; padding-left: 1.2em; }}
tr {{ page-break-inside: avoid; }}
@page {{ size: A4 landscape; margin: 12mm; }}
</style></head><body>
<h1>Fulcrum compliance report</h1>
<p>Framework: <b>{fw}</b>. Period: {since} to {until}. Generated {generated} by {by}.</p>
<p>Evidence counted from <b>{size}</b> ledger entries verified against the signed checkpoint of <code>{origin}</code> (root <code>{root}</code>, key <code>{kid}</code>). Mapping {mv}.</p>
<table><thead><tr><th>Framework</th><th>Control</th><th>Mechanism</th><th>Evidence (from the ledger)</th><th>Status</th></tr></thead>
<tbody>
{rows}</tbody></table>
<h2>Enforced denials ({nd})</h2><ul>{denials}</ul>
</body></html>
"#,
        fw = esc(&str_(&doc["framework"])),
        since = esc(&str_(&doc["period"]["since"])),
        until = esc(&str_(&doc["period"]["until"])),
        generated = esc(&str_(&doc["generated_at"])),
        by = esc(&str_(&doc["generated_by"])),
        size = cp["size"],
        origin = esc(&str_(&cp["origin"])),
        root = esc(&str_(&cp["root"])),
        kid = esc(&str_(&cp["kid"])),
        mv = esc(&str_(&doc["mapping_version"])),
        nd = denials.len(),
        denials = denials.join(""),
    )
}

/// Render `html` to a PDF with headless Chromium.
fn pdf(chromium: &std::path::Path, html: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let page = dir.path().join("report.html");
    std::fs::write(&page, html)?;
    let profile = dir.path().join("profile");
    let out_abs = std::path::absolute(out)?;
    let st = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", out_abs.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {} to render the PDF", chromium.display()))?;
    let ok = std::fs::read(&out_abs).map(|b| b.starts_with(b"%PDF-")).unwrap_or(false);
    if !st.success() || !ok {
        bail!("{} did not render the PDF ({st})", chromium.display());
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, a: ComplianceArgs) -> anyhow::Result<()> {
    let since = a.since.as_deref().map(parse_since).transpose()?;
    if a.format == Format::Pdf && a.out.is_none() {
        bail!("--format pdf needs --out FILE");
    }
    let client = ctx.client()?;
    let me = client.get("/v1/me").await.unwrap_or_default();
    // The report lists decisions and their inputs: the registry decides who may read those
    // (auditors, security officers, release managers, policy admins — not viewers).
    client.get("/v1/decisions").await.context("the compliance report reads decision logs")?;
    let (cp, note) = crate::audit::checkpoint(&client, None).await?;
    let (leaves, kinds) = crate::audit::leaves(&client, 0, cp.size).await?;
    let empty = fulcrum_ledger::audit::Witness::default();
    fulcrum_ledger::audit::verify(&cp, &leaves, &empty)
        .map_err(|p| anyhow::anyhow!("the ledger does not verify, no report is made: {p}"))?;
    let records: Vec<(String, Value)> = leaves
        .iter()
        .zip(&kinds)
        .filter_map(|(l, k)| Some((k.clone(), serde_json::from_slice(l.data.as_deref()?).ok()?)))
        .collect();
    let t = tally(&records, since);
    let mapping: Value = serde_json::from_str(MAPPING).expect("the shipped mapping is JSON");
    let controls = report(&mapping, a.framework, &t);
    let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("formats");
    let doc = json!({
        "kind": "fulcrum-compliance-report/v1",
        "framework": a.framework.id(),
        "mapping_version": mapping["version"],
        "generated_at": now,
        "generated_by": me["subject"],
        "period": {"since": since.map(|s| s.format(&Rfc3339).expect("formats")), "until": now},
        "checkpoint": {"origin": cp.origin, "size": cp.size, "root": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cp.root),
                       "kid": note.lines().rev().find_map(|l| l.strip_prefix("— ").and_then(|r| r.split(' ').next())).unwrap_or(""), "note": note},
        "verified": true,
        "figures": t.counts,
        "controls": controls,
        "enforced_denials": t.exceptions.get("enforced_denials").cloned().unwrap_or_default(),
    });
    let text = match a.format {
        Format::Json => serde_json::to_string_pretty(&doc).expect("json prints"),
        Format::Html | Format::Pdf => html(&doc),
    };
    match (a.format, &a.out) {
        (Format::Pdf, Some(out)) => {
            pdf(&a.chromium, &text, out)?;
            eprintln!("fulcrum: compliance report written to {}", out.display());
        }
        (_, Some(out)) => {
            std::fs::write(out, &text).with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("fulcrum: compliance report written to {}", out.display());
        }
        (_, None) => crate::outln!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, data: Value) -> (String, Value) {
        ("event".into(), json!({"sequence": seq.to_string(), "data": data}))
    }

    #[test]
    fn production_changes_need_two_approvers_and_a_change_id() {
        let recs = vec![
            ev(
                1,
                json!({"event": "promotion", "to": "Approved", "model": "m", "version": "v1", "chg_id": "CHG-1",
                         "approvals": ["approver:ana", "security-officer:bo"], "ts": "2026-01-01T00:00:00Z"}),
            ),
            ev(
                2,
                json!({"event": "alias_updated", "env": "prod", "model": "m", "version": "v1", "chg_id": null, "ts": "2026-01-02T00:00:00Z"}),
            ),
            ev(
                3,
                json!({"event": "alias_updated", "env": "prod", "model": "m", "version": "v0", "inc_id": "INC-1", "ts": "2026-01-03T00:00:00Z"}),
            ),
            (
                "decision".into(),
                json!({"path": "fulcrum/lifecycle/decision", "result": {"allow": false, "deny": ["publisher_cannot_approve"]},
                                        "timestamp": "2026-01-01T00:00:00Z", "input": {"principal": {"subject": "ci"}}}),
            ),
        ];
        let t = tally(&recs, None);
        assert_eq!(t.counts["production_changes"], 3);
        assert_eq!(t.counts["production_changes_with_chg_id"], 2, "the change id, and the kill switch's rollback");
        assert_eq!(t.counts["approved_with_four_eyes"], 1);
        assert_eq!(t.counts["alias_rollbacks"], 1);
        assert_eq!(t.counts["lifecycle_refusals"], 1);
        assert_eq!(t.exceptions["production_change_exceptions"].len(), 1);
        // --since leaves earlier records out.
        let later = tally(&recs, Some(parse_since("2026-01-02").unwrap()));
        assert_eq!(later.counts.get("approved_with_four_eyes"), None);
        assert_eq!(later.counts["production_changes"], 2);
    }

    #[test]
    fn the_shipped_mapping_names_every_control_and_only_known_metrics() {
        let m: Value = serde_json::from_str(MAPPING).unwrap();
        let ids: Vec<&str> = m["controls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        for want in [
            "SA-10", "CM-3", "CM-5", "CM-6", "SC-8", "SC-13", "SI-7", "AU-2", "AU-12", "PS.1", "PW.4", "RV.1",
            "Build L2", "GOVERN", "MEASURE", "MANAGE", "IAM", "SEF", "LOG", "DSS", "A.9", "A.12", "A.14",
        ] {
            assert!(ids.contains(&want), "{want} is not mapped");
        }
        for c in m["controls"].as_array().unwrap() {
            assert!(c["mechanism"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
            for e in c["evidence"].as_array().unwrap() {
                assert!(m["metrics"][e.as_str().unwrap()].is_string(), "{} names unknown metric {e}", c["id"]);
            }
        }
        for f in
            [Framework::Nist, Framework::Ssdf, Framework::Slsa, Framework::AiRmf, Framework::Ccm, Framework::Iso27001]
        {
            assert!(!report(&m, f, &Tally::default()).is_empty(), "{f:?} has no control");
        }
    }
}
