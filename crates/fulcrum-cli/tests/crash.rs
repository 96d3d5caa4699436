//! Crash test: kill -9 the registry in the middle of a burst of promotions. After restart, every
//! committed change has exactly one event, nothing uncommitted has one, and the event log has no
//! gaps.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

const N: usize = 60;

fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--tokens-file")
        .arg(dir.join("tokens.json"))
        .env("FULCRUM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fulcrum serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("fulcrum: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

fn tokens() -> Value {
    json!({"tokens": [
        {"token": "t-ci", "subject": "ci", "role": "publisher", "tenant": "acme"},
        {"token": "t-rm", "subject": "rm", "role": "release-manager", "tenant": "acme"},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_burst_loses_and_invents_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens.json"), serde_json::to_vec(&tokens()).unwrap()).unwrap();
    let (mut child, url) = start(dir.path());
    let http = reqwest::Client::new();
    let post = |who: &str, path: String, body: Value| {
        http.post(format!("{url}{path}")).bearer_auth(format!("t-{who}")).json(&body).send()
    };

    assert_eq!(post("ci", "/v1/models".into(), json!({"name": "m", "domain": "d"})).await.unwrap().status(), 201);
    for i in 0..N {
        let bytes = format!("weights {i}").into_bytes();
        let r = http.post(format!("{url}/v1/blobs")).bearer_auth("t-ci").body(bytes.clone()).send().await.unwrap();
        let d = r.json::<Value>().await.unwrap()["digest"].as_str().unwrap().to_owned();
        let r = post(
            "ci",
            "/v1/models/m/versions".into(),
            json!({"version": format!("v{i}"), "files": [{"path": "w", "size": bytes.len(), "digest": d}]}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }

    // The burst: every version promoted to Staging, 8 at a time; kill -9 after a third succeed.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for lane in 0..8 {
        let (http, url, acked, done) = (http.clone(), url.clone(), acked.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for i in (lane..N).step_by(8) {
                let r = http
                    .post(format!("{url}/v1/models/m/versions/v{i}/promotions"))
                    .bearer_auth("t-rm")
                    .json(&json!({"to": "Staging", "chg_id": format!("CHG-{i}")}))
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status() == 200 => {
                        acked.lock().unwrap().push(i);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(resp) => panic!("promotion of v{i} answered {}", resp.status()),
                    Err(_) => return, // the server died under us
                }
            }
        }));
    }
    while done.load(Ordering::SeqCst) < N / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= N / 3 && acked.len() < N, "the kill landed mid-burst ({} acked)", acked.len());

    let (mut child, url) = start(dir.path());
    let get = |path: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}{path}")).bearer_auth("t-rm").send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let events = get("/v1/events?after=0&limit=1000".into()).await["events"].as_array().unwrap().clone();
    let seqs: Vec<i64> = events.iter().map(|e| e["sequence"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "the event log has no gaps");
    let mut staged = 0;
    for i in 0..N {
        let v = get(format!("/v1/models/m/versions/v{i}")).await;
        let promotions = events
            .iter()
            .filter(|e| e["data"]["event"] == "promotion" && e["data"]["version"] == format!("v{i}"))
            .count();
        let published = events
            .iter()
            .filter(|e| e["data"]["event"] == "release_published" && e["data"]["version"] == format!("v{i}"))
            .count();
        assert_eq!(published, 1, "v{i}");
        match v["stage"].as_str().unwrap() {
            "Staging" => {
                assert_eq!(promotions, 1, "v{i} was promoted: exactly one event");
                staged += 1;
            }
            "Candidate" => {
                assert_eq!(promotions, 0, "v{i} was not promoted: no event");
                assert!(!acked.contains(&i), "v{i} was acknowledged but its promotion is lost");
            }
            other => panic!("v{i} in {other}"),
        }
    }
    assert!(staged >= acked.len(), "every acknowledged promotion survived ({staged} staged, {} acked)", acked.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
