//! Verified records: an unchanged model re-verifies from metadata alone; any change, a tampered
//! record or another bundle forces (and gets) a full verification.

use std::path::Path;

use fulcrum_sign::{Alg, LocalKey, Signer};
use fulcrum_verify::cache::{self, Outcome};
use fulcrum_verify::model_signing::{self, SignOptions, Trust, VerifyOptions};

fn setup(dir: &Path) -> (LocalKey, Vec<u8>) {
    let m = dir.join("model");
    std::fs::create_dir_all(m.join("sub")).unwrap();
    std::fs::write(m.join("weights.bin"), vec![5u8; 100_000]).unwrap();
    std::fs::write(m.join("sub/config.json"), "{}").unwrap();
    let key = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
    let bundle = model_signing::sign(&m, &key, &SignOptions::default()).unwrap();
    (key, bundle)
}

#[test]
fn unchanged_models_hit_and_changes_are_caught() {
    let d = tempfile::tempdir().unwrap();
    let (key, bundle) = setup(d.path());
    let (m, rec, mac) = (d.path().join("model"), d.path().join("model.record"), d.path().join("record.key"));
    let run = |b: &[u8]| cache::verify(&m, b, Trust::Key(key.public_key()), &VerifyOptions::default(), &rec, &mac);
    assert_eq!(run(&bundle).unwrap().1, Outcome::Full);
    assert_eq!(run(&bundle).unwrap().1, Outcome::Hit);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&mac).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Same size, mtime restored: ctime still moves, so the change is caught.
    let w = m.join("weights.bin");
    let mtime = std::fs::metadata(&w).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[500] ^= 1;
    std::fs::write(&w, &bytes).unwrap();
    std::fs::File::options().write(true).open(&w).unwrap().set_modified(mtime).unwrap();
    assert_eq!(run(&bundle).unwrap_err().code(), "hash_mismatch");
    bytes[500] ^= 1;
    std::fs::write(&w, &bytes).unwrap();
    assert_eq!(run(&bundle).unwrap().1, Outcome::Full);
    assert_eq!(run(&bundle).unwrap().1, Outcome::Hit);

    // An extra file.
    std::fs::write(m.join("evil.py"), "import os").unwrap();
    assert_eq!(run(&bundle).unwrap_err().code(), "extra_files");
    std::fs::remove_file(m.join("evil.py")).unwrap();
    // Back to exactly the verified files: the record applies again.
    assert_eq!(run(&bundle).unwrap().1, Outcome::Hit);

    // A tampered record fails its MAC and forces a full verification.
    let text = std::fs::read_to_string(&rec).unwrap();
    let tampered = text.replace("\"size\":100000", "\"size\":100001");
    assert_ne!(text, tampered, "{text}");
    std::fs::write(&rec, tampered).unwrap();
    assert_eq!(run(&bundle).unwrap().1, Outcome::Full);

    // Another (valid) bundle never reuses the record; a bad bundle fails before any record use.
    let other = model_signing::sign(&m, &key, &SignOptions::default()).unwrap();
    assert_eq!(run(&other).unwrap().1, Outcome::Full);
    let stranger = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
    let forged = model_signing::sign(&m, &stranger, &SignOptions::default()).unwrap();
    assert!(run(&forged).is_err());
}
