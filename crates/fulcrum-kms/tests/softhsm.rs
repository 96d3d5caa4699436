//! PKCS#11 against a real SoftHSM2 token (the test command installs softhsm2): keys made by the
//! key-admin side are sensitive and non-extractable; the registry's runtime signer signs with
//! them through a read-only session and cannot create or export keys.

use std::sync::OnceLock;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use fulcrum_kms::pkcs11::{Pkcs11Config, Pkcs11Signer, admin};
use fulcrum_sign::{Alg, Signer};

const PIN: &str = "4711-registry";

/// One token per test process (C_Initialize runs once per process).
fn token() -> Pkcs11Config {
    static TOKEN: OnceLock<Pkcs11Config> = OnceLock::new();
    TOKEN.get_or_init(|| fulcrum_kms::testing::softhsm_token("fulcrum", PIN)).clone()
}

#[test]
fn admin_creates_runtime_signs_every_algorithm() {
    let cfg = token();
    for (label, alg) in
        [("k-p256", Alg::EcdsaP256Sha256), ("k-p384", Alg::EcdsaP384Sha384), ("k-ed25519", Alg::Ed25519)]
    {
        let public = admin::generate(&cfg, label, alg).unwrap();
        assert_eq!(public.alg(), alg);
        let signer = Pkcs11Signer::open(&cfg, label).unwrap();
        assert_eq!(signer.public_key(), &public);
        assert!(signer.kid().starts_with("pkcs11-"));
        for msg in [&b""[..], b"resolve document", &[7u8; 10_000]] {
            let sig = signer.sign(msg).unwrap();
            public.verify(msg, &sig).unwrap();
        }
        assert!(admin::generate(&cfg, label, alg).is_err(), "labels are unique");
    }
}

#[test]
fn runtime_credential_cannot_create_or_export() {
    let cfg = token();
    admin::generate(&cfg, "k-sod", Alg::EcdsaP256Sha256).unwrap();
    let signer = Pkcs11Signer::open(&cfg, "k-sod").unwrap();
    let key = signer.key_handle();
    let guard = signer.session();
    let session = &guard.0;
    // Export: the private key is sensitive and was never extractable; its value is not readable.
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Value,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)));
    assert!(attrs.contains(&Attribute::Extractable(false)));
    assert!(attrs.contains(&Attribute::NeverExtractable(true)));
    assert!(!attrs.iter().any(|a| matches!(a, Attribute::Value(_))), "the key value must not be readable");
    assert!(session.update_attributes(key, &[Attribute::Extractable(true)]).is_err());
    // Create / rotate: the registry's session is read-only, so no token key can be made.
    let made = session.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::EcParams(vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ],
        &[Attribute::Token(true), Attribute::Sign(true)],
    );
    assert!(made.is_err(), "a read-only session created a token key");
}

#[test]
fn wrong_pin_is_refused_without_echoing_it() {
    let mut cfg = token();
    admin::generate(&cfg, "k-pin", Alg::EcdsaP256Sha256).unwrap();
    cfg.pin = "not-the-pin-31337".into();
    let e = Pkcs11Signer::open(&cfg, "k-pin").unwrap_err().to_string();
    assert!(e.contains("login refused") && !e.contains("31337"), "{e}");
    let e = Pkcs11Signer::open(&token(), "no-such-key").unwrap_err().to_string();
    assert!(e.contains("no-such-key"), "{e}");
}

/// Secrets from files: the PIN is re-read from its file when the signer has to log in again.
/// The operator changes the token's PIN and the sessions are lost (token reset, failover): the
/// next signature fails while the file holds the old PIN — without echoing either — and works
/// once the file is rewritten, with no restart.
#[test]
fn a_changed_pin_is_read_from_its_file_at_the_next_login() {
    let base = fulcrum_kms::testing::softhsm_token("pinrot", "1111-old");
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "1111-old\n").unwrap();
    let cfg = Pkcs11Config::from_files(&base.module, &base.token_label, &pin_file).unwrap();
    let public = admin::generate(&cfg, "k-pin", Alg::Ed25519).unwrap();
    let signer = Pkcs11Signer::open(&cfg, "k-pin").unwrap();
    public.verify(b"one", &signer.sign(b"one").unwrap()).unwrap();

    fulcrum_kms::pkcs11::operator::change_user_pin(&cfg, "1111-old", "2222-new").unwrap();
    let e = signer.sign(b"two").unwrap_err().to_string();
    assert!(!e.contains("1111-old") && !e.contains("2222-new"), "no PIN in errors: {e}");
    std::fs::write(&pin_file, "2222-new\n").unwrap();
    public.verify(b"three", &signer.sign(b"three").unwrap()).unwrap();
}
