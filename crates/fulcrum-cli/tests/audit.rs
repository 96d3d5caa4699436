//! `fulcrum audit` against a real registry whose database is then tampered with directly (its
//! append-only triggers dropped, rows edited, removed, swapped, truncated, the whole database
//! rolled back to a backup): every tampering is detected and the first bad entry is named.

mod common;

use std::path::Path;

use common::{Server, ok, one_error_line, run_as, serve_with};
use serde_json::Value;
use sqlx::ConnectOptions as _;

/// Activity that writes events and gate decisions (and access batches).
fn activity(s: &Server, model: &str) {
    ok(&run_as(s, "ci", &["model", "create", model, "--domain", "risk"]));
    for v in ["v1", "v2"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("weights.bin"), format!("weights of {model} {v}")).unwrap();
        let card = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(card.path(), r#"{"owner": "risk", "intended_use": "scoring"}"#).unwrap();
        let d = dir.path().to_str().unwrap();
        ok(&run_as(
            s,
            "ci",
            &[
                "version",
                "register",
                model,
                v,
                "--dir",
                d,
                "--model-card",
                card.path().to_str().unwrap(),
                "--chg-id",
                "CHG-1",
            ],
        ));
        ok(&run_as(s, "rm", &["version", "promote", model, v, "--to", "Staging"]));
    }
}

fn verify(s: &Server, state: &Path) -> std::process::Output {
    run_as(s, "auditor", &["audit", "verify", "--state", state.to_str().unwrap(), "--output", "json"])
}

/// Copy a registry's data directory (the server stopped) for one tampering.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

async fn tamper(data: &Path, sql: &str) {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(data.join("registry.db"));
    let mut conn = opts.connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap();
}

