//! The agent's steps against a registry (SPEC §4): resolve and check, then fetch every byte by
//! digest, verified, into a local cache, and place the files atomically. Each outcome is
//! reported to the registry as `startup_permit` / `startup_deny`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fulcrum_client::{Client, ClientError};
use fulcrum_core::manifest::Manifest;
use fulcrum_core::resolve::ResolveDocument;
use fulcrum_core::{Digest, Reference};
use fulcrum_sign::TrustBundle;
use futures_util::StreamExt;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::check::{self, Ask, Deny, Signed};
use crate::release::Guardrails;
use crate::state::{SavedAnswer, StateDir};

/// Where a decision's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Online,
    /// Registry unreachable: the last permitted answer, re-verified.
    Degraded,
}

/// A manifest is a small JSON document; anything bigger is refused.
pub const MAX_MANIFEST: u64 = 16 << 20;
/// Files fetched at once.
const PARALLEL: usize = 4;

/// Why an agent step stopped. Every variant has a machine-readable [`Stop::code`].
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("{0}")]
    Deny(#[from] Deny),
    #[error("the reference is not a registry reference: {0}")]
    BadReference(String),
    #[error("the registry answered: {detail} ({code})")]
    Registry { code: String, detail: String },
    #[error("the registry is unreachable: {0}")]
    Unreachable(String),
    #[error("{what} failed verification: {detail}")]
    Tampered { what: String, detail: String },
    #[error("local state: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    ModelServer(String),
}

impl Stop {
    pub fn code(&self) -> String {
        match self {
            Stop::Deny(d) => d.code().into(),
            Stop::BadReference(_) => "bad_reference".into(),
            Stop::Registry { code, .. } => code.clone(),
            Stop::Unreachable(_) => "registry_unreachable".into(),
            Stop::Tampered { .. } => "artifact_tampered".into(),
            Stop::Io(_) => "local_state".into(),
            Stop::ModelServer(_) => "model_server_refused".into(),
        }
    }
}

fn from_client(e: ClientError) -> Stop {
    match e {
        ClientError::Connect { source, .. } => Stop::Unreachable(source.to_string()),
        ClientError::Problem { code, detail, .. } => Stop::Registry { code, detail },
        ClientError::Unverified(d) => Stop::Deny(Deny::Malformed(d)),
        other => Stop::Unreachable(other.to_string()),
    }
}

/// An agent: a registry client, the pinned trust bundle and the local state.
#[derive(Debug)]
pub struct Agent {
    pub client: Client,
    pub bundle: TrustBundle,
    pub state: StateDir,
    pub max_skew: Duration,
    /// Who reports (pod/replica name).
    pub name: String,
    /// Bytes fetched so far and expected, while a fetch runs (for a progress line).
    pub progress: Arc<Progress>,
    /// Demand inclusion proofs from the audit ledger (the answer's event and the release gate's
    /// decision) before a version is placed: `--require-ledger-proof`.
    pub require_ledger_proof: bool,
    /// The bundle adopted through a verified chain, as kept in the state dir: read from disk
    /// once (outer `None`: not read yet), then kept here when a newer one is adopted.
    adopted: std::sync::Mutex<Option<Option<TrustBundle>>>,
    /// The version and artifact digest the last answer read *claimed* (before any check), so a
    /// deny report can name what was refused even when the answer itself was the problem.
    claimed: std::sync::Mutex<Option<(String, String)>>,
}

/// Where a model was registered from in an OCI registry: `registry/repository` and the manifest
/// digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciOrigin {
    pub repository: String,
    pub digest: String,
}

impl OciOrigin {
    /// Parse what follows `oci://`: `registry/repository@sha256:<64 hex>` (a tag, as well or
    /// instead, is refused: it can be moved to other bytes).
    ///
    /// # Errors
    /// `oci_tag_refused` for a tag; `bad_reference` for anything else.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((repo, digest)) = s.split_once("@sha256:") else {
            let shown = if s.rsplit('/').next().unwrap_or(s).contains(':') {
                s.to_owned()
            } else {
                format!("{s} (an implicit :latest)")
            };
            return Err(format!(
                "oci_tag_refused: oci://{shown} names a tag, which can be moved to other bytes; pin it by digest (oci://REPOSITORY@sha256:…)"
            ));
        };
        let last = repo.rsplit('/').next().unwrap_or(repo);
        if last.contains(':') {
            return Err(format!("oci_tag_refused: oci://{s} names a tag as well as a digest; pin it by digest alone"));
        }
        let digest: Option<Digest> = format!("sha256:{digest}").parse().ok();
        match digest {
            Some(d) if repo.contains('/') && !repo.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Ok(Self { repository: repo.to_owned(), digest: d.to_string() })
            }
            _ => Err(format!("bad_reference: oci://{s} is not REGISTRY/REPOSITORY@sha256:<64 hex>")),
        }
    }
}

