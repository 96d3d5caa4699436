//! Ledger proofs on demand (`--require-ledger-proof`) against a real registry: the answer's
//! `ledger_index` names the lifecycle event behind it and the release record names the release
//! gate's decision leaf; an agent that demands it proves both under a checkpoint signed by a
//! pinned key before it places anything. Then every way the evidence could be forged or missing,
//! as rows of data over the real registry's own checkpoint, entry and proofs.

mod common;

use base64::Engine as _;
use common::{Reg, agent, as_, fraud_v1, read, register};
use fulcrum_agent::check::Deny;
use fulcrum_agent::ledger::{self, GateLeaf, SignedCheckpoint};
use fulcrum_core::Digest;
use fulcrum_core::resolve::ResolveDocument;
use fulcrum_ledger::Hash;
use fulcrum_sign::{KeyStatus, TrustBundle};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The entry at `index` as a reader of decisions sees it.
async fn entry(r: &Reg, who: &str, index: u64) -> Value {
    let page = as_(r, who).get(&format!("/v1/ledger/entries?start={index}&end={}", index + 1)).await.unwrap();
    page["entries"][0].clone()
}

async fn release_predicate(r: &Reg, bundle: &TrustBundle, doc: &ResolveDocument) -> Value {
    let d: Digest = doc.uris.attestation.strip_prefix("/v1/blobs/").unwrap().parse().unwrap();
    let bytes = as_(r, "agent").get_bytes(&format!("/v1/blobs/{d}")).await.unwrap();
    fulcrum_agent::release::verify_record(bundle, &bytes, doc).unwrap().predicate
}

#[tokio::test]
async fn an_agent_demanding_proofs_places_only_what_the_ledger_holds() {
    let r = fraud_v1().await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model");
    let mut a = agent(&r, state.path()).await;
    a.require_ledger_proof = true;

    let p = a.fetch("fraud@production", "prod", &dest).await.unwrap();
    assert_eq!(read(&dest, "weights.bin"), b"weights-one");
    // The answer's leaf is the event that pointed the alias at v1, with its change id.
    let first = p.document.ledger_index.expect("the answer names its ledger leaf");
    let e = entry(&r, "policy", first).await;
    let ev: Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
    assert_eq!(e["kind"], "event");
    assert_eq!(
        (ev["data"]["event"].as_str(), ev["data"]["alias"].as_str(), ev["data"]["version"].as_str()),
        (Some("alias_updated"), Some("production"), Some("v1"))
    );
    assert_eq!(ev["data"]["chg_id"], "CHG-1");

    // The release record names the gate's decision leaf; the stored leaf has that hash, and the
    // decision it hashes is the allow for this version.
    let predicate = release_predicate(&r, &a.bundle, &p.document).await;
    let gate = ledger::gate_leaf(&predicate).unwrap();
    let d = entry(&r, "policy", gate.index).await;
    assert_eq!(d["kind"], "decision");
    let record = d["data"].as_str().unwrap();
    assert_eq!(fulcrum_ledger::merkle::leaf_hash(record.as_bytes()), gate.leaf_hash);
    let decision: Value = serde_json::from_str(record).unwrap();
    assert_eq!(
        (
            decision["path"].as_str(),
            decision["result"]["allow"].as_bool(),
            decision["input"]["version"]["label"].as_str()
        ),
        (Some("fulcrum/release/decision"), Some(true), Some("v1")),
        "{decision}"
    );
    // A serving identity reads the event's bytes but not the decision's (only its hash).
    assert!(entry(&r, "agent", first).await["data"].is_string());
    let hidden = entry(&r, "agent", gate.index).await;
    assert!(hidden["data"].is_null() && hidden["leaf_hash"].is_string(), "{hidden}");

    // A revocation rolls the alias back: the new answer stands on the newer rollback event, and
    // is proven again before v1 is placed anew.
    register(&r, "v2", &[("weights.bin", b"weights-two")]).await;
    assert_eq!(a.fetch("fraud@production", "prod", &dest).await.unwrap().document.version, "v2");
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/v2/revocation", &json!({"reason": "drift", "inc_id": "INC-9"}))
        .await
        .unwrap();
    let p = a.fetch("fraud@production", "prod", &dest).await.unwrap();
    assert_eq!(read(&dest, "weights.bin"), b"weights-one");
    let rollback = p.document.ledger_index.unwrap();
    assert!(rollback > first, "{rollback} after {first}");
    let ev: Value = serde_json::from_str(entry(&r, "policy", rollback).await["data"].as_str().unwrap()).unwrap();
    assert_eq!((ev["data"]["event"].as_str(), ev["data"]["inc_id"].as_str()), (Some("alias_updated"), Some("INC-9")));
}