/// The ledger index of the leaf standing for event `seq`.
async fn leaf_of_event(data: &Path, seq: i64) -> i64 {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(data.join("registry.db")).read_only(true);
    let mut conn = opts.connect().await.unwrap();
    sqlx::query_scalar("SELECT idx FROM ledger_leaves WHERE kind = 'event' AND ref = ?")
        .bind(seq)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

const DROP_GUARDS: &str = "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete; \
    DROP TRIGGER ledger_leaves_no_update; DROP TRIGGER ledger_leaves_no_delete; \
    DROP TRIGGER ledger_nodes_no_update; DROP TRIGGER ledger_nodes_no_delete; \
    DROP TRIGGER ledger_checkpoints_no_update; DROP TRIGGER ledger_checkpoints_no_delete;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_detected_and_the_first_bad_entry_named() {
    let base = tempfile::tempdir().unwrap();
    let witness = tempfile::tempdir().unwrap();
    let mut s = serve_with(&[], base);
    activity(&s, "fraud");
    let first = ok(&verify(&s, witness.path()));
    assert_eq!(first["verified"], true);
    let size = first["size"].as_u64().unwrap();
    assert!(
        size >= 5 && first["events"].as_u64().unwrap() >= 4 && first["decisions"].as_u64().unwrap() >= 1,
        "{first}"
    );
    // One entry's inclusion proof, checked against the signed checkpoint.
    let proof = ok(&run_as(&s, "auditor", &["audit", "proof", "1", "--output", "json"]));
    assert_eq!(proof["verified"], true);

    // A backup now; more activity, verified again (the auditor's witness grows).
    let _ = s.child.kill();
    let _ = s.child.wait();
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&s.dir.path().join("data"), &backup.path().join("data"));
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    let s = serve_with(&[], dir);
    activity(&s, "credit");
    // Checkpoints are signed at most once a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = ok(&verify(&s, witness.path()));
    assert!(second["size"].as_u64().unwrap() > size);
    assert_eq!(second["previously_verified"].as_u64(), Some(size));
    let mut s = s;
    let _ = s.child.kill();
    let _ = s.child.wait();
    let data = s.dir.path().join("data");

    // (what, SQL against a copy of the database, what `audit verify` must say)
    let e2 = leaf_of_event(&data, 2).await;
    let e3 = leaf_of_event(&data, 3).await;
    let e4 = leaf_of_event(&data, 4).await;
    let e1 = leaf_of_event(&data, 1).await;
    let cases: Vec<(&str, String, String)> = vec![
        (
            "an event edited",
            format!("{DROP_GUARDS} UPDATE events SET body = replace(body, '\"risk\"', '\"forged\"') WHERE seq = 2;"),
            format!("entry {e2}: the record was edited"),
        ),
        (
            "an event removed",
            format!("{DROP_GUARDS} DELETE FROM events WHERE seq = 3;"),
            format!("entry {e3}: the record is gone"),
        ),
        (
            "two events swapped",
            format!(
                "{DROP_GUARDS} UPDATE events SET body = (SELECT body FROM events WHERE seq = 4) || '' WHERE seq = 2; \
                 UPDATE events SET body = (SELECT body FROM events WHERE seq = 1) WHERE seq = 4;"
            ),
            format!("entry {}: the record was edited", e2.min(e4)),
        ),
        (
            "the events table truncated",
            format!("{DROP_GUARDS} DELETE FROM events;"),
            format!("entry {e1}: the record is gone"),
        ),
        (
            "the ledger truncated with the record tables",
            format!("{DROP_GUARDS} DELETE FROM ledger_leaves WHERE idx >= {size};"),
            format!("entry {size}:"),
        ),
        (
            "a record and its leaf both rewritten",
            format!(
                "{DROP_GUARDS} UPDATE events SET body = 'forged' WHERE seq = 2; \
                 UPDATE ledger_leaves SET hash = x'00' || substr(hash, 2) WHERE idx = {e2};"
            ),
            format!("entry {e2}:"),
        ),
    ];
    for (what, sql, want) in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&data, &copy.path().join("data"));
        tamper(&copy.path().join("data"), &sql).await;
        let w = tempfile::tempdir().unwrap();
        copy_dir(witness.path(), w.path());
        let s = serve_with(&[], copy);
        let err = one_error_line(&verify(&s, w.path()));
        assert!(err.contains(&want), "{what}: {err}");
    }

    // The database rolled back to the backup: the registry now signs fewer entries than this
    // auditor verified.
    let restored = tempfile::tempdir().unwrap();
    copy_dir(&backup.path().join("data"), &restored.path().join("data"));
    let w = tempfile::tempdir().unwrap();
    copy_dir(witness.path(), w.path());
    let s = serve_with(&[], restored);
    let err = one_error_line(&verify(&s, w.path()));
    assert!(err.contains("rolled back") && err.contains(&format!("this auditor saw {}", second["size"])), "{err}");
}

