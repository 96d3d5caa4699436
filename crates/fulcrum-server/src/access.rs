//! Access decisions (SPEC §6, §7): every API call asks the policy in force — its role and
//! attribute rules, `data.fulcrum.authz.decision` — whether this principal may take this
//! action on this resource, and every answer is logged in OPA's decision-log shape.
//!
//! Two things keep this off the request's critical path without weakening it:
//! - **Memoised outcomes.** A decision is a pure function of (policy snapshot, input), so the
//!   outcome and the masked input are kept per input under the snapshot's digest and dropped
//!   the moment another snapshot is in force.
//! - **Write-behind, compact log.** Each worker thread appends its decisions to its own buffer
//!   (no cache line shared with the other threads on the hot path); one writer task takes every
//!   buffer every few milliseconds and stores it in one transaction. A record names its masked
//!   input and result by digest; each distinct pair is stored once (`decision_inputs`) and is
//!   queued before any decision that names it. A buffer past its bound makes its callers wait:
//!   no access is granted faster than it can be logged. [`Access::flush`] waits until everything
//!   buffered so far is stored (decision queries call it first, so they read their own writes).
//!
//! Gate decisions that allow a state change are not logged here: they are written in the same
//! transaction as the change (see `gates`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use foldhash::fast::RandomState as FastHash;

use fulcrum_core::Digest;
use fulcrum_core::identity::{Action, Principal};
use fulcrum_policy::Outcome;
use fulcrum_store::Store;
use fulcrum_store::access::{AccessBatch, AccessEntry, DecisionInput};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{Notify, oneshot};

use crate::policy::Current;

/// The rule every access decision evaluates.
pub const AUTHZ_PACKAGE: &str = "fulcrum.authz";
/// Decisions one thread may have waiting for the writer before its callers wait.
const SHARD_CAP: usize = 65_536;
/// How long the writer lets decisions gather before storing them (unless asked to flush).
const LINGER: Duration = Duration::from_millis(25);
const MEMO_CAP: usize = 16_384;
/// A thread's private copy of memo entries (so no reference count is shared across threads).
const LOCAL_MEMO_CAP: usize = 4096;

/// What an action is taken on. Collection-level calls name only the tenant; calls on a model
/// add its domain and labels, calls on a version its stage and (DLP) the purposes its model
/// card allows.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    pub tenant: &'a str,
    pub domain: Option<&'a str>,
    pub model: Option<&'a str>,
    /// The model's labels (`key:value`) and the version's model-card labels.
    pub labels: &'a [String],
    /// The purposes the version's model card allows it to be used for.
    pub purposes: &'a [String],
    pub stage: Option<&'a str>,
    /// The version's hold (`none`, `quarantined`, `revoked`), where a version is acted on.
    pub hold: Option<&'a str>,
    /// The environment acted for (resolve, alias moves).
    pub env: Option<&'a str>,
}

impl<'a> Resource<'a> {
    pub fn tenant(tenant: &'a str) -> Self {
        Self { tenant, domain: None, model: None, labels: &[], purposes: &[], stage: None, hold: None, env: None }
    }

    pub fn model(tenant: &'a str, domain: &'a str, model: &'a str) -> Self {
        Self { domain: Some(domain), model: Some(model), ..Self::tenant(tenant) }
    }
}

/// The attributes an access decision is taken on, owned, to confirm a memo hit.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    res_labels: Vec<String>,
    res_purposes: Vec<String>,
    res_stage: Option<String>,
    res_hold: Option<String>,
    res_env: Option<String>,
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
            res_labels: res.labels.to_vec(),
            res_purposes: res.purposes.to_vec(),
            res_stage: res.stage.map(str::to_owned),
            res_hold: res.hold.map(str::to_owned),
            res_env: res.env.map(str::to_owned),
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
            && self.res_labels == res.labels
            && self.res_purposes == res.purposes
            && self.res_stage.as_deref() == res.stage
            && self.res_hold.as_deref() == res.hold
            && self.res_env.as_deref() == res.env
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
            resource["labels"] = json!(self.res_labels);
            resource["allowed_purposes"] = json!(self.res_purposes);
        }
        if let Some(s) = &self.res_stage {
            resource["stage"] = json!(s);
        }
        if let Some(h) = &self.res_hold {
            resource["hold"] = json!(h);
        }
        if let Some(e) = &self.res_env {
            resource["env"] = json!(e);
        }
        json!({"principal": principal, "action": self.action.as_str(), "resource": resource})
    }
}

fn hash_of(state: &FastHash, who: &Principal, action: Action, res: Resource<'_>) -> u64 {
    let mut h = state.build_hasher();
    (&who.subject, who.role.as_str(), &who.tenant, &who.domain, who.env.map(|e| e.as_str()), &who.purpose).hash(&mut h);
    (action.as_str(), res.tenant, res.domain, res.model, res.labels, res.purposes, res.stage, res.hold, res.env)
        .hash(&mut h);
    h.finish()
}

