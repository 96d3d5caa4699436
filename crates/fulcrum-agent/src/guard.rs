//! The runtime guard (SPEC §4 step 5, seed §5.2): keeps the loaded version honest while it
//! serves. It follows the registry's event stream (push) and, when the stream is down, polls
//! the resolve answer. On a revocation or quarantine of the loaded version it **quiesces** at
//! once (not ready), **purges** the placed files and their cached blobs, then **reloads** the
//! alias's new target through the full startup check (the rollback). Alias moves, policy
//! changes and key rotations make it re-resolve and re-check. Every step is kept with its time
//! so the T0→T+N timeline can be drawn.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fulcrum_core::Digest;
use fulcrum_core::resolve::ResolveDocument;
use futures_util::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use crate::check::Deny;
use crate::fetch::{Agent, Stop};
use crate::oip::Oip;
use crate::release::Guardrails;
use crate::report::Reporter;

/// Where a guard places the version it serves.
#[derive(Debug, Clone)]
pub enum Layout {
    /// Always this directory (init-container style; the model server reads it at start).
    Dir(PathBuf),
    /// A model repository: `<repo>/<name>/<version>/`, versions side by side, as the Open
    /// Inference Protocol repository extension expects.
    Repository(PathBuf),
}

impl Layout {
    fn dir_for(&self, doc: &ResolveDocument) -> PathBuf {
        match self {
            Layout::Dir(d) => d.clone(),
            Layout::Repository(r) => r.join(&doc.name).join(&doc.version),
        }
    }
}

/// The version a guard serves: its verified answer, where its files are, its cached blobs and
/// the guardrails its release record sets.
#[derive(Debug)]
pub struct Serving {
    pub document: ResolveDocument,
    pub guardrails: Guardrails,
    /// The version's reference profile (drift), with its digest.
    pub profile: Option<(Digest, Arc<fulcrum_core::drift::Profile>)>,
    pub dir: PathBuf,
    blobs: Vec<Digest>,
    /// The signed manifest's files, to re-check what is on disk.
    files: Vec<fulcrum_core::FileEntry>,
}

/// Steps kept locally: a guard re-checking every poll for months must not grow without bound.
pub const TIMELINE: usize = 1024;

/// One step of the guard's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `permit`, `deny`, `quiesce`, `hook`, `purge`, `reload`, `recheck`, `recheck_failed`, `stream_down`.
    pub step: &'static str,
    pub detail: String,
}

/// The event types a guard acts on (everything else is not sent to it).
const WATCHED: [&str; 6] =
    ["revocation", "quarantined", "alias_updated", "policy_changed", "key_rotated", "key_retired"];

#[derive(Debug)]
pub struct Guard {
    pub agent: Agent,
    pub reference: String,
    pub env: String,
    pub layout: Layout,
    /// How often to re-resolve while the event stream is down.
    pub poll: Duration,
    /// How often the placed files are hashed again against the signed manifest while serving
    /// (a file changed on disk stops the version and reloads it through the full check);
    /// `None` never.
    pub verify_every: Option<Duration>,
    /// Longest random wait between quiescing and reloading: a thousand replicas must not all
    /// hit the registry in the same millisecond (serving has already stopped; only the
    /// rollback waits). Default 1.5 s: with 500 ms, a thousand reloads (each a resolve, the
    /// policy snapshot, the release record, the files, a second resolve and a report) arrived
    /// while the registry was still telling the fleet to quiesce, and the last quiesce came
    /// 1.4 s after the revocation instead of 0.5 s (`fulcrum-bench guards`, BENCHMARKS.md).
    pub reload_jitter: Duration,
    /// A command told about each change: `HOOK quiesce <name> <version> <dest>` when serving must
    /// stop, `HOOK loaded <name> <version> <dest>` when a version passed and is placed. For
    /// model servers without a repository API (or to drive one from a script).
    pub hook: Option<PathBuf>,
    /// A model server told through the Open Inference Protocol repository API (with
    /// [`Layout::Repository`]): `load` once a version is placed, `load`/`unload` once one is purged.
    pub oip: Option<Oip>,
    /// Where each step is reported (the registry), besides the local timeline.
    pub reporter: Option<Arc<Reporter>>,
    ready: AtomicBool,
    loaded: Mutex<Option<Arc<Serving>>>,
    /// The latest [`TIMELINE`] steps (the registry has them all).
    timeline: Mutex<std::collections::VecDeque<Step>>,
    /// The incident and change ids of the registry event being acted on: every step it causes
    /// carries them, so an incident's timeline finds each replica's quiesce, purge and reload.
    cause: Mutex<Cause>,
}

