//! `fulcrum audit`: check the registry's audit ledger without trusting its database.
//!
//! `verify` fetches the newest signed checkpoint (verified with the registry key from the trust
//! bundle — pinned with `--bundle`, or fetched and self-checked), every entry up to it, recomputes
//! each record's leaf and the tree, and holds them against the checkpoint and against what this
//! auditor verified before: its state directory keeps the last checkpoint and every leaf hash, like
//! a witness. The first bad entry is named. `proof` checks one entry's inclusion proof.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Subcommand;
use fulcrum_client::Client;
use fulcrum_ledger::Hash;
use fulcrum_ledger::audit::{self, Leaf, Witness};
use fulcrum_ledger::checkpoint::Checkpoint;
use fulcrum_ledger::merkle;
use fulcrum_sign::TrustBundle;
use serde_json::{Value, json};

use crate::commands::Ctx;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify the whole ledger: every entry's record, the tree, the signed checkpoint, and
    /// consistency with what this auditor verified before (kept in --state).
    Verify {
        /// Where this auditor keeps the last verified checkpoint and leaf hashes.
        #[arg(long, default_value = ".fulcrum-audit")]
        state: PathBuf,
        /// The registry's trust bundle, pinned (otherwise fetched and checked against itself).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Read only the entries added since the last verified checkpoint (the older ones stand
        /// on the kept leaf hashes and the registry's consistency proof): a quick routine run.
        /// Without it every record is read and rehashed, which also catches a record edited
        /// after it was verified.
        #[arg(long)]
        new_only: bool,
    },
    /// Gather a change's or an incident's events and decisions with their proofs into a signed
    /// archive written once to the registry's evidence store; fetch it back and verify it.
    Evidence {
        #[arg(long, required_unless_present = "inc", conflicts_with = "inc")]
        chg: Option<String>,
        #[arg(long)]
        inc: Option<String>,
        /// Retention of the archive, days (default: 7 years).
        #[arg(long)]
        retention_days: Option<u32>,
        /// Also keep the archive here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Verify an evidence archive offline: its signature, the checkpoint in it, and every
    /// record's inclusion proof.
    CheckEvidence {
        file: PathBuf,
        /// The registry's trust bundle (default: the one inside the archive, checked against itself).
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Print and verify the inclusion proof of one entry in the newest checkpoint.
    Proof {
        index: u64,
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
}

fn hash(s: &Value) -> anyhow::Result<Hash> {
    let b = B64.decode(s.as_str().context("a hash is missing")?).context("a hash is not base64")?;
    b.try_into().map_err(|_| anyhow::anyhow!("a hash is not 32 bytes"))
}

async fn bundle(client: &Client, pinned: Option<&Path>) -> anyhow::Result<TrustBundle> {
    match pinned {
        Some(p) => bundle_file(p),
        None => Ok(client.trust_bundle().await?),
    }
}

/// The newest checkpoint, its note verified with the registry key it names.
pub(crate) async fn checkpoint(client: &Client, pinned: Option<&Path>) -> anyhow::Result<(Checkpoint, String)> {
    let v = client.get("/v1/ledger/checkpoint").await?;
    let (note, kid, origin) = (
        v["note"].as_str().context("no note")?,
        v["kid"].as_str().context("no kid")?,
        v["origin"].as_str().context("no origin")?,
    );
    let b = bundle(client, pinned).await?;
    let cp = Checkpoint::verify_trusted(note, origin, kid, &b)?;
    Ok((cp, note.to_owned()))
}

/// The auditor's state: the last verified checkpoint's note and every leaf hash up to it.
fn load_witness(dir: &Path) -> anyhow::Result<Witness> {
    let note = match std::fs::read_to_string(dir.join("checkpoint.note")) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Witness::default()),
        Err(e) => return Err(e).context("cannot read the auditor's state"),
    };
    let (cp, _) = Checkpoint::parse(&note).map_err(|e| anyhow::anyhow!("the auditor's state is damaged: {e}"))?;
    let bytes = std::fs::read(dir.join("leaves.bin")).context("the auditor's state has no leaves.bin")?;
    if bytes.len() as u64 != cp.size * 32 {
        bail!("the auditor's state is damaged: leaves.bin does not hold {} hashes", cp.size);
    }
    let leaves = bytes.chunks(32).map(|c| c.try_into().expect("32 bytes")).collect();
    Ok(Witness { size: cp.size, root: cp.root, leaves })
}

