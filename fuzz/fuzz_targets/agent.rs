//! What the serving agent reads from a registry it does not trust: release-record envelopes
//! (and, signed by a trusted key, any payload as one), trust-bundle chain links with any body,
//! and ledger evidence (an entry's bytes, a checkpoint note, a gate leaf). Never panics; a random
//! envelope never verifies; a signed payload passes only if it really is a release record for
//! the asked artifact; random ledger evidence never proves anything.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use fulcrum_agent::chain::{Link, follow};
use fulcrum_agent::ledger;
use fulcrum_agent::release::{INTOTO_PAYLOAD_TYPE, verify_record};
use fulcrum_core::resolve::{Decision, ResolveDocument, Uris};
use fulcrum_sign::{Alg, KeyStatus, LocalKey, PublishedKey, Signer, TrustBundle};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static LocalKey {
    static K: OnceLock<LocalKey> = OnceLock::new();
    K.get_or_init(|| LocalKey::ephemeral(Alg::Ed25519).unwrap())
}

fn bundle() -> TrustBundle {
    let k = key();
    TrustBundle {
        version: 1,
        issued_at: "2026-01-01T00:00:00Z".into(),
        expires_at: Some("2099-01-01T00:00:00Z".into()),
        keys: vec![PublishedKey {
            kid: k.kid().into(),
            alg: k.public_key().alg(),
            public_key: fulcrum_sign::b64(k.public_key().spki_der()),
            valid_from: "2026-01-01T00:00:00Z".into(),
            valid_until: None,
            status: KeyStatus::Active,
            development: true,
        }],
        sigstore: None,
    }
}

fn doc() -> ResolveDocument {
    ResolveDocument {
        name: "fraud".into(),
        version: "v1".into(),
        stage: "Approved".into(),
        artifact_digest: format!("sha256:{:064x}", 1),
        policy_digest: format!("sha256:{:064x}", 2),
        revoked: false,
        quarantined: false,
        uris: Uris { artifact: "/v1/blobs/a".into(), attestation: "/v1/blobs/b".into() },
        model_card_ref: "MC".into(),
        seq: 1,
        tenant: "t".into(),
        domain: "d".into(),
        reference: "fraud@production".into(),
        alias: Some("production".into()),
        alias_position: Some(1),
        alias_chg_id: None,
        alias_inc_id: None,
        alias_cause: None,
        env: "prod".into(),
        ledger_index: Some(0),
        decision: Decision::Permit,
        deny_reason: None,
        issued_at: "2026-01-01T00:00:00Z".into(),
        expires_at: "2099-01-01T00:00:00Z".into(),
        kid: key().kid().into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let b = bundle();
    let d = doc();
    assert!(verify_record(&b, data, &d).is_err(), "an unsigned envelope verified");
    // The same bytes as the payload of a validly signed envelope.
    let mut pae = format!("DSSEv1 {} {} {} ", INTOTO_PAYLOAD_TYPE.len(), INTOTO_PAYLOAD_TYPE, data.len()).into_bytes();
    pae.extend_from_slice(data);
    let env = serde_json::json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(data),
        "payloadType": INTOTO_PAYLOAD_TYPE,
        "signatures": [{"keyid": key().kid(), "sig": fulcrum_sign::b64(&key().sign(&pae).unwrap())}],
    });
    if verify_record(&b, &serde_json::to_vec(&env).unwrap(), &d).is_ok() {
        let v: serde_json::Value = serde_json::from_slice(data).expect("a passing payload is JSON");
        assert_eq!(v["predicate"]["model"], "fraud");
    }
    // The bytes as the body of the next trust bundle, signed by the trusted key.
    let body = String::from_utf8_lossy(data).into_owned();
    let link = Link {
        version: 2,
        kid: key().kid().into(),
        signature: fulcrum_sign::b64(&key().sign(body.as_bytes()).unwrap()),
        endorsements: vec![],
        body,
    };
    if let Ok(Some(next)) = follow(&b, &[link], time::OffsetDateTime::now_utc()) {
        assert_eq!(next.version, 2);
    }
    // The bytes as ledger evidence: an entry, a checkpoint note, a release predicate.
    let text = String::from_utf8_lossy(data);
    let cp = ledger::SignedCheckpoint { note: &text, origin: "fulcrum/registry-audit", kid: key().kid() };
    assert!(ledger::open_checkpoint(&b, cp).is_err(), "an unsigned note verified");
    let tree = fulcrum_ledger::checkpoint::Checkpoint { origin: "o".into(), size: 4, root: [0; 32], state: None };
    assert!(ledger::check_answer_leaf(&d, &tree, data, &[[1; 32], [2; 32]]).is_err());
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(g) = ledger::gate_leaf(&v)
    {
        assert!(ledger::check_gate_leaf(&g, &tree, &[]).is_err());
    }
});