/// What caused the steps being taken (from the registry event).
#[derive(Debug, Clone, Default)]
struct Cause {
    inc_id: Option<String>,
    chg_id: Option<String>,
}

impl Guard {
    pub fn new(agent: Agent, reference: &str, env: &str, layout: Layout) -> Self {
        Self {
            agent,
            reference: reference.to_owned(),
            env: env.to_owned(),
            layout,
            poll: Duration::from_secs(2),
            verify_every: Some(Duration::from_secs(600)),
            reload_jitter: Duration::from_millis(1500),
            hook: None,
            oip: None,
            reporter: None,
            ready: AtomicBool::new(false),
            loaded: Mutex::new(None),
            timeline: Mutex::new(std::collections::VecDeque::new()),
            cause: Mutex::new(Cause::default()),
        }
    }

    /// Serving may go on: a version passed the full check and has not been revoked since.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The version being served, if any.
    pub fn loaded(&self) -> Option<ResolveDocument> {
        self.loaded.lock().expect("guard lock").as_ref().map(|s| s.document.clone())
    }

    /// The version being served while serving may go on; `None` from the quiesce point on.
    pub fn serving(&self) -> Option<Arc<Serving>> {
        if !self.is_ready() {
            return None;
        }
        let s = self.loaded.lock().expect("guard lock").clone();
        // Re-read after taking the copy: a quiesce between the two reads must win.
        s.filter(|_| self.is_ready())
    }

    pub fn timeline(&self) -> Vec<Step> {
        self.timeline.lock().expect("guard lock").iter().cloned().collect()
    }

    /// The latest step that is one of `steps`, without copying the timeline.
    pub fn last_step(&self, steps: &[&str]) -> Option<Step> {
        self.timeline.lock().expect("guard lock").iter().rev().find(|s| steps.contains(&s.step)).cloned()
    }

    /// Keep a step about the served version (if any).
    fn note(&self, step: &'static str, detail: impl Into<String>) {
        let version = self.loaded().map(|d| d.version);
        self.note_for(step, version.as_deref(), detail);
    }

    /// Keep a step about `version`, and report it.
    fn note_for(&self, step: &'static str, version: Option<&str>, detail: impl Into<String>) {
        let at = OffsetDateTime::now_utc();
        let detail: String = detail.into();
        if let Some(r) = &self.reporter {
            let cause = self.cause.lock().expect("guard lock").clone();
            let policy = self.loaded.lock().expect("guard lock").as_ref().map(|s| s.document.policy_digest.clone());
            r.send(serde_json::json!({
                "ref": self.reference, "env": self.env, "kind": "step", "step": step,
                "observed_at": at.format(&time::format_description::well_known::Rfc3339).expect("formats"),
                "detail": detail.chars().filter(|c| !c.is_control()).take(512).collect::<String>(),
                "version": version, "agent": self.agent.name,
                "inc_id": cause.inc_id, "chg_id": cause.chg_id, "policy_digest": policy,
            }));
        }
        let mut t = self.timeline.lock().expect("guard lock");
        if t.len() == TIMELINE {
            t.pop_front();
        }
        t.push_back(Step { at, step, detail });
    }

    fn jitter(&self) -> Duration {
        use std::hash::{BuildHasher, RandomState};
        let max = u64::try_from(self.reload_jitter.as_micros()).unwrap_or(u64::MAX);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(RandomState::new().hash_one(&self.agent.name) % max)
    }