fn save_witness(dir: &Path, note: &str, w: &Witness) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let leaves: Vec<u8> = w.leaves.iter().flatten().copied().collect();
    std::fs::write(dir.join("leaves.bin.tmp"), leaves)?;
    std::fs::write(dir.join("checkpoint.note.tmp"), note)?;
    std::fs::rename(dir.join("leaves.bin.tmp"), dir.join("leaves.bin"))?;
    std::fs::rename(dir.join("checkpoint.note.tmp"), dir.join("checkpoint.note"))?;
    Ok(())
}

/// Entries `[from, size)` as leaves (with their kinds).
pub(crate) async fn leaves(client: &Client, from: u64, size: u64) -> anyhow::Result<(Vec<Leaf>, Vec<String>)> {
    let mut out = Vec::with_capacity(size.saturating_sub(from) as usize);
    let mut kinds = Vec::with_capacity(size.saturating_sub(from) as usize);
    let mut start = from;
    while start < size {
        let end = (start + 1000).min(size);
        let page = client.get(&format!("/v1/ledger/entries?start={start}&end={end}")).await?;
        let entries = page["entries"].as_array().context("no entries")?;
        for e in entries {
            let data = e["data"].as_str().map(|s| s.as_bytes().to_vec());
            let missing = e["missing"].as_bool().unwrap_or(false);
            out.push(Leaf {
                index: e["index"].as_u64().context("an entry has no index")?,
                stored: hash(&e["leaf_hash"])?,
                visible: data.is_some() || missing,
                data,
            });
            kinds.push(e["kind"].as_str().unwrap_or("?").to_owned());
        }
        if entries.len() < (end - start) as usize {
            break; // fewer listed than signed: the check names where they stop
        }
        start = end;
    }
    Ok((out, kinds))
}

