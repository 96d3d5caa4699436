//! PKCS#11 signing (cryptoki). ECDSA keys are signed as SHA-256/384 digests with `CKM_ECDSA`
//! (SoftHSM2 has no `CKM_ECDSA_SHA256`) and the raw `r‖s` is converted to DER; Ed25519 uses
//! `CKM_EDDSA`. One `Pkcs11` context per module per process (C_Initialize may run once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use fulcrum_sign::{Alg, PublicKey, SignError, Signer, ecdsa_raw_to_der};
use sha2::Digest as _;

use crate::KmsError;

#[derive(Clone)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token_label: String,
    /// Re-read from its file when it changes (used at the next login).
    pub pin: crate::Secret,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Config {
    /// A configuration whose PIN is read from a file (never from the command line).
    ///
    /// # Errors
    /// An unreadable or empty PIN file.
    pub fn from_files(module: &Path, token_label: &str, pin_file: &Path) -> Result<Self, KmsError> {
        Ok(Self {
            module: module.to_owned(),
            token_label: token_label.to_owned(),
            pin: crate::Secret::from_file(pin_file)?,
        })
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> KmsError {
    KmsError::Pkcs11(format!("{what}: {e}"))
}

/// The process-wide context for a module.
fn context(module: &Path) -> Result<Pkcs11, KmsError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS.get_or_init(Default::default).lock().expect("pkcs11 contexts");
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| err(&format!("loading {}", module.display()), e))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).map_err(|e| err("C_Initialize", e))?;
    map.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

fn slot(ctx: &Pkcs11, label: &str) -> Result<Slot, KmsError> {
    for s in ctx.get_slots_with_token().map_err(|e| err("listing slots", e))? {
        if ctx.get_token_info(s).map_err(|e| err("token info", e))?.label().trim() == label {
            return Ok(s);
        }
    }
    Err(KmsError::Pkcs11(format!("no token labelled {label:?}")))
}

fn login(session: &Session, pin: &str) -> Result<(), KmsError> {
    // The PIN is never part of the error.
    session
        .login(UserType::User, Some(&AuthPin::from(pin.to_owned())))
        .map_err(|e| KmsError::Pkcs11(format!("login refused: {e}")))
}

fn find_one(session: &Session, class: ObjectClass, label: &str) -> Result<ObjectHandle, KmsError> {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])
        .map_err(|e| err("C_FindObjects", e))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(KmsError::Pkcs11(format!("no {class} labelled {label:?} on the token"))),
        _ => Err(KmsError::Pkcs11(format!("several objects labelled {label:?}; labels must be unique"))),
    }
}

/// Unwrap the DER OCTET STRING around `CKA_EC_POINT`.
fn unwrap_octet_string(v: &[u8]) -> &[u8] {
    match v {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        other => other,
    }
}

const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn public_key(session: &Session, label: &str) -> Result<PublicKey, KmsError> {
    let h = find_one(session, ObjectClass::PUBLIC_KEY, label)?;
    let attrs = session
        .get_attributes(h, &[AttributeType::KeyType, AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|e| err("reading the public key", e))?;
    let (mut params, mut point) = (None, None);
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let (params, point) =
        params.zip(point).ok_or_else(|| KmsError::Pkcs11(format!("{label:?} is not an EC or EdDSA key")))?;
    let alg = match params.as_slice() {
        p if p == OID_P256 => Alg::EcdsaP256Sha256,
        p if p == OID_P384 => Alg::EcdsaP384Sha384,
        p if p == OID_ED25519 || p.windows(7).any(|w| w == b"edwards") => Alg::Ed25519,
        _ => return Err(KmsError::Pkcs11(format!("{label:?} uses an unsupported curve"))),
    };
    PublicKey::from_point(alg, unwrap_octet_string(&point)).map_err(|e| err("public key", e))
}

/// The registry's runtime signer: a read-only session logged in with the user PIN, using a key
/// the key-admin created. It cannot create objects (the session is read-only) and cannot read
/// the private key (sensitive, non-extractable).
pub struct Pkcs11Signer {
    session: Mutex<(Session, ObjectHandle)>,
    cfg: Pkcs11Config,
    key_label: String,
    public: PublicKey,
    kid: String,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// # Errors
    /// Module, token, login or key lookup failures.
    pub fn open(cfg: &Pkcs11Config, key_label: &str) -> Result<Self, KmsError> {
        let (session, key) = Self::login_session(cfg, key_label)?;
        let public = public_key(&session, key_label)?;
        Ok(Self {
            session: Mutex::new((session, key)),
            cfg: cfg.clone(),
            key_label: key_label.to_owned(),
            kid: fulcrum_sign::kid_for("pkcs11", &public),
            public,
        })
    }

    /// A read-only session logged in with the PIN as it is now (re-read from its file).
    fn login_session(cfg: &Pkcs11Config, key_label: &str) -> Result<(Session, ObjectHandle), KmsError> {
        let ctx = context(&cfg.module)?;
        let s = slot(&ctx, &cfg.token_label)?;
        let session = ctx.open_ro_session(s).map_err(|e| err("opening a session", e))?;
        login(&session, &cfg.pin.get())?;
        let key = find_one(&session, ObjectClass::PRIVATE_KEY, key_label)?;
        Ok((session, key))
    }

    /// The runtime session, for tests proving what it may not do.
    pub fn session(&self) -> std::sync::MutexGuard<'_, (Session, ObjectHandle)> {
        self.session.lock().expect("pkcs11 session")
    }

    pub fn key_handle(&self) -> ObjectHandle {
        self.session().1
    }

    fn sign_in(&self, session: &Session, key: ObjectHandle, msg: &[u8]) -> Result<Vec<u8>, cryptoki::error::Error> {
        match self.public.alg() {
            Alg::Ed25519 => session.sign(&Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), key, msg),
            Alg::EcdsaP256Sha256 => {
                Ok(ecdsa_raw_to_der(&session.sign(&Mechanism::Ecdsa, key, &sha2::Sha256::digest(msg))?))
            }
            Alg::EcdsaP384Sha384 => {
                Ok(ecdsa_raw_to_der(&session.sign(&Mechanism::Ecdsa, key, &sha2::Sha384::digest(msg))?))
            }
        }
    }
}

