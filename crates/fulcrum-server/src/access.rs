//! Access decisions (SPEC §6, §7): every API call asks the policy in force — its role and
//! attribute rules, `data.fulcrum.authz.decision` — whether this principal may take this
//! action on this resource, and every answer is logged in OPA's decision-log shape.
//!
//! Two things keep this off the request's critical path without weakening it:
//! - **Memoised outcomes.** A decision is a pure function of (policy snapshot, input), so the
//!   outcome and the masked input are kept per input under the snapshot's digest and dropped
//!   the moment another snapshot is in force.
//! - **Write-behind, compact log.** Records go through a bounded queue to one writer task that
//!   stores them in batches (one transaction each). A record names its masked input and result
//!   by digest; each distinct pair is stored once (`decision_inputs`), and the OPA-shaped record
//!   is assembled when read. A full queue makes callers wait: no access is
//!   granted faster than it can be logged. [`Access::flush`] waits until everything queued so
//!   far is stored (decision queries call it first, so they read their own writes).
//!
//! Gate decisions that allow a state change are not logged here: they are written in the same
//! transaction as the change (see `gates`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use foldhash::fast::RandomState as FastHash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fulcrum_core::Digest;
use fulcrum_core::identity::{Action, Principal};
use fulcrum_policy::Outcome;
use fulcrum_store::Store;
use fulcrum_store::access::{AccessBatch, AccessEntry, DecisionInput};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::policy::Current;

/// The rule every access decision evaluates.
pub const AUTHZ_PACKAGE: &str = "fulcrum.authz";
const QUEUE: usize = 65_536;
const BATCH: usize = 8192;
const LINGER: Duration = Duration::from_millis(25);
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

/// The attributes an access decision is taken on, owned, to confirm a memo hit.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    subject: String,
    role: &'static str,
    tenant: String,
    domain: String,
    env: Option<&'static str>,
    purpose: Option<String>,
    action: Action,
    res_tenant: String,
    res_domain: Option<String>,
    res_model: Option<String>,
}

impl Key {
    fn of(who: &Principal, action: Action, res: Resource<'_>) -> Self {
        Self {
            subject: who.subject.clone(),
            role: who.role.as_str(),
            tenant: who.tenant.clone(),
            domain: who.domain.clone(),
            env: who.env.map(|e| e.as_str()),
            purpose: who.purpose.clone(),
            action,
            res_tenant: res.tenant.to_owned(),
            res_domain: res.domain.map(str::to_owned),
            res_model: res.model.map(str::to_owned),
        }
    }

    fn matches(&self, who: &Principal, action: Action, res: Resource<'_>) -> bool {
        self.action == action
            && self.subject == who.subject
            && self.role == who.role.as_str()
            && self.tenant == who.tenant
            && self.domain == who.domain
            && self.env == who.env.map(|e| e.as_str())
            && self.purpose == who.purpose
            && self.res_tenant == res.tenant
            && self.res_domain.as_deref() == res.domain
            && self.res_model.as_deref() == res.model
    }

    /// The policy input. Absent attributes are left out, not null: Rego's `not x` holds only
    /// for undefined values.
    fn input(&self) -> Value {
        let mut principal =
            json!({"subject": self.subject, "role": self.role, "tenant": self.tenant, "domain": self.domain});
        if let Some(e) = self.env {
            principal["env"] = json!(e);
        }
        if let Some(p) = &self.purpose {
            principal["purpose"] = json!(p);
        }
        let mut resource = json!({"tenant": self.res_tenant});
        if let Some(d) = &self.res_domain {
            resource["domain"] = json!(d);
        }
        if let Some(m) = &self.res_model {
            resource["model"] = json!(m);
        }
        json!({"principal": principal, "action": self.action.as_str(), "resource": resource})
    }
}