/// Download progress of the current fetch.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
}

/// A permitted, verified version.
#[derive(Debug, Clone)]
pub struct Permit {
    pub document: ResolveDocument,
    pub manifest: Manifest,
    pub mode: Mode,
    /// What the gateway enforces, from the verified release record's model card.
    pub guardrails: Guardrails,
    /// The version's reference profile of its inputs (drift), when its release record names
    /// one: fetched by the digest the signed record gives.
    pub profile: Option<(Digest, Arc<fulcrum_core::drift::Profile>)>,
    /// Where the files were placed.
    pub dir: PathBuf,
}

impl Agent {
    pub fn new(client: Client, bundle: TrustBundle, state: StateDir, max_skew: Duration, name: String) -> Self {
        Self {
            client,
            bundle,
            state,
            max_skew,
            name,
            require_ledger_proof: false,
            progress: Arc::default(),
            adopted: std::sync::Mutex::new(None),
            claimed: std::sync::Mutex::new(None),
        }
    }

    /// Resolve and check (signature against the pinned bundle, freshness, replay, verdict,
    /// downgrade); the marks move on every authentic answer, a deny included.
    ///
    /// # Errors
    /// A [`Stop`] naming why.
    pub async fn resolve(&self, reference: &str, env: &str) -> Result<ResolveDocument, Stop> {
        self.resolve_with_mode(reference, env).await.map(|(d, _)| d)
    }

    /// As [`Agent::resolve`], saying whether the answer came from the registry or, in degraded
    /// mode, from the last permitted answer kept on disk (registry unreachable): that answer is
    /// checked again like a fresh one — signature, expiry, marks — so it only ever permits the
    /// version last permitted, and only until it expires.
    ///
    /// # Errors
    /// A [`Stop`] naming why.
    pub async fn resolve_with_mode(&self, reference: &str, env: &str) -> Result<(ResolveDocument, Mode), Stop> {
        let r: Reference =
            reference.parse().map_err(|e: fulcrum_core::ReferenceError| Stop::BadReference(e.to_string()))?;
        let reference = r.to_string();
        let (answer, mode) = match self.client.resolve_unverified(&reference, env).await {
            Ok((body, kid, signature)) => {
                (SavedAnswer { body: String::from_utf8_lossy(&body).into_owned(), kid, signature }, Mode::Online)
            }
            Err(ClientError::Connect { source, .. }) => match self.state.answer(&reference, env)? {
                Some(saved) => (saved, Mode::Degraded),
                None => {
                    return Err(Stop::Unreachable(format!(
                        "{source}; and no permitted answer is kept for {reference} in {env}"
                    )));
                }
            },
            Err(e) => return Err(from_client(e)),
        };
        *self.claimed.lock().expect("claimed lock") = claimed(&answer.body);
        let ask = Ask { reference: &reference, env, now: OffsetDateTime::now_utc(), max_skew: self.max_skew };
        let signed = Signed { body: answer.body.as_bytes(), kid: &answer.kid, signature: &answer.signature };
        let mut checked = check::check(&self.trusted()?, &self.state.marks()?, signed, &ask);
        // Signed by a key the agent does not know yet: the registry may have rotated. Follow the
        // bundle chain from what is trusted (each link vouched for by a trusted key), then check
        // once more against the newest bundle.
        if matches!(checked.verdict, Err(Deny::UnknownKey(_))) && mode == Mode::Online && self.follow_chain().await? {
            checked = check::check(&self.trusted()?, &self.state.marks()?, signed, &ask);
        }
        // The marks move on every authentic answer, a deny included, so a permit issued before a
        // deny the agent has seen is refused as a replay from now on.
        if mode == Mode::Online
            && let Some(next) = &checked.marks
        {
            self.state.save_marks(next)?;
        }
        let doc = checked.verdict?;
        if mode == Mode::Online {
            self.state.save_answer(&reference, env, &answer)?;
        }
        Ok((doc, mode))
    }

