//! Key rotation at a live registry: an agent pinned to the bundle of the old key starts and
//! keeps serving by following the registry's bundle chain (the new bundle endorsed by the key it
//! replaced); a chain it cannot verify is a deny, never a silent trust.

mod common;

use common::{agent, as_, fraud_v1, register, registry, rotate_key, serving_guard, until};
use fulcrum_sign::Signer as _;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pinned_before_a_rotation_follows_the_chain() {
    let r = registry().await;
    as_(&r, "ci").post("/v1/models", &json!({"name": "fraud", "domain": "fraud"})).await.unwrap();
    register(&r, "v1", &[("weights.bin", b"weights-one")]).await;
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let a = agent(&r, state.path()).await; // pins bundle v1 (the first key)
    assert_eq!(a.bundle.version, 1);
    assert_eq!(rotate_key(&r).await, 2);
    assert_eq!(rotate_key(&r).await, 3);

    // Answers are now signed by the third key, which bundle v1 never named.
    let p = a.fetch("fraud@production", "prod", &out.path().join("m")).await.unwrap();
    assert_eq!(p.document.version, "v1");
    let trusted = a.trusted().unwrap();
    assert_eq!(trusted.version, 3, "adopted through v2 and v3");
    assert!(trusted.keys.iter().any(|k| k.kid == p.document.kid));
    assert_eq!(a.state.marks().unwrap().bundle_version, 3);

    // A pinned bundle that is not the registry's: the chain does not start from anything it
    // trusts, so nothing is adopted and the answer is refused.
    let other = tempfile::tempdir().unwrap();
    let mut stranger = agent(&r, other.path()).await;
    let k = fulcrum_sign::LocalKey::ephemeral(fulcrum_sign::Alg::Ed25519).unwrap();
    stranger.bundle.version = 1;
    stranger.bundle.keys.truncate(1);
    stranger.bundle.keys[0].kid = k.kid().to_owned();
    stranger.bundle.keys[0].public_key = fulcrum_sign::b64(k.public_key().spki_der());
    let e = stranger.fetch("fraud@production", "prod", &out.path().join("n")).await.unwrap_err();
    assert_eq!(e.code(), "bundle_chain_broken", "{e}");
    assert_eq!(stranger.trusted().unwrap().version, 1, "nothing adopted");
    assert!(!out.path().join("n").exists());
}

/// A guard serving across a rotation: the `key_rotated` event makes it re-check; the re-check
/// follows the chain and the version keeps serving, never quiesced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_keeps_serving_across_a_rotation() {
    let r = fraud_v1().await;
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let guard = serving_guard(&r, state.path(), out.path().join("m"), |_| {}).await;
    rotate_key(&r).await;
    until("the guard adopting bundle v2", || guard.agent.trusted().unwrap().version >= 2).await;
    assert!(guard.is_ready());
    let steps: Vec<&str> = guard.timeline().iter().map(|s| s.step).collect();
    assert!(!steps.contains(&"quiesce") && !steps.contains(&"recheck_failed"), "{steps:?}");
}