fn hash_of(state: &FastHash, who: &Principal, action: Action, res: Resource<'_>) -> u64 {
    let mut h = state.build_hasher();
    (&who.subject, who.role.as_str(), &who.tenant, &who.domain, who.env.map(|e| e.as_str()), &who.purpose).hash(&mut h);
    (action.as_str(), res.tenant, res.domain, res.model).hash(&mut h);
    h.finish()
}

/// One evaluation, kept for the snapshot it was made under.
#[derive(Debug)]
struct Memoised {
    key: Key,
    outcome: Outcome,
    /// Digest of the stored (masked) input and result.
    input_ref: String,
}

#[derive(Debug, Default)]
struct Memo {
    digest: Option<Digest>,
    map: HashMap<u64, Arc<Memoised>>,
}

enum LogMsg {
    Input(Box<DecisionInput>),
    Decision { memo: Arc<Memoised>, id: [u8; 16], at_ns: i64 },
    Flush(oneshot::Sender<()>),
}

/// The access decider and its decision-log writer.
#[derive(Debug)]
pub struct Access {
    memo: RwLock<Memo>,
    hasher: FastHash,
    ids: Ids,
    tx: mpsc::Sender<LogMsg>,
    /// Records the writer could not store after retries (also logged as errors).
    pub dropped: Arc<AtomicU64>,
    /// Records stored.
    pub written: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogMsg::Input(i) => write!(f, "Input({})", i.digest),
            LogMsg::Decision { id, .. } => write!(f, "Decision({})", uuid::Uuid::from_bytes(*id)),
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
        Self { memo: RwLock::default(), hasher: FastHash::default(), ids: Ids::new(), tx, dropped, written }
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
        let m = match self.lookup(policy, who, action, res) {
            Some(hit) => hit,
            None => match self.evaluate(policy, who, action, res).await {
                Some(fresh) => fresh,
                None => return unlogged(),
            },
        };
        let at_ns = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        let msg = LogMsg::Decision { memo: m.clone(), id: self.ids.next(now), at_ns };
        // Fast path without a future; a full queue makes the caller wait for room.
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                if self.tx.send(msg).await.is_err() {
                    return unlogged();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return unlogged(),
        }
        m.outcome.clone()
    }

    fn lookup(&self, policy: &Current, who: &Principal, action: Action, res: Resource<'_>) -> Option<Arc<Memoised>> {
        let h = hash_of(&self.hasher, who, action, res);
        let memo = self.memo.read().expect("memo lock");
        if memo.digest != Some(policy.digest) {
            return None;
        }
        memo.map.get(&h).filter(|m| m.key.matches(who, action, res)).cloned()
    }

    /// Evaluate, store the (masked) input once, then memoise. The input is queued before the
    /// memo entry is published, so every row that names it is queued after it.
    async fn evaluate(
        &self,
        policy: &Current,
        who: &Principal,
        action: Action,
        res: Resource<'_>,
    ) -> Option<Arc<Memoised>> {
        let key = Key::of(who, action, res);
        let input = key.input();
        let outcome = policy.policy.decide(AUTHZ_PACKAGE, &input);
        let mut logged = input;
        let erased = policy.policy.mask(&mut logged);
        let logged = logged.to_string();
        let result = serde_json::to_string(&outcome).expect("outcomes serialise");
        let revision = policy.digest.to_string();
        let input_ref = Digest::of(format!("{logged}\n{result}\n{revision}").as_bytes()).to_string();
        let stored = DecisionInput {
            digest: input_ref.clone(),
            revision,
            model: res.model.map(str::to_owned),
            input: logged,
            result,
            extra:
                json!({"erased": erased, "labels": {"id": "fulcrum-registry", "version": env!("CARGO_PKG_VERSION")}})
                    .to_string(),
        };
        self.tx.send(LogMsg::Input(Box::new(stored))).await.ok()?;
        let m = Arc::new(Memoised { key, outcome, input_ref });
        let mut memo = self.memo.write().expect("memo lock");
        if memo.digest != Some(policy.digest) || memo.map.len() >= MEMO_CAP {
            memo.map.clear();
            memo.digest = Some(policy.digest);
        }
        memo.map.insert(hash_of(&self.hasher, who, action, res), m.clone());
        Some(m)
    }

    /// Wait until every record queued before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(LogMsg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Decision ids: UUIDv7 naming the decision's own time (the store finds a decision by that