    /// The bundle to verify against: the pinned one, or a newer one adopted through a verified
    /// chain from it.
    ///
    /// # Errors
    /// An unreadable adopted bundle.
    pub fn trusted(&self) -> Result<TrustBundle, Stop> {
        let mut adopted = self.adopted.lock().expect("agent lock");
        if adopted.is_none() {
            *adopted = Some(self.state.adopted_bundle()?);
        }
        Ok(match adopted.as_ref().and_then(Option::as_ref) {
            Some(b) if b.version > self.bundle.version => b.clone(),
            _ => self.bundle.clone(),
        })
    }

    /// Fetch the chain of bundles after the trusted one and adopt the newest if every link
    /// holds. `true` when a newer bundle was adopted.
    ///
    /// # Errors
    /// A broken chain (`bundle_chain_broken`), an unreachable registry.
    pub async fn follow_chain(&self) -> Result<bool, Stop> {
        let trusted = self.trusted()?;
        let v =
            self.client.get(&format!("/v1/trust-bundle/chain?after={}", trusted.version)).await.map_err(from_client)?;
        let links: Vec<crate::chain::Link> = serde_json::from_value(v["links"].clone())
            .map_err(|e| Stop::Deny(Deny::BundleChain(format!("the chain does not parse: {e}"))))?;
        match crate::chain::follow(&trusted, &links, OffsetDateTime::now_utc())? {
            Some(newest) => {
                check::accept_bundle(&self.state.marks()?, &newest, OffsetDateTime::now_utc())?;
                self.state.save_adopted_bundle(&newest)?;
                *self.adopted.lock().expect("agent lock") = Some(Some(newest));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Download one blob into the cache (or find it there), verified.
    async fn blob(&self, d: &Digest, size_max: u64) -> Result<PathBuf, Stop> {
        let done = self.state.blob(d);
        if done.exists() {
            // The cache is trusted only as far as it re-hashes.
            let path = done.clone();
            let (got, _) = tokio::task::spawn_blocking(move || fulcrum_client::hash_file(&path))
                .await
                .map_err(|e| Stop::Io(std::io::Error::other(e)))??;
            if got == *d {
                return Ok(done);
            }
            std::fs::remove_file(&done)?;
        }
        let partial = self.state.partial(d);
        let progress = self.progress.clone();
        let counted = move |n: u64| {
            progress.done.fetch_add(n, Ordering::Relaxed);
        };
        match self.client.download_blob_counted(d, &partial, size_max, &counted).await {
            Ok(_) => {
                std::fs::rename(&partial, &done)?;
                Ok(done)
            }
            Err(ClientError::Unverified(detail)) => Err(Stop::Tampered { what: d.to_string(), detail }),
            Err(e) => Err(from_client(e)),
        }
    }

    /// The whole startup: resolve and check, fetch the manifest and every file by digest
    /// (verified, cached), then place the files under `dest` atomically. Reports the outcome.
    ///
    /// # Errors
    /// A [`Stop`] naming why; `dest` is then untouched.
    pub async fn fetch(&self, reference: &str, env: &str, dest: &Path) -> Result<Permit, Stop> {
        self.fetch_into(reference, env, |_| dest.to_owned()).await
    }

    /// As [`Agent::fetch`], placing the files where `dest` says for the permitted version (for
    /// a model repository laid out `<repo>/<name>/<version>/`).
    ///
    /// # Errors
    /// A [`Stop`] naming why; nothing is placed then.
    pub async fn fetch_into(
        &self,
        reference: &str,
        env: &str,
        dest: impl Fn(&ResolveDocument) -> PathBuf,
    ) -> Result<Permit, Stop> {
        self.fetch_reported(reference, env, dest, None).await
    }

    /// Fetch (from `origin` when it came from an OCI source) and report the decision.
    async fn fetch_reported(
        &self,
        reference: &str,
        env: &str,
        dest: impl Fn(&ResolveDocument) -> PathBuf,
        origin: Option<&OciOrigin>,
    ) -> Result<Permit, Stop> {
        *self.claimed.lock().expect("claimed lock") = None;
        let result = self.fetch_inner(reference, env, dest, origin).await;
        self.report_startup(reference, env, &result, self.claimed(), None).await;
        result
    }

    /// As [`Agent::fetch_into`] without the startup report: the caller reports it with
    /// [`Agent::report_startup`] once it knows what it keeps serving instead.
    ///
    /// # Errors
    /// A [`Stop`] naming why; nothing is placed then.
    pub async fn fetch_unreported(
        &self,
        reference: &str,
        env: &str,
        dest: impl Fn(&ResolveDocument) -> PathBuf,
    ) -> Result<Permit, Stop> {
        *self.claimed.lock().expect("claimed lock") = None;
        self.fetch_inner(reference, env, dest, None).await
    }

    /// An `oci://REPOSITORY@sha256:…` source (what KServe names a model by), served through the
    /// registry: the version registered from exactly that OCI manifest is looked up, then fetched
    /// like any reference pinned by its artifact digest — and its *signed* release record must
    /// name that repository and manifest digest, or nothing is placed. No version, or several,
    /// is a deny (`oci_not_registered`, `oci_ambiguous`). The OCI registry itself is never
    /// contacted.
    ///
    /// # Errors
    /// A [`Stop`] naming why; nothing is placed then.
    pub async fn fetch_oci(&self, origin: &OciOrigin, env: &str, dest: &Path) -> Result<Permit, Stop> {
        // Without a version there is no model to report a startup decision on: the deny is the
        // caller's (and its exit code) alone.
        let reference = self.oci_reference(origin).await?;
        self.fetch_reported(&reference, env, |_| dest.to_owned(), Some(origin)).await
    }

    /// `model@sha256:<artifact digest>` of the one version registered from `origin`.
    async fn oci_reference(&self, origin: &OciOrigin) -> Result<String, Stop> {
        let rows =
            self.client.get(&format!("/v1/oci-sources/{}/versions", origin.digest)).await.map_err(from_client)?;
        let matching: Vec<&serde_json::Value> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["repository"].as_str() == Some(origin.repository.as_str()))
            .collect();
        let artifacts: std::collections::BTreeSet<(&str, &str)> =
            matching.iter().filter_map(|r| Some((r["model"].as_str()?, r["artifact_digest"].as_str()?))).collect();
        match artifacts.len() {
            0 => Err(Stop::Registry {
                code: "oci_not_registered".into(),
                detail: format!(
                    "no version you may read was registered from oci://{}@{}",
                    origin.repository, origin.digest
                ),
            }),
            1 => {
                let (model, artifact) = artifacts.into_iter().next().expect("one");
                Ok(format!("{model}@{artifact}"))
            }
            n => Err(Stop::Registry {
                code: "oci_ambiguous".into(),
                detail: format!(
                    "{n} models were registered from oci://{}@{}; name one: fulcrum://NAME@ALIAS",
                    origin.repository, origin.digest
                ),
            }),
        }
    }

    /// The version and artifact digest the last answer claimed (before any check): what a deny
    /// refused.
    pub fn claimed(&self) -> Option<(String, String)> {
        self.claimed.lock().expect("claimed lock").clone()
    }

    /// Report a startup decision (`startup_permit` / `startup_deny`). A deny names the version
    /// and digest the refused answer `claimed` ([`Agent::claimed`] right after the fetch) and,
    /// when the caller kept serving an earlier verified version, that `fallback`
    /// (`name@version (digest)`).
    pub async fn report_startup(
        &self,
        reference: &str,
        env: &str,
        result: &Result<Permit, Stop>,
        claimed: Option<(String, String)>,
        fallback: Option<&str>,
    ) {
        let report = match result {
            Ok(p) => json!({"ref": reference, "env": env, "decision": "permit", "version": p.document.version,
                            "artifact_digest": p.document.artifact_digest, "policy_digest": p.document.policy_digest,
                            "agent": self.name}),
            Err(e) => {
                // What was refused: the version and digest the answer claimed, if one was read.
                let (version, digest) = claimed.unzip();
                json!({"ref": reference, "env": env, "decision": "deny", "reason": e.code(), "agent": self.name,
                       "version": version, "artifact_digest": digest, "detail": e.to_string().chars().filter(|c| !c.is_control()).take(512).collect::<String>(),
                       "fallback": fallback})
            }
        };
        // A report that cannot be delivered does not change the decision (the registry may be
        // the thing that is down); it is said on stderr.
        if let Err(e) = self.client.post("/v1/startup-reports", &report).await {
            eprintln!("fulcrum-agent: could not report the startup decision: {e}");
        }
    }

    /// The policy snapshot the answer names, verified (kept in the blob cache by its digest),
    /// then evaluated for the answer: the environment rule must allow it.
    ///
    /// # Errors
    /// `policy_unverified`, `policy_deny`, or the registry unreachable.
    pub async fn check_policy(&self, doc: &ResolveDocument) -> Result<(), Stop> {
        let digest = &doc.policy_digest;
        let d: Digest =
            digest.parse().map_err(|_| Stop::Deny(Deny::PolicyUnverified(format!("{digest}: not a digest"))))?;
        let cached = self.state.blob(&d);
        let snapshot = match std::fs::read(&cached) {
            Ok(b) if Digest::of(&b) == d => b,
            _ => {
                let envelope = self.client.get(&format!("/v1/policy/snapshots/{d}")).await.map_err(from_client)?;
                let bytes = serde_json::to_vec(&envelope).expect("values serialise");
                let snapshot = crate::policy::verify_snapshot(&self.trusted()?, &bytes, digest)?;
                let partial = self.state.partial(&d);
                std::fs::write(&partial, &snapshot)?;
                std::fs::rename(&partial, &cached)?;
                snapshot
            }
        };
        Ok(crate::policy::evaluate(&snapshot, doc)?)
    }

    /// The permit is current per the audit ledger: the version's leaf in the state map of a
    /// checkpoint signed by a trusted key no earlier than the answer says it is not held and at
    /// the answer's stage. Returns that checkpoint, for [`Agent::prove_on_ledger`].
    ///
    /// # Errors
    /// `ledger_unproven`, `permit_not_current`, or the registry unreachable.
    pub async fn prove_current(&self, doc: &ResolveDocument) -> Result<fulcrum_ledger::checkpoint::Checkpoint, Stop> {
        let trusted = self.trusted()?;
        // The checkpoint whose state map shows the version now, signed no earlier than the
        // answer (so it also covers the answer's entry and whatever came after it).
        let sp = self.client.state_proof(&doc.name, &doc.version, Some(&doc.issued_at)).await.map_err(from_client)?;
        let field = |k: &str| sp[k].as_str().unwrap_or_default().to_owned();
        let (note, origin, kid) = (field("note"), field("origin"), field("kid"));
        let cp = crate::ledger::open_checkpoint(
            &trusted,
            crate::ledger::SignedCheckpoint { note: &note, origin: &origin, kid: &kid },
        )?;
        let hashes: Vec<String> = serde_json::from_value(sp["hashes"].clone())
            .map_err(|_| Deny::LedgerUnproven("the state proof is malformed".into()))?;
        let state_hashes = crate::ledger::decode_hashes(&hashes)?;
        crate::ledger::check_current(
            doc,
            &cp,
            crate::ledger::StateProof {
                leaf: field("leaf").as_bytes(),
                index: sp["index"].as_u64().unwrap_or(u64::MAX),
                count: sp["count"].as_u64().unwrap_or(0),
                hashes: &state_hashes,
            },
        )?;
        Ok(cp)
    }

    /// The answer's event and the release gate's decision are leaves of the tree of `cp` (the
    /// checkpoint [`Agent::prove_current`] verified).
    ///
    /// # Errors
    /// `ledger_unproven` naming what did not hold.
    pub async fn prove_on_ledger(
        &self,
        doc: &ResolveDocument,
        release: &serde_json::Value,
        cp: &fulcrum_ledger::checkpoint::Checkpoint,
    ) -> Result<(), Stop> {
        let index = doc.ledger_index.ok_or_else(|| Deny::LedgerUnproven("the answer names no ledger entry".into()))?;
        let gate = crate::ledger::gate_leaf(release)?;
        let proof = |i: u64| async move {
            let p = self
                .client
                .get(&format!("/v1/ledger/proofs/inclusion?index={i}&tree_size={}", cp.size))
                .await
                .map_err(from_client)?;
            let hashes: Vec<String> = serde_json::from_value(p["hashes"].clone())
                .map_err(|_| Deny::LedgerUnproven("the inclusion proof is malformed".into()))?;
            Ok::<_, Stop>(crate::ledger::decode_hashes(&hashes)?)
        };
        let page = self
            .client
            .get(&format!("/v1/ledger/entries?start={index}&end={}", index + 1))
            .await
            .map_err(from_client)?;
        let data = page["entries"][0]["data"]
            .as_str()
            .ok_or_else(|| Deny::LedgerUnproven(format!("entry {index} is not readable")))?;
        crate::ledger::check_answer_leaf(doc, cp, data.as_bytes(), &proof(index).await?)?;
        let gate_proof = if gate.index < cp.size { proof(gate.index).await? } else { vec![] };
        crate::ledger::check_gate_leaf(&gate, cp, &gate_proof)?;
        Ok(())
    }

    /// The release record the answer points at, verified.
    async fn release_record(&self, doc: &ResolveDocument) -> Result<crate::release::VerifiedRecord, Stop> {
        let d: Digest =
            doc.uris.attestation.strip_prefix("/v1/blobs/").and_then(|d| d.parse().ok()).ok_or_else(|| {
                Stop::Deny(Deny::ReleaseUnverified(format!("{}: not a blob by digest", doc.uris.attestation)))
            })?;
        let path = self.blob(&d, crate::release::MAX_RECORD).await?;
        Ok(crate::release::verify_record(&self.trusted()?, &std::fs::read(path)?, doc)?)
    }

    async fn fetch_inner(
        &self,
        reference: &str,
        env: &str,
        dest: impl Fn(&ResolveDocument) -> PathBuf,
        origin: Option<&OciOrigin>,
    ) -> Result<Permit, Stop> {
        let (doc, mode) = self.resolve_with_mode(reference, env).await?;
        self.check_policy(&doc).await?;
        // Demanding proofs: is the permit current per the ledger, before anything is fetched?
        let proven = match self.require_ledger_proof && mode == Mode::Online {
            true => Some(self.prove_current(&doc).await?),
            false => None,
        };
        let record = self.release_record(&doc).await?;
        if let Some(o) = origin {
            // The lookup was a hint; the signed record decides.
            let oci = &record.predicate["release_gate"]["oci"];
            if oci["digest"].as_str() != Some(o.digest.as_str())
                || oci["repository"].as_str() != Some(o.repository.as_str())
            {
                return Err(Stop::Deny(Deny::ReleaseUnverified(format!(
                    "of {}@{}: it was not registered from oci://{}@{}",
                    doc.name, doc.version, o.repository, o.digest
                ))));
            }
        }
        if let Some(cp) = &proven {
            self.prove_on_ledger(&doc, &record.predicate, cp).await?;
        }
        let guardrails = record.guardrails;
        let profile = self.profile(&record.predicate).await?;
        let keyless = crate::signature::keyless_claim(&record.predicate)?;
        let artifact: Digest = doc
            .artifact_digest
            .parse()
            .map_err(|_| Stop::Deny(Deny::Malformed("artifact_digest is not a digest".into())))?;
        let manifest_path = self.blob(&artifact, MAX_MANIFEST).await?;
        let manifest = Manifest::from_canonical_bytes(&std::fs::read(&manifest_path)?)
            .map_err(|e| Stop::Tampered { what: "manifest".into(), detail: e.to_string() })?;
        if manifest.digest() != artifact {
            return Err(Stop::Tampered { what: "manifest".into(), detail: "digest mismatch".into() });
        }
        let files: Vec<_> = manifest.files().to_vec();
        self.progress.done.store(0, Ordering::Relaxed);
        self.progress.total.store(manifest.total_size(), Ordering::Relaxed);
        let fetched: Vec<Result<(String, PathBuf), Stop>> = futures_util::stream::iter(files)
            .map(|f| async move { self.blob(&f.digest, f.size).await.map(|p| (f.path.clone(), p)) })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut placed = Vec::with_capacity(fetched.len());
        for f in fetched {
            placed.push(f?);
        }
        if let Some(claim) = &keyless {
            self.check_keyless(claim, &manifest, &placed).await?;
        }
        if mode == Mode::Online {
            // A download takes time: the version may have been revoked meanwhile. Ask again
            // before anything is placed; a deny now is a deny.
            let again = self.resolve(reference, env).await?;
            if again.artifact_digest != doc.artifact_digest {
                return Err(Stop::Deny(Deny::Registry(format!(
                    "{reference} moved to {} during the download",
                    again.version
                ))));
            }
        }
        let dir = dest(&doc);
        place(&dir, &placed)?;
        Ok(Permit { document: doc, manifest, mode, guardrails, profile, dir })
    }

    /// A keyless artifact signature the release record names, verified offline against the
    /// Sigstore root of the pinned trust bundle over the fetched files.
    async fn check_keyless(
        &self,
        claim: &crate::signature::Claim,
        manifest: &Manifest,
        placed: &[(String, PathBuf)],
    ) -> Result<(), Stop> {
        let bundle = std::fs::read(self.blob(&claim.bundle, crate::signature::MAX_BUNDLE).await?)?;
        let by_path: std::collections::HashMap<&str, &PathBuf> = placed.iter().map(|(p, b)| (p.as_str(), b)).collect();
        let files: Vec<_> = manifest
            .files()
            .iter()
            .filter_map(|f| by_path.get(f.path.as_str()).map(|b| (f.clone(), (*b).clone())))
            .collect();
        // A record verified under a root the pinned bundle does not carry (imported after this
        // agent pinned it): follow the endorsed chain of bundles once; the pinned one still
        // decides if there is nothing newer.
        let pinned = self.trusted()?.sigstore.map(|s| s.digest);
        if pinned.is_none() || (claim.trusted_root.is_some() && claim.trusted_root != pinned) {
            let _ = self.follow_chain().await;
        }
        let trust = self.trusted()?;
        let claim = claim.clone();
        tokio::task::spawn_blocking(move || crate::signature::verify(&trust, &claim, &bundle, &files))
            .await
            .map_err(|e| Stop::Io(std::io::Error::other(e.to_string())))??;
        Ok(())
    }

    /// The reference profile the verified release record names, if any. Its bytes are checked
    /// against the signed digest like every blob; a profile this agent cannot read (a newer
    /// format) costs drift figures, not serving: it is logged and left out.
    async fn profile(
        &self,
        record: &serde_json::Value,
    ) -> Result<Option<(Digest, Arc<fulcrum_core::drift::Profile>)>, Stop> {
        let Some(d) = record["reference_profile"]["digest"].as_str() else { return Ok(None) };
        let d: Digest = d
            .parse()
            .map_err(|_| Stop::Deny(Deny::ReleaseUnverified(format!("reference profile {d}: not a digest"))))?;
        let path = self.blob(&d, crate::release::MAX_RECORD).await?;
        match fulcrum_core::drift::Profile::parse(&std::fs::read(path)?) {
            Ok(p) => Ok(Some((d, Arc::new(p)))),
            Err(e) => {
                eprintln!("fulcrum-agent: the reference profile {d} cannot be read here ({e}); no drift figures");
                Ok(None)
            }
        }
    }
}

/// Copy verified cache files into a fresh directory beside `dest`, fsync, then swap it in.
fn place(dest: &Path, files: &[(String, PathBuf)]) -> std::io::Result<()> {
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    static PLACES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PLACES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = parent.join(format!(".{name}.fulcrum-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for (rel, src) in files {
        // Manifest paths are validated relative paths (no `..`, no absolute paths).
        let to = staging.join(rel);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(src, &to)?;
        std::fs::File::open(&to)?.sync_all()?;
    }
    let old = parent.join(format!(".{name}.fulcrum-old-{}-{n}", std::process::id()));
    if dest.exists() {
        std::fs::rename(dest, &old)?;
    }
    std::fs::rename(&staging, dest)?;
    std::fs::File::open(parent)?.sync_all()?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The version and artifact digest an answer claims, read without trusting it (only well-formed
/// values: a report must not carry garbage a forger put there).
fn claimed(body: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let version = v["version"].as_str().filter(|s| fulcrum_core::VersionLabel::parse(s).is_ok())?;
    let digest = v["artifact_digest"].as_str().filter(|s| s.parse::<Digest>().is_ok())?;
    Some((version.to_owned(), digest.to_owned()))
}