/// One evaluation, kept for the snapshot it was made under.
#[derive(Debug, Clone)]
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

/// One decision waiting to be stored.
#[derive(Debug)]
struct Pending {
    memo: Arc<Memoised>,
    id: [u8; 16],
    at_ns: i64,
}

/// One thread's buffer of decisions.
#[derive(Debug, Default)]
struct Shard {
    buf: Mutex<Vec<Pending>>,
}

/// What the deciding threads and the writer share.
#[derive(Debug, Default)]
struct Log {
    shards: Mutex<Vec<Arc<Shard>>>,
    /// Inputs first used since the writer's last pass; always taken before the shards.
    inputs: Mutex<Vec<DecisionInput>>,
    flushes: Mutex<Vec<oneshot::Sender<()>>>,
    wake: Notify,
    closed: AtomicBool,
    writer_alive: AtomicBool,
}

/// A thread's view of one `Access`: its buffer and its private memo copies.
struct Local {
    access: u64,
    shard: Arc<Shard>,
    digest: Option<Digest>,
    memo: HashMap<u64, Arc<Memoised>>,
}

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
    static ID_COUNTER: Cell<u64> = const { Cell::new(0) };
}

static ACCESS_IDS: AtomicU64 = AtomicU64::new(1);

/// The access decider and its decision-log writer.
#[derive(Debug)]
pub struct Access {
    id: u64,
    memo: RwLock<Memo>,
    hasher: FastHash,
    ids: Ids,
    log: Arc<Log>,
    /// Records the writer could not store after retries (also logged as errors).
    pub dropped: Arc<AtomicU64>,
    /// Records stored.
    pub written: Arc<AtomicU64>,
}

impl Drop for Access {
    fn drop(&mut self) {
        self.log.closed.store(true, Ordering::Release);
        self.log.wake.notify_one();
    }
}

impl Access {
    /// Start the decision-log writer on the current runtime.
    pub fn start(store: Store) -> Self {
        let log = Arc::new(Log::default());
        log.writer_alive.store(true, Ordering::Release);
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(store, log.clone(), dropped.clone(), written.clone()));
        Self {
            id: ACCESS_IDS.fetch_add(1, Ordering::Relaxed),
            memo: RwLock::default(),
            hasher: FastHash::default(),
            ids: Ids::new(),
            log,
            dropped,
            written,
        }
    }

    /// Decide and log. Fails closed: whatever the policy does not allow is denied with its
    /// reasons (an absent or failing policy names why), and so is anything that cannot be logged.
    pub async fn check(
        &self,
        policy: &Current,
        now: OffsetDateTime,
        who: &Principal,
        action: Action,
        res: Resource<'_>,
    ) -> Outcome {
        if !self.log.writer_alive.load(Ordering::Acquire) {
            return unlogged();
        }
        let h = hash_of(&self.hasher, who, action, res);
        let pending = |memo: Arc<Memoised>| Pending {
            memo,
            id: self.ids.next(now),
            at_ns: i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        };
        // Fast path: this thread's own copy of the memo entry and its own buffer.
        let fast = self.with_local(|l| {
            if l.digest != Some(policy.digest) {
                return None;
            }
            let m = l.memo.get(&h).filter(|m| m.key.matches(who, action, res))?.clone();
            let mut buf = l.shard.buf.lock().expect("shard lock");
            if buf.len() >= SHARD_CAP {
                return None;
            }
            let outcome = m.outcome.clone();
            buf.push(pending(m));
            Some(outcome)
        });
        if let Some(outcome) = fast {
            return outcome;
        }
        // Slow path: the shared memo (or a fresh evaluation), then a private copy for next time.
        let shared = match self.lookup(policy, h, who, action, res) {
            Some(m) => m,
            None => self.evaluate(policy, h, who, action, res),
        };
        let mine = Arc::new((*shared).clone());
        loop {
            let pushed = self.with_local(|l| {
                if l.digest != Some(policy.digest) || l.memo.len() >= LOCAL_MEMO_CAP {
                    l.memo.clear();
                    l.digest = Some(policy.digest);
                }
                l.memo.insert(h, mine.clone());
                let mut buf = l.shard.buf.lock().expect("shard lock");
                if buf.len() >= SHARD_CAP {
                    return false;
                }
                buf.push(pending(mine.clone()));
                true
            });
            if pushed {
                return mine.outcome.clone();
            }
            if !self.log.writer_alive.load(Ordering::Acquire) {
                return unlogged();
            }
            // The writer is behind: wait for room rather than serve unlogged.
            self.log.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn with_local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        LOCAL.with(|cell| {
            let mut locals = cell.borrow_mut();
            let idx = match locals.iter().position(|l| l.access == self.id) {
                Some(i) => i,
                None => {
                    let shard = Arc::new(Shard::default());
                    self.log.shards.lock().expect("shards lock").push(shard.clone());
                    if locals.len() >= 8 {
                        locals.remove(0);
                    }
                    locals.push(Local { access: self.id, shard, digest: None, memo: HashMap::default() });
                    locals.len() - 1
                }
            };
            f(&mut locals[idx])
        })
    }

    fn lookup(
        &self,
        policy: &Current,
        h: u64,
        who: &Principal,
        action: Action,
        res: Resource<'_>,
    ) -> Option<Arc<Memoised>> {
        let memo = self.memo.read().expect("memo lock");
        if memo.digest != Some(policy.digest) {
            return None;
        }
        memo.map.get(&h).filter(|m| m.key.matches(who, action, res)).cloned()
    }

    /// Evaluate, queue the (masked) input for storage, then memoise. The input is queued before
    /// the memo entry is published, so every decision that names it is stored with or after it.
    fn evaluate(&self, policy: &Current, h: u64, who: &Principal, action: Action, res: Resource<'_>) -> Arc<Memoised> {
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
        self.log.inputs.lock().expect("inputs lock").push(stored);
        let m = Arc::new(Memoised { key, outcome, input_ref });
        let mut memo = self.memo.write().expect("memo lock");
        if memo.digest != Some(policy.digest) || memo.map.len() >= MEMO_CAP {
            memo.map.clear();
            memo.digest = Some(policy.digest);
        }
        memo.map.insert(h, m.clone());
        m
    }

    /// Wait until every decision made before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.log.flushes.lock().expect("flush lock").push(tx);
        self.log.wake.notify_one();
        let _ = rx.await;
    }
}