/// millisecond), whose 74 other bits come from a per-process random key and a counter mixed by
/// SplitMix64 — unique without asking the OS for randomness on every call.
#[derive(Debug)]
struct Ids {
    key: u64,
    counter: AtomicU64,
}

impl Ids {
    fn new() -> Self {
        let key = RandomState::new().hash_one(std::process::id()) ^ uuid::Uuid::new_v4().as_u64_pair().0;
        Self { key, counter: AtomicU64::new(uuid::Uuid::new_v4().as_u64_pair().1) }
    }

    fn next(&self, now: OffsetDateTime) -> [u8; 16] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (splitmix(n ^ self.key), splitmix(n.wrapping_add(self.key)));
        let mut rand = [0u8; 10];
        rand[..8].copy_from_slice(&a.to_le_bytes());
        rand[8..].copy_from_slice(&b.to_le_bytes()[..2]);
        let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        *uuid::Builder::from_unix_timestamp_millis(millis, &rand).into_uuid().as_bytes()
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The writer is gone (shutting down): an unlogged access is not granted.
fn unlogged() -> Outcome {
    Outcome { allow: false, deny: vec!["decision_log_unavailable".into()] }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<LogMsg>, dropped: Arc<AtomicU64>, written: Arc<AtomicU64>) {
    let mut inputs: Vec<DecisionInput> = Vec::new();
    let mut decisions: Vec<(Arc<Memoised>, [u8; 16], i64)> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        // Linger briefly unless someone waits for a flush: fewer, larger transactions.
        if !matches!(first, LogMsg::Flush(_)) {
            tokio::time::sleep(LINGER).await;
        }
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                LogMsg::Input(i) => inputs.push(*i),
                LogMsg::Decision { memo, id, at_ns } => decisions.push((memo, id, at_ns)),
                LogMsg::Flush(w) => waiting.push(w),
            }
            if decisions.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !decisions.is_empty() || !inputs.is_empty() {
            let batches = group(&decisions);
            store_batch(&store, &inputs, &batches, decisions.len() as u64, &dropped, &written).await;
            inputs.clear();
            decisions.clear();
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

/// One batch row per tenant, each with the digests its decisions refer to.
fn group(decisions: &[(Arc<Memoised>, [u8; 16], i64)]) -> Vec<AccessBatch> {
    let mut by_tenant: HashMap<&str, (AccessBatch, HashMap<&str, u16>)> = HashMap::new();
    for (m, id, at_ns) in decisions {
        let (batch, index) = by_tenant.entry(m.key.tenant.as_str()).or_insert_with(|| {
            (AccessBatch { tenant: m.key.tenant.clone(), ..AccessBatch::default() }, HashMap::new())
        });
        let input = *index.entry(m.input_ref.as_str()).or_insert_with(|| {
            batch.inputs.push(m.input_ref.clone());
            u16::try_from(batch.inputs.len() - 1).expect("a batch has fewer than 65536 inputs")
        });
        batch.entries.push(AccessEntry { id: *id, at_ns: *at_ns, input, allow: m.outcome.allow });
    }
    by_tenant.into_values().map(|(b, _)| b).collect()
}

async fn store_batch(
    store: &Store,
    inputs: &[DecisionInput],
    batches: &[AccessBatch],
    n: u64,
    dropped: &AtomicU64,
    written: &AtomicU64,
) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=4 {
        match store.record_access(inputs, batches).await {
            Ok(()) => {
                written.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < 4 => {
                tracing::warn!(error = %e, attempt, "storing access decisions failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                tracing::error!(error = %e, records = n, "access decisions could not be stored");
                dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}
