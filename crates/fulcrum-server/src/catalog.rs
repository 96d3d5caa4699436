//! The resolve cache: an in-memory read model of every model, version and alias, and the signed
//! resolve documents built from it (SPEC §4: resolve neither signs nor reads the database per
//! request).
//!
//! The read model is loaded once at start-up and then kept current by applying the effects of
//! every committed change (under the server's write gate, so effects are applied in commit
//! order), and by reloading the models other replicas changed (`follow.rs`). Alias documents are signed eagerly whenever their model changes and re-signed by a
//! background task before they reach half their lifetime; documents for pinned references
//! (`name@version`, `name@sha256:…`) are signed on first use and memoised the same way.
//!
//! # Invariants
//! - A document in the cache always reflects the model's current generation: every change bumps
//!   the generation and drops the model's documents before new ones are signed.
//! - A served document has at least half of its lifetime left.

use std::sync::{Arc, RwLock};

use crate::keyring::KeyRing;
use crate::policy::{Current, Policies};

/// Maps on the resolve hot path: foldhash (seeded per process) rather than SipHash. Keys are
/// names registered by authenticated publishers, not attacker-chosen request bytes.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use axum::body::Bytes;
use axum::http::HeaderValue;
use fulcrum_core::lifecycle::{Effect, Env, Hold, Stage, env_allows};
use fulcrum_core::reference::Selector;
use fulcrum_core::resolve::{Decision, ResolveDocument, Uris};
use fulcrum_core::{Digest, Reference};
use fulcrum_store::{AliasRecord, ModelRecord, VersionBrief};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// What access rules read of the version a document names: its model's domain, its labels
/// (model's and card's) and the purposes its card allows (DLP).
#[derive(Debug, Clone, Default)]
pub struct DlpAttrs {
    pub domain: Arc<str>,
    pub labels: Arc<[String]>,
    pub purposes: Arc<[String]>,
}

#[derive(Debug, Clone)]
struct VersionEntry {
    dlp: DlpAttrs,
    label: Arc<str>,
    seq: u64,
    artifact_digest: Digest,
    record_digest: Digest,
    stage: Stage,
    hold: Hold,
    ledger_index: Option<u64>,
}

#[derive(Debug, Clone)]
struct AliasEntry {
    target: Option<i64>,
    position: u64,
    ledger_index: Option<u64>,
    chg_id: Option<String>,
    inc_id: Option<String>,
    cause: fulcrum_core::lifecycle::AliasCause,
    live: bool,
}

/// A signed resolve answer, ready to send.
#[derive(Debug)]
pub struct SignedDoc {
    pub body: Bytes,
    pub signature: HeaderValue,
    pub kid: HeaderValue,
    pub etag: HeaderValue,
    issued_at: OffsetDateTime,
    pub decision: Decision,
    /// The DLP attributes of the version the document names (checked on every resolve).
    pub dlp: DlpAttrs,
}

#[derive(Debug)]
struct ModelEntry {
    id: i64,
    name: Arc<str>,
    tenant: Arc<str>,
    domain: Arc<str>,
    labels: std::collections::BTreeMap<String, String>,
    generation: u64,
    versions: HashMap<i64, VersionEntry>,
    by_label: HashMap<Arc<str>, i64>,
    by_digest: HashMap<Digest, i64>,
    aliases: HashMap<String, AliasEntry>,
    /// selector text → one document per env (indexed by `env_index`).
    docs: HashMap<String, [Option<Arc<SignedDoc>>; 3]>,
    /// Its rows disagree with the ledger's projection (the start-up check): every document is a
    /// deny saying so, and governance on it is refused, until an operator repairs the rows.
    divergent: Option<Arc<str>>,
}

fn env_index(env: Env) -> usize {
    match env {
        Env::Dev => 0,
        Env::Staging => 1,
        Env::Prod => 2,
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// tenant → model name → entry
    models: HashMap<Arc<str>, HashMap<Arc<str>, ModelEntry>>,
    /// model id → (tenant, name)
    ids: HashMap<i64, (Arc<str>, Arc<str>)>,
}

impl Inner {
    fn by_id(&mut self, id: i64) -> Option<&mut ModelEntry> {
        let (t, n) = self.ids.get(&id)?.clone();
        self.models.get_mut(&t)?.get_mut(&n)
    }
}

/// Why a resolve could not produce a document at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    Model,
    Version,
    AliasEmpty,
    /// The signing backend did not produce a signature (a KMS or HSM outage).
    Signer,
}

