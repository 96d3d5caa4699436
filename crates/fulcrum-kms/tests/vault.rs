//! Vault Transit through the in-process fake (no Vault server can be installed here; the fake
//! follows the documented wire format): the key-admin token creates and rotates; the registry's
//! sign-only token signs and can do nothing else.

use fulcrum_kms::http::Endpoint;
use fulcrum_kms::vault::fake::VaultFake;
use fulcrum_kms::vault::{self, VaultConfig, VaultSigner, admin};
use fulcrum_sign::{Alg, Signer};

fn cfg(f: &VaultFake, token: &str) -> VaultConfig {
    VaultConfig {
        endpoint: Endpoint::parse(&format!("http://{}", f.addr), None).unwrap(),
        token: token.into(),
        mount: "transit".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_sign_only_tokens() {
    let f = VaultFake::start().await;
    let (admin_cfg, sign_cfg) = (cfg(&f, &f.admin_token), cfg(&f, &f.sign_token));
    tokio::task::spawn_blocking(move || {
        for (name, alg) in
            [("registry", Alg::EcdsaP256Sha256), ("registry-ed", Alg::Ed25519), ("registry-384", Alg::EcdsaP384Sha384)]
        {
            let (v1, pk1) = admin::create(&admin_cfg, name, alg).unwrap();
            assert_eq!((v1, pk1.alg()), (1, alg));
            let s1 = VaultSigner::new(sign_cfg.clone(), name, 1, pk1.clone());
            assert_eq!(s1.kid(), format!("vault:transit/{name}:v1"));
            let sig = s1.sign(b"resolve document").unwrap();
            pk1.verify(b"resolve document", &sig).unwrap();

            // The registry's token cannot administer keys.
            assert!(admin::create(&sign_cfg, &format!("{name}-evil"), alg).unwrap_err().to_string().contains("403"));
            assert!(admin::rotate(&sign_cfg, name).unwrap_err().to_string().contains("403"));
            assert!(admin::read(&sign_cfg, name).unwrap_err().to_string().contains("403"));
            assert!(admin::export(&sign_cfg, name).unwrap_err().to_string().contains("403"));
            // Nor can anyone export a Transit key Fulcrum created.
            assert!(admin::export(&admin_cfg, name).is_err());

            // Rotation: v2 has a new key; a signer pinned to v1 still signs with v1.
            let (v2, pk2) = admin::rotate(&admin_cfg, name).unwrap();
            assert_eq!(v2, 2);
            assert_ne!(pk1, pk2);
            pk1.verify(b"x", &s1.sign(b"x").unwrap()).unwrap();
            let s2 = VaultSigner::new(sign_cfg.clone(), name, 2, pk2.clone());
            let sig2 = s2.sign(b"x").unwrap();
            pk2.verify(b"x", &sig2).unwrap();
            assert!(pk1.verify(b"x", &sig2).is_err());
        }
        // A signer that claims a version Vault does not have fails closed.
        let (_, pk) = admin::read(&admin_cfg, "registry").unwrap();
        assert!(VaultSigner::new(sign_cfg.clone(), "registry", 9, pk).sign(b"x").is_err());
        let bad = VaultConfig { token: "hvs.wrong".into(), ..sign_cfg };
        assert!(
            VaultSigner::new(bad, "registry", 1, admin::read(&admin_cfg, "registry").unwrap().1).sign(b"x").is_err()
        );
        assert_eq!(vault::parse_ref("registry:v3").unwrap(), ("registry".into(), 3));
        assert!(vault::parse_ref("registry").is_err() && vault::parse_ref("../x:v1").is_err());
    })
    .await
    .unwrap();
}