    fn quiesce(&self, why: &str) {
        self.ready.store(false, Ordering::SeqCst);
        self.note("quiesce", why);
    }

    /// Run the hook (bounded to 10 s) and note how it went.
    async fn tell(&self, what: &'static str, doc: &ResolveDocument) {
        let Some(hook) = &self.hook else { return };
        let run = tokio::process::Command::new(hook)
            .arg(what)
            .arg(&doc.name)
            .arg(&doc.version)
            .arg(self.layout.dir_for(doc))
            .kill_on_drop(true)
            .status();
        let detail = match tokio::time::timeout(Duration::from_secs(10), run).await {
            Ok(Ok(st)) if st.success() => format!("{what} {}@{}: ok", doc.name, doc.version),
            Ok(Ok(st)) => format!("{what} {}@{}: hook exited {st}", doc.name, doc.version),
            Ok(Err(e)) => format!("{what}: hook did not run: {e}"),
            Err(_) => format!("{what}: hook timed out after 10 s"),
        };
        self.note("hook", detail);
    }

    /// Remove the placed files and the cached blobs of the loaded version, then tell the model
    /// server: `load` drops versions no longer on disk; with none left, `unload`.
    async fn purge(&self) {
        let Some(s) = self.loaded.lock().expect("guard lock").take() else { return };
        let mut failed = match std::fs::remove_dir_all(&s.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Some(format!("{}: {e}", s.dir.display())),
            _ => None,
        };
        let mut n = 0;
        for d in &s.blobs {
            match std::fs::remove_file(self.agent.state.blob(d)) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    failed.get_or_insert_with(|| format!("cached blob {d}: {e}"));
                }
            }
        }
        let doc = &s.document;
        match failed {
            // Not ready already; the files that stayed are named so an operator removes them.
            Some(e) => self.note_for(
                "purge_failed",
                Some(&doc.version),
                format!("{}@{}: purge failed, files may remain: {e}", doc.name, doc.version),
            ),
            None => self.note_for(
                "purge",
                Some(&doc.version),
                format!("{}@{}: placed files and {n} cached blobs removed", doc.name, doc.version),
            ),
        }
        if let (Some(oip), Layout::Repository(repo)) = (&self.oip, &self.layout) {
            let others = std::fs::read_dir(repo.join(&doc.name))
                .map(|d| d.filter_map(Result::ok).any(|e| !e.file_name().to_string_lossy().starts_with('.')))
                .unwrap_or(false);
            let (what, r) =
                if others { ("load", oip.load(&doc.name).await) } else { ("unload", oip.unload(&doc.name).await) };
            match r {
                Ok(()) => self.note_for(
                    "unload",
                    Some(&doc.version),
                    format!("{}@{}: model server {what} ok", doc.name, doc.version),
                ),
                Err(e) => self.note_for("unload_failed", Some(&doc.version), e.to_string()),
            }
        }
    }

    /// Resolve, check, fetch and place; ready on a permit, not ready on a deny.
    ///
    /// # Errors
    /// The deny.
    pub async fn load(&self) -> Result<ResolveDocument, Stop> {
        let result = self.agent.fetch_unreported(&self.reference, &self.env, |d| self.layout.dir_for(d)).await;
        // What was refused, read before the fallback's own resolve replaces it.
        let claimed = self.agent.claimed();
        let fallback = match &result {
            Err(_) => self.fallback().await,
            Ok(_) => None,
        };
        let kept = fallback.as_ref().map(|d| format!("{}@{} ({})", d.name, d.version, d.artifact_digest));
        self.agent.report_startup(&self.reference, &self.env, &result, claimed.clone(), kept.as_deref()).await;
        match result {
            Ok(p) => {
                let mut blobs: Vec<Digest> = p.manifest.files().iter().map(|f| f.digest).collect();
                if let Ok(d) = p.document.artifact_digest.parse() {
                    blobs.push(d);
                }
                blobs.extend(p.profile.as_ref().map(|(d, _)| *d));
                self.note_for(
                    "permit",
                    Some(&p.document.version),
                    format!("{}@{} ({})", p.document.name, p.document.version, p.document.artifact_digest),
                );
                if let Some(oip) = &self.oip {
                    if let Err(e) = oip.load(&p.document.name).await {
                        // The server cannot hold it: nothing is served, the files go.
                        self.ready.store(false, Ordering::SeqCst);
                        let _ = std::fs::remove_dir_all(&p.dir);
                        self.note_for("load_failed", Some(&p.document.version), e.to_string());
                        return Err(Stop::ModelServer(e.to_string()));
                    }
                    self.note_for(
                        "load",
                        Some(&p.document.version),
                        format!("{}@{}: model server load ok", p.document.name, p.document.version),
                    );
                }
                let before = self.loaded.lock().expect("guard lock").replace(Arc::new(Serving {
                    document: p.document.clone(),
                    guardrails: p.guardrails,
                    profile: p.profile.clone(),
                    dir: p.dir.clone(),
                    blobs,
                    files: p.manifest.files().to_vec(),
                }));
                self.tell("loaded", &p.document).await;
                self.ready.store(true, Ordering::SeqCst);
                // Make before break: an earlier version (the alias moved) leaves once the new
                // one serves; it was not revoked, so its cached blobs stay.
                if let Some(old) = before.filter(|o| o.dir != p.dir) {
                    let _ = std::fs::remove_dir_all(&old.dir);
                    if let Some(oip) = &self.oip
                        && let Err(e) = oip.load(&p.document.name).await
                    {
                        self.note("unload_failed", e.to_string());
                    }
                    self.note_for(
                        "retire",
                        Some(&old.document.version),
                        format!("{}@{} replaced", old.document.name, old.document.version),
                    );
                }
                Ok(p.document)
            }
            Err(e) => {
                let refused = match claimed {
                    Some((v, d)) => format!("{v} ({d})"),
                    None => "the answer".to_owned(),
                };
                match kept {
                    // The version that passed keeps serving: a bad new target must not take
                    // every server down.
                    Some(k) => {
                        self.note("deny", format!("{}: refused {refused}: {e}", e.code()));
                        self.note("fallback", format!("kept serving {k}, still permitted; refused {refused}"));
                    }
                    None => {
                        self.ready.store(false, Ordering::SeqCst);
                        self.note("deny", format!("{}: refused {refused}: {e}", e.code()));
                    }
                }
                Err(e)
            }
        }
    }

    /// The version still loaded (the target it was moving to failed its check) if the registry
    /// and the policy in force still permit it here: a fresh signed answer pinned to that version,
    /// for the same bytes, that the snapshot's environment rule allows.
    async fn fallback(&self) -> Option<ResolveDocument> {
        let old = self.loaded()?;
        let pinned = format!("{}@{}", old.name, old.version);
        let doc = self.agent.resolve(&pinned, &self.env).await.ok()?;
        if doc.artifact_digest != old.artifact_digest {
            return None;
        }
        self.agent.check_policy(&doc).await.ok()?;
        Some(old)
    }

    /// React to one registry event (the CloudEvent JSON of an SSE message).
    pub async fn on_event(&self, cloud_event: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(cloud_event) else { return };
        let d = &v["data"];
        let Some(loaded) = self.loaded() else {
            // Nothing is served: any change may make a start possible.
            let _ = self.load().await;
            return;
        };
        let ours = d["model"].as_str() == Some(loaded.name.as_str());
        let this_version = ours && d["version"].as_str() == Some(loaded.version.as_str());
        *self.cause.lock().expect("guard lock") =
            Cause { inc_id: d["inc_id"].as_str().map(str::to_owned), chg_id: d["chg_id"].as_str().map(str::to_owned) };
        match d["event"].as_str().unwrap_or("") {
            "revocation" | "quarantined" if this_version => {
                let why = format!("{} of {}@{}", d["event"].as_str().unwrap_or(""), loaded.name, loaded.version);
                self.stop_and_reload(&loaded, &why, "the alias's new target, through the full check").await;
            }
            "alias_updated" if ours && loaded.alias.is_some() && d["alias"].as_str() == loaded.alias.as_deref() => {
                self.recheck(&format!("alias {} moved", loaded.alias.as_deref().unwrap_or(""))).await;
            }
            "policy_changed" | "key_rotated" | "key_retired" => {
                self.recheck(d["event"].as_str().unwrap_or("")).await;
            }
            _ => {}
        }
        *self.cause.lock().expect("guard lock") = Cause::default();
    }

    /// Re-resolve and re-check the served reference. The registry denying the served version
    /// stops it (quiesce, purge, reload); a new target is loaded through the full check; any
    /// other trouble (unreachable, trust material the pinned bundle does not cover yet) is noted
    /// and the version that passed keeps serving — a stale bundle must not take every server
    /// down — until its own answer expires.
    async fn recheck(&self, why: &str) {
        let Some(loaded) = self.loaded() else {
            let _ = self.load().await;
            return;
        };
        let answer = match self.agent.resolve(&self.reference, &self.env).await {
            // Same version, another policy in force: verify the new snapshot and evaluate it.
            Ok(doc) if doc.artifact_digest == loaded.artifact_digest && doc.policy_digest != loaded.policy_digest => {
                self.agent.check_policy(&doc).await.map(|()| doc)
            }
            other => other,
        };
        match answer {
            Ok(doc) if doc.artifact_digest == loaded.artifact_digest => {
                let detail = if doc.policy_digest == loaded.policy_digest {
                    format!("{why}: unchanged")
                } else {
                    format!("{why}: policy {} verified and allows it", doc.policy_digest)
                };
                self.refresh(doc);
                self.note("recheck", detail);
            }
            Ok(doc) => {
                self.note_for("reload", Some(&doc.version), format!("{why}: now {}", doc.version));
                let _ = self.load().await;
            }
            // The registry, or the policy in force evaluated here, no longer allows it; or a
            // snapshot that does not verify: deny on doubt.
            Err(Stop::Deny(d @ (Deny::Registry(_) | Deny::PolicyDenies(_) | Deny::PolicyUnverified(_)))) => {
                let why = format!("{why}: {}@{} no longer allowed ({}: {d})", loaded.name, loaded.version, d.code());
                self.stop_and_reload(&loaded, &why, "the alias's new target, through the full check").await;
            }
            Err(e) => {
                self.note("recheck_failed", format!("{why}: {}: {e}; still serving {}", e.code(), loaded.version))
            }
        }
    }

    /// The one way a served version stops: not ready at once, the hook told, files and cached
    /// blobs purged (and the model server told), then — after the jitter, so a fleet does not
    /// reload in the same millisecond — the reference loaded again through the full check.
    async fn stop_and_reload(&self, served: &ResolveDocument, why: &str, reload: &str) {
        self.quiesce(why);
        self.tell("quiesce", served).await;
        self.purge().await;
        tokio::time::sleep(self.jitter()).await;
        self.note("reload", reload);
        let _ = self.load().await;
    }

    /// Keep the newest verified answer for the served version (same artifact).
    fn refresh(&self, doc: ResolveDocument) {
        let mut l = self.loaded.lock().expect("guard lock");
        if let Some(s) = l.as_ref().filter(|s| s.document.artifact_digest == doc.artifact_digest) {
            *l = Some(Arc::new(Serving {
                document: doc,
                guardrails: s.guardrails.clone(),
                profile: s.profile.clone(),
                dir: s.dir.clone(),
                blobs: s.blobs.clone(),
                files: s.files.clone(),
            }));
        }
    }

    /// Hash every placed file again against the signed manifest. A file changed, missing, or an
    /// extra one on disk: the version stops (quiesce, purge) and is placed again through the
    /// full check. Returns whether the files were intact.
    pub async fn verify_placed(&self) -> bool {
        let Some(s) = self.loaded.lock().expect("guard lock").clone() else { return true };
        let check = {
            let s = s.clone();
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                for f in &s.files {
                    match fulcrum_client::hash_file(&s.dir.join(&f.path)) {
                        Ok((d, n)) if d == f.digest && n == f.size => {}
                        Ok(_) => return Err(format!("{} changed on disk", f.path)),
                        Err(e) => return Err(format!("{}: {e}", f.path)),
                    }
                }
                let on_disk = count_files(&s.dir);
                if on_disk != s.files.len() {
                    return Err(format!("{on_disk} files on disk, the manifest names {}", s.files.len()));
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        };
        match check {
            Ok(()) => true,
            Err(why) => {
                let doc = &s.document;
                let why = format!("{}@{}: {why}", doc.name, doc.version);
                self.stop_and_reload(doc, &why, "placed again from verified bytes, through the full check").await;
                false
            }
        }
    }

    /// Poll once (stream down): handled like a re-check.
    async fn poll_once(&self) {
        self.recheck("poll").await;
    }

    /// Follow the registry until `stop` resolves: subscribe first (so nothing between the
    /// start and the subscription is missed), start, then react to each event; poll while the
    /// stream is down.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut after: Option<i64> = None;
        let mut verified = std::time::Instant::now();
        loop {
            let model = self.reference.split('@').next().unwrap_or_default();
            let stream = self.agent.client.event_stream_filtered(after, Some(model), Some(&WATCHED)).await;
            if self.loaded().is_none() {
                let _ = self.load().await;
            }
            match stream {
                Ok(s) => {
                    tokio::pin!(s);
                    let mut retry = tokio::time::interval(self.poll);
                    retry.tick().await;
                    loop {
                        tokio::select! {
                            () = &mut stop => return,
                            _ = retry.tick() => {
                                // Nothing served (denied, or the model server refused it):
                                // try again now and then, not only on an event.
                                if self.loaded().is_none() {
                                    let _ = self.load().await;
                                }
                                if self.verify_every.is_some_and(|e| verified.elapsed() >= e) {
                                    self.verify_placed().await;
                                    verified = std::time::Instant::now();
                                }
                            }
                            ev = s.next() => match ev {
                                Some(Ok(ev)) => {
                                    if let Some(id) = ev.id.as_deref().and_then(|i| i.parse().ok()) {
                                        after = Some(id);
                                    }
                                    self.on_event(&ev.data).await;
                                }
                                _ => break,
                            },
                        }
                    }
                    self.note("stream_down", "the event stream ended; polling until it is back");
                }
                Err(e) => self.note("stream_down", e.to_string()),
            }
            if self.loaded().is_none() {
                let _ = self.load().await;
            }
            self.poll_once().await;
            if self.verify_every.is_some_and(|e| verified.elapsed() >= e) {
                self.verify_placed().await;
                verified = std::time::Instant::now();
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

/// Regular files under `dir`, at any depth.
fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 1, // a link or anything else is not what was placed
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_timeline_keeps_the_latest_steps_only() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent::new(
            fulcrum_client::Client::new("http://127.0.0.1:9", None).unwrap(),
            fulcrum_sign::TrustBundle {
                version: 1,
                issued_at: String::new(),
                expires_at: None,
                keys: vec![],
                sigstore: None,
            },
            crate::state::StateDir::open(dir.path()).unwrap(),
            time::Duration::seconds(30),
            "t".into(),
        );
        let g = Guard::new(agent, "fraud@production", "prod", Layout::Dir(dir.path().join("m")));
        g.note("quiesce", "first");
        for i in 0..TIMELINE + 10 {
            g.note("recheck", format!("poll {i}"));
        }
        let t = g.timeline();
        assert_eq!(t.len(), TIMELINE);
        assert_eq!(t.last().unwrap().detail, format!("poll {}", TIMELINE + 9));
        assert!(g.last_step(&["quiesce"]).is_none(), "the oldest steps went first");
        assert_eq!(g.last_step(&["recheck"]).unwrap().detail, format!("poll {}", TIMELINE + 9));
    }
}
