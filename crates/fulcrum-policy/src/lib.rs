//! Fulcrum's policy engine: Rego evaluated in-process (regorus, pinned), packaged as immutable
//! policy snapshots, with OPA-style decision records.
//!
//! - [`Snapshot`]: Rego modules + data in a canonical form; its SHA-256 is the `policy_digest`.
//! - [`Policy`]: a compiled snapshot. Compiling runs the snapshot's own `test_*` rules; a snapshot
//!   that does not parse, compile or pass them is refused with the engine's messages.
//! - [`Policy::compile_conformant`]: the same, then Fulcrum's own [`conformance`] tests — what a
//!   snapshot must still do (entry points defined, the way back open, four-eyes) to be installed.
//! - [`Policy::decide`]: evaluate `data.<package>.decision` to `{allow, deny}`; anything else —
//!   no policy, an evaluation error, an undefined result, a timeout — is a deny with a named reason.
//!
//! # Invariants
//! - Fail closed: only an explicit `allow: true` with no deny reasons allows.
//! - Deterministic: policies get time as input (`now_ns`); evaluation has a time bound.
//! - No I/O: snapshots arrive as bytes; storing and signing them is the server's job.

pub mod conformance;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub const SNAPSHOT_MEDIA_TYPE: &str = "application/vnd.fulcrum.policy-snapshot.v2+json";
/// Upper bound on one evaluation.
pub const EVAL_LIMIT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("snapshot is not valid: {0}")]
    Snapshot(String),
    #[error("policy does not compile: {0}")]
    Compile(String),
    #[error("policy test {0} failed")]
    TestFailed(String),
    #[error("the snapshot fails Fulcrum's conformance tests: {0}")]
    Conformance(String),
}

/// Rego modules (path → source) and data, immutable once built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    #[serde(rename = "mediaType")]
    media_type: String,
    modules: BTreeMap<String, String>,
    data: serde_json::Value,
}

/// The policy set Fulcrum ships: environment rule, promotion gates, role/attribute rules.
pub const DEFAULT_MODULES: [(&str, &str); 6] = [
    ("authz.rego", include_str!("../policies/authz.rego")),
    ("env.rego", include_str!("../policies/env.rego")),
    ("log.rego", include_str!("../policies/log.rego")),
    ("promotion.rego", include_str!("../policies/promotion.rego")),
    ("release.rego", include_str!("../policies/release.rego")),
    ("watch.rego", include_str!("../policies/watch.rego")),
];
pub const DEFAULT_DATA: &str = include_str!("../policies/data.json");

impl Snapshot {
    /// # Errors
    /// Data that is not a JSON object, or module paths that are not plain `*.rego` names.
    pub fn new(modules: BTreeMap<String, String>, data: serde_json::Value) -> Result<Self, PolicyError> {
        if !data.is_object() {
            return Err(PolicyError::Snapshot("data must be a JSON object".into()));
        }
        for path in modules.keys() {
            let ok = path.ends_with(".rego")
                && path.len() <= 128
                && path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
                && !path.contains("..");
            if !ok {
                return Err(PolicyError::Snapshot(format!("module path {path:?} must be a plain *.rego name")));
            }
        }
        Ok(Self { media_type: SNAPSHOT_MEDIA_TYPE.into(), modules, data })
    }

    pub fn default_set() -> Self {
        let modules = DEFAULT_MODULES.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect();
        Self::new(modules, serde_json::from_str(DEFAULT_DATA).expect("shipped data is JSON"))
            .expect("shipped snapshot is valid")
    }

    /// Canonical bytes: compact JSON, object keys sorted (serde_json's map is ordered).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshots serialise")
    }

    /// `sha256:<hex>` of the canonical bytes.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(self.canonical_bytes())))
    }

    /// Parse bytes that must be exactly canonical.
    ///
    /// # Errors
    /// Anything else.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let s: Snapshot = serde_json::from_slice(bytes).map_err(|e| PolicyError::Snapshot(e.to_string()))?;
        let s = Self::new(s.modules, s.data)?;
        if s.canonical_bytes() != bytes {
            return Err(PolicyError::Snapshot("bytes are not in canonical form".into()));
        }
        Ok(s)
    }

    pub fn modules(&self) -> &BTreeMap<String, String> {
        &self.modules
    }

    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub allow: bool,
    /// Named reasons, sorted. Non-empty whenever `allow` is false.
    pub deny: Vec<String>,
}

impl Outcome {
    fn denied(reason: &str) -> Self {
        Self { allow: false, deny: vec![reason.to_owned()] }
    }
}

/// A compiled snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    engine: regorus::Engine,
    digest: String,
}

/// `(package, rule)` of every `test_*` rule in a module.
fn tests_of(source: &str) -> Vec<(String, String)> {
    let package =
        source.lines().find_map(|l| l.trim().strip_prefix("package ")).map(|p| p.trim().to_owned()).unwrap_or_default();
    source
        .lines()
        .filter_map(|l| l.strip_prefix("test_"))
        .filter_map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next())
        .map(|name| (package.clone(), format!("test_{name}")))
        .collect()
}

