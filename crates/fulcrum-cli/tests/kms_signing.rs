//! CI signs with any backend: `fulcrum keys create` makes the key (SoftHSM2 token or Vault
//! Transit fake), `fulcrum sign model` and `fulcrum attest provenance` sign with it, and
//! `fulcrum verify model` accepts the result with the published public key.

use std::process::{Command, Output};

use serde_json::Value;

fn fulcrum(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fulcrum")).args(args).env("FULCRUM_LOG", "error").output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn model(dir: &std::path::Path) -> std::path::PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("weights.bin"), vec![3u8; 50_000]).unwrap();
    std::fs::write(m.join("config.json"), "{}").unwrap();
    m
}

#[test]
fn sign_and_attest_with_a_softhsm_key() {
    let cfg = fulcrum_kms::testing::softhsm_token("ci", "2468");
    let label = cfg.token_label.clone();
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("pin"), "2468\n").unwrap();
    let module = cfg.module.to_str().unwrap().to_owned();
    let pin = t.path().join("pin");
    let hsm = [
        "--pkcs11-module",
        module.as_str(),
        "--pkcs11-token-label",
        &label,
        "--pkcs11-pin-file",
        pin.to_str().unwrap(),
    ];
    let created: Value = serde_json::from_str(&ok(fulcrum(
        &[&["keys", "create", "--backend", "pkcs11", "--label", "ci-signing"][..], &hsm].concat(),
    )))
    .unwrap();
    std::fs::write(t.path().join("pub.pem"), created["public_key"].as_str().unwrap()).unwrap();
    let m = model(t.path());
    let sig = t.path().join("model.sig");
    ok(fulcrum(
        &[
            &[
                "sign",
                "model",
                m.to_str().unwrap(),
                "--signature",
                sig.to_str().unwrap(),
                "--pkcs11-key-label",
                "ci-signing",
            ][..],
            &hsm,
        ]
        .concat(),
    ));
    ok(fulcrum(&[
        "verify",
        "model",
        m.to_str().unwrap(),
        "--signature",
        sig.to_str().unwrap(),
        "--public-key",
        t.path().join("pub.pem").to_str().unwrap(),
    ]));
    let prov = t.path().join("prov.json");
    ok(fulcrum(
        &[
            &[
                "attest",
                "provenance",
                "--dir",
                m.to_str().unwrap(),
                "--builder-id",
                "https://ci/b",
                "--build-type",
                "https://ci/t",
                "--out",
                prov.to_str().unwrap(),
                "--pkcs11-key-label",
                "ci-signing",
            ][..],
            &hsm,
        ]
        .concat(),
    ));
    assert!(std::fs::read_to_string(prov).unwrap().contains("payloadType"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_with_a_vault_transit_key() {
    let fake = fulcrum_kms::vault::fake::VaultFake::start().await;
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("admin-token"), &fake.admin_token).unwrap();
    let addr = format!("http://{}", fake.addr);
    let tok = t.path().join("admin-token");
    let vault = ["--vault-addr", addr.as_str(), "--vault-token-file", tok.to_str().unwrap()];
    let args_create = [&["keys", "create", "--backend", "vault", "--name", "ci-signing"][..], &vault]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    let created = tokio::task::spawn_blocking(move || {
        ok(Command::new(env!("CARGO_BIN_EXE_fulcrum")).args(&args_create).output().unwrap())
    })
    .await
    .unwrap();
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["kid"], "vault:transit/ci-signing:v1");
    std::fs::write(t.path().join("pub.pem"), created["public_key"].as_str().unwrap()).unwrap();
    let m = model(t.path());
    let sig = t.path().join("model.sig");
    let sign = [
        &["sign", "model", m.to_str().unwrap(), "--signature", sig.to_str().unwrap(), "--vault-key", "ci-signing"][..],
        &vault,
    ]
    .concat()
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>();
    tokio::task::spawn_blocking(move || ok(Command::new(env!("CARGO_BIN_EXE_fulcrum")).args(&sign).output().unwrap()))
        .await
        .unwrap();
    let verify = [
        "verify",
        "model",
        m.to_str().unwrap(),
        "--signature",
        sig.to_str().unwrap(),
        "--public-key",
        t.path().join("pub.pem").to_str().unwrap(),
    ]
    .map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        ok(Command::new(env!("CARGO_BIN_EXE_fulcrum")).args(&verify).output().unwrap())
    })
    .await
    .unwrap();
    assert!(out.contains("verified"), "{out}");
}