/// See [`Catalog::glance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glance {
    pub versions: usize,
    /// The stages of its versions without a hold.
    pub live_stages: Vec<Stage>,
    /// The newest version: label, stage, hold.
    pub newest: Option<(String, Stage, Hold)>,
}

#[derive(Debug)]
pub struct Catalog {
    inner: RwLock<Inner>,
    /// The ledger gives no governance state at all: every model is divergent, new ones too.
    broken: RwLock<Option<Arc<str>>>,
    keys: Arc<KeyRing>,
    /// The policy in force: its digest goes into every document and its environment rule
    /// (`fulcrum.env`) decides each document's permit/deny.
    policies: Arc<Policies>,
    ttl: Duration,
}

impl Catalog {
    pub fn new(keys: Arc<KeyRing>, policies: Arc<Policies>, ttl: Duration) -> Self {
        Self { inner: RwLock::default(), broken: RwLock::default(), keys, policies, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Start-up loading, in three steps (models, then versions as they stream from the
    /// database, then aliases), followed by [`Catalog::refresh_all`].
    pub fn load_models(&self, models: &[ModelRecord]) {
        let mut inner = self.inner.write().expect("catalog lock");
        for m in models {
            Self::insert_model(&mut inner, m);
        }
    }

    pub fn load_version(&self, v: &VersionBrief) {
        let mut inner = self.inner.write().expect("catalog lock");
        if let Some(m) = inner.by_id(v.model_id) {
            Self::insert_version(m, v);
        }
    }

    pub fn load_aliases(&self, aliases: Vec<AliasRecord>) {
        let mut inner = self.inner.write().expect("catalog lock");
        for a in aliases {
            if let Some(m) = inner.by_id(a.model_id) {
                Self::insert_alias(m, &a);
            }
        }
    }

    fn insert_alias(m: &mut ModelEntry, a: &AliasRecord) {
        m.aliases.insert(
            a.name.clone(),
            AliasEntry {
                target: a.version_id,
                position: a.position,
                ledger_index: a.ledger_index,
                chg_id: a.chg_id.clone(),
                inc_id: a.inc_id.clone(),
                cause: a.cause,
                live: !a.is_deleted(),
            },
        );
    }

    /// Replace a model's entry with its rows as stored now (another replica changed it), then
    /// re-sign its alias documents. A divergent model stays divergent.
    pub fn reload_model(
        &self,
        m: &ModelRecord,
        versions: &[VersionBrief],
        aliases: &[AliasRecord],
        now: OffsetDateTime,
    ) {
        {
            let mut inner = self.inner.write().expect("catalog lock");
            let (generation, divergent) =
                inner.by_id(m.id).map_or((0, None), |old| (old.generation + 1, old.divergent.clone()));
            Self::insert_model(&mut inner, m);
            let entry = inner.by_id(m.id).expect("just inserted");
            entry.generation = generation;
            entry.divergent = divergent;
            for v in versions {
                Self::insert_version(entry, v);
            }
            for a in aliases {
                Self::insert_alias(entry, a);
            }
        }
        self.refresh_model(m.id, now);
    }

    /// The start-up check found this model's rows disagreeing with the ledger: its versions take
    /// the state the ledger implies (`truth`: label, stage, hold), and its documents become
    /// denies naming `state_divergent` — nothing is ever signed from a divergent row.
    pub fn mark_divergent(&self, tenant: &str, model: &str, why: &str, truth: &[(String, Stage, Hold)]) {
        let mut inner = self.inner.write().expect("catalog lock");
        let Some(m) = inner.models.get_mut(tenant).and_then(|ms| ms.get_mut(model)) else { return };
        for (label, stage, hold) in truth {
            if let Some(v) = m.by_label.get(label.as_str()).copied().and_then(|id| m.versions.get_mut(&id)) {
                v.stage = *stage;
                v.hold = *hold;
            }
        }
        m.divergent = Some(why.into());
        m.generation += 1;
        m.docs.clear();
    }

    /// The ledger gives no state at all (its events were edited or are impossible): every
    /// document is a deny and every model divergent, whatever is created later.
    pub fn break_all(&self, why: &str) {
        *self.broken.write().expect("catalog lock") = Some(why.into());
        let mut inner = self.inner.write().expect("catalog lock");
        for m in inner.models.values_mut().flat_map(|ms| ms.values_mut()) {
            m.generation += 1;
            m.docs.clear();
        }
    }

    /// Why a model's rows are not trusted, if the start-up check found them divergent.
    pub fn divergent(&self, tenant: &str, model: &str) -> Option<Arc<str>> {
        if let Some(why) = self.broken.read().expect("catalog lock").clone() {
            return Some(why);
        }
        let inner = self.inner.read().expect("catalog lock");
        inner.models.get(tenant).and_then(|ms| ms.get(model)).and_then(|m| m.divergent.clone())
    }

    /// A model's versions at a glance, from memory (the console's model list and its filters).
    pub fn glance(&self, tenant: &str, model: &str) -> Option<Glance> {
        let inner = self.inner.read().expect("catalog lock");
        let m = inner.models.get(tenant)?.get(model)?;
        let newest = m.versions.values().max_by_key(|v| v.seq);
        let mut live_stages: Vec<Stage> =
            m.versions.values().filter(|v| v.hold == Hold::None).map(|v| v.stage).collect();
        live_stages.sort_by_key(|s| s.as_str());
        live_stages.dedup();
        Some(Glance {
            versions: m.versions.len(),
            live_stages,
            newest: newest.map(|v| (v.label.to_string(), v.stage, v.hold)),
        })
    }

    /// Whether `word` is a live alias of the model (answered from memory: agent reports ask it
    /// on every report).
    pub fn is_alias(&self, tenant: &str, model: &str, word: &str) -> bool {
        let inner = self.inner.read().expect("catalog lock");
        inner.models.get(tenant).and_then(|ms| ms.get(model)).and_then(|m| m.aliases.get(word)).is_some_and(|a| a.live)
    }

    /// How many models are divergent (a metric to alert on).
    pub fn divergent_count(&self) -> usize {
        let inner = self.inner.read().expect("catalog lock");
        let broken = self.broken.read().expect("catalog lock").is_some();
        inner.models.values().flat_map(|ms| ms.values()).filter(|m| broken || m.divergent.is_some()).count()
    }

    fn insert_model(inner: &mut Inner, m: &ModelRecord) {
        let tenant: Arc<str> = m.tenant.as_str().into();
        let name: Arc<str> = m.name.as_str().into();
        inner.ids.insert(m.id, (tenant.clone(), name.clone()));
        inner.models.entry(tenant.clone()).or_default().insert(
            name.clone(),
            ModelEntry {
                id: m.id,
                name,
                tenant,
                domain: m.domain.as_str().into(),
                labels: m.labels.clone(),
                generation: 0,
                versions: HashMap::default(),
                by_label: HashMap::default(),
                by_digest: HashMap::default(),
                aliases: HashMap::default(),
                docs: HashMap::default(),
                divergent: None,
            },
        );
    }

    fn insert_version(m: &mut ModelEntry, v: &VersionBrief) {
        let label: Arc<str> = v.label.as_str().into();
        m.by_label.insert(label.clone(), v.id);
        // Several versions may share an artifact; name@sha256 resolves to the newest of them.
        let newest =
            m.by_digest.get(&v.artifact_digest).and_then(|id| m.versions.get(id)).is_none_or(|cur| cur.seq < v.seq);
        if newest {
            m.by_digest.insert(v.artifact_digest, v.id);
        }
        let labels = fulcrum_core::dlp::version_labels(&m.labels, &v.card_labels);
        let dlp =
            DlpAttrs { domain: m.domain.clone(), labels: labels.into(), purposes: v.card_purposes.clone().into() };
        m.versions.insert(
            v.id,
            VersionEntry {
                dlp,
                label,
                seq: v.seq,
                artifact_digest: v.artifact_digest,
                record_digest: v.record_digest,
                stage: v.stage,
                hold: v.hold,
                ledger_index: v.ledger_index,
            },
        );
    }

    pub fn add_model(&self, m: &ModelRecord) {
        Self::insert_model(&mut self.inner.write().expect("catalog lock"), m);
    }

    pub fn add_version(&self, v: &VersionBrief, now: OffsetDateTime) {
        {
            let mut inner = self.inner.write().expect("catalog lock");
            let Some(m) = inner.by_id(v.model_id) else {
                return;
            };
            Self::insert_version(m, v);
            m.generation += 1;
            m.docs.clear();
        }
        self.refresh_model(v.model_id, now);
    }

    /// Apply the effects of a committed governance change (each with the ledger leaf behind
    /// it), then re-sign the model's alias docs.
    pub fn apply(&self, model_id: i64, effects: &[Effect], ledger: &[u64], now: OffsetDateTime) {
        {
            let mut inner = self.inner.write().expect("catalog lock");
            let Some(m) = inner.by_id(model_id) else {
                return;
            };
            for (i, fx) in effects.iter().enumerate() {
                let leaf = ledger.get(i).copied();
                match fx {
                    Effect::Approved { .. } => {}
                    Effect::StageChanged { version, to, .. } => {
                        if let Some(v) = m.versions.get_mut(version) {
                            v.stage = *to;
                            v.ledger_index = leaf;
                        }
                    }
                    Effect::HoldChanged { version, to, .. } => {
                        if let Some(v) = m.versions.get_mut(version) {
                            v.hold = *to;
                            v.ledger_index = leaf;
                        }
                    }
                    Effect::AliasMoved { alias, to, entry, .. } => {
                        m.aliases.insert(
                            alias.to_string(),
                            AliasEntry {
                                target: *to,
                                position: entry.position,
                                ledger_index: leaf,
                                chg_id: entry.chg_id.clone(),
                                inc_id: entry.inc_id.clone(),
                                cause: entry.cause,
                                live: entry.cause != fulcrum_core::lifecycle::AliasCause::Deleted,
                            },
                        );
                    }
                }
            }
            m.generation += 1;
            m.docs.clear();
        }
        self.refresh_model(model_id, now);
    }

    /// Look up a cached document in one read of the cache. `Err(Miss::Model)` when the tenant
    /// has no such model or `may_see` refuses its domain; `Ok(None)` when the document must be
    /// (re)built.
    ///
    /// # Errors
    /// `Miss::Model` for models the caller cannot see.
    pub fn cached(
        &self,
        tenant: &str,
        may_see: impl FnOnce(&str) -> bool,
        r: &Reference,
        selector_text: &str,
        env: Env,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<SignedDoc>>, Miss> {
        let inner = self.inner.read().expect("catalog lock");
        let m = inner.models.get(tenant).and_then(|ms| ms.get(r.model.as_str())).ok_or(Miss::Model)?;
        if !may_see(&m.domain) {
            return Err(Miss::Model);
        }
        let doc = m.docs.get(selector_text).and_then(|per_env| per_env[env_index(env)].as_ref());
        Ok(doc.filter(|d| d.issued_at + self.ttl / 2 > now).cloned())
    }

    /// Build, sign and memoise a document. Signing happens outside the lock.
    ///
    /// # Errors
    /// What the reference does not name.
    pub fn build(
        &self,
        tenant: &str,
        r: &Reference,
        selector_text: &str,
        env: Env,
        now: OffsetDateTime,
    ) -> Result<Arc<SignedDoc>, Miss> {
        let (model_id, generation, doc) = {
            let inner = self.inner.read().expect("catalog lock");
            let m = inner.models.get(tenant).and_then(|ms| ms.get(r.model.as_str())).ok_or(Miss::Model)?;
            (m.id, m.generation, self.document(m, &r.selector, selector_text, env, now)?)
        };
        let signed = Arc::new(self.sign(&doc, now).map_err(|e| {
            tracing::error!(error = %e, "signing a resolve document failed");
            Miss::Signer
        })?);
        let mut inner = self.inner.write().expect("catalog lock");
        if let Some(m) = inner.by_id(model_id)
            && m.generation == generation
        {
            m.docs.entry(selector_text.to_owned()).or_default()[env_index(env)] = Some(signed.clone());
        }
        Ok(signed)
    }

    fn document(
        &self,
        m: &ModelEntry,
        sel: &Selector,
        selector_text: &str,
        env: Env,
        now: OffsetDateTime,
    ) -> Result<(ResolveDocument, DlpAttrs), Miss> {
        let (vid, alias) = match sel {
            Selector::Digest(d) => (*m.by_digest.get(d).ok_or(Miss::Version)?, None),
            Selector::Word(w) => match m.aliases.get(w.as_str()).filter(|a| a.live) {
                Some(a) => (a.target.ok_or(Miss::AliasEmpty)?, Some((w.as_str(), a))),
                None => (*m.by_label.get(w.as_str()).ok_or(Miss::Version)?, None),
            },
        };
        let v = m.versions.get(&vid).ok_or(Miss::Version)?;
        let policy = self.policies.current();
        let subject = EnvSubject {
            tenant: &m.tenant,
            domain: &m.domain,
            model: &m.name,
            label: &v.label,
            seq: v.seq,
            stage: v.stage,
            hold: v.hold,
        };
        let broken = self.broken.read().expect("catalog lock").is_some();
        let verdict = match &m.divergent {
            _ if broken => Err("ledger_broken".to_owned()),
            Some(_) => Err("state_divergent".to_owned()),
            None => env_verdict(&policy, subject, env, alias.map(|(n, _)| n)),
        };
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).expect("formats");
        let doc = ResolveDocument {
            name: m.name.to_string(),
            version: v.label.to_string(),
            stage: v.stage.as_str().into(),
            artifact_digest: v.artifact_digest.to_string(),
            policy_digest: policy.digest.to_string(),
            revoked: v.hold == Hold::Revoked,
            quarantined: v.hold == Hold::Quarantined,
            uris: Uris {
                artifact: format!("/v1/blobs/{}", v.artifact_digest),
                attestation: format!("/v1/blobs/{}", v.record_digest),
            },
            model_card_ref: format!("MC-{}-{}", m.name, v.label),
            seq: v.seq,
            tenant: m.tenant.to_string(),
            domain: m.domain.to_string(),
            reference: format!("{}@{}", m.name, selector_text),
            alias: alias.map(|(n, _)| n.to_owned()),
            alias_position: alias.map(|(_, a)| a.position),
            alias_chg_id: alias.and_then(|(_, a)| a.chg_id.clone()),
            alias_inc_id: alias.and_then(|(_, a)| a.inc_id.clone()),
            alias_cause: alias.map(|(_, a)| a.cause.as_str().to_owned()),
            env: env.as_str().into(),
            ledger_index: alias.and_then(|(_, a)| a.ledger_index).max(v.ledger_index),
            decision: if verdict.is_ok() { Decision::Permit } else { Decision::Deny },
            deny_reason: verdict.err(),
            issued_at: fmt(now),
            expires_at: fmt(now + self.ttl),
            kid: String::new(), // set by `sign` to the key that signs it
        };
        Ok((doc, v.dlp.clone()))
    }

    fn sign(
        &self,
        (doc, dlp): &(ResolveDocument, DlpAttrs),
        now: OffsetDateTime,
    ) -> Result<SignedDoc, fulcrum_sign::SignError> {
        let signer = self.keys.current();
        let doc = ResolveDocument { kid: signer.kid().to_owned(), ..doc.clone() };
        let body = serde_json::to_vec(&doc).expect("documents serialise");
        let sig = fulcrum_sign::b64(&signer.sign(&body)?);
        let etag = format!("\"{}\"", Digest::of(&body).hex());
        Ok(SignedDoc {
            signature: HeaderValue::from_str(&sig).expect("base64 is a header value"),
            kid: HeaderValue::from_str(signer.kid()).expect("kid is a header value"),
            etag: HeaderValue::from_str(&etag).expect("hex is a header value"),
            body: Bytes::from(body),
            issued_at: now,
            decision: doc.decision,
            dlp: dlp.clone(),
        })
    }

    /// Re-sign the alias documents of one model, for every env.
    fn refresh_model(&self, model_id: i64, now: OffsetDateTime) {
        let (generation, docs) = {
            let inner = self.inner.read().expect("catalog lock");
            let Some((t, n)) = inner.ids.get(&model_id) else {
                return;
            };
            let Some(m) = inner.models.get(t).and_then(|ms| ms.get(n)) else {
                return;
            };
            let mut docs = Vec::new();
            for (alias, a) in &m.aliases {
                if !a.live || a.target.is_none() {
                    continue;
                }
                for env in Env::ALL {
                    if let Ok(doc) = self.document(m, &Selector::Word(alias.clone()), alias, env, now) {
                        docs.push((alias.clone(), env, doc));
                    }
                }
            }
            (m.generation, docs)
        };
        let signed: Vec<_> = docs
            .into_iter()
            .filter_map(|(alias, env, doc)| match self.sign(&doc, now) {
                Ok(d) => Some((alias, env, Arc::new(d))),
                Err(e) => {
                    // Left unsigned: the next resolve retries (and answers 503 if the signer is still down).
                    tracing::error!(error = %e, %alias, "re-signing an alias document failed");
                    None
                }
            })
            .collect();
        let mut inner = self.inner.write().expect("catalog lock");
        if let Some(m) = inner.by_id(model_id)
            && m.generation == generation
        {
            for (alias, env, doc) in signed {
                m.docs.entry(alias).or_default()[env_index(env)] = Some(doc);
            }
        }
    }

    /// Background refresh: re-sign every alias document and drop pinned documents past half
    /// their lifetime (they are re-signed on next use).
    pub fn refresh_all(&self, now: OffsetDateTime) {
        let ids: Vec<i64> = {
            let mut inner = self.inner.write().expect("catalog lock");
            let half = self.ttl / 2;
            for models in inner.models.values_mut() {
                for m in models.values_mut() {
                    m.docs.retain(|_, per_env| {
                        for slot in per_env.iter_mut() {
                            if slot.as_ref().is_some_and(|d| d.issued_at + half <= now) {
                                *slot = None;
                            }
                        }
                        per_env.iter().any(Option::is_some)
                    });
                }
            }
            inner.ids.keys().copied().collect()
        };
        for id in ids {
            self.refresh_model(id, now);
        }
    }

    /// A new policy is in force: documents carry its digest and its environment rule's verdict
    /// from now on.
    pub fn policy_changed(&self, now: OffsetDateTime) {
        self.resign_all(now);
    }

    /// Drop every cached document and re-sign the alias documents (after a key change).
    pub fn resign_all(&self, now: OffsetDateTime) {
        {
            let mut inner = self.inner.write().expect("catalog lock");
            for models in inner.models.values_mut() {
                for m in models.values_mut() {
                    m.generation += 1;
                    m.docs.clear();
                }
            }
        }
        self.refresh_all(now);
    }

    pub fn counts(&self) -> (usize, usize) {
        let inner = self.inner.read().expect("catalog lock");
        let models = inner.ids.len();
        let versions = inner.models.values().flat_map(|ms| ms.values()).map(|m| m.versions.len()).sum();
        (models, versions)
    }
}

/// What the environment rule reads of a version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnvSubject<'a> {
    pub tenant: &'a str,
    pub domain: &'a str,
    pub model: &'a str,
    pub label: &'a str,
    pub seq: u64,
    pub stage: Stage,
    pub hold: Hold,
}

/// The environment rule: the policy's (`fulcrum.env`) verdict for this version in this
/// environment — what a resolve document says, and what the blob download gate asks of every
/// version a blob belongs to. `Err` carries the deny reasons, comma-joined (the first named is
/// the primary one). The lifecycle's own rule is checked as well, so a policy can only ever be
/// stricter.
pub(crate) fn env_verdict(policy: &Current, v: EnvSubject<'_>, env: Env, alias: Option<&str>) -> Result<(), String> {
    let input = serde_json::json!({
        "env": env.as_str(),
        "alias": alias,
        "model": {"name": v.model, "tenant": v.tenant, "domain": v.domain},
        "version": {"label": v.label, "seq": v.seq, "stage": v.stage.as_str(), "hold": v.hold.as_str()},
    });
    let out = policy.policy.decide("fulcrum.env", &input);
    let core = env_allows(env, v.stage, v.hold);
    match (out.allow, core) {
        (true, Ok(())) => Ok(()),
        (_, Err(r)) if out.allow || out.deny.is_empty() => Err(r.code().to_owned()),
        (_, _) => Err(out.deny.join(",")),
    }
}