impl Signer for Pkcs11Signer {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut guard = self.session.lock().map_err(|_| SignError::Backend("PKCS#11 session poisoned".into()))?;
        let (session, key) = &*guard;
        match self.sign_in(session, *key, msg) {
            Ok(sig) => Ok(sig),
            // The session may be gone (token reset, HSM failover, sessions closed): open a new
            // one, logged in with the PIN as its file says now, and try once more.
            Err(first) => match Self::login_session(&self.cfg, &self.key_label) {
                Ok((s, k)) => {
                    *guard = (s, k);
                    let (session, key) = &*guard;
                    self.sign_in(session, *key, msg).map_err(|e| SignError::Backend(format!("PKCS#11 C_Sign: {e}")))
                }
                Err(reopen) => Err(SignError::Backend(format!("PKCS#11 C_Sign: {first}; reopening: {reopen}"))),
            },
        }
    }
    fn is_development_key(&self) -> bool {
        false
    }
}

/// Key administration (key-admin only): create keys on the token.
pub mod admin {
    use super::*;

    /// Generate a key pair on the token: private key sensitive, non-extractable, sign-only.
    ///
    /// # Errors
    /// Token or login failures, an existing label, unsupported algorithms.
    pub fn generate(cfg: &Pkcs11Config, label: &str, alg: Alg) -> Result<PublicKey, KmsError> {
        let ctx = context(&cfg.module)?;
        let s = slot(&ctx, &cfg.token_label)?;
        let session = ctx.open_rw_session(s).map_err(|e| err("opening a session", e))?;
        login(&session, &cfg.pin.get())?;
        if !session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| err("C_FindObjects", e))?
            .is_empty()
        {
            return Err(KmsError::Pkcs11(format!("a key labelled {label:?} already exists")));
        }
        let (mech, params) = match alg {
            Alg::EcdsaP256Sha256 => (Mechanism::EccKeyPairGen, OID_P256.to_vec()),
            Alg::EcdsaP384Sha384 => (Mechanism::EccKeyPairGen, OID_P384.to_vec()),
            Alg::Ed25519 => (Mechanism::EccEdwardsKeyPairGen, OID_ED25519.to_vec()),
        };
        let id = sha2::Sha256::digest(label.as_bytes())[..8].to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(params),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        session.generate_key_pair(&mech, &public, &private).map_err(|e| err("C_GenerateKeyPair", e))?;
        let _ = KeyType::EC;
        public_key(&session, label)
    }
}

/// Test support: what an HSM operator does outside the registry.
#[cfg(feature = "test-support")]
pub mod operator {
    use super::*;

    /// Change the token's user PIN, then log this process out of the token (what a token reset
    /// or an HSM failover does to a running registry's session).
    ///
    /// # Errors
    /// Token or login failures.
    pub fn change_user_pin(cfg: &Pkcs11Config, old: &str, new: &str) -> Result<(), KmsError> {
        use cryptoki::error::{Error, RvError};
        let ctx = context(&cfg.module)?;
        let s = slot(&ctx, &cfg.token_label)?;
        let session = ctx.open_rw_session(s).map_err(|e| err("opening a session", e))?;
        // Login state is shared by the process's sessions: the registry's may already hold it.
        match session.login(UserType::User, Some(&AuthPin::from(old.to_owned()))) {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(err("login", e)),
        }
        session
            .set_pin(&AuthPin::from(old.to_owned()), &AuthPin::from(new.to_owned()))
            .map_err(|e| err("C_SetPIN", e))?;
        session.logout().map_err(|e| err("C_Logout", e))
    }
}