/// A pinned trust bundle from a file.
fn bundle_file(p: &Path) -> anyhow::Result<TrustBundle> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a trust bundle", p.display()))
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> anyhow::Result<()> {
    // Offline: no registry, no token.
    if let AuditCmd::CheckEvidence { file, bundle } = &cmd {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let pinned = bundle.as_deref().map(bundle_file).transpose()?;
        let n = check_evidence(&bytes, pinned.as_ref())?;
        ctx_print(ctx, &json!({"verified": true, "records": n}), || format!("evidence verified: {n} records"));
        return Ok(());
    }
    let client = ctx.client()?;
    match cmd {
        AuditCmd::Verify { state, bundle, new_only } => {
            let (cp, note) = checkpoint(&client, bundle.as_deref()).await?;
            let witness = load_witness(&state)?;
            // With --new-only the witnessed prefix is taken from the kept leaf hashes.
            let from = if new_only { witness.size.min(cp.size) } else { 0 };
            let (fetched, mut kinds) = leaves(&client, from, cp.size).await?;
            let mut ls: Vec<Leaf> = witness.leaves[..from as usize]
                .iter()
                .enumerate()
                .map(|(i, h)| Leaf { index: i as u64, stored: *h, data: None, visible: false })
                .collect();
            ls.extend(fetched);
            kinds.splice(0..0, std::iter::repeat_n("witnessed".to_owned(), from as usize));
            let new = audit::verify(&cp, &ls, &witness).map_err(|p| {
                let kind = p.index().and_then(|i| kinds.get(i as usize)).map(|k| format!(" ({k})")).unwrap_or_default();
                anyhow::anyhow!("audit failed: {p}{kind}")
            })?;
            // The registry's own consistency proof must agree with what was recomputed.
            if witness.size > 0 {
                let p = client
                    .get(&format!("/v1/ledger/proofs/consistency?first={}&second={}", witness.size, cp.size))
                    .await?;
                let proof = p["hashes"]
                    .as_array()
                    .context("no hashes")?
                    .iter()
                    .map(hash)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                merkle::verify_consistency(witness.size, cp.size, &witness.root, &cp.root, &proof)
                    .context("audit failed: the registry's consistency proof does not hold")?;
            }
            save_witness(&state, &note, &new)?;
            // The governance state the verified events imply, held against what the registry
            // serves and against the state map its checkpoint commits to.
            // A change committed after the checkpoint (signed at most once a second) makes the
            // registry serve a state the checkpoint cannot imply yet: on a disagreement, take the
            // next checkpoint, verify what it adds, and compare once more before failing.
            let mut cp = cp;
            let replay = if new_only {
                None
            } else {
                match replay_state(&client, &cp, &ls, bundle.as_deref()).await {
                    Ok(r) => Some(r),
                    Err(first) => {
                        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
                        let (cp2, note2) = checkpoint(&client, bundle.as_deref()).await?;
                        if cp2.size <= cp.size {
                            return Err(first);
                        }
                        let (more, more_kinds) = leaves(&client, cp.size, cp2.size).await?;
                        ls.extend(more);
                        kinds.extend(more_kinds);
                        let newer = audit::verify(&cp2, &ls, &new).map_err(|p| anyhow::anyhow!("audit failed: {p}"))?;
                        save_witness(&state, &note2, &newer)?;
                        let r = replay_state(&client, &cp2, &ls, bundle.as_deref()).await?;
                        cp = cp2;
                        Some(r)
                    }
                }
            };
            let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
            let v = json!({"verified": true, "size": cp.size, "root": B64.encode(cp.root),
                "previously_verified": witness.size, "read": cp.size - from, "events": count("event"), "decisions": count("decision"),
                "access_batches": count("access"), "state": state.display().to_string(),
                "governance_state": replay.as_ref().map(|(versions, aliases)| json!({"versions": versions, "aliases": aliases}))});
            ctx_print(ctx, &v, || {
                let state = match replay {
                    Some((versions, aliases)) => format!(
                        "; the governance state it implies ({versions} versions, {aliases} aliases) is what the registry serves and what its checkpoint's state map says"
                    ),
                    None => "; governance state not replayed (--new-only)".into(),
                };
                format!(
                    "ledger verified: {} entries ({} events, {} decisions, {} access batches read), root {}; extends the {} entries verified before{state}",
                    cp.size,
                    v["events"],
                    v["decisions"],
                    v["access_batches"],
                    v["root"].as_str().unwrap_or(""),
                    witness.size
                )
            });
            Ok(())
        }
        AuditCmd::Evidence { chg, inc, retention_days, out, bundle } => {
            let r = client
                .post("/v1/audit/evidence", &json!({"chg_id": chg, "inc_id": inc, "retention_days": retention_days}))
                .await?;
            let key = r["key"].as_str().context("no key in the answer")?;
            let bytes = client.get_bytes(&format!("/v1/audit/evidence?key={key}")).await?;
            let pinned = match bundle {
                Some(p) => Some(self::bundle(&client, Some(&p)).await?),
                None => Some(client.trust_bundle().await?),
            };
            let checked = check_evidence(&bytes, pinned.as_ref())?;
            if let Some(path) = &out {
                std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
            }
            let v = json!({"key": key, "digest": r["digest"], "retain_until": r["retain_until"], "records": checked,
                "checkpoint_size": r["checkpoint_size"], "verified": true});
            ctx_print(ctx, &v, || {
                format!(
                    "evidence written once to {key} ({}), retained until {}: {checked} records, each proven in the signed tree of {} entries",
                    s_(&r["digest"]),
                    s_(&r["retain_until"]),
                    r["checkpoint_size"]
                )
            });
            Ok(())
        }
        AuditCmd::CheckEvidence { .. } => unreachable!("checked offline above"),
        AuditCmd::Proof { index, bundle } => {
            let (cp, _) = checkpoint(&client, bundle.as_deref()).await?;
            if index >= cp.size {
                bail!("entry {index} is not in the newest checkpoint ({} entries)", cp.size);
            }
            let p = client.get(&format!("/v1/ledger/proofs/inclusion?index={index}&tree_size={}", cp.size)).await?;
            let proof =
                p["hashes"].as_array().context("no hashes")?.iter().map(hash).collect::<anyhow::Result<Vec<_>>>()?;
            let e = client.get(&format!("/v1/ledger/entries?start={index}&end={}", index + 1)).await?;
            let entry = &e["entries"][0];
            let leaf = match entry["data"].as_str() {
                // A record of the caller's tenant: its bytes are hashed here, not taken on trust.
                Some(d) => merkle::leaf_hash(d.as_bytes()),
                None => hash(&entry["leaf_hash"])?,
            };
            if hash(&p["leaf_hash"])? != leaf {
                bail!("entry {index}: its record does not hash to the leaf the proof is for");
            }
            merkle::verify_inclusion(index, cp.size, &leaf, &proof, &cp.root)
                .with_context(|| format!("entry {index}: the inclusion proof does not hold"))?;
            let v = json!({"index": index, "tree_size": cp.size, "root": B64.encode(cp.root), "leaf_hash": B64.encode(leaf),
                "kind": entry["kind"], "proof": p["hashes"], "verified": true});
            ctx_print(ctx, &v, || {
                format!(
                    "entry {index} ({}) is in the signed tree of {} entries (proof of {} hashes verified)",
                    entry["kind"].as_str().unwrap_or("?"),
                    cp.size,
                    proof.len()
                )
            });
            Ok(())
        }
    }
}