/// A change's evidence: its events and gate decisions with their inclusion proofs, signed,
/// written once to the evidence store with a retention, and verifiable offline; an archive changed
/// afterwards is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_of_a_change_is_signed_proven_and_written_once() {
    let s = serve_with(&[], tempfile::tempdir().unwrap());
    activity(&s, "fraud");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("chg-1.json");
    let v = ok(&run_as(
        &s,
        "auditor",
        &["audit", "evidence", "--chg", "CHG-1", "--out", file.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(v["verified"], true);
    assert!(v["records"].as_u64().unwrap() >= 4, "events and release decisions of CHG-1: {v}");
    let key = v["key"].as_str().unwrap();
    assert!(key.starts_with("acme/chg-CHG-1-"), "{key}");
    // Stored once, read-only, in the registry's evidence store.
    let stored = s.dir.path().join("data/evidence").join(key);
    assert!(std::fs::metadata(&stored).unwrap().permissions().readonly());
    assert_eq!(std::fs::read(&stored).unwrap(), std::fs::read(&file).unwrap());
    // Verifiable offline — no registry, no token — and not once changed.
    ok(&common::fulcrum(&["audit", "check-evidence", file.to_str().unwrap(), "--output", "json"], &[]));
    // Pinned to a bundle that marks the registry's key compromised, the same archive is refused.
    let mut compromised: Value =
        serde_json::to_value(fulcrum_client::Client::new(&s.url, None).unwrap().trust_bundle().await.unwrap()).unwrap();
    for k in compromised["keys"].as_array_mut().unwrap() {
        k["status"] = Value::String("compromised".into());
    }
    let pinned = out.path().join("compromised-bundle.json");
    std::fs::write(&pinned, compromised.to_string()).unwrap();
    let err = one_error_line(&common::fulcrum(
        &["audit", "check-evidence", file.to_str().unwrap(), "--bundle", pinned.to_str().unwrap()],
        &[],
    ));
    assert!(err.contains("compromised"), "{err}");
    // A second archive of the same change at once is another object, not a clash.
    let again = ok(&run_as(&s, "auditor", &["audit", "evidence", "--chg", "CHG-1", "--output", "json"]));
    assert_ne!(again["key"], v["key"], "two archives, two keys");
    let archive = std::fs::read_to_string(&file).unwrap();
    let mut env: Value = serde_json::from_str(&archive).unwrap();
    let payload = env["payload"].as_str().unwrap().to_owned();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    // The signed documents the records name travel with them: both versions' release records
    // and the policy snapshot that decided.
    let doc: Value = serde_json::from_slice(&b64.decode(&payload).unwrap()).unwrap();
    let releases: Vec<&str> = doc["attachments"]["release_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(releases, ["v1", "v2"], "{}", doc["attachments"]);
    assert!(!doc["attachments"]["policy_snapshots"].as_array().unwrap().is_empty(), "{}", doc["attachments"]);
    // An attachment swapped for other bytes, even with the archive re-signed by the registry's own
    // key, is refused: its digest, then its own signature, give it away.
    let (key, _) = fulcrum_sign::LocalKey::load_or_create(&s.dir.path().join("data/signing-key.pk8")).unwrap();
    let resign = |doc: &Value| {
        use fulcrum_sign::Signer as _;
        let payload = serde_json::to_vec(doc).unwrap();
        let media = fulcrum_server::evidence::EVIDENCE_MEDIA_TYPE;
        let sig = key.sign(&fulcrum_sign::dsse_pae(media, &payload)).unwrap();
        let env = serde_json::json!({"payloadType": media, "payload": b64.encode(&payload),
                                     "signatures": [{"keyid": key.kid(), "sig": b64.encode(sig)}]});
        let f = out.path().join("forged.json");
        std::fs::write(&f, env.to_string()).unwrap();
        run_as(&s, "auditor", &["audit", "check-evidence", f.to_str().unwrap()])
    };
    let mut forged = doc.clone();
    let r0 = &mut forged["attachments"]["release_records"][0];
    r0["envelope"] = Value::String(r0["envelope"].as_str().unwrap().replacen("payload", "payload ", 1));
    let err = one_error_line(&resign(&forged));
    assert!(err.contains("release record of fraud@v1 is not the document of digest"), "{err}");
    let mut forged = doc.clone();
    let r0 = &mut forged["attachments"]["release_records"][0];
    let mut inner: Value = serde_json::from_str(r0["envelope"].as_str().unwrap()).unwrap();
    inner["signatures"][0]["sig"] = Value::String(b64.encode([7u8; 64]));
    let bytes = inner.to_string();
    r0["digest"] = Value::String(fulcrum_core::Digest::of(bytes.as_bytes()).to_string());
    r0["envelope"] = Value::String(bytes);
    let err = one_error_line(&resign(&forged));
    assert!(err.contains("no signature by a key of the pinned bundle"), "{err}");
    // The untouched document, re-signed the same way, still verifies (the forgeries above failed
    // for what they changed, not for the re-signing).
    ok(&resign(&doc));
    let forged = String::from_utf8(b64.decode(payload).unwrap()).unwrap().replacen("CHG-1", "CHG-2", 1);
    env["payload"] = Value::String(b64.encode(forged));
    std::fs::write(&file, env.to_string()).unwrap();
    let err = one_error_line(&run_as(&s, "auditor", &["audit", "check-evidence", file.to_str().unwrap()]));
    assert!(err.contains("signature does not verify"), "{err}");
    // Nothing names an unknown change.
    let err = one_error_line(&run_as(&s, "auditor", &["audit", "evidence", "--chg", "CHG-404"]));
    assert!(err.contains("not found"), "{err}");
}

fn verify_new_only(s: &Server, state: &Path) -> std::process::Output {
    run_as(s, "auditor", &["audit", "verify", "--new-only", "--state", state.to_str().unwrap(), "--output", "json"])
}

/// A routine run (`--new-only`) reads only what was added since the witness and still names a
/// bad entry among those; a record edited after it was verified is left to the full run, which
/// reads everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routine_run_reads_only_new_entries_and_a_full_run_reads_them_all() {
    let witness = tempfile::tempdir().unwrap();
    let mut s = serve_with(&[], tempfile::tempdir().unwrap());
    activity(&s, "fraud");
    let size = ok(&verify(&s, witness.path()))["size"].as_u64().unwrap();
    activity(&s, "credit");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let _ = s.child.kill();
    let _ = s.child.wait();
    let data = s.dir.path().join("data");
    let last_event: i64 = {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(data.join("registry.db")).read_only(true);
        let mut conn = opts.connect().await.unwrap();
        sqlx::query_scalar("SELECT MAX(seq) FROM events").fetch_one(&mut conn).await.unwrap()
    };
    let (old, new) = (leaf_of_event(&data, 2).await, leaf_of_event(&data, last_event).await);
    assert!(old < size as i64 && new >= size as i64, "{old} is witnessed, {new} is not");

    // A copy of the registry and of the auditor's state, with `sql` applied.
    let case = |sql: String| {
        let (data, witness) = (data.clone(), witness.path().to_owned());
        async move {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&data, &dir.path().join("data"));
            tamper(&dir.path().join("data"), &sql).await;
            let state = tempfile::tempdir().unwrap();
            copy_dir(&witness, state.path());
            (serve_with(&[], dir), state)
        }
    };
    let edit = |seq: i64| {
        format!("{DROP_GUARDS} UPDATE events SET body = replace(body, '\"acme\"', '\"forged\"') WHERE seq = {seq};")
    };

    // Untouched: the routine run reads only the new entries.
    let (s, state) = case("SELECT 1;".into()).await;
    let v = ok(&verify_new_only(&s, state.path()));
    assert_eq!(
        (v["previously_verified"].as_u64(), v["read"].as_u64()),
        (Some(size), Some(v["size"].as_u64().unwrap() - size))
    );
    // A new entry edited: the routine run names it.
    let (s, state) = case(edit(last_event)).await;
    let err = one_error_line(&verify_new_only(&s, state.path()));
    assert!(err.contains(&format!("entry {new}: the record was edited")), "{err}");
    // An entry verified before, edited since: only the full run reads it again, and names it.
    let (s, state) = case(edit(2)).await;
    ok(&verify_new_only(&s, state.path()));
    let err = one_error_line(&verify(&s, state.path()));
    assert!(err.contains(&format!("entry {old}: the record was edited")), "{err}");
}

/// `audit verify` replays the governance state the verified events imply and holds the registry
/// to it: a revocation undone by editing the database while the registry runs (the trigger that
/// forbids it dropped first) is named — the version, what is served, what the ledger implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_a_revocation_undone_in_the_database() {
    let s = serve_with(&[], tempfile::tempdir().unwrap());
    activity(&s, "fraud");
    ok(&run_as(&s, "bo", &["version", "revoke", "fraud", "v2", "--reason", "leak", "--inc-id", "INC-1"]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let clean = ok(&verify(&s, tempfile::tempdir().unwrap().path()));
    assert_eq!(clean["governance_state"]["versions"], 2, "{clean}");
    tamper(
        &s.dir.path().join("data"),
        "DROP TRIGGER versions_revocation_is_final; UPDATE versions SET hold = 'none' WHERE label = 'v2';",
    )
    .await;
    let err = one_error_line(&verify(&s, tempfile::tempdir().unwrap().path()));
    assert!(err.contains("fraud v2: the registry serves Staging/none, the ledger implies Staging/revoked"), "{err}");
}
