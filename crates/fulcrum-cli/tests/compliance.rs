//! The compliance report and the SIEM push, through the real binaries: a `fulcrum serve` that
//! pushes its decision logs to a real HTTP receiver (a Python `http.server` that un-gzips each
//! upload), the demo's flows plus refused attempts, then `fulcrum report compliance` as an auditor
//! in JSON, HTML and PDF (rendered by headless Chromium, its first page turned into PNG by
//! pdftoppm).

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{Server, ok, run_as, serve_with};
use serde_json::{Value, json};

/// A decision-log receiver: every POST body is gunzipped and appended as one line (the JSON
/// array) to `log`; answers 500 to the first `fail_first` uploads (so retries are exercised).
struct Receiver {
    child: std::process::Child,
    url: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receiver(log: &std::path::Path, fail_first: u32) -> Receiver {
    let script = r#"
import gzip, http.server, sys
log, fail = sys.argv[1], int(sys.argv[2])
seen = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen["n"] += 1
        if seen["n"] <= fail:
            self.send_response(500); self.end_headers(); return
        assert self.headers["Content-Encoding"] == "gzip"
        with open(log, "a") as f:
            f.write(gzip.decompress(body).decode() + "\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(log)
        .arg(fail_first.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the decision-log receiver)");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
    Receiver { child, url: format!("http://127.0.0.1:{}/logs", port.trim()) }
}

fn received(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .flat_map(|l| serde_json::from_str::<Vec<Value>>(l).unwrap())
        .collect()
}

/// A plain HTTP/1.1 GET (the test is synchronous).
fn get(url: &str) -> String {
    use std::io::{Read as _, Write as _};
    let hostport = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let path = &url[url.find(&hostport).unwrap() + hostport.len()..];
    let mut c = std::net::TcpStream::connect(&hostport).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn register(s: &Server, version: &str, dir: &std::path::Path) {
    let files = dir.join(version);
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("weights.bin"), format!("weights {version}")).unwrap();
    let card = dir.join(format!("card-{version}.json"));
    std::fs::write(&card, r#"{"owner": "risk", "intended_use": "scoring", "contact": "jane@bank.example"}"#).unwrap();
    ok(&run_as(
        s,
        "ci",
        &[
            "version",
            "register",
            "risk",
            version,
            "--dir",
            files.to_str().unwrap(),
            "--model-card",
            card.to_str().unwrap(),
            "--revalidate-by",
            "2099-01-01T00:00:00Z",
        ],
    ));
}

#[test]
fn the_compliance_report_counts_verified_evidence_and_the_siem_gets_every_decision_once_in_order() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("decisions.jsonl");
    let rx = receiver(&log, 2);
    let s = serve_with(&["--decision-log-url", rx.url.as_str()], tempfile::tempdir().unwrap());
    ok(&run_as(&s, "ci", &["model", "create", "risk", "--domain", "risk"]));
    // The demo's promotion flow, with the violations an auditor wants to see refused.
    register(&s, "v1", work.path());
    ok(&run_as(&s, "rm", &["version", "promote", "risk", "v1", "--to", "Staging"]));
    let refused = run_as(&s, "ci-approver", &["version", "approve", "risk", "v1"]);
    assert!(!refused.status.success(), "the publisher cannot approve its own version");
    ok(&run_as(&s, "ana", &["version", "approve", "risk", "v1"]));
    ok(&run_as(&s, "bo", &["version", "approve", "risk", "v1"]));
    let refused = run_as(&s, "rm", &["version", "promote", "risk", "v1", "--to", "Approved"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("chg_id_required"), "Approved needs a change id");
    ok(&run_as(&s, "rm", &["version", "promote", "risk", "v1", "--to", "Approved", "--chg-id", "CHG-1"]));
    ok(&run_as(&s, "rm", &["alias", "set", "risk", "production", "v1", "--chg-id", "CHG-2"]));
    register(&s, "v2", work.path());
    ok(&run_as(&s, "rm", &["version", "promote", "risk", "v2", "--to", "Staging"]));
    ok(&run_as(&s, "ana", &["version", "approve", "risk", "v2"]));
    ok(&run_as(&s, "bo", &["version", "approve", "risk", "v2"]));
    ok(&run_as(&s, "rm", &["version", "promote", "risk", "v2", "--to", "Approved", "--chg-id", "CHG-3"]));
    ok(&run_as(&s, "rm", &["alias", "set", "risk", "production", "v2", "--chg-id", "CHG-4"]));
    let refused = run_as(&s, "rm", &["alias", "set", "risk", "production", "v1", "--allow-downgrade"]);
    assert!(!refused.status.success(), "a downgrade without a change id is refused");
    // The revocation flow.
    ok(&run_as(&s, "bo", &["version", "revoke", "risk", "v2", "--reason", "critical CVE", "--inc-id", "INC-1"]));

    // The report covers the ledger up to the newest signed checkpoint (signed at most once a
    // second): let it cover the revocation.
    std::thread::sleep(Duration::from_millis(1100));
    // JSON: every control has a mechanism; the flows' evidence is counted; denials listed.
    let r = ok(&run_as(&s, "auditor", &["report", "compliance", "--framework", "all", "--format", "json"]));
    assert_eq!(r["verified"], true);
    assert!(r["checkpoint"]["size"].as_u64().unwrap() > 10);
    let controls = r["controls"].as_array().unwrap();
    assert!(controls.len() >= 23, "{}", controls.len());
    for c in controls {
        assert!(c["mechanism"].as_str().is_some_and(|m| !m.is_empty()), "{c}");
    }
    let control = |id: &str| controls.iter().find(|c| c["id"] == id).cloned().unwrap();
    let count = |c: &Value, m: &str| {
        c["evidence"].as_array().unwrap().iter().find(|e| e["metric"] == m).unwrap()["count"].as_u64().unwrap()
    };
    let cm3 = control("CM-3");
    assert_eq!(
        count(&cm3, "production_changes"),
        5,
        "two promotions to Approved, two alias moves, the rollback: {}",
        r["figures"]
    );
    assert_eq!(count(&cm3, "production_changes_with_chg_id"), 5);
    assert_eq!(count(&cm3, "approved_with_four_eyes"), 2);
    assert!(count(&cm3, "gate_denies") >= 1 && count(&cm3, "lifecycle_refusals") >= 1, "{cm3}");
    assert_eq!(cm3["status"], "evidenced", "{cm3}");
    for (id, metric) in [
        ("SA-10", "releases_published"),
        ("SI-7", "revocations"),
        ("MANAGE", "incidents_opened"),
        ("CM-5", "gate_allows"),
        ("AU-12", "ledger_records"),
    ] {
        assert!(count(&control(id), metric) > 0, "{id} {metric}");
    }
    let reasons: Vec<String> = r["enforced_denials"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["reasons"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()))
        .collect();
    for want in ["publisher_cannot_approve", "chg_id_required", "downgrade_needs_change"] {
        assert!(reasons.iter().any(|r| r == want), "{want} not among the enforced denials {reasons:?}");
    }
    // One framework at a time.
    let nist = ok(&run_as(&s, "auditor", &["report", "compliance", "--framework", "nist-800-53", "--format", "json"]));
    assert!(nist["controls"].as_array().unwrap().iter().all(|c| c["framework"] == "nist-800-53"));
    // A viewer may not read the ledger's decisions.
    assert!(!run_as(&s, "viewer", &["report", "compliance"]).status.success());

    // HTML for print, PDF from headless Chromium, its first page rendered to PNG.
    let html = work.path().join("report.html");
    ok(&run_as(&s, "auditor", &["report", "compliance", "--format", "html", "--out", html.to_str().unwrap()]));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("CM-3") && page.contains("@page") && page.contains("publisher_cannot_approve"));
    let pdf = work.path().join("report.pdf");
    ok(&run_as(&s, "auditor", &["report", "compliance", "--format", "pdf", "--out", pdf.to_str().unwrap()]));
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));
    let st = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "50", "-f", "1", "-l", "1"])
        .arg(&pdf)
        .arg(work.path().join("page"))
        .status()
        .expect("pdftoppm (poppler-utils, installed by scripts/test.sh)");
    assert!(st.success());
    let png = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".png"))
        .unwrap();
    let bytes = std::fs::read(png.path()).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
        "a rendered page, not a blank one ({} bytes)",
        bytes.len()
    );

    // The SIEM got every stored decision once, in order, masked (after two refused uploads).
    let want: Vec<String> =
        {
            let mut all = vec![];
            for path in [
                "fulcrum/release/decision",
                "fulcrum/promotion/decision",
                "fulcrum/env/decision",
                "fulcrum/lifecycle/decision",
            ] {
                let d = ok(&run_as(&s, "auditor", &["decisions", "--path", path, "--output", "json"]));
                all.extend(d["decisions"].as_array().unwrap().iter().map(|x| {
                    (x["timestamp"].as_str().unwrap().to_owned(), x["decision_id"].as_str().unwrap().to_owned())
                }));
            }
            all.sort();
            all.into_iter().map(|(_, id)| id).collect()
        };
    let start = Instant::now();
    let got = loop {
        let got = received(&log);
        if got.len() >= want.len() {
            break got;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the SIEM has {} of {} decisions", got.len(), want.len());
        std::thread::sleep(Duration::from_millis(200));
    };
    let ids: Vec<&str> = got.iter().map(|d| d["decision_id"].as_str().unwrap()).collect();
    let mut sorted_want: Vec<&str> = want.iter().map(String::as_str).collect();
    let mut sorted_got = ids.clone();
    sorted_want.sort_unstable();
    sorted_got.sort_unstable();
    assert_eq!(sorted_got, sorted_want, "every decision, once");
    let stamps: Vec<&str> = got.iter().map(|d| d["timestamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "in order: {stamps:?}");
    for d in &got {
        assert!(
            d["labels"]["id"].is_string() && d["bundles"]["fulcrum"]["revision"].is_string() && d["path"].is_string(),
            "OPA shape: {d}"
        );
        assert!(!d.to_string().contains("jane@bank.example"), "the card's contact is masked: {d}");
    }
    assert!(
        got.iter()
            .any(|d| d["erased"].as_array().is_some_and(|e| e.contains(&json!("/input/version/model_card/contact")))),
        "masking is recorded"
    );
    let metrics = get(&format!("{}/metrics", s.url));
    assert!(
        metrics.lines().any(|l| l.starts_with("fulcrum_decision_log_retries_total ") && !l.ends_with(" 0")),
        "retries counted"
    );
}