/// What the registry handed out for one answer, ready to be tampered with.
#[derive(Clone)]
struct Evidence {
    doc: ResolveDocument,
    bundle: TrustBundle,
    note: String,
    origin: String,
    kid: String,
    data: Vec<u8>,
    proof: Vec<Hash>,
    gate: GateLeaf,
    gate_proof: Vec<Hash>,
}

impl Evidence {
    fn check(&self) -> Result<(), Deny> {
        let cp = ledger::open_checkpoint(
            &self.bundle,
            SignedCheckpoint { note: &self.note, origin: &self.origin, kid: &self.kid },
        )?;
        ledger::check_answer_leaf(&self.doc, &cp, &self.data, &self.proof)?;
        ledger::check_gate_leaf(&self.gate, &cp, &self.gate_proof)
    }
}

async fn proof(r: &Reg, index: u64, size: u64) -> Vec<Hash> {
    let p = as_(r, "agent").get(&format!("/v1/ledger/proofs/inclusion?index={index}&tree_size={size}")).await.unwrap();
    let hashes: Vec<String> = serde_json::from_value(p["hashes"].clone()).unwrap();
    ledger::decode_hashes(&hashes).unwrap()
}

async fn evidence(r: &Reg) -> Evidence {
    let state = tempfile::tempdir().unwrap();
    let a = agent(r, state.path()).await;
    let doc = a.resolve("fraud@production", "prod").await.unwrap();
    let predicate = release_predicate(r, &a.bundle, &doc).await;
    let gate = ledger::gate_leaf(&predicate).unwrap();
    let index = doc.ledger_index.unwrap();
    // A checkpoint covering both leaves (signed at most once a second).
    let cp = loop {
        let cp = as_(r, "agent").get("/v1/ledger/checkpoint").await.unwrap();
        if cp["size"].as_u64().unwrap() > index.max(gate.index) {
            break cp;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let size = cp["size"].as_u64().unwrap();
    let data = entry(r, "agent", index).await["data"].as_str().unwrap().as_bytes().to_vec();
    Evidence {
        proof: proof(r, index, size).await,
        gate_proof: proof(r, gate.index, size).await,
        bundle: a.bundle.clone(),
        note: cp["note"].as_str().unwrap().into(),
        origin: cp["origin"].as_str().unwrap().into(),
        kid: cp["kid"].as_str().unwrap().into(),
        doc,
        data,
        gate,
    }
}

type Tamper = fn(&mut Evidence);

#[tokio::test]
async fn forged_or_missing_ledger_evidence_is_refused() {
    let r = fraud_v1().await;
    // Another model's event, to pass off as this answer's.
    as_(&r, "ci").post("/v1/models", &json!({"name": "other", "domain": "fraud"})).await.unwrap();
    let good = evidence(&r).await;
    good.check().expect("the registry's own evidence proves the answer");

    let rows: Vec<(&str, Tamper)> = vec![
        ("the answer names no ledger entry", |e| e.doc.ledger_index = None),
        ("the answer points past the checkpoint", |e| e.doc.ledger_index = Some(1 << 40)),
        ("the entry is about another version", |e| e.doc.version = "v9".into()),
        ("the entry is about another model", |e| e.doc.name = "other".into()),
        ("the entry is of another tenant", |e| e.doc.tenant = "globex".into()),
        ("the entry's bytes were edited", |e| {
            let s = String::from_utf8(e.data.clone()).unwrap().replacen("CHG-1", "CHG-2", 1);
            e.data = s.into_bytes();
        }),
        ("the entry is not an event", |e| e.data = br#"{"allow":true}"#.to_vec()),
        ("a proof hash was flipped", |e| e.proof[0][0] ^= 1),
        ("the proof was cut short", |e| {
            e.proof.pop();
        }),
        ("the answer points at a neighbouring leaf", |e| e.doc.ledger_index = e.doc.ledger_index.map(|i| i - 1)),
        ("the checkpoint is signed by a key the bundle does not hold", |e| e.kid = "k-unknown".into()),
        ("the checkpoint's key is compromised", |e| {
            for k in &mut e.bundle.keys {
                k.status = KeyStatus::Compromised;
            }
        }),
        ("the checkpoint's root was replaced", |e| {
            let mut lines: Vec<String> = e.note.lines().map(str::to_owned).collect();
            lines[2] = B64.encode([7u8; 32]);
            e.note = lines.join("\n") + "\n";
        }),
        ("the checkpoint's origin is another log", |e| e.origin = "elsewhere/audit".into()),
        ("the gate decision's hash is not the stored leaf", |e| e.gate.leaf_hash[5] ^= 1),
        ("the gate decision points past the checkpoint", |e| e.gate.index = 1 << 40),
        ("the gate decision's proof is empty", |e| e.gate_proof.clear()),
    ];
    for (what, tamper) in rows {
        let mut e = good.clone();
        tamper(&mut e);
        match e.check() {
            Err(d) => assert_eq!(d.code(), "ledger_unproven", "{what}: {d}"),
            Ok(()) => panic!("{what}: accepted"),
        }
    }
    // A release record that names no gate decision cannot be proven either.
    let e = ledger::gate_leaf(&json!({"model": "fraud", "version": "v1"})).unwrap_err();
    assert_eq!(e.code(), "ledger_unproven");
}

/// SPEC §8 / issue: a permit checked with `--require-ledger-proof` is proven *current*. A permit
/// recorded before a revocation, still unexpired and validly signed, replayed to a fresh agent
/// (no marks to refuse it): without proofs it would be placed; demanding proofs, the agent asks
/// for the version's leaf in the state map of a checkpoint signed after the permit was issued,
/// and the ledger says revoked.
#[tokio::test]
async fn a_permit_from_before_a_revocation_is_not_proven_current() {
    let r = fraud_v1().await;
    let recorded = as_(&r, "agent").resolve_unverified("fraud@production", "prod").await.unwrap();
    assert!(String::from_utf8_lossy(&recorded.0).contains("\"decision\":\"permit\""));
    // Before the revocation the same proof passes: the recorded permit is current.
    let mitm = common::replaying_proxy(&r.url, recorded.clone()).await;
    let out = tempfile::tempdir().unwrap();
    let states: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = common::agent_via(&r, &mitm, states[0].path()).await;
    a.require_ledger_proof = true;
    a.fetch("fraud@production", "prod", &out.path().join("before")).await.unwrap();

    as_(&r, "bo")
        .post("/v1/models/fraud/versions/v1/revocation", &json!({"reason": "fraud ring", "inc_id": "INC-5"}))
        .await
        .unwrap();
    // Without proofs, a fresh agent takes the replayed permit: nothing it holds says otherwise.
    let plain = common::agent_via(&r, &mitm, states[1].path()).await;
    plain.fetch("fraud@production", "prod", &out.path().join("plain")).await.expect_err(
        "the registry itself refuses the revoked version's bytes, so even a replayed permit cannot place it",
    );
    // Demanding proofs, the state map says revoked.
    let mut a = common::agent_via(&r, &mitm, states[2].path()).await;
    a.require_ledger_proof = true;
    let e = a.fetch("fraud@production", "prod", &out.path().join("after")).await.unwrap_err();
    assert_eq!(e.code(), "permit_not_current", "{e}");
    assert!(e.to_string().contains("revoked"), "{e}");
    assert!(!out.path().join("after").exists());
}

/// The state check as data over the registry's own proof: each way of forging or mismatching
/// it is refused.
#[tokio::test]
async fn forged_state_proofs_are_refused() {
    let r = fraud_v1().await;
    // A second model, so the state map has more than one leaf and the proof has hashes to bend.
    as_(&r, "ci").post("/v1/models", &json!({"name": "risk", "domain": "risk"})).await.unwrap();
    common::register_as(
        &r,
        "risk",
        "v1",
        &[("w.bin", b"risk weights")],
        json!({"owner": "r", "intended_use": "s"}),
        "production",
    )
    .await;
    let bundle = as_(&r, "agent").trust_bundle().await.unwrap();
    let doc = as_(&r, "agent").resolve("fraud@production", "prod", &bundle).await.unwrap().document;
    let sp = as_(&r, "agent").state_proof("fraud", "v1", Some(&doc.issued_at)).await.unwrap();
    let cp = ledger::open_checkpoint(
        &bundle,
        SignedCheckpoint {
            note: sp["note"].as_str().unwrap(),
            origin: sp["origin"].as_str().unwrap(),
            kid: sp["kid"].as_str().unwrap(),
        },
    )
    .unwrap();
    let hashes: Vec<String> = serde_json::from_value(sp["hashes"].clone()).unwrap();
    let hashes = ledger::decode_hashes(&hashes).unwrap();
    let leaf = sp["leaf"].as_str().unwrap().to_owned();
    let (index, count) = (sp["index"].as_u64().unwrap(), sp["count"].as_u64().unwrap());
    let check = |doc: &ResolveDocument,
                 cp: &fulcrum_ledger::checkpoint::Checkpoint,
                 leaf: &str,
                 index: u64,
                 hashes: &[Hash]| {
        ledger::check_current(doc, cp, ledger::StateProof { leaf: leaf.as_bytes(), index, count, hashes })
    };
    check(&doc, &cp, &leaf, index, &hashes).expect("the registry's own proof holds");

    let revoked_leaf = leaf.replace("\nnone", "\nrevoked");
    let mut other_version = doc.clone();
    other_version.version = "v9".into();
    let mut later = doc.clone();
    later.issued_at = "2099-01-01T00:00:00Z".into();
    let no_state = fulcrum_ledger::checkpoint::Checkpoint { state: None, ..cp.clone() };
    let mut bad_hash = hashes.clone();
    if let Some(h) = bad_hash.first_mut() {
        h[0] ^= 1;
    }
    type Row<'a> = (&'a str, ResolveDocument, fulcrum_ledger::checkpoint::Checkpoint, String, u64, Vec<Hash>, &'a str);
    let rows: Vec<Row> = vec![
        (
            "a leaf edited to say revoked",
            doc.clone(),
            cp.clone(),
            revoked_leaf,
            index,
            hashes.clone(),
            "ledger_unproven",
        ),
        (
            "the leaf of another version",
            other_version,
            cp.clone(),
            leaf.clone(),
            index,
            hashes.clone(),
            "ledger_unproven",
        ),
        (
            "a checkpoint older than the answer",
            later,
            cp.clone(),
            leaf.clone(),
            index,
            hashes.clone(),
            "ledger_unproven",
        ),
        (
            "a checkpoint without a state map",
            doc.clone(),
            no_state,
            leaf.clone(),
            index,
            hashes.clone(),
            "ledger_unproven",
        ),
        ("another index", doc.clone(), cp.clone(), leaf.clone(), index + 1, hashes.clone(), "ledger_unproven"),
        ("garbage leaf", doc.clone(), cp.clone(), "nonsense".into(), index, hashes.clone(), "ledger_unproven"),
    ];
    for (what, d, c, l, i, h, code) in rows {
        let e = check(&d, &c, &l, i, &h).unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e}");
    }
    assert!(count >= 2 && !bad_hash.is_empty(), "the map holds both models: {count}");
    assert_eq!(check(&doc, &cp, &leaf, index, &bad_hash).unwrap_err().code(), "ledger_unproven", "a bent proof");
}