impl Policy {
    /// Compile a snapshot and run its own tests.
    ///
    /// # Errors
    /// Parse or compile errors (with the engine's file:line messages) and failing tests.
    pub fn compile(snapshot: &Snapshot) -> Result<Self, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(true);
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVAL_LIMIT,
            check_interval: NonZeroU32::new(64).expect("non-zero"),
        });
        for (path, source) in &snapshot.modules {
            engine.add_policy(path.clone(), source.clone()).map_err(|e| PolicyError::Compile(e.to_string()))?;
        }
        let data = regorus::Value::from_json_str(&snapshot.data.to_string())
            .map_err(|e| PolicyError::Snapshot(e.to_string()))?;
        engine.add_data(data).map_err(|e| PolicyError::Compile(e.to_string()))?;
        let policy = Self { engine, digest: snapshot.digest() };
        for (path, source) in &snapshot.modules {
            for (package, test) in tests_of(source) {
                let mut e = policy.engine.clone();
                let passed =
                    e.eval_rule(format!("data.{package}.{test}")).is_ok_and(|v| v == regorus::Value::from(true));
                if !passed {
                    return Err(PolicyError::TestFailed(format!("{path}: {package}.{test}")));
                }
            }
        }
        Ok(policy)
    }

    /// Compile a snapshot, run its own tests, then Fulcrum's conformance tests
    /// ([`conformance`]): what the registry installs.
    ///
    /// # Errors
    /// As [`Policy::compile`], and `Conformance` naming every failed case.
    pub fn compile_conformant(snapshot: &Snapshot) -> Result<Self, PolicyError> {
        let policy = Self::compile(snapshot)?;
        conformance::check(&policy, snapshot.data())?;
        Ok(policy)
    }

    /// The snapshot digest this policy was compiled from (the decision log's revision).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Evaluate `data.<package>.decision` for `input`. Fails closed.
    pub fn decide(&self, package: &str, input: &serde_json::Value) -> Outcome {
        let mut e = self.engine.clone();
        let Ok(inp) = regorus::Value::from_json_str(&input.to_string()) else {
            return Outcome::denied("policy_input_invalid");
        };
        e.set_input(inp);
        let value = match e.eval_rule(format!("data.{package}.decision")) {
            Ok(v) => v,
            Err(err) if err.to_string().contains("time limit") || err.to_string().contains("exceeded") => {
                return Outcome::denied("policy_timeout");
            }
            // No such package or rule: there is no policy for this decision.
            Err(err) if err.to_string().contains("not a valid rule path") => {
                return Outcome::denied("policy_undefined");
            }
            Err(_) => return Outcome::denied("policy_error"),
        };
        if value == regorus::Value::Undefined {
            return Outcome::denied("policy_undefined");
        }
        let Ok(json) = value.to_json_str() else { return Outcome::denied("policy_error") };
        #[derive(Deserialize)]
        struct Raw {
            allow: Option<bool>,
            #[serde(default)]
            deny: Vec<String>,
        }
        match serde_json::from_str::<Raw>(&json) {
            Ok(Raw { allow: Some(true), deny }) if deny.is_empty() => Outcome { allow: true, deny: vec![] },
            Ok(Raw { mut deny, .. }) => {
                if deny.is_empty() {
                    deny.push("policy_not_allowed".into());
                }
                deny.sort();
                Outcome { allow: false, deny }
            }
            Err(_) => Outcome::denied("policy_result_malformed"),
        }
    }
}

impl Policy {
    /// Erase what the policy's masking rule (`data.fulcrum.system.log.mask`, JSON pointers into
    /// `{"input": …}`) names from a decision input; returns the erased pointers. No masking rule
    /// means nothing is erased; a failing one erases the whole input (fail closed).
    pub fn mask(&self, input: &mut serde_json::Value) -> Vec<String> {
        let mut e = self.engine.clone();
        let Ok(wrapped) = regorus::Value::from_json_str(&serde_json::json!({"input": input}).to_string()) else {
            *input = serde_json::Value::Null;
            return vec!["/input".into()];
        };
        e.set_input(wrapped);
        let pointers: Vec<String> = match e.eval_rule("data.fulcrum.system.log.mask".into()) {
            Ok(regorus::Value::Undefined) => vec![],
            Ok(v) => match v.to_json_str().ok().and_then(|j| serde_json::from_str::<Vec<String>>(&j).ok()) {
                Some(p) => p,
                None => {
                    *input = serde_json::Value::Null;
                    return vec!["/input".into()];
                }
            },
            Err(err) if err.to_string().contains("not a valid rule path") => vec![],
            Err(_) => {
                *input = serde_json::Value::Null;
                return vec!["/input".into()];
            }
        };
        let mut erased = Vec::new();
        for p in pointers {
            let Some(inner) = p.strip_prefix("/input") else { continue };
            let (parent, key) = match inner.rsplit_once('/') {
                Some((parent, key)) => (parent, key.replace("~1", "/").replace("~0", "~")),
                None => continue,
            };
            if let Some(obj) = input.pointer_mut(parent).and_then(serde_json::Value::as_object_mut)
                && obj.remove(&key).is_some()
            {
                erased.push(p);
            }
        }
        erased.sort();
        erased
    }
}

/// A decision in OPA's decision-log shape (EventV1), with Fulcrum's correlation ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub decision_id: String,
    /// Rule path without the `data` prefix, slash-separated (e.g. `fulcrum/promotion/decision`).
    pub path: String,
    pub input: serde_json::Value,
    pub result: Outcome,
    /// `{"fulcrum": {"revision": <policy digest>}}`.
    pub bundles: serde_json::Value,
    pub timestamp: String,
    pub labels: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chg_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inc_id: Option<String>,
}
