//! The agent against a real registry (in-process, loopback): fetch places exactly the permitted
//! version's bytes; a revocation makes the next start fetch the rolled-back version (an
//! authorised downgrade); tampered registry bytes, a revoked reference and an unpinned key each
//! end in a named deny with the destination untouched; every decision is reported.

mod common;

use common::{Reg, agent, as_, read, register, registry};
use fulcrum_core::Digest;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Value, json};

async fn startup_reports(r: &Reg) -> Vec<Value> {
    let events = as_(r, "rm").get("/v1/events?limit=1000").await.unwrap();
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_str().unwrap().contains("startup"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn fetch_places_the_permitted_version_and_follows_a_rollback() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one"), ("config/model.json", b"{\"v\":1}")]).await;
    register(&r, "v2", &[("weights.bin", b"weights-two"), ("config/model.json", b"{\"v\":2}")]).await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model");
    let a = agent(&r, state.path()).await;

    let p = a.fetch("fraud@production", "prod", &dest).await.unwrap();
    assert_eq!(p.document.version, "v2");
    // The policy snapshot the answer names was verified and kept.
    let policy: Digest = p.document.policy_digest.parse().unwrap();
    assert_eq!(Digest::of(&std::fs::read(a.state.blob(&policy)).unwrap()), policy);
    assert_eq!(read(&dest, "weights.bin"), b"weights-two");
    assert_eq!(read(&dest, "config/model.json"), b"{\"v\":2}");
    // Progress counted every byte of the files once (what a terminal shows while fetching).
    let (done, total) = (a.progress.done.load(Relaxed), a.progress.total.load(Relaxed));
    assert_eq!((done, total), (p.manifest.total_size(), p.manifest.total_size()));

    // Revocation: the alias rolls back to v1 (a signed alias move), so the next start places v1.
    as_(&r, "rm")
        .post("/v1/models/fraud/versions/v2/revocation", &json!({"reason": "drift", "inc_id": "INC-7"}))
        .await
        .unwrap();
    let p = a.fetch("fraud@production", "prod", &dest).await.unwrap();
    assert_eq!(p.document.version, "v1");
    assert_eq!(read(&dest, "weights.bin"), b"weights-one");
    // The revoked version, asked for by digest, is a deny with the registry's reason.
    let pinned_v2 = format!("fraud@{}", {
        let v = as_(&r, "rm").get("/v1/models/fraud/versions/v2").await.unwrap();
        v["artifact_digest"].as_str().unwrap().to_owned()
    });
    let e = a.fetch(&pinned_v2, "prod", &out.path().join("other")).await.unwrap_err();
    assert_eq!(e.code(), "registry_deny", "{e}");
    assert!(!out.path().join("other").exists(), "nothing placed on a deny");

    let reports = startup_reports(&r).await;
    let kinds: Vec<&str> = reports.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| k.ends_with("startup_permit")).count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| k.ends_with("startup_deny")).count(), 1, "{kinds:?}");
    // The deny names what it refused: the version and artifact digest the answer claimed, and
    // the reason; the registry counts it per version and reason.
    let deny = reports.iter().find(|e| e["type"].as_str().unwrap().ends_with("startup_deny")).unwrap();
    let v2_digest = pinned_v2.strip_prefix("fraud@").unwrap();
    assert_eq!(
        (deny["data"]["version"].as_str(), deny["data"]["artifact_digest"].as_str(), deny["data"]["reason"].as_str()),
        (Some("v2"), Some(v2_digest), Some("registry_deny")),
        "{deny}"
    );
    let m = reqwest::get(format!("{}/metrics", r.url)).await.unwrap().text().await.unwrap();
    assert!(
        m.contains(r#"fulcrum_version_startups_total{tenant="acme",model="fraud",version="v2",env="prod",decision="deny",reason="registry_deny"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn tampered_bytes_and_untrusted_keys_are_denied() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("model");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("previous.bin"), b"what was there").unwrap();

    // Altered bytes on the way (a man in the middle): the agent's own check refuses them.
    let d = Digest::of(b"weights-one");
    let state = tempfile::tempdir().unwrap();
    let mitm = common::lying_proxy(&r.url, d, b"weights-0ne").await;
    let a = common::agent_via(&r, &mitm, state.path()).await;
    let e = a.fetch("fraud@production", "prod", &dest).await.unwrap_err();
    assert_eq!(e.code(), "artifact_tampered", "{e}");
    assert_eq!(read(&dest, "previous.bin"), b"what was there", "destination untouched");

    // A byte flipped in the registry's own blob store: the registry cuts the transfer short (it
    // hashes what it serves), then refuses the blob by name; nothing is placed either way.
    let stored = r.dir.path().join("data/blobs/sha256").join(&d.hex()[..2]).join(&d.hex()[2..]);
    assert!(stored.exists(), "the registry's blob layout is sha256/ab/cdef…");
    std::fs::write(&stored, b"weights-0ne").unwrap();
    let state = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    let e = a.fetch("fraud@production", "prod", &dest).await.unwrap_err();
    assert_eq!(e.code(), "registry_unreachable", "{e}");
    let e = a.fetch("fraud@production", "prod", &dest).await.unwrap_err();
    assert_eq!(e.code(), "blob_corrupt", "{e}");
    assert_eq!(read(&dest, "previous.bin"), b"what was there", "destination untouched");

    // A bundle that does not hold the registry's key: nothing verifies.
    let mut a = agent(&r, state.path()).await;
    a.bundle.keys.clear();
    let e = a.fetch("fraud@production", "prod", &dest).await.unwrap_err();
    assert_eq!(e.code(), "unknown_kid", "{e}");
    // A path is not a registry reference.
    let e = a.fetch("./models/fraud", "prod", &dest).await.unwrap_err();
    assert_eq!(e.code(), "bad_reference");
}

/// Registry unreachable: a start from the last permitted answer (re-verified, unexpired) and
/// the verified cache, for exactly that version; without a kept answer, a deny.
#[tokio::test]
async fn registry_down_starts_only_from_the_last_permitted_answer() {
    let mut r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    let fresh = tempfile::tempdir().unwrap();
    let b = agent(&r, fresh.path()).await;
    let p = a.fetch("fraud@production", "prod", &out.path().join("m1")).await.unwrap();
    assert_eq!(p.mode, fulcrum_agent::fetch::Mode::Online);

    r.down().await;
    let p = a.fetch("fraud@production", "prod", &out.path().join("m2")).await.unwrap();
    assert_eq!((p.mode, p.document.version.as_str()), (fulcrum_agent::fetch::Mode::Degraded, "v1"));
    assert_eq!(read(&out.path().join("m2"), "weights.bin"), b"weights-one");
    // Another reference was never permitted here: nothing to start from.
    let e = a.fetch("fraud@canary", "prod", &out.path().join("m3")).await.unwrap_err();
    assert_eq!(e.code(), "registry_unreachable");
    // A fresh agent has no kept answer.
    let e = b.fetch("fraud@production", "prod", &out.path().join("m4")).await.unwrap_err();
    assert_eq!(e.code(), "registry_unreachable");
    assert!(!out.path().join("m4").exists());
}

/// The binary: `pin`, `resolve` printing the pinned reference, `fetch`; a deny exits 2 with one
/// line naming the reason.
#[tokio::test]
async fn the_binary_pins_resolves_fetches_and_denies_in_one_line() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("token"), "tok-agent\n").unwrap();
    let run = |args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_fulcrum-agent"));
        c.env_remove("FULCRUM_ENV");
        c.arg("--registry")
            .arg(&r.url)
            .arg("--token-file")
            .arg(work.path().join("token"))
            .arg("--bundle")
            .arg(work.path().join("bundle.json"))
            .arg("--state")
            .arg(work.path().join("state"))
            .args(args);
        c.output()
    };
    let pin = run(&["pin", work.path().join("bundle.json").to_str().unwrap()]).await.unwrap();
    assert!(pin.status.success(), "{}", String::from_utf8_lossy(&pin.stderr));
    let out = run(&["resolve", "--ref", "fraud@production", "--env", "prod"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pinned = String::from_utf8(out.stdout).unwrap();
    let v = as_(&r, "rm").get("/v1/models/fraud/versions/v1").await.unwrap();
    assert_eq!(pinned.trim(), format!("fraud@{}", v["artifact_digest"].as_str().unwrap()));
    let dest = work.path().join("model");
    let out =
        run(&["fetch", "--ref", "fraud@production", "--env", "prod", "--dest", dest.to_str().unwrap()]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(&dest, "weights.bin"), b"weights-one");
    // As a KServe storage initializer: `fetch SOURCE DEST`.
    let kserve = work.path().join("mnt-models");
    let out = run(&["fetch", "fulcrum://fraud@production?env=prod", kserve.to_str().unwrap()]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(&kserve, "weights.bin"), b"weights-one");
    // Without an environment anywhere: a usage error, exit 1, one line.
    let out = run(&["fetch", "fulcrum://fraud@production", kserve.to_str().unwrap()]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = run(&["fetch", "s3://bucket/model", kserve.to_str().unwrap()]).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "only fulcrum:// sources");
    // An oci:// tag can be moved to other bytes: refused before anything is asked, one line,
    // nothing placed. A digest-pinned image is served through the registry: one that no version
    // was registered from is a deny (exit 2), nothing placed.
    let oci_dest = work.path().join("oci-models");
    let pinned = "oci://registry.example.com/models/fraud@sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let both = "oci://registry.example.com/models/fraud:v1@sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    for (src, reason, code) in [
        ("oci://registry.example.com/models/fraud:v1", "oci_tag_refused", 1),
        ("oci://registry.example.com/models/fraud", "oci_tag_refused", 1),
        (both, "oci_tag_refused", 1),
        ("oci://registry.example.com/models/fraud@sha256:5891", "bad_reference", 1),
        (pinned, "oci_not_registered", 2),
    ] {
        let out = run(&["fetch", "--env", "prod", src, oci_dest.to_str().unwrap()]).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{src}: {err}");
        assert!(err.contains(reason) && err.trim().lines().count() == 1, "{src}: {err}");
        assert!(!oci_dest.exists());
    }
    // The staging env may not load it from a prod identity: a deny, one line, exit 2.
    let out = run(&["resolve", "--ref", "fraud@production", "--env", "staging"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("fulcrum-agent: deny "), "{err}");
    // A path is not a registry reference: refused before anything is asked.
    let out = run(&["resolve", "--ref", "/etc/passwd", "--env", "prod"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "a path is refused as a reference");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_reference"));
}

/// Endless data: a registry (or anything in between) serving more bytes than the signed
/// manifest names is cut off at that size and denied; nothing is placed or cached.
#[tokio::test]
async fn oversized_blob_is_cut_off() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let d = Digest::of(b"weights-one");
    let stored = r.dir.path().join("data/blobs/sha256").join(&d.hex()[..2]).join(&d.hex()[2..]);
    std::fs::write(&stored, vec![b'x'; 4 << 20]).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await;
    let e = a.fetch("fraud@production", "prod", &out.path().join("model")).await.unwrap_err();
    assert_eq!(e.code(), "artifact_tampered", "{e}");
    assert!(e.to_string().contains("larger than the 11 bytes"), "{e}");
    assert!(!out.path().join("model").exists());
    assert!(!a.state.blob(&d).exists() && !a.state.partial(&d).exists(), "nothing cached");
}