/// Decision ids: UUIDv7 naming the decision's own time (the store finds a decision by that
/// millisecond), whose 74 other bits come from a per-process random key and a per-thread
/// counter mixed by SplitMix64 — unique without asking the OS for randomness on every call.
#[derive(Debug)]
struct Ids {
    key: u64,
}

impl Ids {
    fn new() -> Self {
        Self { key: RandomState::new().hash_one(std::process::id()) ^ uuid::Uuid::new_v4().as_u64_pair().0 }
    }

    /// A per-thread counter (seeded at random once per thread) keeps ids unique without a
    /// shared atomic on the hot path.
    fn next(&self, now: OffsetDateTime) -> [u8; 16] {
        let n = ID_COUNTER.with(|c| {
            let mut v = c.get();
            if v == 0 {
                v = uuid::Uuid::new_v4().as_u64_pair().1 | 1;
            }
            c.set(v.wrapping_add(1));
            v
        });
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

/// Every `LINGER` (or at once when asked to flush): take the waiting flushes, then the new
/// inputs, then every thread's buffer — in that order, so each decision finds its input stored
/// with it or before, and each flush covers everything buffered before it was asked.
async fn writer(store: Store, log: Arc<Log>, dropped: Arc<AtomicU64>, written: Arc<AtomicU64>) {
    struct Alive(Arc<Log>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.writer_alive.store(false, Ordering::Release);
        }
    }
    let _alive = Alive(log.clone());
    loop {
        let closing = log.closed.load(Ordering::Acquire);
        if !closing && log.flushes.lock().expect("flush lock").is_empty() {
            let _ = tokio::time::timeout(LINGER, log.wake.notified()).await;
        }
        let waiting = std::mem::take(&mut *log.flushes.lock().expect("flush lock"));
        let inputs = std::mem::take(&mut *log.inputs.lock().expect("inputs lock"));
        let shards: Vec<Arc<Shard>> = log.shards.lock().expect("shards lock").clone();
        let mut decisions = Vec::new();
        for s in &shards {
            decisions.append(&mut s.buf.lock().expect("shard lock"));
        }
        if !decisions.is_empty() || !inputs.is_empty() {
            let batches = group(&decisions);
            store_batch(&store, &inputs, &batches, decisions.len() as u64, &dropped, &written).await;
        }
        drop(decisions);
        for w in waiting {
            let _ = w.send(());
        }
        if closing {
            return;
        }
    }
}

/// One batch row per tenant, each with the digests its decisions refer to.
fn group(decisions: &[Pending]) -> Vec<AccessBatch> {
    let mut by_tenant: HashMap<&str, (AccessBatch, HashMap<&str, u16>)> = HashMap::new();
    for p in decisions {
        let m = &p.memo;
        let (batch, index) = by_tenant.entry(m.key.tenant.as_str()).or_insert_with(|| {
            (AccessBatch { tenant: m.key.tenant.clone(), ..AccessBatch::default() }, HashMap::new())
        });
        let input = *index.entry(m.input_ref.as_str()).or_insert_with(|| {
            batch.inputs.push(m.input_ref.clone());
            u16::try_from(batch.inputs.len() - 1).expect("a batch has fewer than 65536 inputs")
        });
        batch.entries.push(AccessEntry { id: p.id, at_ns: p.at_ns, input, allow: m.outcome.allow });
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
