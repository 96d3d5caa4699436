//! The `fulcrum` binary against a real `fulcrum serve`: running commands, starting servers.

#![allow(dead_code)]

pub mod serving;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use serde_json::json;

pub fn fulcrum(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fulcrum"));
    c.args(args).env_remove("FULCRUM_TOKEN").env_remove("FULCRUM_URL").env("FULCRUM_LOG", "error");
    // Never the credentials of whoever runs the tests.
    c.env("FULCRUM_CREDENTIALS", "/nonexistent/fulcrum-test-credentials.json");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub fn one_error_line(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure; stdout: {}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "exactly one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// `fulcrum ARGS` against `s` as the test identity `who` (token `t-<who>`).
pub fn run_as(s: &Server, who: &str, args: &[&str]) -> Output {
    let token = format!("t-{who}");
    fulcrum(args, &[("FULCRUM_URL", s.url.as_str()), ("FULCRUM_TOKEN", token.as_str())])
}

/// A command that succeeded, and its `--output json` (or null).
pub fn ok(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

pub struct Server {
    pub child: std::process::Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve() -> Server {
    serve_with(&[], tempfile::tempdir().unwrap())
}

pub fn serve_with(extra: &[&str], dir: tempfile::TempDir) -> Server {
    serve_listening("127.0.0.1:0", extra, dir).unwrap_or_else(|| panic!("fulcrum serve did not start"))
}

/// `fulcrum serve` on `listen`; `None` when it did not start (e.g. the port was taken meanwhile:
/// pick another and try again).
pub fn serve_listening(listen: &str, extra: &[&str], dir: tempfile::TempDir) -> Option<Server> {
    let tokens = json!({"tokens": [
        {"token": "t-ci", "subject": "ci", "role": "publisher", "tenant": "acme"},
        {"token": "t-rm", "subject": "rm", "role": "release-manager", "tenant": "acme"},
        {"token": "t-ana", "subject": "ana", "role": "approver", "tenant": "acme"},
        {"token": "t-bo", "subject": "bo", "role": "security-officer", "tenant": "acme"},
        {"token": "t-agent", "subject": "agent", "role": "serving", "tenant": "acme", "env": "prod"},
        {"token": "t-keys", "subject": "keys", "role": "key-admin", "tenant": "acme"},
        {"token": "t-auditor", "subject": "auditor", "role": "auditor", "tenant": "acme"},
        {"token": "t-admin", "subject": "admin", "role": "admin", "tenant": "acme"},
        {"token": "t-ci-approver", "subject": "ci", "role": "approver", "tenant": "acme"},
        {"token": "t-viewer", "subject": "viewer", "role": "viewer", "tenant": "acme"},
        {"token": "t-policy", "subject": "policy", "role": "policy-admin", "tenant": "acme"},
        {"token": "t-globex", "subject": "eve", "role": "admin", "tenant": "globex"},
    ]});
    std::fs::write(dir.path().join("tokens.json"), serde_json::to_vec(&tokens).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tokens-file")
        .arg(dir.path().join("tokens.json"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let Some(url) = line.trim().strip_prefix("fulcrum: listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    let url = url.to_owned();
    Some(Server { child, url, dir })
}
