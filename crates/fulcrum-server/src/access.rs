//! Access decisions (SPEC §6, §7): every API call asks the policy in force — its role and
//! attribute rules, `data.fulcrum.authz.decision` — whether this principal may take this
//! action on this resource, and every answer is logged in OPA's decision-log shape.
//!
//! Two things keep this off the request's critical path without weakening it:
//! - **Memoised outcomes.** A decision is a pure function of (policy snapshot, input), so the
//!   outcome and the masked input are kept per input under the snapshot's digest and dropped
//!   the moment another snapshot is in force.
//! - **Write-behind log.** Records go through a bounded queue to one writer task that stores
//!   them in batches (one transaction each). A full queue makes callers wait: no access is
//!   granted faster than it can be logged. [`Access::flush`] waits until everything queued so
//!   far is stored (decision queries call it first, so they read their own writes).
//!
//! Gate decisions that allow a state change are not logged here: they are written in the same
//! transaction as the change (see `gates`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fulcrum_core::Digest;
use fulcrum_core::identity::{Action, Principal};
use fulcrum_policy::{DecisionRecord, Outcome};
use fulcrum_store::{DecisionRow, Store};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, oneshot};

use crate::policy::Current;

/// The rule every access decision evaluates.
pub const AUTHZ_PACKAGE: &str = "fulcrum.authz";
const QUEUE: usize = 8192;
const BATCH: usize = 1024;
const MEMO_CAP: usize = 16_384;

/// What an action is taken on. Collection-level calls name only the tenant.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    pub tenant: &'a str,
    pub domain: Option<&'a str>,
    pub model: Option<&'a str>,
}

impl<'a> Resource<'a> {
    pub fn tenant(tenant: &'a str) -> Self {
        Self { tenant, domain: None, model: None }
    }
}

/// One evaluation, kept for the snapshot it was made under.
#[derive(Debug)]
struct Memoised {
    outcome: Outcome,
    /// The input as logged: the policy's masking rule applied.
    logged_input: Value,
    erased: Vec<String>,
}

#[derive(Debug, Default)]
struct Memo {
    digest: Option<Digest>,
    map: HashMap<String, Arc<Memoised>>,
}

enum LogMsg {
    Row(Box<DecisionRow>),
    Flush(oneshot::Sender<()>),
}

/// The access decider and its decision-log writer.
#[derive(Debug)]
pub struct Access {
    memo: RwLock<Memo>,
    tx: mpsc::Sender<LogMsg>,
    /// Records the writer could not store after retries (also logged as errors).
    pub dropped: Arc<AtomicU64>,
    /// Records stored.
    pub written: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogMsg::Row(r) => write!(f, "Row({})", r.decision_id),
            LogMsg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Access {
    /// Start the decision-log writer on the current runtime.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(store, rx, dropped.clone(), written.clone()));
        Self { memo: RwLock::default(), tx, dropped, written }
    }

    /// Decide and log. Fails closed: whatever the policy does not allow is denied with its
    /// reasons (an absent or failing policy names why).
    pub async fn check(
        &self,
        policy: &Current,
        now: OffsetDateTime,
        who: &Principal,
        action: Action,
        res: Resource<'_>,
    ) -> Outcome {
        // Absent attributes are left out, not null: Rego's `not x` holds only for undefined.
        let mut principal = json!({"subject": who.subject, "role": who.role.as_str(), "tenant": who.tenant,
                                   "domain": who.domain});
        if let Some(e) = who.env {
            principal["env"] = json!(e.as_str());
        }
        if let Some(p) = &who.purpose {
            principal["purpose"] = json!(p);
        }
        let mut resource = json!({"tenant": res.tenant});
        if let Some(d) = res.domain {
            resource["domain"] = json!(d);
        }
        if let Some(m) = res.model {
            resource["model"] = json!(m);
        }
        let input = json!({"principal": principal, "action": action.as_str(), "resource": resource});
        let m = self.evaluate(policy, input);
        let record = DecisionRecord {
            decision_id: uuid::Uuid::now_v7().to_string(),
            path: "fulcrum/authz/decision".into(),
            input: m.logged_input.clone(),
            result: m.outcome.clone(),
            bundles: json!({"fulcrum": {"revision": policy.digest.to_string()}}),
            timestamp: now.format(&Rfc3339).expect("formats"),
            labels: json!({"id": "fulcrum-registry", "version": env!("CARGO_PKG_VERSION")}),
            erased: m.erased.clone(),
            masked: vec![],
            chg_id: None,
            inc_id: None,
        };
        let row = DecisionRow {
            decision_id: record.decision_id.clone(),
            tenant: who.tenant.clone(),
            model: res.model.map(str::to_owned),
            version: None,
            path: record.path.clone(),
            allow: m.outcome.allow,
            revision: policy.digest.to_string(),
            chg_id: None,
            inc_id: None,
            record: serde_json::to_string(&record).expect("records serialise"),
        };
        if self.tx.send(LogMsg::Row(Box::new(row))).await.is_err() {
            // The writer is gone (shutting down): an unlogged access is not granted.
            return Outcome { allow: false, deny: vec!["decision_log_unavailable".into()] };
        }
        m.outcome.clone()
    }

    fn evaluate(&self, policy: &Current, input: Value) -> Arc<Memoised> {
        let key = input.to_string();
        {
            let memo = self.memo.read().expect("memo lock");
            if memo.digest == Some(policy.digest)
                && let Some(m) = memo.map.get(&key)
            {
                return m.clone();
            }
        }
        let outcome = policy.policy.decide(AUTHZ_PACKAGE, &input);
        let mut logged_input = input;
        let erased = policy.policy.mask(&mut logged_input);
        let m = Arc::new(Memoised { outcome, logged_input, erased });
        let mut memo = self.memo.write().expect("memo lock");
        if memo.digest != Some(policy.digest) || memo.map.len() >= MEMO_CAP {
            memo.map.clear();
            memo.digest = Some(policy.digest);
        }
        memo.map.insert(key, m.clone());
        m
    }

    /// Wait until every record queued before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(LogMsg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<LogMsg>, dropped: Arc<AtomicU64>, written: Arc<AtomicU64>) {
    let mut batch: Vec<DecisionRow> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                LogMsg::Row(r) => batch.push(*r),
                LogMsg::Flush(w) => waiting.push(w),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            store_batch(&store, &batch, &dropped, &written).await;
            batch.clear();
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

async fn store_batch(store: &Store, batch: &[DecisionRow], dropped: &AtomicU64, written: &AtomicU64) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=4 {
        match store.record_decisions(batch).await {
            Ok(()) => {
                written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < 4 => {
                tracing::warn!(error = %e, attempt, "storing access decisions failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "access decisions could not be stored");
                dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }
}