/// Replay the verified events of this tenant into the governance state they imply, then hold
/// the registry to it: every version's stage and hold and every alias's target as the API
/// serves them, and every version's leaf in the state map of a checkpoint signed now. Returns
/// how many versions and aliases were compared.
///
/// # Errors
/// `audit failed: …` naming every disagreement.
async fn replay_state(
    client: &Client,
    cp: &Checkpoint,
    leaves: &[Leaf],
    pinned: Option<&Path>,
) -> anyhow::Result<(usize, usize)> {
    use fulcrum_core::projection::Projection;
    let trusted = bundle(client, pinned).await?;
    let mut p = Projection::default();
    for l in leaves {
        let Some(data) = &l.data else { continue };
        let Ok(ce) = serde_json::from_slice::<fulcrum_core::event::CloudEvent>(data) else { continue };
        p.apply(l.index, &ce.data)
            .map_err(|e| anyhow::anyhow!("audit failed: the ledger says something impossible: {e}"))?;
    }
    let mut wrong = Vec::new();
    for (k, v) in &p.versions {
        let served = client.get(&format!("/v1/models/{}/versions/{}", k.model, k.version)).await;
        match served {
            Ok(d) => {
                if d["stage"].as_str() != Some(v.stage.as_str()) || d["hold"].as_str() != Some(v.hold.as_str()) {
                    wrong.push(format!(
                        "{} {}: the registry serves {}/{}, the ledger implies {}/{}",
                        k.model,
                        k.version,
                        s_(&d["stage"]),
                        s_(&d["hold"]),
                        v.stage.as_str(),
                        v.hold.as_str()
                    ));
                }
            }
            Err(e) => wrong.push(format!("{} {}: the registry does not serve it ({e})", k.model, k.version)),
        }
        // The checkpoint's state map must say the same (a proof under a checkpoint signed now).
        let sp = client.state_proof(&k.model, &k.version, None).await?;
        let (note, origin, kid) =
            (sp["note"].as_str().unwrap_or(""), sp["origin"].as_str().unwrap_or(""), sp["kid"].as_str().unwrap_or(""));
        let map_cp = Checkpoint::verify_trusted(note, origin, kid, &trusted)
            .map_err(|e| anyhow::anyhow!("audit failed: a state proof's checkpoint: {e}"))?;
        if map_cp.size < cp.size {
            wrong
                .push(format!("{} {}: the state proof's checkpoint is older than the audited one", k.model, k.version));
            continue;
        }
        let head = map_cp.state.context("audit failed: the registry's checkpoint commits to no state map")?;
        let leaf_text = sp["leaf"].as_str().unwrap_or("");
        let leaf = fulcrum_ledger::state::StateLeaf::parse(leaf_text.as_bytes())
            .map_err(|e| anyhow::anyhow!("audit failed: {e}"))?;
        let hashes =
            sp["hashes"].as_array().context("no hashes")?.iter().map(hash).collect::<anyhow::Result<Vec<_>>>()?;
        merkle::verify_inclusion(
            sp["index"].as_u64().unwrap_or(u64::MAX),
            head.count,
            &leaf.hash(),
            &hashes,
            &head.root,
        )
        .map_err(|e| {
            anyhow::anyhow!("audit failed: {} {}'s state leaf is not in the signed state map: {e}", k.model, k.version)
        })?;
        if (leaf.stage.as_str(), leaf.hold.as_str(), leaf.seq) != (v.stage.as_str(), v.hold.as_str(), v.seq) {
            wrong.push(format!(
                "{} {}: the checkpoint's state map says {}/{}, the ledger implies {}/{}",
                k.model,
                k.version,
                leaf.stage,
                leaf.hold,
                v.stage.as_str(),
                v.hold.as_str()
            ));
        }
    }
    for (k, target) in &p.aliases {
        let served = match client.get(&format!("/v1/models/{}/aliases/{}", k.model, k.alias)).await {
            Ok(d) => d["version"].as_str().map(str::to_owned),
            Err(fulcrum_client::ClientError::Problem { status: 404, .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if &served != target {
            wrong.push(format!(
                "{} alias {}: the registry serves {}, the ledger implies {}",
                k.model,
                k.alias,
                served.as_deref().unwrap_or("nothing"),
                target.as_deref().unwrap_or("nothing")
            ));
        }
    }
    if !wrong.is_empty() {
        bail!("audit failed: the registry serves a governance state the ledger does not imply: {}", wrong.join("; "));
    }
    Ok((p.versions.len(), p.aliases.len()))
}

fn s_(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// The payload of a DSSE envelope of `payload_type` signed by a non-compromised key of `bundle`.
fn open_dsse(bundle: &TrustBundle, envelope: &[u8], payload_type: &str) -> anyhow::Result<Vec<u8>> {
    fulcrum_sign::dsse::open_trusted(bundle, envelope, payload_type).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Verify an evidence archive: the DSSE signature by a key of `bundle` (or of the bundle inside,
/// checked against itself), the checkpoint note by the key it names, every record's inclusion
/// proof against it, and every attached release record and policy snapshot (its digest, its
/// signature by a key of the bundle). The number of records.
fn check_evidence(bytes: &[u8], bundle: Option<&TrustBundle>) -> anyhow::Result<usize> {
    let env: Value = serde_json::from_slice(bytes).context("the archive is not JSON")?;
    if env["payloadType"] != fulcrum_server::evidence::EVIDENCE_MEDIA_TYPE {
        bail!("the archive is not a Fulcrum evidence envelope");
    }
    let payload = B64.decode(env["payload"].as_str().context("no payload")?).context("payload is not base64")?;
    let doc: Value = serde_json::from_slice(&payload).context("the payload is not JSON")?;
    let inner: TrustBundle = serde_json::from_value(doc["trust_bundle"].clone()).context("no trust bundle inside")?;
    let bundle = bundle.unwrap_or(&inner);
    let sig = &env["signatures"][0];
    let kid = sig["keyid"].as_str().context("no keyid")?;
    bundle
        .verify(
            kid,
            &fulcrum_sign::dsse_pae(fulcrum_server::evidence::EVIDENCE_MEDIA_TYPE, &payload),
            sig["sig"].as_str().unwrap_or(""),
        )
        .context("the archive's signature does not verify")?;
    let c = &doc["checkpoint"];
    let field = |k: &str| c[k].as_str().unwrap_or("");
    let cp = Checkpoint::verify_trusted(field("note"), field("origin"), field("kid"), bundle)?;
    let records = doc["records"].as_array().context("no records")?;
    for r in records {
        let index = r["index"].as_u64().context("a record has no index")?;
        let proof = r["proof"].as_array().context("no proof")?.iter().map(hash).collect::<anyhow::Result<Vec<_>>>()?;
        audit::check_inclusion(index, r["data"].as_str().unwrap_or("").as_bytes(), &proof, &cp)
            .with_context(|| format!("record {index} is not in the signed tree"))?;
    }
    // An incident's timeline: every step it states stands on a record proven above (the event
    // at that position, of that kind), so the T0→T+N figures are no more than the ledger says.
    if let Some(steps) = doc["timeline"]["steps"].as_array() {
        let proven: std::collections::BTreeMap<i64, Value> = records
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(r["data"].as_str()?).ok())
            .filter_map(|ev| Some((ev["sequence"].as_str()?.parse().ok()?, ev)))
            .collect();
        for s in steps {
            let seq = s["seq"].as_i64().context("a timeline step has no position")?;
            let ev = proven.get(&seq).with_context(|| format!("timeline step at {seq} has no proven record"))?;
            let (data, step) = (&ev["data"], s_(&s["step"]));
            let matches = data["event"].as_str() == Some(step.as_str())
                || data["reason"].as_str() == Some(step.as_str())
                || (step == "validated" && data["event"] == "serving_stats")
                || (step == "startup_deny" && data["event"] == "startup_deny");
            if !matches || data["model"] != s["model"] {
                bail!("timeline step at {seq} ({step}) is not what the record at that position says");
            }
        }
    }
    let a = &doc["attachments"];
    for r in a["release_records"].as_array().into_iter().flatten() {
        let (what, digest) =
            (format!("the release record of {}@{}", s_(&r["model"]), s_(&r["version"])), s_(&r["digest"]));
        let bytes = r["envelope"].as_str().with_context(|| format!("{what} has no envelope"))?.as_bytes();
        if fulcrum_core::Digest::of(bytes).to_string() != digest {
            bail!("{what} is not the document of digest {digest}");
        }
        let payload =
            open_dsse(bundle, bytes, fulcrum_agent::release::INTOTO_PAYLOAD_TYPE).with_context(|| what.clone())?;
        let st: Value = serde_json::from_slice(&payload).with_context(|| format!("{what}: not a statement"))?;
        if st["predicate"]["model"] != r["model"] || st["predicate"]["version"] != r["version"] {
            bail!("{what} names another version");
        }
    }
    for p in a["policy_snapshots"].as_array().into_iter().flatten() {
        let digest = s_(&p["digest"]);
        let bytes = p["envelope"].as_str().with_context(|| format!("policy snapshot {digest} has no envelope"))?;
        let payload = open_dsse(bundle, bytes.as_bytes(), fulcrum_server::policy::SNAPSHOT_MEDIA_TYPE)
            .with_context(|| format!("policy snapshot {digest}"))?;
        if fulcrum_core::Digest::of(&payload).to_string() != digest {
            bail!("policy snapshot {digest}: the signed snapshot has another digest");
        }
    }
    Ok(records.len())
}

fn ctx_print(ctx: &Ctx, v: &Value, text: impl FnOnce() -> String) {
    match ctx.output {
        crate::Output::Json => crate::outln!("{}", serde_json::to_string_pretty(v).expect("json prints")),
        crate::Output::Text => crate::outln!("{}", text()),
    }
}
