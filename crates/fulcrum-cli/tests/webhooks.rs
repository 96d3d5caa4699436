//! Webhook dead letters from the CLI: a receiver that refuses leaves the event dead-lettered
//! (`fulcrum events dead-letters`); re-delivery fails with one line while it still refuses, and
//! succeeds once it is fixed, the dead letter then marked as re-delivered by whom.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{ok, one_error_line, run_as, serve_with};
use serde_json::json;

/// A plain HTTP receiver: 500 until `accept` is set, then 200; counts what it accepted.
fn receiver(accept: Arc<AtomicBool>, accepted: Arc<AtomicUsize>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let status = if accept.load(Ordering::SeqCst) {
                accepted.fetch_add(1, Ordering::SeqCst);
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let _ = write!(conn, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    url
}

#[test]
fn dead_letters_are_listed_and_redelivered_from_the_cli() {
    let (accept, accepted) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let url = receiver(accept.clone(), accepted.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("siem.key"), "a-secret\n").unwrap();
    let hooks = json!({"webhooks": [{"name": "siem", "url": url, "secret_file": dir.path().join("siem.key"),
                                      "max_attempts": 1, "first_retry_ms": 10}]});
    std::fs::write(dir.path().join("hooks.json"), hooks.to_string()).unwrap();
    let hooks_file = dir.path().join("hooks.json").to_str().unwrap().to_owned();
    let s = serve_with(&["--webhooks", &hooks_file], dir);

    // One event: a version registered.
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "risk"]));
    let model = tempfile::tempdir().unwrap();
    std::fs::write(model.path().join("weights.bin"), "weights").unwrap();
    ok(&run_as(&s, "ci", &["version", "register", "fraud", "v1", "--dir", model.path().to_str().unwrap()]));
    let dead = {
        let start = std::time::Instant::now();
        loop {
            let v = ok(&run_as(&s, "admin", &["events", "dead-letters", "--output", "json"]));
            if !v.as_array().unwrap().is_empty() {
                break v;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "nothing was dead-lettered");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let id = dead[0]["id"].as_i64().unwrap().to_string();
    assert_eq!((dead[0]["sink"].as_str(), dead[0]["last_error"].as_str()), (Some("webhook:siem"), Some("HTTP 500")));
    let text = String::from_utf8(run_as(&s, "admin", &["events", "dead-letters"]).stdout).unwrap();
    assert!(text.contains("webhook:siem") && text.contains("1 attempts, last: HTTP 500"), "{text}");

    // Still refused: one line, the attempt counted; an auditor may not re-deliver.
    let err = one_error_line(&run_as(&s, "admin", &["events", "redeliver", &id]));
    assert!(err.contains("the receiver did not take it: HTTP 500"), "{err}");
    let err = one_error_line(&run_as(&s, "auditor", &["events", "redeliver", &id]));
    assert!(err.contains("redeliver_events"), "{err}");
    // Fixed: delivered once, then marked.
    accept.store(true, Ordering::SeqCst);
    ok(&run_as(&s, "admin", &["events", "redeliver", &id, "--output", "json"]));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let after = ok(&run_as(&s, "admin", &["events", "dead-letters", "--output", "json"]));
    assert_eq!((after[0]["attempts"].as_u64(), after[0]["resolved_by"].as_str()), (Some(3), Some("admin")));
    let err = one_error_line(&run_as(&s, "admin", &["events", "redeliver", &id]));
    assert!(err.contains("already"), "{err}");
}
